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


def load_session(
    model: Path | bytes,
    *,
    threads: int = 1,
    provider: str = "CPUExecutionProvider",
):  # -> onnxruntime.InferenceSession (not annotated so importing this module does not need onnxruntime)
    """An onnxruntime session for ``model`` (a path or the serialized bytes) with the measurement options.

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
    try:
        return ort.InferenceSession(source, sess_options=options, providers=[provider])
    except Exception as err:
        raise ModelError(
            f"could not load {what}: {first_line(err)}. The file is truncated, corrupt or not an ONNX model; "
            f"export it again with nas.export.export_onnx"
        ) from err
