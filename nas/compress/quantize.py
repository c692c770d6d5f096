"""Static int8 quantization of an ONNX model with onnxruntime (QDQ format), calibrated on real images.

Why static QDQ and never ``quantize_dynamic`` for convolutional networks: measured on the team's machines,
dynamic quantization made conv nets 4-13x *slower* (activations are quantized at run time, op by op, and
onnxruntime has no dynamic int8 convolution kernel to gain it back), while static QDQ with calibrated
activation ranges ran 1.3-1.5x faster than fp32 (``../shared/FACTS.md``). QDQ (QuantizeLinear /
DequantizeLinear pairs around float ops) is the format onnxruntime fuses into its int8 kernels, and one other
engines read too.

Options (:class:`QuantizeOptions`, ``quantize.*`` in the config):

- ``activations``: ``uint8``, ``int8``, or ``auto`` (the target's preference, :func:`preferred_activations`:
  x86's int8 kernels multiply unsigned by signed bytes (VPMADDUBSW / VNNI), ARM's dot-product instructions
  take signed bytes on both sides);
- ``calibration``: ``minmax``, ``entropy`` or ``percentile`` (onnxruntime's calibrators);
- ``calib_images``: training images the activation ranges are taken from (never the test split);
- ``per_channel``: one weight scale per output channel (the accuracy-preserving default for depthwise and
  pruned layers, whose channels' ranges differ by orders of magnitude);
- ``max_drop``: the accuracy drop (fraction, 0.005 = 0.5 pp) above which post-training quantization counts
  as failed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError, DataError, ModelError
from nas.export import onnx_image_input

ACTIVATIONS = ("auto", "uint8", "int8")
CALIBRATIONS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True, kw_only=True)
class QuantizeOptions:
    """How a model is quantized (``quantize.*``); validated on construction."""

    activations: str = "auto"
    calibration: str = "minmax"
    calib_images: int = 256
    per_channel: bool = True
    max_drop: float = 0.005
    reduce_range: bool | str = "auto"

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATIONS:
            raise ConfigError(f"quantize.activations={self.activations!r}: choose one of {list(ACTIVATIONS)}")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"quantize.calibration={self.calibration!r}: choose one of {list(CALIBRATIONS)}")
        if isinstance(self.calib_images, bool) or not isinstance(self.calib_images, int) or self.calib_images < 1:
            raise ConfigError(f"quantize.calib_images={self.calib_images!r}: give a positive number of images "
                              f"(256 is plenty for activation ranges)")
        if not isinstance(self.per_channel, bool):
            raise ConfigError(f"quantize.per_channel={self.per_channel!r}: give true or false")
        if not isinstance(self.reduce_range, bool) and self.reduce_range != "auto":
            raise ConfigError(f"quantize.reduce_range={self.reduce_range!r}: give auto (7-bit weights on x86 "
                              f"without VNNI), true or false")
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, (int, float)) \
                or not 0 <= self.max_drop < 1:
            raise ConfigError(f"quantize.max_drop={self.max_drop!r}: give an accuracy drop in [0, 1) "
                              f"(a fraction: 0.005 is 0.5 pp)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def needs_reduced_range(device: dict[str, Any] | None) -> bool:
    """Whether int8 weights must use 7 bits (onnxruntime's ``reduce_range``) on this device: on x86 without a
    VNNI int8 dot product, onnxruntime multiplies uint8 activations by int8 weights with VPMADDUBSW, whose int16
    sums saturate; on the team's AVX2-only machine a small CNN lost 12 pp of test accuracy with 8-bit
    per-channel weights and none with 7-bit ones. A device that does not say its flags (an older agent) is
    treated as lacking VNNI: a seventh bit less costs little accuracy, saturation costs a lot."""
    device = device or {}
    if not _is_x86(device):
        return False
    flags = device.get("simd")
    return not (isinstance(flags, list) and {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def preferred_activations(device: dict[str, Any] | None) -> str:
    """The activation type a CPU's int8 kernels prefer: ``uint8`` on x86, ``int8`` on ARM (and elsewhere)."""
    return "uint8" if _is_x86(device or {}) else "int8"


def _is_x86(device: dict[str, Any]) -> bool:
    return str(device.get("arch") or "").lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def calibration_images(X, input_shape: Sequence[int], count: int, *, seed: int = 0) -> np.ndarray:
    """``count`` images of ``X`` (N, C, H, W; the training split), drawn with ``seed`` and resized to the model's
    ``(C, H, W)``, as float32 (count, C, H, W). Raises :class:`DataError` when the channels do not match."""
    import torch

    from nas.accuracy import resize_batch
    from nas.channels.evaluators import seeded_draw

    channels, height, width = (int(v) for v in input_shape)
    if X.ndim != 4:
        raise DataError(f"calibration images must be a batch (N, C, H, W), got shape {tuple(X.shape)}")
    if int(X.shape[1]) != channels:
        raise DataError(f"calibration images have {int(X.shape[1])} channel(s) but the model takes {channels}: "
                        f"use the data the model was trained on (data=image_folder data.root=DIR for your own "
                        f"images)")
    if len(X) == 0:
        raise DataError("no calibration images: the training split is empty")
    batch = resize_batch(seeded_draw(torch.as_tensor(X), count, seed), (height, width))
    return batch.numpy().astype(np.float32)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one batch-1 feed per call, None when done."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self.input_name = input_name
        self.images = images
        self._it: Iterator[np.ndarray] = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._it, None)
        return None if image is None else {self.input_name: image[None]}

    def rewind(self) -> None:
        self._it = iter(self.images)


