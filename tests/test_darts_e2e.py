"""The issue's four one-shot commands end to end on a few images (tiny epochs), checked through the run-directory
contract, and the bad inputs a one-shot run refuses before any training."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.hardware.arm_cpu import is_arm_machine

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data=digits", "data.limit=400", "strategy.epochs=1", "strategy.retrain_epochs=1", "strategy.batch_size=32",
        "progress=false"]
RUNS = {
    "darts": ["+space=darts", "+target=cpu", "space.channels=8", "space.layers=3", "space.search_layers=2",
              "space.search_channels=4", "target.warmup=2", "target.min_repeats=5", "target.max_seconds=0.2"],
    "nb201": ["+space=nb201", "+target=cpu", "space.channels=8", "space.cells_per_stage=1", "target.warmup=2",
              "target.min_repeats=5", "target.max_seconds=0.2"],
    "fbnet": ["+space=fbnet", "+target=raspi4", "constraint.latency_ms=20", "space.resolution=16"],
    "mobilenet": ["+space=mobilenet", "+target=arm_cpu", "constraint.latency_ms=5", "space.width_mult=0.25",
                  "space.resolution=16", "space.plan=v3_small"],
}


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "nas.search", *args, f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)


@pytest.mark.parametrize("space", list(RUNS))
def test_one_shot_search_writes_the_results_contract(tmp_path, space):
    if space == "mobilenet" and is_arm_machine():
        pytest.skip("on an ARM machine arm_cpu measures locally instead of using the prior")
    proc = run(tmp_path, "strategy=darts", *RUNS[space], *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "run"
    assert proc.stdout.strip().splitlines()[-1] == f"results: {run_dir / 'results.json'}"
    results = json.loads((run_dir / "results.json").read_text())
    best = results["best"]
    assert results["strategy"] == "darts" and results["strategy_resolved"]["family"] == "one-shot"
    # the derived arch in the space's public form, parsed back to the same network
    from nas.pipeline import make_space

    data = results["data"]
    rebuilt = make_space(results["config"]["space"], num_classes=data["num_classes"],
                         in_channels=data["input"][0]).parse(best["public"])
    assert rebuilt == best["arch"]
    assert (run_dir / best["onnx"]).is_file() and best["onnx_max_abs_diff"] < 1e-3
    assert 0.0 <= best["test_accuracy"] <= 1.0 and best["n_test"] > 0
    epochs = results["search"]["epochs"]
    assert len(epochs) == 1 and len(epochs[0]["probs"]) == len(results["search"]["decisions"])
    assert (run_dir / "alphas.png").stat().st_size > 5_000 and (run_dir / "search.png").stat().st_size > 5_000
    source = {"darts": "measured", "nb201": "measured", "fbnet": "table", "mobilenet": "prior"}[space]
    assert best["latency_source"] == source and best["latency_ms"] > 0
    if space == "nb201":
        table = best["table_accuracy"]
        assert 0 <= table["percentile"] <= 100 and table["column"] == "cifar10_test_accuracy"
    if results["constraint"]["latency_ms"] is not None:
        assert best["budget_met"] and best["latency_ms"] <= results["constraint"]["latency_ms"]
        assert results["cost_model"]["additivity"]["max_rel_error"] < 1e-6  # table sums and the prior are exact
        assert (run_dir / "pareto.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["+space=ofa", "+target=cpu"], "strategy=darts cannot relax space 'ofa'"),
    (["+space=nb201", "+target=raspi4", "evaluator=tabular"], "with evaluator=tabular"),
    (["+space=fbnet", "+target=raspi4", "constraint.latency_ms=1"], "is below the fastest fbnet network on raspi4"),
    (["+space=darts", "+target=raspi4", "constraint.latency_ms=10"], "not available on space 'darts'"),
    (["+space=fbnet", "+target=raspi4", "strategy.partial_channels=2"], "need a cell space"),
    (["+space=nb201", "+target=raspi4", "strategy.sampling=hard"], "sampling='hard' is not one of"),
])
def test_bad_input_is_one_error_line_before_any_training(tmp_path, args, message):
    proc = run(tmp_path, "strategy=darts", "data=digits", "progress=false", *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "cache" / "oneshot").exists()  # refused before a search started
