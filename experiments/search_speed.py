"""How many architectures per second predictor-scored evolution scores on the default OFA space.

    python experiments/search_speed.py [--queries 50000] [--population 100] [--repeats 3] [--latency ridge|prior]

Fits the main command's two predictors (ridge on the encoding for accuracy, ridge on cost features with a
log target for latency) on 60 random subnets with made-up targets (speed does not depend on the values),
then runs the NSGA-II-style strategy through the same loop the main command uses, ``--repeats`` times (the
same seeded search each time), and reports the median. ``--latency prior`` scores latency with the shipped
arm_cpu prior instead (what ``+target=arm_cpu`` without a board uses). Prints the result and writes it to
``experiments/results/search_speed.json`` (one entry per latency model), with the 1-minute load average
before and after: other processes on the two cores slow every run down.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from nas.objectives import Constraints, objectives_for
from nas.pipeline import run_strategy, sample_distinct
from nas.registry import STRATEGIES
from nas.surrogate import PriorSurrogate, fit_surrogate
from search_spaces.ofa import OFASpace

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "search_speed.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=50_000)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency", choices=("ridge", "prior"), default="ridge")
    args = parser.parse_args()
    space = OFASpace(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32))
    rng = np.random.default_rng(0)
    archs = sample_distinct(space, 60, rng)
    accuracy = fit_surrogate(space=space, archs=archs, values=rng.random(60), metric="accuracy", predictor="ridge",
                             features="encoding")
    latency = fit_surrogate(space=space, archs=archs, values=rng.random(60) + 0.1, metric="latency_ms",
                            predictor="ridge", features="cost", predictor_kwargs={"log_target": True})
    if args.latency == "prior":
        from nas.hardware.priors import load_prior

        latency = PriorSurrogate(prior=load_prior("arm_cpu"), space=space)
    load_before = os.getloadavg()[0]
    seconds = []
    for _ in range(args.repeats):
        strategy = STRATEGIES.get("evolution")(space=space, objectives=objectives_for("pareto"),
                                               constraints=Constraints(), seed=0, population_size=args.population)
        started = time.perf_counter()
        run_strategy(strategy, accuracy, latency, queries=args.queries, progress=False)
        seconds.append(time.perf_counter() - started)
        print(f"{args.queries} archs in {seconds[-1]:.1f} s: {args.queries / seconds[-1]:.0f} archs/s")
    median = statistics.median(seconds)
    result = {"queries": args.queries, "population": args.population, "repeats": args.repeats,
              "seconds": round(median, 2), "archs_per_second": round(args.queries / median),
              "seconds_each": [round(s, 2) for s in seconds],
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    print(f"median: {args.queries / median:.0f} archs/s (load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after)")
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    if "latency_ridge" not in results and "latency_prior" not in results:
        results = {}  # the older single-result layout
    results[f"latency_{args.latency}"] = result
    OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
