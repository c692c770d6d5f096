"""Fit the shipped ``arm_cpu`` latency prior and measure how well such a prior transfers to a space it never saw.

    python experiments/fit_arm_prior.py [--shots 5 10 20] [--seed 0] [--no-save]

1. Fits the kernel-level model on all Raspberry Pi 4 measurements of FBNet networks and NAS-Bench-201 cells
   (``nas.hardware.priors.training_data``) and saves it to ``nas/assets/priors/arm_cpu`` (JSON + npz).
2. Cross-space check, the situation of an OFA search on a board: fit on one space's Pi 4 measurements,
   predict the other space's Pi 4 latencies (prior alone), then calibrate the prior with K measurements of
   the new space (``nas.surrogate.calibrate_prior``, K random archs, 10 repeats) and score the rest.
3. Same on this machine's CPU if ``experiments/results/ofa_cpu_measurements.csv`` exists (OFA subnets
   measured here by ``experiments/measure_ofa_cpu.py``): the ARM prior on x86, alone and calibrated.

Prints a table and writes ``experiments/results/arm_prior.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from nas.hardware.priors import ARM_DEVICE, ARM_SOURCES, PRIORS_DIR, KernelPrior, fit_kernel_prior, measured_rows, training_data
from nas.surrogate import calibrate_prior
from nas.tables import read_frame
from predictors.metrics import regression_metrics
from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"


def _calibrated(prior, space, archs, y, shots: int, repeats: int, seed: int) -> dict:
    """Mean scores of the search's calibration and, for comparison, of the plain power law alone."""
    from predictors.transfer import CalibrationPredictor

    base = prior.predict(space, archs)
    scores, power = [], []
    for r in range(repeats):
        order = np.random.default_rng(seed + r).permutation(len(archs))
        train, test = order[:shots], order[shots:]
        surrogate = calibrate_prior(prior=prior, space=space, archs=[archs[i] for i in train], values=y[train],
                                    holdout=0.0)
        scores.append(regression_metrics(y[test], surrogate.predict([archs[i] for i in test])))
        law = CalibrationPredictor().fit(base[train][:, None], y[train])
        power.append(regression_metrics(y[test], law.predict(base[test][:, None])))
    out = {k: float(np.mean([s[k] for s in scores])) for k in ("spearman", "kendall", "mape", "within_10pct")}
    out.update({f"power_law_{k}": float(np.mean([s[k] for s in power])) for k in ("spearman", "within_10pct")})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--eval-archs", type=int, default=2000, help="archs of the unseen space to score on")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true", help="do not overwrite the shipped prior")
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()[0]

    X, y, origin = training_data()
    full = fit_kernel_prior(X, y)
    shipped = KernelPrior(name="arm prior", description="shipped", predictor=full)
    fitted = regression_metrics(y, shipped.predict_features(X))
    if not args.no_save:
        full.save(PRIORS_DIR / "arm_cpu", metadata={
            "description": f"kernel-level model of Raspberry Pi 4 (Cortex-A72) latency fitted on {len(y)} "
                           f"HW-NAS-Bench measurements of {' and '.join(ARM_SOURCES)} networks",
            "unit": "ms", "device": ARM_DEVICE, "sources": list(ARM_SOURCES), "rows": int(len(y)),
            "made_by": "experiments/fit_arm_prior.py"})

    rows: list[dict] = []
    for held_out in ARM_SOURCES:
        index = ARM_SOURCES.index(held_out)
        model = fit_kernel_prior(X[origin != index], y[origin != index])
        prior = KernelPrior(name="arm prior", description=f"fitted without {held_out}", predictor=model)
        space, archs, truth = measured_rows(held_out, limit=args.eval_archs, seed=args.seed)
        alone = regression_metrics(truth, prior.predict(space, archs))
        rows.append({"evaluated_on": f"{held_out} raspi4", "fitted_on": "other space", "shots": 0,
                     **{k: alone[k] for k in ("spearman", "kendall", "mape", "within_10pct")}})
        for shots in args.shots:
            rows.append({"evaluated_on": f"{held_out} raspi4", "fitted_on": "other space", "shots": shots,
                         **_calibrated(prior, space, archs, truth, shots, args.repeats, args.seed)})

    cpu_file = RESULTS / "ofa_cpu_measurements.csv"
    if cpu_file.exists():
        from search_spaces.ofa import OFASpace

        config = json.loads(cpu_file.with_suffix(".json").read_text())["space"]
        space = OFASpace(**config)
        frame = read_frame(str(cpu_file))
        archs = [space.parse(a) for a in frame["arch"]]  # OFA public JSON text
        truth = frame["latency_ms"].to_numpy(dtype=np.float64)
        retest = regression_metrics(truth, frame["latency_retest_ms"].to_numpy(dtype=np.float64))
        rows.append({"evaluated_on": "ofa this_cpu (x86)", "fitted_on": "test-retest (ceiling)", "shots": 0,
                     **{k: retest[k] for k in ("spearman", "kendall", "mape", "within_10pct")}})
        alone = regression_metrics(truth, shipped.predict(space, archs))
        rows.append({"evaluated_on": "ofa this_cpu (x86)", "fitted_on": "fbnet+nb201 raspi4", "shots": 0,
                     **{k: alone[k] for k in ("spearman", "kendall", "mape", "within_10pct")}})
        for shots in args.shots:
            rows.append({"evaluated_on": "ofa this_cpu (x86)", "fitted_on": "fbnet+nb201 raspi4", "shots": shots,
                         **_calibrated(shipped, space, archs, truth, shots, args.repeats, args.seed)})

    print(f"prior fitted on {len(y)} Pi 4 measurements: in-sample spearman {fitted['spearman']:.3f}, "
          f"within 10% {fitted['within_10pct']:.3f}")
    print(f"{'evaluated on':<22} {'fitted on':<20} {'shots':>5} {'spearman':>8} {'kendall':>8} {'mape %':>7} {'±10%':>6}"
          f" {'power law: spearman':>20} {'±10%':>6}")
    for r in rows:
        law = (f" {r['power_law_spearman']:>20.3f} {r['power_law_within_10pct']:>6.2f}" if "power_law_spearman" in r
               else f" {'-':>20} {'-':>6}")
        print(f"{r['evaluated_on']:<22} {r['fitted_on']:<20} {r['shots']:>5} {r['spearman']:>8.3f} {r['kendall']:>8.3f} "
              f"{r['mape']:>7.1f} {r['within_10pct']:>6.2f}{law}")
    out = write_results(RESULTS / "arm_prior.json", {"args": vars(args), "in_sample": fitted, "rows": rows,
                                                     "wall_s": round(time.time() - started, 1)},
                        load_before=load_before)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
