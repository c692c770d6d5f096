"""onnxruntime, the default engine and a core dependency: runs the exported ONNX model as it is.

Sessions come from :func:`nas.hardware.runtime.load_session` (explicit threads, sequential execution, all graph
optimisations), the one place an onnxruntime session is created.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nas.hardware.engines.base import Engine, Loaded
from nas.registry import register_engine


@register_engine("onnxruntime")
class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    package = "onnxruntime"
    extra = None
    tolerance = 1e-5

    def version(self) -> str:
        import onnxruntime as ort

        return str(ort.__version__)

    def load(self, model: Path | bytes, input_shape: Sequence[int], *, threads: int, seed: int = 0,
             provider: str | None = None) -> Loaded:
        from nas.hardware.measure import input_feed
        from nas.hardware.runtime import load_session

        session = load_session(model, threads=threads, provider=provider or "CPUExecutionProvider")
        feed = input_feed(session, tuple(int(v) for v in input_shape), seed)
        name = session.get_inputs()[0].name
        return Loaded(run=lambda: session.run(None, feed),
                      infer=lambda x: session.run(None, {name: x})[0],
                      input_type=session.get_inputs()[0].type,
                      details={"provider": provider or "CPUExecutionProvider"})
