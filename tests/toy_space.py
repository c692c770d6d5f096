"""Tiny spaces for tests: ``ToySpace`` (independent choices, for strategies) and ``ElasticToySpace`` (a
weight-sharing conv net with elastic width/depth/resolution, for training and accuracy code)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.arch import Arch, Value
from search_spaces.base import SearchSpace, Supernet, WeightSharingSpace


class ToySpace(SearchSpace):
    """``n`` labels with values 0..k-1. 'accuracy' rises with the sum, 'latency' with the weighted sum."""

    name = "toy"

    def __init__(self, n: int = 6, k: int = 4) -> None:
        self.n, self.k = n, k

    def choices(self):
        return {f"x{i}": tuple(range(self.k)) for i in range(self.n)}

    def build(self, arch):
        return nn.Linear(self.n, 2)

    def input_shape(self, arch):
        return (1, 1, self.n)

    @staticmethod
    def metrics(arch) -> dict:
        values = [arch[f"x{i}"] for i in range(len(arch))]
        acc = sum(values) / (3.0 * len(values))
        lat = 1.0 + sum((i + 1) * v for i, v in enumerate(values))
        return {"accuracy": acc, "latency_ms": float(lat)}


def _dynamic_bn(bn: nn.BatchNorm2d, x: torch.Tensor, channels: int) -> torch.Tensor:
    """BatchNorm over the first ``channels`` channels, updating the shared buffers in place (as OFA)."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    return F.batch_norm(
        x, bn.running_mean[:channels], bn.running_var[:channels], bn.weight[:channels], bn.bias[:channels],
        bn.training, momentum, bn.eps,
    )


class ElasticToyBlock(nn.Module):
    """Inverted residual with elastic depthwise kernel (centre crop) and elastic expand (first channels)."""

    def __init__(self, width: int, kernels: tuple[int, ...], expands: tuple[int, ...]) -> None:
        super().__init__()
        hidden, k = width * max(expands), max(kernels)
        self.width = width
        self.expand_w = nn.Parameter(torch.randn(hidden, width, 1, 1) * (2 / width) ** 0.5)
        self.expand_bn = nn.BatchNorm2d(hidden)
        self.dw_w = nn.Parameter(torch.randn(hidden, 1, k, k) * (2 / k**2) ** 0.5)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.project_w = nn.Parameter(torch.randn(width, hidden, 1, 1) * (1 / hidden) ** 0.5)
        self.project_bn = nn.BatchNorm2d(width)
        self.kernel, self.expand = k, max(expands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, k = self.width * self.expand, self.kernel
        trim = (self.dw_w.shape[-1] - k) // 2
        h = F.relu(_dynamic_bn(self.expand_bn, F.conv2d(x, self.expand_w[:c]), c))
        dw = self.dw_w[:c, :, trim : trim + k, trim : trim + k]
        h = F.relu(_dynamic_bn(self.dw_bn, F.conv2d(h, dw, padding=k // 2, groups=c), c))
        return x + self.project_bn(F.conv2d(h, self.project_w[:, :c]))


class ElasticToySupernet(Supernet):
    def __init__(self, space: ElasticToySpace) -> None:
        super().__init__()
        self.space = space
        w = space.width
        self.stem = nn.Sequential(
            nn.Conv2d(space.in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()
        )
        self.blocks = nn.ModuleList(ElasticToyBlock(w, space.kernels, space.expands) for _ in range(space.max_depth))
        self.dropout = nn.Dropout(0.1)  # exercises the seeded global RNG during training
        self.classifier = nn.Linear(w, space.num_classes)
        self.depth = space.max_depth

    def set_active(self, arch: Mapping[str, Value]) -> None:
        arch = self.space.validate(arch)
        self.depth = int(arch["depth"])
        for j, block in enumerate(self.blocks):
            block.kernel, block.expand = int(arch[f"block{j}.kernel"]), int(arch[f"block{j}.expand"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks[: self.depth]:
            x = block(x)
        return self.classifier(self.dropout(x.mean(dim=(2, 3))))

    def extract(self, arch: Mapping[str, Value]) -> nn.Module:
        sub = copy.deepcopy(self)  # a standalone copy: weights and BatchNorm buffers are its own
        sub.set_active(arch)
        return sub


class ElasticToySpace(WeightSharingSpace):
    name = "toy_elastic"

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        resolutions: tuple[int, ...] = (6, 8),
        width: int = 8,
        max_depth: int = 2,
    ) -> None:
        self.num_classes, self.in_channels, self.resolutions = num_classes, in_channels, resolutions
        self.width, self.max_depth = width, max_depth
        self.kernels, self.expands, self.depths = (3, 5), (1, 2), tuple(range(1, max_depth + 1))

    def choices(self) -> dict[str, tuple[Value, ...]]:
        out: dict[str, tuple[Value, ...]] = {"resolution": self.resolutions, "depth": self.depths}
        for j in range(self.max_depth):
            out[f"block{j}.kernel"] = self.kernels
            out[f"block{j}.expand"] = self.expands
        return out

    def canonical(self, arch: Mapping[str, Value]) -> Arch:
        out = dict(arch)
        for j in range(int(arch["depth"]), self.max_depth):
            out[f"block{j}.kernel"], out[f"block{j}.expand"] = self.kernels[0], self.expands[0]
        return out

    def input_shape(self, arch: Mapping[str, Value]) -> tuple[int, int, int]:
        return (self.in_channels, int(arch["resolution"]), int(arch["resolution"]))

    def build(self, arch: Mapping[str, Value]) -> nn.Module:
        return self.supernet().extract(arch)

    def supernet(self) -> ElasticToySupernet:
        return ElasticToySupernet(self)

    def elastic_dims(self) -> tuple[str, ...]:
        return ("resolution", "kernel", "depth", "expand")

    def sample_elastic(self, rng: np.random.Generator, elastic: Sequence[str]) -> Arch:
        arch = {}
        for label, options in self.choices().items():
            dim = label.rsplit(".", 1)[-1]
            arch[label] = options[int(rng.integers(len(options)))] if dim in elastic else options[-1]
        return self.canonical(arch)


def make_supernet(space: ElasticToySpace, seed: int = 0) -> ElasticToySupernet:
    torch.manual_seed(seed)
    return space.supernet()
