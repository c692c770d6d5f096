"""What ``search_nb201.py`` and ``search_fbnet.py`` share: strategies built exactly as the CLI builds them, runs
planned per budget, and the acceptance check of the default strategy.

Every strategy is made by :func:`nas.pipeline.make_strategy` from its ``conf/strategy/NAME.yaml`` (the CLI
defaults, nothing overridden) with the run's budget and ``evaluator="tabular"``, so each budget is its own
run: population-like settings are sized to the budget. Two (strategy, budget) pairs whose strategies resolve
to the same concrete strategy with the same settings make the same asks, seed for seed (a strategy's
behaviour depends only on its resolved settings, seed and what it is told), so they share one run, scored
on its prefix: ``auto`` shares guided's runs when it resolves to guided, and random search one run for all
budgets. The JSON says which runs were shared (``runs[*].serves``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from nas.objectives import Constraints
from nas.pipeline import make_strategy
from nas.registry import list_strategies

ROOT = Path(__file__).resolve().parents[1]
#: ``auto`` first: it is the default a user gets; then every registered strategy.
DEFAULT = "auto"
#: The strategies slowest per query at 1,000 queries (model fits per ask): capped on the secondary columns.
SLOW = ("auto", "guided", "optuna_tpe")


def strategies() -> list[str]:
    return [DEFAULT] + [s for s in list_strategies() if s != DEFAULT]


def cli_strategy(name: str, *, space, objective: str, constraints: Constraints, seed: int, budget: int):
    """The strategy ``python -m nas.search strategy=NAME budget.queries=BUDGET evaluator=tabular`` runs."""
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "strategy" / f"{name}.yaml"), resolve=True)
    return make_strategy(cfg, space=space, objective=objective, constraints=constraints, seed=seed, budget=budget,
                         evaluator="tabular")


def resolved_key(name: str, **kwargs) -> tuple[str, str, dict]:
    """(concrete name, settings key, resolution) of the CLI strategy ``name`` at a budget."""
    resolution = cli_strategy(name, **kwargs).resolution()
    values = {k: v["value"] for k, v in resolution["settings"].items()}
    return resolution["name"], json.dumps(values, sort_keys=True), resolution


def common_parser(description: str, *, out: str) -> argparse.ArgumentParser:
    """The options both strategy benchmarks share (seeds, budgets, latency columns, strategies, jobs, output)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=10, help="seeds on --full-device (and nb201's accuracy problem)")
    parser.add_argument("--seeds-other", type=int, default=3, help="seeds on the other latency columns")
    parser.add_argument("--budgets", default="100,150,300,1000")
    parser.add_argument("--devices", default="all", help="latency columns, comma-separated, or all")
    parser.add_argument("--full-device", default="raspi4")
    parser.add_argument("--slow-cap", type=int, default=300,
                        help=f"largest budget of {', '.join(SLOW)} on columns other than --full-device")
    parser.add_argument("--strategies", default=",".join(strategies()))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=out, help="a file name (into experiments/results) or a path")
    return parser


def plan(wanted: Sequence[tuple[str, int]], make_kwargs: Callable[[int], dict]) -> tuple[list[dict], dict]:
    """Runs needed for every wanted (strategy, budget) of one problem and seed: one run per distinct resolved
    strategy and settings (so ``auto``'s runs are guided's when it resolves to guided with the same settings),
    as long as the largest budget it serves. Returns the runs and, per (strategy, budget), its resolution."""
    runs: dict[tuple[str, str], dict] = {}
    resolutions: dict[tuple[str, int], dict] = {}
    for name, budget in wanted:
        concrete, key, resolution = resolved_key(name, **make_kwargs(budget))
        resolutions[(name, budget)] = resolution
        run = runs.setdefault((concrete, key), {"strategy": concrete, "settings": json.loads(key), "budget": 0,
                                                "serves": []})
        run["budget"] = max(run["budget"], budget)
        run["serves"].append([name, budget])
    return list(runs.values()), resolutions


