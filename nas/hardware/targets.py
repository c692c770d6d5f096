"""Targets: how a latency is obtained for an architecture on one device.

A :class:`Target` turns ``(space, arch)`` into a :class:`~nas.hardware.measure.Measurement`: build the
network, export it to ONNX, and time the ONNX file. Subclasses differ only in :meth:`Target.measure_onnx_file`
(where the file is run), so a remote device agent, a cache in front of a measurement store, or drift
correction against a reference model can be added by overriding that one hook or wrapping a target.
"""

from __future__ import annotations

import abc
import dataclasses
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nas.arch import Value, arch_id
from nas.errors import ConfigError
from nas.export import check_input_shape, export_onnx
from nas.hardware.measure import MeasureConfig, Measurement, device_description, measure_onnx
from nas.registry import register_target
from nas.tables import TABLE_DEVICES, load_table, shipped_table
from search_spaces.base import SearchSpace


class Target(abc.ABC):
    """A device on which architectures get a latency (in ms, batch 1)."""

    #: Registry name (also the Hydra config option name under ``conf/target/``).
    name: str = ""
    #: Where latencies come from: "measured" on the device, or e.g. "table" / "predicted" in other targets.
    latency_source: str = "measured"

    def __init__(self, *, workdir: Path | None = None) -> None:
        if workdir is not None and not isinstance(workdir, (str, Path)):
            raise ConfigError(f"workdir must be a directory path or None, got {type(workdir).__name__}")
        # With a workdir the exported .onnx files are kept (named by arch id) for inspection or reuse;
        # without one each export goes to a temporary directory that is removed after measuring.
        self.workdir = Path(workdir) if workdir is not None else None

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The target's identity and measurement conditions (JSON-serialisable), for run records and cache keys."""

    @abc.abstractmethod
    def measure_onnx_file(self, path: Path, input_shape: tuple[int, int, int]) -> Measurement:
        """Time one exported ONNX model on the device."""

    def measure_model(
        self, model: nn.Module, input_shape: tuple[int, int, int], *, name: str = "model"
    ) -> Measurement:
        """Export ``model`` (batch 1, eval mode) to ONNX and measure it."""
        shape = check_input_shape(input_shape)
        if self.workdir is not None:
            path = export_onnx(model, shape, self.workdir / f"{name}.onnx")
            return self.measure_onnx_file(path, shape)
        with tempfile.TemporaryDirectory(prefix="hwnas-export-") as tmp:
            path = export_onnx(model, shape, Path(tmp) / f"{name}.onnx")
            return self.measure_onnx_file(path, shape)

    def measure(self, space: SearchSpace, arch: Mapping[str, Value]) -> Measurement:
        """Latency of ``arch``: build its network (weights do not affect latency), export and measure it."""
        arch = space.validate(arch)
        model = space.build(arch)
        return self.measure_model(model, space.input_shape(arch), name=arch_id(arch))

    def latency_ms(self, space: SearchSpace, arch: Mapping[str, Value]) -> float:
        """Latency of ``arch`` in ms (the median of a measurement; table targets look it up instead)."""
        return self.measure(space, arch).median_ms

    def measure_many(
        self, space: SearchSpace, archs: Iterable[Mapping[str, Value]], *, progress: bool = True
    ) -> list[Measurement]:
        """Measure ``archs`` one after the other (serially: parallel timing on one device disturbs itself)."""
        from tqdm.auto import tqdm

        archs = list(archs)
        label = self.name or type(self).__name__
        bar = tqdm(archs, desc=f"measuring latency on {label}", unit="arch", disable=not progress)
        return [self.measure(space, arch) for arch in bar]


@register_target("cpu")
class LocalCPUTarget(Target):
    """This machine's CPU, timed in-process with onnxruntime (see :mod:`nas.hardware.measure`)."""

    name = "cpu"

    def __init__(
        self,
        *,
        threads: int = 1,
        warmup: int = 10,
        min_repeats: int = 20,
        max_repeats: int = 300,
        max_seconds: float = 2.0,
        workdir: Path | None = None,
    ) -> None:
        super().__init__(workdir=workdir)
        self.config = MeasureConfig(
            threads=threads,
            warmup=warmup,
            min_repeats=min_repeats,
            max_repeats=max_repeats,
            max_seconds=max_seconds,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "latency_source": self.latency_source,
            "device": device_description(),
            "measure": dataclasses.asdict(self.config),
        }

    def measure_onnx_file(self, path: Path, input_shape: Sequence[int]) -> Measurement:
        return measure_onnx(Path(path), check_input_shape(input_shape), self.config)


class TableTarget(Target):
    """Latencies looked up in a table of measurements (one row per architecture, one column per device).

    Nothing is run: ``latency_ms`` reads the row of the arch. With ``table`` unset the table shipped for the
    space is used (NAS-Bench-201 and FBNet latencies from HW-NAS-Bench / HELP, see ``nas/tables.py``).
    """

    name = "table"
    latency_source = "table"

    def __init__(self, *, table: str | None = None, arch_column: str | None = None, latency_column: str | None = None,
                 device: str | None = None) -> None:
        super().__init__()
        self.table = table
        self.arch_column = arch_column
        self.latency_column = latency_column or device
        if not self.latency_column:
            raise ConfigError("target=table needs target.latency_column=COLUMN (the table's latency column, in ms)")
        if table is not None and not arch_column:
            raise ConfigError("target=table with target.table=FILE needs target.arch_column=COLUMN too")
        self.device = device or self.latency_column

    def _table(self, space: SearchSpace):
        if self.table is None:
            entry = shipped_table(space.name)
            path, arch_column = str(entry["path"]), str(entry["arch_column"])
        else:
            path, arch_column = str(self.table), str(self.arch_column)
        return load_table(path, space, arch_column, (self.latency_column,))

    def latency_ms(self, space: SearchSpace, arch: Mapping[str, Value]) -> float:
        return self._table(space).lookup(space.validate(arch), self.latency_column)

    def fastest_ms(self, space: SearchSpace) -> float:
        """The smallest latency in the table: a budget below it cannot be met."""
        return float(np.nanmin(self._table(space).values[self.latency_column]))

    def describe(self) -> dict[str, Any]:
        return {"target": self.name, "device": self.device, "latency_source": self.latency_source,
                "table": self.table or "shipped", "latency_column": self.latency_column}

    def measure_onnx_file(self, path: Path, input_shape: tuple[int, int, int]) -> Measurement:
        raise ConfigError(f"target {self.name!r} looks latencies up in a table and cannot time an ONNX file; "
                          f"use a measuring target such as +target=cpu")


def _register_table_device(device: str) -> None:
    @register_target(device)
    class _DeviceTable(TableTarget):
        __doc__ = f"Latency on {device} from the table shipped for the space (ms, batch 1)."
        name = device

        def __init__(self, **kwargs) -> None:
            kwargs.setdefault("device", device)
            super().__init__(**kwargs)

    _DeviceTable.__name__ = _DeviceTable.__qualname__ = f"TableTarget[{device}]"


register_target("table")(TableTarget)
for _device in TABLE_DEVICES:
    _register_table_device(_device)
