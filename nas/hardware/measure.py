"""The on-device latency measurement protocol (onnxruntime, batch 1) and its result record.

Protocol, and why:
- one session with explicit intra-op threads, one inter-op thread, sequential execution and all graph
  optimisations (see :func:`nas.hardware.runtime.load_session`): thread defaults differ per machine and
  dominate latency;
- ``warmup`` untimed runs first (allocator, caches, lazy kernel selection);
- timed runs until the median is stable (the relative half-width of a 95 % order-statistic confidence
  interval of the median is within ``stable_ci``), or ``max_seconds`` have passed, once ``min_repeats`` are
  in; never more than ``max_repeats``. Small models get many samples and big ones a bounded cost;
- samples further than ``outlier_k`` scaled MADs from the median are rejected (preemption, page faults),
  and the statistics are taken over the rest, in milliseconds;
- with ``reference=True`` a fixed reference model (:mod:`nas.hardware.reference`) is timed alternately
  with the candidate, in blocks of ``reference_block`` runs (ref x B, cand x B, ref x B ...), each block
  after one untimed run that brings the model's weights back into the caches. Blocks, not single runs:
  interleaving run by run made every candidate run cold (the other model had just evicted it), which
  inflated sub-millisecond models up to 2-3x and made them noisier, not steadier. On the team's 2-core
  machines medians of repeated runs vary 12-20 % and drift up to 1.6x over minutes, while the ratio of a
  candidate block to the neighbouring reference block varies only a few %. Each candidate sample is divided
  by the median of the reference block before it, and the reported latency is ``ratio x baseline``, where
  the baseline is the reference's median established
  once (per process here; a target keeps it in its measurement store), so latencies measured minutes or
  sessions apart are comparable. The raw candidate statistics are kept in ``Measurement.raw``;
- measurements are serial: two sessions timing at once on the same CPU disturb each other by 10-20 %, so a
  process-wide lock (and a file lock for other processes on this machine) lets one measurement run at a time.

This module imports neither torch nor (unless available) onnx: the device agent runs it on boards that
have only onnxruntime and numpy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import math
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
from nas.hardware.runtime import check_input_shape, check_model_input

# 1.4826 * MAD estimates the standard deviation of normally distributed samples.
_MAD_TO_SIGMA = 1.4826
# Tolerance floor relative to the median: a coarse clock gives many equal readings (MAD 0), and without a
# floor every sample one tick away from the median would be "an outlier".
_MIN_REL_TOLERANCE = 0.01
# z for a two-sided 95 % interval (normal approximation of the binomial behind order-statistic CIs).
_Z95 = 1.96

_BASELINE_WARMUP = 10

_LOCK = threading.Lock()
_LOCK_FILE = "hwnas-measure.lock"
# Reference baselines established in this process, keyed by (provider, threads, reference hash).
_BASELINES: dict[tuple[str, int, str], float] = {}


def _positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"measurement {name} must be an int >= {minimum}, got {value!r}")
    return value


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class MeasureConfig:
    """How one latency is measured. Validated on construction (:class:`ConfigError` names the bad field).

    ``stable_ci``: stop (after ``min_repeats``) once the 95 % CI of the median is within this fraction of
    the median (0.01 = +-1 %); ``None`` turns the early stop off. ``reference``: time the fixed reference
    model alternately with the candidate and report the drift-corrected latency (see module doc).
    """

    threads: int = 1
    warmup: int = 10
    min_repeats: int = 20
    max_repeats: int = 300
    max_seconds: float = 2.0
    provider: str = "CPUExecutionProvider"
    outlier_k: float = 5.0
    stable_ci: float | None = 0.01
    reference: bool = False
    reference_block: int = 10
    engine: str = "onnxruntime"

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
            if not _is_number(value) or value <= 0:
                raise ConfigError(f"measurement {name} must be a positive number, got {value!r}")
        if self.stable_ci is not None and (not _is_number(self.stable_ci) or not 0 < self.stable_ci < 1):
            raise ConfigError(
                f"measurement stable_ci must be a fraction in (0, 1) such as 0.01, or null to always run to "
                f"max_seconds/max_repeats; got {self.stable_ci!r}"
            )
        _positive_int("reference_block", self.reference_block)
        if not isinstance(self.reference, bool):
            raise ConfigError(f"measurement reference must be true or false, got {self.reference!r}")
        if not isinstance(self.provider, str) or not self.provider:
            raise ConfigError(
                f"measurement provider must be an onnxruntime execution provider name, got {self.provider!r}"
            )
        if not isinstance(self.engine, str) or not self.engine:
            raise ConfigError(f"measurement engine must be an engine name such as onnxruntime or openvino (python "
                              f"-m nas.hardware.engines list), got {self.engine!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class Measurement:
    """One latency measurement with the conditions it was taken under. Times in milliseconds.

    With reference correction the ms statistics are the corrected ones (ratio to the reference x its
    baseline), ``reference`` holds the reference's numbers and ``raw`` the uncorrected candidate statistics.
    Fields after ``timestamp`` were added later and have defaults, so older records still load.
    """

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
    spread: float | None = None  # (p90 - p10) / median
    ci_rel: float | None = None  # relative half-width of the 95 % CI of the median
    stop_reason: str | None = None  # "stable", "max_seconds" or "max_repeats"
    reference: dict[str, Any] | None = None  # reference model, baseline and ratio statistics when corrected
    raw: dict[str, Any] | None = None  # uncorrected candidate statistics when corrected

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
        "simd": simd_flags(),
    }


#: CPU flags that change which kernels onnxruntime runs (x86: vector width and int8 dot products; ARM: dot
#: product and int8 matrix instructions). Part of the device's identity: one CPU model name is sold with and
#: without them, and int8 convolutions on AVX2 without VNNI are both slower and can saturate (see
#: nas.compress.quantize.needs_reduced_range).
SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sve")


def simd_flags() -> list[str]:
    """The :data:`SIMD_FLAGS` this CPU reports in /proc/cpuinfo (empty where it cannot be read)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    present = set(value.split())
                    return [flag for flag in SIMD_FLAGS if flag in present]
    return []


