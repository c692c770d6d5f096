"""MNN (Alibaba's mobile inference engine), converted from the exported ONNX model in-process.

Conversion calls the converter's compiled entry point (``_tools.mnnconvert``, the extension module the MNN wheel
ships) directly. Never the ``mnnconvert`` command, and never anything under ``MNN.tools``: on import,
``MNN.tools`` runs ``pip install -U aliyun-log-python-sdk`` through ``os.system`` and, after a conversion,
uploads the machine's and the model's details to a logging service. On the team's machine that one import
downgraded protobuf below what onnx needs and broke the environment. :func:`convert` checks afterwards that
``MNN.tools`` was not imported.

Runs with a runtime manager pinned to ``numThread`` threads and ``precision: high`` (fp32: "normal" may pick
fp16 kernels on ARM). Converted files are cached under ``$HWNAS_CACHE/engines/mnn/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nas.errors import ModelError
from nas.hardware.engines.base import Engine, Loaded, content_id, conversion_dir, model_bytes, seeded_input
from nas.registry import register_engine


@contextlib.contextmanager
def _stdout_to_stderr():
    """MNN's import prints the CPU's features to stdout from C; commands keep stdout for their results."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _import_mnn():
    with _stdout_to_stderr():
        import MNN

    return MNN


@register_engine("mnn")
class MNNEngine(Engine):
    name = "mnn"
    package = "MNN"
    extra = "mnn"
    distribution = "MNN"
    tolerance = 1e-4

    def convert(self, model: Path | bytes) -> Path:
        """The ``.mnn`` file of ``model``, converted once and cached."""
        self.require()
        _import_mnn()
        import _tools  # the converter's extension module; MNN.tools wraps it with an installer and an uploader

        folder = conversion_dir("mnn", f"{content_id(model)}-{self.version()}")
        target = folder / "model.mnn"
        if target.is_file():
            return target
        work = folder.with_name(folder.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "model.onnx").write_bytes(model_bytes(model))
        with _stdout_to_stderr():  # the converter's progress messages
            ok = _tools.mnnconvert(["mnnconvert", "-f", "ONNX", "--modelFile", str(work / "model.onnx"),
                                    "--MNNModel", str(work / "model.mnn"), "--bizCode", "hwnas"])
        if "MNN.tools" in sys.modules:  # the guard the module docstring explains
            raise RuntimeError("MNN.tools was imported during conversion; it installs packages and uploads data")
        if not ok or not (work / "model.mnn").is_file():
            raise ModelError("MNN's converter could not convert the model (its messages are above)")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
        return target

    def load(self, model: Path | bytes, input_shape: Sequence[int], *, threads: int, seed: int = 0,
             provider: str | None = None) -> Loaded:
        path = self.convert(model)
        MNN = _import_mnn()
        runtime = MNN.nn.create_runtime_manager(({"backend": "CPU", "numThread": int(threads),
                                                  "precision": "high"},))
        try:
            module = MNN.nn.load_module_from_file(str(path), [], [], runtime_manager=runtime)
        except Exception as err:  # noqa: BLE001
            raise ModelError(f"MNN could not load the converted model {path}: {err}") from err
        shape = [1, *[int(v) for v in input_shape]]
        x = MNN.expr.const(seeded_input(input_shape, seed), shape, MNN.expr.NCHW)

        def first(out):
            return out[0] if isinstance(out, (list, tuple)) else out

        def infer(value: np.ndarray) -> np.ndarray:
            var = MNN.expr.const(np.ascontiguousarray(value, dtype=np.float32), list(value.shape), MNN.expr.NCHW)
            return np.array(first(module.forward(var)).read())

        # read() forces the lazy computation: the timed call ends when the output exists
        return Loaded(run=lambda: first(module.forward(x)).read(), infer=infer,
                      details={"threads": int(threads), "precision": "high"})
