"""Export a network to a single self-contained ONNX file, check it, and open it with onnxruntime.

Exporter choice (measured on the team's 2-core CPU machines, torch 2.13): the TorchScript ("legacy")
exporter takes ~10 ms for a small convnet and ~0.4 s for a 20-block MobileNet-like net, while the
torch.export ("dynamo") exporter takes ~0.65 s and ~2.8 s (first call in a process: +3 s). A search exports
hundreds of candidates, so ``exporter="auto"`` uses the legacy exporter and falls back to dynamo if the
legacy one fails or is removed from a future torch. Both give a batch-1 graph with input ``input`` and
output ``logits``; parity with PyTorch is checked by :func:`verify_onnx`.

:func:`load_session` (defined in :mod:`nas.hardware.runtime`, re-exported here) is the one place an
``onnxruntime.InferenceSession`` is created, with the options of
the measurement protocol (explicit intra-op threads, one inter-op thread, sequential execution, all graph
optimisations), so a verified model and a measured model run the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas.errors import ConfigError, ModelError
# Torch-free helpers live in nas.hardware.runtime (the device agent imports them without torch); re-exported
# here so nas.export.check_input_shape / load_session keep working.
from nas.hardware.runtime import check_input_shape, load_session
from nas.hardware.runtime import first_line as _first_line

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EXPORTERS = ("auto", "legacy", "dynamo")

# Loggers that print per-export chatter (e.g. "torchvision is not installed. Skipping torchvision::nms").
_CHATTY_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "onnxscript")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence deprecation warnings and log chatter of the exporters, not tracer warnings about correctness."""
    saved = {name: logging.getLogger(name).level for name in _CHATTY_LOGGERS}
    try:
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            # The legacy exporter warns on every call that it is deprecated; we chose it knowingly (see module doc).
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode (BatchNorm running stats, no dropout) and give the caller's mode back afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _run_exporter(kind: str, model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    common = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset)
    with _quiet_exporter(), torch.no_grad():
        if kind == "legacy":
            torch.onnx.export(model, (example,), str(path), dynamo=False, do_constant_folding=True, **common)
        else:
            # external_data=False keeps the weights inside the .onnx (no .onnx.data sidecar to lose).
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False, verbose=False, **common)


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    path: Path,
    *,
    opset: int = 18,
    exporter: str = "auto",
) -> Path:
    """Export ``model`` (in eval mode, batch 1) to one self-contained ONNX file at ``path`` and check it.

    The file is written beside ``path`` first and moved into place, so a reader never sees half a model.
    Raises :class:`ModelError` if no exporter can export the model or the result fails ``onnx.checker``.
    """
    import onnx  # local: only needed when exporting

    shape = check_input_shape(input_shape)
    if not isinstance(opset, int) or isinstance(opset, bool) or not 7 <= opset <= onnx.defs.onnx_opset_version():
        raise ConfigError(f"opset must be an int in 7..{onnx.defs.onnx_opset_version()}, got {opset!r}")
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown ONNX exporter {exporter!r}; choose one of {list(EXPORTERS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kinds = ("legacy", "dynamo") if exporter == "auto" else (exporter,)

    errors: list[str] = []
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _eval_mode(model):
            example = torch.zeros((1, *shape), device=_model_device(model))
            for kind in kinds:
                try:
                    _run_exporter(kind, model, example, tmp, opset)
                    break
                except Exception as err:  # any exporter failure: try the next one, report all if none works
                    errors.append(f"{kind} exporter: {_first_line(err)}")
            else:
                raise ModelError(
                    f"could not export {type(model).__name__} with input shape {shape} to ONNX (opset {opset}): "
                    + "; ".join(errors)
                    + ". Check that forward() takes one image tensor and uses only ONNX-exportable operations."
                )
        sidecar = tmp.with_name(tmp.name + ".data")
        if sidecar.exists():  # a model over 2 GB cannot be one protobuf file; we do not support that case
            sidecar.unlink()
            raise ModelError(
                f"ONNX export of {type(model).__name__} produced external weight data; "
                f"models over 2 GB are not supported"
            )
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as err:
            raise ModelError(f"exported ONNX model for {type(model).__name__} failed onnx.checker: {err}") from err
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def verify_onnx(
    path: Path,
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    samples: int = 4,
    seed: int = 0,
) -> float:
    """Max absolute difference between onnxruntime and PyTorch (eval mode) outputs on random inputs.

    Inputs are standard-normal, batch 1, drawn from a generator seeded with ``seed``.
    """
    shape = check_input_shape(input_shape)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ConfigError(f"samples must be a positive int, got {samples!r}")
    session = load_session(path, allow_spinning=False)  # a check, not a measurement
    input_name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    with _eval_mode(model), torch.no_grad():
        device = _model_device(model)
        for _ in range(samples):
            x = torch.randn((1, *shape), generator=generator)
            expected = model(x.to(device))
            if isinstance(expected, (tuple, list)):
                expected = expected[0]
            expected_np = expected.detach().cpu().float().numpy()
            got = session.run(None, {input_name: x.numpy()})[0]
            if got.shape != expected_np.shape:
                raise ModelError(
                    f"ONNX model {path} gives output shape {got.shape} but PyTorch gives {expected_np.shape}; "
                    f"was it exported from a different model or input shape?"
                )
            worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - expected_np.astype(np.float64)))))
    return worst


def onnx_image_input(path: Path, input_shape: Sequence[int] | None = None) -> tuple[str, tuple[int, int, int]]:
    """Name and ``(C, H, W)`` of an ONNX model's one image input (batch 1 or symbolic), or ``input_shape`` when
    given (it must agree with the dimensions the model fixes). :class:`ModelError` for a missing file, one that is
    not ONNX or one without a single image input; a dynamic C, H or W without ``input_shape`` is a
    :class:`ConfigError`. The one reader of a foreign model's input (nas.compress, nas.profile)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}; give the path of an .onnx file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends: any unreadable file
        raise ModelError(f"{path} is not an ONNX model ({type(err).__name__}); give an .onnx file exported with "
                         f"nas.export.export_onnx or another framework") from None
    if not proto.graph.node:
        raise ModelError(f"{path} is not an ONNX model (it has no graph nodes); give an .onnx file")
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"{path} has {len(inputs)} inputs {[i.name for i in inputs]}; a network with one image "
                         f"input is needed")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inputs[0].type.tensor_type.shape.dim]
    shown = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    if len(dims) != 4:
        raise ModelError(f"{path}: input {inputs[0].name!r} has shape {shown}; an image input (N, C, H, W) is needed")
    if dims[0] not in (None, 1):
        raise ModelError(f"{path}: input {inputs[0].name!r} has batch size {dims[0]}; export it with batch 1")
    if input_shape is not None:
        shape = check_input_shape(list(input_shape))
        bad = [i for i, (d, v) in enumerate(zip(dims[1:], shape), start=1) if d is not None and d != v]
        if bad:
            raise ConfigError(f"input_shape={list(shape)} does not fit {path}: its input is {shown}; give "
                              f"input_shape=[C,H,W] with the model's fixed sizes, or leave it out")
        return inputs[0].name, shape
    if any(d is None for d in dims[1:]):
        raise ConfigError(f"{path}: input {inputs[0].name!r} has a dynamic size {shown}; give the size to profile "
                          f"at with input_shape=[C,H,W], e.g. input_shape=[3,224,224]")
    return inputs[0].name, (int(dims[1]), int(dims[2]), int(dims[3]))
