"""The fast paths of a predictor-scored search give exactly what the plain per-arch code gives.

Ids are stored in measurement stores and results, encodings feed fitted predictors and seeded searches are
expected to repeat, so each fast path is checked value for value against a straightforward reference.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from nas.arch import arch_id, canonical_json
from nas.errors import InvalidArchError
from nas.strategies.evolution import distinct_picks
from search_spaces.base import SearchSpace
from search_spaces.ofa import OFASpace

SPACES = {
    "small": lambda: OFASpace(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32)),
    "default": lambda: OFASpace(),
    "float_expand": lambda: OFASpace(expand_ratios=(2.5, 3, 6), kernel_sizes=(3, 5), depths=(1, 2, 3),
                                     resolutions=(128, 160)),
}


def reference_json(arch: dict) -> str:
    return json.dumps(dict(arch), sort_keys=True, separators=(",", ":"))


def reference_id(arch: dict) -> str:
    return hashlib.sha256(reference_json(arch).encode("utf-8")).hexdigest()[:16]


def reference_canonical(space: OFASpace, arch: dict) -> dict:
    """OFASpace.canonical as written before its fast path."""
    stored = {label: {o: o for o in options} for label, options in space.choices().items()}
    out = {label: (v if type(v) is bool else st.get(v, v)) for label, st in stored.items() for v in (arch[label],)}
    for i in range(1, 6):
        depth = out[f"stage{i}.depth"]
        if isinstance(depth, int) and not isinstance(depth, bool):
            for j in list(range(space.max_depth))[depth:]:  # slots[depth:], as the original sliced
                out[f"stage{i}.block{j}.kernel"] = space.kernel_sizes[0]
                out[f"stage{i}.block{j}.expand"] = space.expand_ratios[0]
    return out


def messy_archs(space: OFASpace, n: int, seed: int) -> list[dict]:
    """Canonical archs, and the same with numbers as floats and junk (non-options) in inactive slots."""
    rng = np.random.default_rng(seed)
    archs = []
    for _ in range(n):
        arch = space.sample(rng)
        archs.append(arch)
        floats = {k: float(v) for k, v in arch.items()}
        archs.append(floats)
        junk = dict(arch)
        for i in range(1, 6):
            for j in range(int(arch[f"stage{i}.depth"]), space.max_depth):
                junk[f"stage{i}.block{j}.kernel"] = 9
                junk[f"stage{i}.block{j}.expand"] = 0.5
        archs.append(junk)
    return archs


@pytest.mark.parametrize("name", sorted(SPACES))
def test_batch_encodings_equal_per_arch(name: str) -> None:
    space = SPACES[name]()
    archs = messy_archs(space, 40, seed=1)
    assert space._choice_indices(archs) is not None  # the batch path, not its per-arch fallback, is tested
    encoded = space.encode_many(archs)
    assert encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded, np.stack([space.encode(a) for a in archs]))
    costs = space.cost_features_many(archs)
    np.testing.assert_array_equal(costs, np.stack([space.cost_features(a) for a in archs]))  # bit for bit
    # One arch, and a batch the tables cannot read (a non-option kernel in an active slot) take the per-arch path.
    np.testing.assert_array_equal(space.cost_features_many(archs[:1]), space.cost_features(archs[0])[None])
    odd = dict(archs[0], **{"stage1.block0.kernel": 9})
    np.testing.assert_array_equal(space.cost_features_many([archs[0], odd]),
                                  np.stack([space.cost_features(archs[0]), space.cost_features(odd)]))
    with pytest.raises(ValueError):  # what encode says about a kernel that is not an option
        space.encode_many([archs[0], odd])
    with pytest.raises(ValueError):  # a string is not an option either, even one that reads as a number
        space.encode_many([archs[0], dict(archs[0], **{"stage1.block0.kernel": "3"})])


@pytest.mark.parametrize("name", sorted(SPACES))
def test_canonical_mutate_crossover_equal_reference(name: str) -> None:
    space = SPACES[name]()
    archs = messy_archs(space, 30, seed=2)
    archs.append(dict(archs[0], **{"stage2.depth": True}))  # a bool depth stays and resets nothing
    for odd in (0, -1, 7, 2.5):  # depths canonical() does not validate: sliced as Python slices
        archs.append(dict(archs[0], **{"stage3.depth": odd}))
    for arch in archs:
        assert space.canonical(arch) == reference_canonical(space, arch)
        assert arch_id(space.canonical(arch)) == arch_id(reference_canonical(space, arch))
    for seed, arch in enumerate(archs[::3]):
        for rate in (None, 0.3):
            fast = space.mutate(arch, np.random.default_rng(seed), rate=rate)
            plain = SearchSpace.mutate(space, arch, np.random.default_rng(seed), rate=rate)
            assert fast == plain and list(fast) == list(plain)
    rng = np.random.default_rng(5)
    for a, b in zip(archs[::3], archs[1::3]):
        state = rng.bit_generator.state
        child = space.crossover(a, b, rng)
        after = rng.bit_generator.state
        rng.bit_generator.state = state
        expected = {label: (a[label] if rng.random() < 0.5 else b[label]) for label in space.choices()}
        assert child == space.canonical(expected)
        assert rng.bit_generator.state == after  # the same draws were consumed


@pytest.mark.parametrize("arch", [
    {"a": 1, "b": 2},
    {"z": 3, "a": 4.0, "m": 0.1, "k": -0.0, "q": 1e-7, "r": 1e22, "s": 123456789012345678901234567890},
    {"b": 10**400, "a": 1},  # too large for a float: json still writes it
    {"a": True, "b": 1},
    {"a": "nor_conv_3x3", "b": 1},
    {"a": float("nan"), "b": 1},
    {"a": float("inf"), "b": 1},
    {"x%s": 1, "y\"\\é": 2, "\n": 3},
    {"only": 7},
    {},
    {"a": np.float64(0.5), "b": 2},
])
def test_arch_id_equals_sorted_json_hash(arch: dict) -> None:
    assert canonical_json(arch) == reference_json(arch)
    assert arch_id(arch) == reference_id(arch)
    assert arch_id(arch) == arch_id(dict(reversed(list(arch.items()))))


def test_arch_id_fast_path_keeps_rejecting_non_flat() -> None:
    with pytest.raises(InvalidArchError):
        arch_id({"a": [1, 2], "b": 1})
    with pytest.raises(InvalidArchError):
        arch_id({1: 1, 2: 2})


def test_arch_id_on_random_ofa_archs_matches_json() -> None:
    space = SPACES["float_expand"]()
    for arch in messy_archs(space, 50, seed=3):
        assert arch_id(arch) == reference_id(arch)


def test_distinct_picks_are_uniform_draws_without_replacement() -> None:
    rng = np.random.default_rng(0)
    for size, k in ((2, 2), (3, 1), (5, 3), (10, 2), (6, 6)):
        picks = distinct_picks(rng, 20_000, size, k)
        assert picks.shape == (20_000, k) and picks.min() >= 0 and picks.max() < size
        assert all(len(set(row)) == k for row in picks.tolist())
        # Every position is uniform over the indices (within 5 standard errors).
        for j in range(k):
            share = np.bincount(picks[:, j], minlength=size) / len(picks)
            assert np.abs(share - 1 / size).max() < 5 * np.sqrt((1 / size) * (1 - 1 / size) / len(picks))
        if k == 2:  # and every ordered pair equally likely
            pairs = np.bincount(picks[:, 0] * size + picks[:, 1], minlength=size * size).reshape(size, size)
            assert np.all(np.diag(pairs) == 0)
            off = pairs[~np.eye(size, dtype=bool)] / len(picks)
            p = 1 / (size * (size - 1))
            assert np.abs(off - p).max() < 5 * np.sqrt(p * (1 - p) / len(picks))
