"""onnxruntime's profiler on one model: where a run's time goes, kernel by kernel, and the graph that ran.

:func:`profile_onnx` creates a session with the measurement options (:func:`~nas.hardware.runtime.load_session`:
same threads, provider and graph optimisations as a latency measurement, so the profiled graph is the measured
one), runs it ``config.warmup`` times untimed and ``runs`` times timed, under the machine-wide measurement lock,
and returns a JSON-serialisable record (format ``hwnas.profile-raw/1``): the optimized graph's nodes and each
kernel's mean time per run. :func:`nas.compress.profile.attribute` maps those kernels back to the layers of the
original model; this module only measures, so the device agent can run it on a board.

What the profiler gives, and how it is used (onnxruntime 1.x, checked on 1.32):

- One ``Node`` event per kernel call, named ``<node name>_kernel_time`` (a node without a name is reported as
  ``<op type>_<node index>``), with ``args`` ``op_name``, ``provider``, ``node_index`` and input/output type
  shapes, but no tensor names; one ``Session`` event ``model_run`` per ``session.run``. Durations and timestamps
  are integer microseconds, so per-kernel means are taken over many runs.
- Warm-up runs cannot be left out by starting the profiler late (onnxruntime profiles a session from its
  creation or not at all), and a separate warm-up session would leave this session's first runs cold; so the
  warm-up runs are profiled too and dropped here: the first ``config.warmup`` ``model_run`` events are warm-up,
  and only kernel events inside the windows of the next ``runs`` count.
- The graph that ran is saved by ``optimized_model_filepath`` and read back with ``onnx`` when installed, or
  else with a small protobuf reader below (a board may have only onnxruntime and numpy): both give each node's
  name, op type, domain and tensor names, which is what attribution needs. Saving works on the CPU provider
  even with the x86 NCHWc layout ops (onnxruntime warns that the file is machine-specific; we only read it).
  It fails for providers that compile subgraphs into one node, such as TensorRT or CoreML (onnxruntime: "Unable
  to serialize model as it contains compiled nodes"); then the session is created again without saving, and the node list is rebuilt from the events
  (names and op types, no tensor names): ``graph_source`` says which, and attribution falls back to names.
- The profiler costs time between kernels and inside each kernel's timed window (a roughly constant amount per
  kernel: on a 2-core x86 machine a network of microsecond kernels showed kernels adding up to more than a whole
  plain run, while one of millisecond kernels moved by a few percent). The record keeps both wall times
  (``wall_us`` profiled, ``plain_wall_us`` from a plain session timed right after, same lock) so a reader can see
  how much the profile inflates; its shares, not its absolute times, are the point.
"""

from __future__ import annotations

import bisect
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, ModelError
from nas.hardware.measure import MeasureConfig, input_feed, device_description, serial_measurement
from nas.hardware.runtime import check_input_shape, load_session

FORMAT = "hwnas.profile-raw/1"
#: Timed runs one profile may ask for: onnxruntime's profiler stops recording at a million events, and the
#: trace file grows by about a kilobyte per kernel call.
MAX_RUNS = 1000
_KERNEL_SUFFIX = "_kernel_time"


def _check_runs(runs: object) -> int:
    if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= MAX_RUNS:
        raise ConfigError(f"runs must be an int in 1..{MAX_RUNS} (timed runs to average kernel times over, "
                          f"e.g. runs=50), got {runs!r}")
    return runs


# ---------------------------------------------------------------------------------------------- graph
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated protobuf field")
        yield number, wire, value


