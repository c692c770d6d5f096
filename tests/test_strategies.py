"""One contract for every registered strategy, plus evolution-specific checks."""

import json

import numpy as np
import pytest

from nas.arch import arch_id
from nas.objectives import ACCURACY, LATENCY, Constraints, Trial, crowding_distance, non_dominated_sort, pareto_front
from nas.registry import STRATEGIES, list_strategies
from tests.toy_space import ToySpace

OBJECTIVE_SETS = {"pareto": (ACCURACY, LATENCY), "accuracy": (ACCURACY,)}
#: The ask/tell (multi-trial) strategies this contract covers; one-shot ones (strategy=darts) and the channel-search
#: family (autoslim, amc) drive their own loops and have their own: tests/test_darts.py, test_channel_strategies.py.
ASK_TELL = [n for n in list_strategies() if not getattr(STRATEGIES.get(n), "one_shot", False)
            and not getattr(STRATEGIES.get(n), "channel_search", False)]


def run(strategy, n):
    history = []
    for _ in range(n):
        arch = strategy.ask()
        metrics = ToySpace.metrics(arch)
        strategy.tell(arch, metrics)
        history.append(Trial(arch=arch, metrics=metrics))
    return history


def make(name, seed=0, objectives="pareto", constraints=None, **kw):
    extra = {"population_size": 10} if name == "evolution" else {}
    return STRATEGIES.get(name)(space=ToySpace(), objectives=OBJECTIVE_SETS[objectives], constraints=constraints, seed=seed, **extra, **kw)


@pytest.mark.parametrize("name", ASK_TELL)
def test_deterministic_under_seed_and_valid_archs(name):
    space = ToySpace()
    a = [t.arch_id for t in run(make(name, seed=3), 60)]
    b = [t.arch_id for t in run(make(name, seed=3), 60)]
    c = [t.arch_id for t in run(make(name, seed=4), 60)]
    assert a == b
    assert a != c
    for trial in run(make(name), 20):
        assert space.validate(trial.arch) == trial.arch


@pytest.mark.parametrize("name", ASK_TELL)
def test_resume_from_state_dict_equals_uninterrupted(name):
    full = [t.arch_id for t in run(make(name, seed=1), 50)]
    first = make(name, seed=1)
    part = [t.arch_id for t in run(first, 23)]
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    resumed = make(name, seed=99)
    resumed.load_state_dict(state)
    part += [t.arch_id for t in run(resumed, 27)]
    assert part == full


@pytest.mark.parametrize("name", ASK_TELL)
@pytest.mark.parametrize("budget", [40, 1000])
def test_contract_holds_when_told_the_budget(name, budget):
    """Sized to a budget (smaller or larger than the run), a strategy is still seeded, valid and resumable."""
    a = [t.arch_id for t in run(make(name, seed=3, budget=budget), 50)]
    assert a == [t.arch_id for t in run(make(name, seed=3, budget=budget), 50)]
    first = make(name, seed=3, budget=budget)
    part = [t.arch_id for t in run(first, 21)]
    resumed = make(name, seed=8, budget=budget)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert part + [t.arch_id for t in run(resumed, 29)] == a
    assert all(ToySpace().validate(t.arch) == t.arch for t in run(make(name, budget=budget), 20))


@pytest.mark.parametrize("name", ASK_TELL)
def test_tell_rejects_missing_objective(name):
    strategy = make(name)
    arch = strategy.ask()
    with pytest.raises(ValueError, match="latency_ms"):
        strategy.tell(arch, {"accuracy": 0.5})


def test_evolution_beats_random_on_constrained_toy_problem():
    budget = Constraints(latency_ms=30.0)
    space = ToySpace()
    # True best feasible accuracy by enumeration of the 4^6 space.
    import itertools

    best_true = max(
        ToySpace.metrics(dict(zip(space.choices(), values)))["accuracy"]
        for values in itertools.product(range(4), repeat=6)
        if ToySpace.metrics(dict(zip(space.choices(), values)))["latency_ms"] <= 30.0
    )
    found = {}
    for name in ("evolution", "random"):
        scores = []
        for seed in range(5):
            history = run(make(name, seed=seed, objectives="accuracy", constraints=budget), 300)
            feasible = [t.metrics["accuracy"] for t in history if t.metrics["latency_ms"] <= 30.0]
            scores.append(max(feasible))
        found[name] = float(np.mean(scores))
    assert found["evolution"] >= found["random"]
    assert found["evolution"] >= best_true - 1e-9 or found["evolution"] > found["random"]


