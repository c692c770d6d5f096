"""Per-layer latency profiles: onnxruntime's kernels attributed to the layers of the exported model.

Small torch CNNs (conv+BN+ReLU; a depthwise-separable block with a residual add; linear heads) exported with
nas.export.export_onnx. Only structure and invariants are checked (every kernel in exactly one row, rows adding up
to the run, MACs matching count_macs, fused kernels in the conv's row), never timings.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nas.compress.profile import (
    OVERHEAD,
    UNATTRIBUTED,
    LayerProfile,
    attribute,
    layer_of,
    profile_model,
    static_costs,
)
from nas.compress.profile_report import plot_profile
from nas.errors import ConfigError, DataError, DeviceError, ModelError
from nas.export import export_onnx
from nas.hardware import profiling
from nas.hardware.measure import MeasureConfig
from nas.hardware.profiling import profile_onnx, read_nodes
from nas.hardware.targets import LocalCPUTarget, TableTarget
from search_spaces.profile import count_macs
from tests.test_device_agent import _env, start_agent, tiny_model

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "profile-token-5678"
FAST = MeasureConfig(warmup=1)
RUNS = 5


class ConvBNReLU(nn.Module):
    """conv+BN+ReLU stem (BN with non-trivial statistics, so folding it changes the weights), pool, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
                                                    nn.BatchNorm2d(16), nn.ReLU()))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class Separable(nn.Module):
    """Depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN, residual add."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dw = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
                                nn.BatchNorm2d(channels), nn.ReLU6())
        self.pw = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(self.dw(x))


class SeparableNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()),
            Separable(16), Separable(16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def _randomize_bn(model: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator))
            module.bias.data.copy_(torch.rand(module.num_features, generator=generator))
    return model.eval()


MODELS = {"convbnrelu": (ConvBNReLU, (3, 32, 32)), "separable": (SeparableNet, (3, 32, 32))}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, tuple[int, int, int], nn.Module]]:
    folder = tmp_path_factory.mktemp("profile-models")
    out = {}
    for name, (cls, shape) in MODELS.items():
        torch.manual_seed(0)
        model = _randomize_bn(cls())
        out[name] = (export_onnx(model, shape, folder / f"{name}.onnx"), shape, model)
    return out


@pytest.fixture(scope="module")
def profiles(exported) -> dict[str, tuple[dict, LayerProfile]]:
    out = {}
    for name, (path, shape, _) in exported.items():
        raw = profile_onnx(path, shape, FAST, runs=RUNS)
        out[name] = (raw, attribute(raw, path, shape))
    return out


def _check_invariants(raw: dict, profile: LayerProfile) -> None:
    """Every kernel in exactly one row, no (unattributed) row, rows adding up to the profiled run."""
    assert [r.layer for r in profile.rows if r.layer == UNATTRIBUTED] == []
    attributed = sorted(name for row in profile.rows for name in row.kernels)
    assert attributed == sorted(k["node"] for k in raw["kernels"])
    assert math.isclose(sum(r.us for r in profile.rows), raw["run_us"], rel_tol=1e-9, abs_tol=1e-9)
    assert profile.rows[-1].layer == OVERHEAD
    assert math.isclose(profile.rows[-1].us, raw["run_us"] - raw["kernel_us"], rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(sum(r.kernel_share or 0.0 for r in profile.layer_rows), 1.0, rel_tol=1e-9)


# ---------------------------------------------------------------------------------------------- naming and costs
def test_layer_of_reads_the_module_scope() -> None:
    assert layer_of("/features/features.3/conv/conv.0/Conv") == "features.3.conv.0"
    assert layer_of("/features/features.0/features.0.0/Conv") == "features.0.0"
    assert layer_of("/features/features.1/Add_1") == "features.1"
    assert layer_of("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert layer_of("/head/Gemm") == "head"
    assert layer_of("/Flatten") == "Flatten"  # no scope: the node's own name
    assert layer_of("Identity_4") == "Identity_4"


@pytest.mark.parametrize("name", list(MODELS))
def test_static_macs_match_count_macs(exported, name: str) -> None:
    path, shape, model = exported[name]
    costs = static_costs(path, shape)
    assert sum(c["macs"] for c in costs.values()) == count_macs(model, shape)
    assert sum(c["params"] for c in costs.values()) > 0 and all(c["bytes"] >= 0 for c in costs.values())
    assert costs["head"]["kind"] == "linear" and costs["head"]["macs"] == 16 * 10
    assert costs["features.0.0"]["kind"] == "conv"
    # the exporter's Identity nodes (a shared bias) belong to the conv that uses them, not to rows of their own
    assert not any(layer.startswith("Identity") for layer in costs)
    if name == "separable":
        assert costs["features.1.dw.0"]["kind"] == "depthwise"
        assert costs["features.1.pw.0"]["kind"] == "pointwise"
        assert costs["features.1"]["kind"] == "elementwise" and costs["features.1"]["ops"] == ["Add"]
        # depthwise 3x3 over 16 channels at 16x16: one 9-element dot product per output element
        assert costs["features.1.dw.0"]["macs"] == 16 * 16 * 16 * 9


# ---------------------------------------------------------------------------------------------- attribution
@pytest.mark.parametrize("name", list(MODELS))
def test_every_kernel_is_attributed_and_rows_add_up(profiles, name: str) -> None:
    raw, profile = profiles[name]
    assert raw["format"] == "hwnas.profile-raw/1" and raw["runs"] == RUNS
    assert raw["graph_source"] == "optimized model" and raw["nodes"]
    assert all(k["calls"] == RUNS and k["graph_index"] is not None for k in raw["kernels"])  # no warm-up calls
    _check_invariants(raw, profile)
    assert sum(r.macs for r in profile.rows) == profile.totals["macs"]
    json.dumps(profile.to_dict(), allow_nan=False)  # strict JSON


def test_fused_conv_bn_relu_is_attributed_to_the_conv_layer(profiles) -> None:
    _, profile = profiles["convbnrelu"]
    conv = profile.row("features.0.0")
    assert conv.layer == "features.0.0" and conv.kernels and conv.kind == "conv"
    # The ReLU ran inside the conv's kernel (BN was folded by the exporter): it has no row of its own.
    assert profile.row("features.0.2") is conv and "features.0.2" in conv.fused
    assert "features.0.2" not in [r.layer for r in profile.rows]
    assert conv.macs_share > 0.9


def test_separable_block_rows(profiles) -> None:
    _, profile = profiles["separable"]
    for block in ("features.1", "features.2"):
        dw = profile.row(f"{block}.dw.0")
        assert dw.kind == "depthwise" and dw.kernels and profile.row(f"{block}.dw.2") is dw
        assert profile.row(f"{block}.pw.0").kind == "pointwise"
        profile.row(block)  # the residual add: its own kernel, or fused into the pointwise conv
    assert {r.kind for r in profile.layer_rows} >= {"conv", "depthwise", "pointwise", "linear", "pool"}
    assert all(r.time_per_mac is None for r in profile.layer_rows if r.macs == 0)


def test_quantized_model_rows_are_its_conv_layers(exported, tmp_path: Path) -> None:
    """A QDQ int8 model: onnxruntime fuses each DequantizeLinear -> Conv -> QuantizeLinear into a QLinearConv (on
    x86 in NHWC, between Transposes) whose output is named after the Conv node; each conv keeps its own row."""
    from nas.compress.quantize import quantize_static_qdq

    path, shape, _ = exported["separable"]
    images = np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)
    int8 = quantize_static_qdq(path, tmp_path / "int8.onnx", images, activations="uint8")
    raw = profile_onnx(int8, shape, FAST, runs=RUNS)
    assert "QLinearConv" in {k["op"] for k in raw["kernels"]}
    profile = attribute(raw, int8, shape)
    _check_invariants(raw, profile)
    for block in ("features.1", "features.2"):
        for conv, kind in ((f"{block}.dw.0", "depthwise"), (f"{block}.pw.0", "pointwise")):
            row = profile.row(conv)
            assert row.layer == conv and row.kind == kind
            assert any(k["op"] == "QLinearConv" and k["node"] in row.kernels for k in raw["kernels"])


def _raw_at_extended_level(path: Path, shape: tuple[int, int, int]) -> dict:
    """A raw profile of the graph onnxruntime runs where its x86 NCHWc layout does not apply: FusedConv named
    after the conv, writing the activation's output tensor."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.enable_profiling, options.profile_file_prefix = True, f"{tmp}/p"
        options.optimized_model_filepath, options.log_severity_level = f"{tmp}/optimized.onnx", 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.zeros((1, *shape), np.float32)}
        for _ in range(RUNS + 1):
            session.run(None, feed)
        kernels, durations = profiling._kernels(json.loads(Path(session.end_profiling()).read_text()), 1, RUNS)
        nodes = read_nodes(Path(f"{tmp}/optimized.onnx").read_bytes())
    profiling._match(kernels, nodes)
    for kernel in kernels:
        kernel["us"] = kernel.pop("total_us") / RUNS
    return {"format": profiling.FORMAT, "runs": RUNS, "nodes": nodes, "kernels": kernels,
            "run_us": sum(durations) / RUNS, "kernel_us": sum(k["us"] for k in kernels)}


