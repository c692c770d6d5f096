"""Layers of the OFA MobileNetV3 space.

Two families with one channel arithmetic:

* static layers (:class:`ConvBNAct`, :class:`SqueezeExcite`, :class:`MBConv`, :class:`Head`,
  :class:`MobileNetV3`): plain ``nn`` modules, what ``build`` and ``Supernet.extract`` return, exportable to ONNX;
* dynamic layers (:class:`DynamicConv2d`, :class:`DynamicDepthwiseConv2d`, :class:`DynamicBatchNorm2d`,
  :class:`DynamicSE`, :class:`DynamicMBConv`): hold the weights of the largest block and run any smaller one
  by slicing, as in OFA's ``dynamic_op.py`` / ``dynamic_layers.py``.

The channel rules follow OFA exactly (``make_divisible(v, 8)``, middle channels
``make_divisible(round(in * expand), 8)``, SE channels ``make_divisible(mid // 4, 8)``) so parameter counts
match the original implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CHANNEL_DIVISOR = 8
SE_REDUCTION = 4


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` (OFA / TF-slim rule: never more than 10% below ``value``)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def make_act(name: str | None) -> nn.Module:
    """The activation module for OFA's names; ``nn.Hardswish`` keeps the ONNX graph to one standard op."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "h_swish":
        return nn.Hardswish()
    if name is None:
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; expected 'relu', 'h_swish' or None")


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block of a concrete network (all choices resolved)."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand: float
    act: str
    use_se: bool

    @property
    def has_expand_conv(self) -> bool:
        # OFA's static MBConvLayer drops the 1x1 expansion exactly when the ratio is 1.
        return self.expand != 1

    @property
    def mid_channels(self) -> int:
        if not self.has_expand_conv:
            return self.in_channels
        return make_divisible(round(self.in_channels * self.expand))

    @property
    def se_channels(self) -> int:
        return make_divisible(self.mid_channels // SE_REDUCTION)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class NetSpec:
    """The full channel plan of a concrete MobileNetV3 network."""

    in_channels: int
    stem_channels: int
    blocks: tuple[BlockSpec, ...]
    final_expand_channels: int
    feature_mix_channels: int
    num_classes: int
    dropout: float


# ---------------------------------------------------------------------------------------------- static layers
class ConvBNAct(nn.Sequential):
    """Conv (no bias, 'same' padding) + BatchNorm + optional activation, as OFA's ``ConvLayer``."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        if act is not None:  # no Identity module for linear layers: keeps the exported graph minimal
            self.act = make_act(act)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pool, 1x1 reduce (bias) + ReLU, 1x1 expand (bias) + hard sigmoid."""

    def __init__(self, channels: int, mid_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, mid_channels, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(mid_channels, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """Inverted bottleneck block: [1x1 expand + BN + act], kxk depthwise + BN + act, [SE], 1x1 linear + BN."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        mid = spec.mid_channels
        self.inverted_bottleneck = (
            ConvBNAct(spec.in_channels, mid, 1, act=spec.act) if spec.has_expand_conv else None
        )
        self.depth_conv = ConvBNAct(mid, mid, spec.kernel, spec.stride, groups=mid, act=spec.act)
        self.se = SqueezeExcite(mid, spec.se_channels) if spec.use_se else None
        self.point_linear = ConvBNAct(mid, spec.out_channels, 1, act=None)
        self.residual = spec.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.inverted_bottleneck is None else self.inverted_bottleneck(x)
        y = self.depth_conv(y)
        if self.se is not None:
            y = self.se(y)
        y = self.point_linear(y)
        return x + y if self.residual else y


class Head(nn.Module):
    """Final 1x1 expand + BN + h-swish, global pool, 1x1 feature mix (no BN, no bias) + h-swish, classifier."""

    def __init__(self, in_ch: int, expand_ch: int, mix_ch: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.final_expand = ConvBNAct(in_ch, expand_ch, 1, act="h_swish")
        self.pool = nn.AdaptiveAvgPool2d(1)  # exports as ONNX GlobalAveragePool
        self.feature_mix = nn.Conv2d(expand_ch, mix_ch, 1, bias=False)
        self.act = nn.Hardswish()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(mix_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.feature_mix(self.pool(self.final_expand(x))))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


class MobileNetV3(nn.Module):
    """A concrete (static) OFA MobileNetV3 network: what ``build`` and ``extract`` both return."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = ConvBNAct(spec.in_channels, spec.stem_channels, 3, 2, act="h_swish")
        self.blocks = nn.Sequential(*(MBConv(b) for b in spec.blocks))
        last = spec.blocks[-1].out_channels if spec.blocks else spec.stem_channels
        self.head = Head(last, spec.final_expand_channels, spec.feature_mix_channels, spec.num_classes, spec.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def init_weights(model: nn.Module) -> None:
    """OFA's ``he_fout`` initialisation: conv N(0, 2/(k*k*out)), zero biases, BN (1, 0), linear U(+-1/sqrt(in))."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, DynamicConv2d, DynamicDepthwiseConv2d)):
            out_ch, _, kh, kw = m.weight.shape
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (kh * kw * out_ch)))
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, DynamicSE):
            for w in (m.reduce_weight, m.expand_weight):
                nn.init.normal_(w, 0.0, math.sqrt(2.0 / w.shape[0]))
            nn.init.zeros_(m.reduce_bias)
            nn.init.zeros_(m.expand_bias)
    # Residual blocks start as identities (last BN scale 0, as OFA's zero_last_gamma): without it the
    # small supernet underfits (val 89% vs 97% for the largest subnet on the embedded digits).
    for m in model.modules():
        if isinstance(m, DynamicMBConv) and m.residual:
            nn.init.zeros_(m.project_bn.weight)
        elif isinstance(m, MBConv) and m.residual:
            nn.init.zeros_(m.point_linear.bn.weight)


# --------------------------------------------------------------------------------------------- dynamic layers
class DynamicConv2d(nn.Module):
    """A 1x1 conv stored at its largest size; runs with the first ``out`` filters on the input's channels."""

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in, 1, 1))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def active_weight(self, out_channels: int, in_channels: int) -> torch.Tensor:
        return self.weight[:out_channels, :in_channels]

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        return F.conv2d(x, self.active_weight(out_channels, x.shape[1]))


class DynamicDepthwiseConv2d(nn.Module):
    """Depthwise conv with elastic kernel size and OFA's kernel transformation.

    The weight is stored at the largest kernel. A smaller kernel is the centre of the next-larger (already
    transformed) kernel, flattened and multiplied by a learned ``k^2 x k^2`` matrix (initialised to the
    identity), so small kernels are not forced to equal the centre of the big one.
    """

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int) -> None:
        super().__init__()
        self.kernel_sizes = tuple(sorted(set(kernel_sizes)))
        self.max_kernel = self.kernel_sizes[-1]
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        # One matrix per consecutive pair, e.g. "7to5" (25x25) and "5to3" (9x9).
        self.kernel_transform = nn.ParameterDict(
            {
                f"{big}to{small}": nn.Parameter(torch.eye(small * small))
                for small, big in zip(self.kernel_sizes[:-1], self.kernel_sizes[1:])
            }
        )

    def active_filter(self, channels: int, kernel: int) -> torch.Tensor:
        """The ``(channels, 1, kernel, kernel)`` filter of the active sub-layer (differentiable)."""
        weight = self.weight[:channels]
        size = self.max_kernel
        for small in reversed(self.kernel_sizes[:-1]):
            if small < kernel:
                break
            start = (size - small) // 2
            centre = weight[:, :, start : start + small, start : start + small].reshape(channels, small * small)
            weight = F.linear(centre, self.kernel_transform[f"{size}to{small}"]).view(channels, 1, small, small)
            size = small
        return weight

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        channels = x.shape[1]
        return F.conv2d(x, self.active_filter(channels, kernel), None, self.stride, kernel // 2, 1, channels)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first ``C`` channels of its input: slices affine weights *and* running statistics.

    In training mode the running statistics of the active slice are updated in place (as OFA does).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels == self.num_features:
            return super().forward(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            None if self.running_mean is None else self.running_mean[:channels],
            None if self.running_var is None else self.running_var[:channels],
            self.weight[:channels],
            self.bias[:channels],
            use_batch_stats,
            momentum,
            self.eps,
        )


class DynamicSE(nn.Module):
    """Squeeze-and-excitation whose channels follow the input and whose middle width is given per call."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        max_mid = make_divisible(max_channels // SE_REDUCTION)
        self.reduce_weight = nn.Parameter(torch.empty(max_mid, max_channels, 1, 1))
        self.reduce_bias = nn.Parameter(torch.zeros(max_mid))
        self.expand_weight = nn.Parameter(torch.empty(max_channels, max_mid, 1, 1))
        self.expand_bias = nn.Parameter(torch.zeros(max_channels))
        nn.init.kaiming_normal_(self.reduce_weight, mode="fan_out")
        nn.init.kaiming_normal_(self.expand_weight, mode="fan_out")

    def forward(self, x: torch.Tensor, mid: int) -> torch.Tensor:
        channels = x.shape[1]
        y = F.adaptive_avg_pool2d(x, 1)
        y = F.relu(F.conv2d(y, self.reduce_weight[:mid, :channels], self.reduce_bias[:mid]), inplace=True)
        y = F.conv2d(y, self.expand_weight[:channels, :mid], self.expand_bias[:channels])
        return x * F.hardsigmoid(y)


class DynamicMBConv(nn.Module):
    """MBConv with elastic kernel and expand ratio; input and output channels are fixed per block.

    ``set_active(kernel, expand)`` stores the choice (and the derived widths, so ``forward`` does no channel
    arithmetic); ``copy_to`` writes the active weights into a static :class:`MBConv`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: tuple[int, ...],
        expand_ratios: tuple[float, ...],
        stride: int,
        act: str,
        use_se: bool,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.act_name, self.use_se = act, use_se
        self.kernel_sizes, self.expand_ratios = tuple(kernel_sizes), tuple(expand_ratios)
        max_mid = max(self._spec(max(kernel_sizes), e).mid_channels for e in expand_ratios)
        needs_expand = any(e != 1 for e in expand_ratios)
        self.expand_conv = DynamicConv2d(in_channels, max_mid) if needs_expand else None
        self.expand_bn = DynamicBatchNorm2d(max_mid) if needs_expand else None
        self.depth_conv = DynamicDepthwiseConv2d(max_mid, kernel_sizes, stride)
        self.depth_bn = DynamicBatchNorm2d(max_mid)
        self.se = DynamicSE(max_mid) if use_se else None
        self.project_conv = DynamicConv2d(max_mid, out_channels)
        self.project_bn = nn.BatchNorm2d(out_channels)
        self.act = make_act(act)
        self.residual = stride == 1 and in_channels == out_channels
        self.set_active(max(kernel_sizes), max(expand_ratios))

    def _spec(self, kernel: int, expand: float) -> BlockSpec:
        return BlockSpec(
            self.in_channels, self.out_channels, kernel, self.stride, expand, self.act_name, self.use_se
        )

    def set_active(self, kernel: int, expand: float) -> None:
        self.active_spec = self._spec(kernel, expand)
        self.active_kernel = kernel
        self.active_mid = self.active_spec.mid_channels
        self.active_se_mid = self.active_spec.se_channels
        self.use_expand_conv = self.active_spec.has_expand_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.use_expand_conv:
            y = self.act(self.expand_bn(self.expand_conv(y, self.active_mid)))
        y = self.act(self.depth_bn(self.depth_conv(y, self.active_kernel)))
        if self.se is not None:
            y = self.se(y, self.active_se_mid)
        y = self.project_bn(self.project_conv(y, self.out_channels))
        return x + y if self.residual else y

    @torch.no_grad()
    def copy_to(self, block: MBConv) -> None:
        """Copy the active sub-block's weights and BN statistics into ``block`` (built from ``active_spec``)."""
        if block.spec != self.active_spec:
            raise ValueError(f"block spec {block.spec} does not match the active spec {self.active_spec}")
        mid, se_mid = self.active_mid, self.active_se_mid
        if block.inverted_bottleneck is not None:
            block.inverted_bottleneck.conv.weight.copy_(self.expand_conv.active_weight(mid, self.in_channels))
            _copy_bn(block.inverted_bottleneck.bn, self.expand_bn)
        block.depth_conv.conv.weight.copy_(self.depth_conv.active_filter(mid, self.active_kernel))
        _copy_bn(block.depth_conv.bn, self.depth_bn)
        if block.se is not None:
            block.se.reduce.weight.copy_(self.se.reduce_weight[:se_mid, :mid])
            block.se.reduce.bias.copy_(self.se.reduce_bias[:se_mid])
            block.se.expand.weight.copy_(self.se.expand_weight[:mid, :se_mid])
            block.se.expand.bias.copy_(self.se.expand_bias[:mid])
        block.point_linear.conv.weight.copy_(self.project_conv.active_weight(self.out_channels, mid))
        _copy_bn(block.point_linear.bn, self.project_bn)


def _copy_bn(target: nn.BatchNorm2d, source: nn.BatchNorm2d) -> None:
    """Copy the first ``target.num_features`` channels of ``source`` (affine and running statistics)."""
    n = target.num_features
    target.weight.copy_(source.weight[:n])
    target.bias.copy_(source.bias[:n])
    target.running_mean.copy_(source.running_mean[:n])
    target.running_var.copy_(source.running_var[:n])
    target.num_batches_tracked.copy_(source.num_batches_tracked)
    target.momentum, target.eps = source.momentum, source.eps
