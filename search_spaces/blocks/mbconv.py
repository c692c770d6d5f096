"""MBConv blocks (MobileNetV2 inverted residual, MobileNetV3 with SE / h-swish) and the OFA MobileNetV3 network.

Static :class:`MBConv` (what ``build`` and ``extract`` return) and dynamic :class:`DynamicMBConv` (elastic
kernel, expand ratio and, optionally, SE on/off; the weights of the largest block, sliced). The channel
rules follow OFA exactly (middle channels ``make_divisible(round(in * expand), 8)``, SE channels
``make_divisible(mid // 4, 8)``) unless a :class:`BlockSpec` gives its middle width (torchvision's and
timm's plans compute it from the width-1 channels: :mod:`search_spaces.layerwise`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from search_spaces.blocks.layers import (
    SE_REDUCTION,
    ConvBNAct,
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicDepthwiseConv2d,
    DynamicSE,
    SqueezeExcite,
    copy_bn,
    make_act,
    make_divisible,
)


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
    #: Middle width when the plan computes it (torchvision / timm: from the width-1 channels); None: OFA's rule.
    mid: int | None = None

    @property
    def has_expand_conv(self) -> bool:
        # OFA's static MBConvLayer drops the 1x1 expansion exactly when the ratio is 1.
        return self.expand != 1

    @property
    def mid_channels(self) -> int:
        if not self.has_expand_conv:
            return self.in_channels
        if self.mid is not None:
            return self.mid
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

    def zero_init_bn(self) -> nn.BatchNorm2d | None:
        return self.point_linear.bn if self.residual else None


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
        *,
        mid_of: Callable[[float], int] | None = None,
    ) -> None:
        """``use_se``: whether the block has SE weights (``set_active(..., se=False)`` then runs it without);
        ``mid_of``: the middle width of an expand ratio (default: OFA's rule, see :class:`BlockSpec`)."""
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.act_name, self.use_se, self.mid_of = act, use_se, mid_of
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

    def _spec(self, kernel: int, expand: float, se: bool | None = None) -> BlockSpec:
        mid = self.mid_of(expand) if self.mid_of is not None and expand != 1 else None
        return BlockSpec(self.in_channels, self.out_channels, kernel, self.stride, expand, self.act_name,
                         self.use_se if se is None else se, mid)

    def set_active(self, kernel: int, expand: float, se: bool | None = None) -> None:
        """Run the sub-block with this kernel and expand ratio (and SE on or off, when it has SE weights)."""
        if se and self.se is None:
            raise ValueError("this block has no SE weights; build it with use_se=True to run it with SE")
        self.active_spec = self._spec(kernel, expand, se)
        self.active_kernel = kernel
        self.active_mid = self.active_spec.mid_channels
        self.active_se_mid = self.active_spec.se_channels
        self.use_expand_conv = self.active_spec.has_expand_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.use_expand_conv:
            y = self.act(self.expand_bn(self.expand_conv(y, self.active_mid)))
        y = self.act(self.depth_bn(self.depth_conv(y, self.active_kernel)))
        if self.active_spec.use_se:
            y = self.se(y, self.active_se_mid)
        y = self.project_bn(self.project_conv(y, self.out_channels))
        return x + y if self.residual else y

    def zero_init_bn(self) -> nn.BatchNorm2d | None:
        return self.project_bn if self.residual else None

    @torch.no_grad()
    def copy_to(self, block: MBConv) -> None:
        """Copy the active sub-block's weights and BN statistics into ``block`` (built from ``active_spec``)."""
        if block.spec != self.active_spec:
            raise ValueError(f"block spec {block.spec} does not match the active spec {self.active_spec}")
        mid, se_mid = self.active_mid, self.active_se_mid
        if block.inverted_bottleneck is not None:
            block.inverted_bottleneck.conv.weight.copy_(self.expand_conv.active_weight(mid, self.in_channels))
            copy_bn(block.inverted_bottleneck.bn, self.expand_bn)
        block.depth_conv.conv.weight.copy_(self.depth_conv.active_filter(mid, self.active_kernel))
        copy_bn(block.depth_conv.bn, self.depth_bn)
        if block.se is not None:
            block.se.reduce.weight.copy_(self.se.reduce_weight[:se_mid, :mid])
            block.se.reduce.bias.copy_(self.se.reduce_bias[:se_mid])
            block.se.expand.weight.copy_(self.se.expand_weight[:mid, :se_mid])
            block.se.expand.bias.copy_(self.se.expand_bias[:mid])
        block.point_linear.conv.weight.copy_(self.project_conv.active_weight(self.out_channels, mid))
        copy_bn(block.point_linear.bn, self.project_bn)


