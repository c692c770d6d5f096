"""Layer-wise block spaces: a fixed macro plan whose every searchable layer picks one op of some block families.

A :class:`Plan` is a stem (3x3 conv, stride 2, optionally a max-pool), a list of :class:`Layer` s with fixed
input / output channels and stride, and a classifier :class:`HeadPlan`. A :class:`Family` (MBConv, ShuffleNetV2
unit, Ghost bottleneck, skip) says which of its ops fit a layer's shape, builds the static block of an op and
the layer's weight-sharing block. An arch is ``{"layer00": op, "layer01": op, ...}`` (op names such as
``mb_k5_e6_se``, ``shuffle_xception``, ``ghost_k3_e2.5``, ``skip``); the choices are independent, so every
batch operator of the search loop is a few numpy operations on integer codes, and the latency features are a
gather from a per-(layer, op) table.

The kernel decomposition the latency models read is derived from the built blocks themselves
(:func:`search_spaces.trace.trace_kernels` on the stem, each layer's op and the head), never listed by hand:
a new space is one file that defines its plan and families (``search_spaces/mobilenet.py`` is an example).

Supernet: one :class:`ChoiceLayer` per layer holding each family's dynamic block (ops of a family share its
weights: kernels as OFA's transformed centres, expansions as the first channels of the widest, SE on / off as
one set of SE weights). Training samples one op per layer uniformly (single-path one-shot, Guo et al. 2020):
``elastic_dims() == ("ops",)``. ``extract`` copies the active path into a static network that computes the
same outputs.

Presets (:func:`register_preset`) are public reference networks written as members of a space: ``python -m
search_spaces describe --preset mobilenet_v3_large`` builds one and counts its parameters.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.arch import Arch, Value
from nas.errors import ConfigError, InvalidArchError
from search_spaces.base import Supernet, WeightSharingSpace
from search_spaces.blocks import ConvBNAct, DynamicMBConv, MBConv, init_weights, make_act, make_divisible
from search_spaces.blocks.ghost import DynamicGhostBottleneck, GhostBottleneck, has_kernel_choice
from search_spaces.blocks.mbconv import BlockSpec
from search_spaces.blocks.shuffle import XCEPTION, DynamicShuffleUnit, ShuffleUnit, check_unit_shape
from search_spaces.relax import Decision, RelaxableSpace, RelaxedSupernet, label_decisions

SKIP = "skip"


def layer_label(index: int) -> str:
    return f"layer{index:02d}"


# ---------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Layer:
    """One searchable layer: its shape, the activation MBConv ops use there, and its width-1 input channels
    (torchvision and timm compute middle widths from those, then apply the width multiplier)."""

    in_channels: int
    out_channels: int
    stride: int
    act: str = "relu"
    base_in: int = 0

    def describe(self) -> str:
        return f"{self.in_channels} -> {self.out_channels} channels, stride {self.stride}"


@dataclass(frozen=True)
class HeadPlan:
    """1x1 conv + BN + act to ``final_channels``, global pool, optional linear ``mix_channels`` + act, classifier."""

    final_channels: int
    final_act: str
    mix_channels: int | None = None
    mix_act: str = "h_swish"
    dropout: float = 0.0


@dataclass(frozen=True)
class Plan:
    stem_channels: int
    stem_act: str
    layers: tuple[Layer, ...]
    head: HeadPlan
    stem_pool: bool = False  # ShuffleNetV2's 3x3 stride-2 max-pool after the stem


def stage_layers(stem: int, stages: Iterable[tuple[int, int, int, str]], width: float, divisor: int,
                 base_stem: int) -> tuple[Layer, ...]:
    """Layers of ``(out_channels, repeats, first_stride, act)`` stages (width-1 channels), each stage's first
    layer carrying its stride; channels ``make_divisible(c * width, divisor)``."""
    layers, c_in, base_in = [], stem, base_stem
    for c, repeats, stride, act in stages:
        c_out = make_divisible(c * width, divisor)
        for r in range(repeats):
            layers.append(Layer(c_in, c_out, stride if r == 0 else 1, act, base_in))
            c_in, base_in = c_out, c
    return tuple(layers)


# ---------------------------------------------------------------------------------------------- families
class Family(abc.ABC):
    """A block family: which of its ops fit a layer, and how to build them (static and weight-sharing)."""

    #: Family name; every op name of the family starts with it (``mb_...``, ``shuffle_...``, ``ghost_...``).
    name: str = ""

    @abc.abstractmethod
    def refusal(self, layer: Layer) -> str | None:
        """Why no op of this family fits ``layer`` (None when some do)."""

    @abc.abstractmethod
    def ops(self, layer: Layer) -> tuple[str, ...]:
        """The ops of this family that fit ``layer``, cheapest first (empty when :meth:`refusal` says why)."""

    @abc.abstractmethod
    def build(self, layer: Layer, op: str) -> nn.Module:
        """The static block of ``op`` at ``layer``."""

    @abc.abstractmethod
    def dynamic(self, layer: Layer, ops: Sequence[str]) -> nn.Module:
        """The weight-sharing block of ``ops`` at ``layer``: ``set_active(**self.params(op))``, ``copy_to``."""

    @abc.abstractmethod
    def params(self, op: str) -> dict[str, Any]:
        """The keyword arguments of the dynamic block's ``set_active`` for ``op``."""

    def owns(self, op: object) -> bool:
        return isinstance(op, str) and (op == self.name or op.startswith(self.name + "_"))

    def why_not(self, layer: Layer, op: str) -> str | None:
        """Why ``op`` (a name of this family that ``layer`` does not offer) cannot be this layer, if known."""
        return self.refusal(layer)

    def anchor(self, ops: Sequence[str]) -> str:
        """The op (of ``ops``, this family's ops at a layer) the others share their weights with: the largest."""
        return ops[-1]


