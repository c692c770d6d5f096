"""The contract every registered search space keeps (run once per space in ``nas.registry.list_spaces()``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nas.arch import arch_id
from nas.errors import InvalidArchError
from nas.registry import SPACES, list_spaces
from search_spaces.base import SearchSpace

# Small configurations so the contract runs in seconds; a space missing here is built with its defaults.
SMALL_CONFIGS: dict[str, dict] = {
    "ofa": dict(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32)),
}
N = 25  # archs per property


@pytest.fixture(params=list_spaces())
def space(request: pytest.FixtureRequest) -> SearchSpace:
    return SPACES.get(request.param)(**SMALL_CONFIGS.get(request.param, {}))


def _samples(space: SearchSpace, seed: int = 0, n: int = N) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def test_sample_is_valid_canonical_and_deterministic(space: SearchSpace) -> None:
    archs = _samples(space, seed=1)
    for arch in archs:
        assert space.validate(arch) == arch
        assert space.canonical(arch) == arch
        assert list(arch) == list(space.choices())
    assert _samples(space, seed=1) == archs
    assert _samples(space, seed=2) != archs


def test_mutate_gives_a_valid_different_arch(space: SearchSpace) -> None:
    rng = np.random.default_rng(3)
    for parent in _samples(space, seed=4):
        child = space.mutate(parent, rng)
        assert space.validate(child) == child
        assert child != parent


def test_crossover_takes_every_label_from_a_parent(space: SearchSpace) -> None:
    rng = np.random.default_rng(5)
    archs = _samples(space, seed=6, n=2 * N)
    for a, b in zip(archs[::2], archs[1::2]):
        child = space.crossover(a, b, rng)
        assert space.validate(child) == child
        for label, value in child.items():
            if value in (a[label], b[label]):
                continue
            # Only a choice that canonicalisation reset (one that does not affect the network) may differ.
            assert space.canonical({**child, label: a[label]}) == child, label


def test_encode_is_fixed_length_and_deterministic(space: SearchSpace) -> None:
    archs = _samples(space, seed=7)
    vectors = [space.encode(a) for a in archs]
    assert len({v.shape for v in vectors}) == 1 and vectors[0].ndim == 1
    for arch, vec in zip(archs, vectors):
        np.testing.assert_array_equal(space.encode(dict(arch)), vec)
        assert np.isfinite(vec).all()
    assert space.encode_many(archs).shape == (len(archs), vectors[0].shape[0])


def test_validate_rejects_malformed_archs(space: SearchSpace) -> None:
    arch = _samples(space, n=1)[0]
    first = next(iter(arch))
    with pytest.raises(InvalidArchError, match="missing"):
        space.validate({k: v for k, v in arch.items() if k != first})
    with pytest.raises(InvalidArchError, match="unknown"):
        space.validate({**arch, "no.such.label": 1})
    with pytest.raises(InvalidArchError):
        space.validate([arch])
    label, options = next((lb, o) for lb, o in space.choices().items() if len(o) > 1)
    with pytest.raises(InvalidArchError, match=label.replace(".", r"\.")):
        space.validate({**arch, label: "not-a-choice"})
    numeric = [o for o in options if isinstance(o, (int, float)) and not isinstance(o, bool)]
    if numeric:
        with pytest.raises(InvalidArchError):
            space.validate({**arch, label: max(numeric) + 1})


def test_json_round_trip_and_stable_ids(space: SearchSpace) -> None:
    archs = _samples(space, seed=8)
    for arch in archs:
        loaded = json.loads(json.dumps(arch))
        assert space.validate(loaded) == arch
        assert arch_id(loaded) == arch_id(arch)
        assert arch_id(dict(reversed(list(arch.items())))) == arch_id(arch)
    distinct = {json.dumps(a, sort_keys=True) for a in archs}
    assert len({arch_id(a) for a in archs}) == len(distinct) > 1


def test_public_form_round_trip(space: SearchSpace) -> None:
    for arch in _samples(space, seed=9):
        public = json.loads(json.dumps(space.to_public(arch)))
        assert space.from_public(public) == arch
        assert space.parse(public) == arch
        assert space.parse(dict(arch)) == arch


def test_build_gives_a_runnable_module(space: SearchSpace) -> None:
    arch = _samples(space, seed=10, n=1)[0]
    net = space.build(arch).eval()
    assert isinstance(net, torch.nn.Module)
    with torch.no_grad():
        out = net(torch.randn(1, *space.input_shape(arch)))
    assert out.ndim == 2 and out.shape[0] == 1
    expected_classes = SMALL_CONFIGS.get(space.name, {}).get("num_classes")
    if expected_classes is not None:
        assert out.shape == (1, expected_classes)
    assert isinstance(space.describe(arch), str) and space.describe(arch)