def read_nodes(data: bytes) -> list[dict[str, Any]]:
    """The nodes of a serialized ONNX model (name, op_type, domain, inputs, outputs), in graph order.

    Uses ``onnx`` when it is installed; otherwise reads the protobuf wire format directly, since only five
    fields are needed (ModelProto.graph = 7, GraphProto.node = 1, NodeProto input = 1, output = 2, name = 3,
    op_type = 4, domain = 7) and a board running the device agent may not have ``onnx``.
    """
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        graph = onnx.load_model_from_string(data).graph
        return [{"name": n.name, "op_type": n.op_type, "domain": n.domain, "inputs": list(n.input),
                 "outputs": list(n.output)} for n in graph.node]
    nodes = []
    for number, wire, graph in _fields(data):
        if number != 7 or wire != 2:
            continue
        for gnumber, gwire, node in _fields(graph):
            if gnumber != 1 or gwire != 2:
                continue
            record: dict[str, Any] = {"name": "", "op_type": "", "domain": "", "inputs": [], "outputs": []}
            for nnumber, nwire, value in _fields(node):
                if nwire != 2:
                    continue
                text = bytes(value).decode("utf-8", errors="replace")
                if nnumber == 1:
                    record["inputs"].append(text)
                elif nnumber == 2:
                    record["outputs"].append(text)
                elif nnumber in (3, 4, 7):
                    record[{3: "name", 4: "op_type", 7: "domain"}[nnumber]] = text
            nodes.append(record)
    return nodes


