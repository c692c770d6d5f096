"""OpenVINO on CPU: reads the exported ONNX model directly (no conversion step).

Settings, and why (measured on the team's machines, ../shared/FACTS.md): ``INFERENCE_NUM_THREADS`` and
``NUM_STREAMS=1`` pin the thread count like onnxruntime's intra-op threads; ``INFERENCE_PRECISION_HINT=f32``
keeps a CPU that has bf16 from silently running an fp32 network in bf16 (an int8 QDQ model still runs its
quantized parts in int8: precision hints do not apply to them); ``PERFORMANCE_HINT=LATENCY`` asks for batch-1
latency rather than throughput.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nas.errors import ModelError
from nas.hardware.engines.base import Engine, Loaded, model_bytes, seeded_input
from nas.hardware.runtime import first_line
from nas.registry import register_engine


@register_engine("openvino")
class OpenVINOEngine(Engine):
    name = "openvino"
    package = "openvino"
    extra = "openvino"
    distribution = "openvino"
    tolerance = 1e-4

    def load(self, model: Path | bytes, input_shape: Sequence[int], *, threads: int, seed: int = 0,
             provider: str | None = None) -> Loaded:
        self.require()
        import openvino as ov

        core = ov.Core()
        try:
            network = core.read_model(model_bytes(model), b"")  # ONNX bytes; no weights file beside it
            compiled = core.compile_model(network, "CPU", {
                "INFERENCE_NUM_THREADS": int(threads), "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY"})
        except Exception as err:  # noqa: BLE001 - any conversion failure is the model's, for this engine
            raise ModelError(f"OpenVINO could not load the model: {first_line(err)}") from err
        request = compiled.create_infer_request()
        x = seeded_input(input_shape, seed)

        def infer(value):
            return request.infer({0: value})[compiled.output(0)]

        return Loaded(run=lambda: request.infer({0: x}), infer=infer,
                      details={"device": "CPU", "threads": int(threads),
                               "precision_hint": str(compiled.get_property("INFERENCE_PRECISION_HINT"))})
