"""The ``blocks`` space: every layer picks its block family too (MBConv, ShuffleNetV2 unit, Ghost bottleneck or
skip) and that family's options.

Macro plan (OFA's MobileNetV3 layout, 20 searchable layers): a 16-channel stride-2 stem, five stages of four
layers with 24 / 40 / 80 / 112 / 160 channels (first strides 2 / 2 / 2 / 1 / 2; MBConv activations ReLU in the
first two stages, h-swish after), then MobileNetV3's head (1x1 conv to 960, pool, linear to 1280, classifier),
all scaled by ``width_mult``. Ops per layer, where the shape allows them:

- ``skip`` (stride 1, equal channels only);
- ``shuffle_k3`` / ``_k5`` / ``_k7`` / ``_xception`` with ``families=[mb, shuffle, ghost]`` (stride 2, or stride 1
  with equal channels: a stride-1 unit splits its input in halves, so the stage-4 entry layer, 80 -> 112
  channels at stride 1, has none). Not among the default families: see :data:`DEFAULT_FAMILIES`;
- ``ghost[_k3|_k5]_e{3,6}[_se]`` and ``mb_k{3,5,7}_e{3,6}[_se]``.

This is the space in which "FLOPs are not latency" is sharpest: families with equal MACs launch very
different kernels (concatenations, channel shuffles, many small depthwise convs).
"""

from __future__ import annotations

from collections.abc import Iterable

from nas.registry import register_space
from search_spaces.blocks import make_divisible
from search_spaces.layerwise import (
    Family,
    GhostFamily,
    HeadPlan,
    LayerwiseSpace,
    MBConvFamily,
    Plan,
    ShuffleFamily,
    SkipFamily,
    stage_layers,
)
from search_spaces.options import boolean, number_list, one_of, positive_int, positive_number

_STAGES = ((24, 4, 2, "relu"), (40, 4, 2, "relu"), (80, 4, 2, "h_swish"), (112, 4, 1, "h_swish"),
           (160, 4, 2, "h_swish"))
FAMILIES = ("mb", "shuffle", "ghost")
#: The default families. ShuffleNetV2 units are a choice (``families=[mb, shuffle, ghost]``) but not a default:
#: measured on the embedded digits, a single-path supernet whose layers mix them with MBConv / Ghost blocks stays
#: at chance accuracy even after a full phase (a unit rewrites half its channels and reorders them, so a layer
#: that switches family scrambles every later layer's input; docs/spaces.md).
DEFAULT_FAMILIES = ("mb", "ghost")


@register_space("blocks")
class BlocksSpace(LayerwiseSpace):
    """Per layer: the block family (MBConv / ShuffleNetV2 unit / Ghost bottleneck / skip) and its options."""

    name = "blocks"

    def __init__(
        self,
        *,
        width_mult: float = 0.5,
        resolution: int = 28,
        num_classes: int = 10,
        in_channels: int = 1,
        families: Iterable[str] = DEFAULT_FAMILIES,
        kernel_sizes: Iterable[int] = (3, 5, 7),
        expand_ratios: Iterable[float] = (3, 6),
        se: bool = True,
        skip: bool = True,
    ) -> None:
        width = positive_number(self.name, "width_mult", width_mult, maximum=4.0)
        names = [one_of(self.name, "families", f, FAMILIES) for f in _as_list(families)]
        if not names or len(set(names)) != len(names):
            raise _error(f"blocks: families must list distinct names among {list(FAMILIES)}, got {names}")
        kernels = number_list(self.name, "kernel_sizes", kernel_sizes, integer=True, allowed=(3, 5, 7))
        expands = number_list(self.name, "expand_ratios", expand_ratios, integer=False)
        se, skip = boolean(self.name, "se", se), boolean(self.name, "skip", skip)

        def ch(c: float) -> int:
            return make_divisible(c * width, 8)

        layers = stage_layers(ch(16), _STAGES, width, 8, 16)
        plan = Plan(ch(16), "relu", layers, HeadPlan(ch(960), "h_swish", ch(1280), "h_swish", 0.1))
        made: dict[str, Family] = {
            "shuffle": ShuffleFamily(kernel_sizes=kernels),
            "ghost": GhostFamily(kernel_sizes=[k for k in kernels if k <= 5] or [3], expand_ratios=expands, se=se,
                                 mid_of=lambda layer, e: make_divisible(layer.base_in * e * width, 4),
                                 se_of=lambda mid: make_divisible(mid * 0.25, 4)),
            "mb": MBConvFamily(kernel_sizes=kernels, expand_ratios=expands, se=se,
                               mid_of=lambda layer, e: make_divisible(layer.base_in * e * width, 8)),
        }
        chosen = ([SkipFamily()] if skip else []) + [made[f] for f in ("shuffle", "ghost", "mb") if f in names]
        config = {"width_mult": width, "resolution": resolution, "num_classes": num_classes,
                  "in_channels": in_channels, "families": names, "kernel_sizes": list(kernels),
                  "expand_ratios": list(expands), "se": se, "skip": skip}
        self._setup(plan=plan, families=chosen, in_channels=positive_int(self.name, "in_channels", in_channels),
                    num_classes=positive_int(self.name, "num_classes", num_classes),
                    resolution=positive_int(self.name, "resolution", resolution), config=config)


def _as_list(values: object) -> list:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise _error(f"blocks: families must be a list of names among {list(FAMILIES)}, got {values!r}")
    return list(values)


def _error(message: str) -> Exception:
    from nas.errors import ConfigError

    return ConfigError(message)
