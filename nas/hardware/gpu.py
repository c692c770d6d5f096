"""The ``gpu`` target: onnxruntime's CUDA execution provider, on this machine or on a GPU box's device agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.errors import DeviceError
from nas.hardware.measure import Measurement
from nas.hardware.targets import LocalCPUTarget
from nas.registry import register_target

CUDA = "CUDAExecutionProvider"


@register_target("gpu")
class GPUTarget(LocalCPUTarget):
    """An NVIDIA GPU timed with onnxruntime's CUDA provider (batch 1, fp32 unless the model says otherwise)."""

    name = "gpu"

    def __init__(self, *, provider: str = CUDA, **kwargs: Any) -> None:
        super().__init__(provider=provider, **kwargs)
        if self.client is None:
            import onnxruntime as ort

            self._require(list(ort.get_available_providers()), "this machine's onnxruntime")

    def _require(self, available: list[str], where: str) -> None:
        provider = self.measure_config.provider
        if provider not in available:
            raise DeviceError(
                f"{where} has no {provider} (available: {', '.join(available)}): install the GPU build "
                f"(`pip uninstall onnxruntime && pip install onnxruntime-gpu`) on a machine with an NVIDIA GPU and "
                f"CUDA, measure through a device agent on the GPU machine (target.agent=http://HOST:8765), or use "
                f"+target=cpu")

    def measure_onnx_file(self, path: Path, input_shape) -> Measurement:
        if self.client is not None:
            self._require(list(self.health().get("providers", [])), f"the device agent at {self.agent_url}")
        return super().measure_onnx_file(path, input_shape)
