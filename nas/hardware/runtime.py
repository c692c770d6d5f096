"""onnxruntime helpers that need neither torch nor onnx: input-shape checking and session creation.

They live here rather than in :mod:`nas.export` (which re-exports them) because the device agent runs on
boards that have only onnxruntime and numpy: everything on the measuring path must import without torch.

:func:`load_session` is the one place an ``onnxruntime.InferenceSession`` is created, with the options of
the measurement protocol (explicit intra-op threads, one inter-op thread, sequential execution, all graph
optimisations), so a verified model and a measured model run the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nas.errors import ConfigError, ModelError

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (exporter and runtime errors can be pages long)."""
    text = _ANSI_ESCAPE.sub("", str(err)).strip()  # the dynamo exporter colours its messages
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``input_shape`` as a ``(channels, height, width)`` tuple of positive ints, or :class:`ConfigError`."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in shape)
    ):
        raise ConfigError(
            f"input_shape must be (channels, height, width) of three positive ints without the batch "
            f"dimension, got {input_shape!r}"
        )
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def check_input_bytes(input_shape: Sequence[int], max_bytes: int, *, itemsize: int = 4) -> int:
    """The size in bytes of a batch-1 input of ``input_shape`` (``C, H, W``), or :class:`ConfigError` if it is
    over ``max_bytes``. Called before anything is allocated, so an absurd shape costs nothing."""
    elements = 1
    for v in input_shape:
        elements *= int(v)  # Python ints: no overflow, whatever the shape
    size = elements * itemsize
    if size > max_bytes:
        raise ConfigError(
            f"input_shape={','.join(map(str, input_shape))} makes a {size / 2**20:,.1f} MiB input tensor "
            f"({itemsize}-byte elements), over the limit of {max_bytes / 2**20:g} MiB; give the model's real "
            f"input shape (channels,height,width), or raise the limit (device agent: --max-input-mb)"
        )
    return size


def check_model_input(model_input: object, input_shape: Sequence[int]) -> None:
    """:class:`ConfigError` unless a batch-1 tensor of ``input_shape`` (``C, H, W``) fits ``model_input``, the
    ``NodeArg`` of an onnxruntime session's first input: same rank, batch 1 allowed, every fixed dimension
    equal (symbolic dimensions such as ``batch`` or ``height`` accept any size). Checked before the input is
    allocated: a shape the model does not take would otherwise fail inside ``session.run`` after allocating."""
    declared = list(getattr(model_input, "shape", None) or [])
    wanted = [1, *input_shape]
    name = getattr(model_input, "name", "input")
    shown = "[" + ", ".join(str(d) if isinstance(d, int) else repr(d) for d in declared) + "]"
    if len(declared) != len(wanted):
        raise ConfigError(
            f"input_shape={','.join(map(str, input_shape))} does not fit the model: its input {name!r} has "
            f"rank {len(declared)} {shown}, expected rank 4 (batch, channels, height, width)"
        )
    bad = [i for i, (d, w) in enumerate(zip(declared, wanted)) if isinstance(d, int) and d > 0 and d != w]
    if bad:
        hint = "the model's batch size must be 1 or symbolic" if bad == [0] else \
            f"use input_shape={','.join(str(d) if isinstance(d, int) else '?' for d in declared[1:])}"
        raise ConfigError(
            f"input_shape={','.join(map(str, input_shape))} does not fit the model: its input {name!r} is "
            f"{shown} (batch, channels, height, width), mismatched at dimension(s) {bad}; {hint}"
        )


def load_session(
    model: Path | bytes,
    *,
    threads: int = 1,
    provider: str = "CPUExecutionProvider",
    allow_spinning: bool = True,
    profile: Path | None = None,
    optimized_model: Path | None = None,
):  # -> onnxruntime.InferenceSession (not annotated so importing this module does not need onnxruntime)
    """An onnxruntime session for ``model`` (a path or the serialized bytes) with the measurement options.

    ``allow_spinning=False`` makes idle worker threads sleep instead of busy-wait: for sessions that only check
    a model (parity, test accuracy), so they do not take cores from other work (see :mod:`nas.threads`).
    Measurement sessions keep onnxruntime's default (spinning allowed), on purpose: the measured latency is
    the one a deployed session with default options gets, and a sleeping pool adds a wake-up delay to every
    parallel operator that would be timed as model latency; at the protocol's default of one thread the pool
    has no worker threads to spin, and measurements run one at a time under a lock, briefly.

    ``profile`` (a directory) turns onnxruntime's profiler on, its JSON written there (the path comes back from
    ``session.end_profiling()``); ``optimized_model`` (a file path) makes onnxruntime save the graph it actually
    runs, after fusions and layout changes. Both are for :mod:`nas.hardware.profiling`, which needs the same
    session options as a measurement so that the profiled graph is the measured one; by default both are off.

    Raises :class:`ModelError` for a missing, empty or malformed model and :class:`ConfigError` for a bad
    thread count or an execution provider this onnxruntime does not have.
    """
    import onnxruntime as ort

    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads must be a positive int, got {threads!r}")
    available = ort.get_available_providers()
    if provider not in available:
        raise ConfigError(
            f"onnxruntime execution provider {provider!r} is not available here; choose one of {available}"
        )
    if isinstance(model, (bytes, bytearray)):
        what, source = "in-memory ONNX model", bytes(model)
        if not source:
            raise ModelError("the in-memory ONNX model is empty (0 bytes); export it again with nas.export.export_onnx")
    else:
        path = Path(model)
        what, source = f"ONNX model file {path}", str(path)
        if not path.is_file():
            raise ModelError(
                f"ONNX model file not found: {path}. Export it first with nas.export.export_onnx (or check the path)"
            )
        if path.stat().st_size == 0:
            raise ModelError(f"ONNX model file {path} is empty (0 bytes); export it again with nas.export.export_onnx")

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # explicit: the default (all cores) makes latency machine-dependent
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    if not allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if profile is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile) / "ort-profile")
    if optimized_model is not None:
        options.optimized_model_filepath = str(optimized_model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=[provider])
    except Exception as err:
        raise ModelError(
            f"could not load {what}: {first_line(err)}. The file is truncated, corrupt or not an ONNX model; "
            f"export it again with nas.export.export_onnx"
        ) from err
