"""The FBNet space as benchmarked by HW-NAS-Bench: 22 searchable layers, each one of 9 blocks.

Blocks (HW-NAS-Bench's op names and indices): inverted residuals ``k{3,5}_e{1,3,6}`` (depthwise kernel,
expand ratio), the grouped variants ``k{3,5}_e1_g2`` (1x1 convolutions in 2 groups, channel shuffle between),
and ``skip``. Flat labels are ``layer00`` .. ``layer21``; the public form is the 22 op names separated by
spaces, as in the ``op_names`` column of HW-NAS-Bench's FBNet tables.

The macro plan is FBNet's (Wu et al., CVPR 2019): a 3x3 stem with 16 channels, stages of 1/4/4/4/4/4/1
layers with 16/24/32/64/112/184/352 channels, a 1x1 conv to 1504 channels, pooling and a classifier. For
the 32x32 inputs HW-NAS-Bench uses, the stem and the second stage keep stride 1 (``strides`` changes it).
A ``skip`` in a layer that changes shape becomes a 1x1 projection (a block with no work cannot resize).

Relaxed (:meth:`FBNetSpace.relax`, FBNet's own search): every layer a mixed op over its 9 blocks, stem and head
fixed; sampled with Gumbel-softmax, one block per layer runs (all 9 would cost 9 networks a step).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from nas.arch import Arch, Value
from nas.errors import ConfigError, InvalidArchError
from nas.registry import register_space
from search_spaces.base import SearchSpace
from search_spaces.options import positive_int
from search_spaces.blocks import ChannelShuffle, ConvBNAct
from search_spaces.relax import CandidateMix, Decision, Gates, RelaxableSpace, RelaxedSupernet, label_decisions

#: HW-NAS-Bench's op index order.
OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
NUM_LAYERS = sum(STAGE_LAYERS)
LABELS = tuple(f"layer{i:02d}" for i in range(NUM_LAYERS))
#: Weight steps when ``strategy.epochs`` is null (20 epochs of the embedded digits, 7 of mnist5k): ~1 s CPU a
#: Gumbel step, see :class:`FBNetRelaxedSupernet`, so ~6 minutes with the architecture steps.
RELAX_STEPS = 180


def parse_op(op: str) -> tuple[int, int, int]:
    """``(kernel, expand, groups)`` of a block name such as ``k5_e1_g2``."""
    parts = op.split("_")
    return int(parts[0][1:]), int(parts[1][1:]), int(parts[2][1:]) if len(parts) > 2 else 1


@register_space("fbnet")
class FBNetSpace(SearchSpace, RelaxableSpace):
    """HW-NAS-Bench's FBNet space (9^22 networks); the public form is the space-separated op names."""

    name = "fbnet"
    relax_sampling = "gumbel"
    relax_steps = RELAX_STEPS
    relax_lr = 0.1
    supports_partial_channels = False

    def __init__(
        self,
        *,
        num_classes: int = 100,
        in_channels: int = 3,
        resolution: int = 32,
        stem_stride: int = 1,
        strides: Iterable[int] = (1, 1, 2, 2, 1, 2, 1),
        head_channels: int = 1504,
    ) -> None:
        num_classes, in_channels, resolution, stem_stride, head_channels = (
            positive_int("fbnet", key, value) for key, value in (
                ("num_classes", num_classes), ("in_channels", in_channels), ("resolution", resolution),
                ("stem_stride", stem_stride), ("head_channels", head_channels)))
        strides = tuple(strides)
        if len(strides) != len(STAGE_LAYERS) or any(s not in (1, 2) for s in strides):
            raise ConfigError(f"fbnet: strides must list {len(STAGE_LAYERS)} values of 1 or 2, got {list(strides)}")
        self.num_classes, self.in_channels = int(num_classes), int(in_channels)
        self.resolution, self.stem_stride, self.head_channels = int(resolution), int(stem_stride), int(head_channels)
        self.strides = strides

    def choices(self) -> dict[str, tuple[Value, ...]]:
        return {label: OPS for label in LABELS}

    def input_shape(self, arch: Mapping[str, Value]) -> tuple[int, int, int]:
        return (self.in_channels, self.resolution, self.resolution)

    def layer_plan(self) -> list[tuple[int, int, int]]:
        """``(in_channels, out_channels, stride)`` of each of the 22 layers."""
        plan, c_in = [], STAGE_CHANNELS[0]
        for c_out, n, stride in zip(STAGE_CHANNELS, STAGE_LAYERS, self.strides):
            for k in range(n):
                plan.append((c_in, c_out, stride if k == 0 else 1))
                c_in = c_out
        return plan

    def build(self, arch: Mapping[str, Value]) -> nn.Module:
        arch = self.validate(arch)
        layers: list[nn.Module] = [self._stem()]
        for label, (c_in, c_out, stride) in zip(LABELS, self.layer_plan()):
            layers.append(_make_block(str(arch[label]), c_in, c_out, stride))
        return nn.Sequential(*layers, *self._head())

    def _stem(self) -> nn.Module:
        return ConvBNAct(self.in_channels, STAGE_CHANNELS[0], 3, self.stem_stride, act="relu")

    def _head(self) -> list[nn.Module]:
        return [ConvBNAct(STAGE_CHANNELS[-1], self.head_channels, 1, act="relu"), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                nn.Linear(self.head_channels, self.num_classes)]

    def to_public(self, arch: Mapping[str, Value]) -> str:
        return " ".join(str(arch[label]) for label in LABELS)

    def from_public(self, obj: object) -> Arch:
        if isinstance(obj, Mapping):
            return self.validate(obj)
        if not isinstance(obj, str):
            raise InvalidArchError(f"an fbnet architecture must be {NUM_LAYERS} op names separated by spaces, "
                                   f"got {type(obj).__name__}")
        ops = obj.split()
        if len(ops) != NUM_LAYERS:
            raise InvalidArchError(f"an fbnet architecture has {NUM_LAYERS} op names separated by spaces, got {len(ops)}: {obj[:120]!r}")
        unknown = sorted({op for op in ops if op not in OPS})
        if unknown:
            raise InvalidArchError(f"unknown fbnet op(s) {unknown}; ops are {list(OPS)}")
        return self.validate(dict(zip(LABELS, ops)))

    def describe(self, arch: Mapping[str, Value]) -> str:
        return self.to_public(arch)

    # ------------------------------------------------------------------ relaxation (differentiable search)
    def decisions(self) -> tuple[Decision, ...]:
        return label_decisions(self.choices())

    def arch_of(self, selection: Sequence[int]) -> Arch:
        return self.validate({label: OPS[int(i)] for label, i in zip(LABELS, selection)})

    def relax(self, *, partial_channels: int = 1) -> FBNetRelaxedSupernet:
        if partial_channels != 1:
            raise ConfigError(f"fbnet: partial_channels={partial_channels!r} is not supported (PC-DARTS's partial "
                              f"channels are for cell spaces); set strategy.partial_channels=1")
        return FBNetRelaxedSupernet(self)


