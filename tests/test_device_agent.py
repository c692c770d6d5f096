"""The device agent over real HTTP: a subprocess agent on loopback, measured through the client and a target.

Only ratios or structure are checked, never absolute times (they vary 12-20 % run to run on these machines).
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from nas.device.client import AgentClient
from nas.errors import ConfigError, DeviceError, ModelError
from nas.hardware.measure import MeasureConfig, Measurement
from nas.hardware.reference import reference_model
from nas.hardware.targets import LocalCPUTarget

TOKEN = "test-token-1234"
TINY = (3, 8, 8)
FAST = MeasureConfig(warmup=1, min_repeats=5, max_repeats=50, max_seconds=0.1)
ROOT = Path(__file__).resolve().parent.parent


def tiny_model() -> bytes:
    """Conv(3->4, 3x3) + ReLU on 1x3x8x8, built with onnx.helper (no torch: the agent's world)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, *TINY])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HWNAS_AGENT_TOKEN"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_agent(*args: str) -> tuple[subprocess.Popen, str]:
    """Start ``python -m nas.device serve --port 0 ARGS`` and read the URL from its startup line."""
    # stderr (one log line per request) goes to a file: an unread pipe would fill up and block the agent
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "nas.device", "serve", "--port", "0", *args], cwd=ROOT,
                            env=_env(), stdout=subprocess.PIPE, stderr=log, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
    if "serving on http://" not in line:
        proc.kill()
        log.seek(0)
        raise AssertionError(f"agent did not start: {line!r} {log.read()}")
    return proc, line.split("serving on ", 1)[1].split()[0]


@pytest.fixture(scope="module")
def agent() -> Iterator[str]:
    # 20 KiB limit: the tiny model (~0.5 KiB) fits, the 30 KiB reference model does not.
    proc, url = start_agent("--token", TOKEN, "--max-model-mb", str(20 / 1024))
    yield url
    proc.terminate()
    proc.wait(10)


