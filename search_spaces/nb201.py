"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020): a 4-node cell whose 6 edges each carry one of 5 ops.

Node ``j`` (1..3) sums one op applied to every earlier node ``i < j``; node 0 is the cell input, node 3 its
output. Flat labels are ``node{j}.in{i}`` in the order NAS-Bench-201 writes them, so the public string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` maps one-to-one onto the labels. All 5^6 = 15,625 cells are distinct
members (NAS-Bench-201 indexes each of them, isomorphic ones included), so :meth:`canonical` is the identity.

The network is NAS-Bench-201's macro skeleton: a 3x3 stem, three stages of ``cells_per_stage`` cells at
``channels``, ``2*channels``, ``4*channels`` joined by ResNet reduction blocks, then BN-ReLU, global
average pooling and a linear classifier.

Relaxed (:meth:`NB201Space.relax`, DARTS / GDAS / PC-DARTS): every edge a mixed op over the 5 ops, on a smaller
proxy of the network (``search_channels``, ``search_cells`` per stage) as NAS-Bench-201's own DARTS runs search
a smaller network than they evaluate; the convolutions' BatchNorms carry no affine scale there (as in
NAS-Bench-201's search cells: a learned scale per op would compete with the architecture weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nas.arch import Arch, Value
from nas.errors import ConfigError, InvalidArchError
from nas.registry import register_space
from search_spaces.base import SearchSpace
from search_spaces.blocks import ChannelShuffle
from search_spaces.options import positive_int
from search_spaces.relax import CandidateMix, Decision, Gates, RelaxableSpace, RelaxedSupernet, label_decisions

#: The ops, cheapest first (the order choices list them in).
OPS = ("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")
#: ``(to_node, from_node)`` of each edge, in the order of the public string.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
LABELS = tuple(f"node{j}.in{i}" for j, i in EDGES)
#: The input-to-output paths of the cell, as indices into ``EDGES``: 0->3, 0->1->3, 0->2->3, 0->1->2->3.
_PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))
_PATH_FEATURES = sum((len(OPS) - 1) ** len(path) for path in _PATHS)
#: Search epochs when ``strategy.epochs`` is null: measured, the default proxy (8 channels, 1 cell per stage)
#: takes 0.15-0.18 s per softmax forward + backward at batch 64 on 2 CPU threads (0.2 s CPU time on one), so an
#: epoch over the embedded digits' 1,750 + 1,750 images (a weight and an architecture step per batch, ~56 steps)
#: takes ~9-12 s per mnist5k epoch; 270 weight steps (30 epochs of the embedded digits, 10 of mnist5k) take
#: about 4.5 CPU minutes (measured: experiments/darts_nb201.py).
RELAX_STEPS = 270


def edges_with_path(arch: Mapping[str, Value]) -> bool:
    """Whether the cell output is connected to its input through non-``none`` edges (else it outputs zeros)."""
    reached = {0}
    for j, i in EDGES:  # edges are ordered by target node, so one pass settles reachability
        if i in reached and arch[f"node{j}.in{i}"] != "none":
            reached.add(j)
    return 3 in reached


@register_space("nb201")
class NB201Space(SearchSpace, RelaxableSpace):
    """NAS-Bench-201 cells; the public form is the benchmark's arch string."""

    name = "nb201"
    relax_sampling = "softmax"
    relax_steps = RELAX_STEPS
    supports_partial_channels = True

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: int = 16,
        cells_per_stage: int = 5,
        resolution: int = 32,
        search_channels: int = 8,
        search_cells: int = 1,
    ) -> None:
        self.num_classes = positive_int("nb201", "num_classes", num_classes)
        self.in_channels = positive_int("nb201", "in_channels", in_channels)
        self.channels = positive_int("nb201", "channels", channels)
        self.cells_per_stage = positive_int("nb201", "cells_per_stage", cells_per_stage)
        self.resolution = positive_int("nb201", "resolution", resolution)
        self.search_channels = positive_int("nb201", "search_channels", search_channels)
        self.search_cells = positive_int("nb201", "search_cells", search_cells)

    def choices(self) -> dict[str, tuple[Value, ...]]:
        return {label: OPS for label in LABELS}

    def input_shape(self, arch: Mapping[str, Value]) -> tuple[int, int, int]:
        return (self.in_channels, self.resolution, self.resolution)

    def build(self, arch: Mapping[str, Value]) -> nn.Module:
        arch = self.validate(arch)
        return NB201Network([str(arch[label]) for label in LABELS], num_classes=self.num_classes,
                            in_channels=self.in_channels, channels=self.channels, cells_per_stage=self.cells_per_stage)

    def encode(self, arch: Mapping[str, Value]) -> np.ndarray:
        """One-hot op per edge, then a path encoding (BANANAS, White et al. 2021): one feature per sequence of
        ops along each of the 4 input-to-output paths, set when the path carries no ``none``. Path features let
        a linear model see connectivity (an edge matters only if it lies on a live path), which one-hot cannot."""
        one_hot = super().encode(arch)
        ops = [OPS.index(str(arch[label])) for label in LABELS]
        paths = np.zeros(_PATH_FEATURES, dtype=np.float32)
        offset = 0
        for path in _PATHS:
            live = [ops[k] - 1 for k in path]  # 'none' is op 0: it cuts the path
            if min(live) >= 0:
                index = 0
                for op in live:
                    index = index * (len(OPS) - 1) + op
                paths[offset + index] = 1.0
            offset += (len(OPS) - 1) ** len(path)
        return np.concatenate([one_hot, paths])

    # ------------------------------------------------------------------ public string form
    def to_public(self, arch: Mapping[str, Value]) -> str:
        ops = [arch[label] for label in LABELS]
        nodes = []
        for j in (1, 2, 3):
            nodes.append("|" + "|".join(f"{ops[k]}~{i}" for k, (to, i) in enumerate(EDGES) if to == j) + "|")
        return "+".join(nodes)

    def from_public(self, obj: object) -> Arch:
        if isinstance(obj, Mapping):
            return self.validate(obj)
        expected = "a NAS-Bench-201 string like '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|'"
        if not isinstance(obj, str):
            raise InvalidArchError(f"an nb201 architecture must be {expected}, got {type(obj).__name__}")
        nodes = obj.strip().split("+")
        arch: Arch = {}
        if len(nodes) != 3:
            raise InvalidArchError(f"{obj!r} has {len(nodes)} nodes separated by '+', expected 3: {expected}")
        for j, node in enumerate(nodes, start=1):
            tokens = [t for t in node.strip().strip("|").split("|")]
            if len(tokens) != j:
                raise InvalidArchError(f"{obj!r}: node {j} must list {j} inputs, got {node!r}; expected {expected}")
            for i, token in enumerate(tokens):
                op, _, source = token.partition("~")
                if source != str(i):
                    raise InvalidArchError(f"{obj!r}: input {i} of node {j} is written {token!r}, expected '<op>~{i}'")
                if op not in OPS:
                    raise InvalidArchError(f"{obj!r}: unknown op {op!r}; ops are {list(OPS)}")
                arch[f"node{j}.in{i}"] = op
        return self.validate(arch)

    def describe(self, arch: Mapping[str, Value]) -> str:
        return self.to_public(arch)

    # ------------------------------------------------------------------ relaxation (differentiable search)
    def decisions(self) -> tuple[Decision, ...]:
        return label_decisions(self.choices())

    def arch_of(self, selection: Sequence[int]) -> Arch:
        return self.validate({label: OPS[int(i)] for label, i in zip(LABELS, selection)})

    def derive(self, probs: Sequence[np.ndarray]) -> Arch:
        """The most probable op of each edge other than ``none``, as DARTS derives: ``none``'s weight says how
        little an edge matters, not that zeroing it is the best op (and all-``none`` edges make a dead cell)."""
        return self.arch_of([1 + int(np.argmax(np.asarray(p)[1:])) for p in probs])

    def relax(self, *, partial_channels: int = 1) -> NB201RelaxedSupernet:
        """The supernet of ``search_channels`` / ``search_cells`` with every edge mixed; ``partial_channels=K``
        (PC-DARTS): each edge's ops see the first ``1/K`` of the channels, so ``search_channels`` must divide by K."""
        k = positive_int("nb201", "partial_channels", partial_channels)
        if self.search_channels % k:
            raise ConfigError(f"nb201: partial_channels={k} must divide search_channels={self.search_channels}; "
                              f"choose a divisor of it or another search_channels")
        return NB201RelaxedSupernet(self, partial_channels=k)


# ---------------------------------------------------------------------------------------------- network
class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, *, affine: bool = True) -> None:
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


class _SearchAvgPool(nn.Module):
    """``avg_pool_3x3`` (stride 1, padding not counted) as a depthwise sum of ones divided by the number of real
    pixels under each window: the same values up to rounding, and measured 3-10x faster than ``nn.AvgPool2d``'s
    CPU kernel (forward + backward, 8-32 channels at 32x32), which took a quarter of a softmax search step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape[1:]
        total = nn.functional.conv2d(x, x.new_ones(c, 1, 3, 3), padding=1, groups=c)
        count = nn.functional.conv2d(x.new_ones(1, 1, h, w), x.new_ones(1, 1, 3, 3), padding=1)
        return total / count


def _make_op(op: str, channels: int, *, affine: bool = True) -> nn.Module:
    """The module of ``op``; ``affine=False`` gives the search-time form (BN without affine, the fast pool)."""
    if op == "none":
        return _Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False) if affine else _SearchAvgPool()
    if op == "nor_conv_1x1":
        return _ReLUConvBN(channels, channels, 1, affine=affine)
    if op == "nor_conv_3x3":
        return _ReLUConvBN(channels, channels, 3, affine=affine)
    raise InvalidArchError(f"unknown nb201 op {op!r}; ops are {list(OPS)}")


class NB201Cell(nn.Module):
    def __init__(self, ops: list[str], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(_make_op(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for j in (1, 2, 3):
            total = None
            for i in range(j):
                out = self.edges[k](nodes[i])
                total = out if total is None else total + out
                k += 1
            nodes.append(total)
        return nodes[3]


class _ResidualReduction(nn.Module):
    """NAS-Bench-201's fixed stride-2 residual block between stages."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.a = _ReLUConvBN(c_in, c_out, 3, stride=2)
        self.b = _ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    def __init__(self, ops: list[str], *, num_classes: int, in_channels: int, channels: int, cells_per_stage: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)]
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(_ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(NB201Cell(ops, c) for _ in range(cells_per_stage))
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ---------------------------------------------------------------------------------------------- relaxed supernet
class _PartialMix(CandidateMix):
    """PC-DARTS's partial channel connection: the ops see the first ``channels // k`` channels, the others
    bypass them, and a channel shuffle of ``k`` groups mixes the two parts for the next edge."""

    def __init__(self, channels: int, k: int) -> None:
        super().__init__([_make_op(op, channels // k, affine=False) for op in OPS])
        self.split = channels // k
        self.shuffle = ChannelShuffle(k)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: int | None = None,
                aux_skip: float = 0.0) -> torch.Tensor:
        mixed = super().forward(x[:, :self.split], weights, active, aux_skip)
        return self.shuffle(torch.cat([mixed, x[:, self.split:]], dim=1))


class _RelaxedCell(nn.Module):
    """An NB201 cell whose every edge is a mixed op; node ``j`` sums its incoming edges, each weighted by
    ``gates.edge_weights[f"node{j}"][i]`` when given (PC-DARTS's edge normalisation)."""

    def __init__(self, channels: int, partial_channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            CandidateMix([_make_op(op, channels, affine=False) for op in OPS]) if partial_channels == 1
            else _PartialMix(channels, partial_channels) for _ in EDGES)

    def forward(self, x: torch.Tensor, gates: Gates) -> torch.Tensor:
        nodes = [x]
        k = 0
        for j in (1, 2, 3):
            beta = gates.edge_weights.get(f"node{j}")
            total = None
            for i in range(j):
                out = self.edges[k](nodes[i], gates.weights[k], None if gates.active is None else gates.active[k],
                                    gates.aux_skip)
                if beta is not None:
                    out = beta[i] * out
                total = out if total is None else total + out
                k += 1
            nodes.append(total)
        return nodes[3]


class NB201RelaxedSupernet(RelaxedSupernet):
    """NB201's macro skeleton at ``search_channels`` / ``search_cells`` with every cell relaxed (all cells share
    one set of gates, one weight vector per edge); the stem, reduction blocks and head are fixed. ``features``
    is laid out as :class:`NB201Network`'s, so :meth:`extract` copies module by module. Measured (2 CPU threads,
    batch 64, 32x32, 1 input channel): a softmax forward + backward takes 0.15-0.18 s at the default 8 channels
    and 1 cell per stage (0.23-0.28 s with ``nn.AvgPool2d`` and contiguous weights), ~0.28 s at 8 / 2 or 16 / 1,
    ~1.3 s at NAS-Bench-201's own search size (16 / 5)."""

    def __init__(self, space: NB201Space, *, partial_channels: int = 1) -> None:
        super().__init__()
        self._space, self.partial_channels = space, partial_channels
        self.decisions = space.decisions()
        c = space.search_channels
        features: list[nn.Module] = [nn.Conv2d(space.in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)]
        for stage in range(3):
            if stage > 0:
                features.append(_ResidualReduction(c, 2 * c))
                c *= 2
            features.extend(_RelaxedCell(c, partial_channels) for _ in range(space.search_cells))
        features += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.ModuleList(features)
        self.classifier = nn.Linear(c, space.num_classes)
        self.to(memory_format=torch.channels_last)  # measured: a softmax step ~15% faster on CPU than contiguous

    def forward(self, x: torch.Tensor, gates: Gates) -> torch.Tensor:
        if len(gates.weights) != len(self.decisions):
            raise ValueError(f"nb201 supernet: gates hold {len(gates.weights)} weight vectors, expected one per edge "
                             f"({len(self.decisions)})")
        x = x.contiguous(memory_format=torch.channels_last)
        for module in self.features:
            x = module(x, gates) if isinstance(module, _RelaxedCell) else module(x)
        return self.classifier(x)

    def gates_of(self, arch: Mapping[str, Value]) -> Gates:
        return Gates.one_hot(self.decisions, self._space.selection_of(self._space.validate(arch)))

    def edge_groups(self) -> dict[str, int]:
        return {f"node{j}": j for j in (1, 2, 3)}

    def extract(self, arch: Mapping[str, Value]) -> NB201Network:
        """The :class:`NB201Network` of ``arch`` at the search size, with these weights and BN statistics (the
        search ops' BNs become affine with weight 1, bias 0, which computes the same)."""
        if self.partial_channels > 1:
            raise ConfigError(f"nb201: a supernet relaxed with partial_channels={self.partial_channels} has no "
                              f"discrete network of its own (its ops see part of the channels); train the derived "
                              f"architecture from scratch (final.train=scratch) or relax with partial_channels=1")
        arch = self._space.validate(arch)
        ops = [str(arch[label]) for label in LABELS]
        space = self._space
        net = NB201Network(ops, num_classes=space.num_classes, in_channels=space.in_channels,
                           channels=space.search_channels, cells_per_stage=space.search_cells)
        with torch.no_grad():
            for mine, theirs in zip(self.features, net.features):
                if not isinstance(mine, _RelaxedCell):
                    theirs.load_state_dict(mine.state_dict())
                    continue
                for edge, target, op in zip(mine.edges, theirs.edges, ops):
                    state = edge.candidates[OPS.index(op)].state_dict()
                    if state:  # a conv op: its BN gains the identity affine
                        state["2.weight"] = torch.ones_like(state["2.running_mean"])
                        state["2.bias"] = torch.zeros_like(state["2.running_mean"])
                        target.load_state_dict(state)
            net.classifier.load_state_dict(self.classifier.state_dict())
        return net.to(next(self.parameters()).device).train(self.training)
