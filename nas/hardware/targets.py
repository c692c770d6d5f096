"""Targets: how a latency is obtained for an architecture on one device.

A :class:`Target` turns ``(space, arch)`` into a :class:`~nas.hardware.measure.Measurement`: build the
network, export it to ONNX, and time the ONNX file. Subclasses differ mainly in :meth:`Target.measure_onnx_file`
(where the file is run). :meth:`Target.measure` looks the arch up in an optional
:class:`~nas.hardware.store.MeasurementStore` first and stores what it measures, keyed by
:meth:`Target.target_key` (which device) and :meth:`Target.conditions` (under which conditions).

:class:`LocalCPUTarget` times on this machine, or, with ``agent=URL``, sends the file to a device agent
(:mod:`nas.device`) on a board; subclass it for other onnxruntime devices (override ``name``, and
:meth:`LocalCPUTarget.measure_locally` or the constructor defaults).
"""

from __future__ import annotations

import abc
import hashlib
import json
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nas.arch import Value
from nas.errors import ConfigError, ModelError
from nas.export import check_input_shape, export_onnx
from nas.hardware.measure import (
    MeasureConfig,
    Measurement,
    device_description,
    measure_onnx,
    measure_onnx_together,
)
from nas.hardware.store import MeasurementStore
from nas.registry import register_target
from nas.tables import TABLE_DEVICES, load_table, shipped_table
from search_spaces.base import SearchSpace


def _short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _as_store(store: MeasurementStore | str | Path | None) -> MeasurementStore | None:
    if store is None or isinstance(store, MeasurementStore):
        return store
    if isinstance(store, (str, Path)):
        return MeasurementStore(store)
    raise ConfigError(f"store must be a MeasurementStore or a .sqlite path, got {type(store).__name__}")


