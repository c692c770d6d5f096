"""The fixed reference model used for drift correction, and how it is built.

Latency on the team's machines drifts by up to 1.6x over minutes, but the ratio of a candidate's latency to
a fixed model timed alternately with it varies only 2-3 %. This module provides that fixed model: four
3x3 conv + ReLU layers (16 channels) on a 3x64x64 input, global average pooling and a 10-way linear head,
fp32, with weights drawn from a numpy generator seeded with 0 (about 1-3 ms at one thread on a laptop
core: long enough to sample the same machine state as the candidate, short enough to be cheap).

The model is shipped as ``nas/assets/reference.onnx`` so a board that has only onnxruntime and numpy (the
device agent) can load it without the ``onnx`` package. :func:`build_reference_model` regenerates it
with ``onnx.helper``; ``python -m nas.hardware.reference`` rewrites the shipped file (a test checks that
the shipped bytes equal a fresh build).
"""

from __future__ import annotations

import hashlib
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from nas.errors import ModelError

REFERENCE_NAME = "hwnas-reference-v1"
REFERENCE_INPUT_SHAPE: tuple[int, int, int] = (3, 64, 64)
REFERENCE_PATH = Path(__file__).resolve().parent.parent / "assets" / "reference.onnx"
_CHANNELS = 16
_LAYERS = 4
_OPSET = 13


def build_reference_model() -> bytes:
    """Serialized bytes of the reference model, built with ``onnx.helper`` (needs the ``onnx`` package)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    previous, in_ch = "input", REFERENCE_INPUT_SHAPE[0]
    for i in range(_LAYERS):
        # He-style scaling keeps activations O(1) through the stack (no inf/denormal slow paths).
        w = (rng.standard_normal((_CHANNELS, in_ch, 3, 3)) * np.sqrt(2.0 / (in_ch * 9))).astype(np.float32)
        b = np.zeros(_CHANNELS, dtype=np.float32)
        inits += [numpy_helper.from_array(w, f"conv{i}.w"), numpy_helper.from_array(b, f"conv{i}.b")]
        nodes.append(helper.make_node("Conv", [previous, f"conv{i}.w", f"conv{i}.b"], [f"conv{i}"],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]))
        previous, in_ch = f"relu{i}", _CHANNELS
    fc_w = (rng.standard_normal((_CHANNELS, 10)) / np.sqrt(_CHANNELS)).astype(np.float32)
    inits += [numpy_helper.from_array(fc_w, "fc.w"), numpy_helper.from_array(np.zeros(10, np.float32), "fc.b")]
    nodes += [
        helper.make_node("GlobalAveragePool", [previous], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, REFERENCE_NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, *REFERENCE_INPUT_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=inits,
    )
    # Fixed IR version and producer so the bytes do not change with the installed onnx version.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)],
                              producer_name="hwnas", producer_version="1", ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


@lru_cache(maxsize=1)
def reference_model() -> bytes:
    """The reference model's bytes: the shipped file, or a fresh build if the file is missing."""
    if REFERENCE_PATH.is_file():
        return REFERENCE_PATH.read_bytes()
    try:
        return build_reference_model()
    except ImportError:
        raise ModelError(
            f"the reference model {REFERENCE_PATH} is missing and the onnx package is not installed to rebuild "
            f"it; reinstall hwnas (the file ships in nas/assets) or pip install onnx"
        ) from None


def reference_sha256() -> str:
    """Short content hash of the reference model (recorded with each corrected measurement)."""
    return hashlib.sha256(reference_model()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    """Write the reference model to ``nas/assets/reference.onnx`` (or the path given)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else REFERENCE_PATH
    path.write_bytes(build_reference_model())
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
