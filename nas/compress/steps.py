"""The compression steps ``nas.compress`` chains (``steps=[prune,distill,quantize]``), one class each.

Every step takes the current :class:`~nas.compress.stage.Stage` and proposes a new one; the pipeline
(:mod:`nas.compress.pipeline`) then measures the proposal beside its input and the uncompressed model, tests
it, and keeps it only when it passes the step's rule (:meth:`CompressionStep.verdict`): a step that exists
to make the network faster must be measured faster than its input on the target, and no step may lose more
validation accuracy than its ``max_drop``. A rejected step is reported with the reason, and the next step
starts from the last kept model.

Options are keyword-only constructor arguments, checked on construction (the command builds every step before
any work starts, so a bad option costs nothing), with the config section of the same name (``prune.*``).

Unstructured magnitude sparsity is deliberately not a step: zeroed weights are still multiplied by dense
kernels (onnxruntime's CPU convolutions and GEMMs do not skip zeros), so it shrinks a compressed file but not
the latency. Channel pruning removes the channels physically instead.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nas.compress.quantize import (
    QuantizeOptions,
    calibration_images,
    needs_reduced_range,
    preferred_activations,
    quantize_static_qdq,
)
from nas.compress.stage import Latency, Stage
from nas.errors import ConfigError
from nas.registry import STEPS, register_step

if TYPE_CHECKING:
    from nas.compress.pipeline import Context


@dataclass
class Proposal:
    """What a step proposes: the new stage and the facts of how it was made (for the report)."""

    stage: Stage
    details: dict[str, Any] = field(default_factory=dict)
    #: Why the proposal misses what the step was asked for (it is then reported and not kept), or None.
    failure: str | None = None


def _number(step: str, key: str, value: object, *, low: float, high: float | None = None, integer: bool = False,
            low_open: bool = False) -> float:
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and (value > low if low_open else value >= low) \
        and (high is None or value <= high)
    if not ok:
        left = "(" if low_open else "["
        right = f"{high}]" if high is not None else "inf)"
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{step}.{key}={value!r}: give {what} in {left}{low}, {right}")
    return value


#: Default of ``min_speedup``: how much faster than its input a step's model must measure to count as faster.
#: Byte-identical copies of one model measured together in one session on the team's 2-core machine differed by
#: 1-3 % either way, so a smaller gain cannot be told from noise (and was, before this floor, kept as a gain).
MIN_SPEEDUP = 0.03


def faster(ratio: float, min_speedup: float) -> bool:
    """Whether a latency ratio (new / old, one session) shows a speed-up of at least ``min_speedup``."""
    return ratio <= 1.0 - min_speedup


def min_speedup_of(value: object) -> float:
    """``min_speedup`` from the config, checked."""
    return float(_number("compress", "min_speedup", MIN_SPEEDUP if value is None else value, low=0.0, high=0.5))


class NotApplicable(Exception):
    """A step that cannot work on this network (e.g. pruning a network whose channel dependencies Torch-Pruning
    cannot trace): the pipeline reports it, not kept, with the reason, and goes on with the next step."""


class CompressionStep(abc.ABC):
    """One step. Subclasses set :attr:`name`, :attr:`needs_torch`, :attr:`speeds_up` and implement
    :meth:`propose`; options are keyword-only constructor arguments."""

    #: Registry and config name (``steps=[name]``, options under ``name.*``).
    name: ClassVar[str] = ""
    #: Works on the float PyTorch network (False: on the ONNX file alone).
    needs_torch: ClassVar[bool] = True
    #: Exists to make the network faster: kept only when measured faster than its input.
    speeds_up: ClassVar[bool] = True
    #: Changes the architecture (False for distillation: same network, other weights).
    changes_latency: ClassVar[bool] = True
    #: Largest validation-accuracy drop (fraction) the step may cost; None: no limit (pruning, which the
    #: distillation after it recovers).
    max_drop: float | None = None

    @abc.abstractmethod
    def propose(self, current: Stage, ctx: "Context") -> Proposal:
        """A new stage made from ``current`` (never modified)."""

    @abc.abstractmethod
    def options(self) -> dict[str, Any]:
        """The step's options as given (for the report)."""

    def verdict(self, *, before: Latency, after: Latency, acc_before: float, acc_after: float,
                min_speedup: float = MIN_SPEEDUP) -> str | None:
        """Why the proposal is not kept (None: kept). ``before``/``after`` come from one session; a step that
        exists to speed the network up must be at least ``min_speedup`` faster (see :data:`MIN_SPEEDUP`)."""
        reasons = []
        if self.changes_latency and self.speeds_up:
            if after.ms is None or before.ms is None:
                reasons.append(f"its latency on the target is {after.source}, so it is not shown to be faster")
            elif not faster(after.ms / before.ms, min_speedup):
                reasons.append(f"not faster than its input on the target by {min_speedup:.0%} or more "
                               f"({after.ms:.4g} ms vs {before.ms:.4g} ms, measured in one session)")
        if self.max_drop is not None and acc_before - acc_after > self.max_drop + 1e-12:
            reasons.append(f"validation accuracy dropped {100 * (acc_before - acc_after):.2f} pp "
                           f"(more than {self.name}.max_drop={self.max_drop:g})")
        return "; ".join(reasons) or None


