"""Run compression steps in order on one network and report each on the target (``report.json``/``.md``/``.png``).

After each step its proposal is tested (accuracy on the held-out test split, through onnxruntime: the file
that ships), sized (bytes on disk, parameters, MACs) and measured on the target together with its input and
the uncompressed model in one session; :meth:`~nas.compress.steps.CompressionStep.verdict` decides whether it
is kept (validation accuracy decides, never the test split). The model shipped is the last kept stage,
measured once more beside the original, and written to ``models/compressed.onnx``.

Nothing the user gave is written to: the input model is copied (``model=``) or re-exported (``run=``) into
the run directory first. Training checkpoints live in the cache, keyed by the input file and the options, so
an interrupted command resumes where it stopped; measurements go to the measurement store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nas.compress.stage import Stage, StageLatency
from nas.compress.steps import MIN_SPEEDUP, CompressionStep, NotApplicable
from nas.errors import ConfigError, DataError

log = logging.getLogger("nas.compress")

REPORT_FORMAT = "hwnas.compress-report/1"
COMPRESSED = "models/compressed.onnx"


class Context:
    """What every step may use: data, target, where files go, the original stage, latencies, accuracy."""

    def __init__(self, *, data, target, run_dir: Path, cache_dir: Path, seed: int, progress: bool,
                 min_speedup: float = MIN_SPEEDUP) -> None:
        self.data, self.target, self.seed, self.progress = data, target, int(seed), bool(progress)
        self.min_speedup = float(min_speedup)
        self.run_dir = Path(run_dir)
        self.models = self.run_dir / "models"
        self.scratch = self.run_dir / "work"
        self.cache = Path(cache_dir) / "compress"
        self.latency = StageLatency(target)
        self.original: Stage | None = None
        self._accuracy: dict[tuple[str, str], float] = {}

    def model_path(self, name: str) -> Path:
        return self.models / f"{name}.onnx"

    def stage_of(self, model, name: str, shape: Sequence[int]) -> Stage:
        """Export ``model`` as stage ``name`` (probes to the scratch folder, steps to ``models/``)."""
        from nas.export import export_onnx, verify_onnx

        folder = self.scratch if "probe" in name else self.models
        path = export_onnx(model.eval(), tuple(shape), folder / f"{name}.onnx")
        details = {} if "probe" in name else {"onnx_max_abs_diff": verify_onnx(path, model, tuple(shape))}
        return Stage(name, path, tuple(int(v) for v in shape), model=model, details=details)

    def device(self) -> dict[str, Any]:
        """The device the target runs on (its architecture picks the int8 activation type)."""
        if not self.target.can_measure:
            return {"arch": "aarch64"} if self.target.name == "arm_cpu" else {}
        health = getattr(self.target, "health", None)
        return dict(health()["device"]) if callable(health) else {}

    def accuracy(self, stage: Stage, split: str) -> float:
        from nas.compress.quantize import onnx_accuracy

        key = (str(stage.onnx), split)
        if key not in self._accuracy:
            X, y = self.data.split(split)
            self._accuracy[key] = onnx_accuracy(stage.onnx, X, y)
        return self._accuracy[key]

    def checkpoint(self, tag: str, stage: Stage, options: Mapping[str, Any]) -> Path:
        """A training checkpoint path for ``tag`` on ``stage`` with ``options``: the same command resumes it."""
        key = hashlib.sha256(json.dumps({"in": stage.file_id(), "options": dict(options), "seed": self.seed},
                                        sort_keys=True, default=str).encode()).hexdigest()[:12]
        return self.cache / f"{tag}-{key}.npz"


# ---------------------------------------------------------------------------------------------- facts
def onnx_params(path: Path) -> int:
    """Weights stored in an ONNX file: initializer elements, not counting quantization scales and zero points."""
    import onnx
    import numpy as np

    proto = onnx.load(str(path), load_external_data=False)
    qparams = {name for node in proto.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")
               for name in node.input[1:]}
    return int(sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.name not in qparams))


def onnx_macs(path: Path, shape: Sequence[int]) -> int:
    """Multiply-accumulates of one image, from the ONNX graph (convolutions and matrix products)."""
    from nas.compress.profile import static_costs

    return int(sum(row["macs"] for row in static_costs(Path(path), tuple(shape)).values()))


def stage_facts(stage: Stage, ctx: Context, *, macs: int | None = None) -> dict[str, Any]:
    """Accuracy, size, params and MACs of ``stage`` (its latency comes from a measuring session)."""
    return {"name": stage.name, "path": _relative(stage.onnx, ctx.run_dir), "precision": stage.precision,
            "test_accuracy": ctx.accuracy(stage, "test"), "val_accuracy": ctx.accuracy(stage, "val"),
            "size_bytes": Path(stage.onnx).stat().st_size, "params": onnx_params(stage.onnx),
            "macs": int(macs) if macs is not None else onnx_macs(stage.onnx, stage.input_shape),
            **stage.details}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _with_latency(entry: dict, latency, reference, original: dict) -> dict:
    entry.update(latency.to_dict())
    entry["latency_ratio"] = (latency.ms / reference.ms if latency.ms is not None and reference.ms else None)
    entry["size_ratio"] = entry["size_bytes"] / original["size_bytes"]
    return entry


# ---------------------------------------------------------------------------------------------- checks
def check_data_for(stage: Stage, data) -> None:
    """The data must fit the model: same channels, and no more classes than the model has outputs."""
    from nas.hardware.runtime import load_session

    channels = stage.input_shape[0]
    if data.in_channels != channels:
        raise DataError(f"the data ({data.name}) has {data.in_channels}-channel images but the model takes "
                        f"{channels} channels: calibration and test data of the wrong shape. Give the data the model "
                        f"was trained on (data=image_folder data.root=DIR, data=torchvision ...)")
    output = load_session(stage.onnx, threads=1, allow_spinning=False).get_outputs()[0].shape
    classes = output[-1] if output and isinstance(output[-1], int) else None
    if classes is not None and classes != data.num_classes:
        raise DataError(f"the model has {classes} outputs but the data ({data.name}) has {data.num_classes} "
                        f"classes; give the data the model was trained on")


# ---------------------------------------------------------------------------------------------- run
def split_notes(steps: Sequence[CompressionStep], val_images: int) -> list[str]:
    """Warnings for accuracy limits finer than the validation split resolves: with ``val_images`` images one
    image is 1/val_images of accuracy, and a ``max_drop`` below that rejects a step for one image."""
    image = 1.0 / max(val_images, 1)
    return [f"{s.name}.max_drop={s.max_drop:g} is less than one validation image ({val_images} images: one is "
            f"{100 * image:.2f} pp), so one image changing its answer rejects the step; use more data (data.limit) "
            f"or a larger {s.name}.max_drop" for s in steps if s.max_drop and s.max_drop < image]


def run_compression(original: Stage, steps: Sequence[CompressionStep], *, data, target, run_dir: Path,
                    cache_dir: Path, seed: int = 0, progress: bool = True, profile: bool = True,
                    requested: Sequence[str] | None = None, min_speedup: float = MIN_SPEEDUP) -> Path:
    """Run ``steps`` on ``original`` into ``run_dir``; the path of ``report.json``. A step that exists to speed
    the network up is kept only when measured at least ``min_speedup`` faster than its input."""
    from nas.compress.report import write_report

    ctx = Context(data=data, target=target, run_dir=run_dir, cache_dir=cache_dir, seed=seed, progress=progress,
                  min_speedup=min_speedup)
    ctx.original = original
    check_data_for(original, data)
    needs_torch = [s.name for s in steps if s.needs_torch]
    if needs_torch and original.model is None:
        raise ConfigError(f"steps {needs_torch} work on the PyTorch network, but only an ONNX model was given; "
                          f"give run=DIR (a search run with its trained weights) or use steps=[quantize]")
    notes = split_notes(steps, len(data.val.y))
    for note in notes:
        log.warning("%s", note)
    original_facts = stage_facts(original, ctx)
    current, current_facts = original, original_facts
    entries: list[dict[str, Any]] = []
    rejected_int8: Stage | None = None
    for index, step in enumerate(steps, start=1):
        log.info("step %d/%d: %s %s", index, len(steps), step.name, step.options())
        try:
            proposal = step.propose(current, ctx)
        except NotApplicable as reason:
            entries.append({**current_facts, "name": step.name, "step": step.name, "options": step.options(),
                            "details": {}, "latency_ms": None, "latency_spread": None, "latency_source": "not run",
                            "latency_ratio": None, "latency_ratio_to_input": None,
                            "size_ratio": current_facts["size_bytes"] / original_facts["size_bytes"],
                            "kept": False, "why": f"not applicable to this network: {reason}"})
            log.info("  %s: not applicable: %s", step.name, reason)
            continue
        stage = proposal.stage
        facts = stage_facts(stage, ctx, macs=current_facts["macs"] if stage.precision != "fp32" else None)
        reference, before, after = ctx.latency.together([original, current, stage])
        why = step.verdict(before=before, after=after, acc_before=ctx.accuracy(current, "val"),
                           acc_after=ctx.accuracy(stage, "val"), min_speedup=ctx.min_speedup)
        if proposal.failure:
            why = proposal.failure + (f"; {why}" if why else "")
        entry = _with_latency({**facts, "step": step.name, "options": step.options(),
                               "details": proposal.details}, after, reference, original_facts)
        entry["latency_ratio_to_input"] = after.ms / before.ms if after.ms and before.ms else None
        entry.update(kept=why is None, why=why)
        entries.append(entry)
        log.info("  %s", _line(entry))
        if why is None:
            current, current_facts = stage, facts
        elif stage.precision != "fp32":
            rejected_int8 = stage  # profiled below: where its time went
    final_path = run_dir / COMPRESSED
    final_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(current.onnx, final_path)
    final_stage = Stage("final", final_path, current.input_shape, model=current.model, precision=current.precision)
    if current is original:  # nothing kept: the shipped file is the original, one measurement (ratio exactly 1)
        (reference,) = ctx.latency.together([original])
        final_latency = reference
    else:
        reference, final_latency = ctx.latency.together([original, final_stage])
    original_entry = _with_latency(dict(original_facts), reference, reference, original_facts)
    final_entry = _with_latency({**current_facts, "name": "final", "path": COMPRESSED, "from_step": current.name},
                                final_latency, reference, original_facts)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT, "run_dir": str(run_dir), "steps_requested": list(requested or [s.name for s in steps]),
        "target": target.describe(), "data": data.describe(), "seed": seed,
        "min_speedup": ctx.min_speedup, "notes": notes,
        "original": original_entry, "steps": entries, "final": final_entry,
        "why_final": ("the last kept step's model" if current is not original
                      else "no step was kept: the original network is shipped as it is"),
    }
    if profile:
        extra = [("quantize", rejected_int8)] if rejected_int8 is not None else []
        report["profile"] = _profiles(ctx, [("original", original), ("final", final_stage), *extra])
    shutil.rmtree(ctx.scratch, ignore_errors=True)
    return write_report(run_dir, report)


def _profiles(ctx: Context, stages: Sequence[tuple[str, Stage]]) -> dict[str, Any]:
    """Per-layer profiles of the original and the shipped model (and of an int8 model that was not kept, to show
    where its time went), where the target can run them; each with its time per layer kind."""
    if not ctx.target.can_measure:
        return {"skipped": "the target has no device to run a profile on (target.agent=http://BOARD:8765)"}
    from nas.compress.profile import profile_model
    from nas.compress.profile_report import plot_profile

    out: dict[str, Any] = {}
    for name, stage in stages:
        result = profile_model(Path(stage.onnx), stage.input_shape, ctx.target)
        json_path = ctx.run_dir / f"profile_{name}.json"
        json_path.write_text(json.dumps(result.to_dict(), indent=2))
        plot_profile(result, ctx.run_dir / f"profile_{name}.png")
        out[name] = {"json": json_path.name, "plot": f"profile_{name}.png", "findings": result.findings(),
                     "kind_us": {**{kind: entry["us"] for kind, entry in result.kinds().items()},
                                 "overhead": result.totals["framework_overhead_us"]}}
    return out


def _line(entry: Mapping[str, Any]) -> str:
    latency = (f"{entry['latency_ms']:.4g} ms ({entry['latency_ratio']:.2f}x original)"
               if entry.get("latency_ms") is not None else entry.get("latency_source"))
    verdict = "kept" if entry["kept"] else f"NOT kept: {entry['why']}"
    return (f"{entry['name']}: test {100 * entry['test_accuracy']:.2f} %, {latency}, "
            f"{entry['size_bytes'] / 1e6:.2f} MB ({entry['size_ratio']:.2f}x) -> {verdict}")
