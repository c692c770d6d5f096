"""The main command alone and beside two CPU-bound processes, with hwnas's thread policy and with the old behaviour.

    python experiments/shared_machine.py [--policies new,old] [--busy 2] [--overrides KEY=VALUE ...]

Each run is ``python -m nas.search +space=ofa +target=arm_cpu`` (the README's main command; the shipped
supernet, a fresh ``HWNAS_CACHE``), first alone, then while ``--busy`` pure-Python busy loops (one core each)
run beside it; the script starts the loops, stops them when the run ends, and bounds them in time anyway.

- ``new``: the command as shipped (``threads: null`` = the usable cores, ``OMP_WAIT_POLICY=PASSIVE`` set before
  torch is imported: see ``nas/threads.py``);
- ``old``: the behaviour before it: torch imported before hwnas could set the wait policy (so the OpenMP
  runtime starts with its default, which spins), and ``threads`` forced to torch's default thread count.

It prints wall time, the accuracy stage's time (``timings_s.accuracy_samples`` of ``results.json``: subnets
evaluated with shared weights, the stage that slowed 10x) and the CPU time of each run, and the loaded / alone
ratios; writes ``experiments/results/shared_machine.json``. Busy loops take CPU in proportion to their count:
with two beside a run on two cores the run gets about half the CPU, so a ratio near 2 is what sharing costs,
and anything well above it is lost to threads fighting for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["-m", "nas.search", "+space=ofa", "+target=arm_cpu"]
POLICIES = ("new", "old")
# The old behaviour: torch (and with it the OpenMP runtime) loaded before nas.search sets OMP_WAIT_POLICY.
_OLD_ENTRY = ("import sys, runpy, torch; sys.argv = ['nas.search', *sys.argv[1:]]; "
              "runpy.run_module('nas.search', run_name='__main__', alter_sys=True)")
_BUSY_LOOP = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nn = 0\nwhile time.monotonic() < end:\n    n += 1\n"


def torch_default_threads() -> int:
    """torch's own default intra-op thread count on this machine (what the old behaviour used)."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, check=True, env=_clean_env())
    return int(out.stdout.strip())


def _clean_env() -> dict[str, str]:
    """This process's environment without thread settings, so each run starts from a user's defaults."""
    drop = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HWNAS_CACHE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def start_busy(count: int, seconds: float) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", _BUSY_LOOP, str(seconds)], stdout=subprocess.DEVNULL)
            for _ in range(count)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_once(policy: str, busy: int, *, overrides: list[str], old_threads: int, tmp: Path, timeout: float,
             keep: Path | None = None) -> dict:
    run_dir, cache = tmp / f"{policy}-{busy}" / "run", tmp / f"{policy}-{busy}" / "cache"
    env = {**_clean_env(), "HWNAS_CACHE": str(cache)}
    args = [*COMMAND[2:], *overrides, f"hydra.run.dir={run_dir}"]
    if policy == "new":
        argv = [sys.executable, *COMMAND[:2], *args]
    else:
        argv = [sys.executable, "-c", _OLD_ENTRY, *args, f"threads={old_threads}"]
    load_before = os.getloadavg()[0]
    helpers = start_busy(busy, timeout + 60) if busy else []
    try:
        time.sleep(1.0 if busy else 0.0)  # the loops are running before the command starts
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # before the loops are reaped: only the run
    finally:
        stop_busy(helpers)
    if proc.returncode != 0:
        raise SystemExit(f"{policy} run with {busy} busy processes failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    if keep is not None:  # results.json, pareto.png, the model: to look at the fronts afterwards
        shutil.copytree(run_dir, keep / f"{policy}-{busy}", dirs_exist_ok=True)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "policy": policy,
        "busy_processes": busy,
        "wall_s": round(wall, 1),
        "accuracy_stage_s": results["timings_s"].get("accuracy_samples"),
        "cpu_s": round(cpu, 1),
        "timings_s": results["timings_s"],
        "threads": results.get("threads"),
        "supernet_source": results["supernet"]["source"],
        "best_arch_id": results["best"]["arch_id"],
        "load_average_before": round(load_before, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default="new,old", help="comma-separated: new (as shipped), old (before)")
    parser.add_argument("--busy", type=int, default=2, help="CPU-bound processes beside the loaded runs")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run (the busy loops end by then)")
    parser.add_argument("--out", default="shared_machine.json", help="file under experiments/results/")
    parser.add_argument("--keep", type=Path, default=None, help="copy each run directory here (default: not kept)")
    parser.add_argument("--overrides", nargs="*", default=[],
                        help="extra Hydra overrides for every run, e.g. accuracy.samples=10 (default: none)")
    args = parser.parse_args()
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = sorted(set(policies) - set(POLICIES))
    if unknown or not policies:
        parser.error(f"--policies takes a comma-separated subset of {','.join(POLICIES)}, got {args.policies!r}")
    if args.busy < 1:
        parser.error(f"--busy must be >= 1, got {args.busy}")
    load_before = os.getloadavg()[0]
    old_threads = torch_default_threads()
    runs = []
    with tempfile.TemporaryDirectory(prefix="hwnas-shared-") as tmp:
        for policy in policies:
            for busy in (0, args.busy):
                print(f"running: policy={policy}, {busy} busy processes ...", flush=True)
                runs.append(run_once(policy, busy, overrides=args.overrides, old_threads=old_threads,
                                     tmp=Path(tmp), timeout=args.timeout, keep=args.keep))
    ratios = {}
    for policy in policies:
        alone, loaded = (next(r for r in runs if r["policy"] == policy and r["busy_processes"] == b)
                         for b in (0, args.busy))
        ratios[policy] = {
            "wall": round(loaded["wall_s"] / alone["wall_s"], 2),
            "accuracy_stage": (round(loaded["accuracy_stage_s"] / alone["accuracy_stage_s"], 2)
                               if alone["accuracy_stage_s"] and loaded["accuracy_stage_s"] is not None else None),
            "cpu": round(loaded["cpu_s"] / alone["cpu_s"], 2) if alone["cpu_s"] else None,
        }
    print(f"{'policy':<6} {'busy':>4} {'threads':>7} {'OMP wait':>9} {'wall s':>7} {'acc stage s':>11} {'cpu s':>6} {'load':>5}")
    for r in runs:
        t = r["threads"] or {}
        wait = t.get("omp_wait_policy") if t.get("omp_wait_policy_in_effect") else "default"
        print(f"{r['policy']:<6} {r['busy_processes']:>4} {t.get('threads', '?'):>7} {wait:>9} {r['wall_s']:>7.1f} "
              f"{r['accuracy_stage_s'] or float('nan'):>11.1f} {r['cpu_s']:>6.1f} {r['load_average_before']:>5.2f}")
    for policy, ratio in ratios.items():
        print(f"{policy}: loaded / alone = {ratio['wall']:.2f}x wall, {ratio['accuracy_stage']}x accuracy stage, "
              f"{ratio['cpu']}x CPU time")
    command = " ".join(["python", *COMMAND, *args.overrides])
    path = write_results(args.out, {
        "command": command,
        "busy_processes": args.busy,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "policies": {"new": "as shipped: threads=null (usable cores), OMP_WAIT_POLICY=PASSIVE before torch loads",
                     "old": f"before: OpenMP runtime loaded with its default wait policy (spins), "
                            f"threads={old_threads} (torch's default here)"},
        "runs": runs,
        "ratio_loaded_to_alone": ratios,
    }, load_before=load_before)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
