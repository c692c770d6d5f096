"""End to end: the main command on a few images, checked through its results.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from nas.hardware.arm_cpu import is_arm_machine
from nas.report import summarize
from tests.test_device_agent import start_agent

TINY = [
    "+space=ofa",
    "data.limit=300", "space.width_mult=0.25", "space.resolutions=[16,20]",
    "space.train.epochs={full:1,kernel:1,depth:1,expand:1}", "space.train.batch_size=64",
    # 10 accuracy samples (7 to fit): boosted trees (the default for 60) give near-constant predictions on so
    # few, so the tiny run uses ridge; the default predictor is covered by the default-command test.
    "accuracy.samples=10", "accuracy.predictor=ridge", "accuracy.calib_images=64", "latency.samples=8",
    "budget.queries=300", "+strategy.population_size=30", "final.measure_front=4",
    "target.warmup=2", "target.min_repeats=5", "target.max_seconds=0.2", "progress=false",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def search(run_dir: Path, cache: Path, *overrides: str, target: str = "cpu") -> subprocess.CompletedProcess:
    env = {**os.environ, "HWNAS_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "nas.search", f"+target={target}", *TINY, *overrides,
                           f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, env=env, timeout=900, cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_tiny_search_writes_sane_results(tmp_path, cache):
    run_dir = tmp_path / "run"
    proc = search(run_dir, cache)
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == f"results: {run_dir / 'results.json'}"
    results = json.loads((run_dir / "results.json").read_text())
    # the console summary before it: the chosen network, accuracy on val and test, latency with its source
    # and spread, the rule that chose it (knee: no budget) and the files written
    summary = summarize(results)
    assert "\n".join(lines[-1 - len(summary.splitlines()):-1]) == summary
    assert json.dumps(results["best"]["public"], separators=(",", ":")) in summary
    assert "on val" in summary and "on test" in summary and "measured on cpu" in summary and "95 % CI" in summary
    assert results["best"]["choice_rule"] == "knee" and results["best"]["choice_reason"] in summary
    assert "models/best.onnx" in summary and all((run_dir / f).is_file() for f in results["files"])
    # the star is drawn at the chosen point, which lies on the plotted front unless an unmeasured (predicted)
    # point dominates it there
    chosen = results["plot"]["chosen"]
    assert "knee" in chosen["label"] and chosen["latency_ms"] == pytest.approx(results["best"]["latency_ms"])
    assert chosen["on_front"] == (results["best"]["arch_id"] in {p["arch_id"] for p in results["pareto"]})
    assert results["threads"]["applied_by"] == "nas.search" and results["threads"]["omp_wait_policy_in_effect"]

    assert results["space"] == "ofa" and results["target"] == "cpu" and results["strategy"] == "evolution"
    assert results["seed"] == 0
    assert results["supernet"]["source"] == "trained"
    assert len(results["history"]) == 300

    pareto = results["pareto"]
    # A 1-epoch supernet on 300 images scores near chance, so the measured front may rightly shrink to one
    # point (the fastest measured subnet also scoring best); its shape is checked below, not its size.
    assert len(pareto) >= 1
    for point in pareto:
        assert set(point) >= {"arch", "arch_id", "accuracy", "latency_ms", "latency_source"}
        assert point["latency_source"] in ("measured", "predicted")
        assert 0.0 <= point["accuracy"] <= 1.0 and point["latency_ms"] > 0
    latencies = [p["latency_ms"] for p in pareto]

    best = results["best"]
    # The chosen network is always a re-measured one. The front itself may hold none: a 1-epoch supernet's
    # predicted accuracies can lift unmeasured points above every re-measured one (it failed so once, under load).
    assert best["latency_source"] == "measured"
    assert best["arch_id"] in results["measurements"]
    assert best["measured_latency_ms"] > 0 and best["predicted_latency_ms"] > 0
    assert 0.0 <= best["test_accuracy"] <= 1.0 and best["n_test"] > 0
    assert best["onnx_max_abs_diff"] < 1e-3
    model_path = run_dir / best["onnx"]
    assert model_path.is_file() and not list(run_dir.glob("**/*.onnx.data"))
    onnx.checker.check_model(onnx.load(str(model_path)))
    assert (run_dir / "pareto.png").stat().st_size > 10_000
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert results["predictors"]["latency"]["samples"] == 8
    assert latencies == sorted(latencies)
    accuracies = [p["accuracy"] for p in pareto]
    assert all(a < b for a, b in zip(accuracies, accuracies[1:])), "a front sorted by latency must rise in accuracy"


def test_second_run_reuses_cached_supernet_and_evaluates_given_arch(tmp_path, cache):
    arch = '{ks:[3,5,7,3,3,5,7,3,3,5,7,3,3,5,7,3,3,5,7,3],e:[3,4,6,3,3,4,6,3,3,4,6,3,3,4,6,3,3,4,6,3],d:[2,3,4,2,3],r:20}'
    run_dir = tmp_path / "run2"
    search(run_dir, cache, f"arch={arch}")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["supernet"]["source"] == "cache"
    assert results["best"]["public"]["d"] == [2, 3, 4, 2, 3] and results["best"]["public"]["r"] == 20
    assert results["best"]["test_accuracy"] >= 0.0
    assert results["history"] == []


@pytest.mark.skipif(is_arm_machine(), reason="on an ARM machine arm_cpu measures locally instead of using the prior")
def test_arm_cpu_without_a_board_uses_the_prior_and_says_so(tmp_path, cache):
    run_dir = tmp_path / "arm-prior"
    proc = search(run_dir, cache, target="arm_cpu")
    assert "PRIOR" in proc.stdout + proc.stderr and "target.agent=" in proc.stdout + proc.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["device"]["mode"] == "prior" and results["device"]["device"] is None
    assert results["latency_source"] == "prior"
    assert results["predictors"]["latency"]["source"] == "prior" and results["predictors"]["latency"]["samples"] == 0
    assert results["measurements"] == {}
    assert {p["latency_source"] for p in results["pareto"]} == {"prior"}
    assert {h["latency_source"] for h in results["history"]} == {"prior"}
    best = results["best"]
    assert best["latency_source"] == "prior" and best["measured_latency_ms"] is None and best["latency_ms"] > 0
    assert (run_dir / best["onnx"]).is_file()  # exported all the same, ready to measure on the board


def test_arm_cpu_through_a_loopback_agent_measures_and_calibrates(tmp_path, cache):
    proc, url = start_agent()
    try:
        run_dir = tmp_path / "arm-agent"
        search(run_dir, cache, f"target.agent={url}", target="arm_cpu")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["device"]["mode"] == "agent" and results["device"]["agent"] == url
    assert results["device"]["device"]["cpu"]  # the board's description, from the agent
    latency = results["predictors"]["latency"]
    assert latency["calibrated"] is True and latency["source"] == "predicted" and latency["samples"] == 8
    assert "Raspberry Pi 4" in latency["prior"]
    assert len(results["measurements"]) >= 8
    sources = {p["latency_source"] for p in results["pareto"]}
    assert "measured" in sources and sources <= {"measured", "predicted"}
    assert {h["latency_source"] for h in results["history"]} == {"predicted"}
    best = results["best"]
    assert best["latency_source"] == "measured" and best["measured_latency_ms"] > 0
    assert best["measurement"]["reference"]  # drift-corrected against the reference model
    # every measurement landed in the store as it arrived
    from nas.hardware.store import MeasurementStore

    store = MeasurementStore(cache / "measurements.sqlite")
    assert len(store.records(space="ofa")) >= 8
