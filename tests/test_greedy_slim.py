"""AutoSlim's greedy slimming on toy problems whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from nas.channels.greedy import greedy_slim
from nas.errors import ConfigError

OPTIONS = {f"g{i}": tuple(range(8, 65, 8)) for i in range(5)}
COST = {"g0": 1.0, "g1": 2.0, "g2": 0.5, "g3": 3.0, "g4": 1.5}  # ms per channel / 100
VALUE = {"g0": 3.0, "g1": 0.5, "g2": 2.0, "g3": 0.2, "g4": 1.0}  # accuracy lost per channel removed / 1000


def latency(arch) -> float:
    return sum(COST[k] * v for k, v in arch.items()) / 100


def accuracy(arch) -> float:
    return 1.0 - sum(VALUE[k] * (64 - v) for k, v in arch.items()) / 1000


FULL = {k: 64 for k in OPTIONS}


@pytest.mark.parametrize("refresh", [1, 4])
def test_greedy_slimming_reaches_every_budget(refresh):
    full = latency(FULL)
    budgets = [0.7 * full, 0.5 * full, 0.3 * full]
    found, steps = greedy_slim(options=OPTIONS, start=FULL, budgets_ms=budgets, accuracy=accuracy, latency=latency,
                               refresh=refresh)
    assert sorted(found) == sorted(budgets)
    for budget, arch in found.items():
        assert latency(arch) <= budget
    # the search stops as soon as a budget is met: the step before the 70 % one was still above it
    crossing = [s for s in steps if s.latency_ms <= budgets[0]][0]
    assert steps[steps.index(crossing) - 1].latency_ms > budgets[0]
    # the least accuracy per millisecond saved goes first: g3 (0.2 per 3.0)
    assert steps[0].label == "g3"
    # configurations for tighter budgets are narrower everywhere
    a70, a30 = found[budgets[0]], found[budgets[2]]
    assert all(a30[k] <= a70[k] for k in OPTIONS)


def test_lazy_scoring_gives_the_plain_greedy_answer_on_separable_costs():
    budgets = [0.4 * latency(FULL)]
    calls = {"n": 0}

    def counted(arch):
        calls["n"] += 1
        return accuracy(arch)

    plain, _ = greedy_slim(options=OPTIONS, start=FULL, budgets_ms=budgets, accuracy=counted, latency=latency,
                           refresh=1)
    plain_calls, calls["n"] = calls["n"], 0
    lazy, _ = greedy_slim(options=OPTIONS, start=FULL, budgets_ms=budgets, accuracy=counted, latency=latency,
                          refresh=10)
    assert lazy == plain
    assert calls["n"] < plain_calls


def test_a_budget_below_the_narrowest_network_is_refused_before_any_query():
    def never(arch):
        raise AssertionError("queried")

    floor = latency({k: 8 for k in OPTIONS})
    with pytest.raises(ConfigError, match="below the smallest network"):
        greedy_slim(options=OPTIONS, start=FULL, budgets_ms=[0.5 * floor], accuracy=never, latency=latency)


def test_random_toys_always_meet_their_budgets():
    rng = np.random.default_rng(0)
    for _ in range(5):
        cost = rng.uniform(0.1, 3, 5)
        value = rng.uniform(0.1, 3, 5)
        lat = lambda a: sum(c * a[f"g{i}"] for i, c in enumerate(cost)) / 100  # noqa: E731
        acc = lambda a: 1 - sum(v * (64 - a[f"g{i}"]) for i, v in enumerate(value)) / 1000  # noqa: E731
        budget = rng.uniform(0.2, 0.9) * lat(FULL)
        found, _ = greedy_slim(options=OPTIONS, start=FULL, budgets_ms=[budget], accuracy=acc, latency=lat, refresh=3)
        assert lat(found[budget]) <= budget
