"""End to end on the block spaces: the main command on a few images, each space with one target, checked through
the same results.json contract as ``ofa`` (tests/test_search_e2e.py holds the full check for ``ofa``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.hardware.arm_cpu import is_arm_machine

TINY = [
    "data.limit=300", "space.width_mult=0.25", "space.resolution=16",
    "space.train.epochs={full:0,ops:1}", "space.train.batch_size=64",
    "accuracy.samples=10", "accuracy.predictor=ridge", "accuracy.calib_images=64", "latency.samples=8",
    "budget.queries=300", "+strategy.population_size=30", "final.measure_front=4",
    "target.warmup=2", "target.min_repeats=5", "target.max_seconds=0.2", "progress=false",
]
# Each space once, the two targets alternating: cpu measures this machine, arm_cpu (no board here) uses the prior.
RUNS = [("mobilenet", "cpu"), ("shufflenet", "arm_cpu"), ("ghostnet", "cpu"), ("blocks", "arm_cpu")]


def search(run_dir: Path, cache: Path, space: str, target: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HWNAS_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "nas.search", f"+space={space}", f"+target={target}", *TINY,
                           *overrides, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, env=env, timeout=900, cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize(("space", "target"), RUNS)
def test_block_space_search_writes_the_results_contract(tmp_path, space, target):
    if target == "arm_cpu" and is_arm_machine():
        pytest.skip("on an ARM machine arm_cpu measures locally instead of using the prior")
    run_dir = tmp_path / "run"
    proc = search(run_dir, tmp_path / "cache", space, target)
    assert proc.stdout.strip().splitlines()[-1] == f"results: {run_dir / 'results.json'}"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["space"] == space and results["supernet"]["source"] == "trained"
    assert [p["name"] for p in results["supernet"]["train"]["phases"]] == ["full", "ops"]
    best = results["best"]
    assert set(best["arch"]) == {f"layer{i:02d}" for i in range(len(best["arch"]))}
    assert (run_dir / best["onnx"]).is_file() and best["onnx_max_abs_diff"] < 1e-3
    assert 0.0 <= best["test_accuracy"] <= 1.0 and best["n_test"] > 0
    assert results["pareto"] and all(p["latency_source"] in {"measured", "predicted", "prior"} for p in results["pareto"])
    latency = results["predictors"]["latency"]
    if target == "cpu":
        assert results["latency_source"] == "measured" and latency["samples"] == 8
        assert best["measured_latency_ms"] > 0
    else:
        assert results["latency_source"] == "prior" and latency["source"] == "prior"
        # the prior prices kernel kinds its Raspberry Pi 4 data never ran by a stated rule, and says which
        assert isinstance(latency["borrowed"], dict)
        if space == "shufflenet":  # every unit concatenates its branches
            assert "concat" in latency["borrowed"]


def test_a_preset_arch_is_evaluated_by_the_main_command(tmp_path):
    """``describe --preset``'s arch, with the space options it names, is an ordinary ``arch=`` of the main command."""
    from search_spaces.layerwise import get_preset

    preset = get_preset("mobilenet_v2")
    arch_file = tmp_path / "mobilenet_v2.json"
    arch_file.write_text(json.dumps(preset.arch()))
    run_dir = tmp_path / "preset"
    search(run_dir, tmp_path / "cache", "mobilenet", "cpu", "space.plan=v2", f"arch={arch_file}")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["best"]["arch"] == preset.arch() and results["history"] == []
