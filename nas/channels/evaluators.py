"""Accuracy of a member of the ``channels`` space without training it (``evaluator=pruned`` / ``slimmable``).

- ``pruned`` (AMC's fast reward): the base network's trained weights, each group cut to its width by channel
  importance (L1 norm of the group's weights, ranked once on the base), BatchNorm recalibrated, no fine-tuning;
- ``slimmable``: the slimmable supernet's weights (:mod:`nas.channels.slimmable`), leading channels per group,
  BatchNorm recalibrated per width.

Both score a width configuration by *masking* the removed channels of one network in place (no copy, no
graph rebuild per query: the greedy and RL searches ask thousands of them), which in eval mode computes what
the physically pruned network computes (``tests/test_channel_space.py`` checks it). :meth:`subnet` gives the
physically pruned network itself, for export. Scores are cached by arch, and depend only on the arch, the
weights and the seed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from nas.accuracy import evaluate, recalibrate_bn
from nas.arch import Value, arch_id
from nas.channels.groups import ChannelMasks, prune, rankings
from nas.data import DataSplits
from nas.errors import ConfigError

#: ``evaluator=`` names for the channels space, and the channel importance each keeps channels by.
CHANNEL_EVALUATORS = {"pruned": "l1", "slimmable": "leading"}


def seeded_draw(X: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` images of ``X`` (all of them when it has fewer), drawn without replacement by ``seed``, in index
    order: the one draw every calibration uses (BatchNorm statistics here, int8 activation ranges in
    :mod:`nas.compress.quantize`), so one seed means one set of images."""
    count = min(count, len(X))
    pick = np.sort(np.random.default_rng(seed).choice(len(X), size=count, replace=False))
    return X[torch.from_numpy(pick)]


def calibration_images(data: DataSplits, count: int, seed: int) -> torch.Tensor:
    """The training images BatchNorm statistics are recalibrated on (:func:`seeded_draw`): the same for the
    evaluator's queries and the finalised networks of a run, so both see one calibration."""
    return seeded_draw(data.train.X, count, seed)


class MaskedEvaluator:
    """Accuracy of width configurations of ``model`` (the trained base, or a slimmable supernet's network)."""

    def __init__(self, space, model: nn.Module, data: DataSplits, *, importance: str, calib_images: int = 500,
                 eval_split: str = "val", batch_size: int = 256, seed: int = 0) -> None:
        if isinstance(calib_images, bool) or not isinstance(calib_images, int) or calib_images < 1:
            raise ConfigError(f"calib_images must be a positive integer, got {calib_images!r}")
        self.space = space
        self.importance = importance
        self.data = data
        self.eval_split = eval_split
        self.batch_size = batch_size
        self._model = copy.deepcopy(model).eval()
        shape = space.input_shape(space.largest())
        self._ranking = rankings(self._model, shape, importance)
        self._masks = ChannelMasks(self._model, space.groups)
        # BatchNorm statistics of the weights as given: restored before each recalibration, so one query's
        # statistics never leak into the next.
        self._bn_state = {k: v.clone() for k, v in self._model.state_dict().items() if "running" in k or "batches" in k}
        self._calib = calibration_images(data, calib_images, seed)
        self._resolution = shape[-1]
        self._cache: dict[tuple[str, str], float] = {}
        self.queries = 0

    def kept(self, arch: Mapping[str, Value]) -> dict[str, list[int]]:
        """The channel indices each group keeps under ``arch``."""
        return {label: sorted(self._ranking[label][:w]) for label, w in self.space.widths(arch).items()}

    def accuracy(self, arch: Mapping[str, Value], split: str | None = None) -> float:
        """Top-1 accuracy in [0, 1] of ``arch`` on ``split`` (default: the evaluator's ``eval_split``)."""
        arch = self.space.validate(arch)
        split = self.eval_split if split is None else split
        key = (arch_id(arch), split)
        if key not in self._cache:
            part = self.data.split(split)
            self._mask_and_recalibrate(arch)
            self._cache[key] = evaluate(self._model, part.X, part.y, resolution=self._resolution,
                                        batch_size=self.batch_size)
            self.queries += 1
        return self._cache[key]

    def subnet(self, arch: Mapping[str, Value]) -> nn.Module:
        """The physically pruned network of ``arch`` (this evaluator's channels), BatchNorm recalibrated."""
        arch = self.space.validate(arch)
        self._model.load_state_dict(self._bn_state, strict=False)
        with self._masks.detached() as unmasked:
            model, _ = prune(unmasked, self.space.input_shape(arch), self.space.widths(arch), importance=self.importance)
        return recalibrate_bn(model, self._calib, batch_size=self.batch_size, resolution=self._resolution)

    def masked_outputs(self, arch: Mapping[str, Value], x: torch.Tensor) -> torch.Tensor:
        """The masked network's logits for ``x`` with the BatchNorm statistics recalibrated for ``arch``."""
        self._mask_and_recalibrate(self.space.validate(arch))
        with torch.no_grad():
            return self._model(x)

    def _mask_and_recalibrate(self, arch: Mapping[str, Value]) -> None:
        """Mask ``arch``'s removed channels and recalibrate BatchNorm from the given weights' statistics."""
        self._masks.set(self.kept(arch))
        self._model.load_state_dict(self._bn_state, strict=False)
        recalibrate_bn(self._model, self._calib, batch_size=self.batch_size, resolution=self._resolution)
