"""A slimmable supernet of a base network (``evaluator=slimmable``): every width shares the leading channels.

As in AutoSlim (Yu & Huang 2019) and universally slimmable networks (Yu & Huang, ICCV 2019): a member of the
``channels`` space runs the first ``w`` channels of every group of the one set of weights (the rest masked to
zero, :class:`~nas.channels.groups.ChannelMasks`); BatchNorm statistics are recalibrated per width when a
width is evaluated (:class:`~nas.channels.evaluators.MaskedEvaluator`). Training follows the *sandwich rule*:
every step trains the full width on the labels, and the smallest width plus ``random_widths`` random ones on the
full width's own soft predictions (*in-place distillation*), all in one backward pass.

The supernet starts from the base's trained weights (not from scratch: the base is what the search prunes),
and trains with the usual machinery (:func:`nas.oneshot.retrain.train_network`: progress, per-epoch
checkpoints, resume), cached by everything that changes its weights.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.arch import Value
from nas.channels.groups import ChannelMasks, prune
from nas.training import soft_cross_entropy
from search_spaces.base import Supernet


class SlimmableNet(Supernet):
    """The base network with per-group masks: ``set_active(arch)`` keeps each group's leading channels."""

    def __init__(self, space) -> None:
        super().__init__()
        self.space = space
        self.net = copy.deepcopy(space.base_model)
        self._masks = ChannelMasks(self.net, space.groups)

    def set_active(self, arch: Mapping[str, Value]) -> None:
        widths = self.space.widths(arch)
        self._masks.set({label: range(w) for label, w in widths.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def network(self) -> nn.Module:
        """A copy of the shared weights as a plain network (no mask hooks): what the evaluator masks itself."""
        with self._masks.detached() as net:
            return copy.deepcopy(net).eval()

    def extract(self, arch: Mapping[str, Value]) -> nn.Module:
        """A physically slimmed copy (leading channels) of the active weights, without masks."""
        with self._masks.detached() as net:
            model, _ = prune(net, self.space.input_shape(arch), self.space.widths(self.space.validate(arch)),
                             importance="leading")
        return model.eval()


class SandwichLoss:
    """One sandwich-rule step's loss (see the module docstring); random widths drawn from ``seed`` and the step."""

    def __init__(self, supernet: SlimmableNet, *, random_widths: int = 2, seed: int = 0) -> None:
        self.supernet = supernet
        self.random_widths = random_widths
        self.seed = seed

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int):
        space = self.supernet.space
        model.set_active(space.largest())
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        soft = F.softmax(logits.detach(), dim=1)
        rng = np.random.default_rng([self.seed, step])
        for arch in [space.smallest()] + [space.sample(rng) for _ in range(self.random_widths)]:
            model.set_active(arch)
            loss = loss + soft_cross_entropy(model(x), soft)
        model.set_active(space.largest())
        return loss, logits
