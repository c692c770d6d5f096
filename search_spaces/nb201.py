"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020): a 4-node cell whose 6 edges each carry one of 5 ops.

Node ``j`` (1..3) sums one op applied to every earlier node ``i < j``; node 0 is the cell input, node 3 its
output. Flat labels are ``node{j}.in{i}`` in the order NAS-Bench-201 writes them, so the public string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` maps one-to-one onto the labels. All 5^6 = 15,625 cells are distinct
members (NAS-Bench-201 indexes each of them, isomorphic ones included), so :meth:`canonical` is the identity.

The network is NAS-Bench-201's macro skeleton: a 3x3 stem, three stages of ``cells_per_stage`` cells at
``channels``, ``2*channels``, ``4*channels`` joined by ResNet reduction blocks, then BN-ReLU, global
average pooling and a linear classifier.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from nas.arch import Arch, Value
from nas.errors import InvalidArchError
from nas.registry import register_space
from search_spaces.base import SearchSpace
from search_spaces.options import positive_int

#: The ops, cheapest first (the order choices list them in).
OPS = ("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")
#: ``(to_node, from_node)`` of each edge, in the order of the public string.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
LABELS = tuple(f"node{j}.in{i}" for j, i in EDGES)
#: The input-to-output paths of the cell, as indices into ``EDGES``: 0->3, 0->1->3, 0->2->3, 0->1->2->3.
_PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))
_PATH_FEATURES = sum((len(OPS) - 1) ** len(path) for path in _PATHS)


def edges_with_path(arch: Mapping[str, Value]) -> bool:
    """Whether the cell output is connected to its input through non-``none`` edges (else it outputs zeros)."""
    reached = {0}
    for j, i in EDGES:  # edges are ordered by target node, so one pass settles reachability
        if i in reached and arch[f"node{j}.in{i}"] != "none":
            reached.add(j)
    return 3 in reached


@register_space("nb201")
class NB201Space(SearchSpace):
    """NAS-Bench-201 cells; the public form is the benchmark's arch string."""

    name = "nb201"

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: int = 16,
        cells_per_stage: int = 5,
        resolution: int = 32,
    ) -> None:
        self.num_classes = positive_int("nb201", "num_classes", num_classes)
        self.in_channels = positive_int("nb201", "in_channels", in_channels)
        self.channels = positive_int("nb201", "channels", channels)
        self.cells_per_stage = positive_int("nb201", "cells_per_stage", cells_per_stage)
        self.resolution = positive_int("nb201", "resolution", resolution)

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


# ---------------------------------------------------------------------------------------------- network
class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out))


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


def _make_op(op: str, channels: int) -> nn.Module:
    if op == "none":
        return _Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if op == "nor_conv_1x1":
        return _ReLUConvBN(channels, channels, 1)
    if op == "nor_conv_3x3":
        return _ReLUConvBN(channels, channels, 3)
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