# ---------------------------------------------------------------------------------------------- quantize
@register_step("quantize")
class QuantizeStep(CompressionStep):
    """Static int8 quantization (onnxruntime QDQ), calibrated on training images (:mod:`nas.compress.quantize`).

    When post-training quantization loses more than ``max_drop`` of validation accuracy and the float PyTorch
    network is at hand, the network is fine-tuned with fake quantization for ``qat_epochs``
    (:mod:`nas.compress.qat`, the ``qat`` extra) and quantized again; the better of the two is proposed."""

    name = "quantize"
    needs_torch = False

    def __init__(self, *, activations: str = "auto", calibration: str = "minmax", calib_images: int = 256,
                 per_channel: bool = True, max_drop: float = 0.005, qat_epochs: int = 2, qat_lr: float = 0.005,
                 reduce_range: bool | str = "auto") -> None:
        self.settings = QuantizeOptions(activations=activations, calibration=calibration, calib_images=calib_images,
                                        per_channel=per_channel, max_drop=max_drop, reduce_range=reduce_range)
        self.max_drop = float(max_drop)
        self.qat_epochs = int(_number("quantize", "qat_epochs", qat_epochs, low=0, integer=True))
        self.qat_lr = float(_number("quantize", "qat_lr", qat_lr, low=0.0, low_open=True))

    def options(self) -> dict[str, Any]:
        return {**self.settings.to_dict(), "qat_epochs": self.qat_epochs, "qat_lr": self.qat_lr}

    def _quantize(self, source: Path, name: str, shape, activations: str, reduce_range: bool,
                  ctx: "Context") -> Stage:
        images = calibration_images(ctx.data.train.X, shape, self.settings.calib_images, seed=ctx.seed)
        path = quantize_static_qdq(source, ctx.model_path(name), images, activations=activations,
                                   calibration=self.settings.calibration, per_channel=self.settings.per_channel,
                                   reduce_range=reduce_range)
        return Stage(self.name, path, shape, model=None, precision="int8")

    def propose(self, current: Stage, ctx: "Context") -> Proposal:
        if current.precision != "fp32":
            raise ConfigError(f"quantize: the model is already {current.precision}; quantize an fp32 model once")
        device = ctx.device()
        activations = self.settings.activations
        if activations == "auto":
            activations = preferred_activations(device)
        reduce_range = self.settings.reduce_range
        if reduce_range == "auto":
            reduce_range = needs_reduced_range(device)
        stage = self._quantize(current.onnx, self.name, current.input_shape, activations, reduce_range, ctx)
        details: dict[str, Any] = {"activations": activations, "weights": "int8",
                                   "reduce_range": reduce_range, "format": "QDQ",
                                   "calibration": self.settings.calibration, "per_channel": self.settings.per_channel,
                                   "method": "post-training"}
        drop = ctx.accuracy(current, "val") - ctx.accuracy(stage, "val")
        if drop <= self.max_drop or not self.qat_epochs:
            return Proposal(stage, details)
        from nas.compress import qat

        if current.model is None or not qat.available():
            details["qat"] = ("not run: " + ("only an ONNX model was given" if current.model is None
                                             else "torchao is not installed (pip install 'hwnas[qat]')"))
            return Proposal(stage, details)
        adapted = qat.qat_finetune(current.model, ctx.data, input_shape=current.input_shape, epochs=self.qat_epochs,
                                   lr=self.qat_lr, seed=ctx.seed, progress=ctx.progress,
                                   checkpoint=ctx.checkpoint("qat", current, self.options()))
        float_stage = ctx.stage_of(adapted, "quantize-qat-fp32-probe", current.input_shape)
        trained = self._quantize(float_stage.onnx, "quantize-qat", current.input_shape, activations, reduce_range,
                                 ctx)
        ptq_acc, qat_acc = ctx.accuracy(stage, "val"), ctx.accuracy(trained, "val")
        details["qat"] = {"epochs": self.qat_epochs, "post_training_val_accuracy": ptq_acc,
                          "qat_val_accuracy": qat_acc, "chosen": qat_acc > ptq_acc}
        if qat_acc > ptq_acc:
            details["method"] = "quantization-aware training"
            return Proposal(trained, details)
        return Proposal(stage, details)


