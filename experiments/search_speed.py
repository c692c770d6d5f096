"""How many architectures per second predictor-scored evolution scores on the default OFA space.

    python experiments/search_speed.py [--queries 50000] [--population 100]

Fits the main command's two predictors (ridge on the encoding for accuracy, ridge on cost features with a
log target for latency) on 60 random subnets with made-up targets (speed does not depend on the values),
then runs the NSGA-II-style strategy through the same loop the main command uses. Prints and writes
``experiments/results/search_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nas.objectives import Constraints, objectives_for
from nas.pipeline import run_strategy, sample_distinct
from nas.registry import STRATEGIES
from nas.surrogate import fit_surrogate
from search_spaces.ofa import OFASpace

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=50_000)
    parser.add_argument("--population", type=int, default=100)
    args = parser.parse_args()
    space = OFASpace(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32))
    rng = np.random.default_rng(0)
    archs = sample_distinct(space, 60, rng)
    accuracy = fit_surrogate(space=space, archs=archs, values=rng.random(60), metric="accuracy", predictor="ridge",
                             features="encoding")
    latency = fit_surrogate(space=space, archs=archs, values=rng.random(60) + 0.1, metric="latency_ms",
                            predictor="ridge", features="cost", predictor_kwargs={"log_target": True})
    strategy = STRATEGIES.get("evolution")(space=space, objectives=objectives_for("pareto"), constraints=Constraints(),
                                           seed=0, population_size=args.population)
    started = time.perf_counter()
    run_strategy(strategy, accuracy, latency, queries=args.queries, progress=False)
    seconds = time.perf_counter() - started
    result = {"queries": args.queries, "population": args.population, "seconds": round(seconds, 2),
              "archs_per_second": round(args.queries / seconds)}
    print(f"{args.queries} archs in {seconds:.1f} s: {args.queries / seconds:.0f} archs/s")
    out = ROOT / "experiments" / "results" / "search_speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