class SkipFamily(Family):
    """The identity, where a layer keeps its shape (stride 1, as many output as input channels)."""

    name = SKIP

    def refusal(self, layer: Layer) -> str | None:
        if layer.stride == 1 and layer.in_channels == layer.out_channels:
            return None
        return f"a skip cannot be this layer: it maps {layer.describe()}, and an identity keeps the shape"

    def ops(self, layer: Layer) -> tuple[str, ...]:
        return () if self.refusal(layer) else (SKIP,)

    def build(self, layer: Layer, op: str) -> nn.Module:
        return nn.Identity()

    def dynamic(self, layer: Layer, ops: Sequence[str]) -> nn.Module:
        return _DynamicSkip()

    def params(self, op: str) -> dict[str, Any]:
        return {}


class _DynamicSkip(nn.Identity):
    def set_active(self) -> None:
        pass

    def copy_to(self, block: nn.Module) -> None:
        pass


def _fmt(expand: float) -> str:
    return f"{expand:g}"


class MBConvFamily(Family):
    """MBConv ops ``mb_k{kernel}_e{expand}[_se]``; ``mid_of(layer, expand)`` is the plan's middle width."""

    name = "mb"

    def __init__(self, *, kernel_sizes: Sequence[int], expand_ratios: Sequence[float], se: bool,
                 mid_of: Callable[[Layer, float], int]) -> None:
        self.kernel_sizes, self.expand_ratios, self.se, self.mid_of = tuple(kernel_sizes), tuple(expand_ratios), se, mid_of
        self._params = {
            f"mb_k{k}_e{_fmt(e)}{'_se' if s else ''}": {"kernel": k, "expand": e, "se": s}
            for e in self.expand_ratios for k in self.kernel_sizes for s in ((False, True) if se else (False,))
        }

    def refusal(self, layer: Layer) -> str | None:
        return None

    def ops(self, layer: Layer) -> tuple[str, ...]:
        return tuple(self._params)

    def params(self, op: str) -> dict[str, Any]:
        return dict(self._params[op])

    def spec(self, layer: Layer, kernel: int, expand: float, se: bool) -> BlockSpec:
        mid = self.mid_of(layer, expand) if expand != 1 else None
        return BlockSpec(layer.in_channels, layer.out_channels, kernel, layer.stride, expand, layer.act, se, mid)

    def build(self, layer: Layer, op: str) -> nn.Module:
        return MBConv(self.spec(layer, **self._params[op]))

    def dynamic(self, layer: Layer, ops: Sequence[str]) -> nn.Module:
        chosen = [self._params[op] for op in ops]
        return DynamicMBConv(layer.in_channels, layer.out_channels, sorted({p["kernel"] for p in chosen}),
                             sorted({p["expand"] for p in chosen}), layer.stride, layer.act,
                             any(p["se"] for p in chosen), mid_of=lambda e: self.mid_of(layer, e))