# ---------------------------------------------------------------------------------------------- prune
#: The narrowest network pruning tries: every group keeps this fraction of its channels (the channel space's
#: narrowest grid point).
MIN_KEEP = 0.1


@register_step("prune")
class PruneStep(CompressionStep):
    """Channel pruning with physical removal to ``latency_ratio`` of the input's measured latency.

    Dependency groups and removal are the channel search's (:mod:`nas.channels.groups`, Torch-Pruning's
    DepGraph); every group keeps the same fraction of its channels, the most important by ``importance``
    (L1 norm), rounded to the target's channel multiple (``divisor: auto``), and that fraction is bisected on
    latencies measured beside the input. BatchNorm statistics are recalibrated on training images after."""

    name = "prune"

    def __init__(self, *, latency_ratio: float = 0.8, importance: str = "l1", divisor: int | str = "auto",
                 iterations: int = 6, calib_images: int = 500) -> None:
        from nas.channels.groups import IMPORTANCES

        self.latency_ratio = float(_number("prune", "latency_ratio", latency_ratio, low=0.0, high=1.0, low_open=True))
        if importance not in IMPORTANCES:
            raise ConfigError(f"prune.importance={importance!r}: choose one of {list(IMPORTANCES)}")
        if divisor != "auto":
            _number("prune", "divisor", divisor, low=1, integer=True)
        self.importance, self.divisor = importance, divisor
        self.iterations = int(_number("prune", "iterations", iterations, low=1, high=20, integer=True))
        self.calib_images = int(_number("prune", "calib_images", calib_images, low=1, integer=True))

    def options(self) -> dict[str, Any]:
        return {"latency_ratio": self.latency_ratio, "importance": self.importance, "divisor": self.divisor,
                "iterations": self.iterations, "calib_images": self.calib_images}

    def propose(self, current: Stage, ctx: "Context") -> Proposal:
        from nas.accuracy import recalibrate_bn
        from nas.channels.evaluators import calibration_images as bn_images
        from nas.channels.groups import analyse, prune
        from search_spaces.channels import kept_width

        model, shape = current.model, current.input_shape
        divisor = ctx.target.channel_multiple() if self.divisor == "auto" else int(self.divisor)
        try:
            groups = analyse(model, shape, what="the network to prune")
        except ConfigError as err:
            raise NotApplicable(str(err)) from None
        probes: dict[tuple, dict] = {}

        def probe(ratio: float) -> dict:
            widths = {g.label: kept_width(g.channels, ratio, divisor) for g in groups}
            key = tuple(sorted(widths.items()))
            if key not in probes:
                pruned, _kept = prune(model, shape, widths, importance=self.importance)
                stage = ctx.stage_of(pruned, f"prune-probe-{len(probes)}", shape)
                before, after = ctx.latency.together([current, stage])
                if after.ms is None or before.ms is None:
                    raise ConfigError(f"prune: latency on the target is {after.source}; pruning to a latency "
                                      f"ratio needs a device or a prior")
                probes[key] = {"keep": ratio, "widths": widths, "latency_ratio": after.ms / before.ms,
                               "model": pruned}
            return probes[key]

        # The narrowest network first: below it no width reaches the ratio, and bisecting towards a network of a
        # few channels would only find a useless one (a prior's per-layer launch cost keeps small nets slow).
        low, high = MIN_KEEP, 1.0
        floor = probe(MIN_KEEP)
        for _ in range(self.iterations if floor["latency_ratio"] <= self.latency_ratio else 0):
            middle = 0.5 * (low + high)
            if probe(middle)["latency_ratio"] <= self.latency_ratio:
                low = middle
            else:
                high = middle
        under = [p for p in probes.values() if p["latency_ratio"] <= self.latency_ratio]
        chosen = max(under, key=lambda p: p["keep"]) if under else min(probes.values(), key=lambda p: p["latency_ratio"])
        pruned = recalibrate_bn(chosen["model"], bn_images(ctx.data, self.calib_images, ctx.seed), resolution=shape[-1])
        stage = ctx.stage_of(pruned, self.name, shape)
        details = {"keep_ratio": chosen["keep"], "divisor": divisor, "groups": len(groups),
                   "widths": chosen["widths"], "reached": bool(under),
                   "probes": [{k: p[k] for k in ("keep", "latency_ratio")} for p in
                              sorted(probes.values(), key=lambda p: p["keep"])]}
        failure = None
        if not under:
            failure = (f"prune.latency_ratio={self.latency_ratio:g} is out of reach on {ctx.target.name}: keeping "
                       f"{MIN_KEEP:.0%} of every group's channels still takes {floor['latency_ratio']:.2f} of the "
                       f"input's latency ({ctx.latency.source}); ask for a ratio above that")
        return Proposal(stage, details, failure)


