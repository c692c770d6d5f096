"""How well the default latency predictor fits this CPU, next to the measurement's own repeatability.

    python experiments/ofa_latency_predictor.py [--archs 100] [--train 60] [--retest 30] [--seed 0]

Measures random subnets of the default OFA space (width 0.5, 28x28-class inputs) with the cpu target,
re-measures some of them (test-retest: the ceiling any predictor can reach), fits the ridge predictor on
``--train`` of them with each feature set, and scores it on the rest. Prints a table, writes JSON to
``experiments/results/ofa_latency_predictor.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nas.hardware.targets import LocalCPUTarget
from nas.pipeline import sample_distinct
from nas.surrogate import fit_surrogate
from predictors.metrics import regression_metrics
from search_spaces.ofa import OFASpace

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=100)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--retest", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "ofa_latency_predictor.json")
    args = parser.parse_args()

    space = OFASpace(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32))
    target = LocalCPUTarget(max_seconds=1.0)
    archs = sample_distinct(space, args.archs, np.random.default_rng(args.seed), include=[space.smallest(), space.largest()])
    first = np.array([target.measure(space, a).median_ms for a in tqdm(archs, desc="measuring subnets")])
    again = np.array([target.measure(space, a).median_ms for a in tqdm(archs[: args.retest], desc="re-measuring")])
    rows = {"test-retest (ceiling)": regression_metrics(first[: args.retest], again)}
    train, test = slice(0, args.train), slice(args.train, None)
    for features in ("cost", "encoding"):
        for log_target in (True, False):
            surrogate = fit_surrogate(space=space, archs=archs[train], values=first[train], metric="latency_ms",
                                      predictor="ridge", predictor_kwargs={"log_target": log_target},
                                      features=features, holdout=0.0, seed=args.seed)
            rows[f"ridge {features}{' log' if log_target else ''}"] = regression_metrics(first[test], surrogate.predict(archs[test]))

    print(f"{'model':<24} {'spearman':>8} {'kendall':>8} {'mape %':>7} {'±5%':>6} {'±10%':>6} {'n':>4}")
    for name, m in rows.items():
        print(f"{name:<24} {m['spearman']:>8.3f} {m['kendall']:>8.3f} {m['mape']:>7.2f} {m['within_5pct']:>6.2f} "
              f"{m['within_10pct']:>6.2f} {m['n']:>4}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                    "latency_range_ms": [float(first.min()), float(first.max())],
                                    "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
