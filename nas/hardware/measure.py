"""The on-device latency measurement protocol (onnxruntime, batch 1) and its result record.

Protocol, and why:
- one session with explicit intra-op threads, one inter-op thread, sequential execution and all graph
  optimisations (see :func:`nas.export.load_session`): thread defaults differ per machine and dominate latency;
- ``warmup`` untimed runs first (allocator, caches, lazy kernel selection);
- timed runs until ``max_repeats``, or until ``max_seconds`` have passed once ``min_repeats`` are in, so small
  models get many samples and big ones a bounded cost;
- samples further than ``outlier_k`` scaled MADs from the median are rejected (preemption, page faults),
  and the statistics are taken over the rest, in milliseconds;
- measurements are serial: two sessions timing at once on the same CPU disturb each other by 10-20 %, so a
  process-wide lock (and a file lock for other processes on this machine) lets one measurement run at a time.

On the team's 2-core machines medians of repeated runs still vary 12-20 % and drift up to 1.6x over minutes,
so compare latencies measured close together (or against a reference model), never absolute numbers
across sessions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError, DataError
from nas.export import check_input_shape, load_session

# 1.4826 * MAD estimates the standard deviation of normally distributed samples.
_MAD_TO_SIGMA = 1.4826
# Tolerance floor relative to the median: a coarse clock gives many equal readings (MAD 0), and without a
# floor every sample one tick away from the median would be "an outlier".
_MIN_REL_TOLERANCE = 0.01

_LOCK = threading.Lock()
_LOCK_FILE = "hwnas-measure.lock"


def _positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"measurement {name} must be an int >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class MeasureConfig:
    """How one latency is measured. Validated on construction (:class:`ConfigError` names the bad field)."""

    threads: int = 1
    warmup: int = 10
    min_repeats: int = 20
    max_repeats: int = 300
    max_seconds: float = 2.0
    provider: str = "CPUExecutionProvider"
    outlier_k: float = 5.0

    def __post_init__(self) -> None:
        _positive_int("threads", self.threads)
        _positive_int("warmup", self.warmup, minimum=0)
        _positive_int("min_repeats", self.min_repeats, minimum=3)
        _positive_int("max_repeats", self.max_repeats)
        if self.max_repeats < self.min_repeats:
            raise ConfigError(
                f"measurement max_repeats ({self.max_repeats}) must be >= min_repeats ({self.min_repeats})"
            )
        for name in ("max_seconds", "outlier_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise ConfigError(f"measurement {name} must be a positive number, got {value!r}")
        if not isinstance(self.provider, str) or not self.provider:
            raise ConfigError(
                f"measurement provider must be an onnxruntime execution provider name, got {self.provider!r}"
            )


@dataclass(kw_only=True)
class Measurement:
    """One latency measurement with the conditions it was taken under. Times in milliseconds."""

    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    std_ms: float
    n: int  # samples kept
    rejected: int  # outliers dropped
    threads: int
    provider: str
    runtime: str  # "onnxruntime <version>"
    device: dict[str, Any]
    batch: int
    input_shape: tuple[int, int, int]
    precision: str  # "fp32", "fp16", "int8" ...
    timestamp: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``input_shape`` as a list)."""
        out = dataclasses.asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Measurement":
        """Inverse of :meth:`to_dict`; raises :class:`DataError` naming missing or unknown keys."""
        if not isinstance(data, Mapping):
            raise DataError(f"a measurement record must be a JSON object, got {type(data).__name__}")
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        required = {
            f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise DataError(f"malformed measurement record: missing keys {missing}, unknown keys {unknown}")
        values = dict(data)
        try:
            values["input_shape"] = check_input_shape(list(values["input_shape"]))
        except (ConfigError, TypeError) as err:
            raise DataError(f"malformed measurement record: {err}") from err
        return cls(**values)


def device_description() -> dict[str, Any]:
    """What this machine is: CPU model, logical cores (all and usable by this process), arch and OS."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                # x86 says "model name"; some ARM kernels say "Model" or "Hardware"
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    cpu = value.strip()
                    break
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu or "unknown",
        "cores": os.cpu_count() or 0,
        "usable_cores": usable,
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
    }


@contextlib.contextmanager
def serial_measurement() -> Iterator[None]:
    """Hold the machine-wide measurement lock: one timed session at a time, across threads and processes."""
    with _LOCK, contextlib.ExitStack() as stack:
        try:
            import fcntl  # POSIX only; elsewhere the in-process lock is all we have
        except ImportError:
            fcntl = None  # type: ignore[assignment]
        handle = None
        if fcntl is not None:
            with contextlib.suppress(OSError):  # e.g. a lock file owned by another user: keep the in-process lock
                handle = stack.enter_context(open(Path(tempfile.gettempdir()) / _LOCK_FILE, "a+b"))
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            stack.callback(fcntl.flock, handle.fileno(), fcntl.LOCK_UN)
        yield


def summarize(durations_s: Sequence[float], *, outlier_k: float = 5.0) -> dict[str, float | int]:
    """Statistics in ms over the samples within median ± ``outlier_k`` scaled MADs (floored at 1 % of the median)."""
    ms = np.asarray(durations_s, dtype=np.float64) * 1e3
    if ms.size == 0:
        raise ValueError("no timing samples to summarize")
    median = float(np.median(ms))
    mad = float(np.median(np.abs(ms - median)))
    tolerance = max(outlier_k * _MAD_TO_SIGMA * mad, _MIN_REL_TOLERANCE * abs(median))
    kept = ms[np.abs(ms - median) <= tolerance]
    return {
        "median_ms": float(np.median(kept)),
        "mean_ms": float(np.mean(kept)),
        "p10_ms": float(np.percentile(kept, 10)),
        "p90_ms": float(np.percentile(kept, 90)),
        "std_ms": float(np.std(kept, ddof=1)) if kept.size > 1 else 0.0,
        "n": int(kept.size),
        "rejected": int(ms.size - kept.size),
    }


_PRECISION_BY_INPUT = {
    "tensor(float)": "fp32",
    "tensor(float16)": "fp16",
    "tensor(double)": "fp64",
    "tensor(bfloat16)": "bf16",
}
_NUMPY_BY_INPUT = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
# Operators that only appear in quantized graphs: their presence makes the model int8 whatever its input type.
_QUANTIZED_OPS = {
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QuantizeLinear", "DynamicQuantizeLinear"
}


def _precision(model: Path | bytes, input_type: str) -> str:
    import onnx

    if isinstance(model, bytes):
        proto = onnx.load_model_from_string(model)
    else:
        proto = onnx.load(str(model), load_external_data=False)
    if any(node.op_type in _QUANTIZED_OPS for node in proto.graph.node):
        return "int8"
    return _PRECISION_BY_INPUT.get(input_type, input_type)


def measure_onnx(
    model: Path | bytes,
    input_shape: tuple[int, int, int],
    config: MeasureConfig | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
    seed: int = 0,
) -> Measurement:
    """Measure the batch-1 latency of an ONNX model with the protocol above.

    ``clock`` is read exactly twice per timed run (just before and just after ``session.run``), never during
    warm-up; a test can pass a fake clock to check the statistics exactly. The input is a fixed random tensor
    drawn with ``seed`` (latency does not depend on it for the dense networks we search).
    """
    config = MeasureConfig() if config is None else config
    if not isinstance(config, MeasureConfig):
        raise ConfigError(f"config must be a MeasureConfig, got {type(config).__name__}")
    shape = check_input_shape(input_shape)
    import onnxruntime as ort

    session = load_session(model, threads=config.threads, provider=config.provider)
    model_input = session.get_inputs()[0]
    dtype = _NUMPY_BY_INPUT.get(model_input.type)
    if dtype is None:
        raise ConfigError(f"cannot measure an ONNX model whose input is {model_input.type}; expected a float tensor")
    x = np.random.default_rng(seed).standard_normal((1, *shape)).astype(dtype)
    feed = {model_input.name: x}
    durations: list[float] = []
    with serial_measurement():
        for _ in range(config.warmup):
            session.run(None, feed)
        start = None
        while len(durations) < config.max_repeats:
            before = clock()
            session.run(None, feed)
            after = clock()
            start = before if start is None else start
            durations.append(after - before)
            if len(durations) >= config.min_repeats and after - start >= config.max_seconds:
                break
    stats = summarize(durations, outlier_k=config.outlier_k)
    return Measurement(
        **stats,
        threads=config.threads,
        provider=config.provider,
        runtime=f"onnxruntime {ort.__version__}",
        device=device_description(),
        batch=1,
        input_shape=shape,
        precision=_precision(model if isinstance(model, bytes) else Path(model), model_input.type),
    )