# ---------------------------------------------------------------------------------------------- distill
@register_step("distill")
class DistillStep(CompressionStep):
    """Knowledge-distillation fine-tuning of the current network from a teacher: the uncompressed network, or
    ``teacher=PATH`` (a ``base.npz`` network file, as channel runs write). Kept only if validation accuracy
    does not drop (it is the same architecture, so latency is not its concern)."""

    name = "distill"
    speeds_up = False
    changes_latency = False

    def __init__(self, *, epochs: int = 3, lr: float = 0.02, kd_ratio: float = 0.5, temperature: float = 2.0,
                 batch_size: int = 64, teacher: str | None = None, max_drop: float = 0.0) -> None:
        self.epochs = int(_number("distill", "epochs", epochs, low=1, integer=True))
        self.lr = float(_number("distill", "lr", lr, low=0.0, low_open=True))
        self.kd_ratio = float(_number("distill", "kd_ratio", kd_ratio, low=0.0, high=1.0))
        self.temperature = float(_number("distill", "temperature", temperature, low=0.0, low_open=True))
        self.batch_size = int(_number("distill", "batch_size", batch_size, low=1, integer=True))
        self.max_drop = float(_number("distill", "max_drop", max_drop, low=0.0, high=1.0))
        if teacher is not None and not Path(str(teacher)).is_file():
            raise ConfigError(f"distill.teacher={teacher!r} does not exist; give a base.npz network file "
                              f"(runs/.../models/base.npz) or null for the uncompressed network")
        self.teacher = None if teacher is None else str(teacher)

    def options(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "lr": self.lr, "kd_ratio": self.kd_ratio, "temperature": self.temperature,
                "batch_size": self.batch_size, "teacher": self.teacher, "max_drop": self.max_drop}

    def teacher_model(self, ctx: "Context"):
        if self.teacher is None:
            return ctx.original.model
        from nas.channels.base import load_network

        return load_network(self.teacher, num_classes=ctx.data.num_classes, in_channels=ctx.data.in_channels)[0]

    def propose(self, current: Stage, ctx: "Context") -> Proposal:
        summary, student = distill(current.model, self.teacher_model(ctx), ctx, epochs=self.epochs, lr=self.lr,
                                   kd_ratio=self.kd_ratio, temperature=self.temperature,
                                   batch_size=self.batch_size, shape=current.input_shape, tag=self.name,
                                   checkpoint=ctx.checkpoint(self.name, current, self.options()))
        return Proposal(ctx.stage_of(student, self.name, current.input_shape),
                        {"teacher": self.teacher or "the uncompressed network", "train": summary})


