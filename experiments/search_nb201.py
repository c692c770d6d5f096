"""Search strategies scored exactly on NAS-Bench-201: CIFAR-10 test accuracy and Raspberry Pi 4 latency tables.

    python experiments/search_nb201.py [--seeds 20] [--budgets 150,500] [--strategies a,b,...] [--jobs 2]
                                      [--accuracy-column cifar10_test_accuracy] [--device raspi4] [--table FILE]

Three problems, every strategy, ``--seeds`` seeds each, through the same ask/tell interface the CLI uses:

- ``accuracy``: maximise accuracy; best found (mean +- std), regret to the table's optimum, share of seeds
  that found the optimum;
- ``constrained``: maximise accuracy with latency under the median latency of the cells; best feasible
  found against the true best feasible;
- ``pareto``: accuracy and latency; hypervolume of the found front as a fraction of the exact front's, over
  cells with a path from input to output, reference point (largest latency, 90 % accuracy).

No strategy is told the budget, so a strategy's first 150 queries are the same whether it runs for 150 or
500: each run goes to the largest budget and is scored at every budget on its prefix. Prints a table and
writes ``experiments/results/search_nb201.json``.
"""

from __future__ import annotations

import os

# One BLAS thread per worker: the runs go in parallel processes, and oversubscribed BLAS threads made the
# strategies' small solves 100x slower here.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nas.arch import arch_id
from nas.objectives import Constraints, hypervolume_2d, non_dominated_sort, objectives_for
from nas.registry import STRATEGIES
from nas.tables import MetricTable, shipped_table
from search_spaces.nb201 import NB201Space, edges_with_path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STRATEGIES = ("random", "regularized_evolution", "evolution", "reinforce", "optuna_tpe", "optuna_nsga2", "guided")
#: The CLI defaults, except NSGA-II's population, sized for budgets of a few hundred queries.
STRATEGY_KWARGS = {"evolution": {"population_size": 20}}
PROBLEMS = ("accuracy", "constrained", "pareto")


def load(table: str | None, accuracy_column: str, device: str) -> tuple[NB201Space, dict[str, tuple[float, float]], list]:
    space = NB201Space()
    entry = shipped_table("nb201")
    path = table or str(entry["path"])
    metrics = MetricTable(path, space=space, arch_column=str(entry["arch_column"]), columns=(accuracy_column, device))
    lookup = {arch_id(a): (metrics.lookup(a, accuracy_column), metrics.lookup(a, device)) for a in metrics.archs}
    return space, lookup, metrics.archs


def run_one(args: tuple) -> dict:
    name, problem, seed, budget, table, accuracy_column, device, budget_ms = args
    space, lookup, _ = load(table, accuracy_column, device)
    constraints = Constraints(latency_ms=budget_ms if problem == "constrained" else None)
    objective = "pareto" if problem == "pareto" else "accuracy"
    strategy = STRATEGIES.get(name)(space=space, objectives=objectives_for(objective), constraints=constraints,
                                    seed=seed, **STRATEGY_KWARGS.get(name, {}))
    trace = []
    started = time.time()
    for _ in range(budget):
        arch = strategy.ask()
        acc, lat = lookup[arch_id(arch)]
        strategy.tell(arch, {"accuracy": acc, "latency_ms": lat})
        trace.append((acc, lat))
    return {"strategy": name, "problem": problem, "seed": seed, "trace": trace, "seconds": time.time() - started}


def score(problem: str, trace: np.ndarray, truth: dict) -> float:
    acc, lat = trace[:, 0], trace[:, 1]
    if problem == "accuracy":
        return float(acc.max())
    if problem == "constrained":
        feasible = lat <= truth["budget_ms"]
        return float(acc[feasible].max()) if feasible.any() else float("nan")
    losses = np.stack([-acc, lat], axis=1)
    return hypervolume_2d(losses, truth["reference"]) / truth["exact_hv"]


