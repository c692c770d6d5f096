"""ncnn (Tencent's mobile inference engine), converted from the exported ONNX model by ``pnnx``.

Conversion runs the ``pnnx`` converter binary that the ``pnnx`` wheel ships (``pnnx.EXEC_PATH``) as a
subprocess on the ONNX file with the input shape; it writes ``*.ncnn.param`` (the graph) and ``*.ncnn.bin``
(the weights). Converted files are cached under ``$HWNAS_CACHE/engines/ncnn/<model hash>-<versions>/``.

Traps met on the team's machines (../shared/FACTS.md): pnnx names the tensors ``in0`` / ``out0``; ncnn's
blobs have no batch dimension (C, H, W); an extractor is single use (a new one per inference); outputs differ
from PyTorch by up to about 1e-4, so the parity tolerance is looser than onnxruntime's.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nas.errors import ModelError
from nas.hardware.engines.base import Engine, Loaded, content_id, conversion_dir, model_bytes, seeded_input
from nas.registry import register_engine


@register_engine("ncnn")
class NcnnEngine(Engine):
    name = "ncnn"
    package = "ncnn"
    extra = "ncnn"
    also_needs = ("pnnx",)  # the converter
    distribution = "ncnn"
    tolerance = 1e-3

    def convert(self, model: Path | bytes, input_shape: Sequence[int]) -> tuple[Path, Path]:
        """The ncnn ``.param`` and ``.bin`` of ``model`` at ``input_shape``, converted once and cached."""
        import pnnx

        shape = [int(v) for v in input_shape]
        folder = conversion_dir("ncnn", f"{content_id(model)}-{'x'.join(map(str, shape))}-{self.version()}")
        param, weights = folder / "model.ncnn.param", folder / "model.ncnn.bin"
        if param.is_file() and weights.is_file():
            return param, weights
        work = folder.with_name(folder.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "model.onnx").write_bytes(model_bytes(model))
        command = [str(pnnx.EXEC_PATH), "model.onnx", f"inputshape=[1,{','.join(map(str, shape))}]"]
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not (work / "model.ncnn.param").is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ModelError(f"pnnx could not convert the model to ncnn (exit {done.returncode}): "
                             f"{' | '.join(tail) or 'no output'}")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
        return param, weights

    def load(self, model: Path | bytes, input_shape: Sequence[int], *, threads: int, seed: int = 0,
             provider: str | None = None) -> Loaded:
        self.require()
        import ncnn

        param, weights = self.convert(model, input_shape)
        net = ncnn.Net()
        net.opt.num_threads = int(threads)
        net.opt.use_vulkan_compute = False
        if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
            raise ModelError(f"ncnn could not load the converted model {param}")
        x = np.ascontiguousarray(seeded_input(input_shape, seed)[0])

        def infer(value: np.ndarray) -> np.ndarray:
            extractor = net.create_extractor()  # single use
            extractor.input("in0", ncnn.Mat(np.ascontiguousarray(value[0] if value.ndim == 4 else value)))
            status, out = extractor.extract("out0")
            if status != 0:
                raise ModelError(f"ncnn failed to run the model (status {status})")
            return np.array(out)[None]

        return Loaded(run=lambda: infer(x), infer=infer, details={"threads": int(threads), "converter": "pnnx"})
