"""GhostNet's ghost module and Ghost bottleneck (Han et al., CVPR 2020), with timm's ``ghostnet`` arithmetic.

A ghost module makes ``out`` channels cheaply: a 1x1 "primary" conv makes ``ceil(out / 2)`` of them, a 3x3
depthwise "cheap" op makes as many again from those, and the two are concatenated (and cut to ``out``).

A Ghost bottleneck is ``ghost module (ReLU) -> [depthwise k x k, stride 2] -> [SE] -> ghost module (linear)``
plus a shortcut: the identity when the shape is kept, otherwise ``depthwise k x k (stride) -> 1x1``. So the
kernel size only matters where there is a strided depthwise or a projecting shortcut; the spaces offer no
kernel choice elsewhere (two names for one network would break equal-ids-for-equal-networks).

In the supernet (:class:`DynamicGhostBottleneck`) the expansions share one set of weights (the first
channels of the widest), the kernels share OFA-style transformed depthwise filters, and SE on / off shares the
SE weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.blocks.layers import (
    ConvBNAct,
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicDepthwiseConv2d,
    DynamicSE,
    SqueezeExcite,
    copy_bn,
)


class GhostModule(nn.Module):
    """``out_channels`` from a 1x1 primary conv and a 3x3 depthwise cheap op on its output (ratio 2)."""

    def __init__(self, in_channels: int, out_channels: int, *, relu: bool) -> None:
        super().__init__()
        init = math.ceil(out_channels / 2)
        act = "relu" if relu else None
        self.out_channels = out_channels
        self.cut = 2 * init != out_channels  # a plain attribute, so the traced graph has no data-dependent branch
        self.primary = ConvBNAct(in_channels, init, 1, act=act)
        self.cheap = ConvBNAct(init, init, 3, groups=init, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        out = torch.cat([y, self.cheap(y)], dim=1)
        return out[:, : self.out_channels] if self.cut else out


class GhostBottleneck(nn.Module):
    """A static Ghost bottleneck; ``se_channels`` is the SE reduction width, or None for no SE."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel: int, stride: int,
                 se_channels: int | None) -> None:
        super().__init__()
        self.in_channels, self.mid_channels, self.out_channels = in_channels, mid_channels, out_channels
        self.kernel, self.stride = kernel, stride
        self.ghost1 = GhostModule(in_channels, mid_channels, relu=True)
        self.conv_dw = ConvBNAct(mid_channels, mid_channels, kernel, stride, groups=mid_channels) if stride > 1 else None
        self.se = SqueezeExcite(mid_channels, se_channels) if se_channels else None
        self.ghost2 = GhostModule(mid_channels, out_channels, relu=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(ConvBNAct(in_channels, in_channels, kernel, stride, groups=in_channels),
                                          ConvBNAct(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost1(x)
        if self.conv_dw is not None:
            y = self.conv_dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.ghost2(y)
        return y + (x if self.shortcut is None else self.shortcut(x))


def has_kernel_choice(in_channels: int, out_channels: int, stride: int) -> bool:
    """Whether a Ghost bottleneck of this shape has a depthwise conv whose kernel size matters."""
    return stride != 1 or in_channels != out_channels


class DynamicGhostBottleneck(nn.Module):
    """A Ghost bottleneck of the supernet with elastic expansion, kernel size and SE on / off.

    ``mids`` maps each expand ratio to its middle width, ``se_of`` a middle width to its SE reduction width.
    ``set_active(kernel, expand, se)`` selects the variant; ``copy_to(block)`` writes it into a static
    :class:`GhostBottleneck` built for it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel_sizes: Sequence[int],
                 mids: Mapping[float, int], *, se: bool, se_of: Callable[[int], int]) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.kernel_sizes, self.mids, self.se_of = tuple(sorted(kernel_sizes)), dict(mids), se_of
        max_mid = max(self.mids.values())
        max_init = math.ceil(max_mid / 2)
        self.g1_primary = DynamicConv2d(in_channels, max_init)
        self.g1_primary_bn = DynamicBatchNorm2d(max_init)
        self.g1_cheap = nn.Parameter(torch.empty(max_init, 1, 3, 3))
        nn.init.kaiming_normal_(self.g1_cheap, mode="fan_out")
        self.g1_cheap_bn = DynamicBatchNorm2d(max_init)
        self.conv_dw = DynamicDepthwiseConv2d(max_mid, self.kernel_sizes, stride) if stride > 1 else None
        self.conv_dw_bn = DynamicBatchNorm2d(max_mid) if stride > 1 else None
        self.se = DynamicSE(max_mid, se_of(max_mid)) if se else None
        out_init = math.ceil(out_channels / 2)
        self.g2_primary = DynamicConv2d(max_mid, out_init)
        self.g2_primary_bn = nn.BatchNorm2d(out_init)
        self.g2_cheap = ConvBNAct(out_init, out_init, 3, groups=out_init)
        self.shortcut_dw = self.shortcut_dw_bn = self.shortcut_pw = None
        if has_kernel_choice(in_channels, out_channels, stride):
            self.shortcut_dw = DynamicDepthwiseConv2d(in_channels, self.kernel_sizes, stride)
            self.shortcut_dw_bn = nn.BatchNorm2d(in_channels)
            self.shortcut_pw = ConvBNAct(in_channels, out_channels, 1)
        self.set_active(self.kernel_sizes[-1], max(self.mids), se)

    def set_active(self, kernel: int, expand: float, se: bool) -> None:
        if se and self.se is None:
            raise ValueError("this block has no SE weights; build it with se=True to run it with SE")
        self.active_kernel, self.active_se = kernel, bool(se)
        self.active_mid = self.mids[expand]
        self.active_init = math.ceil(self.active_mid / 2)
        self.active_se_mid = self.se_of(self.active_mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid, init, k = self.active_mid, self.active_init, self.active_kernel
        y = F.relu(self.g1_primary_bn(self.g1_primary(x, init)))
        z = F.relu(self.g1_cheap_bn(F.conv2d(y, self.g1_cheap[:init], None, 1, 1, 1, init)))
        y = torch.cat([y, z], dim=1)[:, :mid]
        if self.conv_dw is not None:
            y = self.conv_dw_bn(self.conv_dw(y, k))
        if self.active_se:
            y = self.se(y, self.active_se_mid)
        y = self.g2_primary_bn(self.g2_primary(y, self.g2_primary_bn.num_features))
        y = torch.cat([y, self.g2_cheap(y)], dim=1)[:, : self.out_channels]
        if self.shortcut_dw is None:
            return y + x
        return y + self.shortcut_pw(self.shortcut_dw_bn(self.shortcut_dw(x, k)))

    @torch.no_grad()
    def copy_to(self, block: GhostBottleneck) -> None:
        """Copy the active variant's weights and BatchNorm statistics into ``block`` (built for that variant)."""
        mid, init, k = self.active_mid, self.active_init, self.active_kernel
        if block.mid_channels != mid or (block.se is not None) != self.active_se:
            raise ValueError(f"static block (mid {block.mid_channels}, SE {block.se is not None}) does not match "
                             f"the active variant (mid {mid}, SE {self.active_se})")
        block.ghost1.primary.conv.weight.copy_(self.g1_primary.active_weight(init, self.in_channels))
        copy_bn(block.ghost1.primary.bn, self.g1_primary_bn)
        block.ghost1.cheap.conv.weight.copy_(self.g1_cheap[:init])
        copy_bn(block.ghost1.cheap.bn, self.g1_cheap_bn)
        if block.conv_dw is not None:
            block.conv_dw.conv.weight.copy_(self.conv_dw.active_filter(mid, k))
            copy_bn(block.conv_dw.bn, self.conv_dw_bn)
        if block.se is not None:
            se_mid = self.active_se_mid
            block.se.reduce.weight.copy_(self.se.reduce_weight[:se_mid, :mid])
            block.se.reduce.bias.copy_(self.se.reduce_bias[:se_mid])
            block.se.expand.weight.copy_(self.se.expand_weight[:mid, :se_mid])
            block.se.expand.bias.copy_(self.se.expand_bias[:mid])
        out_init = self.g2_primary_bn.num_features
        block.ghost2.primary.conv.weight.copy_(self.g2_primary.active_weight(out_init, mid))
        copy_bn(block.ghost2.primary.bn, self.g2_primary_bn)
        block.ghost2.cheap.load_state_dict(self.g2_cheap.state_dict())
        if block.shortcut is not None:
            block.shortcut[0].conv.weight.copy_(self.shortcut_dw.active_filter(self.in_channels, k))
            copy_bn(block.shortcut[0].bn, self.shortcut_dw_bn)
            block.shortcut[1].load_state_dict(self.shortcut_pw.state_dict())
