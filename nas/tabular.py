"""Tabular search (``evaluator=tabular``): accuracy from a benchmark table, latency from the target.

No network is trained: every architecture the strategy asks for gets its accuracy looked up in a table
(NAS-Bench-201's CIFAR-10 test accuracies ship with the package) and its latency from the target (a table
target looks it up too; a measuring target such as ``cpu`` builds, exports and times the network). So the
true Pareto front is known and strategies can be scored exactly, on any table of the same form.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from nas.arch import Value
from nas.choice import choose, resolve_rule
from nas.errors import ConfigError
from nas.objectives import ACCURACY, LATENCY, Constraints, Trial, pareto_front
from nas.report import plot_pareto, run_files, write_json
from nas.tables import MetricTable, load_table, shipped_table, space_size
from search_spaces.base import SearchSpace


class TabularEvaluator:
    """Accuracy of an architecture read from a table column (in the table's units, e.g. percent)."""

    def __init__(self, space: SearchSpace, *, table: str | None = None, arch_column: str | None = None,
                 accuracy_column: str | None = None) -> None:
        if table is None:
            entry = shipped_table(space.name)
            if entry["accuracy_column"] is None:
                raise ConfigError(f"the table shipped for space {space.name!r} has no accuracy column; give "
                                  f"evaluator.table=FILE evaluator.arch_column=COL evaluator.accuracy_column=COL")
            table, arch_column = str(entry["path"]), str(entry["arch_column"])
            accuracy_column = accuracy_column or str(entry["accuracy_column"])
        if not arch_column or not accuracy_column:
            raise ConfigError("evaluator=tabular with evaluator.table=FILE needs evaluator.arch_column=COL and "
                              "evaluator.accuracy_column=COL")
        self.column = accuracy_column
        self.table: MetricTable = load_table(str(table), space, arch_column, (accuracy_column,))
        if not self.table.covers(space):
            raise ConfigError(
                f"table {table} has {len(self.table)} architectures but space {space.name!r} has {space_size(space)}: "
                f"a strategy would propose architectures it cannot look up. Tabular search needs a table covering "
                f"the whole space (e.g. NAS-Bench-201); for larger spaces use evaluator=supernet"
            )

    def accuracy(self, arch: Mapping[str, Value]) -> float:
        return self.table.lookup(arch, self.column)

    def describe(self) -> dict:
        return {"evaluator": "tabular", "table": str(self.table.path), "accuracy_column": self.column}


def check_budget_feasible(space: SearchSpace, target, constraints: Constraints) -> None:
    """A latency budget below the fastest architecture of a table target can never be met: say so up front."""
    if constraints.latency_ms is None or not hasattr(target, "fastest_ms"):
        return
    fastest = target.fastest_ms(space)
    if constraints.latency_ms < fastest:
        raise ConfigError(
            f"constraint.latency_ms={constraints.latency_ms} is infeasible: the fastest {space.name} architecture "
            f"takes {fastest:.4g} ms on {target.name}; set a budget of at least that"
        )


def run_tabular(strategy, evaluator: TabularEvaluator, target, space: SearchSpace, *, queries: int,
                seconds: float | None, progress: bool) -> list[Trial]:
    """Ask/tell until ``queries`` architectures are evaluated (or ``seconds`` have passed)."""
    history: list[Trial] = []
    started = time.time()
    with tqdm(total=queries, desc=f"search ({strategy.name}, tabular)", disable=not progress) as bar:
        while len(history) < queries and (seconds is None or time.time() - started < seconds):
            arch = strategy.ask()
            metrics = {"accuracy": evaluator.accuracy(arch), "latency_ms": target.latency_ms(space, arch)}
            strategy.tell(arch, metrics)
            history.append(Trial(arch=arch, metrics=metrics))
            bar.update(1)
    return history


def best_feasible(history: list[Trial], constraints: Constraints) -> tuple[Trial, bool]:
    """Most accurate trial within the budget (ties: the faster); the least violating one if none is."""
    feasible = [t for t in history if constraints.violation(t.metrics) == 0]
    if not feasible:
        return min(history, key=lambda t: constraints.violation(t.metrics)), False
    return max(feasible, key=lambda t: (t.metrics["accuracy"], -t.metrics["latency_ms"])), True


def run_tabular_search(cfg: DictConfig, run_dir: Path, *, space: SearchSpace, target, strategy_factory,
                       thread_policy: dict | None = None) -> Path:
    constraints = Constraints(latency_ms=cfg.constraint.latency_ms)
    evaluator_cfg = {k: v for k, v in OmegaConf.to_container(cfg.evaluator, resolve=True).items() if k != "name"}
    evaluator = TabularEvaluator(space, **evaluator_cfg)
    check_budget_feasible(space, target, constraints)
    strategy = strategy_factory()
    seconds = cfg.budget.get("seconds")
    clock = time.time()
    history = run_tabular(strategy, evaluator, target, space, queries=int(cfg.budget.queries),
                          seconds=None if seconds is None else float(seconds), progress=bool(cfg.progress))
    search_seconds = time.time() - clock
    source = getattr(target, "latency_source", "measured")
    for trial in history:
        trial.metrics.update(accuracy_source="table", latency_source=source)
    front = pareto_front(history, (ACCURACY, LATENCY), constraints)
    best, _ = best_feasible(history, constraints)
    # The network handed back: the same rule as a supernet run (final.choose), over every queried network;
    # table accuracies are exact, so no tolerance.
    choice = choose(history, rule=resolve_rule(cfg.final.get("choose", "auto"), budget_ms=constraints.latency_ms,
                                               objective=str(cfg.objective)),
                    budget_ms=constraints.latency_ms, tolerance=0.0, accuracy_scale=1.0, what="queried networks")
    results = {
        "space": space.name,
        "target": target.name,
        "strategy": strategy.name,
        "strategy_resolved": strategy.resolution(),  # requested, chosen, why, budget-sized settings
        "seed": int(cfg.seed),
        "objective": str(cfg.objective),
        "constraint": constraints.to_dict(),
        "evaluator": evaluator.describe(),
        "device": target.describe(),
        "queries": len(history),
        "best_accuracy": best.metrics["accuracy"],  # the highest (feasible) accuracy found: the search's score
        "best": {**_entry(space, choice.trial), **choice.record()},  # the network chosen by final.choose
        "pareto": [_entry(space, t) for t in front],
        "history": [_entry(space, t) for t in history],
        "strategy_state": strategy.state_dict(),
        "timings_s": {"search": round(search_seconds, 2)},
        "threads": thread_policy,
        "run_dir": str(run_dir),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    results["plot"] = plot_pareto(
        run_dir / "pareto.png", history=results["history"], pareto=results["pareto"], best=results["best"],
        budget_ms=constraints.latency_ms, accuracy_scale=1.0, history_label="queried",
        title=f"{space.name} on {target.name}: {strategy.name}, {len(history)} queries (tabular)")
    results["files"] = run_files(run_dir, "results.json", "pareto.png")
    return write_json(run_dir / "results.json", results)


def _entry(space: SearchSpace, trial: Trial) -> dict:
    return {"arch": trial.arch, "arch_id": trial.arch_id, "arch_str": space.to_public(trial.arch),
            **trial.metrics}
