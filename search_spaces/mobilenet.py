"""The ``mobilenet`` space: layer-wise MBConv choices on a MobileNetV2 or MobileNetV3 macro plan.

Every layer of the plan picks ``mb_k{kernel}_e{expand}[_se]`` (depthwise kernel, expand ratio, squeeze-and-
excitation on or off) or ``skip`` where the layer keeps its shape. ``plan`` is torchvision's channel plan of
``mobilenet_v2`` (17 layers, ReLU6), ``mobilenet_v3_large`` (15 layers) or ``mobilenet_v3_small`` (11 layers;
ReLU / h-swish per layer as in the paper), scaled by ``width_mult`` with torchvision's rounding: channels
``make_divisible(c * width, 8)`` and middle widths ``make_divisible(width-1 input * expand * width, 8)``.

The defaults suit the embedded 28 x 28 digits; the presets (``python -m search_spaces describe --preset
mobilenet_v2``) are the ImageNet networks, parameter for parameter equal to torchvision's.
"""

from __future__ import annotations

from collections.abc import Iterable

from nas.registry import register_space
from search_spaces.blocks import make_divisible
from search_spaces.layerwise import (
    HeadPlan,
    Layer,
    LayerwiseSpace,
    MBConvFamily,
    Plan,
    Preset,
    SkipFamily,
    register_preset,
)
from search_spaces.options import boolean, dropout_rate, number_list, one_of, positive_int, positive_number

# torchvision's tables. V2: (expand t, out channels c, repeats n, first stride s).
_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# V3: (kernel, expanded channels, out channels, SE, activation, stride), width 1.
_V3_LARGE = (
    (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "h_swish", 2), (3, 200, 80, False, "h_swish", 1), (3, 184, 80, False, "h_swish", 1),
    (3, 184, 80, False, "h_swish", 1), (3, 480, 112, True, "h_swish", 1), (3, 672, 112, True, "h_swish", 1),
    (5, 672, 160, True, "h_swish", 2), (5, 960, 160, True, "h_swish", 1), (5, 960, 160, True, "h_swish", 1),
)
_V3_SMALL = (
    (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "h_swish", 2), (5, 240, 40, True, "h_swish", 1), (5, 240, 40, True, "h_swish", 1),
    (5, 120, 48, True, "h_swish", 1), (5, 144, 48, True, "h_swish", 1), (5, 288, 96, True, "h_swish", 2),
    (5, 576, 96, True, "h_swish", 1), (5, 576, 96, True, "h_swish", 1),
)
_V3_MIX = {"v3_large": 1280, "v3_small": 1024}
PLANS = ("v2", "v3_large", "v3_small")
_DEFAULT_EXPAND = (1, 3, 4, 6)


def _ratio(expanded: int, c_in: int) -> float:
    # 88 / 24 -> 3.67: make_divisible(24 * 3.67, 8) is 88 again, and the op name stays short.
    return round(expanded / c_in, 2)


def _v3_rows(plan: str) -> tuple:
    return _V3_LARGE if plan == "v3_large" else _V3_SMALL


def _plan(plan: str, width: float, dropout: float) -> Plan:
    def ch(c: float) -> int:
        return make_divisible(c * width, 8)

    layers = []
    if plan == "v2":
        c_in, base = ch(32), 32
        for _t, c, n, s in _V2:
            for r in range(n):
                layers.append(Layer(c_in, ch(c), s if r == 0 else 1, "relu6", base))
                c_in, base = ch(c), c
        head = HeadPlan(make_divisible(1280 * max(1.0, width), 8), "relu6", None, dropout=dropout)
        return Plan(ch(32), "relu6", tuple(layers), head)
    c_in, base = ch(16), 16
    for _k, _exp, c, _se, act, s in _v3_rows(plan):
        layers.append(Layer(c_in, ch(c), s, act, base))
        c_in, base = ch(c), c
    head = HeadPlan(6 * c_in, "h_swish", ch(_V3_MIX[plan]), "h_swish", dropout)
    return Plan(ch(16), "h_swish", tuple(layers), head)


@register_space("mobilenet")
class MobileNetSpace(LayerwiseSpace):
    """Layer-wise MBConv (kernel, expand ratio, SE, skip) on a MobileNetV2 / V3 macro plan."""

    name = "mobilenet"

    def __init__(
        self,
        *,
        plan: str = "v3_large",
        width_mult: float = 0.5,
        resolution: int = 28,
        num_classes: int = 10,
        in_channels: int = 1,
        kernel_sizes: Iterable[int] = (3, 5, 7),
        expand_ratios: Iterable[float] = _DEFAULT_EXPAND,
        se: bool = True,
        dropout: float = 0.2,
    ) -> None:
        plan = one_of(self.name, "plan", plan, PLANS)
        width = positive_number(self.name, "width_mult", width_mult, maximum=4.0)
        resolution = positive_int(self.name, "resolution", resolution)
        kernels = number_list(self.name, "kernel_sizes", kernel_sizes, integer=True, allowed=(1, 3, 5, 7, 9))
        expands = number_list(self.name, "expand_ratios", expand_ratios, integer=False)
        se = boolean(self.name, "se", se)
        dropout = dropout_rate(self.name, dropout)
        macro = _plan(plan, width, dropout)

        def mid_of(layer: Layer, expand: float) -> int:
            return make_divisible(layer.base_in * expand * width, 8)

        families = [SkipFamily(), MBConvFamily(kernel_sizes=kernels, expand_ratios=expands, se=se, mid_of=mid_of)]
        config = {"plan": plan, "width_mult": width, "resolution": resolution, "num_classes": num_classes,
                  "in_channels": in_channels, "kernel_sizes": list(kernels), "expand_ratios": list(expands),
                  "se": se, "dropout": dropout}
        self._setup(plan=macro, families=families, in_channels=positive_int(self.name, "in_channels", in_channels),
                    num_classes=positive_int(self.name, "num_classes", num_classes), resolution=resolution,
                    config=config)


# ---------------------------------------------------------------------------------------------- presets
_IMAGENET = {"width_mult": 1.0, "resolution": 224, "num_classes": 1000, "in_channels": 3}


def _v2_preset() -> Preset:
    ops = tuple("mb_k3_e1" if i == 0 else "mb_k3_e6" for i in range(sum(n for _t, _c, n, _s in _V2)))
    # Its ops (k3, expand 1 and 6, no SE) are among the default choices: only the plan and the sizes differ.
    return Preset("mobilenet_v2", "mobilenet", {"plan": "v2", **_IMAGENET}, ops, "torchvision.models.mobilenet_v2",
                  3_504_872)


def _v3_preset(plan: str, params: int) -> Preset:
    ops, ratios, c_in = [], set(), 16
    for k, exp, c, se, _act, _s in _v3_rows(plan):
        e = 1 if exp == c_in else _ratio(exp, c_in)
        ratios.add(e)
        ops.append(f"mb_k{k}_e{e:g}{'_se' if se else ''}")
        c_in = c
    # The paper's expansions (2.3, 2.5 / 3.67, 4.5) added to the default choices.
    config = {"plan": plan, **_IMAGENET, "expand_ratios": sorted(ratios | set(_DEFAULT_EXPAND))}
    return Preset(f"mobilenet_{plan}", "mobilenet", config, tuple(ops), f"torchvision.models.mobilenet_{plan}", params)


register_preset(_v2_preset())
register_preset(_v3_preset("v3_large", 5_483_032))
register_preset(_v3_preset("v3_small", 2_542_856))
