"""Every strategy at its CLI defaults, scored exactly on NAS-Bench-201 against every shipped latency column.

    python experiments/search_nb201.py [--seeds 10] [--seeds-other 3] [--budgets 100,150,300,1000]
        [--devices all] [--full-device raspi4] [--slow-cap 300] [--strategies a,b,...] [--jobs 1]

Strategies are built as ``python -m nas.search +space=nb201 evaluator=tabular strategy=NAME
budget.queries=B`` builds them (``experiments/strategy_bench.py``): the default ``auto`` and every registered
strategy, nothing overridden, each budget its own run (population-like settings are sized to the budget).
Problems, for each latency column the table ships (``nas.tables.TABLE_DEVICES``):

- ``accuracy``: maximise CIFAR-10 test accuracy (the latency column plays no part, so it is run once);
- ``constrained:DEVICE``: maximise accuracy with DEVICE latency under the median of the cells; the score is
  the best feasible accuracy found (%);
- ``pareto:DEVICE``: accuracy and DEVICE latency; the hypervolume of the found front as a fraction of the
  exact front's, over cells with a path from input to output, reference point (largest latency, 90 %).

``--seeds`` seeds on the ``--full-device`` column (and ``accuracy``), ``--seeds-other`` on the other columns.
guided (and auto, which resolves to it here) and optuna_tpe cost 25-90 CPU-seconds per 1,000-query run, so
on the other columns their budgets above ``--slow-cap`` are not run (``capped`` in the JSON says which).
Acceptance: on every setting and budget, auto's mean >= the best other strategy's mean - 0.1 (percentage
points for accuracy; 0.001 of the exact hypervolume for the Pareto fraction); each exception is printed
and written. Prints tables and writes ``experiments/results/search_nb201.json``.
"""

from __future__ import annotations

import os

# One BLAS thread per worker: oversubscribed BLAS threads made the strategies' small solves 100x slower here.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import functools

import numpy as np

import strategy_bench as bench
from nas.arch import arch_id
from nas.objectives import Constraints, hypervolume_2d
from nas.tables import TABLE_DEVICES, MetricTable, shipped_table
from results_io import write_results
from search_spaces.nb201 import NB201Space, edges_with_path

TOLERANCE = {"accuracy": 0.1, "constrained": 0.1, "pareto": 0.001}
UNITS = {"accuracy": "pp", "constrained": "pp", "pareto": "fraction of the exact hypervolume"}


@functools.lru_cache(maxsize=None)
def table(path: str | None, accuracy_column: str) -> tuple[NB201Space, dict, np.ndarray, np.ndarray]:
    """The space, arch id -> row, accuracies and the latency of every column (rows x devices)."""
    space = NB201Space()
    entry = shipped_table("nb201")
    metrics = MetricTable(path or str(entry["path"]), space=space, arch_column=str(entry["arch_column"]),
                          columns=(accuracy_column, *TABLE_DEVICES))
    rows = {arch_id(a): i for i, a in enumerate(metrics.archs)}
    latency = np.stack([metrics.values[d] for d in TABLE_DEVICES], axis=1)
    valid = np.array([edges_with_path(a) for a in metrics.archs])
    return space, rows, metrics.values[accuracy_column], latency, valid


def truth(path: str | None, accuracy_column: str, device: str) -> dict:
    _, _, acc, latency, valid = table(path, accuracy_column)
    lat = latency[:, TABLE_DEVICES.index(device)]
    budget_ms = float(np.median(lat[valid]))
    reference = (-90.0, float(lat[valid].max()))
    losses = np.stack([-acc[valid], lat[valid]], axis=1)
    order = np.lexsort((losses[:, 0], losses[:, 1]))  # by latency, then accuracy: a running best gives the front
    best, front = np.inf, 0
    for first, _ in losses[order]:
        if first < best:
            best, front = first, front + (first < -90)
    return {"optimum": float(acc.max()), "budget_ms": budget_ms, "best_feasible": float(acc[lat <= budget_ms].max()),
            "reference": reference, "exact_hv": hypervolume_2d(losses, reference), "exact_front_points": int(front)}


def problem_of(setting: str) -> tuple[str, str]:
    kind, _, device = setting.partition(":")
    return kind, device or "raspi4"


def make_kwargs(setting: str, seed: int, args) -> callable:
    kind, device = problem_of(setting)
    space = table(args.table, args.accuracy_column)[0]
    constraints = Constraints(latency_ms=truth(args.table, args.accuracy_column, device)["budget_ms"]
                              if kind == "constrained" else None)
    objective = "pareto" if kind == "pareto" else "accuracy"
    return lambda budget: {"space": space, "objective": objective, "constraints": constraints, "seed": seed,
                           "budget": budget}


