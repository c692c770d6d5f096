"""End to end: the three channel-search commands of docs/channels.md on a few images (+space=channels with
strategy=autoslim, amc and evolution), checked through results.json, and the bad inputs they refuse."""

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from nas.hardware.arm_cpu import is_arm_machine

TINY = [
    "+space=channels", "data.limit=300", "space.base_config={width_mult:0.35}", "space.resolution=16",
    "space.train.epochs=1", "space.finetune.epochs=1", "space.slimmable.epochs=1", "accuracy.calib_images=64",
    "latency.samples=8", "target.warmup=2", "target.min_repeats=5", "target.max_seconds=0.2", "progress=false",
]
# A tiny block-space search whose best network (with its supernet) an amc run prunes (space.base_run=...).
TINY_MOBILENET = [
    "+space=mobilenet", "data.limit=300", "space.width_mult=0.35", "space.resolution=16",
    "space.train.epochs={full:0,ops:1}", "accuracy.samples=10", "accuracy.predictor=ridge",
    "accuracy.calib_images=64", "latency.samples=8", "budget.queries=300", "+strategy.population_size=30",
    "final.measure_front=4", "target.warmup=2", "target.min_repeats=5", "target.max_seconds=0.2", "progress=false",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def command(run_dir: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HWNAS_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "nas.search", *args, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, env=env, timeout=900, cwd=run_dir.parent)


def search(run_dir: Path, cache: Path, *args: str) -> dict:
    proc = command(run_dir, cache, *TINY, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"results: {run_dir / 'results.json'}"
    assert "versus    uniform x" in proc.stdout  # the console summary carries the run's own comparison
    return json.loads((run_dir / "results.json").read_text())


def check_contract(results: dict, run_dir: Path, *, measured: bool) -> None:
    best, base, baselines = results["best"], results["base"], results["baselines"]
    assert set(baselines) == {"uniform", "l1"}
    for entry in (best, base, *baselines.values()):
        for key in ("measured_latency_ms", "test_accuracy", "params", "arch", "macs", "onnx_bytes", "latency_ratio"):
            assert key in entry, key
        assert (run_dir / entry["onnx"]).is_file() and entry["onnx_max_abs_diff"] < 1e-3
        assert entry["onnx_bytes"] == (run_dir / entry["onnx"]).stat().st_size
        assert 0.0 <= entry["test_accuracy"] <= 1.0
        assert (entry["measured_latency_ms"] is not None) == measured
    # physically smaller: fewer parameters, a smaller file, fewer MACs than the base (which is every group at full)
    assert best["params"] < base["params"] and best["onnx_bytes"] < base["onnx_bytes"] and best["macs"] < base["macs"]
    graph = onnx.load(str(run_dir / best["onnx"])).graph
    weights = sum(int(t.dims[0]) if t.dims else 1 for t in graph.initializer if len(t.dims) == 4)
    assert weights < sum(int(t.dims[0]) for t in onnx.load(str(run_dir / base["onnx"])).graph.initializer
                         if len(t.dims) == 4)
    # the finalists were measured again together with the base, and their ratios are to that session's base
    assert base["latency_ratio"] == 1.0 and base["latency_ms"] == results["constraint"]["base_latency_ms"]
    session = results["final_measurement"]["ms"]
    assert set(session) == {"base", "best", "uniform", "l1"}
    for name, entry in (("best", best), *baselines.items()):
        assert entry["latency_ratio"] == pytest.approx(session[name] / session["base"])
        assert entry["latency_ms"] == pytest.approx(entry["latency_ratio"] * base["latency_ms"])
    assert best["budget_met"] == (best["latency_ms"] <= results["constraint"]["latency_ms"])
    # the uniform baseline and L1 pruning share one uniform width; the chosen network was fine-tuned
    assert baselines["uniform"]["arch"] == baselines["l1"]["arch"]
    assert "test_accuracy_before_finetune" in best and best["finetune"]["epochs"] == 1
    assert all((run_dir / f).is_file() for f in results["files"] if f != "results.json")
    assert {"pareto.png", "channels.png", "models/base.npz", "models/best.onnx"} <= set(results["files"])


def test_autoslim_writes_the_contract_with_baselines(tmp_path, cache):
    run_dir = tmp_path / "autoslim"
    # a coarse grid (three widths per group): few shrinks, the same code path
    results = search(run_dir, cache, "+target=cpu", "strategy=autoslim", "constraint.latency_ratio=0.8",
                     "space.ratios=[0.25,0.5,1.0]")
    check_contract(results, run_dir, measured=True)
    assert results["strategy"] == "autoslim" and results["evaluator"]["evaluator"] == "slimmable"
    assert results["latency_source"] == "measured" and results["best"]["latency_source"] == "measured"
    assert results["constraint"]["latency_ratio"] == 0.8 and results["constraint"]["given"] == "latency_ratio"
    assert results["search"]["accuracy_queries"] > 0 and results["search"]["trace"]
    # the uniform baseline was bisected on measurements to the chosen network's latency
    probes = results["baselines"]["uniform"]["bisection"]
    assert probes and all(p["latency_ms"] > 0 for p in probes)
    # every member was measured in a session with the base, and put on the base's scale
    measured = [r for r in results["measurements"].values() if "ratio_to_base" in r and r["ratio_to_base"] != 1.0]
    assert measured and all(r["median_ms"] == pytest.approx(r["ratio_to_base"] * results["constraint"]
                                                            ["base_latency_ms"]) for r in measured)


def test_amc_prunes_the_best_network_of_an_earlier_run(tmp_path, cache):
    earlier = tmp_path / "mobilenet"
    proc = command(earlier, cache, *TINY_MOBILENET, "+target=cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "amc"
    results = search(run_dir, cache, "+target=cpu", f"space.base_run={earlier}", "strategy=amc",
                     "constraint.latency_ratio=0.85", "strategy.episodes=8", "strategy.warmup=3",
                     "strategy.hidden=32", "strategy.batch_size=16", "strategy.top=4")
    check_contract(results, run_dir, measured=True)
    earlier_best = json.loads((earlier / "results.json").read_text())["best"]["arch"]
    assert results["base_network"]["arch"] == earlier_best and results["base_network"]["weights"]["source"] == "run"
    assert results["evaluator"]["evaluator"] == "pruned" and len(results["search"]["trace"]) == 8
    assert len(results["candidates"]) <= 4


def test_evolution_on_arm_cpu_uses_the_prior_with_a_budget_in_ms(tmp_path, cache):
    if is_arm_machine():
        pytest.skip("on an ARM machine arm_cpu measures locally instead of using the prior")
    run_dir = tmp_path / "evolution"
    args = ["+target=arm_cpu", "strategy=evolution", "accuracy.samples=10", "accuracy.predictor=ridge",
            "budget.queries=200", "strategy.population_size=20", "final.measure_front=4"]
    # a budget of 1 s is met by the base network itself: the run still chooses, fine-tunes and compares
    results = search(run_dir, cache, *args, "constraint.latency_ms=1000")
    check_contract(results, run_dir, measured=False)
    assert results["strategy"] == "evolution" and results["predictors"]["accuracy"]["samples"] == 10
    assert results["constraint"]["given"] == "latency_ms" and results["best"]["budget_met"]
    assert results["latency_source"] == "prior" and results["predictors"]["latency"]["source"] == "prior"
    assert results["best"]["latency_source"] == "prior" and results["best"]["measured_latency_ms"] is None


@pytest.mark.parametrize(("args", "message"), [
    (["+target=cpu", "constraint.latency_ratio=0.01"], "below the narrowest network of the channels space"),
    (["+target=cpu", "space.base=/nonexistent/base.npz"], "space.base=/nonexistent/base.npz does not exist"),
    (["+target=cpu", "space.base=no_such_net"], "is not a preset, a JSON arch or a .npz file"),
    (["+target=cpu", "space.base_run=/nonexistent/run"], "no results.json there"),
    (["+target=cpu", "constraint.latency_ratio=0.5", "constraint.latency_ms=1"], "are both set"),
    (["+target=cpu", "space.finetune.epochs=-1"], "space.finetune.epochs=-1: must be a positive integer"),
])
def test_bad_channel_input_is_one_error_line(tmp_path, cache, args, message):
    proc = command(tmp_path / "bad", cache, *TINY, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_amc_on_a_space_without_channel_widths_is_one_error_line(tmp_path, cache):
    proc = command(tmp_path / "bad", cache, "+space=ofa", "+target=cpu", "strategy=amc")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: strategy=amc searches channel widths and needs +space=channels"), lines