def raw(url: str, path: str, *, body: bytes | None = None, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url + path, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_health_and_measure(agent: str) -> None:
    client = AgentClient(agent, token=TOKEN)
    health = client.health()
    assert health["ok"] is True and "CPUExecutionProvider" in health["providers"]
    assert health["runtime"].startswith("onnxruntime ") and health["agent_version"] and health["device"]["cores"] >= 1
    m = client.measure(tiny_model(), TINY, FAST)
    assert isinstance(m, Measurement) and m.input_shape == TINY and m.precision == "fp32"
    assert 0 < m.p10_ms <= m.median_ms <= m.p90_ms and m.n >= 5 and m.reference is None
    assert m.device == health["device"]
    # reference correction with a given baseline: the agent reports it back
    corrected = client.measure(tiny_model(), TINY, MeasureConfig(warmup=1, min_repeats=5, max_seconds=0.1,
                                                                 reference=True), reference_ms=5.0)
    assert corrected.reference is not None and corrected.reference["baseline_ms"] == 5.0
    assert corrected.median_ms == pytest.approx(5.0 * corrected.reference["ratio_median"])


def test_token_is_required(agent: str) -> None:
    for token in (None, "wrong-token"):
        status, body = raw(agent, "/health", token=token)
        assert status == 401 and "token" in body["error"]
        status, body = raw(agent, "/measure?input_shape=3,8,8", body=tiny_model(), token=token)
        assert status == 401
    with pytest.raises(DeviceError, match="refused.*token"):
        AgentClient(agent, token="wrong-token").health()
    assert raw(agent, "/health")[0] == 200


def test_oversize_and_malformed_models_are_rejected_and_agent_keeps_serving(agent: str) -> None:
    client = AgentClient(agent, token=TOKEN)
    status, body = raw(agent, "/measure?input_shape=3,64,64", body=reference_model())
    assert status == 413 and "max-model-mb" in body["error"]
    with pytest.raises(DeviceError, match="too large"):
        client.measure(reference_model(), (3, 64, 64), FAST)
    assert client.health()["ok"]
    status, body = raw(agent, "/measure?input_shape=3,8,8", body=b"not an onnx model" * 10)
    assert status == 400 and body["kind"] == "ModelError" and "not an ONNX model" in body["error"]
    with pytest.raises(ModelError, match="corrupt or not an ONNX model"):
        client.measure(b"\x00garbage" * 10, TINY, FAST)
    status, body = raw(agent, "/measure?threads=1", body=tiny_model())
    assert status == 400 and "input_shape" in body["error"]
    with pytest.raises(ConfigError, match="unknown /measure option"):
        client._request("POST", "/measure?input_shape=3,8,8&bogus=1", body=tiny_model())
    assert client.measure(tiny_model(), TINY, FAST).n >= 5  # still serving


def test_exposed_bind_without_token_is_refused() -> None:
    proc = subprocess.run([sys.executable, "-m", "nas.device", "serve", "--host", "0.0.0.0", "--port", "0"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "without a token" in proc.stderr and "--token" in proc.stderr


def test_unreachable_agent_says_how_to_start_it() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = AgentClient(f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(DeviceError, match=rf"127\.0\.0\.1:{port}.*python -m nas\.device serve"):
        client.health()
    with pytest.raises(ConfigError, match="http://HOST:PORT"):
        AgentClient("127.0.0.1:8765")


def test_cpu_target_measures_through_the_agent(agent: str, tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_model())
    target = LocalCPUTarget(agent=agent, token=TOKEN, warmup=1, min_repeats=5, max_seconds=0.1)
    m = target.measure_onnx_file(model, TINY)
    assert m.reference is not None and m.median_ms > 0  # reference correction is on by default for targets
    # the first measurement's baseline is kept and sent with the next ones
    again = target.measure_onnx_file(model, TINY)
    assert again.reference is not None and again.reference["baseline_ms"] == m.reference["baseline_ms"]
    desc = target.describe()
    assert desc["agent"] == agent and desc["device"] == AgentClient(agent, token=TOKEN).health()["device"]
    assert TOKEN not in json.dumps(desc)
    assert target.target_key().startswith("cpu-")
    with pytest.raises(ModelError, match="not found"):
        target.measure_onnx_file(tmp_path / "missing.onnx", TINY)


def test_token_from_environment(agent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWNAS_AGENT_TOKEN", TOKEN)
    assert AgentClient(agent).health()["ok"]


def test_concurrent_requests_wait_their_turn(agent: str) -> None:
    client = AgentClient(agent, token=TOKEN)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: client.measure(tiny_model(), TINY, FAST), range(3)))
    assert all(m.n >= 5 for m in results)


def test_measuring_path_needs_neither_torch_nor_onnx() -> None:
    # A board with only onnxruntime and numpy: the agent imports, and measures the shipped reference model.
    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; "
            "import nas.device.agent, nas.device.client, nas.hardware.measure, nas.hardware.store; "
            "import nas.device.__main__; "
            "from nas.hardware.measure import MeasureConfig, measure_onnx; "
            "from nas.hardware.reference import reference_model; "
            "m = measure_onnx(reference_model(), (3, 64, 64), MeasureConfig(warmup=1, min_repeats=3, "
            "max_seconds=0.05, reference=True)); "
            "assert m.precision == 'fp32' and m.reference, m; "
            "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start < 30


def test_input_shape_the_model_does_not_take_is_refused_with_400(agent: str) -> None:
    client = AgentClient(agent, token=TOKEN)
    status, body = raw(agent, "/measure?input_shape=3,9,9", body=tiny_model())
    assert status == 400 and body["kind"] == "ConfigError", body
    assert "does not fit the model" in body["error"] and "[1, 3, 8, 8]" in body["error"], body["error"]
    with pytest.raises(ConfigError, match=r"device agent .*input_shape=4,8,8 does not fit the model.*3,8,8"):
        client.measure(tiny_model(), (4, 8, 8), FAST)
    assert client.measure(tiny_model(), TINY, FAST).n >= 5  # still serving


def test_absurd_input_shape_is_refused_with_400_before_anything_is_allocated(agent: str) -> None:
    # 3 x 100000 x 100000 floats would be 224 GiB (the allocation an agent once attempted)
    start = time.perf_counter()
    status, body = raw(agent, "/measure?input_shape=3,100000,100000", body=tiny_model())
    assert status == 400 and body["kind"] == "ConfigError", body
    assert "over the limit" in body["error"] and "--max-input-mb" in body["error"], body["error"]
    assert time.perf_counter() - start < 10  # answered at once, not after an attempted allocation
    with pytest.raises(ConfigError, match="over the limit of 32 MiB"):
        AgentClient(agent, token=TOKEN).measure(tiny_model(), (3, 100000, 100000), FAST)
    assert raw(agent, "/health")[1]["max_input_mb"] == 32.0


def test_shape_checks_run_before_the_input_is_allocated() -> None:
    """In-process agent (loopback), every allocation traced: refused requests stay far below the input's size."""
    import threading
    import tracemalloc

    from nas.device.agent import make_server

    server = make_server("127.0.0.1", 0, max_model_mb=1, max_input_mb=64)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # 3x1000x1000: within the 64 MiB limit (24 MiB at 8 bytes), but not the tiny model's 3x8x8 input
        cases = [("3,1000,1000", "does not fit the model"), ("3,100000,100000", "over the limit of 64 MiB")]
        big = 3 * 1000 * 1000 * 4  # the float32 feed a mismatched shape would have made, at least
        for shape, reason in cases:
            tracemalloc.start()
            try:
                status, body = raw(server.url, f"/measure?input_shape={shape}", body=tiny_model(), token=None)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert status == 400 and reason in body["error"], body
            assert peak < big / 4, f"{shape}: {peak / 2**20:.1f} MiB traced while refusing"
        # positive control: tracemalloc does see a numpy array of that size (so the bound above means something)
        tracemalloc.start()
        try:
            np.random.default_rng(0).standard_normal((1, 3, 1000, 1000)).astype(np.float32)
            assert tracemalloc.get_traced_memory()[1] > big
        finally:
            tracemalloc.stop()
    finally:
        server.shutdown()
        server.server_close()
