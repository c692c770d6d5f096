"""The ``ghostnet`` space: GhostNet's macro plan (Han et al., CVPR 2020) with per-layer Ghost bottleneck choices.

16 bottlenecks after a 16-channel stride-2 stem, as timm's ``ghostnet``; each picks its expansion, its
depthwise kernel (3 or 5; only where the layer has a strided depthwise conv or a projecting shortcut) and SE
on / off: ``ghost_k5_e6_se``, ``ghost_e2.5`` ... ``width_mult`` scales channels with timm's rounding
(``make_divisible(c * width, 4)``; middle widths from the width-1 input channels, SE widths
``make_divisible(mid / 4, 4)``). The head is timm's: 1x1 conv to 960 x width, global pool, 1x1 conv with bias
to 1280 (a linear layer on the pooled vector), ReLU, dropout, classifier.

The defaults suit the embedded 28 x 28 digits; the ``ghostnet_050`` / ``ghostnet_100`` / ``ghostnet_130``
presets are timm's networks of those names, parameter for parameter.
"""

from __future__ import annotations

from collections.abc import Iterable

from nas.registry import register_space
from search_spaces.blocks import make_divisible
from search_spaces.blocks.ghost import has_kernel_choice
from search_spaces.layerwise import (
    GhostFamily,
    HeadPlan,
    Layer,
    LayerwiseSpace,
    Plan,
    Preset,
    register_preset,
)
from search_spaces.options import boolean, dropout_rate, number_list, positive_int, positive_number

# timm's ghostnet table: (kernel, expanded channels, out channels, SE, stride), width 1.
_TABLE = (
    (3, 16, 16, False, 1), (3, 48, 24, False, 2), (3, 72, 24, False, 1), (5, 72, 40, True, 2),
    (5, 120, 40, True, 1), (3, 240, 80, False, 2), (3, 200, 80, False, 1), (3, 184, 80, False, 1),
    (3, 184, 80, False, 1), (3, 480, 112, True, 1), (3, 672, 112, True, 1), (5, 672, 160, True, 2),
    (5, 960, 160, False, 1), (5, 960, 160, True, 1), (5, 960, 160, False, 1), (5, 960, 160, True, 1),
)
_DIVISOR = 4


def _plan(width: float, dropout: float) -> Plan:
    def ch(c: float) -> int:
        return make_divisible(c * width, _DIVISOR)

    layers, c_in, base = [], ch(16), 16
    for _k, _exp, c, _se, s in _TABLE:
        layers.append(Layer(c_in, ch(c), s, "relu", base))
        c_in, base = ch(c), c
    return Plan(ch(16), "relu", tuple(layers), HeadPlan(ch(960), "relu", 1280, "relu", dropout))


@register_space("ghostnet")
class GhostNetSpace(LayerwiseSpace):
    """GhostNet's 16 bottlenecks, each with its expansion, kernel (where it matters) and SE choice."""

    name = "ghostnet"

    def __init__(
        self,
        *,
        width_mult: float = 0.5,
        resolution: int = 28,
        num_classes: int = 10,
        in_channels: int = 1,
        kernel_sizes: Iterable[int] = (3, 5),
        expand_ratios: Iterable[float] = (1, 2.3, 2.5, 3, 6),
        se: bool = True,
        dropout: float = 0.2,
    ) -> None:
        width = positive_number(self.name, "width_mult", width_mult, maximum=4.0)
        kernels = number_list(self.name, "kernel_sizes", kernel_sizes, integer=True, allowed=(3, 5, 7))
        expands = number_list(self.name, "expand_ratios", expand_ratios, integer=False)
        se = boolean(self.name, "se", se)
        dropout = dropout_rate(self.name, dropout)

        def mid_of(layer: Layer, expand: float) -> int:
            return make_divisible(layer.base_in * expand * width, _DIVISOR)

        def se_of(mid: int) -> int:
            return make_divisible(mid * 0.25, _DIVISOR)

        family = GhostFamily(kernel_sizes=kernels, expand_ratios=expands, se=se, mid_of=mid_of, se_of=se_of)
        config = {"width_mult": width, "resolution": resolution, "num_classes": num_classes,
                  "in_channels": in_channels, "kernel_sizes": list(kernels), "expand_ratios": list(expands),
                  "se": se, "dropout": dropout}
        self._setup(plan=_plan(width, dropout), families=[family],
                    in_channels=positive_int(self.name, "in_channels", in_channels),
                    num_classes=positive_int(self.name, "num_classes", num_classes),
                    resolution=positive_int(self.name, "resolution", resolution), config=config)


def _preset(name: str, width: float, params: int) -> Preset:
    ops, c_in = [], 16
    for k, exp, c, se, s in _TABLE:
        e = round(exp / c_in, 2)
        kernel = f"_k{k}" if has_kernel_choice(c_in, c, s) else ""
        ops.append(f"ghost{kernel}_e{e:g}{'_se' if se else ''}")
        c_in = c
    config = {"width_mult": width, "resolution": 224, "num_classes": 1000, "in_channels": 3}
    return Preset(name, "ghostnet", config, tuple(ops), f"timm ghostnet ({name})", params)


register_preset(_preset("ghostnet_050", 0.5, 2_587_292))
register_preset(_preset("ghostnet_100", 1.0, 5_182_508))
register_preset(_preset("ghostnet_130", 1.3, 7_358_820))
