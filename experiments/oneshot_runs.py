"""Shared by the ``darts_*`` benchmarks: run the main command (``python -m nas.search``) with given overrides in a
fresh cache, several at once on separate cores (one torch thread each, so timings do not disturb each other
beyond sharing the machine), and read back each run's ``results.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_command(overrides: list[str]) -> dict:
    """One run of the main command in its own run directory and cache; its results.json and wall time."""
    with tempfile.TemporaryDirectory(prefix="hwnas-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        env = {**os.environ, "HWNAS_CACHE": str(Path(tmp) / "cache")}
        started = time.time()
        proc = subprocess.run([sys.executable, "-m", "nas.search", *overrides, "threads=1", "progress=false",
                               f"hydra.run.dir={run_dir}"], capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.time() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
        results = json.loads((run_dir / "results.json").read_text())
    results["wall_seconds"] = round(wall, 1)
    return results


def run_all(jobs: list[list[str]], *, parallel: int) -> list[dict]:
    """``run_command`` of every job, ``parallel`` at a time, in the jobs' order."""
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(run_command, jobs))


def parameter_free(space_name: str, arch: dict) -> int:
    """Parameter-free operations in a derived cell (what DARTS collapses to)."""
    free = {"none", "skip_connect", "avg_pool_3x3", "max_pool_3x3", "skip"}
    return sum(1 for label, value in arch.items() if value in free and not label.endswith("inputs"))


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain-text table of ``rows`` (``columns``: key, header)."""
    cells = [[h for _, h in columns]] + [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(columns))) for c in cells)