class ShuffleFamily(Family):
    """ShuffleNetV2 units ``shuffle_k{3,5,7}`` and SPOS's ``shuffle_xception``."""

    name = "shuffle"

    def __init__(self, *, kernel_sizes: Sequence[int], xception: bool = True) -> None:
        self.variants = tuple(f"k{k}" for k in kernel_sizes) + ((XCEPTION,) if xception else ())

    def refusal(self, layer: Layer) -> str | None:
        return check_unit_shape(layer.in_channels, layer.out_channels, layer.stride)

    def ops(self, layer: Layer) -> tuple[str, ...]:
        return () if self.refusal(layer) else tuple(f"shuffle_{v}" for v in self.variants)

    def params(self, op: str) -> dict[str, Any]:
        return {"variant": op[len("shuffle_"):]}

    def anchor(self, ops: Sequence[str]) -> str:
        kernels = [op for op in ops if op != f"shuffle_{XCEPTION}"]
        return kernels[-1] if kernels else ops[-1]  # the largest kernel: the Xception unit is built around k3

    def build(self, layer: Layer, op: str) -> nn.Module:
        return ShuffleUnit(layer.in_channels, layer.out_channels, layer.stride, **self.params(op))

    def dynamic(self, layer: Layer, ops: Sequence[str]) -> nn.Module:
        return DynamicShuffleUnit(layer.in_channels, layer.out_channels, layer.stride,
                                  [self.params(op)["variant"] for op in ops])


class GhostFamily(Family):
    """Ghost bottlenecks ``ghost_k{kernel}_e{expand}[_se]`` (``ghost_e{expand}[_se]`` where the layer has no
    depthwise conv whose kernel matters); ``mid_of(layer, expand)`` and ``se_of(mid)`` are the plan's widths."""

    name = "ghost"

    def __init__(self, *, kernel_sizes: Sequence[int], expand_ratios: Sequence[float], se: bool,
                 mid_of: Callable[[Layer, float], int], se_of: Callable[[int], int]) -> None:
        self.kernel_sizes, self.expand_ratios, self.se = tuple(kernel_sizes), tuple(expand_ratios), se
        self.mid_of, self.se_of = mid_of, se_of

    def refusal(self, layer: Layer) -> str | None:
        return None

    def _table(self, layer: Layer) -> dict[str, dict[str, Any]]:
        kernels = self.kernel_sizes if has_kernel_choice(layer.in_channels, layer.out_channels, layer.stride) else (None,)
        return {
            f"ghost{'' if k is None else f'_k{k}'}_e{_fmt(e)}{'_se' if s else ''}": {"kernel": k or 3, "expand": e, "se": s}
            for e in self.expand_ratios for k in kernels for s in ((False, True) if self.se else (False,))
        }

    def ops(self, layer: Layer) -> tuple[str, ...]:
        return tuple(self._table(layer))

    def why_not(self, layer: Layer, op: str) -> str | None:
        if "_k" in op and not has_kernel_choice(layer.in_channels, layer.out_channels, layer.stride):
            return (f"this layer ({layer.describe()}) has no depthwise conv whose kernel size matters, so its Ghost "
                    f"ops have no _k part (e.g. {op.replace('_k' + op.split('_k')[1].split('_')[0], '')})")
        return None

    def params(self, op: str) -> dict[str, Any]:
        parts = op.split("_")[1:]
        se = parts[-1] == "se"
        parts = parts[:-1] if se else parts
        kernel = int(parts[0][1:]) if parts[0].startswith("k") else 3
        return {"kernel": kernel, "expand": float(parts[-1][1:]), "se": se}

    def build(self, layer: Layer, op: str) -> nn.Module:
        p = self._table(layer)[op]
        mid = self.mid_of(layer, p["expand"])
        return GhostBottleneck(layer.in_channels, mid, layer.out_channels, p["kernel"], layer.stride,
                               self.se_of(mid) if p["se"] else None)

    def dynamic(self, layer: Layer, ops: Sequence[str]) -> nn.Module:
        table = self._table(layer)
        chosen = [table[op] for op in ops]
        mids = {p["expand"]: self.mid_of(layer, p["expand"]) for p in chosen}
        return DynamicGhostBottleneck(layer.in_channels, layer.out_channels, layer.stride,
                                      sorted({p["kernel"] for p in chosen}), mids, se=any(p["se"] for p in chosen),
                                      se_of=self.se_of)