class Target(abc.ABC):
    """A device on which architectures get a latency (in ms, batch 1)."""

    #: Registry name (also the Hydra config option name under ``conf/target/``).
    name: str = ""
    #: Where latencies come from: "measured" on the device, or e.g. "table" / "predicted" in other targets.
    latency_source: str = "measured"
    #: Numeric precision of the exported models this target times (part of the store's conditions).
    precision: str = "fp32"
    #: Whether :meth:`measure` can time architectures (False for lookup tables and device-less priors).
    can_measure: bool = True

    def __init__(self, *, workdir: Path | None = None, store: MeasurementStore | str | Path | None = None) -> None:
        if workdir is not None and not isinstance(workdir, (str, Path)):
            raise ConfigError(f"workdir must be a directory path or None, got {type(workdir).__name__}")
        # With a workdir the exported .onnx files are kept (named by arch id) for inspection or reuse;
        # without one each export goes to a temporary directory that is removed after measuring.
        self.workdir = Path(workdir) if workdir is not None else None
        self.store = _as_store(store)
        #: Measurements actually taken (not served from the store) by this target object.
        self.measured_count = 0

    def use_store(self, store: MeasurementStore | str | Path | None) -> "Target":
        """Look measurements up in ``store`` (a store or a .sqlite path; None: no store) and save new ones there."""
        self.store = _as_store(store)
        return self

    def latency_prior(self, space: SearchSpace):
        """What this device's latency is expected to be before it is measured (a
        :class:`~nas.surrogate.LatencyPrior`), or None. A search calibrates it on measurements when the
        target can measure, and uses it alone (labelled "prior") when it cannot."""
        return None

    def channel_multiple(self) -> int:
        """The channel multiple this target's kernels compute in: ``space.divisor: auto`` of a channel search rounds
        kept widths to it, since a width between two multiples runs as slowly as the next one. Default 8."""
        return 8

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The target's identity and measurement conditions (JSON-serialisable), for run records and cache keys."""

    def identity(self) -> dict[str, Any]:
        """What makes two targets the same device for stored measurements (default: :meth:`describe`)."""
        return self.describe()

    def target_key(self) -> str:
        """Short hash of :meth:`identity`: the store key of this device and runtime configuration."""
        return f"{self.name or type(self).__name__}-{_short_hash(self.identity())}"

    def conditions(self, input_shape: Sequence[int]) -> dict[str, Any]:
        """The conditions a measurement of an input of ``input_shape`` is taken under (a store key part)."""
        return {"batch": 1, "input_shape": list(check_input_shape(input_shape)), "precision": self.precision}

    @abc.abstractmethod
    def measure_onnx_file(self, path: Path, input_shape: tuple[int, int, int]) -> Measurement:
        """Time one exported ONNX model on the device."""

    def measure_model(
        self, model: nn.Module, input_shape: tuple[int, int, int], *, name: str = "model"
    ) -> Measurement:
        """Export ``model`` (batch 1, eval mode) to ONNX, check it on the target's engine, and measure it."""
        shape = check_input_shape(input_shape)
        with tempfile.TemporaryDirectory(prefix="hwnas-export-") as tmp:
            folder = self.workdir if self.workdir is not None else Path(tmp)
            path = export_onnx(model, shape, folder / f"{name}.onnx")
            self.check_parity(path, model, shape)
            return self.measure_onnx_file(path, shape)

    def check_parity(self, path: Path, model: nn.Module, input_shape: Sequence[int]) -> None:
        """Check that the target's engine computes what ``model`` computes before ``path`` is measured
        (:class:`ModelError` if not); by default nothing to check (onnxruntime parity is the export's)."""

    def measure(self, space: SearchSpace, arch: Mapping[str, Value], *, remeasure: bool = False) -> Measurement:
        """Latency of ``arch``: from the store if measured before (unless ``remeasure``), else build, export,
        measure (weights do not affect latency) and store it at once."""
        arch = space.validate(arch)
        aid = space.store_id(arch)
        shape = check_input_shape(space.input_shape(arch))
        if self.store is not None and not remeasure:
            hit = self.store.get(self.target_key(), aid, self.conditions(shape))
            if hit is not None:
                return hit
        measurement = self.measure_model(space.build(arch), shape, name=aid)
        self.measured_count += 1
        self._store_measurement(space, arch, shape, measurement)
        return measurement

    def _store_measurement(self, space: SearchSpace, arch: Mapping[str, Value], shape: tuple[int, int, int],
                           measurement: Measurement) -> None:
        """Keep a fresh measurement of ``arch`` in the store (if one is set), keyed by target, arch and conditions."""
        if self.store is None:
            return
        public = space.to_public(arch)
        arch_str = public if isinstance(public, str) else json.dumps(public, separators=(",", ":"))
        self.store.put(self.target_key(), space.store_id(arch), self.conditions(shape), measurement,
                       space=space.name, arch=arch, arch_str=arch_str, target=self.describe())

    def measure_onnx_files(self, paths: Sequence[Path], input_shapes: Sequence[tuple[int, int, int]]
                           ) -> list[Measurement]:
        """Time several exported models that will be compared with each other, as alike in conditions as the
        target allows. Default: one after the other; :class:`LocalCPUTarget` interleaves them in one session."""
        return [self.measure_onnx_file(Path(path), shape) for path, shape in zip(paths, input_shapes)]

    def measure_together(self, space: SearchSpace, archs: Sequence[Mapping[str, Value]]) -> list[Measurement]:
        """Measure ``archs`` afresh with :meth:`measure_onnx_files` (interleaved where the target can) and store
        each: for latencies that are compared as ratios (a network and the base it is a fraction of)."""
        archs = [space.validate(arch) for arch in archs]
        shapes = [check_input_shape(space.input_shape(arch)) for arch in archs]
        with tempfile.TemporaryDirectory(prefix="hwnas-export-") as tmp:
            folder = self.workdir if self.workdir is not None else Path(tmp)
            models = [space.build(arch) for arch in archs]
            paths = [export_onnx(model, shape, folder / f"{space.store_id(arch)}.onnx")
                     for model, arch, shape in zip(models, archs, shapes)]
            for path, model, shape in zip(paths, models, shapes):
                self.check_parity(path, model, shape)
            measurements = self.measure_onnx_files(paths, shapes)
        self.measured_count += len(archs)
        for arch, shape, measurement in zip(archs, shapes, measurements):
            self._store_measurement(space, arch, shape, measurement)
        return measurements

    def latency_ms(self, space: SearchSpace, arch: Mapping[str, Value]) -> float:
        """Latency of ``arch`` in ms (the median of a measurement; table targets look it up instead)."""
        return self.measure(space, arch).median_ms

    def measure_many(
        self, space: SearchSpace, archs: Iterable[Mapping[str, Value]], *, progress: bool = True,
        remeasure: bool = False,
    ) -> list[Measurement]:
        """Measure ``archs`` one after the other (serially: parallel timing on one device disturbs itself)."""
        from tqdm.auto import tqdm

        archs = list(archs)
        label = self.name or type(self).__name__
        bar = tqdm(archs, desc=f"measuring latency on {label}", unit="arch", disable=not progress)
        return [self.measure(space, arch, remeasure=remeasure) for arch in bar]


