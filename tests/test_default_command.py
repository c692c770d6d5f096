"""The README's main command exactly as written (slow: ~2-3 min per target here with the shipped supernet)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["arm_cpu", "cpu"])
def test_default_main_command_meets_acceptance(tmp_path, target):
    """``+target=arm_cpu`` is the README's main command; ``+target=cpu`` the same search measured here."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "nas.search", "+space=ofa", f"+target={target}",
                           f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"results: {run_dir / 'results.json'}"
    results = json.loads((run_dir / "results.json").read_text())

    # The supernet learned: both extremes classify the held-out digits well.
    val = results["supernet"]["train"]["val_accuracy"]
    assert val["largest"] > 0.9 and val["smallest"] > 0.8

    pareto = results["pareto"]
    assert len({round(p["latency_ms"], 6) for p in pareto}) >= 3
    best = results["best"]
    if results["device"].get("mode") == "prior":  # arm_cpu on a machine that is not ARM, no agent
        assert "PRIOR" in proc.stdout + proc.stderr
        assert {p["latency_source"] for p in pareto} == {"prior"} and best["latency_source"] == "prior"
        assert best["measured_latency_ms"] is None and best["latency_ms"] > 0
    else:
        # Measured points reach the front. Not a count: re-measured latencies replace predicted ones and the front is
        # recomputed, so on a noisy machine (spreads of +-25 % here) a measured point the predictor flattered drops
        # out; a suite run on the team's AVX2 machine kept one of the re-measured points, its rerun more.
        assert sum(p["latency_source"] == "measured" for p in pareto) >= 1
        assert best["measured_latency_ms"] > 0 and best["predicted_latency_ms"] > 0
    assert best["onnx_max_abs_diff"] < 1e-4
    assert best["test_accuracy"] > 0.9
    assert abs(best["test_accuracy"] - best["test_accuracy_torch"]) < 0.01  # the exported model is the same network
    assert (run_dir / best["onnx"]).is_file()
