"""The relaxation contract every relaxable space keeps (:mod:`search_spaces.relax`), checked on each one registered.

- with one-hot gates the relaxed supernet computes what its extracted discrete network computes (eval mode,
  after BN statistics were updated, with every weight perturbed so zero-initialised branches are not vacuous);
- softmax gates (where the space mixes by softmax) and Gumbel-style active gates give logits, and gradients
  reach the network's weights and the gate tensors;
- ``derive`` of one-hot probabilities gives back the architecture, ``arch_of`` / ``selection_of`` invert
  each other;
- PC-DARTS's partial channels: refused with a clear message where unsupported, working on nb201;
- DARTS-'s auxiliary skip changes shape-preserving mixed ops only.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from nas.errors import ConfigError
from nas.registry import SPACES
from search_spaces.relax import CandidateMix, Gates, RelaxableSpace

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Small configs (a few seconds per space for the whole file); a relaxable space not listed here is built
#: from the generic options its constructor accepts.
SMALL = {
    "nb201": dict(num_classes=10, in_channels=1, resolution=16, search_channels=4, search_cells=1),
    "fbnet": dict(num_classes=10, in_channels=1, resolution=16),
    "mobilenet": dict(plan="v3_small", width_mult=0.25, resolution=16),
    "shufflenet": dict(width_mult=0.25, resolution=16, xception=True),
    "ghostnet": dict(width_mult=0.25, resolution=16),
    "blocks": dict(width_mult=0.25, resolution=16, families=["mb", "shuffle", "ghost"]),
    "darts": dict(num_classes=10, in_channels=1, resolution=16, search_channels=4, search_layers=3),
}
GENERIC = dict(num_classes=10, in_channels=1, resolution=16)
RESOLUTION = 16


def relaxable_names() -> list[str]:
    return [name for name in SPACES.names()
            if isinstance(SPACES.get(name), type) and issubclass(SPACES.get(name), RelaxableSpace)]


NAMES = relaxable_names()


def test_expected_spaces_are_relaxable():
    assert {"nb201", "fbnet", "mobilenet", "shufflenet", "ghostnet", "blocks"} <= set(NAMES)


def make_space(name: str) -> RelaxableSpace:
    cls = SPACES.get(name)
    options = SMALL.get(name)
    if options is None:
        accepted = inspect.signature(cls).parameters
        options = {k: v for k, v in GENERIC.items() if k in accepted}
    space = cls(**options)
    assert isinstance(space, RelaxableSpace)
    return space


def images(n: int, space, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c, h, w = space.input_shape(space.sample(np.random.default_rng(0)))
    return torch.randn(n, c, h, w, generator=g)


def random_gates(space, rng: np.random.Generator) -> Gates:
    """Random probabilities where the space mixes by softmax (every option's BN statistics move), else the
    one-hot gates of a random member (one op per decision runs)."""
    if space.relax_sampling == "softmax":
        return Gates(weights=[torch.from_numpy(rng.dirichlet(np.ones(len(d.options)))).float()
                              for d in space.decisions()])
    return Gates.one_hot(space.decisions(), space.selection_of(space.sample(rng)))


def perturb(net: nn.Module, seed: int) -> None:
    """Every parameter moved off its initialisation (residual blocks start with a zero last BN scale, which
    would make their branch, and so the equality check, vacuous)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def soft_gates(space, seed: int, *, gumbel: bool) -> tuple[Gates, list[torch.Tensor], list[torch.Tensor]]:
    """Gates from leaf logits: softmax probabilities, or a straight-through one-hot of a random option per
    decision (value 1 on the active option, the probability's gradient)."""
    g = torch.Generator().manual_seed(seed)
    alphas = [torch.randn(len(d.options), generator=g).requires_grad_() for d in space.decisions()]
    probs = [a.softmax(0) for a in alphas]
    for p in probs:
        p.retain_grad()
    if not gumbel:
        return Gates(weights=probs), alphas, probs
    active = [int(torch.randint(len(p), (1,), generator=g)) for p in probs]
    weights = []
    for p, i in zip(probs, active):
        hard = torch.zeros_like(p)
        hard[i] = 1.0
        weights.append(hard - p.detach() + p)
    return Gates(weights=weights, active=active), alphas, probs


# ---------------------------------------------------------------------------------------------- (a) extract
@pytest.mark.parametrize("name", NAMES)
def test_one_hot_supernet_equals_extracted_network(name):
    space = make_space(name)
    net = space.relax()
    perturb(net, seed=1)
    rng = np.random.default_rng(3)
    net.train()
    with torch.no_grad():
        for step in range(2):  # non-trivial BN running statistics
            net(images(8, space, seed=10 + step), random_gates(space, rng))
    net.eval()
    x = images(4, space, seed=20)
    for _ in range(2):
        arch = space.sample(rng)
        sub = net.extract(arch)
        assert not sub.training
        with torch.no_grad():
            want = net(x, net.gates_of(arch))
            got = sub(x)
        assert got.shape == (4, space.num_classes)
        scale = float(want.abs().max())
        assert scale > 0
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * max(1.0, scale))


