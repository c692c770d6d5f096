"""Time the README's main command on this machine: a cold run (supernet trained) and a cached rerun.

    python experiments/main_command_timing.py [--space ofa] [--target cpu|arm_cpu] [--out FILE] [extra overrides ...]

Each run uses a fresh cache directory for the first run and the same one for the second, prints a table
and writes JSON with the wall times and the key numbers of each run's results.json. The default file is
``experiments/results/main_command.json`` (ofa on cpu), ``main_command_<target>.json`` (ofa on another target)
or ``main_command_<space>_<target>.json`` (another space).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]


def run_once(run_dir: Path, cache: Path, overrides: list[str], target: str, space: str = "ofa") -> dict:
    env = {**os.environ, "HWNAS_CACHE": str(cache)}
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "nas.search", f"+space={space}", f"+target={target}", *overrides,
         f"hydra.run.dir={run_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"main command failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    best = results["best"]
    return {
        "wall_s": round(wall, 1),
        "supernet_source": results["supernet"]["source"],
        "timings_s": results["timings_s"],
        "supernet_val_accuracy": (results["supernet"].get("train") or {}).get("val_accuracy"),
        "pareto_points": len(results["pareto"]),
        "pareto_measured": sum(p["latency_source"] == "measured" for p in results["pareto"]),
        "best_val_accuracy": best["accuracy"],
        "best_test_accuracy_onnx": best["test_accuracy"],
        "best_predicted_latency_ms": best["predicted_latency_ms"],
        "best_measured_latency_ms": best["measured_latency_ms"],
        "best_latency_ms": best.get("latency_ms"),
        "latency_source": best.get("latency_source"),
        "onnx_max_abs_diff": best["onnx_max_abs_diff"],
        "accuracy_predictor_spearman": results["predictors"]["accuracy"]["holdout"].get("spearman"),
        "latency_predictor_spearman": results["predictors"]["latency"]["holdout"].get("spearman"),
        "latency_predictor_mape": results["predictors"]["latency"]["holdout"].get("mape"),
        "best_public": best["public"],
        "choice_rule": best.get("choice_rule"),
        "device": results["device"]["device"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ofa", help="registered space name (default: ofa, the README's main command)")
    parser.add_argument("--target", default="cpu", help="cpu (measured here) or arm_cpu (the README's main command)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: experiments/results/main_command.json (ofa, cpu), main_command_<target>.json "
                             "(ofa), main_command_<space>_<target>.json (other spaces)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()
    if args.out is None:
        if args.space != "ofa":
            name = f"main_command_{args.space}_{args.target}.json"
        else:
            name = "main_command.json" if args.target == "cpu" else f"main_command_{args.target}.json"
        args.out = ROOT / "experiments" / "results" / name
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hwnas-timing-") as tmp:
        cache, runs = Path(tmp) / "cache", {}
        for name in ("cold", "cached"):
            runs[name] = run_once(Path(tmp) / name, cache, args.overrides, args.target, args.space)
    header = f"{'run':<7} {'wall s':>7} {'supernet':>8} {'front':>5} {'val acc':>7} {'test acc':>8} {'pred ms':>8} {'meas ms':>8} {'|onnx-pt|':>9} {'acc rho':>7} {'lat rho':>7}"
    print(header)
    for name, r in runs.items():
        print(f"{name:<7} {r['wall_s']:>7.1f} {r['supernet_source']:>8} {r['pareto_points']:>5} "
              f"{r['best_val_accuracy']:>7.4f} {r['best_test_accuracy_onnx']:>8.4f} {r['best_predicted_latency_ms']:>8.3f} "
              f"{_fmt(r['best_measured_latency_ms'], 8)} {r['onnx_max_abs_diff']:>9.1e} "
              f"{_fmt(r['accuracy_predictor_spearman'])} {_fmt(r['latency_predictor_spearman'])}")
    write_results(args.out, {"command": f"python -m nas.search +space={args.space} +target={args.target} "
                                        + " ".join(args.overrides), "space": args.space, "target": args.target,
                             "runs": runs}, load_before=load_before)
    print(f"wrote {args.out}")


def _fmt(value: object, width: int = 7) -> str:
    return f"{value:>{width}.3f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


if __name__ == "__main__":
    main()