@register_target("cpu")
class LocalCPUTarget(Target):
    """A CPU timed with onnxruntime (see :mod:`nas.hardware.measure`): this machine's, or a board's via an agent.

    With ``agent="http://HOST:PORT"`` every ONNX file is sent to the device agent running there
    (``python -m nas.device serve``; ``token`` or ``$HWNAS_AGENT_TOKEN`` authenticates) and :meth:`describe`
    reports the board the agent runs on. With ``reference`` (default) latencies are drift-corrected against
    the fixed reference model; the baseline is kept in the store (when one is set) so it survives sessions.

    Subclasses (another onnxruntime device) keep the keyword-only constructor, pass extra defaults through
    ``**kwargs`` and may override :meth:`measure_locally`; the protocol is in ``self.measure_config``.
    """

    name = "cpu"

    def __init__(
        self,
        *,
        threads: int = 1,
        warmup: int = 10,
        min_repeats: int = 20,
        max_repeats: int = 300,
        max_seconds: float = 2.0,
        stable_ci: float | None = 0.01,
        reference: bool = True,
        provider: str = "CPUExecutionProvider",
        outlier_k: float = 5.0,
        agent: str | None = None,
        token: str | None = None,
        agent_timeout: float = 600.0,
        runtime: str = "onnxruntime",
        workdir: Path | None = None,
        store: MeasurementStore | str | Path | None = None,
    ) -> None:
        super().__init__(workdir=workdir, store=store)
        from nas.hardware.engines import get_engine

        self.engine = get_engine(runtime)  # an unknown name fails here, naming the engines
        if agent is None:
            self.engine.require()  # measured here: installed here (with an agent the board says, in health())
        self.measure_config = MeasureConfig(
            threads=threads,
            warmup=warmup,
            min_repeats=min_repeats,
            max_repeats=max_repeats,
            max_seconds=max_seconds,
            stable_ci=stable_ci,
            reference=reference,
            provider=provider,
            outlier_k=outlier_k,
            engine=self.engine.name,
        )
        self.agent_url = agent or None
        self.client = None
        if self.agent_url is not None:
            from nas.device.client import AgentClient

            self.client = AgentClient(self.agent_url, token=token, timeout=agent_timeout)
        self._health: dict[str, Any] | None = None
        self._baseline_ms: float | None = None
        self._parity_checked: set[str] = set()

    def channel_multiple(self) -> int:
        # Measured on this machine's onnxruntime CPU kernels; a board behind an agent, or another provider, is not
        # this machine, and gets the default until measured.
        if self.client is None and self.measure_config.provider == "CPUExecutionProvider":
            from nas.hardware.measure import onnxruntime_channel_block

            return onnxruntime_channel_block()
        return super().channel_multiple()

    @property
    def config(self) -> MeasureConfig:
        """Alias of :attr:`measure_config` (older name)."""
        return self.measure_config

    def health(self) -> dict[str, Any]:
        """Where measurements run: the agent's /health answer (asked once), or this machine's equivalent; the
        engine ``runtime`` names must be installed there (:class:`ConfigError` with the install command)."""
        if self._health is None:
            if self.client is not None:
                health = self.client.health()
            else:
                import onnxruntime as ort

                from nas.hardware.engines import installed_engines

                health = {"device": device_description(), "runtime": f"onnxruntime {ort.__version__}",
                          "providers": list(ort.get_available_providers()), "engines": installed_engines()}
            engines = health.get("engines") or {"onnxruntime": str(health.get("runtime", "")).split(" ")[-1]}
            if self.engine.name not in engines:
                where = f"the device agent at {self.agent_url}" if self.client is not None else "this machine"
                raise ConfigError(f"target.runtime={self.engine.name}: {where} has no {self.engine.name} (installed: "
                                  f"{', '.join(sorted(engines)) or 'none'}); install it there with "
                                  f"{self.engine.install_hint()}")
            self._health = {**health, "engine": f"{self.engine.name} {engines[self.engine.name]}"}
        return self._health

    def describe(self) -> dict[str, Any]:
        health = self.health()
        return {
            "target": self.name,
            "latency_source": self.latency_source,
            "device": health["device"],
            "runtime": health["engine"],
            "agent": self.agent_url,
            "measure": self.measure_config.to_dict(),
        }

    def identity(self) -> dict[str, Any]:
        # Only what changes latencies: not the repeat counts or time limits of the protocol.
        health = self.health()
        return {"target": self.name, "device": health["device"], "runtime": health["engine"],
                "provider": self.measure_config.provider, "threads": self.measure_config.threads}

    def conditions(self, input_shape: Sequence[int]) -> dict[str, Any]:
        out = super().conditions(input_shape)
        if self.measure_config.reference:
            from nas.hardware.reference import reference_sha256

            out["reference"] = reference_sha256()  # corrected latencies are on the reference's scale
        return out

    def _known_baseline(self) -> float | None:
        if self._baseline_ms is None and self.store is not None:
            from nas.hardware.reference import reference_sha256

            self._baseline_ms = self.store.get_baseline(self.target_key(), reference_sha256())
        return self._baseline_ms

    def _adopt_baseline(self, measurement: Measurement) -> None:
        """Keep the baseline the first corrected measurement used, so later ones use the same (and store it);
        a measurement taken on another baseline (another process stored its own first) is put on this one."""
        if not measurement.reference:
            return
        own = float(measurement.reference["baseline_ms"])
        if self._baseline_ms is None:
            baseline = own
            if self.store is not None:
                from nas.hardware.reference import reference_sha256

                baseline = self.store.put_baseline(self.target_key(), reference_sha256(), own)
            self._baseline_ms = baseline
        if self._baseline_ms != own:
            scale = self._baseline_ms / own
            for name in ("median_ms", "mean_ms", "p10_ms", "p90_ms", "std_ms"):
                setattr(measurement, name, getattr(measurement, name) * scale)
            measurement.reference = {**measurement.reference, "baseline_ms": self._baseline_ms}

    def measure_locally(self, path: Path, input_shape: tuple[int, int, int], *,
                        reference_ms: float | None) -> Measurement:
        """Time ``path`` in this process (the agent-less path); override for a different local runtime."""
        return measure_onnx(Path(path), input_shape, self.measure_config, reference_ms=reference_ms)

    def check_parity(self, path: Path, model: nn.Module, input_shape: Sequence[int]) -> None:
        """:func:`nas.hardware.engines.parity.check_parity` once per file content, when the engine runs here
        (onnxruntime's parity is the export's own check)."""
        if self.client is not None or self.engine.name == "onnxruntime":
            return
        from nas.hardware.engines.base import content_id

        key = content_id(Path(path))
        if key in self._parity_checked:
            return
        from nas.hardware.engines.parity import check_parity

        check_parity(self.engine, Path(path), model, input_shape, threads=self.measure_config.threads)
        self._parity_checked.add(key)

    def measure_onnx_file(self, path: Path, input_shape: Sequence[int]) -> Measurement:
        shape = check_input_shape(input_shape)
        baseline = self._known_baseline() if self.measure_config.reference else None
        if self.client is not None:
            if not Path(path).is_file():
                raise ModelError(f"ONNX model file not found: {path}. Export it first with nas.export.export_onnx")
            measurement = self.client.measure(Path(path).read_bytes(), shape, self.measure_config,
                                              reference_ms=baseline)
        else:
            measurement = self.measure_locally(Path(path), shape, reference_ms=baseline)
        self._adopt_baseline(measurement)
        return measurement

    def measure_onnx_files(self, paths: Sequence[Path], input_shapes: Sequence[tuple[int, int, int]]
                           ) -> list[Measurement]:
        # Interleaved in one local session (measure_onnx_together); an agent, or a subclass with its own local
        # runtime, measures them one after the other (the agent's protocol takes one model per request).
        if self.client is not None or type(self).measure_locally is not LocalCPUTarget.measure_locally:
            return super().measure_onnx_files(paths, input_shapes)
        shapes = [check_input_shape(shape) for shape in input_shapes]
        baseline = self._known_baseline() if self.measure_config.reference else None
        measurements = measure_onnx_together([Path(p) for p in paths], shapes, self.measure_config,
                                             reference_ms=baseline)
        for measurement in measurements:
            self._adopt_baseline(measurement)
        return measurements


