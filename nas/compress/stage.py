"""A model at one point of a compression pipeline, and how its latency is obtained on the target.

A :class:`Stage` is an exported ONNX file (what ships) plus, while the network is still float, the PyTorch
module it was exported from (what pruning, distillation and factorisation work on). Quantization ends the
PyTorch part: its output is an int8 ONNX model only.

:class:`StageLatency` measures stages that are compared with each other *together*, interleaved in one
session on the target (:meth:`~nas.hardware.targets.Target.measure_onnx_files`): a step's output, its input
and the uncompressed model, so each ratio comes from one minute of the machine's state (ratios measured apart
move several times as much: experiments/measure_together.py). Every measurement is written to the target's
store under the file's content hash, with the precision of the model itself in the store conditions, so an
int8 and an fp32 model never share a record. A target with no device (``+target=arm_cpu`` without an agent)
prices float PyTorch networks with its prior (labelled ``prior``); an int8 model or a foreign ONNX model has
no prior, and its latency is reported as unknown rather than guessed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from nas.errors import ConfigError

log = logging.getLogger("nas.compress")


@dataclass
class Stage:
    """One model of the pipeline: ``onnx`` (the file), ``model`` (float PyTorch network, or None)."""

    name: str
    onnx: Path
    input_shape: tuple[int, int, int]
    model: nn.Module | None = None
    precision: str = "fp32"
    details: dict[str, Any] = field(default_factory=dict)

    def file_id(self) -> str:
        """The content hash of the ONNX file: the store's id for it (two identical files share one record)."""
        return "onnx-" + hashlib.sha256(Path(self.onnx).read_bytes()).hexdigest()[:16]


@dataclass
class Latency:
    """A stage's latency in one session: ``ms`` (median, None when unknown), ``spread`` ((p90-p10)/median),
    ``source`` (``measured``, ``measured (agent URL)``, ``prior``, or ``unknown: why``)."""

    ms: float | None
    spread: float | None
    source: str
    precision: str
    measurement: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.ms, "latency_spread": self.spread, "latency_source": self.source,
                "precision": self.precision}


class StageLatency:
    """Latencies of stages on ``target``, several at a time in one session (see the module docstring)."""

    def __init__(self, target) -> None:
        self.target = target
        self._prior = None
        if not target.can_measure:
            from nas.hardware.priors import load_prior

            if target.name != "arm_cpu":
                raise ConfigError(f"target {target.name!r} cannot run a model and has no prior for one: compress "
                                  f"on a measuring target (+target=cpu, or +target=arm_cpu target.agent=URL)")
            self._prior = load_prior("arm_cpu")
        agent = getattr(target, "agent_url", None)
        self.source = "prior" if self._prior is not None else (f"measured (agent {agent})" if agent else "measured")

    def together(self, stages: list[Stage]) -> list[Latency]:
        """One :class:`Latency` per stage, the measurable ones timed interleaved in one session."""
        if self._prior is not None:
            return [self._predict(stage) for stage in stages]
        unique: dict[str, Stage] = {}
        for stage in stages:
            unique.setdefault(str(Path(stage.onnx).resolve()), stage)
        paths = list(unique)
        measurements = self.target.measure_onnx_files([Path(p) for p in paths],
                                                      [unique[p].input_shape for p in paths])
        self.target.measured_count += len(paths)
        by_path = {}
        for path, measurement in zip(paths, measurements):
            self._store(unique[path], measurement)
            by_path[path] = Latency(float(measurement.median_ms), measurement.spread, self.source,
                                    measurement.precision, measurement.to_dict())
        return [by_path[str(Path(stage.onnx).resolve())] for stage in stages]

    def _predict(self, stage: Stage) -> Latency:
        if stage.model is None or stage.precision != "fp32":
            why = ("unknown: the ARM prior models fp32 kernels, not int8 ones" if stage.precision != "fp32"
                   else "unknown: the prior prices PyTorch networks and this is an ONNX model only")
            return Latency(None, None, why + "; measure on the board (target.agent=http://BOARD:8765)",
                           stage.precision)
        from search_spaces.kernels import kernel_row
        from search_spaces.trace import trace_kernels

        row = kernel_row(trace_kernels(stage.model.eval(), stage.input_shape))
        return Latency(float(self._prior.predict_features(row[None])[0]), None, "prior", stage.precision)

    def _store(self, stage: Stage, measurement) -> None:
        store = self.target.store
        if store is None:
            return
        # The precision of the model measured (int8 / fp32), not the target's default: part of the key.
        conditions = {**self.target.conditions(stage.input_shape), "precision": measurement.precision}
        store.put(self.target.target_key(), stage.file_id(), conditions, measurement, space="onnx",
                  arch_str=f"{stage.name}:{Path(stage.onnx).name}", target=self.target.describe())