def distill(model, teacher, ctx: "Context", *, epochs: int, lr: float, kd_ratio: float, temperature: float,
            batch_size: int, shape: Sequence[int], tag: str, checkpoint: Path) -> tuple[dict, Any]:
    """Fine-tune a copy of ``model`` on the labels and ``teacher``'s soft predictions; (summary, student).
    Checkpointed per epoch at ``checkpoint`` (:meth:`Context.checkpoint`), so an interrupted command resumes."""
    from nas.channels.finetune import DistillationLoss
    from nas.oneshot.retrain import train_network

    student = copy.deepcopy(model)
    loss = DistillationLoss(teacher, kd_ratio=kd_ratio, temperature=temperature)
    summary = train_network(student, ctx.data, epochs=epochs, lr=lr, batch_size=batch_size,
                            resolution=int(shape[-1]), seed=ctx.seed, checkpoint=checkpoint,
                            progress=ctx.progress, loss_fn=loss, desc=f"{tag} (distillation)")
    return summary, student.eval()


# ---------------------------------------------------------------------------------------------- registry
def build_steps(names: Sequence[str], options: Mapping[str, Mapping[str, Any] | None]) -> list[CompressionStep]:
    """The configured steps, in order, each built with its options (``options[name]``); bad names, options or
    orders fail here, before any work."""
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise ConfigError(f"steps={names!r}: give a list of steps, e.g. 'steps=[prune,distill,quantize]'; "
                          f"steps: {', '.join(STEPS.names())}")
    steps = []
    for name in names:
        if str(name) not in STEPS.names():
            raise ConfigError(f"steps: unknown step {name!r}; choose from {', '.join(STEPS.names())}")
        factory = STEPS.get(str(name))
        kwargs = dict(options.get(str(name)) or {})
        try:
            steps.append(factory(**kwargs))
        except TypeError as exc:
            raise ConfigError(f"{name}: bad option ({exc}); see conf/compress/default.yaml") from None
    torch_after_quantize = [s.name for i, s in enumerate(steps) if s.needs_torch
                            and any(t.name == "quantize" for t in steps[:i])]
    if torch_after_quantize:
        raise ConfigError(f"steps={list(names)}: {', '.join(torch_after_quantize)} works on the float PyTorch "
                          f"network, which quantize replaces by an int8 ONNX model; put quantize last")
    if sum(s.name == "quantize" for s in steps) > 1:
        raise ConfigError(f"steps={list(names)}: quantize appears twice; an int8 model is quantized once")
    return steps


