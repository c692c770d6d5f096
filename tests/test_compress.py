"""nas.compress: static int8 QDQ close to fp32, an int8 model slower than fp32 is not chosen (fake measurements),
physical pruning keeps the network runnable at the planned widths, the report's contract, and bad input gives
one ``error:`` line and leaves the input model untouched."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nas.compress.pipeline import run_compression
from nas.compress.quantize import calibration_images, needs_reduced_range, onnx_accuracy, quantize_static_qdq
from nas.export import onnx_image_input
from nas.compress.stage import Latency, Stage
from nas.compress.steps import PruneStep, QuantizeStep, build_steps
from nas.data import load_data
from nas.errors import ConfigError, DataError, ModelError
from nas.export import export_onnx
from nas.hardware.measure import MeasureConfig, Measurement, _precision, device_description
from nas.hardware.targets import Target

ROOT = Path(__file__).resolve().parents[1]


def small_cnn(in_channels: int = 1, classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, classes)).eval()


@pytest.fixture(scope="module")
def digits():
    return load_data(name="digits", seed=0)


@pytest.fixture(scope="module")
def trained(digits, one_torch_thread):
    """A small CNN trained briefly on the 8x8 digits (accurate enough that quantization error shows)."""
    from nas.oneshot.retrain import train_network

    model = small_cnn()
    train_network(model, digits, epochs=10, lr=0.1, resolution=8, seed=0, progress=False)
    return model.eval()


def fake_measurement(ms: float, precision: str) -> Measurement:
    return Measurement(median_ms=ms, mean_ms=ms, p10_ms=0.95 * ms, p90_ms=1.05 * ms, std_ms=0.01 * ms, n=20,
                       rejected=0, threads=1, provider="fake", runtime="fake", device={"arch": "x86_64"}, batch=1,
                       input_shape=(1, 8, 8), precision=precision, spread=0.1)


class FakeTarget(Target):
    """Latency from the file alone: proportional to its size for fp32 (bytes stand in for work), ``int8_ms`` for
    any int8 model."""

    name = "fake"

    def __init__(self, *, int8_ms: float = 1.0) -> None:
        super().__init__()
        self.int8_ms = int8_ms

    def describe(self) -> dict:
        return {"target": "fake", "device": {"arch": "x86_64", "cpu": "fake"}}

    def health(self) -> dict:
        return {"device": {"arch": "x86_64"}}

    def measure_onnx_file(self, path: Path, input_shape) -> Measurement:
        precision = _precision(Path(path), "tensor(float)")
        return fake_measurement(self.int8_ms if precision == "int8" else Path(path).stat().st_size / 1e4, precision)


def test_qdq_model_outputs_are_close_to_fp32(tmp_path, trained, digits):
    fp32 = export_onnx(trained, (1, 8, 8), tmp_path / "fp32.onnx")
    images = calibration_images(digits.train.X, (1, 8, 8), 128, seed=0)
    int8 = quantize_static_qdq(fp32, tmp_path / "int8.onnx", images, activations="uint8",
                               reduce_range=needs_reduced_range(device_description()))
    assert _precision(int8, "tensor(float)") == "int8"
    assert onnx_image_input(int8) == ("input", (1, 8, 8))
    from nas.hardware.runtime import load_session

    a, b = load_session(fp32), load_session(int8)
    x = digits.val.X[:64].numpy()
    out32 = np.concatenate([a.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    out8 = np.concatenate([b.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    scale = float(np.abs(out32).max())
    assert np.abs(out8 - out32).max() < 0.1 * scale  # int8 rounding, not a different function
    assert (out8.argmax(1) == out32.argmax(1)).mean() >= 0.95
    assert abs(onnx_accuracy(int8, digits.test.X, digits.test.y)
               - onnx_accuracy(fp32, digits.test.X, digits.test.y)) < 0.03
    import onnx

    proto = onnx.load(str(int8))
    stored = {t.name: t.data_type for t in proto.graph.initializer}
    weights = [n.input[0] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in stored
               and len(next(t for t in proto.graph.initializer if t.name == n.input[0]).dims) == 4]
    assert weights and all(stored[w] == onnx.TensorProto.INT8 for w in weights)  # conv weights stored as int8


def test_weights_use_seven_bits_on_x86_without_vnni():
    # onnxruntime's AVX2 u8s8 kernels sum pairs of products in int16 and saturate with 8-bit weights
    assert needs_reduced_range({"arch": "x86_64", "simd": ["avx2"]})
    assert not needs_reduced_range({"arch": "x86_64", "simd": ["avx2", "avx512f", "avx512_vnni"]})
    assert not needs_reduced_range({"arch": "x86_64", "simd": ["avx2", "avx_vnni"]})
    assert needs_reduced_range({"arch": "x86_64"})  # an agent that does not report its flags: the safe side
    assert not needs_reduced_range({"arch": "aarch64", "simd": ["asimddp"]})
    assert QuantizeStep(reduce_range=False).settings.reduce_range is False
    with pytest.raises(ConfigError, match="quantize.reduce_range='yes'"):
        QuantizeStep(reduce_range="yes")


def test_calibration_images_of_the_wrong_shape_are_refused(tmp_path, trained, digits):
    fp32 = export_onnx(trained, (1, 8, 8), tmp_path / "fp32.onnx")
    with pytest.raises(DataError, match="channel"):
        calibration_images(torch.zeros(4, 3, 8, 8), (1, 8, 8), 4)
    with pytest.raises(DataError, match="per image"):
        quantize_static_qdq(fp32, tmp_path / "q.onnx", np.zeros((4, 1, 9, 9), np.float32), activations="uint8")
    with pytest.raises(ModelError, match="not an ONNX model"):
        (tmp_path / "x.onnx").write_text("hello")
        onnx_image_input(tmp_path / "x.onnx")


def test_an_int8_model_slower_than_fp32_is_not_chosen(tmp_path, trained, digits):
    fp32 = export_onnx(trained, (1, 8, 8), tmp_path / "in.onnx")
    original = Stage("original", fp32, (1, 8, 8))
    steps = build_steps(["quantize"], {})
    fp32_ms = fp32.stat().st_size / 1e4
    slow_int8 = FakeTarget(int8_ms=3.0 * fp32_ms)
    slow_int8.measure_config = MeasureConfig(warmup=1)  # profiles run on this machine
    report_path = run_compression(original, steps, data=digits, target=slow_int8, run_dir=tmp_path / "run",
                                  cache_dir=tmp_path / "cache", progress=False)
    report = json.loads(report_path.read_text())
    (step,) = report["steps"]
    assert step["name"] == "quantize" and step["precision"] == "int8"
    assert not step["kept"] and "not faster" in step["why"]
    assert report["final"]["precision"] == "fp32" and report["final"]["from_step"] == "original"
    # the int8 model that was not kept is profiled too, to show where its time went
    assert set(report["profile"]) == {"original", "final", "quantize"}
    assert (tmp_path / "run" / "profile_quantize.json").is_file()
    kinds = report["profile"]["quantize"]["kind_us"]
    assert {"conv", "depthwise", "pointwise", "overhead"} <= set(kinds) and all(v >= 0 for v in kinds.values())
    assert "Where the int8 model that was not kept spent its time" in (tmp_path / "run" / "report.md").read_text()
    # and with int8 faster it is kept and shipped
    report = json.loads(run_compression(original, steps, data=digits, target=FakeTarget(int8_ms=0.5 * fp32_ms),
                                        run_dir=tmp_path / "run2", cache_dir=tmp_path / "cache", profile=False,
                                        progress=False).read_text())
    assert report["steps"][0]["kept"] and report["final"]["precision"] == "int8", report["steps"][0]["why"]
    for entry in (report["original"], *report["steps"], report["final"]):
        for key in ("name", "test_accuracy", "size_bytes", "params", "macs", "latency_ms", "latency_spread",
                    "latency_source", "latency_ratio", "size_ratio"):
            assert key in entry, key
    assert report["final"]["path"] == "models/compressed.onnx"
    assert (tmp_path / "run2" / "models" / "compressed.onnx").is_file()
    assert {"report.json", "report.md", "report.png"} <= {p.name for p in (tmp_path / "run2").iterdir()}


def test_verdict_rules():
    step = QuantizeStep()
    fast, slow = Latency(1.0, 0.1, "measured", "int8"), Latency(2.0, 0.1, "measured", "fp32")
    assert step.verdict(before=slow, after=fast, acc_before=0.9, acc_after=0.9) is None
    assert "not faster" in step.verdict(before=fast, after=slow, acc_before=0.9, acc_after=0.9)
    assert "dropped" in step.verdict(before=slow, after=fast, acc_before=0.9, acc_after=0.88)
    unknown = Latency(None, None, "unknown: prior", "int8")
    assert "not shown to be faster" in step.verdict(before=slow, after=unknown, acc_before=0.9, acc_after=0.9)
    # a gain within measurement noise (copies of one model differ 1-3 %) is not a speed-up
    barely = Latency(0.98 * slow.ms, 0.1, "measured", "int8")
    assert "by 3% or more" in step.verdict(before=slow, after=barely, acc_before=0.9, acc_after=0.9)
    assert step.verdict(before=slow, after=barely, acc_before=0.9, acc_after=0.9, min_speedup=0.01) is None


def test_a_max_drop_finer_than_one_validation_image_is_reported():
    from nas.compress.pipeline import split_notes

    steps = build_steps(["prune", "distill", "quantize"], {})
    (note,) = split_notes(steps, 150)  # one image = 0.67 pp > quantize.max_drop 0.5 pp; prune has no limit
    assert note.startswith("quantize.max_drop=0.005") and "0.67 pp" in note
    assert split_notes(steps, 500) == []


def test_pruning_removes_channels_physically_to_the_planned_widths(tmp_path, trained, digits):
    from nas.channels.groups import analyse
    from nas.compress.pipeline import Context

    ctx = Context(data=digits, target=FakeTarget(), run_dir=tmp_path, cache_dir=tmp_path / "c", seed=0,
                  progress=False)
    fp32 = export_onnx(trained, (1, 8, 8), tmp_path / "in.onnx")
    current = Stage("original", fp32, (1, 8, 8), model=trained)
    proposal = PruneStep(latency_ratio=0.6, divisor=4).propose(current, ctx)
    pruned = proposal.stage.model
    widths = proposal.details["widths"]
    assert proposal.details["reached"]
    assert [g.channels for g in analyse(pruned, (1, 8, 8))] == [widths[g.label] for g in analyse(trained, (1, 8, 8))]
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in trained.parameters())
    assert pruned(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert all(p["latency_ratio"] <= 0.6 for p in proposal.details["probes"] if p["keep"] <= proposal.details["keep_ratio"])


def test_bad_step_options_fail_before_any_work():
    with pytest.raises(ConfigError, match="unknown step 'quantise'"):
        build_steps(["quantise"], {})
    with pytest.raises(ConfigError, match="put quantize last"):
        build_steps(["quantize", "prune"], {})
    with pytest.raises(ConfigError, match=r"prune.latency_ratio=1.5"):
        build_steps(["prune"], {"prune": {"latency_ratio": 1.5}})
    with pytest.raises(ConfigError, match="bad option"):
        build_steps(["quantize"], {"quantize": {"bits": 4}})
    from nas.compress.command import steps_of

    with pytest.raises(ConfigError, match=r"compress.min_speedup=0.9"):
        steps_of({"steps": ["prune"], "min_speedup": 0.9})


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.compress", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "HWNAS_CACHE": str(cwd / "cache")})


def _one_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize("case", ["not_onnx", "unknown_step", "wrong_channels", "unreachable_agent"])
def test_bad_input_gives_one_error_line_and_leaves_the_model_untouched(tmp_path, case):
    model = small_cnn(in_channels=3 if case == "wrong_channels" else 1)
    path = export_onnx(model, (model[0].in_channels, 8, 8), tmp_path / "model.onnx")
    if case == "not_onnx":
        path = tmp_path / "notes.onnx"
        path.write_text("this is not a model")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    args = [f"model={path}", "+target=cpu", "data=digits", f"hydra.run.dir={tmp_path / 'run'}", "steps=[quantize]"]
    if case == "unknown_step":
        args[-1] = "steps=[quantise]"
    if case == "unreachable_agent":
        args += ["target.agent=http://127.0.0.1:9", "+target.agent_timeout=5"]
    line = _one_error(_cli(*args, cwd=tmp_path))
    expected = {"not_onnx": "not an ONNX model", "unknown_step": "unknown step", "wrong_channels": "wrong shape",
                "unreachable_agent": "127.0.0.1:9"}[case]
    assert expected in line
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_cli_quantizes_a_users_onnx_model(tmp_path, trained):
    path = export_onnx(trained, (1, 8, 8), tmp_path / "model.onnx")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = _cli(f"model={path}", "+target=cpu", "target.max_seconds=0.2", "data=digits", "steps=[quantize]",
                  f"hydra.run.dir={tmp_path / 'run'}", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"report: {tmp_path / 'run' / 'report.json'}"
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["steps"][0]["latency_source"] == "measured" and report["steps"][0]["latency_ms"] > 0
    assert report["original"]["latency_spread"] is not None
    assert (tmp_path / "run" / "profile_final.json").is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_quantization_aware_finetuning_keeps_the_network_and_quantizes(tmp_path, trained, digits):
    from nas.compress import qat

    if not qat.available():
        pytest.skip("torchao is not installed: pip install 'hwnas[qat]' runs this test")
    adapted = qat.qat_finetune(trained, digits, input_shape=(1, 8, 8), epochs=1, lr=0.005, seed=0,
                               checkpoint=tmp_path / "qat.npz", progress=False)
    assert set(adapted.state_dict()) == set(trained.state_dict())
    assert any(not torch.equal(a, b) for a, b in zip(adapted.state_dict().values(), trained.state_dict().values()))
    fp32 = export_onnx(adapted, (1, 8, 8), tmp_path / "adapted.onnx")
    int8 = quantize_static_qdq(fp32, tmp_path / "int8.onnx", calibration_images(digits.train.X, (1, 8, 8), 64),
                               activations="uint8")
    assert _precision(int8, "tensor(float)") == "int8"
    assert onnx_accuracy(int8, digits.test.X, digits.test.y) > 0.8


def test_precision_is_part_of_the_store_key(tmp_path, trained, digits):
    from nas.hardware.store import MeasurementStore

    fp32 = export_onnx(trained, (1, 8, 8), tmp_path / "in.onnx")
    target = FakeTarget(int8_ms=0.1)
    target.use_store(MeasurementStore(tmp_path / "m.sqlite"))
    run_compression(Stage("original", fp32, (1, 8, 8)), build_steps(["quantize"], {}), data=digits, target=target,
                    run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", profile=False, progress=False)
    records = target.store.records()
    precisions = {r["conditions"]["precision"] for r in records}
    assert precisions == {"fp32", "int8"}


def test_the_device_agent_measures_an_int8_model(tmp_path, trained, digits):
    from nas.hardware.targets import LocalCPUTarget
    from tests.test_device_agent import start_agent

    fp32 = export_onnx(trained, (1, 8, 8), tmp_path / "fp32.onnx")
    int8 = quantize_static_qdq(fp32, tmp_path / "int8.onnx", calibration_images(digits.train.X, (1, 8, 8), 32),
                               activations="uint8")
    proc, url = start_agent("--token", "secret")
    try:
        target = LocalCPUTarget(agent=url, token="secret", max_seconds=0.2, reference=False)
        measured = target.measure_onnx_file(int8, (1, 8, 8))
    finally:
        proc.terminate()
        proc.wait(10)
    assert measured.precision == "int8" and measured.median_ms > 0


def test_a_step_that_cannot_work_on_the_network_is_reported_and_the_pipeline_goes_on(tmp_path, digits):
    from nas.channels.base import resolve_base

    spec = resolve_base(base="shufflenet_v2_x0_5", base_run=None, base_config=None, resolution=8,
                        num_classes=digits.num_classes, in_channels=digits.in_channels)
    space = spec.build_space()
    model = space.build(space.validate(spec.arch)).eval()  # channel shuffle: Torch-Pruning cannot trace it
    shape = tuple(space.input_shape(spec.arch))
    original = Stage("original", export_onnx(model, shape, tmp_path / "in.onnx"), shape, model=model)
    report = json.loads(run_compression(original, build_steps(["prune", "quantize"], {}), data=digits,
                                        target=FakeTarget(int8_ms=1e-3), run_dir=tmp_path / "run",
                                        cache_dir=tmp_path / "cache", profile=False, progress=False).read_text())
    prune, quantize = report["steps"]
    assert not prune["kept"] and prune["why"].startswith("not applicable to this network")
    assert quantize["precision"] == "int8" and report["final"]["from_step"] in ("quantize", "original")


class ConstantTarget(FakeTarget):
    """Every model takes 1 ms: nothing is ever faster."""

    def measure_onnx_file(self, path: Path, input_shape) -> Measurement:
        return fake_measurement(1.0, _precision(Path(path), "tensor(float)"))


def test_lowrank_keeps_layers_only_when_faster_and_is_not_kept_when_none_is(tmp_path, trained, digits):
    original = Stage("original", export_onnx(trained, (1, 8, 8), tmp_path / "in.onnx"), (1, 8, 8), model=trained)
    options = {"lowrank": {"energy": 0.5, "min_saving": 0.0, "finetune_epochs": 1}}
    report = json.loads(run_compression(original, build_steps(["lowrank"], options), data=digits,
                                        target=ConstantTarget(), run_dir=tmp_path / "flat", cache_dir=tmp_path / "c",
                                        profile=False, progress=False).read_text())
    (step,) = report["steps"]
    assert step["details"]["tried"] >= 1 and step["details"]["kept_layers"] == 0
    assert not step["kept"] and "made the network" in step["why"]
    # with latency following the weights (FakeTarget), factorised layers that save weights are kept
    report = json.loads(run_compression(original, build_steps(["lowrank"], options), data=digits,
                                        target=FakeTarget(), run_dir=tmp_path / "size", cache_dir=tmp_path / "c",
                                        profile=False, progress=False).read_text())
    step = report["steps"][0]
    assert step["details"]["kept_layers"] >= 1
    assert all(t["kept"] == (t["latency_ratio"] <= 0.99) for t in step["details"]["trials"])