# ---------------------------------------------------------------------------------------------- networks
class ClassifierHead(nn.Module):
    def __init__(self, in_channels: int, plan: HeadPlan, num_classes: int) -> None:
        super().__init__()
        self.final = ConvBNAct(in_channels, plan.final_channels, 1, act=plan.final_act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        width = plan.final_channels
        self.mix = self.mix_act = None
        if plan.mix_channels:
            self.mix, self.mix_act, width = nn.Linear(width, plan.mix_channels), make_act(plan.mix_act), plan.mix_channels
        self.dropout = nn.Dropout(plan.dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.final(x)), 1)
        if self.mix is not None:
            x = self.mix_act(self.mix(x))
        return self.classifier(self.dropout(x))


def _stem(space: LayerwiseSpace) -> nn.Sequential:
    parts: list[nn.Module] = [ConvBNAct(space.in_channels, space.plan.stem_channels, 3, 2, act=space.plan.stem_act)]
    if space.plan.stem_pool:
        parts.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*parts)


def _head(space: LayerwiseSpace) -> ClassifierHead:
    last = space.plan.layers[-1].out_channels if space.plan.layers else space.plan.stem_channels
    return ClassifierHead(last, space.plan.head, space.num_classes)


class LayerwiseNet(nn.Module):
    """A static network of a layer-wise space (what ``build`` and ``extract`` return)."""

    def __init__(self, space: LayerwiseSpace, arch: Mapping[str, Value]) -> None:
        super().__init__()
        self.stem = _stem(space)
        self.layers = nn.Sequential(*(space.family_of(op).build(layer, op)
                                      for layer, op in zip(space.plan.layers, space.ops_of(arch))))
        self.head = _head(space)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


class ChoiceLayer(nn.Module):
    """One layer of the supernet: a weight-sharing block per family, the active op selected by ``set_active``."""

    def __init__(self, layer: Layer, families: Sequence[Family], ops: Sequence[str]) -> None:
        super().__init__()
        by_family: dict[str, list[str]] = {}
        self._family: dict[str, Family] = {}
        for family in families:
            mine = [op for op in ops if family.owns(op)]
            if mine:
                by_family[family.name] = mine
                self._family.update({op: family for op in mine})
        self.blocks = nn.ModuleDict({name: self._family[mine[0]].dynamic(layer, mine) for name, mine in by_family.items()})
        self.set_active(ops[-1])

    def set_active(self, op: str) -> None:
        family = self._family[op]
        self.active_op, self._active = op, family.name  # a name, not the module: no second registration
        self.blocks[family.name].set_active(**family.params(op))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[self._active](x)

    def copy_to(self, block: nn.Module) -> None:
        self.blocks[self._active].copy_to(block)