def onnxruntime_channel_block() -> int:
    """The channel count onnxruntime's CPU convolutions work in on this machine: 16 on x86 with AVX-512F, else 8.

    onnxruntime's NCHWc layout (graph optimisation level "all", the default) computes convolutions in blocks of
    16 channels with AVX-512 and 8 with AVX/AVX2, so a width between two multiples costs the next multiple
    (experiments/channel_multiple.py measures it). Other machines get 8, the usual ``make_divisible`` multiple,
    for want of a measurement that says otherwise."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return 8
    return 16 if "avx512f" in simd_flags() else 8


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


def median_ci_rel(samples: Sequence[float]) -> float:
    """Relative half-width of a distribution-free 95 % CI of the median (order statistics), inf if undefined.

    The CI is [x(l), x(u)] with l, u = n/2 -+ 1.96 sqrt(n)/2 (normal approximation to the binomial), clamped
    to the sample; with few samples it is the whole range, so the early stop needs agreement, not luck.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    if n < 2:
        return math.inf
    half = _Z95 * math.sqrt(n) / 2
    lo = max(int(math.floor(n / 2 - half)) - 1, 0)
    hi = min(int(math.ceil(n / 2 + half)), n - 1)
    median = float(np.median(x))
    if median == 0:
        return 0.0 if x[hi] == x[lo] else math.inf
    return float((x[hi] - x[lo]) / 2 / abs(median))


def _stats(values: np.ndarray, outlier_k: float) -> dict[str, float | int]:
    """Statistics of ``values`` within median +- ``outlier_k`` scaled MADs (floored at 1 % of the median)."""
    if values.size == 0:
        raise ValueError("no timing samples to summarize")
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    tolerance = max(outlier_k * _MAD_TO_SIGMA * mad, _MIN_REL_TOLERANCE * abs(median))
    kept = values[np.abs(values - median) <= tolerance]
    kept_median = float(np.median(kept))
    p10, p90 = float(np.percentile(kept, 10)), float(np.percentile(kept, 90))
    return {
        "median": kept_median,
        "mean": float(np.mean(kept)),
        "p10": p10,
        "p90": p90,
        "std": float(np.std(kept, ddof=1)) if kept.size > 1 else 0.0,
        "n": int(kept.size),
        "rejected": int(values.size - kept.size),
        "spread": (p90 - p10) / kept_median if kept_median else 0.0,
        "ci_rel": median_ci_rel(kept),
    }