class TableTarget(Target):
    """Latencies looked up in a table of measurements (one row per architecture, one column per device).

    Nothing is run: ``latency_ms`` reads the row of the arch. With ``table`` unset the table shipped for the
    space is used (NAS-Bench-201 and FBNet latencies from HW-NAS-Bench / HELP, see ``nas/tables.py``).
    """

    name = "table"
    latency_source = "table"
    can_measure = False

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
        """The arch's row; for a network the table has no row for, the exact per-layer sum where the table's
        latencies are such sums (HW-NAS-Bench's FBNet tables: :meth:`nas.tables.MetricTable.additive`)."""
        return self._table(space).lookup_or_sum(space.validate(arch), self.latency_column)[0]

    def fastest_ms(self, space: SearchSpace) -> float:
        """The smallest latency a network of the space can have: a budget below it cannot be met (the table's
        smallest, or, where latencies are per-layer sums, the sum of every layer's cheapest option)."""
        table = self._table(space)
        fit = table.additive(self.latency_column)
        if fit is not None:
            weights, constant = fit
            per_label = np.split(weights, np.cumsum([len(o) for o in space.choices().values()])[:-1])
            return float(constant + sum(float(w.min()) for w in per_label))
        return float(np.nanmin(table.values[self.latency_column]))

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