class LayerwiseSupernet(Supernet):
    """Static stem and head, one :class:`ChoiceLayer` per layer; weights channels-last as OFA's supernet (on
    CPU the contiguous depthwise path is much slower on small maps)."""

    def __init__(self, space: LayerwiseSpace) -> None:
        super().__init__()
        self._space = space
        self.stem = _stem(space)
        self.layers = nn.ModuleList(ChoiceLayer(layer, space.families, space.choices()[label])
                                    for layer, label in zip(space.plan.layers, space.labels))
        self.head = _head(space)
        init_weights(self)
        self.to(memory_format=torch.channels_last)
        self.set_active(space.largest())

    def set_active(self, arch: Mapping[str, Value]) -> None:
        arch = self._space.validate(arch)
        self.active_arch: Arch = arch
        for layer, op in zip(self.layers, self._space.ops_of(arch)):
            layer.set_active(op)

    def input_shape(self) -> tuple[int, int, int]:
        return self._space.input_shape(self.active_arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

    def extract(self, arch: Mapping[str, Value]) -> nn.Module:
        """A standalone :class:`LayerwiseNet` of ``arch`` with this supernet's weights and BN statistics (the
        supernet's active path is left as it was; the copy keeps its train / eval mode and device)."""
        previous = self.active_arch
        self.set_active(arch)
        try:
            net = copy_path(self._space, self.active_arch, self.stem, self.layers, self.head)
        finally:
            self.set_active(previous)
        return net.train(self.training)


def copy_path(space: LayerwiseSpace, arch: Arch, stem: nn.Module, choices: Sequence[ChoiceLayer],
              head: nn.Module) -> LayerwiseNet:
    """A :class:`LayerwiseNet` of ``arch`` (validated, and each of ``choices`` already set to its op) with the
    weights and BN statistics of ``stem``, the choices' active ops and ``head`` (shared by the SPOS and the
    relaxed supernet's ``extract``)."""
    net = LayerwiseNet(space, arch).to(next(stem.parameters()).device)
    net.stem.load_state_dict(stem.state_dict())
    net.head.load_state_dict(head.state_dict())
    with torch.no_grad():
        for choice, block in zip(choices, net.layers):
            choice.copy_to(block)
    return net


# ---------------------------------------------------------------------------------------------- the space
class LayerwiseSpace(WeightSharingSpace, RelaxableSpace):
    """A macro plan whose layers each pick one op of ``families`` (see the module docstring).

    Subclasses build the plan and families from their constructor options and call :meth:`_setup`.
    Relaxed (:mod:`search_spaces.layerwise_relax`): every layer a mixed op over its ops, Gumbel-sampled."""

    relax_sampling = "gumbel"
    #: As SPOS's training epochs (a Gumbel step costs about one SPOS step: :mod:`search_spaces.layerwise_relax`).
    relax_steps = 540  # ~0.1-0.2 s a step: 2-3 minutes (20 epochs of mnist5k)
    relax_lr = 0.1
    supports_partial_channels = False

    def _setup(self, *, plan: Plan, families: Sequence[Family], in_channels: int, num_classes: int,
               resolution: int, config: Mapping[str, Any]) -> None:
        self.plan, self.families = plan, tuple(families)
        self.in_channels, self.num_classes, self.resolution = in_channels, num_classes, resolution
        self._config = dict(config)
        self.labels = tuple(layer_label(i) for i in range(len(plan.layers)))
        self._choices: dict[str, tuple[Value, ...]] = {}
        for label, layer in zip(self.labels, plan.layers):
            ops = tuple(op for family in self.families for op in family.ops(layer))
            if not ops:
                reasons = "; ".join(f"{f.name}: {f.refusal(layer)}" for f in self.families)
                raise ConfigError(f"{self.name}: no op of {[f.name for f in self.families]} fits {label} "
                                  f"({layer.describe()}): {reasons}")
            self._choices[label] = ops
        self._owner = {op: family for family in self.families for ops in self._choices.values() for op in ops
                       if family.owns(op)}
        self._counts = np.array([len(v) for v in self._choices.values()], dtype=np.intp)
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.intp)
        self._kernel_table: tuple[np.ndarray, np.ndarray] | None = None  # built on first use (traces every op)
        self._piece_kernels: dict[tuple, list] = {}

    # ------------------------------------------------------------------ definition
    def config(self) -> dict[str, Any]:
        """The constructor arguments, for logs, checkpoints and presets."""
        return dict(self._config)

    def choices(self) -> dict[str, tuple[Value, ...]]:
        return dict(self._choices)

    def option_counts(self) -> np.ndarray:
        return self._counts.copy()

    def input_shape(self, arch: Mapping[str, Value]) -> tuple[int, int, int]:
        return (self.in_channels, self.resolution, self.resolution)

    def ops_of(self, arch: Mapping[str, Value]) -> list[str]:
        return [str(arch[label]) for label in self.labels]

    def family_of(self, op: str) -> Family:
        return self._owner[op]

    def validate(self, arch: object) -> Arch:
        """:meth:`SearchSpace.validate`, and for an op whose family cannot be this layer, the reason."""
        if isinstance(arch, Mapping):
            families = [*self.families, SkipFamily()]
            for label, layer in zip(self.labels, self.plan.layers):
                op = arch.get(label)
                if op in self._choices[label]:
                    continue
                for family in families:
                    reason = family.why_not(layer, op) if family.owns(op) else None
                    if reason:
                        options = list(self._choices[label])
                        shown = options if len(options) <= 8 else [*options[:8], f"... ({len(options)} ops)"]
                        raise InvalidArchError(f"{label}={op!r} is not allowed in space {self.name!r}: {reason}; "
                                               f"choose one of {shown}")
        return super().validate(arch)

    def build(self, arch: Mapping[str, Value]) -> nn.Module:
        net = LayerwiseNet(self, self.validate(arch))
        init_weights(net)
        return net

    def supernet(self) -> LayerwiseSupernet:
        return LayerwiseSupernet(self)

    def describe(self, arch: Mapping[str, Value]) -> str:
        return " ".join(self.ops_of(arch))

    # ------------------------------------------------------------------ relaxation (differentiable search)
    def decisions(self) -> tuple[Decision, ...]:
        return label_decisions(self.choices())

    def arch_of(self, selection: Sequence[int]) -> Arch:
        return self.validate({label: options[int(i)] for (label, options), i in zip(self._choices.items(), selection)})

    def relax(self, *, partial_channels: int = 1) -> RelaxedSupernet:
        """The relaxed supernet (:class:`~search_spaces.layerwise_relax.LayerwiseRelaxedSupernet`)."""
        from search_spaces.layerwise_relax import LayerwiseRelaxedSupernet

        if partial_channels != 1:
            raise ConfigError(f"{self.name}: partial_channels={partial_channels!r} is not supported (PC-DARTS's partial "
                              f"channels are for cell spaces); set strategy.partial_channels=1")
        return LayerwiseRelaxedSupernet(self)

    # ------------------------------------------------------------------ weight sharing
    def elastic_dims(self) -> tuple[str, ...]:
        return ("ops",)

    def sample_elastic(self, rng: np.random.Generator, elastic: Sequence[str]) -> Arch:
        unknown = [d for d in elastic if d not in self.elastic_dims()]
        if unknown:
            raise ConfigError(f"{self.name}: unknown elastic dimension(s) {unknown}; choose from {list(self.elastic_dims())}")
        return self.sample(rng) if "ops" in elastic else self.anchor()

    def anchor(self) -> Arch:
        """The network the ``full`` training phase trains before ops are sampled: per layer, the op whose weights
        the layer's other ops are built around (:meth:`Family.anchor`; the largest op, except for ShuffleNetV2
        units, whose anchor is the largest-kernel unit). Training it first makes the shared weights agree before
        paths mix: without that, measured on the embedded digits, uniform sampling over ShuffleNetV2 units stays
        at chance accuracy (their units have no residual, so variants that disagree scramble every later layer)."""
        arch = {}
        for label, options in self._choices.items():
            family = self.family_of(str(options[-1]))
            arch[label] = family.anchor([op for op in options if family.owns(op)])
        return self.validate(arch)

    # ------------------------------------------------------------------ integer codes (the search loop's batch path)
    # Choices are independent (no canonical form to restore), so each operator is a few numpy calls per batch.
    def canonical_codes(self, codes: np.ndarray) -> np.ndarray:
        return np.array(codes, dtype=np.intp, copy=True)

    def sample_codes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, self._counts, size=(n, len(self._counts)))

    def crossover_codes(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.where(rng.random(a.shape) < 0.5, a, b)

    def mutate_codes(self, codes: np.ndarray, rng: np.random.Generator, *, rate: float | None = None) -> np.ndarray:
        """Each mutable label with probability ``rate`` (default 1 / mutable labels) moved to a uniformly drawn
        other option, plus one forced change, so every child differs from its parent."""
        start = np.array(codes, dtype=np.intp, copy=True)
        n, width = start.shape
        mutable = np.flatnonzero(self._counts > 1)
        if not len(mutable) or n == 0:
            return start
        rate = 1.0 / len(mutable) if rate is None else float(rate)
        hit = (rng.random((n, width)) < rate) & (self._counts > 1)
        hit[np.arange(n), mutable[rng.integers(0, len(mutable), size=n)]] = True
        moved = (start + rng.integers(1, np.maximum(self._counts, 2), size=(n, width))) % self._counts
        return np.where(hit, moved, start)

    def encode_codes(self, codes: np.ndarray) -> np.ndarray:
        """One-hot of every layer's op (equal to :meth:`encode_many` of the archs)."""
        out = np.zeros((len(codes), int(self._counts.sum())), dtype=np.float32)
        out[np.arange(len(codes))[:, None], self._offsets + codes] = 1.0
        return out

    def encode_many(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        return self.encode_codes(self.to_codes(archs)) if archs else super().encode_many(archs)

    # ------------------------------------------------------------------ latency features
    def cost_features(self, arch: Mapping[str, Value]) -> np.ndarray:
        """The kernel features (per kernel kind: MMACs, MB of activation traffic, count), which latency is close
        to linear in: :func:`predictors.features.latency_features` ``kind="kernel"``."""
        return self.kernel_features_codes(self.to_codes([arch]))[0]

    def cost_features_many(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        return self.kernel_features_codes(self.to_codes(archs))

    def cost_features_codes(self, codes: np.ndarray) -> np.ndarray:
        return self.kernel_features_codes(codes)

    def kernel_features_codes(self, codes: np.ndarray) -> np.ndarray:
        """Per-kind kernel aggregates of the archs of ``codes``: the stem + head row plus one table row per
        (layer, op), each traced from the block itself (equal to summing :meth:`kernel_list`)."""
        fixed, rows = self._kernel_tables()
        return fixed[None, :] + rows[self._offsets + np.asarray(codes, dtype=np.intp)].sum(axis=1)

    def kernel_list(self, arch: Mapping[str, Value]) -> list:
        """The kernels the built network of ``arch`` executes: stem, each layer's op and head, each traced from
        the built module at its input shape (:func:`search_spaces.trace.trace_kernels`)."""
        arch = self.validate(arch)
        out = list(self._piece(-1, "stem"))
        for index, op in enumerate(self.ops_of(arch)):
            out += self._piece(index, op)
        return out + self._piece(len(self.labels), "head")

    def sides(self) -> list[int]:
        """Feature-map side at the input of each layer, then at the head."""
        side = -(-self.resolution // 2)  # stem conv, 'same' padding, stride 2
        if self.plan.stem_pool:
            side = -(-side // 2)  # 3x3 max-pool, stride 2, padding 1
        out = []
        for layer in self.plan.layers:
            out.append(side)
            side = -(-side // layer.stride)
        return out + [side]

    def _piece(self, index: int, op: str) -> list:
        sides = self.sides()
        # Layers of one shape at one feature-map side run the same kernels: trace each such op once.
        layer = self.plan.layers[index] if 0 <= index < len(self.labels) else index
        key = (layer, sides[index] if 0 <= index < len(self.labels) else None, op)
        cached = self._piece_kernels.get(key)
        if cached is None:
            from search_spaces.trace import trace_kernels

            if op == "stem":
                module, shape = _stem(self), (self.in_channels, self.resolution, self.resolution)
            elif op == "head":
                module, shape = _head(self), (self.plan.layers[-1].out_channels, sides[-1], sides[-1])
            else:
                layer = self.plan.layers[index]
                module, shape = self.family_of(op).build(layer, op), (layer.in_channels, sides[index], sides[index])
            cached = self._piece_kernels[key] = trace_kernels(module.eval(), shape)
        return cached

    def _kernel_tables(self) -> tuple[np.ndarray, np.ndarray]:
        if self._kernel_table is None:
            from search_spaces.kernels import kernel_row

            fixed = kernel_row(self._piece(-1, "stem") + self._piece(len(self.labels), "head"))
            rows = [kernel_row(self._piece(i, op)) for i, ops in enumerate(self._choices.values()) for op in ops]
            self._kernel_table = (fixed, np.stack(rows))
        return self._kernel_table


# ---------------------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    """A public reference network as a member of a space: the space's options and the arch's ops."""

    name: str
    space: str
    config: Mapping[str, Any]
    ops: tuple[str, ...]
    reference: str  # where the network comes from, e.g. "torchvision.models.mobilenet_v2"
    reference_params: int  # its parameter count in that implementation (ImageNet configuration)
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def build_space(self):
        from nas.registry import SPACES

        return SPACES.get(self.space)(**self.config)

    def arch(self, space=None) -> Arch:
        space = self.build_space() if space is None else space
        return space.validate(dict(zip(space.labels, self.ops)))


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    if preset.name in PRESETS and PRESETS[preset.name] != preset:
        raise ValueError(f"preset {preset.name!r} is already registered")
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    from nas.registry import load_builtins

    load_builtins("space")  # the space modules register their presets
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    return preset


def list_presets() -> list[str]:
    from nas.registry import load_builtins

    load_builtins("space")
    return sorted(PRESETS)