def summarize(durations_s: Sequence[float], *, outlier_k: float = 5.0) -> dict[str, float | int]:
    """Statistics in ms over the samples within median +- ``outlier_k`` scaled MADs (floored at 1 % of the median).

    Keys: median_ms, mean_ms, p10_ms, p90_ms, std_ms, n, rejected, spread (relative), ci_rel.
    """
    s = _stats(np.asarray(durations_s, dtype=np.float64) * 1e3, outlier_k)
    return {
        "median_ms": s["median"], "mean_ms": s["mean"], "p10_ms": s["p10"], "p90_ms": s["p90"], "std_ms": s["std"],
        "n": s["n"], "rejected": s["rejected"], "spread": s["spread"], "ci_rel": s["ci_rel"],
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
    try:
        import onnx
    except ImportError:
        onnx = None  # a board with only onnxruntime: see the byte scan below
    if onnx is not None:
        if isinstance(model, bytes):
            proto = onnx.load_model_from_string(model)
        else:
            proto = onnx.load(str(model), load_external_data=False)
        quantized = any(node.op_type in _QUANTIZED_OPS for node in proto.graph.node)
    else:
        # Without onnx the graph cannot be parsed, but op types are stored as plain strings in the protobuf,
        # so a byte scan finds them (a node *named* like a quantized op would be a false positive; rare).
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        quantized = any(op.encode() in data for op in _QUANTIZED_OPS)
    if quantized:
        return "int8"
    return _PRECISION_BY_INPUT.get(input_type, input_type)


def input_feed(session: Any, shape: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """A seeded random batch-1 input for ``session`` at ``shape`` (C, H, W), checked against the model's input."""
    model_input = session.get_inputs()[0]
    dtype = _NUMPY_BY_INPUT.get(model_input.type)
    if dtype is None:
        raise ConfigError(f"cannot measure an ONNX model whose input is {model_input.type}; expected a float tensor")
    check_model_input(model_input, shape)  # before allocating: a shape the model does not take fails here
    return {model_input.name: np.random.default_rng(seed).standard_normal((1, *shape)).astype(dtype)}


def _timed_runs(
    runs: Sequence[Callable[[], Any]], config: MeasureConfig, clock: Callable[[], float]
) -> tuple[list[list[float]], str]:
    """Warm up, then time ``runs`` in turn until the protocol says stop.

    One run: timed back to back. Several (with ``config.reference`` the first is the reference): rounds in
    which each run gets one untimed re-warm run plus a block of ``config.reference_block`` timed runs.
    Returns the durations per run and why it stopped. Stability is judged on the least stable run other
    than the reference: on its reference-corrected ratios (:func:`_block_ratios`) with a reference, else on
    its durations. ``max_seconds`` is a budget per measured model. Call with the serial-measurement lock held.
    """
    for _ in range(config.warmup):
        for run in runs:
            run()
    interleaved = len(runs) > 1
    with_reference = interleaved and config.reference
    watched_runs = range(1 if with_reference else 0, len(runs))
    max_seconds = config.max_seconds * len(watched_runs)
    durations: list[list[float]] = [[] for _ in runs]
    start = None
    reason = "max_repeats"
    first = 1 if with_reference else 0
    rounds = 0
    while len(durations[-1]) < config.max_repeats:
        block = min(config.reference_block, config.max_repeats - len(durations[-1])) if interleaved else 1
        # The candidates' order turns by one each round (the reference stays first). In a fixed order, byte-identical
        # copies of one model measured together on the team's 2-core machine came out 2-5 % faster in the later
        # places (1-3 % either way once rotated): a bias a comparison of two models would take for a difference.
        order = list(range(first)) + [first + (k + rounds) % (len(runs) - first) for k in range(len(runs) - first)]
        rounds += 1
        for i in order:
            run = runs[i]
            if interleaved:
                run()  # untimed: the other model's block has just pushed this one's weights out of the caches
            for _ in range(block):
                before = clock()
                run()
                after = clock()
                start = before if start is None else start
                durations[i].append(after - before)
        done = len(durations[-1])
        if done < config.min_repeats:
            continue
        if config.stable_ci is not None:
            worst = max(median_ci_rel(_block_ratios(durations[0], durations[i], config.reference_block)
                                      if with_reference else durations[i]) for i in watched_runs)
            if worst <= config.stable_ci:
                reason = "stable"
                break
        if after - start >= max_seconds:
            reason = "max_seconds"
            break
    return durations, reason


def _block_ratios(reference: Sequence[float], candidate: Sequence[float], block: int) -> np.ndarray:
    """Each candidate duration divided by the median of the reference block timed just before it."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    out = np.empty_like(cand)
    for start in range(0, cand.size, block):
        out[start : start + block] = cand[start : start + block] / np.median(ref[start : start + block])
    return out


def _reference_key(config: MeasureConfig) -> tuple[str, str, int, str]:
    from nas.hardware.reference import reference_sha256

    return (config.engine, config.provider, config.threads, reference_sha256())


def _engine(config: MeasureConfig):
    """The installed engine ``config`` names (:class:`ConfigError` with the install command otherwise)."""
    from nas.hardware.engines import get_engine

    engine = get_engine(config.engine)
    engine.require()
    return engine


def _reference_run(config: MeasureConfig, seed: int) -> Callable[[], Any]:
    """One run of the reference model on the engine the candidates run on: drift is corrected per engine."""
    from nas.hardware.reference import REFERENCE_INPUT_SHAPE, reference_model

    return _engine(config).load(reference_model(), REFERENCE_INPUT_SHAPE, threads=config.threads, seed=seed,
                                provider=config.provider).run


def _baseline_locked(run: Callable[[], Any], config: MeasureConfig, clock: Callable[[], float]) -> float:
    # The baseline scales every corrected latency of a session, so it gets at least _BASELINE_WARMUP untimed
    # runs even when the caller's config skips warm-up (a cold first run can be several times slower).
    plain = dataclasses.replace(config, reference=False, warmup=max(config.warmup, _BASELINE_WARMUP))
    (durations,), _ = _timed_runs([run], plain, clock)
    baseline = float(summarize(durations, outlier_k=config.outlier_k)["median_ms"])
    _BASELINES[_reference_key(config)] = baseline
    return baseline


def reference_baseline(
    config: MeasureConfig | None = None,
    *,
    refresh: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    seed: int = 0,
) -> float:
    """The reference model's median latency (ms) on this machine under ``config``'s threads and provider.

    Measured once per process with the plain protocol and reused (``refresh=True`` measures again). Targets
    keep their baseline in the measurement store so it also survives across processes.
    """
    config = MeasureConfig() if config is None else config
    key = _reference_key(config)
    if not refresh and key in _BASELINES:
        return _BASELINES[key]
    run = _reference_run(config, seed)
    with serial_measurement():
        return _baseline_locked(run, config, clock)


def _check_reference_ms(value: object) -> float:
    if not _is_number(value) or value <= 0:
        raise ConfigError(f"reference_ms must be a positive number of milliseconds, got {value!r}")
    return float(value)


def measure_onnx(
    model: Path | bytes,
    input_shape: tuple[int, int, int],
    config: MeasureConfig | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
    seed: int = 0,
    reference_ms: float | None = None,
) -> Measurement:
    """Measure the batch-1 latency of an ONNX model with the protocol above.

    ``clock`` is read exactly twice per timed run (just before and just after ``session.run``), never during
    warm-up; with ``config.reference`` the timed runs alternate blocks of reference and candidate runs (and, if
    no baseline is known yet, the reference is first timed alone to establish it with the same clock). A test
    can pass a fake clock to check the statistics exactly. ``reference_ms`` is the reference baseline to
    correct against (a target passes the one it stored); ``None`` uses this process's
    :func:`reference_baseline`. The input is a fixed random tensor drawn with ``seed`` (latency does not
    depend on it for the dense networks we search).
    """
    return measure_onnx_together([model], [input_shape], config, clock=clock, seed=seed,
                                 reference_ms=reference_ms)[0]


def measure_onnx_together(
    models: Sequence[Path | bytes],
    input_shapes: Sequence[tuple[int, int, int]],
    config: MeasureConfig | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
    seed: int = 0,
    reference_ms: float | None = None,
) -> list[Measurement]:
    """Measure several ONNX models in one session, their blocks of timed runs taken in turn (round robin,
    after the reference's block when ``config.reference``), one :class:`Measurement` each.

    For networks that will be compared with each other (a pruned network and the base it is a fraction of,
    a baseline matched to it): measured one after the other, each gets the machine's state of its own
    minute (on the team's 2-core machines ratios taken apart spread several times as widely as ratios taken
    together: experiments/measure_together.py); interleaved, every model sees the same drift and load. Same statistics and
    correction as :func:`measure_onnx` (which is this with one model).
    """
    config = MeasureConfig() if config is None else config
    if not isinstance(config, MeasureConfig):
        raise ConfigError(f"config must be a MeasureConfig, got {type(config).__name__}")
    models = list(models)
    if not models or len(input_shapes) != len(models):
        raise ConfigError(f"measure_onnx_together needs one input shape per model and at least one model; got "
                          f"{len(models)} models and {len(input_shapes)} shapes")
    shapes = [check_input_shape(shape) for shape in input_shapes]
    if reference_ms is not None:
        reference_ms = _check_reference_ms(reference_ms)
    engine = _engine(config)
    candidates, input_types = [], []
    for model, shape in zip(models, shapes):
        loaded = engine.load(model, shape, threads=config.threads, seed=seed, provider=config.provider)
        input_types.append(loaded.input_type)
        candidates.append(loaded.run)
    reference_run = _reference_run(config, seed) if config.reference else None
    with serial_measurement():
        if reference_run is None:
            per_model, reason = _timed_runs(candidates, config, clock)
            ref_durations: list[float] = []
        else:
            if reference_ms is None:
                reference_ms = _BASELINES.get(_reference_key(config)) or _baseline_locked(reference_run, config, clock)
            (ref_durations, *per_model), reason = _timed_runs([reference_run, *candidates], config, clock)
    common = {"stop_reason": reason, "threads": config.threads, "provider": config.provider,
              "runtime": engine.runtime(), "device": device_description(), "batch": 1}
    return [
        _measurement(durations, ref_durations, config, reference_ms, common, shape=shape,
                     precision=_precision(model if isinstance(model, bytes) else Path(model), input_type))
        for model, shape, input_type, durations in zip(models, shapes, input_types, per_model)
    ]


def _measurement(durations: list[float], ref_durations: list[float], config: MeasureConfig,
                 reference_ms: float | None, common: dict[str, Any], *, shape: tuple[int, int, int],
                 precision: str) -> Measurement:
    raw = summarize(durations, outlier_k=config.outlier_k)
    if not ref_durations:
        return Measurement(**raw, **common, input_shape=shape, precision=precision)
    from nas.hardware.reference import REFERENCE_NAME, reference_sha256

    ratio = _stats(_block_ratios(ref_durations, durations, config.reference_block), config.outlier_k)
    assert reference_ms is not None
    stats = {
        "median_ms": ratio["median"] * reference_ms, "mean_ms": ratio["mean"] * reference_ms,
        "p10_ms": ratio["p10"] * reference_ms, "p90_ms": ratio["p90"] * reference_ms,
        "std_ms": ratio["std"] * reference_ms, "n": ratio["n"], "rejected": ratio["rejected"],
        "spread": ratio["spread"], "ci_rel": ratio["ci_rel"],
    }
    reference = {
        "name": REFERENCE_NAME,
        "sha256": reference_sha256(),
        "baseline_ms": reference_ms,
        "median_ms": float(summarize(ref_durations, outlier_k=config.outlier_k)["median_ms"]),
        "ratio_median": ratio["median"],
        "ratio_p10": ratio["p10"],
        "ratio_p90": ratio["p90"],
        "ratio_spread": ratio["spread"],
        "ratio_ci_rel": ratio["ci_rel"],
    }
    return Measurement(**stats, **common, reference=reference, raw=raw, input_shape=shape, precision=precision)