# ---------------------------------------------------------------------------------------------- lowrank
@register_step("lowrank")
class LowRankStep(CompressionStep):
    """Low-rank factorisation (:mod:`nas.compress.lowrank`: truncated SVD of 1x1 convolutions and linear layers,
    Tucker-2 of k x k convolutions with ``kinds: [..., tucker2]``) at a kept-energy threshold, layer by layer:
    a factorised layer is kept only when the network with it is measured faster (by the pipeline's
    ``min_speedup``) than without it, in one session; then the network is fine-tuned by distillation from the
    step's input.

    Measured, not assumed, because two thin convolutions can be slower than one wide one: each adds a kernel
    launch and a full pass over the activations, which on small inputs costs more than the MACs saved."""

    name = "lowrank"

    def __init__(self, *, energy: float = 0.8, min_saving: float = 0.2, kinds: Sequence[str] = ("pointwise", "linear"),
                 max_trials: int = 12, finetune_epochs: int = 2, lr: float = 0.02,
                 kd_ratio: float = 0.5, temperature: float = 2.0, max_drop: float = 0.01) -> None:
        from nas.compress.lowrank import KINDS

        self.energy = float(_number("lowrank", "energy", energy, low=0.0, high=1.0, low_open=True))
        self.min_saving = float(_number("lowrank", "min_saving", min_saving, low=0.0, high=1.0))
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ConfigError(f"lowrank.kinds={kinds!r}: choose from {list(KINDS)}")
        self.kinds = tuple(kinds)
        self.max_trials = int(_number("lowrank", "max_trials", max_trials, low=1, integer=True))
        self.finetune_epochs = int(_number("lowrank", "finetune_epochs", finetune_epochs, low=0, integer=True))
        self.lr = float(_number("lowrank", "lr", lr, low=0.0, low_open=True))
        self.kd_ratio = float(_number("lowrank", "kd_ratio", kd_ratio, low=0.0, high=1.0))
        self.temperature = float(_number("lowrank", "temperature", temperature, low=0.0, low_open=True))
        self.max_drop = float(_number("lowrank", "max_drop", max_drop, low=0.0, high=1.0))

    def options(self) -> dict[str, Any]:
        return {"energy": self.energy, "min_saving": self.min_saving, "kinds": list(self.kinds),
                "max_trials": self.max_trials,
                "finetune_epochs": self.finetune_epochs, "lr": self.lr, "kd_ratio": self.kd_ratio,
                "temperature": self.temperature, "max_drop": self.max_drop}

    def propose(self, current: Stage, ctx: "Context") -> Proposal:
        from nas.compress.lowrank import factorise, plan_lowrank

        plans = plan_lowrank(current.model, current.input_shape, energy=self.energy, min_saving=self.min_saving,
                             kinds=self.kinds)
        trials, accepted = [], []
        best = current
        for plan in plans[: self.max_trials]:
            candidate = ctx.stage_of(factorise(current.model, [*accepted, plan]), f"lowrank-probe-{len(trials)}",
                                     current.input_shape)
            before, after = ctx.latency.together([best, candidate])
            if after.ms is None or before.ms is None:
                raise ConfigError(f"lowrank: latency on the target is {after.source}; keeping a factorised layer "
                                  f"needs its measured latency")
            ratio = after.ms / before.ms
            kept = faster(ratio, ctx.min_speedup)
            trials.append({**plan.to_dict(), "latency_ratio": ratio, "kept": kept})
            if kept:
                accepted.append(plan)
                best = candidate
        model = factorise(current.model, accepted) if accepted else copy.deepcopy(current.model)
        details: dict[str, Any] = {"planned": len(plans), "tried": len(trials), "kept_layers": len(accepted),
                                   "trials": trials}
        if accepted and self.finetune_epochs:
            summary, model = distill(model, current.model, ctx, epochs=self.finetune_epochs, lr=self.lr,
                                     kd_ratio=self.kd_ratio, temperature=self.temperature, batch_size=64,
                                     shape=current.input_shape, tag=self.name,
                                     checkpoint=ctx.checkpoint(self.name, current, {
                                         **self.options(), "layers": [p.to_dict() for p in accepted]}))
            details["finetune"] = summary
        failure = None
        if not plans:
            failure = (f"no layer saves {self.min_saving:.0%} of its MACs at energy {self.energy:g} (lower "
                       f"lowrank.energy to factorise more)")
        elif not accepted:
            failure = (f"none of the {len(trials)} factorised layers tried made the network at least "
                       f"{ctx.min_speedup:.0%} faster on the target (min_speedup)")
        return Proposal(ctx.stage_of(model, self.name, current.input_shape), details, failure)
