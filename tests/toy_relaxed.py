"""A tiny relaxable space for the one-shot strategy's tests: two layers, each skip / 1x1 conv / 3x3 conv."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.arch import Arch, Value
from search_spaces.base import SearchSpace
from search_spaces.relax import CandidateMix, Gates, RelaxableSpace, RelaxedSupernet, label_decisions

OPS = ("skip", "conv1", "conv3")
LABELS = ("layer0", "layer1")
WIDTH = 4


def _op(name: str) -> nn.Module:
    if name == "skip":
        return nn.Identity()
    k = int(name[-1])
    return nn.Sequential(nn.Conv2d(WIDTH, WIDTH, k, padding=k // 2), nn.Tanh())


class _Net(nn.Module):
    def __init__(self, ops: Sequence[str], num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, WIDTH, 3, padding=1)
        self.body = nn.ModuleList(_op(o) for o in ops)
        self.head = nn.Linear(WIDTH, num_classes)

    def forward(self, x):
        x = torch.tanh(self.stem(x))
        for op in self.body:
            x = op(x)
        return self.head(x.mean(dim=(2, 3)))


class ToyRelaxed(RelaxedSupernet):
    def __init__(self, space: ToyRelaxSpace) -> None:
        super().__init__()
        self.space = space
        self.decisions = space.decisions()
        self.stem = nn.Conv2d(1, WIDTH, 3, padding=1)
        self.mixed = nn.ModuleList(CandidateMix([_op(o) for o in OPS]) for _ in LABELS)
        self.head = nn.Linear(WIDTH, space.num_classes)

    def forward(self, x, gates: Gates):
        x = torch.tanh(self.stem(x))
        for d, mixed in enumerate(self.mixed):
            x = mixed(x, gates.weights[d], None if gates.active is None else gates.active[d], gates.aux_skip)
        return self.head(x.mean(dim=(2, 3)))

    def gates_of(self, arch):
        return Gates.one_hot(self.decisions, self.space.selection_of(arch))

    def extract(self, arch):
        net = _Net([arch[label] for label in LABELS], self.space.num_classes)
        net.stem.load_state_dict(self.stem.state_dict())
        net.head.load_state_dict(self.head.state_dict())
        for block, mixed, label in zip(net.body, self.mixed, LABELS):
            block.load_state_dict(mixed.candidates[OPS.index(arch[label])].state_dict())
        return net


class ToyRelaxSpace(SearchSpace, RelaxableSpace):
    name = "toy_relaxed"
    relax_steps = 6

    def __init__(self, *, num_classes: int = 3, resolution: int = 8) -> None:
        self.num_classes, self.resolution = num_classes, resolution

    def choices(self) -> dict[str, tuple[Value, ...]]:
        return {label: OPS for label in LABELS}

    def build(self, arch: Mapping[str, Value]) -> nn.Module:
        arch = self.validate(arch)
        return _Net([arch[label] for label in LABELS], self.num_classes)

    def input_shape(self, arch):
        return (1, self.resolution, self.resolution)

    def decisions(self):
        return label_decisions(self.choices())

    def relax(self, *, partial_channels: int = 1) -> ToyRelaxed:
        return ToyRelaxed(self)

    def arch_of(self, selection: Sequence[int]) -> Arch:
        return self.validate({label: OPS[int(i)] for label, i in zip(LABELS, selection)})


def toy_data(n: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    X = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    X[:, 0, 2:5, 2:5] += y.view(-1, 1, 1).float()  # learnable: a bright patch whose level is the class
    return X, y
