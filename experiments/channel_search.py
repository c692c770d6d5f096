"""Channel search at equal measured latency: autoslim, amc and evolution on +space=channels, beside each run's own
uniform-width and L1-pruning baselines, on this machine's CPU.

    python experiments/channel_search.py [--bases mbv2,ofa] [--ratios 0.7,0.5,0.3] [--seeds 3]
                                         [--strategies autoslim,amc,evolution] [--workdir DIR] [--out FILE] [--resume]
                                         [--merge FILE ...]

Every run is the main command at its CLI defaults (``python -m nas.search +space=channels +target=cpu
strategy=S constraint.latency_ratio=R seed=K threads=1``), so each reports its chosen network and, fine-tuned
the same way, the uniform width multiplier bisected to the same measured latency and L1 pruning at that ratio.
Bases: ``mbv2`` (MobileNetV2-0.5 at 28 px, the default, trained by the first run of each seed) and ``ofa``
(the best network of the OFA main command, ``python -m nas.search +space=ofa +target=cpu``, run here first,
taken with ``space.base_run``). Runs share one cache directory (a user's cache: the trained base, the
slimmable supernet and the measurement store are reused across runs, as they are for a user).

Prints a table (per base and budget: each strategy's measured latency / base latency and test accuracy before and
after fine-tuning, mean ± std over seeds, and search CPU minutes; beside each, the uniform and L1 baselines of the
same runs) and the tightest budget at which each stays within 0.5 pp of the base. Writes JSON after every run
(``--resume`` skips runs already in the file). A budget below the narrowest member is recorded as unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_io import RESULTS_DIR, write_results

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("autoslim", "amc", "evolution")


class Unreachable(Exception):
    """The budget is below the narrowest member's measured latency: the run refused it (recorded, not a failure)."""


