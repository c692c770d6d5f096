"""Search strategies scored exactly on the FBNet space: the most compute a Raspberry Pi 4 latency budget buys.

    python experiments/search_fbnet.py [--seeds 20] [--budgets 150,500] [--strategies a,b,...] [--jobs 2]
                                      [--device raspi4] [--budget-quantile 0.5]

The FBNet space has no accuracy table, but its latency is known exactly for every one of its 9^22 networks:
HW-NAS-Bench's FBNet latencies are sums of per-layer measurements, so the per-(layer, block) lookup table
fitted on the 5,000 shipped networks (``lut`` predictor) reproduces them (its error is printed). The problem:

- ``constrained``: maximise the network's MACs (the compute it can spend on accuracy) with Pi 4 latency
  under a budget (by default the median latency of the shipped networks). FLOPs are not latency: blocks
  differ in MACs per millisecond on the device, so the search has to find which compute is cheap there.

MACs and latency are both sums over layers, so the exact optimum is a multiple-choice knapsack, solved by
dynamic programming over latency in steps of 0.2 microseconds (each block's latency rounded *up*, so the DP's
answer is feasible; rounding down bounds how much better the true optimum can be). Every strategy runs
``--seeds`` seeds through the same ask/tell interface the CLI uses; the score is the best feasible MACs found
as a fraction of the optimum. Prints a table and writes ``experiments/results/search_fbnet.json``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one BLAS thread per worker
    os.environ.setdefault(_var, "1")

import argparse
import functools
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nas.objectives import Constraints, objectives_for
from nas.registry import PREDICTORS, STRATEGIES
from nas.tables import read_frame, shipped_table
from predictors.features import latency_features
from predictors.metrics import regression_metrics
from search_spaces.fbnet import LABELS, OPS, FBNetSpace
from search_spaces.kernels import flops

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STRATEGIES = ("random", "regularized_evolution", "evolution", "reinforce", "optuna_tpe", "optuna_nsga2", "guided")
STRATEGY_KWARGS = {"evolution": {"population_size": 20}}
STEP_MS = 0.0002


@functools.lru_cache(maxsize=None)
def problem(device: str, quantile: float) -> dict:
    """Per-(layer, op) latency and MACs tables, the budget and the fit quality of the latency table."""
    space = FBNetSpace()
    entry = shipped_table("fbnet")
    frame = read_frame(str(entry["path"]))
    archs = [space.parse(s) for s in frame[str(entry["arch_column"])]]
    y = frame[device].to_numpy(dtype=np.float64)
    model = PREDICTORS.get("lut")().fit(latency_features(space, archs, "onehot"), y)
    fit = regression_metrics(y, model.predict(latency_features(space, archs, "onehot")))
    latency = np.asarray(model.coef, dtype=np.float64).reshape(len(LABELS), len(OPS))
    base = {label: "skip" for label in LABELS}
    macs0 = flops(space, base)
    macs = np.zeros((len(LABELS), len(OPS)))
    for i, label in enumerate(LABELS):
        for j, op in enumerate(OPS):
            macs[i, j] = (flops(space, {**base, label: op}) - macs0) / 1e6
    return {"latency": latency, "bias": float(model.bias), "macs": macs, "macs0": macs0 / 1e6,
            "budget_ms": float(np.quantile(y, quantile)), "fit": fit, "table_rows": len(y)}


def evaluate(arch: dict, p: dict) -> tuple[float, float]:
    idx = [OPS.index(arch[label]) for label in LABELS]
    rows = np.arange(len(LABELS))
    return float(p["macs0"] + p["macs"][rows, idx].sum()), float(p["bias"] + p["latency"][rows, idx].sum())


def knapsack(p: dict, *, round_up: bool) -> tuple[float, list[str]]:
    """Max MACs with latency <= budget (multiple-choice knapsack by DP over latency steps)."""
    lat, macs = p["latency"], p["macs"]
    floor = lat.min(axis=1)
    slack = p["budget_ms"] - p["bias"] - floor.sum()
    if slack < 0:
        raise ValueError("the budget is below the fastest network")
    steps = int(math.floor(slack / STEP_MS))
    extra = (lat - floor[:, None]) / STEP_MS
    cost = np.ceil(extra - 1e-9).astype(int) if round_up else np.floor(extra + 1e-9).astype(int)
    best = np.full(steps + 1, -np.inf)
    best[0] = p["macs0"]
    best = np.maximum.accumulate(best)
    choice = np.zeros((len(LABELS), steps + 1), dtype=np.int64)
    for i in range(len(LABELS)):
        new = np.full(steps + 1, -np.inf)
        for j in range(len(OPS)):
            c = cost[i, j]
            if c > steps:
                continue
            candidate = np.full(steps + 1, -np.inf)
            candidate[c:] = best[: steps + 1 - c] + macs[i, j]
            better = candidate > new
            new[better] = candidate[better]
            choice[i, better] = j
        best = new
    b = int(np.argmax(best))
    ops = []
    for i in reversed(range(len(LABELS))):
        j = int(choice[i, b])
        ops.append(OPS[j])
        b -= int(cost[i, j])
    return float(best.max()), list(reversed(ops))


def run_one(args: tuple) -> dict:
    name, seed, budget, device, quantile = args
    p = problem(device, quantile)
    space = FBNetSpace()
    strategy = STRATEGIES.get(name)(space=space, objectives=objectives_for("accuracy"),
                                    constraints=Constraints(latency_ms=p["budget_ms"]), seed=seed,
                                    **STRATEGY_KWARGS.get(name, {}))
    trace, started = [], time.time()
    for _ in range(budget):
        arch = strategy.ask()
        mmacs, latency = evaluate(arch, p)
        # The strategies maximise the metric named "accuracy": here it carries the MACs (in millions).
        strategy.tell(arch, {"accuracy": mmacs, "latency_ms": latency})
        trace.append((mmacs, latency))
    return {"strategy": name, "seed": seed, "trace": trace, "seconds": time.time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", default="150,500")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--device", default="raspi4")
    parser.add_argument("--budget-quantile", type=float, default=0.5)
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results" / "search_fbnet.json"))
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    strategies = args.strategies.split(",")
    p = problem(args.device, args.budget_quantile)
    optimum, optimum_ops = knapsack(p, round_up=True)
    bound, _ = knapsack(p, round_up=False)
    check_macs, check_ms = evaluate(dict(zip(LABELS, optimum_ops)), p)
    assert check_ms <= p["budget_ms"] + 1e-9 and abs(check_macs - optimum) < 1e-6
    print(f"latency table fitted on {p['table_rows']} networks: within 5% {p['fit']['within_5pct']:.4f}, "
          f"mape {p['fit']['mape']:.4f}%; budget {p['budget_ms']:.2f} ms; optimum {optimum:.2f} MMACs "
          f"(upper bound {bound:.2f}) at {check_ms:.3f} ms")

    jobs = [(s, seed, max(budgets), args.device, args.budget_quantile) for s in strategies for seed in range(args.seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(tqdm(pool.map(run_one, jobs), total=len(jobs), desc="strategy x seed runs"))

    rows = []
    for s in strategies:
        mine = [r for r in runs if r["strategy"] == s]
        for b in budgets:
            scores = []
            for r in mine:
                trace = np.array(r["trace"][:b])
                feasible = trace[:, 1] <= p["budget_ms"]
                scores.append(trace[feasible, 0].max() / optimum if feasible.any() else float("nan"))
            scores = np.array(scores)
            rows.append({"strategy": s, "budget": b, "mean": float(np.nanmean(scores)), "std": float(np.nanstd(scores)),
                         "within_1pct": float(np.mean(scores >= 0.99)), "seeds": len(scores),
                         "seconds_per_run": float(np.mean([r["seconds"] for r in mine]))})
    header = ["strategy"] + [f"MACs / optimum @{b}" for b in budgets]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for s in strategies:
        cells = [next(f"{r['mean']:.3f} ± {r['std']:.3f} ({100 * r['within_1pct']:.0f}% ≥0.99)"
                      for r in rows if r["strategy"] == s and r["budget"] == b) for b in budgets]
        print(f"| {s} | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python experiments/search_fbnet.py " + " ".join(
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "out"),
        "truth": {"budget_ms": p["budget_ms"], "optimum_mmacs": optimum, "upper_bound_mmacs": bound,
                  "optimum_arch": " ".join(optimum_ops), "optimum_latency_ms": check_ms,
                  "latency_table_fit": p["fit"]},
        "strategy_kwargs": STRATEGY_KWARGS, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