# ---------------------------------------------------------------------------------------------- (b) gradients
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sampling", ["softmax", "gumbel"])
def test_gates_give_logits_and_gradients(name, sampling):
    space = make_space(name)
    if sampling == "softmax" and space.relax_sampling != "softmax":
        pytest.skip(f"{name} mixes by {space.relax_sampling}")
    net = space.relax().train()
    gates, alphas, probs = soft_gates(space, seed=5, gumbel=sampling == "gumbel")
    logits = net(images(4, space, seed=7), gates)
    assert logits.shape == (4, space.num_classes)
    nn.functional.cross_entropy(logits, torch.arange(4) % space.num_classes).backward()
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in alphas)
    assert all(p.grad is not None for p in probs)
    if sampling == "softmax":  # every option ran: every decision's weights got a gradient
        assert all(float(p.grad.abs().sum()) > 0 for p in probs)
    else:
        assert sum(float(p.grad.abs().sum()) > 0 for p in probs) >= len(probs) // 2
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    if sampling == "softmax":
        assert all(g is not None for g in grads)


# ---------------------------------------------------------------------------------------------- (c), (d)
@pytest.mark.parametrize("name", NAMES)
def test_derive_and_round_trips(name):
    space = make_space(name)
    decisions = space.decisions()
    assert decisions and all(len(d.options) >= 1 for d in decisions)
    rng = np.random.default_rng(11)
    for _ in range(3):
        arch = space.sample(rng)
        if name == "nb201":  # NB201's derivation skips 'none', as DARTS's does: derive gives archs without it
            arch = {label: ("nor_conv_3x3" if op == "none" else op) for label, op in arch.items()}
        selection = space.selection_of(arch)
        assert len(selection) == len(decisions)
        assert space.arch_of(selection) == arch
        assert space.selection_of(space.arch_of(selection)) == selection
        probs = [np.eye(len(d.options), dtype=np.float32)[i] for d, i in zip(decisions, selection)]
        derived = space.derive(probs)
        assert derived == arch
        assert space.validate(derived) == derived


def test_nb201_derivation_skips_none():
    space = make_space("nb201")
    probs = [np.array([0.6, 0.1, 0.1, 0.05, 0.15])] * 6  # 'none' most probable on every edge
    assert set(space.derive(probs).values()) == {"nor_conv_3x3"}


# ---------------------------------------------------------------------------------------------- (e) partial channels
@pytest.mark.parametrize("name", NAMES)
def test_partial_channels_refused_where_unsupported(name):
    space = make_space(name)
    if space.supports_partial_channels:
        pytest.skip(f"{name} supports partial channels")
    with pytest.raises(ConfigError, match="partial_channels=2 is not supported"):
        space.relax(partial_channels=2)


def test_nb201_partial_channels_with_edge_normalisation():
    space = make_space("nb201")
    net = space.relax(partial_channels=2).train()
    assert net.edge_groups() == {"node1": 1, "node2": 2, "node3": 3}
    gates, alphas, _ = soft_gates(space, seed=2, gumbel=False)
    betas = {node: torch.zeros(n, requires_grad=True) for node, n in net.edge_groups().items()}
    gates.edge_weights = {node: b.softmax(0) for node, b in betas.items()}
    logits = net(images(4, space, seed=3), gates)
    assert logits.shape == (4, space.num_classes)
    logits.sum().backward()
    assert all(b.grad is not None for b in betas.values())
    # (a softmax over node1's single edge is constant: only nodes 2 and 3 can learn their edges' weights)
    assert float(betas["node2"].grad.abs().sum()) > 0 and float(betas["node3"].grad.abs().sum()) > 0
    assert all(a.grad is not None for a in alphas)
    # the ops run on half of the channels: the mixed op of a first-stage edge holds 2-channel convolutions
    conv = net.features[2].edges[0].candidates[-1][1]
    assert conv.in_channels == space.search_channels // 2
    with pytest.raises(ConfigError, match="partial_channels=2 has no discrete network"):
        net.extract(space.sample(np.random.default_rng(0)))
    with pytest.raises(ConfigError, match="must divide search_channels"):
        space.relax(partial_channels=3)


def test_nb201_search_options_are_validated():
    cls = SPACES.get("nb201")
    for key in ("search_channels", "search_cells"):
        with pytest.raises(ConfigError, match=f"nb201: {key} must be a positive integer"):
            cls(**{key: 0})
    space = cls(search_channels=4, search_cells=2, channels=16, cells_per_stage=5)
    sub = space.relax().extract(space.sample(np.random.default_rng(0)))
    assert sum(isinstance(m, type(sub.features[2])) for m in sub.features) == 3 * 2  # the proxy, not the network
    assert sub.classifier.in_features == 4 * 4


# ---------------------------------------------------------------------------------------------- (f) aux skip
def test_aux_skip_only_on_shape_preserving_mixed_ops():
    space = make_space("nb201")
    net = space.relax().eval()
    edge = net.features[2].edges[0]  # a first-stage edge: the cell keeps the shape
    x = torch.randn(2, space.search_channels, 8, 8)
    w = torch.softmax(torch.randn(edge.num_options), 0)
    with torch.no_grad():
        torch.testing.assert_close(edge(x, w, aux_skip=0.5) - edge(x, w), 0.5 * x)
        active = edge(x, w, active=3, aux_skip=0.5) - edge(x, w, active=3)
        torch.testing.assert_close(active, 0.5 * x)
    resize = CandidateMix([nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(4, 8, 1))])
    y = torch.randn(2, 4, 8, 8)
    w2 = torch.tensor([0.3, 0.7])
    with torch.no_grad():
        torch.testing.assert_close(resize(y, w2, aux_skip=0.5), resize(y, w2))
        gates = net.gates_of(space.sample(np.random.default_rng(1)))
        xs = images(2, space, seed=4)
        plain = net(xs, gates)
        gates.aux_skip = 0.5
        assert not torch.allclose(net(xs, gates), plain)