def run_command(overrides: list[str], run_dir: Path, cache: Path) -> tuple[dict, float, float]:
    """The main command with ``overrides``; its results.json, wall seconds and CPU seconds (its own process tree)."""
    env = {**os.environ, "HWNAS_CACHE": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "nas.search", *overrides, "threads=1", "progress=false",
                           f"hydra.run.dir={run_dir}"], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode == 2 and "below the narrowest network" in proc.stderr:
        raise Unreachable(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads((run_dir / "results.json").read_text()), wall, cpu


def summary(entry: dict) -> dict:
    return {"latency_ratio": entry["latency_ratio"], "measured_latency_ms": entry["measured_latency_ms"],
            "test_accuracy": entry["test_accuracy"], "test_before": entry.get("test_accuracy_before_finetune"),
            "params": entry["params"], "keep_ratio": entry["keep_ratio"]}


def record(results: dict, *, base: str, ratio: float, seed: int, strategy: str, wall: float, cpu: float) -> dict:
    return {"base": base, "ratio": ratio, "seed": seed, "strategy": strategy, "wall_s": round(wall, 1),
            "run_cpu_s": round(cpu, 1), "search_cpu_s": results["search"].get("cpu_seconds"),
            "timings_s": results["timings_s"], "budget_ms": results["constraint"]["latency_ms"],
            "base_latency_ms": results["constraint"]["base_latency_ms"], "budget_met": results["best"]["budget_met"],
            "base_test_accuracy": results["base"]["test_accuracy"], "best": summary(results["best"]),
            "uniform": {**summary(results["baselines"]["uniform"]), "ratio": results["baselines"]["uniform"]["ratio"]},
            "l1": summary(results["baselines"]["l1"]), "run_dir": results["run_dir"], "sessions": sessions(results)}


def sessions(results: dict) -> dict:
    """How far one network's latency / base moves between measurement sessions in the run: the chosen network
    at search time (measured with the base) against the final session, and the narrowest member's ratio."""
    base_ms = results["constraint"]["base_latency_ms"]
    best = results["best"]
    at_search = next((c["latency_ms"] / base_ms for c in results["candidates"]
                      if c["arch_id"] == best.get("arch_id") and c.get("latency_source") == "measured"), None)
    return {"best_search_ratio": at_search, "best_final_ratio": best["latency_ratio"],
            "floor_ratio": results["constraint"]["smallest_latency_ms"] / base_ms}


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(runs: list[dict]) -> list[dict]:
    """One row per (base, ratio, strategy) and one per baseline *of those runs* (uniform and L1 are matched to
    each run's chosen network's measured latency, so they are compared strategy by strategy)."""
    rows = []
    for base in sorted({r["base"] for r in runs}):
        for ratio in sorted({r["ratio"] for r in runs if r["base"] == base}, reverse=True):
            group = [r for r in runs if r["base"] == base and r["ratio"] == ratio]
            for strategy in [m for m in STRATEGIES if any(r["strategy"] == m for r in group)]:
                mine = [r for r in group if r["strategy"] == strategy]
                for method, key in ((strategy, "best"), (f"uniform@{strategy}", "uniform"), (f"l1@{strategy}", "l1")):
                    entries = [r[key] for r in mine]
                    lat, acc, before = (mean_std([e[k] for e in entries])
                                        for k in ("latency_ratio", "test_accuracy", "test_before"))
                    rows.append({"base": base, "ratio": ratio, "method": method, "n": len(entries),
                                 "latency_ratio": lat, "test_accuracy": acc, "test_before": before,
                                 "search_cpu_min": (mean_std([r["search_cpu_s"] / 60 for r in mine])
                                                    if key == "best" else None),
                                 "base_test_accuracy": mean_std([r["base_test_accuracy"] for r in group])[0]})
    return rows


def tightest_within(rows: list[dict], *, drop_pp: float = 0.5) -> list[dict]:
    """Per base and method: the tightest budget at which its mean test accuracy after fine-tuning stays within
    ``drop_pp`` points of the base network's (the issue's fallback when no method separates from uniform)."""
    out = []
    for base in sorted({r["base"] for r in rows}):
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["base"] == base and r["method"] == method]
            kept = [r for r in mine if 100 * (r["base_test_accuracy"] - r["test_accuracy"][0]) <= drop_pp]
            if mine:
                best = min(kept, key=lambda r: r["ratio"]) if kept else None
                out.append({"base": base, "method": method, "drop_pp": drop_pp,
                            "ratio": None if best is None else best["ratio"],
                            "latency_ratio": None if best is None else best["latency_ratio"][0]})
    return out


