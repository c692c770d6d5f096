"""Finalisation pieces of a channel search: distillation fine-tuning and the uniform baseline's bisection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.channels.finetune import DistillationLoss, bisect_uniform
from search_spaces.channels import ChannelSpace


@pytest.fixture(scope="module")
def space() -> ChannelSpace:
    return ChannelSpace(base_config={"width_mult": 0.35})


def test_bisection_finds_the_widest_uniform_network_within_the_measured_latency(space):
    def measured(arch) -> float:  # a monotone latency: kept channels, in ms / 1000
        return sum(space.widths(arch).values()) / 1000

    target = measured(space.uniform(0.55))
    arch, ms, probes = bisect_uniform(space, measured, target)
    assert ms <= target and ms == measured(arch)
    # no uniform probe between it and the target was left unmeasured: it is the widest one measured under it
    assert all(p["latency_ms"] <= ms or p["latency_ms"] > target for p in probes)
    assert len(probes) <= 8


def test_bisection_reports_the_nearest_when_nothing_is_fast_enough(space):
    arch, ms, _ = bisect_uniform(space, lambda a: 1.0 + sum(space.widths(a).values()) / 1000, 0.5)
    assert ms > 0.5 and arch == space.uniform(space.ratios[0])


def test_distillation_pulls_the_student_towards_the_teacher():
    torch.manual_seed(0)
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    only_kd = DistillationLoss(teacher, kd_ratio=1.0, temperature=1.0)
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    gap = lambda: (student(x).softmax(1) - teacher(x).softmax(1)).abs().mean().item()  # noqa: E731
    before = gap()
    for step in range(100):
        opt.zero_grad()
        loss, _ = only_kd(student, x, y, step)
        loss.backward()
        opt.step()
    assert gap() < 0.5 * before
    with pytest.raises(ValueError, match="kd_ratio"):
        DistillationLoss(teacher, kd_ratio=1.5)