def test_guided_finds_best_feasible_at_the_edge_of_the_budget():
    """The toy's latency is linear in the choices, so the log-latency model guided fits is a little off, and the
    best feasible archs sit exactly on the budget: a filter on the predicted latency would discard about half
    of them; weighing candidates by their probability of meeting the budget finds them."""
    import itertools

    space, budget = ToySpace(), 30.0
    grid = [dict(zip(space.choices(), values)) for values in itertools.product(range(4), repeat=6)]
    feasible = [ToySpace.metrics(a) for a in grid if ToySpace.metrics(a)["latency_ms"] <= budget]
    best_true = max(m["accuracy"] for m in feasible)
    assert any(m["latency_ms"] == budget and m["accuracy"] == best_true for m in feasible)  # on the edge
    for seed in range(10):  # with a filter on predicted latency, 1 seed in 10 missed it in 30 queries
        history = run(make("guided", seed=seed, objectives="accuracy", constraints=Constraints(latency_ms=budget)), 30)
        found = max(t.metrics["accuracy"] for t in history if t.metrics["latency_ms"] <= budget)
        assert found == pytest.approx(best_true), f"seed {seed}"


def test_evolution_front_approaches_true_front():
    import itertools

    space = ToySpace(n=4, k=4)
    everything = [Trial(arch=dict(zip(space.choices(), v)), metrics=ToySpace.metrics(dict(zip(space.choices(), v))))
                  for v in itertools.product(range(4), repeat=4)]
    true_front = {t.arch_id for t in pareto_front(everything, (ACCURACY, LATENCY))}
    strategy = STRATEGIES.get("evolution")(space=space, objectives=(ACCURACY, LATENCY), seed=0, population_size=20)
    history = []
    for _ in range(200):
        arch = strategy.ask()
        metrics = ToySpace.metrics(arch)
        strategy.tell(arch, metrics)
        history.append(Trial(arch=arch, metrics=metrics))
    found = pareto_front(history, (ACCURACY, LATENCY))
    true_points = {(round(t.metrics["accuracy"], 9), t.metrics["latency_ms"]) for t in everything if t.arch_id in true_front}
    found_points = {(round(t.metrics["accuracy"], 9), t.metrics["latency_ms"]) for t in found}
    assert len(found_points & true_points) >= 0.8 * len(true_points)


def test_non_dominated_sort_and_constraint_domination():
    losses = np.array([[0.0, 3.0], [1.0, 1.0], [3.0, 0.0], [2.0, 2.0], [0.5, 0.5]])
    fronts = non_dominated_sort(losses)
    assert sorted(fronts[0].tolist()) == [0, 2, 4]
    assert sorted(fronts[1].tolist()) == [1]
    assert sorted(fronts[2].tolist()) == [3]
    # Point 4 infeasible: every feasible point dominates it, infeasible ranked by violation.
    fronts = non_dominated_sort(losses, violations=np.array([0, 0, 0, 0.5, 0.1]))
    assert sorted(fronts[0].tolist()) == [0, 1, 2]
    assert fronts[-2].tolist() == [4] and fronts[-1].tolist() == [3]


def test_crowding_distance_boundaries_infinite():
    d = crowding_distance(np.array([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]]))
    assert np.isinf(d[0]) and np.isinf(d[2]) and d[1] == pytest.approx(2.0)


def test_pareto_front_dedupes_and_sorts_by_latency():
    trials = [
        Trial(arch={"a": 1}, metrics={"accuracy": 0.9, "latency_ms": 5.0}),
        Trial(arch={"a": 2}, metrics={"accuracy": 0.8, "latency_ms": 2.0}),
        Trial(arch={"a": 3}, metrics={"accuracy": 0.7, "latency_ms": 3.0}),  # dominated
        Trial(arch={"a": 1}, metrics={"accuracy": 0.9, "latency_ms": 5.0}),  # duplicate
    ]
    front = pareto_front(trials, (ACCURACY, LATENCY))
    assert [t.arch["a"] for t in front] == [2, 1]
    assert arch_id({"a": 2}) == front[0].arch_id
