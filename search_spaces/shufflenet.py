"""The ``shufflenet`` space: Single-Path One-Shot's ShuffleNetV2 space (Guo et al., ECCV 2020).

Every unit of the plan picks ``shuffle_k3`` / ``shuffle_k5`` / ``shuffle_k7`` (the depthwise kernel of its
branches) or, with ``xception=True``, ``shuffle_xception`` (three stacked depthwise 3x3 + 1x1 in the main
branch). Units follow torchvision's ShuffleNetV2 channel arithmetic (:mod:`search_spaces.blocks.shuffle`).

``xception`` is off by default for a training reason, measured on the embedded digits: with it, the
single-path supernet stays far from the kernel-only one's accuracy within the default training budget (its
unit disagrees with the kernel units it shares weights with, and a ShuffleNetV2 unit has no residual to
absorb that; docs/spaces.md).

``plan``:

- ``spos`` (default): SPOS's supernet, 20 units in stages of 4 / 4 / 8 / 4 with 64 / 160 / 320 / 640 channels
  after a 16-channel stride-2 stem (no max-pool), a 1x1 conv to 1024 channels and the classifier;
- ``x0_5`` / ``x1_0`` / ``x1_5`` / ``x2_0``: torchvision's ``shufflenet_v2_x*`` plans, 16 units in stages of
  4 / 8 / 4 after a 24-channel stem and a 3x3 stride-2 max-pool (the presets of those names are the all-``k3``
  members, parameter for parameter equal to torchvision's).

``width_mult`` scales the stem, stage and last-conv channels (``make_divisible(c * width, 8)``, so every
unit keeps an even width; at width 1 the plan's own channels).
"""

from __future__ import annotations

from collections.abc import Iterable

from nas.registry import register_space
from search_spaces.blocks import make_divisible
from search_spaces.layerwise import (
    HeadPlan,
    Layer,
    LayerwiseSpace,
    Plan,
    Preset,
    ShuffleFamily,
    register_preset,
)
from search_spaces.options import boolean, number_list, one_of, positive_int, positive_number

# plan -> (stem channels, max-pool after the stem, stage repeats, stage channels, last conv channels)
PLANS = {
    "spos": (16, False, (4, 4, 8, 4), (64, 160, 320, 640), 1024),
    "x0_5": (24, True, (4, 8, 4), (48, 96, 192), 1024),
    "x1_0": (24, True, (4, 8, 4), (116, 232, 464), 1024),
    "x1_5": (24, True, (4, 8, 4), (176, 352, 704), 1024),
    "x2_0": (24, True, (4, 8, 4), (244, 488, 976), 2048),
}
_REFERENCE_PARAMS = {"x0_5": 1_366_792, "x1_0": 2_278_604, "x1_5": 3_503_624, "x2_0": 7_393_996}


def _plan(name: str, width: float) -> Plan:
    stem, pool, repeats, channels, last = PLANS[name]

    def ch(c: int) -> int:  # at width 1 the plan's own channels (torchvision's 116, 232 ... are not multiples of 8)
        return c if width == 1.0 else make_divisible(c * width, 8)

    layers, c_in = [], ch(stem)
    for c, n in zip(channels, repeats):
        for r in range(n):
            layers.append(Layer(c_in, ch(c), 2 if r == 0 else 1, "relu", c_in))
            c_in = ch(c)
    return Plan(ch(stem), "relu", tuple(layers), HeadPlan(ch(last), "relu"), stem_pool=pool)


@register_space("shufflenet")
class ShuffleNetSpace(LayerwiseSpace):
    """SPOS's ShuffleNetV2 space: per unit one of k3 / k5 / k7 / xception."""

    name = "shufflenet"

    def __init__(
        self,
        *,
        plan: str = "spos",
        width_mult: float = 0.5,
        resolution: int = 28,
        num_classes: int = 10,
        in_channels: int = 1,
        kernel_sizes: Iterable[int] = (3, 5, 7),
        xception: bool = False,
    ) -> None:
        plan = one_of(self.name, "plan", plan, PLANS)
        width = positive_number(self.name, "width_mult", width_mult, maximum=4.0)
        kernels = number_list(self.name, "kernel_sizes", kernel_sizes, integer=True, allowed=(3, 5, 7, 9))
        xception = boolean(self.name, "xception", xception)
        config = {"plan": plan, "width_mult": width, "resolution": resolution, "num_classes": num_classes,
                  "in_channels": in_channels, "kernel_sizes": list(kernels), "xception": xception}
        self._setup(plan=_plan(plan, width), families=[ShuffleFamily(kernel_sizes=kernels, xception=xception)],
                    in_channels=positive_int(self.name, "in_channels", in_channels),
                    num_classes=positive_int(self.name, "num_classes", num_classes),
                    resolution=positive_int(self.name, "resolution", resolution), config=config)


for _name, _params in _REFERENCE_PARAMS.items():
    register_preset(Preset(
        f"shufflenet_v2_{_name}", "shufflenet",
        {"plan": _name, "width_mult": 1.0, "resolution": 224, "num_classes": 1000, "in_channels": 3},
        ("shuffle_k3",) * sum(PLANS[_name][2]), f"torchvision.models.shufflenet_v2_{_name}", _params))