def table(rows: list[dict]) -> str:
    head = ["base", "budget", "method", "n", "latency/base", "test acc before ft", "test acc after ft", "search CPU min"]
    cells = [head]
    for r in rows:
        def pm(pair, scale=100.0, digits=2):
            return f"{scale * pair[0]:.{digits}f} ± {scale * pair[1]:.{digits}f}"
        cpu = "" if r["search_cpu_min"] is None else f"{r['search_cpu_min'][0]:.1f}"
        cells.append([r["base"], f"{r['ratio']:g}", r["method"], str(r["n"]), pm(r["latency_ratio"], 1.0, 3),
                      pm(r["test_before"]), pm(r["test_accuracy"]), cpu])
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(head))) for c in cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", default="mbv2,ofa", help="mbv2 (MobileNetV2-0.5) and/or ofa (the OFA winner)")
    parser.add_argument("--ratios", default="0.7,0.5,0.3", help="budgets as fractions of the base's measured latency")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", default="autoslim,amc,evolution")
    parser.add_argument("--workdir", type=Path, default=Path("runs/channel-bench"),
                        help="run directories and the shared cache")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "channel_search.json")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --out and skip them")
    parser.add_argument("--merge", type=Path, nargs="+", default=[],
                        help="also keep the runs of these JSON files (benchmarks run as parallel processes, one "
                             "--out each, then merged into one --out)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    cache = args.workdir / "cache"
    runs: list[dict] = []
    unreachable: list[dict] = []
    merged: list[dict] = []  # the run records of the merged files (which commands made the runs)
    for path in ([args.out] if args.resume and args.out.is_file() else []) + list(args.merge):
        previous = json.loads(path.read_text())
        runs += previous.get("runs", [])
        unreachable += previous.get("unreachable", [])
        merged += [*previous.get("merged", []), *([previous["run"]] if path in args.merge else [])]
    for r in runs:  # records written before "sessions" existed: read it from the run directory, where it still is
        results_file = Path(r["run_dir"]) / "results.json"
        if "sessions" not in r and results_file.is_file():
            r["sessions"] = sessions(json.loads(results_file.read_text()))
    done = {(r["base"], r["ratio"], r["seed"], r["strategy"]) for r in runs + unreachable}
    bases = args.bases.split(",")
    base_args = {"mbv2": []}
    if "ofa" in bases:
        ofa_dir = args.workdir / "ofa-winner"
        if not (ofa_dir / "results.json").is_file():
            print("running the OFA main command for its winner ...", flush=True)
            run_command(["+space=ofa", "+target=cpu"], ofa_dir, cache)
        base_args["ofa"] = [f"space.base_run={ofa_dir}"]
    # seeds outermost: a benchmark stopped early still has every (base, budget, method) cell, with fewer seeds
    jobs = [(b, float(r), s, st) for s in range(args.seeds) for b in bases for r in args.ratios.split(",")
            for st in args.strategies.split(",")]
    for i, (base, ratio, seed, strategy) in enumerate(jobs, 1):
        if (base, ratio, seed, strategy) in done:
            continue
        run_dir = args.workdir / f"{base}-{ratio:g}-{strategy}-{seed}"
        overrides = ["+space=channels", "+target=cpu", f"strategy={strategy}", f"constraint.latency_ratio={ratio:g}",
                     f"seed={seed}", *base_args[base]]
        try:
            results, wall, cpu = run_command(overrides, run_dir, cache)
        except Unreachable as exc:
            unreachable.append({"base": base, "ratio": ratio, "seed": seed, "strategy": strategy, "error": str(exc)})
            print(f"[{i}/{len(jobs)}] {base} {ratio:g} {strategy} seed {seed}: {exc}", flush=True)
            write_results(args.out, {"runs": runs, "rows": aggregate(runs), "unreachable": unreachable,
                                     "tightest": tightest_within(aggregate(runs)), "merged": merged}, load_before=load_before)
            continue
        runs.append(record(results, base=base, ratio=ratio, seed=seed, strategy=strategy, wall=wall, cpu=cpu))
        last = runs[-1]
        print(f"[{i}/{len(jobs)}] {base} {ratio:g} {strategy} seed {seed}: latency {last['best']['latency_ratio']:.3f} "
              f"of base, test {last['best']['test_accuracy']:.4f} (uniform {last['uniform']['test_accuracy']:.4f}, "
              f"l1 {last['l1']['test_accuracy']:.4f}), {wall:.0f} s", flush=True)
        write_results(args.out, {"runs": runs, "rows": aggregate(runs), "unreachable": unreachable,
                                 "tightest": tightest_within(aggregate(runs)), "merged": merged}, load_before=load_before)
    rows = aggregate(runs)
    print(table(rows))
    for t in tightest_within(rows):
        where = "none of the budgets" if t["ratio"] is None else f"budget {t['ratio']:g}"
        print(f"tightest within {t['drop_pp']:g} pp of the base: {t['base']} {t['method']}: {where}")
    for u in unreachable:
        print(f"unreachable: {u['base']} {u['ratio']:g} ({u['strategy']}, seed {u['seed']}): {u['error']}")
    write_results(args.out, {"runs": runs, "rows": rows, "unreachable": unreachable,
                             "tightest": tightest_within(rows), "merged": merged}, load_before=load_before)


if __name__ == "__main__":
    main()
