"""Every strategy at its CLI defaults, scored exactly on the FBNet space: the most compute a latency budget buys,
for every shipped latency column.

    python experiments/search_fbnet.py [--seeds 10] [--seeds-other 3] [--budgets 100,150,300,1000]
        [--devices all] [--full-device raspi4] [--slow-cap 300] [--strategies a,b,...] [--jobs 1]
        [--budget-quantile 0.5]

The FBNet space has no accuracy table, but its latency is known exactly for every one of its 9^22 networks:
HW-NAS-Bench's FBNet latencies are sums of per-layer measurements, so the per-(layer, block) lookup table
fitted on the 5,000 shipped networks (``lut`` predictor) reproduces them (its error is printed). The problem,
per latency column (``constrained:DEVICE``): maximise the network's MACs (the compute it can spend on
accuracy) with DEVICE latency under a budget (by default the median latency of the shipped networks). FLOPs
are not latency: blocks differ in MACs per millisecond on each device, so the search has to find which
compute is cheap there.

MACs and latency are both sums over layers, so the exact optimum is a multiple-choice knapsack, solved by
dynamic programming over latency in steps of 1/200,000 of the budget (each block's latency rounded *up*, so the
DP's answer is feasible; rounding down bounds how much better the true optimum can be). Strategies are built
as the CLI builds them (``experiments/strategy_bench.py``): ``auto`` and every registered strategy, each
budget its own run. The score is the best feasible MACs found as a fraction of the optimum. ``--seeds`` seeds
on ``--full-device``, ``--seeds-other`` on the others; guided, auto and optuna_tpe budgets above
``--slow-cap`` run on ``--full-device`` only (``capped`` in the JSON). Acceptance: auto's mean >= the best
other strategy's mean - 0.001 (of the optimum's MACs, the fraction's equivalent of 0.1 pp). Prints tables and
writes ``experiments/results/search_fbnet.json``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one BLAS thread per worker
    os.environ.setdefault(_var, "1")

import functools
import math

import numpy as np

import strategy_bench as bench
from nas.objectives import Constraints
from nas.registry import PREDICTORS
from nas.tables import TABLE_DEVICES, read_frame, shipped_table
from predictors.features import latency_features
from predictors.metrics import regression_metrics
from results_io import write_results
from search_spaces.fbnet import LABELS, OPS, FBNetSpace
from search_spaces.kernels import flops

TOLERANCE = 0.001  # of the optimum's MACs: a fraction's equivalent of 0.1 percentage points
#: DP resolution: the budget in this many latency steps (0.17 us at the Pi 4's 33.6 ms budget)
STEPS_PER_BUDGET = 200_000


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
    step_ms = p["budget_ms"] / STEPS_PER_BUDGET
    steps = int(math.floor(slack / step_ms))
    extra = (lat - floor[:, None]) / step_ms
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


@functools.lru_cache(maxsize=None)
def truth(device: str, quantile: float) -> dict:
    p = problem(device, quantile)
    optimum, optimum_ops = knapsack(p, round_up=True)
    bound, _ = knapsack(p, round_up=False)
    check_macs, check_ms = evaluate(dict(zip(LABELS, optimum_ops)), p)
    assert check_ms <= p["budget_ms"] + 1e-9 and abs(check_macs - optimum) < 1e-6
    return {"budget_ms": p["budget_ms"], "optimum_mmacs": optimum, "upper_bound_mmacs": bound,
            "optimum_arch": " ".join(optimum_ops), "optimum_latency_ms": check_ms, "latency_table_fit": p["fit"]}


def run_one(job: tuple) -> dict:
    setting, seed, run, quantile = job
    device = setting.partition(":")[2]
    p = problem(device, quantile)
    serve = run["serves"][0]
    strategy = bench.cli_strategy(serve[0], space=FBNetSpace(), objective="accuracy",
                                  constraints=Constraints(latency_ms=p["budget_ms"]), seed=seed, budget=serve[1])
    # The strategies maximise the metric named "accuracy": here it carries the MACs (in millions).
    trace, seconds = bench.ask_tell(strategy, lambda arch: evaluate(arch, p), run["budget"])
    return {"setting": setting, "seed": seed, "run": run, "trace": trace, "cpu_seconds": seconds}


def main() -> None:
    parser = bench.common_parser(__doc__.splitlines()[0], out="search_fbnet.json")
    parser.add_argument("--budget-quantile", type=float, default=0.5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    budgets = [int(b) for b in args.budgets.split(",")]
    names = args.strategies.split(",")
    devices = list(TABLE_DEVICES) if args.devices == "all" else args.devices.split(",")
    settings = [f"constrained:{d}" for d in devices]
    for setting in settings:
        t = truth(setting.partition(":")[2], args.budget_quantile)
        print(f"{setting}: latency table within 5% {t['latency_table_fit']['within_5pct']:.4f}, mape "
              f"{t['latency_table_fit']['mape']:.4f}%; budget {t['budget_ms']:.4g} ms; optimum "
              f"{t['optimum_mmacs']:.2f} MMACs (upper bound {t['upper_bound_mmacs']:.2f})")

    jobs, resolutions, capped, seeds = [], {}, [], {}
    for setting in settings:
        device = setting.partition(":")[2]
        full = device == args.full_device
        seeds[setting] = args.seeds if full else args.seeds_other
        budget_ms = problem(device, args.budget_quantile)["budget_ms"]
        for seed in range(seeds[setting]):
            wanted = [(n, b) for n in names for b in budgets if full or n not in bench.SLOW or b <= args.slow_cap]
            if seed == 0:
                capped += [{"setting": setting, "strategy": n, "budget": b} for n in names for b in budgets
                           if (n, b) not in wanted]
            kwargs = lambda b, seed=seed: {"space": FBNetSpace(), "objective": "accuracy", "seed": seed,
                                           "constraints": Constraints(latency_ms=budget_ms), "budget": b}
            runs, res = bench.plan(wanted, kwargs)
            if seed == 0:
                resolutions[setting] = {f"{n}@{b}": r for (n, b), r in res.items()}
            jobs += [(setting, seed, run, args.budget_quantile) for run in runs]
    print(f"{len(settings)} settings, {len(jobs)} runs, {sum(j[2]['budget'] for j in jobs)} queries")
    results = bench.execute(jobs, run_one, processes=args.jobs, desc="runs")

    rows = []
    for setting in settings:
        t = truth(setting.partition(":")[2], args.budget_quantile)
        for n in names:
            for b in budgets:
                mine = [r for r in results if r["setting"] == setting and [n, b] in r["run"]["serves"]]
                if not mine:
                    continue
                scores = []
                for r in mine:
                    trace = np.array(r["trace"][:b])
                    feasible = trace[:, 1] <= t["budget_ms"]
                    scores.append(trace[feasible, 0].max() / t["optimum_mmacs"] if feasible.any() else float("nan"))
                scores = np.array(scores)
                rows.append({"setting": setting, "strategy": n, "budget": b,
                             "resolved": resolutions[setting][f"{n}@{b}"]["name"],
                             "mean": float(np.nanmean(scores)), "std": float(np.nanstd(scores)), "seeds": len(scores),
                             "within_1pct": float(np.mean(scores >= 0.99)), "scores": scores.tolist(),
                             "cpu_seconds_per_run": float(np.mean([r["cpu_seconds"] for r in mine]))})
    checks = bench.acceptance(rows, tolerance=TOLERANCE, unit="fraction of the optimum's MACs")
    bench.print_rows(rows, settings=settings, budgets=budgets, digits=4)
    bench.print_acceptance(checks)
    payload = bench.payload(truth={s: truth(s.partition(":")[2], args.budget_quantile) for s in settings}, seeds=seeds, budgets=budgets, names=names, capped=capped,
                            tolerance={"constrained": {"value": TOLERANCE, "unit": "fraction of the optimum's MACs"}}, resolutions=resolutions, rows=rows, checks=checks, results=results)
    print(f"wrote {write_results(args.out, payload, load_before=load_before)}")


if __name__ == "__main__":
    main()