def test_fusedconv_graph_without_nchwc_is_attributed(exported) -> None:
    path, shape, _ = exported["separable"]
    raw = _raw_at_extended_level(path, shape)
    assert "FusedConv" in {k["op"] for k in raw["kernels"]}
    profile = attribute(raw, path, shape)
    _check_invariants(raw, profile)
    assert profile.row("features.0.2") is profile.row("features.0.0")
    assert profile.row("features.1.dw.2") is profile.row("features.1.dw.0")


def test_names_alone_attribute_when_the_optimized_graph_is_missing(profiles, exported) -> None:
    # What profile_onnx records when a provider's compiled nodes cannot be saved: names and op types only.
    for name in MODELS:
        raw, _ = profiles[name]
        names_only = dict(raw, graph_source="profiler events",
                          nodes=[{"name": k["node"], "op_type": k["op"], "domain": "", "inputs": [], "outputs": []}
                                 for k in raw["kernels"]],
                          kernels=[dict(k, graph_index=None) for k in raw["kernels"]])
        path, shape, _ = exported[name]
        profile = attribute(names_only, path, shape)
        _check_invariants(names_only, profile)
        assert profile.graph_source == "profiler events"
        assert profile.row("features.0.0").kernels  # the conv's kernel, not the ReLU's whose output it names


