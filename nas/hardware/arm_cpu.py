"""The ``arm_cpu`` target: onnxruntime on an ARM CPU, wherever one can be reached.

- on an ARM machine (``hwnas`` running on the board itself): timed locally;
- with ``agent=http://BOARD:PORT``: timed on the board by its device agent (``python -m nas.device serve``);
- otherwise there is no board: latencies come from the ARM prior (:mod:`nas.hardware.priors`, a kernel-level
  model of Raspberry Pi 4 measurements), labelled "prior" everywhere and announced loudly. A search that can
  measure calibrates the same prior on the board's measurements (few-shot), so a handful of measurements
  already give board-specific predictions.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import DeviceError
from nas.hardware.measure import Measurement
from nas.hardware.targets import LocalCPUTarget, Target
from nas.registry import register_target
from search_spaces.base import SearchSpace

_ARM_MACHINES = ("aarch64", "arm64", "armv7l", "armv8l", "armv8b")


def is_arm_machine() -> bool:
    """Whether this process runs on an ARM CPU."""
    return platform.machine().lower() in _ARM_MACHINES


@register_target("arm_cpu")
class ArmCPUTarget(LocalCPUTarget):
    """An ARM CPU measured with onnxruntime, locally or through a device agent, else predicted by a prior."""

    name = "arm_cpu"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = "agent" if self.client is not None else ("local" if is_arm_machine() else "prior")
        self.can_measure = self.mode != "prior"
        self.latency_source = "measured" if self.can_measure else "prior"

    def latency_prior(self, space: SearchSpace):
        """The ARM prior, for every space that builds networks: it prices kernels, and every such space has a
        kernel decomposition (hand-written, the space's own, or traced from the network: search_spaces.kernels).
        One network is decomposed here so that an op the tracer has no rule for is a clear error now, not at
        the search's first prediction."""
        from nas.hardware.priors import load_prior
        from search_spaces.kernels import kernels, supports

        if not supports(space):
            return None
        kernels(space, space.sample(np.random.default_rng(0)))
        return load_prior("arm_cpu")

    def describe(self) -> dict[str, Any]:
        if self.can_measure:
            return {**super().describe(), "mode": self.mode}
        from nas.hardware.priors import load_prior

        # No board: describing this machine would be wrong, so say what the numbers are instead.
        return {"target": self.name, "mode": "prior", "latency_source": "prior", "device": None,
                "prior": load_prior("arm_cpu").description,
                "calibrate": "run `python -m nas.device serve` on the board and set target.agent=http://BOARD:8765"}

    def channel_multiple(self) -> int:
        # The prior prices an ARM board's kernels, not this machine's: this machine's block size would be wrong.
        return Target.channel_multiple(self) if self.mode == "prior" else super().channel_multiple()

    def identity(self) -> dict[str, Any]:
        if not self.can_measure:
            return {"target": self.name, "mode": "prior"}
        return super().identity()

    def measure_onnx_file(self, path: Path, input_shape) -> Measurement:
        if not self.can_measure:
            raise DeviceError(
                f"arm_cpu has no ARM board to measure on (this machine is {platform.machine()}): run "
                f"`python -m nas.device serve --host 0.0.0.0 --token SECRET` on the board and set "
                f"target.agent=http://BOARD:8765 target.token=SECRET, or run hwnas on the board itself")
        return super().measure_onnx_file(path, input_shape)
