"""ShuffleNetV2 units (Ma et al., ECCV 2018) with the Single-Path One-Shot choices (Guo et al., ECCV 2020).

Channel arithmetic is torchvision's ``InvertedResidual`` of ``shufflenet_v2_*``: each of the two branches
writes ``out // 2`` channels, the results are concatenated and channel-shuffled in 2 groups.

- stride 1 (input channels == output channels): the input is split in two halves; the first passes through,
  the second goes through the main branch;
- stride 2 (downsampling): the whole input feeds both the projection branch (depthwise k x k, stride 2, then
  1x1 + ReLU) and the main branch.

The main branch is ``1x1 + ReLU, depthwise k x k (stride), 1x1 + ReLU`` for ``variant`` ``k3`` / ``k5`` /
``k7``, or SPOS's Xception-like ``(depthwise 3x3, 1x1 + ReLU) x 3`` (the first depthwise carries the stride)
for ``variant="xception"``, whose projection branch uses a 3x3 depthwise (the stride on its second depthwise,
where the kernel variants have theirs; SPOS strides the first).

In the supernet (:class:`DynamicShuffleUnit`) all variants share one set of weights: the smaller kernels are
OFA-style transformed centres of the 7x7 (:class:`~search_spaces.blocks.layers.DynamicDepthwiseConv2d`), and the
Xception variant is built around the kernel-3 variant's layers (see the class for why).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from search_spaces.blocks.layers import ChannelShuffle, ConvBNAct, DynamicDepthwiseConv2d, copy_bn

XCEPTION = "xception"


def check_unit_shape(in_channels: int, out_channels: int, stride: int) -> str | None:
    """Why a ShuffleNetV2 unit cannot map ``in_channels`` to ``out_channels`` at ``stride`` (None if it can)."""
    if out_channels % 2:
        return f"a ShuffleNetV2 unit needs an even number of output channels, got {out_channels}"
    if stride == 1 and in_channels != out_channels:
        return (f"a stride-1 ShuffleNetV2 unit splits its input in two halves, so it needs as many input as output "
                f"channels ({in_channels} -> {out_channels} here)")
    return None


def _main_branch(in_channels: int, branch: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        ConvBNAct(in_channels, branch, 1, act="relu"),
        ConvBNAct(branch, branch, kernel, stride, groups=branch),
        ConvBNAct(branch, branch, 1, act="relu"),
    )


def _xception_branch(in_channels: int, branch: int, stride: int) -> nn.Sequential:
    # The stride is on the second depthwise, where the kernel variants have theirs (SPOS strides the first): the
    # supernet's Xception variant is built around the kernel-3 variant's layers (DynamicShuffleUnit).
    return nn.Sequential(
        ConvBNAct(in_channels, in_channels, 3, 1, groups=in_channels),
        ConvBNAct(in_channels, branch, 1, act="relu"),
        ConvBNAct(branch, branch, 3, stride, groups=branch),
        ConvBNAct(branch, branch, 1, act="relu"),
        ConvBNAct(branch, branch, 3, 1, groups=branch),
        ConvBNAct(branch, branch, 1, act="relu"),
    )


class ShuffleUnit(nn.Module):
    """A static ShuffleNetV2 unit; ``variant`` is ``"k3"``, ``"k5"``, ``"k7"`` or ``"xception"``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, variant: str) -> None:
        super().__init__()
        problem = check_unit_shape(in_channels, out_channels, stride)
        if problem:
            raise ValueError(problem)
        self.in_channels, self.out_channels, self.stride, self.variant = in_channels, out_channels, stride, variant
        branch = out_channels // 2
        main_in = in_channels if stride > 1 else branch
        kernel = 3 if variant == XCEPTION else int(variant[1:])
        self.proj = None
        if stride > 1:
            self.proj = nn.Sequential(ConvBNAct(in_channels, in_channels, kernel, stride, groups=in_channels),
                                      ConvBNAct(in_channels, branch, 1, act="relu"))
        self.main = (_xception_branch(main_in, branch, stride) if variant == XCEPTION
                     else _main_branch(main_in, branch, kernel, stride))
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is None:
            # split with a constant size, not chunk: the ONNX exporter writes chunk as Shape / Gather / Div / Slice
            # arithmetic on the runtime shape, split as one Split node
            keep, x = x.split(self.in_channels // 2, dim=1)
        else:
            keep = self.proj(x)
        return self.shuffle(torch.cat([keep, self.main(x)], dim=1))


class _DynamicDepthwiseBN(nn.Module):
    """An elastic-kernel depthwise conv + BatchNorm (no activation), copied into a static ``ConvBNAct``."""

    def __init__(self, channels: int, kernel_sizes: Sequence[int], stride: int) -> None:
        super().__init__()
        self.conv = DynamicDepthwiseConv2d(channels, tuple(kernel_sizes), stride)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        return self.bn(self.conv(x, kernel))

    @torch.no_grad()
    def copy_to(self, layer: ConvBNAct, kernel: int) -> None:
        layer.conv.weight.copy_(self.conv.active_filter(layer.conv.in_channels, kernel))
        copy_bn(layer.bn, self.bn)


class DynamicShuffleUnit(nn.Module):
    """A ShuffleNetV2 unit of the supernet in which every variant shares weights.

    The kernel variants are one set of weights (smaller kernels are OFA-style transformed centres of the
    largest). The Xception variant reuses them too: its projection branch is the 3x3 projection, and the middle
    of its main branch (1x1, strided depthwise 3x3, 1x1) is the kernel variants' main branch at kernel 3; only
    its first depthwise and its last depthwise + 1x1 pair are its own, and those start as identities. Why: a ShuffleNetV2 unit has no residual, it rewrites half the channels, so variants
    with unrelated weights hand the next layers unrelated features at every step; measured on the embedded
    digits, uniform single-path training then never leaves chance accuracy (two independent copies of one
    k3 unit per layer already fail), while shared, consistent variants train.

    ``set_active(variant)`` selects the variant ``forward`` runs; ``copy_to(unit)`` writes its weights into a
    static :class:`ShuffleUnit` of that variant.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, variants: Sequence[str]) -> None:
        super().__init__()
        problem = check_unit_shape(in_channels, out_channels, stride)
        if problem:
            raise ValueError(problem)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.variants = tuple(variants)
        xception = XCEPTION in self.variants
        # The Xception variant reads the 3x3 filters of the shared depthwise weights.
        kernels = sorted({int(v[1:]) for v in self.variants if v != XCEPTION} | ({3} if xception else set()))
        branch = out_channels // 2
        main_in = in_channels if stride > 1 else branch
        self.kernel_sizes = tuple(kernels)
        self.proj_dw = _DynamicDepthwiseBN(in_channels, kernels, stride) if stride > 1 else None
        self.proj_pw = ConvBNAct(in_channels, branch, 1, act="relu") if stride > 1 else None
        self.main_pw1 = ConvBNAct(main_in, branch, 1, act="relu")
        self.main_dw = _DynamicDepthwiseBN(branch, kernels, stride)
        self.main_pw2 = ConvBNAct(branch, branch, 1, act="relu")
        self.x_first = self.x_last_dw = self.x_last_pw = None
        if xception:
            self.x_first = ConvBNAct(main_in, main_in, 3, groups=main_in)
            self.x_last_dw = ConvBNAct(branch, branch, 3, groups=branch)
            self.x_last_pw = ConvBNAct(branch, branch, 1, act="relu")
        self.shuffle = ChannelShuffle(2)
        self.identity_init()
        self.set_active(self.variants[-1])

    @torch.no_grad()
    def identity_init(self) -> None:
        """The Xception variant's own layers as identities (centre tap 1, identity 1x1), so that it starts as
        the kernel-3 variant with extra normalisation; :func:`~search_spaces.blocks.layers.init_weights` calls it
        after its own initialisation."""
        for layer in (self.x_first, self.x_last_dw):
            if layer is not None:
                w = layer.conv.weight
                w.zero_()
                w[:, :, w.shape[2] // 2, w.shape[3] // 2] = 1.0
        if self.x_last_pw is not None:
            w = self.x_last_pw.conv.weight
            w.zero_()
            w[:, :, 0, 0] = torch.eye(w.shape[0], w.shape[1])

    def set_active(self, variant: str) -> None:
        if variant not in self.variants:
            raise ValueError(f"unit has variants {list(self.variants)}, not {variant!r}")
        self.active = variant
        self.active_kernel = None if variant == XCEPTION else int(variant[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = 3 if self.active_kernel is None else self.active_kernel
        if self.proj_dw is None:
            keep, x = x.chunk(2, dim=1)
        else:
            keep = self.proj_pw(self.proj_dw(x, k))
        if self.active_kernel is None:
            y = self.main_pw2(self.main_dw(self.main_pw1(self.x_first(x)), 3))
            y = self.x_last_pw(self.x_last_dw(y))
        else:
            y = self.main_pw2(self.main_dw(self.main_pw1(x), k))
        return self.shuffle(torch.cat([keep, y], dim=1))

    @torch.no_grad()
    def copy_to(self, unit: ShuffleUnit) -> None:
        """Copy the active variant's weights and BatchNorm statistics into ``unit`` (built for that variant)."""
        if unit.variant != self.active:
            raise ValueError(f"static unit is variant {unit.variant!r}, the active one is {self.active!r}")
        k = 3 if self.active_kernel is None else self.active_kernel
        if self.proj_dw is not None:
            self.proj_dw.copy_to(unit.proj[0], k)
            unit.proj[1].load_state_dict(self.proj_pw.state_dict())
        if self.active_kernel is None:
            unit.main[0].load_state_dict(self.x_first.state_dict())
            unit.main[1].load_state_dict(self.main_pw1.state_dict())
            self.main_dw.copy_to(unit.main[2], 3)
            unit.main[3].load_state_dict(self.main_pw2.state_dict())
            unit.main[4].load_state_dict(self.x_last_dw.state_dict())
            unit.main[5].load_state_dict(self.x_last_pw.state_dict())
            return
        unit.main[0].load_state_dict(self.main_pw1.state_dict())
        self.main_dw.copy_to(unit.main[1], k)
        unit.main[2].load_state_dict(self.main_pw2.state_dict())
