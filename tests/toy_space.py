"""A tiny independent-choice space for strategy tests (no torch model needed for search logic)."""

from __future__ import annotations

import torch
from torch import nn

from search_spaces.base import SearchSpace


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