def test_a_kernel_that_maps_nowhere_goes_to_the_unattributed_row(profiles, exported) -> None:
    raw, _ = profiles["convbnrelu"]
    stray = {"node": "SomethingElse_99", "op": "Mystery", "us": 3.0, "calls": RUNS, "graph_index": len(raw["nodes"])}
    bogus = dict(raw, nodes=[*raw["nodes"], {"name": "SomethingElse_99", "op_type": "Mystery", "domain": "x",
                                               "inputs": ["nowhere"], "outputs": ["nothing"]}],
                 kernels=[*raw["kernels"], stray], kernel_us=raw["kernel_us"] + 3.0, run_us=raw["run_us"] + 3.0)
    path, shape, _ = exported["convbnrelu"]
    profile = attribute(bogus, path, shape)
    lost = profile.row(UNATTRIBUTED)
    assert lost.kernels == ["SomethingElse_99"] and lost.us == 3.0
    assert math.isclose(sum(r.us for r in profile.rows), bogus["run_us"], rel_tol=1e-9)
    assert "could not be mapped" in profile.findings()
    with pytest.raises(DataError, match="not a raw profile"):
        attribute({"format": "other"}, path, shape)


def test_table_findings_and_plot(profiles, tmp_path: Path) -> None:
    _, profile = profiles["separable"]
    table = profile.table(top=3)
    lines = table.splitlines()
    assert "time/MAC" in table and "more rows" in table and lines[-2].startswith("total")
    shown = [line.split()[0] for line in lines[4:7]]
    assert shown == [r.layer.split()[0] for r in sorted(profile.rows, key=lambda r: -r.us)[:3]]
    findings = profile.findings()
    assert "\n" not in findings and "The most time goes to" in findings
    for kind, shares in profile.kinds().items():  # a kind is named as slow exactly when it is
        if shares["macs_share"] > 0 and shares["kernel_share"] > shares["macs_share"]:
            assert f"{kind} layers take" in findings
    png = plot_profile(profile, tmp_path / "profile.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="top"):
        profile.table(top=0)


# ---------------------------------------------------------------------------------------------- profiling
def test_profile_onnx_checks_its_arguments(exported) -> None:
    path, shape, _ = exported["convbnrelu"]
    with pytest.raises(ConfigError, match="runs must be an int"):
        profile_onnx(path, shape, FAST, runs=0)
    with pytest.raises(ConfigError, match="input_shape"):
        profile_onnx(path, (3, 32), FAST)
    with pytest.raises(ConfigError, match="does not fit the model"):
        profile_onnx(path, (3, 30, 30), FAST, runs=1)
    with pytest.raises(ConfigError, match="MeasureConfig"):
        profile_onnx(path, shape, {"threads": 1})  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="not an ONNX model"):
        profile_onnx(b"not an onnx model" * 4, shape, FAST, runs=1)


