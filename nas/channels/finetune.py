"""Finalising a channel configuration: fine-tuning with distillation from the base, and the uniform-width
baseline at the same measured latency.

Fine-tuning (``space.finetune``) trains the physically pruned network on the labels and on the base's soft
predictions (knowledge distillation, Hinton et al. 2015: ``(1 - kd_ratio) x CE + kd_ratio x T^2 x KL`` at
temperature ``T``), with the usual training machinery (:func:`nas.oneshot.retrain.train_network`). The
baselines of a run are fine-tuned the same way, so a comparison is between configurations, not training.

The uniform baseline is the width multiplier whose *measured* latency matches the chosen network's:
:func:`bisect_uniform` bisects the ratio on measurements (latency is monotone in the ratio up to noise and
the width grid's steps), and keeps the fastest-not-slower-than-asked configuration it measured, else the
nearest.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch import Arch, arch_id

#: Fine-tuning defaults (``space.finetune``): epochs, learning rate, distillation weight and temperature.
DEFAULT_FINETUNE = {"epochs": 3, "lr": 0.02, "kd_ratio": 0.5, "temperature": 2.0, "batch_size": 64}


class DistillationLoss:
    """``loss_fn`` for :func:`~nas.oneshot.retrain.train_network`: labels plus the teacher's soft predictions."""

    def __init__(self, teacher: nn.Module, *, kd_ratio: float = 0.5, temperature: float = 2.0) -> None:
        if not 0.0 <= kd_ratio <= 1.0:
            raise ValueError(f"kd_ratio={kd_ratio}: must lie in [0, 1]")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: must be > 0")
        # A frozen copy: the caller's network (the base, which later baselines are pruned from) stays trainable.
        self.teacher = copy.deepcopy(teacher).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.kd_ratio = kd_ratio
        self.temperature = temperature

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if self.kd_ratio > 0:
            with torch.no_grad():
                soft = F.softmax(self.teacher(x) / self.temperature, dim=1)
            kd = F.kl_div(F.log_softmax(logits / self.temperature, dim=1), soft, reduction="batchmean")
            loss = (1 - self.kd_ratio) * loss + self.kd_ratio * self.temperature ** 2 * kd
        return loss, logits


def bisect_uniform(space, measure_ms: Callable[[Arch], float], target_ms: float, *, iterations: int = 7,
                   lowest: float | None = None) -> tuple[Arch, float, list[dict]]:
    """The uniform width (every group at one ratio, :meth:`ChannelSpace.uniform`) whose measured latency is
    closest to ``target_ms`` from below (else the nearest measured), its latency, and every probe made."""
    lo = space.ratios[0] if lowest is None else lowest
    hi = 1.0
    probes: dict[str, dict] = {}

    def probe(ratio: float) -> dict:
        arch = space.uniform(ratio)
        aid = arch_id(arch)
        if aid not in probes:
            probes[aid] = {"ratio": ratio, "arch": arch, "latency_ms": float(measure_ms(arch))}
        return probes[aid]

    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if probe(mid)["latency_ms"] <= target_ms:
            lo = mid
        else:
            hi = mid
    probe(lo)
    under = [p for p in probes.values() if p["latency_ms"] <= target_ms]
    best = (max(under, key=lambda p: p["latency_ms"]) if under
            else min(probes.values(), key=lambda p: abs(p["latency_ms"] - target_ms)))
    return best["arch"], best["latency_ms"], sorted(probes.values(), key=lambda p: p["ratio"])