class _InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, groups: int, stride: int) -> None:
        super().__init__()
        mid = c_in * expand
        parts: list[nn.Module] = [ConvBNAct(c_in, mid, 1, groups=groups, act="relu")]
        if groups > 1:
            parts.append(ChannelShuffle(groups))
        parts += [ConvBNAct(mid, mid, kernel, stride, groups=mid, act="relu"), ConvBNAct(mid, c_out, 1, groups=groups)]
        self.body = nn.Sequential(*parts)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


def _make_block(op: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    if op == "skip":
        return nn.Identity() if stride == 1 and c_in == c_out else ConvBNAct(c_in, c_out, 1, stride)
    kernel, expand, groups = parse_op(op)
    return _InvertedResidual(c_in, c_out, kernel, expand, groups, stride)


class FBNetRelaxedSupernet(RelaxedSupernet):
    """Stem, 22 mixed layers of the 9 blocks each (separate weights per block, as FBNet's supernet), head; laid
    out as :meth:`FBNetSpace.build`'s ``nn.Sequential`` so :meth:`extract` loads module by module.

    Measured (batch 64, 32x32, 1 input channel, 10 classes, CPU time on one thread): a Gumbel step (one random
    block per layer, forward + backward) takes 0.9-1.1 s (1.65 s with contiguous weights), less than one built
    random FBNet (1.6-2.0 s). An epoch over the embedded digits' 1,750 + 1,750 images (a weight and an
    architecture step per batch, ~56 steps) is ~55 s, so :data:`RELAX_EPOCHS` = 6 is ~5.5 minutes, within ~8
    with evaluation."""

    def __init__(self, space: FBNetSpace) -> None:
        super().__init__()
        self._space = space
        self.decisions = space.decisions()
        self.stem = space._stem()
        self.layers = nn.ModuleList(CandidateMix([_make_block(op, c_in, c_out, stride) for op in OPS])
                                    for c_in, c_out, stride in space.layer_plan())
        self.head = nn.Sequential(*space._head())
        self.to(memory_format=torch.channels_last)  # measured: a Gumbel step ~1.5x faster on CPU than contiguous

    def forward(self, x: torch.Tensor, gates: Gates) -> torch.Tensor:
        if len(gates.weights) != len(self.layers):
            raise ValueError(f"fbnet supernet: gates hold {len(gates.weights)} weight vectors, expected one per "
                             f"layer ({len(self.layers)})")
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for k, layer in enumerate(self.layers):
            x = layer(x, gates.weights[k], None if gates.active is None else gates.active[k], gates.aux_skip)
        return self.head(x)

    def gates_of(self, arch: Mapping[str, Value]) -> Gates:
        return Gates.one_hot(self.decisions, self._space.selection_of(self._space.validate(arch)))

    def extract(self, arch: Mapping[str, Value]) -> nn.Sequential:
        """:meth:`FBNetSpace.build` of ``arch`` with the stem, each layer's chosen block and the head loaded from
        this supernet (weights and BN statistics)."""
        arch = self._space.validate(arch)
        net = self._space.build(arch)
        sources = [self.stem, *(layer.candidates[OPS.index(str(arch[label]))] for layer, label in zip(self.layers, LABELS)),
                   *self.head]
        with torch.no_grad():
            for source, target in zip(sources, net):
                target.load_state_dict(source.state_dict())
        return net.to(next(self.parameters()).device).train(self.training)
