"""Inference engines: the registry and its CLI, each installed engine's round trip (load, parity with PyTorch,
the measurement protocol), store keys that differ per engine, and the device agent naming, using and refusing
engines. Engines that are optional extras are tested where installed and skipped with the reason otherwise
(``pip install -e ".[openvino]"`` runs them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nas.errors import ConfigError
from nas.export import export_onnx
from nas.hardware.engines import get_engine, installed_engines
from nas.hardware.engines.base import Engine, seeded_input
from nas.hardware.measure import MeasureConfig, measure_onnx
from nas.hardware.targets import LocalCPUTarget
from nas.registry import ENGINES
from tests.test_device_agent import TOKEN, raw, start_agent

ROOT = Path(__file__).resolve().parents[1]
FAST = MeasureConfig(warmup=1, min_repeats=3, max_repeats=6, max_seconds=0.2)
SHAPE = (3, 16, 16)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, nn.Module]:
    model = small_net()
    return export_onnx(model, SHAPE, tmp_path_factory.mktemp("engines") / "net.onnx"), model


def engine_or_skip(name: str) -> Engine:
    engine = get_engine(name)
    if not engine.installed():
        pytest.skip(f"engine {name} is not installed here; {engine.install_hint()} to run this test")
    return engine


def test_the_registry_knows_the_engines_and_the_cli_lists_them():
    assert {"onnxruntime", "openvino"} <= set(ENGINES.names())
    assert "onnxruntime" in installed_engines()
    with pytest.raises(ConfigError, match="unknown engine 'tensorrt'"):
        get_engine("tensorrt")
    listed = subprocess.run([sys.executable, "-m", "nas.hardware.engines", "list", "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["onnxruntime"]["installed"] and rows["onnxruntime"]["version"]
    assert rows["openvino"]["install"] == 'pip install -e ".[openvino]"'


@pytest.mark.parametrize("name", ["onnxruntime", "openvino", "ncnn", "mnn"])
def test_round_trip_load_parity_measure(name, exported):
    engine = engine_or_skip(name)
    path, model = exported
    loaded = engine.load(path, SHAPE, threads=1, seed=0)
    x = seeded_input(SHAPE, 1)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = np.asarray(loaded.infer(x)).reshape(expected.shape)
    assert np.abs(got - expected).max() <= engine.tolerance * max(1.0, float(np.abs(expected).max()))
    measurement = measure_onnx(path, SHAPE, MeasureConfig(**{**FAST.to_dict(), "engine": name}))
    assert measurement.runtime == f"{name} {engine.version()}" and measurement.median_ms > 0


def test_a_missing_engine_is_one_clear_error_with_the_install_command(tmp_path):
    class Absent(Engine):
        name, package, extra = "absent-engine", "no_such_engine_package_xyz", "absent"

        def version(self) -> str:
            return "0"

        def load(self, *args, **kwargs):
            raise AssertionError("never loaded")

    ENGINES.register("absent-engine")(Absent)
    with pytest.raises(ConfigError, match=r'not installed here .*pip install -e "\.\[absent\]"'):
        LocalCPUTarget(runtime="absent-engine")
    with pytest.raises(ConfigError, match="not installed"):
        measure_onnx(b"not used", SHAPE, MeasureConfig(engine="absent-engine"))
    result = subprocess.run([sys.executable, "-m", "nas.search", "+space=ofa", "+target=cpu",
                             "target.runtime=tensorrt", f"hydra.run.dir={tmp_path}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unknown engine 'tensorrt'" in errors[0], result.stderr[-2000:]


def test_store_keys_differ_per_engine():
    class Renamed(type(get_engine("onnxruntime"))):
        """onnxruntime under another name: a second engine that is installed wherever the tests run."""
        name = "onnxruntime-renamed"

    ENGINES.register("onnxruntime-renamed")(Renamed)
    default, other = LocalCPUTarget(), LocalCPUTarget(runtime="onnxruntime-renamed")
    assert default.target_key() != other.target_key()
    assert other.identity()["runtime"].startswith("onnxruntime-renamed ")
    assert other.measure_config.engine == "onnxruntime-renamed"


def test_agent_lists_engines_measures_with_one_and_refuses_one_it_lacks(exported):
    path, _ = exported
    proc, url = start_agent("--token", TOKEN)
    try:
        status, health = raw(url, "/health")
        assert status == 200 and health["engines"]["onnxruntime"] == get_engine("onnxruntime").version()
        target = LocalCPUTarget(agent=url, token=TOKEN, max_seconds=0.2, min_repeats=3, warmup=1)
        measurement = target.measure_onnx_file(path, SHAPE)
        assert measurement.runtime.startswith("onnxruntime ")
        status, answer = raw(url, "/measure?input_shape=3,16,16&engine=no-such-engine", body=path.read_bytes())
        assert status == 400 and "unknown engine 'no-such-engine'" in answer["error"]
        # a built-in engine this machine lacks (engines the tests register exist only in this process)
        missing = next((n for n in ("openvino", "ncnn", "mnn") if n not in health["engines"]), None)
        if missing is not None:
            status, answer = raw(url, f"/measure?input_shape=3,16,16&engine={missing}", body=path.read_bytes())
            assert status == 400 and "not installed" in answer["error"]
            with pytest.raises(ConfigError, match=f"has no {missing}"):
                LocalCPUTarget(agent=url, token=TOKEN, runtime=missing).health()
    finally:
        proc.terminate()
        proc.wait(10)


def test_mnn_conversion_never_runs_the_mnnconvert_command_nor_imports_its_uploader(exported, tmp_path, monkeypatch):
    engine = engine_or_skip("mnn")
    import os

    def refuse(*args, **kwargs):
        raise AssertionError(f"MNN conversion started a process: {args!r}")

    monkeypatch.setattr(os, "system", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path))  # a fresh cache: the converter really runs
    path, _ = exported
    converted = engine.convert(path)
    assert converted.is_file() and converted.stat().st_size > 0
    assert "MNN.tools" not in sys.modules  # its import runs `pip install` and sets up an uploader


def test_parity_is_checked_before_the_first_measurement_on_an_engine(exported):
    from nas.errors import ModelError
    from nas.hardware.engines.parity import check_parity

    engine = engine_or_skip("openvino")
    path, model = exported
    assert check_parity(engine, path, model, SHAPE) <= engine.tolerance
    wrong = small_net()
    with torch.no_grad():
        wrong[0].weight.mul_(-1.0)  # another function: same graph, other weights
    with pytest.raises(ModelError, match="differs from PyTorch"):
        check_parity(engine, path, wrong, SHAPE)
    target = LocalCPUTarget(runtime="openvino", max_seconds=0.2, min_repeats=3, warmup=1, reference=False)
    assert target.measure_model(model, SHAPE).runtime.startswith("openvino ")
    fresh = LocalCPUTarget(runtime="openvino")  # parity is remembered per file: a target that has not seen it
    with pytest.raises(ModelError, match="differs from PyTorch"):
        fresh.check_parity(path, wrong, SHAPE)
