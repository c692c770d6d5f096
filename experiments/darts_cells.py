"""DARTS on its own cell space with the embedded data: the derived cell trained from scratch against random
cells trained the same way (its accuracy percentile among them), and the search's CPU minutes.

    python experiments/darts_cells.py [--random 10] [--data digits] [--seed 0] [--parallel 2]

The search is the CLI default ``python -m nas.search +space=darts strategy=darts``; each random cell (a
uniform draw of the space, seeded) goes through the same command with ``arch=<its genotype>``, which skips
the search and trains, exports, measures and tests the given network exactly as the derived one is. Prints a
table and writes ``experiments/results/darts_cells.json``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from oneshot_runs import parameter_free, run_all, run_command, table
from results_io import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    from search_spaces.darts import DartsSpace

    base = ["strategy=darts", "+space=darts", f"data={args.data}", f"seed={args.seed}"]
    searched = run_command(base)
    space = DartsSpace()
    rng = np.random.default_rng(1000 + args.seed)
    randoms = [space.to_public(space.sample(rng)) for _ in range(args.random)]
    results = run_all([[*base, f'arch="{g}"'] for g in randoms], parallel=args.parallel)  # Hydra: double quotes
    rows = [{"cell": "derived", "genotype": searched["best"]["public"],
             "test_accuracy": round(100 * searched["best"]["test_accuracy"], 2),
             "parameter_free_ops": parameter_free("darts", searched["best"]["arch"])}]
    rows += [{"cell": f"random {i}", "genotype": r["best"]["public"],
              "test_accuracy": round(100 * r["best"]["test_accuracy"], 2),
              "parameter_free_ops": parameter_free("darts", r["best"]["arch"])} for i, r in enumerate(results)]
    derived = rows[0]["test_accuracy"]
    others = [r["test_accuracy"] for r in rows[1:]]
    summary = {"derived_test_accuracy": derived, "random_mean": round(float(np.mean(others)), 2),
               "random_best": max(others), "percentile_among_random": round(100 * float(np.mean(
                   [o <= derived for o in others])), 1),
               "search_cpu_min": round(searched["search"]["cpu_seconds"] / 60, 2),
               "search_wall_min": round(searched["search"]["seconds"] / 60, 2),
               "retrain_epochs": searched["retrain"]["epochs"]}
    print(table(rows, [("cell", "cell"), ("test_accuracy", "test acc %"), ("parameter_free_ops", "param-free ops"),
                       ("genotype", "genotype")]))
    print(summary)
    write_results("darts_cells.json", {"data": args.data, "seed": args.seed, "rows": rows, "summary": summary},
                  load_before=load)


if __name__ == "__main__":
    main()
