"""Measure random OFA subnets on this machine's CPU twice (test and retest): the `this_cpu` column of the
latency-predictor benchmark, and the measurement's own repeatability (the ceiling of any predictor here).

    python experiments/measure_ofa_cpu.py [--archs 300] [--seed 0] [--max-seconds 0.5] [--export-only]

Subnets of the default OFA space (width 0.5, 1x24..32x32 digits input, 10 classes) are exported to ONNX once
(cached under ``$HWNAS_CACHE/ofa_cpu_onnx``), then measured with the cpu target's protocol in a shuffled
order, then all again in another shuffled order, so drift over the run does not line up with the arch order.
Writes ``experiments/results/ofa_cpu_measurements.csv`` (``arch`` = OFA public JSON, ``latency_ms``,
``latency_retest_ms``) and a JSON sidecar with the space config, the conditions and the test-retest agreement.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nas.arch import arch_id
from nas.export import export_onnx
from nas.hardware.targets import LocalCPUTarget
from nas.pipeline import sample_distinct
from predictors.metrics import regression_metrics
from search_spaces.ofa import OFASpace

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
# The default config's space (conf/space/ofa.yaml) with the embedded data's shape (1 channel, 10 classes).
SPACE_CONFIG = {"width_mult": 0.5, "num_classes": 10, "in_channels": 1, "resolutions": [24, 28, 32]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=0.5, help="timing budget per measurement")
    parser.add_argument("--export-only", action="store_true", help="only export the ONNX files (slow part)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ofa_cpu_measurements.csv")
    args = parser.parse_args()

    space = OFASpace(**SPACE_CONFIG)
    cache = Path(os.environ.get("HWNAS_CACHE", Path.home() / ".cache" / "hwnas")) / "ofa_cpu_onnx"
    archs = sample_distinct(space, args.archs, np.random.default_rng(args.seed),
                            include=[space.smallest(), space.largest()])
    paths = []
    for arch in tqdm(archs, desc="exporting subnets to ONNX"):
        path = cache / f"{arch_id(arch)}.onnx"
        if not path.exists():
            export_onnx(space.build(arch), space.input_shape(arch), path)
        paths.append(path)
    if args.export_only:
        return

    target = LocalCPUTarget(max_seconds=args.max_seconds)
    rng = np.random.default_rng(args.seed + 1)
    rounds: list[dict[int, dict]] = []
    started = time.time()
    for name in ("test", "retest"):
        results: dict[int, dict] = {}
        for i in tqdm(rng.permutation(len(archs)), desc=f"measuring ({name})"):
            results[int(i)] = target.measure_onnx_file(paths[i], space.input_shape(archs[i])).to_dict()
        rounds.append(results)
    first = np.array([rounds[0][i]["median_ms"] for i in range(len(archs))])
    second = np.array([rounds[1][i]["median_ms"] for i in range(len(archs))])

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", "latency_ms", "latency_retest_ms"])
        for arch, a, b in zip(archs, first, second):
            writer.writerow([json.dumps(space.to_public(arch), separators=(",", ":")), f"{a:.6f}", f"{b:.6f}"])
    agreement = regression_metrics(first, second)
    sidecar = {
        "space": SPACE_CONFIG,
        "archs": len(archs),
        "seed": args.seed,
        "target": target.describe(),
        "wall_s": round(time.time() - started, 1),
        "latency_range_ms": [float(first.min()), float(first.max())],
        "test_retest": agreement,
        "example_measurement": rounds[0][0],
    }
    args.out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    print(f"test-retest over {len(archs)} subnets: spearman {agreement['spearman']:.3f}, "
          f"within 10% {agreement['within_10pct']:.3f}, mape {agreement['mape']:.2f}%")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