def execute(jobs: list[tuple], worker: Callable[[tuple], dict], *, processes: int, desc: str) -> list[dict]:
    from tqdm import tqdm

    if processes <= 1:
        return [worker(job) for job in tqdm(jobs, desc=desc)]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        return list(tqdm(pool.map(worker, jobs, chunksize=1), total=len(jobs), desc=desc))


def ask_tell(strategy, evaluate: Callable[[dict], tuple[float, float]], queries: int) -> tuple[list, float]:
    """``queries`` asks and tells; the (accuracy-like, latency) trace and the CPU seconds it took."""
    trace = []
    started = time.process_time()
    for _ in range(queries):
        arch = strategy.ask()
        value, latency = evaluate(arch)
        strategy.tell(arch, {"accuracy": value, "latency_ms": latency})
        trace.append((value, latency))
    return trace, time.process_time() - started


def acceptance(rows: list[dict], *, tolerance: float, unit: str) -> list[dict]:
    """Per setting and budget: the default's mean against the best other strategy's mean minus ``tolerance``."""
    checks = []
    keys = sorted({(r["setting"], r["budget"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for setting, budget in keys:
        cell = {r["strategy"]: r for r in rows if r["setting"] == setting and r["budget"] == budget}
        if DEFAULT not in cell:
            continue
        # The others exclude the strategy the default resolved to: its runs are the default's own, and a
        # comparison with itself would only cap the margin shown at zero.
        resolved = cell[DEFAULT]["resolved"]
        others = {s: r for s, r in cell.items() if s not in (DEFAULT, resolved) and np.isfinite(r["mean"])}
        if not others:
            continue
        best = max(others, key=lambda s: others[s]["mean"])
        mine, theirs = cell[DEFAULT]["mean"], others[best]["mean"]
        checks.append({"setting": setting, "budget": budget, "default_resolves_to": cell[DEFAULT]["resolved"],
                       "default_mean": mine, "best_other": best, "best_other_mean": theirs,
                       "difference": mine - theirs, "tolerance": tolerance, "unit": unit,
                       "passed": bool(mine >= theirs - tolerance), "seeds": cell[DEFAULT]["seeds"]})
    return checks


def payload(*, truth: dict, seeds: dict, budgets: list, names: list, capped: list, tolerance: dict,
            resolutions: dict, rows: list, checks: list, results: list) -> dict:
    """The results JSON both strategy benchmarks write (the layout experiments/render_docs.py reads)."""
    return {
        "truth": truth, "seeds": seeds, "budgets": budgets, "strategies": names, "capped": capped,
        "tolerance": tolerance, "resolutions": resolutions, "rows": rows, "acceptance": checks,
        "exceptions": [c for c in checks if not c["passed"]],
        "runs": [{"setting": r["setting"], "seed": r["seed"], "strategy": r["run"]["strategy"],
                  "settings": r["run"]["settings"], "queries": r["run"]["budget"], "serves": r["run"]["serves"],
                  "cpu_seconds": round(r["cpu_seconds"], 3)} for r in results],
    }


def print_acceptance(checks: list[dict]) -> None:
    failed = [c for c in checks if not c["passed"]]
    print(f"acceptance (default >= best other - tolerance): {len(checks) - len(failed)}/{len(checks)} settings x "
          f"budgets pass")
    for c in failed:
        print(f"  EXCEPTION {c['setting']} @{c['budget']}: auto ({c['default_resolves_to']}) {c['default_mean']:.4f} "
              f"< {c['best_other']} {c['best_other_mean']:.4f} - {c['tolerance']} {c['unit']} "
              f"({c['seeds']} seeds)")


def print_rows(rows: list[dict], *, settings: Sequence[str], budgets: Sequence[int], digits: int) -> None:
    names = []
    for r in rows:
        if r["strategy"] not in names:
            names.append(r["strategy"])
    for setting in settings:
        print(f"\n{setting}")
        print("| strategy | " + " | ".join(f"@{b}" for b in budgets) + " |")
        print("|---|" + "---|" * len(budgets))
        for name in names:
            cells = []
            for b in budgets:
                row = next((r for r in rows if r["setting"] == setting and r["strategy"] == name and r["budget"] == b),
                           None)
                cells.append("-" if row is None else f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f}")
            print(f"| {name} | " + " | ".join(cells) + " |")
