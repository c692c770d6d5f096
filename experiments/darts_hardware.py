"""Hardware-aware differentiable search at three latency budgets, against the same search with MACs in place of
latency (``strategy.cost=macs``, the FLOPs-proxy baseline) at the same budget: the derived network's latency /
budget and its accuracy after training, per space and target.

    python experiments/darts_hardware.py [--settings fbnet:raspi4,mobilenet:arm_cpu] [--data digits]
        [--quantiles 0.25,0.5,0.75] [--parallel 2] [--out darts_hardware.json]

Budgets are quantiles of the latency of 200 random networks of the space on the target (the shipped table's
exact per-layer sums on raspi4, the ARM prior on arm_cpu). Every other setting is the CLI default
(``strategy=darts +space=S +target=T constraint.latency_ms=B``). Prints a table and writes
``experiments/results/darts_hardware.json`` (``--out``: another file, e.g. one per setting).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from oneshot_runs import run_all, table
from results_io import write_results


def budgets(space_name: str, target_name: str, quantiles: list[float], data_classes: int = 10) -> list[float]:
    from nas.oneshot.run import latency_model
    from nas.pipeline import make_space, make_target

    space = make_space({"name": space_name}, num_classes=data_classes, in_channels=1)
    target = make_target({"name": target_name})
    evaluate, _, _ = latency_model(space, target, None, progress=False)
    rng = np.random.default_rng(0)
    archs = [space.arch_of([int(rng.integers(len(d.options))) for d in space.decisions()]) for _ in range(200)]
    values = evaluate(archs)
    return [float(f"{np.quantile(values, q):.3g}") for q in quantiles]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="fbnet:raspi4,mobilenet:arm_cpu")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--quantiles", default="0.25,0.5,0.75")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", default="darts_hardware.json")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    quantiles = [float(q) for q in args.quantiles.split(",")]
    runs, jobs = [], []
    for setting in args.settings.split(","):
        space, target = setting.split(":")
        for budget in budgets(space, target, quantiles):
            for cost in ("latency", "macs"):
                runs.append({"space": space, "target": target, "budget_ms": budget, "cost": cost})
                jobs.append(["strategy=darts", f"+space={space}", f"+target={target}", f"data={args.data}",
                             f"constraint.latency_ms={budget}", f"strategy.cost={cost}"])
    rows = []
    for run, r in zip(runs, run_all(jobs, parallel=args.parallel)):
        best = r["best"]
        rows.append({**run, "latency_ms": round(best["latency_ms"], 3), "latency_source": best["latency_source"],
                     "latency_over_budget": round(best["latency_ms"] / run["budget_ms"], 3),
                     "test_accuracy": round(100 * best["test_accuracy"], 2), "val_accuracy": round(100 * best["accuracy"], 2),
                     "derivation": best["choice_reason"], "arch": best["public"],
                     "search_cpu_min": round(r["search"]["cpu_seconds"] / 60, 2),
                     "search_wall_min": round(r["search"]["seconds"] / 60, 2)})
    print(table(rows, [("space", "space"), ("target", "target"), ("budget_ms", "budget ms"), ("cost", "cost"),
                       ("latency_ms", "latency ms"), ("latency_over_budget", "latency/budget"),
                       ("test_accuracy", "test acc %"), ("search_cpu_min", "search CPU min")]))
    write_results(args.out, {"data": args.data, "quantiles": quantiles, "rows": rows}, load_before=load)


if __name__ == "__main__":
    main()