def ground_truth(space, lookup, archs) -> dict:
    values = np.array([lookup[arch_id(a)] for a in archs])
    valid = np.array([edges_with_path(a) for a in archs])
    budget_ms = float(np.median(values[valid, 1]))
    reference = (-90.0, float(values[valid, 1].max()))
    losses = np.stack([-values[valid, 0], values[valid, 1]], axis=1)
    front = losses[non_dominated_sort(losses)[0]]
    front = np.unique(front, axis=0)
    return {"optimum": float(values[:, 0].max()), "budget_ms": budget_ms,
            "best_feasible": float(values[values[:, 1] <= budget_ms, 0].max()), "reference": reference,
            "exact_hv": hypervolume_2d(losses, reference), "exact_front_points": int((front[:, 0] < -90).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", default="150,500")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--table", default=None, help="a table of the shipped form (default: the shipped one)")
    parser.add_argument("--accuracy-column", default="cifar10_test_accuracy")
    parser.add_argument("--device", default="raspi4")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results" / "search_nb201.json"))
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    strategies = args.strategies.split(",")
    problems = args.problems.split(",")
    space, lookup, archs = load(args.table, args.accuracy_column, args.device)
    truth = ground_truth(space, lookup, archs)
    print(f"optimum {truth['optimum']:.2f}; budget {truth['budget_ms']:.2f} ms (median), best feasible "
          f"{truth['best_feasible']:.2f}; exact front {truth['exact_front_points']} points")

    jobs = [(s, p, seed, max(budgets), args.table, args.accuracy_column, args.device, truth["budget_ms"])
            for s in strategies for p in problems for seed in range(args.seeds)]
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for result in tqdm(pool.map(run_one, jobs), total=len(jobs), desc="strategy x problem x seed runs"):
            runs.append(result)

    rows = []
    for s in strategies:
        for p in problems:
            mine = [r for r in runs if r["strategy"] == s and r["problem"] == p]
            for b in budgets:
                scores = np.array([score(p, np.array(r["trace"][:b]), truth) for r in mine])
                row = {"strategy": s, "problem": p, "budget": b, "mean": float(np.nanmean(scores)),
                       "std": float(np.nanstd(scores)), "seeds": len(scores),
                       "seconds_per_run": float(np.mean([r["seconds"] for r in mine]))}
                if p == "accuracy":
                    row["regret"] = truth["optimum"] - row["mean"]
                    row["found_optimum"] = float(np.mean(scores >= truth["optimum"] - 1e-9))
                if p == "constrained":
                    row["gap_to_best_feasible"] = truth["best_feasible"] - row["mean"]
                    row["found_best_feasible"] = float(np.mean(scores >= truth["best_feasible"] - 1e-9))
                rows.append(row)

    print_table(rows, budgets, strategies)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": "python experiments/search_nb201.py " + " ".join(
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "out"), "truth": truth,
        "strategy_kwargs": STRATEGY_KWARGS, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


def print_table(rows: list[dict], budgets: list[int], strategies: list[str]) -> None:
    def cell(s: str, p: str, b: int) -> str:
        row = next((r for r in rows if r["strategy"] == s and r["problem"] == p and r["budget"] == b), None)
        if row is None:
            return "-"
        if p == "accuracy":
            return f"{row['mean']:.2f} ± {row['std']:.2f} ({100 * row['found_optimum']:.0f}% opt)"
        if p == "constrained":
            return f"{row['mean']:.2f} ± {row['std']:.2f} ({100 * row['found_best_feasible']:.0f}% best)"
        return f"{row['mean']:.3f} ± {row['std']:.3f}"

    header = ["strategy"] + [f"{p} @{b}" for p in ("accuracy", "constrained", "pareto") for b in budgets]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for s in strategies:
        cells = [cell(s, p, b) for p in ("accuracy", "constrained", "pareto") for b in budgets]
        print(f"| {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