def test_wire_reader_matches_onnx(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    data = exported["separable"][0].read_bytes()
    with_onnx = read_nodes(data)
    monkeypatch.setitem(sys.modules, "onnx", None)  # a board without onnx
    assert read_nodes(data) == with_onnx and with_onnx


def test_profiling_needs_neither_torch_nor_onnx(tmp_path: Path) -> None:
    # A board with only onnxruntime and numpy: the optimized graph is read with the wire-format reader.
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_model())
    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; "
            "from nas.hardware.measure import MeasureConfig; from nas.hardware.profiling import profile_onnx; "
            "raw = profile_onnx(open(sys.argv[1], 'rb').read(), (3, 8, 8), MeasureConfig(warmup=1), runs=3); "
            "assert raw['graph_source'] == 'optimized model' and raw['nodes'], raw; "
            "assert all(k['graph_index'] is not None for k in raw['kernels']), raw['kernels']")
    proc = subprocess.run([sys.executable, "-c", code, str(model)], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------------- targets and agent
@pytest.fixture(scope="module")
def agent() -> Iterator[str]:
    proc, url = start_agent("--token", TOKEN, "--max-model-mb", "1")
    yield url
    proc.terminate()
    proc.wait(10)


def _closed_port_url() -> str:
    """An agent URL where nothing listens: a port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _post(url: str, path: str, body: bytes, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_profile_through_the_agent(agent: str, exported) -> None:
    path, shape, _ = exported["separable"]
    target = LocalCPUTarget(agent=agent, token=TOKEN, warmup=1)
    profile = profile_model(path, shape, target, runs=RUNS)
    assert profile.latency_source == f"measured (agent {agent})"
    _check_invariants(profile.raw, profile)
    assert profile.device == target.health()["device"] and profile.runs == RUNS
    assert profile.row("features.0.2") is profile.row("features.0.0")


def test_profile_endpoint_keeps_the_agent_safety_rules(agent: str) -> None:
    model = tiny_model()
    assert _post(agent, "/profile?input_shape=3,8,8", model, token=None)[0] == 401
    assert _post(agent, "/profile?input_shape=3,8,8", model, token="wrong")[0] == 401
    status, body = _post(agent, "/profile?input_shape=3,8,8", b"\x00garbage" * 200_000)  # 1.6 MB > 1 MiB
    assert status == 413 and "max-model-mb" in body["error"]
    status, body = _post(agent, "/profile?input_shape=3,8,8", b"not an onnx model" * 10)
    assert status == 400 and body["kind"] == "ModelError" and "not an ONNX model" in body["error"]
    for query, words in (("runs=5", "input_shape"), ("input_shape=3,8,8&bogus=1", "unknown /profile option"),
                         ("input_shape=3,8,8&runs=0", "runs must be"), ("input_shape=3,9,9", "does not fit"),
                         ("input_shape=3,100000,100000", "over the limit")):
        status, body = _post(agent, f"/profile?{query}", model)
        assert status == 400 and body["kind"] == "ConfigError" and words in body["error"], (query, body)
    client = LocalCPUTarget(agent=agent, token=TOKEN).client
    with pytest.raises(ModelError, match="corrupt or not an ONNX model"):
        client.profile(b"\x00garbage" * 10, (3, 8, 8), FAST, runs=2)
    raw = client.profile(model, (3, 8, 8), FAST, runs=2)  # still serving
    assert raw["format"] == "hwnas.profile-raw/1" and raw["runs"] == 2 and raw["kernels"]


def test_targets_without_a_device_cannot_profile(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    from nas.hardware import arm_cpu

    path, shape, _ = exported["convbnrelu"]
    with pytest.raises(ConfigError, match="needs one.*target.agent=http://BOARD:8765"):
        profile_model(path, shape, TableTarget(latency_column="x"))
    monkeypatch.setattr(arm_cpu, "is_arm_machine", lambda: False)
    with pytest.raises(ConfigError, match="attach the board with target.agent=http://BOARD:8765"):
        profile_model(path, shape, arm_cpu.ArmCPUTarget())
    with pytest.raises(DeviceError, match="cannot reach the device agent"):
        profile_model(path, shape, LocalCPUTarget(agent=_closed_port_url(), agent_timeout=5), runs=2)


# ---------------------------------------------------------------------------------------------- command
def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.profile", *args], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=120)


def test_command_writes_the_profile(exported, tmp_path: Path) -> None:
    path = exported["separable"][0]
    proc = _command(f"model={path}", "+target=cpu", f"hydra.run.dir={tmp_path}", f"runs={RUNS}", "target.warmup=1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == f"profile: {tmp_path / 'profile.json'}"
    assert any(line.startswith("features.1.dw.0") for line in lines)
    record = json.loads((tmp_path / "profile.json").read_text())
    assert record["raw"]["format"] == "hwnas.profile-raw/1" and record["runs"] == RUNS
    assert UNATTRIBUTED not in [r["layer"] for r in record["rows"]]
    assert (tmp_path / "profile.png").stat().st_size > 0
    markdown = (tmp_path / "profile.md").read_text()
    assert "time/MAC" in markdown and record["findings"] in markdown


def test_run_directories_and_input_shapes(exported, tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    from nas.profile import input_shape_of, model_path

    path, shape, _ = exported["convbnrelu"]
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "models" / "best.onnx").write_bytes(path.read_bytes())
    (run / "results.json").write_text(json.dumps({"best": {"onnx": "models/best.onnx"}}))
    assert model_path(run, None) == run / "models" / "best.onnx"
    assert input_shape_of(model_path(run, None)) == shape
    (run / "results.json").write_text(json.dumps({"best": {}}))
    with pytest.raises(ConfigError, match="names no exported network"):
        model_path(run, None)
    with pytest.raises(ConfigError, match="no results.json"):
        model_path(tmp_path, None)
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["y"])], "dynamic",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[weight])
    dynamic = tmp_path / "dynamic.onnx"
    dynamic.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    with pytest.raises(ConfigError, match=r"dynamic size .*input_shape=\[C,H,W\]"):
        input_shape_of(dynamic)
    assert input_shape_of(dynamic, [3, 16, 16]) == (3, 16, 16)
    with pytest.raises(ConfigError, match="does not fit"):
        input_shape_of(dynamic, [4, 16, 16])


@pytest.mark.parametrize("case", ["not onnx", "missing", "both", "neither", "unreachable agent"])
def test_command_bad_input_is_one_error_line(exported, tmp_path: Path, case: str) -> None:
    path = exported["convbnrelu"][0]
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a model")
    args = {"not onnx": [f"model={junk}"], "missing": [f"model={tmp_path / 'missing.onnx'}"],
            "both": [f"model={path}", f"run={tmp_path}"], "neither": [],
            "unreachable agent": [f"model={path}", "+target=cpu", f"target.agent={_closed_port_url()}"]}[case]
    proc = _command(*args, f"hydra.run.dir={tmp_path / 'out'}", "runs=2")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: "), proc.stderr
    assert "profile:" not in proc.stdout
