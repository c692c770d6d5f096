"""Supernet training with progressive shrinking (Once-for-All, Cai et al., ICLR 2020).

The phases, in order:

1. ``full``: train the largest network, at a random resolution each step (resolution is elastic from
   the start, as in OFA).
2. One phase per remaining elastic dimension of the space, in the space's order (for OFA: ``kernel``,
   ``depth``, ``expand``). Each phase makes one more dimension elastic and trains sub-networks drawn
   with ``space.sample_elastic(rng, dims_so_far)``, distilled from a frozen copy of the largest network
   taken at the end of ``full`` (loss = label CE + ``kd_ratio`` x soft CE to the teacher's softmax).

The learning rate follows a cosine within each phase. After every epoch the whole training state
(weights, optimizer, teacher, RNG states, position, history) goes to ``checkpoint_dir/state.npz``;
calling :func:`train_supernet` again with the same directory resumes after the last completed epoch and
ends with bit-identical weights. The finished supernet is written to ``checkpoint_dir/supernet.npz``
(weights + JSON: space, data, config, phase history, accuracies); :func:`load_trained_supernet` reads it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nas.accuracy import SupernetEvaluator, arch_resolution, resize_batch
from nas.checkpoint import load_checkpoint, optimizer_from_tensors, optimizer_to_tensors, save_checkpoint
from nas.data import DataSplits
from nas.errors import ConfigError, ModelError
from search_spaces.base import Supernet, WeightSharingSpace

FULL_PHASE = "full"
STATE_FILE = "state.npz"
SUPERNET_FILE = "supernet.npz"
_STATE_FORMAT = "hwnas.supernet-train-state/1"
_SUPERNET_FORMAT = "hwnas.supernet/1"

# Sized for the 2-core CPU machines: OFA width 0.5 on MNIST-5k (3,500 training images) trains in about
# 4 minutes there (full ~600 img/s, shrinking phases ~250-300 img/s with the teacher) to ~97% val accuracy
# for the largest subnet and ~93% for the smallest, provided the residual blocks start with a zero last
# BatchNorm gamma (without it, ~89% / ~82%). The expand phase is the longest because the smallest
# subnets (expand 3) are only trained there.
DEFAULT_EPOCHS: Mapping[str, int] = types.MappingProxyType({"full": 10, "kernel": 3, "depth": 4, "expand": 6})


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_supernet` (validated on construction).

    ``epochs`` maps a phase name (``"full"`` or an elastic dimension of the space other than resolution)
    to its number of epochs; a phase left out gets 0 epochs. ``kd_ratio`` weighs the distillation loss
    added to the label loss (0 turns distillation off). ``subnets_per_step`` sub-networks are sampled and
    their gradients averaged per optimizer step in the shrinking phases (the ``full`` phase uses one).
    ``lr`` is the peak learning rate of the ``full`` phase and ``shrink_lr`` that of each later phase
    (``None``: the same as ``lr``); as in OFA, the shrinking phases fine-tune with a smaller rate, which
    protects the largest subnet's accuracy.
    """

    batch_size: int = 64
    lr: float = 0.15
    shrink_lr: float | None = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    epochs: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_EPOCHS))
    kd_ratio: float = 1.0
    subnets_per_step: int = 1
    calib_images: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("subnets_per_step", self.subnets_per_step, minimum=1)
        _check_int("calib_images", self.calib_images, minimum=1)
        _check_int("seed", self.seed, minimum=0)
        _check_float("lr", self.lr, low=0.0, low_open=True)
        if self.shrink_lr is not None:
            _check_float("shrink_lr", self.shrink_lr, low=0.0, low_open=True)
        _check_float("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        _check_float("weight_decay", self.weight_decay, low=0.0)
        _check_float("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        _check_float("kd_ratio", self.kd_ratio, low=0.0)
        if not isinstance(self.epochs, Mapping) or not self.epochs:
            raise ConfigError(f"epochs must be a non-empty mapping of phase name -> epochs, got {self.epochs!r}")
        for phase, count in self.epochs.items():
            if not isinstance(phase, str):
                raise ConfigError(f"epochs keys must be phase names (strings), got {phase!r}")
            _check_int(f"epochs[{phase!r}]", count, minimum=0)
        # a read-only copy, so a caller's later edit of its dict cannot change a frozen config
        object.__setattr__(self, "epochs", types.MappingProxyType(dict(self.epochs)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (stored in checkpoints)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["epochs"] = dict(self.epochs)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping (for example a Hydra config node), rejecting unknown keys by name."""
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**dict(values))


@dataclass(frozen=True)
class Phase:
    """One progressive-shrinking phase: its name, the dimensions sampled in it, and its epochs."""

    name: str
    elastic: tuple[str, ...]
    epochs: int


@dataclass(frozen=True)
class EpochReport:
    """Passed to ``on_epoch_end`` after each epoch's checkpoint is on disk."""

    phase: str
    phase_index: int
    num_phases: int
    epoch: int  # 1-based, within the phase
    epochs: int
    loss: float
    checkpoint: Path


def phase_plan(space: WeightSharingSpace, config: TrainConfig) -> list[Phase]:
    """The phases for ``space``: ``full`` then one per elastic dimension except resolution."""
    dims = tuple(space.elastic_dims())
    always = ("resolution",) if "resolution" in dims else ()
    names = [FULL_PHASE] + [d for d in dims if d != "resolution"]
    unknown = sorted(set(config.epochs) - set(names))
    if unknown:
        raise ConfigError(f"epochs names unknown phase(s) {unknown} for space {space.name!r}; its phases are {names}")
    plan, elastic = [], list(always)
    for name in names:
        if name != FULL_PHASE:
            elastic.append(name)
        plan.append(Phase(name=name, elastic=tuple(elastic), epochs=int(config.epochs.get(name, 0))))
    return plan


def train_supernet(
    space: WeightSharingSpace,
    supernet: Supernet,
    data: DataSplits,
    *,
    config: TrainConfig | None = None,
    checkpoint_dir: Path | str,
    progress: bool = True,
    on_epoch_end: Callable[[EpochReport], None] | None = None,
) -> dict[str, Any]:
    """Train ``supernet`` in place by progressive shrinking; resume from ``checkpoint_dir`` if it holds a run.

    Returns a summary: per phase the epochs, per-epoch mean loss, seconds and images/s, plus the
    validation accuracy of the largest and smallest sub-networks (after BatchNorm recalibration). If the
    run in ``checkpoint_dir`` already finished, its weights are loaded into ``supernet`` and its summary
    returned without training.
    """
    config = TrainConfig() if config is None else config
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    plan = phase_plan(space, config)
    identity = {"config": config.to_dict(), "space": space_identity(space, supernet), "data": data.describe()}
    _check_compatible(space, supernet, data)

    state_path, final_path = checkpoint_dir / STATE_FILE, checkpoint_dir / SUPERNET_FILE
    # Dropout draws from torch's global generator: seed it for this run only and restore the caller's after.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        run = _Run(space, supernet, data, config, plan)
        if state_path.is_file():
            run.restore(state_path, identity)
        if run.finished and final_path.is_file():
            tensors, meta = load_checkpoint(final_path)
            _load_weights(supernet, tensors, final_path)
            return meta["summary"]
        for index in range(len(plan)):
            run.train_phase(
                index, progress=progress, on_epoch_end=on_epoch_end, state_path=state_path, identity=identity
            )
        run.finished = True
        run.save_state(state_path, identity)
        summary = run.summary(final_path)
        save_checkpoint(
            final_path,
            {k: v for k, v in supernet.state_dict().items()},
            {"format": _SUPERNET_FORMAT, **identity, "history": run.history, "summary": summary},
        )
    return summary


def load_trained_supernet(path: Path | str, space: WeightSharingSpace) -> tuple[Supernet, dict[str, Any]]:
    """A fresh ``space.supernet()`` with the weights from ``supernet.npz``, and that file's metadata."""
    tensors, meta = load_checkpoint(path)
    if meta.get("format") != _SUPERNET_FORMAT:
        raise ModelError(f"{path} is not a trained supernet file (format {meta.get('format')!r}); pass a supernet.npz")
    saved = meta.get("space", {})
    if saved.get("name") != space.name or saved.get("choices") != _choices_json(space):
        raise ModelError(
            f"{path} was trained for space {saved.get('name')!r} with other choices; build that space with "
            f"the saved settings {saved.get('config')} to load it"
        )
    supernet = space.supernet()
    _load_weights(supernet, tensors, Path(path))
    return supernet, meta


def space_identity(space: WeightSharingSpace, supernet: nn.Module) -> dict[str, Any]:
    """What must match for a checkpoint to fit: space name, class, choices and the weights' shapes."""
    shapes = {k: list(v.shape) for k, v in supernet.state_dict().items()}
    digest = hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()[:16]
    space_config = getattr(space, "config", None)  # optional: spaces built from arguments (OFA) report them
    return {
        "name": space.name,
        "class": f"{type(space).__module__}.{type(space).__qualname__}",
        "config": space_config() if callable(space_config) else None,
        "choices": _choices_json(space),
        "weights_shape_digest": digest,
    }


# ---------------------------------------------------------------------- the run
class _Run:
    """Mutable state of one training run: model, optimizer, teacher, RNG, position and history."""

    def __init__(
        self, space: WeightSharingSpace, supernet: Supernet, data: DataSplits, config: TrainConfig, plan: list[Phase]
    ) -> None:
        self.space, self.supernet, self.data, self.config, self.plan = space, supernet, data, config, plan
        self.optimizer = _make_optimizer(supernet, config)
        self.rng = np.random.default_rng(config.seed)
        self.teacher: nn.Module | None = None
        self.phase, self.epoch = 0, 0  # position: epochs completed in phase `phase`
        self.finished = False
        self.history = [
            {
                "name": p.name,
                "elastic": list(p.elastic),
                "epochs": p.epochs,
                "epoch_losses": [],  # the training objective: label CE (+ kd_ratio x distillation)
                "epoch_train_acc": [],  # top-1 of the sampled sub-networks on their training batches
                "seconds": 0.0,
                "images": 0,
            }
            for p in plan
        ]

    # ---------------------------------------------------------------- training
    def train_phase(
        self,
        index: int,
        *,
        progress: bool,
        on_epoch_end: Callable[[EpochReport], None] | None,
        state_path: Path,
        identity: dict[str, Any],
    ) -> None:
        phase = self.plan[index]
        if index < self.phase:
            return
        if index > self.phase:
            self.phase, self.epoch = index, 0
        if phase.name != FULL_PHASE:
            self._ensure_teacher()
        n = len(self.data.train)
        batch = min(self.config.batch_size, n)
        steps = n // batch  # drop the ragged last batch: a batch of one breaks train-mode BatchNorm
        bar = tqdm(
            total=phase.epochs * steps,
            initial=self.epoch * steps,
            disable=not progress,
            unit="step",
            dynamic_ncols=True,
        )
        try:
            for epoch in range(self.epoch, phase.epochs):
                bar.set_description(
                    f"supernet [phase {phase.name} {index + 1}/{len(self.plan)}] epoch {epoch + 1}/{phase.epochs}"
                )
                started = time.perf_counter()
                loss, train_acc, images = self._train_epoch(phase, epoch, steps, batch, bar)
                record = self.history[index]
                record["epoch_losses"].append(loss)
                record["epoch_train_acc"].append(train_acc)
                record["seconds"] += time.perf_counter() - started
                record["images"] += images
                self.epoch = epoch + 1
                if self.epoch == phase.epochs and phase.name == FULL_PHASE:
                    self._ensure_teacher()  # taken now, so the phase-end checkpoint holds it
                self.save_state(state_path, identity)
                if on_epoch_end is not None:
                    on_epoch_end(
                        EpochReport(phase.name, index, len(self.plan), self.epoch, phase.epochs, loss, state_path)
                    )
        finally:
            bar.close()

    def _train_epoch(self, phase: Phase, epoch: int, steps: int, batch: int, bar: tqdm) -> tuple[float, float, int]:
        config, X, Y = self.config, self.data.train.X, self.data.train.y
        subnets = 1 if phase.name == FULL_PHASE else config.subnets_per_step
        base_lr = config.lr if phase.name == FULL_PHASE or config.shrink_lr is None else config.shrink_lr
        order = torch.from_numpy(self.rng.permutation(len(Y)))
        total_steps = phase.epochs * steps
        self.supernet.train()
        running, correct, seen = 0.0, 0, 0
        for step in range(steps):
            lr = _cosine(base_lr, epoch * steps + step, total_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            idx = order[step * batch : (step + 1) * batch]
            x, y = X[idx], Y[idx]
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for _ in range(subnets):
                arch = self.space.sample_elastic(self.rng, phase.elastic)
                self.supernet.set_active(arch)
                xr = resize_batch(x, arch_resolution(self.space, arch))
                logits = self.supernet(xr)
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                if self.teacher is not None and phase.name != FULL_PHASE and config.kd_ratio > 0:
                    with torch.no_grad():
                        soft = F.softmax(self.teacher(xr), dim=1)
                    loss = loss + config.kd_ratio * soft_cross_entropy(logits, soft)
                correct += int((logits.detach().argmax(dim=1) == y).sum())
                seen += len(y)
                (loss / subnets).backward()  # averaged, so lr means the same for any subnets_per_step
                step_loss += float(loss.detach()) / subnets
            self.optimizer.step()
            running += step_loss
            bar.update(1)
            bar.set_postfix_str(f"loss {running / (step + 1):.3f} acc {correct / seen:.3f}", refresh=False)
        self.supernet.set_active(self.space.largest())
        return running / max(steps, 1), correct / max(seen, 1), seen

    def _ensure_teacher(self) -> None:
        if self.teacher is not None or self.config.kd_ratio == 0:
            return
        self.teacher = _as_teacher(self.supernet.extract(self.space.largest()))

    # ---------------------------------------------------------------- checkpointing
    def save_state(self, path: Path, identity: dict[str, Any]) -> None:
        tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in self.supernet.state_dict().items()}
        optim_tensors, optim_meta = optimizer_to_tensors(self.optimizer.state_dict(), prefix="optim.")
        tensors.update(optim_tensors)
        if self.teacher is not None:
            tensors.update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {
            "format": _STATE_FORMAT,
            **identity,
            "position": {"phase": self.phase, "epoch": self.epoch, "finished": self.finished},
            "history": self.history,
            "numpy_rng": self.rng.bit_generator.state,
            "optimizer": optim_meta,
            "has_teacher": self.teacher is not None,
        }
        save_checkpoint(path, tensors, meta)

    def restore(self, path: Path, identity: dict[str, Any]) -> None:
        tensors, meta = load_checkpoint(path)
        if meta.get("format") != _STATE_FORMAT:
            raise ModelError(f"{path} is not a supernet training state (format {meta.get('format')!r}); remove it")
        for key in ("config", "space", "data"):
            if meta.get(key) != identity[key]:
                differences = _diff(meta.get(key), identity[key])
                raise ConfigError(
                    f"{path.parent} holds a training run with a different {key} ({differences}); "
                    "use a new checkpoint_dir, or delete that one to start over"
                )
        _load_weights(self.supernet, _strip(tensors, "model."), path)
        self.optimizer.load_state_dict(optimizer_from_tensors(tensors, meta["optimizer"]))
        if meta["has_teacher"]:
            teacher = self.supernet.extract(self.space.largest())
            _load_weights(teacher, _strip(tensors, "teacher."), path)
            self.teacher = _as_teacher(teacher)
        torch.set_rng_state(tensors["rng.torch"])
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.phase, self.epoch = meta["position"]["phase"], meta["position"]["epoch"]
        self.finished = bool(meta["position"]["finished"])
        self.history = meta["history"]

    # ---------------------------------------------------------------- results
    def summary(self, final_path: Path) -> dict[str, Any]:
        evaluator = SupernetEvaluator(
            self.space, self.supernet, self.data, calib_images=self.config.calib_images, seed=self.config.seed
        )
        phases = []
        for record in self.history:
            seconds = record["seconds"]
            phases.append(
                {
                    "name": record["name"],
                    "elastic": record["elastic"],
                    "epochs": record["epochs"],
                    "loss": record["epoch_losses"][-1] if record["epoch_losses"] else None,
                    "epoch_losses": record["epoch_losses"],
                    "train_acc": record["epoch_train_acc"][-1] if record["epoch_train_acc"] else None,
                    "seconds": seconds,
                    "images_per_second": record["images"] / seconds if seconds > 0 else None,
                }
            )
        return {
            "phases": phases,
            "seconds": sum(p["seconds"] for p in phases),
            "val_accuracy": {
                "largest": evaluator.accuracy(self.space.largest()),
                "smallest": evaluator.accuracy(self.space.smallest()),
            },
            "checkpoint": str(final_path),
        }


# ---------------------------------------------------------------------- helpers
def _make_optimizer(supernet: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # As in OFA: no weight decay on BatchNorm parameters and biases (1-d tensors).
    decay = [p for p in supernet.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in supernet.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(
        [g for g in groups if g["params"]], lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0
    )


def _cosine(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1.0 + math.cos(math.pi * step / max(total, 1)))


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (a teacher's probabilities): in-place distillation's loss."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _as_teacher(model: nn.Module) -> nn.Module:
    """Frozen teacher: no gradients, dropout off, BatchNorm on batch statistics (as OFA's teacher in train
    mode), which fit whatever resolution the current step uses."""
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    return model


def _check_compatible(space: WeightSharingSpace, supernet: nn.Module, data: DataSplits) -> None:
    arch = space.largest()
    channels, height, width = space.input_shape(arch)
    if channels != data.in_channels:
        raise ConfigError(
            f"space {space.name!r} expects {channels}-channel images but data {data.name!r} has "
            f"{data.in_channels}; build the space with in_channels={data.in_channels}"
        )
    was_training = supernet.training
    supernet.set_active(arch)
    supernet.eval()  # eval mode: this probe must not touch BatchNorm statistics
    with torch.no_grad():
        out = supernet(resize_batch(data.train.X[:2], (height, width)))
    supernet.train(was_training)
    if out.ndim != 2 or out.shape[1] < data.num_classes:
        raise ConfigError(
            f"space {space.name!r} outputs {tuple(out.shape[1:])} logits but data {data.name!r} has "
            f"{data.num_classes} classes; build the space with num_classes={data.num_classes}"
        )


def _load_weights(model: nn.Module, tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(dict(tensors), strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(
            f"weights in {path} do not fit this network ({first}); was it trained for another space?"
        ) from None


def _strip(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _choices_json(space: WeightSharingSpace) -> dict[str, list[Any]]:
    return {label: list(values) for label, values in space.choices().items()}


def _diff(saved: Any, current: Any) -> str:
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        keys = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        return ", ".join(f"{k}: saved {saved.get(k)!r} vs now {current.get(k)!r}" for k in keys[:3])[:300]
    return f"saved {saved!r} vs now {current!r}"[:300]


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_float(
    name: str,
    value: object,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high)
        )
    if not ok:
        opening, closing = "(" if low_open else "[", ")" if high_open or high is None else "]"
        interval = f"{opening}{low}, {'inf' if high is None else high}{closing}"
        raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")