def run_one(job: tuple) -> dict:
    setting, seed, run, table_path, accuracy_column = job
    kind, device = problem_of(setting)
    space, rows, acc, latency, _ = table(table_path, accuracy_column)
    column = TABLE_DEVICES.index(device)
    t = truth(table_path, accuracy_column, device)
    serve = run["serves"][0]
    constraints = Constraints(latency_ms=t["budget_ms"] if kind == "constrained" else None)
    strategy = bench.cli_strategy(serve[0], space=space, objective="pareto" if kind == "pareto" else "accuracy",
                                  constraints=constraints, seed=seed, budget=serve[1])

    def evaluate(arch):
        i = rows[arch_id(arch)]
        return float(acc[i]), float(latency[i, column])

    trace, seconds = bench.ask_tell(strategy, evaluate, run["budget"])
    return {"setting": setting, "seed": seed, "run": run, "trace": trace, "cpu_seconds": seconds}


def score(kind: str, trace: np.ndarray, t: dict) -> float:
    acc, lat = trace[:, 0], trace[:, 1]
    if kind == "accuracy":
        return float(acc.max())
    if kind == "constrained":
        feasible = lat <= t["budget_ms"]
        return float(acc[feasible].max()) if feasible.any() else float("nan")
    return hypervolume_2d(np.stack([-acc, lat], axis=1), t["reference"]) / t["exact_hv"]


def main() -> None:
    parser = bench.common_parser(__doc__.splitlines()[0], out="search_nb201.json")
    parser.add_argument("--problems", default="accuracy,constrained,pareto")
    parser.add_argument("--table", default=None, help="a table of the shipped form (default: the shipped one)")
    parser.add_argument("--accuracy-column", default="cifar10_test_accuracy")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    budgets = [int(b) for b in args.budgets.split(",")]
    names = args.strategies.split(",")
    devices = list(TABLE_DEVICES) if args.devices == "all" else args.devices.split(",")
    settings = []
    for kind in args.problems.split(","):
        settings += [kind] if kind == "accuracy" else [f"{kind}:{d}" for d in devices]

    jobs, resolutions, capped, seeds = [], {}, [], {}
    for setting in settings:
        full = setting == "accuracy" or problem_of(setting)[1] == args.full_device
        seeds[setting] = args.seeds if full else args.seeds_other
        for seed in range(seeds[setting]):
            wanted = [(n, b) for n in names for b in budgets if full or n not in bench.SLOW or b <= args.slow_cap]
            if seed == 0:
                capped += [{"setting": setting, "strategy": n, "budget": b} for n in names for b in budgets
                           if (n, b) not in wanted]
            runs, res = bench.plan(wanted, make_kwargs(setting, seed, args))
            if seed == 0:
                resolutions[setting] = {f"{n}@{b}": r for (n, b), r in res.items()}
            jobs += [(setting, seed, run, args.table, args.accuracy_column) for run in runs]
    print(f"{len(settings)} settings, {len(jobs)} runs, {sum(j[2]['budget'] for j in jobs)} queries")
    results = bench.execute(jobs, run_one, processes=args.jobs, desc="runs")

    rows = []
    for setting in settings:
        kind, device = problem_of(setting)
        t = truth(args.table, args.accuracy_column, device)
        for n in names:
            for b in budgets:
                scores = [score(kind, np.array(r["trace"][:b]), t) for r in results
                          if r["setting"] == setting and [n, b] in r["run"]["serves"]]
                if not scores:
                    continue
                scores = np.array(scores)
                cpu = [r["cpu_seconds"] for r in results if r["setting"] == setting and [n, b] in r["run"]["serves"]]
                row = {"setting": setting, "strategy": n, "budget": b,
                       "resolved": resolutions[setting][f"{n}@{b}"]["name"],
                       "mean": float(np.nanmean(scores)), "std": float(np.nanstd(scores)), "seeds": len(scores),
                       "scores": scores.tolist(), "cpu_seconds_per_run": float(np.mean(cpu))}
                if kind == "accuracy":
                    row["found_optimum"] = float(np.mean(scores >= t["optimum"] - 1e-9))
                if kind == "constrained":
                    row["found_best_feasible"] = float(np.mean(scores >= t["best_feasible"] - 1e-9))
                rows.append(row)
    checks = []
    for kind in ("accuracy", "constrained", "pareto"):
        checks += bench.acceptance([r for r in rows if problem_of(r["setting"])[0] == kind],
                                   tolerance=TOLERANCE[kind], unit=UNITS[kind])
    bench.print_rows(rows, settings=settings, budgets=budgets, digits=3)
    bench.print_acceptance(checks)
    payload = bench.payload(truth={s: truth(args.table, args.accuracy_column, problem_of(s)[1]) for s in settings}, seeds=seeds, budgets=budgets, names=names, capped=capped,
                            tolerance={k: {"value": v, "unit": UNITS[k]} for k, v in TOLERANCE.items()}, resolutions=resolutions, rows=rows, checks=checks, results=results)
    print(f"wrote {write_results(args.out, payload, load_before=load_before)}")


if __name__ == "__main__":
    main()