# ---------------------------------------------------------------------------------------------- events
def _kernels(events: list[dict[str, Any]], warmup: int, runs: int) -> tuple[list[dict[str, Any]], list[float]]:
    """Kernel totals over the timed runs (the ``runs`` model_run windows after the first ``warmup``), in order of
    first call, and each timed run's duration (us)."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])
    timed = model_runs[warmup:warmup + runs]
    if not timed:
        raise ModelError(f"onnxruntime's profile holds {len(model_runs)} runs, none after the {warmup} warm-up "
                         f"runs; profile again with fewer runs or a smaller model")
    starts = [float(e["ts"]) for e in timed]
    ends = [float(e["ts"]) + float(e["dur"]) for e in timed]
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for event in sorted((e for e in events if e.get("cat") == "Node"), key=lambda e: e["ts"]):
        name = str(event.get("name", ""))
        if not name.endswith(_KERNEL_SUFFIX):
            continue  # older versions also log _fence_before / _fence_after events: not kernel time
        ts = float(event["ts"])
        i = bisect.bisect_right(starts, ts) - 1
        if i < 0 or ts > ends[i]:
            continue  # a warm-up run's kernel
        args = event.get("args") or {}
        # Names need not be unique in ONNX; onnxruntime's node index is, within the session.
        key = (name[: -len(_KERNEL_SUFFIX)], str(args.get("node_index", "")))
        entry = totals.setdefault(key, {"node": key[0], "op": str(args.get("op_name", "")),
                                        "provider": str(args.get("provider", "")), "total_us": 0.0, "calls": 0,
                                        "input_shapes": _shapes(args.get("input_type_shape")),
                                        "output_shapes": _shapes(args.get("output_type_shape"))})
        entry["total_us"] += float(event.get("dur", 0))
        entry["calls"] += 1
    return list(totals.values()), [e - s for s, e in zip(starts, ends)]


def _shapes(value: object) -> list[list[int]]:
    """``[{"float": [1, 3, 8, 8]}, ...]`` (the profiler's type shapes) as ``[[1, 3, 8, 8], ...]``."""
    out = []
    for item in value if isinstance(value, list) else []:
        dims = next(iter(item.values()), []) if isinstance(item, dict) and item else []
        out.append([int(d) for d in dims if isinstance(d, (int, float))])
    return out


def _match(kernels: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> None:
    """Set each kernel's ``graph_index`` (its position in ``nodes``) or None.

    By name; a node without a name is reported by the profiler as ``<op>_<index>``, so those are matched to the
    unnamed nodes of that op type in order (kernels in order of first call, nodes in the saved graph's order:
    both are topological orders of the same graph, and onnxruntime saves the order it executes)."""
    by_name: dict[str, list[int]] = {}
    unnamed: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        if node["name"]:
            by_name.setdefault(node["name"], []).append(i)
        else:
            unnamed.setdefault(node["op_type"], []).append(i)
    for kernel in kernels:
        queue = by_name.get(kernel["node"]) or unnamed.get(kernel["op"]) or []
        kernel["graph_index"] = queue.pop(0) if queue else None


# ---------------------------------------------------------------------------------------------- profile
def profile_onnx(
    model: Path | bytes,
    input_shape: tuple[int, int, int],
    config: MeasureConfig | None = None,
    *,
    runs: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Profile ``model`` (a path or serialized bytes) at batch 1: the optimized graph and kernel times per run.

    ``config`` gives threads, provider and warm-up runs (its repeat and reference settings are for latency
    measurements and not used here). Returns the ``hwnas.profile-raw/1`` record described in the module doc:
    ``nodes`` of the optimized graph, ``kernels`` (``node``, ``op``, ``us`` mean per timed run, ``calls``,
    ``graph_index`` into ``nodes``), ``run_us`` (mean ``model_run`` event), ``kernel_us`` (sum of kernels),
    plus conditions. Raises :class:`ConfigError` for bad arguments and :class:`ModelError` for a bad model.
    """
    config = MeasureConfig() if config is None else config
    if not isinstance(config, MeasureConfig):
        raise ConfigError(f"config must be a MeasureConfig (nas.hardware.measure), got {type(config).__name__}")
    shape = check_input_shape(input_shape)
    runs = _check_runs(runs)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    if not isinstance(model, (bytes, bytearray, str, Path)):
        raise ConfigError(f"model must be an ONNX file path or its bytes, got {type(model).__name__}")
    model = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model)
    import onnxruntime as ort

    options = {"threads": config.threads, "provider": config.provider}
    with tempfile.TemporaryDirectory(prefix="hwnas-profile-") as tmp:
        folder = Path(tmp)
        optimized = folder / "optimized.onnx"
        try:
            session = load_session(model, **options, profile=folder, optimized_model=optimized)
            graph_source = "optimized model"
        except ModelError:
            # Saving the optimized graph fails where running it would not (providers that compile nodes); a model
            # that is itself bad fails again here, with the message of load_session.
            session = load_session(model, **options, profile=folder)
            graph_source = "profiler events"
        feed = input_feed(session, shape, seed)  # checks the shape against the model's input before allocating
        plain = load_session(model, **options)
        wall, plain_wall = [], []
        with serial_measurement():
            for sess, durations in ((session, wall), (plain, plain_wall)):
                for _ in range(config.warmup):
                    sess.run(None, feed)
                for _ in range(runs):
                    start = time.perf_counter()
                    sess.run(None, feed)
                    durations.append(time.perf_counter() - start)
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text())
        kernels, run_durations = _kernels(events, config.warmup, runs)
        nodes = None
        if graph_source == "optimized model":
            try:
                nodes = read_nodes(optimized.read_bytes())
            except Exception:  # a graph we cannot parse: names from the events still attribute most kernels
                graph_source = "profiler events"
        del session, plain
    timed_runs = len(run_durations)
    if nodes is None:
        nodes = [{"name": k["node"], "op_type": k["op"], "domain": "", "inputs": [], "outputs": []} for k in kernels]
    _match(kernels, nodes)
    for kernel in kernels:
        kernel["us"] = kernel.pop("total_us") / timed_runs
    return {
        "format": FORMAT,
        "runs": timed_runs,
        "warmup": config.warmup,
        "input_shape": list(shape),
        "threads": config.threads,
        "provider": config.provider,
        "runtime": f"onnxruntime {ort.__version__}",
        "device": device_description(),
        "graph_source": graph_source,
        "nodes": nodes,
        "kernels": kernels,
        "run_us": sum(run_durations) / timed_runs,
        "kernel_us": sum(k["us"] for k in kernels),
        "wall_us": 1e6 * sum(wall) / len(wall),
        "plain_wall_us": 1e6 * sum(plain_wall) / len(plain_wall),
    }
