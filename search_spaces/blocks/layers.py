"""Layers every block family is made of, static and dynamic.

* static layers (:class:`ConvBNAct`, :class:`SqueezeExcite`, :class:`ChannelShuffle`): plain ``nn`` modules,
  what ``build`` and ``Supernet.extract`` return, exportable to ONNX;
* dynamic layers (:class:`DynamicConv2d`, :class:`DynamicDepthwiseConv2d`, :class:`DynamicBatchNorm2d`,
  :class:`DynamicSE`): hold the weights of the largest layer and run any smaller one by slicing, as in
  OFA's ``dynamic_op.py``.

Channel rounding follows OFA / TF-slim (:func:`make_divisible`), so parameter counts match the reference
implementations (torchvision, timm, OFA) exactly.
"""

from __future__ import annotations

import math

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
    """The activation module for the names plans use (relu, relu6, h_swish); ``nn.Hardswish`` keeps the ONNX graph to one standard op."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "h_swish":
        return nn.Hardswish()
    if name is None:
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; expected 'relu', 'relu6', 'h_swish' or None")




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



class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: channels regrouped so the next layer mixes the ``groups`` halves."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


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

    def __init__(self, max_channels: int, max_mid: int | None = None) -> None:
        super().__init__()
        max_mid = make_divisible(max_channels // SE_REDUCTION) if max_mid is None else max_mid
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



def init_weights(model: nn.Module) -> None:
    """OFA's ``he_fout`` initialisation: conv N(0, 2/(k*k*out)), zero biases, BN (1, 0), linear U(+-1/sqrt(in)).

    A block whose output is added to its input names its last BatchNorm (``zero_init_bn()``); that scale starts
    at 0, so the block starts as an identity (OFA's zero_last_gamma): without it the small OFA supernet
    underfits (val 89% vs 97% for the largest subnet on the embedded digits).
    """
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
    for m in model.modules():
        zero_init_bn = getattr(m, "zero_init_bn", None)
        bn = zero_init_bn() if callable(zero_init_bn) else None
        if bn is not None:
            nn.init.zeros_(bn.weight)
        identity_init = getattr(m, "identity_init", None)  # layers that must start as identities (shuffle.py)
        if callable(identity_init):
            identity_init()


def copy_bn(target: nn.BatchNorm2d, source: nn.BatchNorm2d) -> None:
    """Copy the first ``target.num_features`` channels of ``source`` (affine and running statistics)."""
    n = target.num_features
    target.weight.copy_(source.weight[:n])
    target.bias.copy_(source.bias[:n])
    target.running_mean.copy_(source.running_mean[:n])
    target.running_var.copy_(source.running_var[:n])
    target.num_batches_tracked.copy_(source.num_batches_tracked)
    target.momentum, target.eps = source.momentum, source.eps