def quantize_static_qdq(source: Path, destination: Path, images: np.ndarray, *, activations: str,
                        calibration: str = "minmax", per_channel: bool = True, reduce_range: bool = False) -> Path:
    """Write the int8 QDQ version of ``source`` (an fp32 ONNX model) to ``destination``, with activation ranges
    calibrated on ``images`` (float32 (N, C, H, W) at the model's input size). ``source`` is only read.

    The model is pre-processed first (symbolic shape inference and onnxruntime's graph optimisations, which
    fold BatchNorm and constants), as onnxruntime's quantization guide asks; weights are signed int8, per
    channel when ``per_channel``, in 7 bits when ``reduce_range`` (see :func:`needs_reduced_range`)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if activations not in ("uint8", "int8"):
        raise ConfigError(f"activations={activations!r}: choose uint8 or int8 (auto is resolved by the caller)")
    if calibration not in CALIBRATIONS:
        raise ConfigError(f"calibration={calibration!r}: choose one of {list(CALIBRATIONS)}")
    name, shape = onnx_image_input(source)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise DataError(f"calibration images have shape {tuple(images.shape[1:])} per image but the model "
                        f"{Path(source).name} takes {shape}")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibration]
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hwnas-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantize the model as given
            prepared = Path(source)
        staged = Path(tmp) / "int8.onnx"
        try:
            quantize_static(
                str(prepared), str(staged), _Reader(name, images), quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=bool(reduce_range),
                calibrate_method=method,
                # Calibration statistics go to the temporary folder, not beside the user's files.
                extra_options={"CalibTensorRangeSymmetric": False},
                calibration_providers=["CPUExecutionProvider"],
            )
        except Exception as err:
            raise ModelError(f"onnxruntime could not quantize {Path(source).name}: {type(err).__name__}: {err}") \
                from err
        staged.replace(destination)
    return destination


def onnx_accuracy(path: Path, X, y, *, batch: int = 1) -> float:
    """Top-1 accuracy of an ONNX classifier through onnxruntime on images ``X`` (resized to its input) and
    labels ``y``: the accuracy of the file that ships, whatever its precision."""
    import torch

    from nas.accuracy import resize_batch
    from nas.hardware.runtime import load_session

    name, (channels, height, width) = onnx_image_input(path)
    if int(X.shape[1]) != channels:
        raise DataError(f"test images have {int(X.shape[1])} channel(s) but {Path(path).name} takes {channels}")
    session = load_session(path, threads=1, allow_spinning=False)  # a check, not a measurement
    labels = np.asarray(y)
    correct = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            x = resize_batch(torch.as_tensor(X[i:i + batch]), (height, width)).numpy().astype(np.float32)
            logits = session.run(None, {name: x})[0]
            if logits.ndim != 2:
                raise ModelError(f"{Path(path).name} gives outputs of shape {logits.shape}; a classifier's "
                                 f"(1, classes) logits are needed")
            correct += int((np.argmax(logits, axis=1) == labels[i:i + batch]).sum())
    return correct / max(1, len(labels))
