"""Accuracy of sub-networks of a trained supernet, as OFA measures it.

A sub-network inherits its weights from the supernet, but the supernet's BatchNorm running statistics
were accumulated over a mix of many sub-networks and resolutions, so they are wrong for any single one.
OFA therefore *recalibrates* BatchNorm on a few training images before evaluating each sub-network:
reset the running statistics, run the images through in train mode without gradients, and keep the
cumulative average. :class:`SupernetEvaluator` does exactly that on an extracted copy, so the supernet
itself is never changed.

:func:`resize_batch` is the one place that turns a batch into the resolution an architecture asks for;
training uses it too, so training and evaluation see identical inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.arch import Value
from nas.data import DataSplits
from nas.errors import ConfigError, DataError
from search_spaces.base import Supernet, WeightSharingSpace

_SPLITS = ("train", "val", "test")


def resize_batch(x: torch.Tensor, resolution: int | tuple[int, int]) -> torch.Tensor:
    """``x`` (N, C, H, W) resized to ``resolution`` (side or (H, W)) by bilinear interpolation; unchanged if equal."""
    size = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def arch_resolution(space: WeightSharingSpace, arch: Mapping[str, Value]) -> tuple[int, int]:
    """``(H, W)`` of the input that ``arch`` expects."""
    _, height, width = space.input_shape(arch)
    return int(height), int(width)


def recalibrate_bn(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 100,
    resolution: int | tuple[int, int] | None = None,
) -> nn.Module:
    """Replace every BatchNorm's running statistics by their cumulative average over ``images``; return ``model``.

    Runs with dropout off and no gradients; ``model`` is left in eval mode. ``images`` are resized to
    ``resolution`` first when it is given.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if len(images) == 0:
        raise DataError("BatchNorm recalibration needs at least one image; pass a non-empty training subset")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved_momentum = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None = cumulative moving average: every batch counts equally
    model.eval()
    for m in norms:
        m.train()
    # Equal-sized chunks (never a lone single image, which train-mode BatchNorm rejects on 1x1 maps).
    chunks = max(1, -(-len(images) // batch_size))
    try:
        with torch.no_grad():
            for batch in torch.tensor_split(images, chunks):
                model(batch if resolution is None else resize_batch(batch, resolution))
    finally:
        for m, momentum in zip(norms, saved_momentum):
            m.momentum = momentum
        model.eval()
    return model


def evaluate(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    resolution: int | tuple[int, int] | None = None,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (in eval mode, no gradients) on ``X`` resized to ``resolution``."""
    if len(X) != len(y):
        raise DataError(f"evaluate: {len(X)} images but {len(y)} labels")
    if len(X) == 0:
        raise DataError("evaluate: the split is empty; use a larger dataset, a smaller limit or another split")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(X), batch_size):
                batch = X[start : start + batch_size]
                if resolution is not None:
                    batch = resize_batch(batch, resolution)
                correct += int((model(batch).argmax(dim=1) == y[start : start + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / len(X)


class SupernetEvaluator:
    """Accuracy of any member of a weight-sharing space, from the trained supernet's weights.

    Every call extracts a standalone copy of the sub-network, recalibrates its BatchNorm on the same
    seeded subset of ``calib_images`` training images, and evaluates it on ``eval_split``. Results
    depend only on the arch, the weights and the seed, not on the order of calls.
    """

    def __init__(
        self,
        space: WeightSharingSpace,
        supernet: Supernet,
        data: DataSplits,
        *,
        calib_images: int = 500,
        eval_split: str = "val",
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        if eval_split not in _SPLITS:
            raise ConfigError(f"eval_split must be one of {list(_SPLITS)}, got {eval_split!r}")
        if isinstance(calib_images, bool) or not isinstance(calib_images, int) or calib_images < 1:
            raise ConfigError(f"calib_images must be a positive integer, got {calib_images!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if len(data.train) == 0:
            raise DataError("the train split is empty, so BatchNorm cannot be recalibrated; use more data")
        self.space = space
        self.supernet = supernet
        self.data = data
        self.eval_split = eval_split
        self.batch_size = batch_size
        count = min(calib_images, len(data.train))
        pick = np.sort(np.random.default_rng(seed).choice(len(data.train), size=count, replace=False))
        self._calib = data.train.X[torch.from_numpy(pick)]

    def subnet(self, arch: Mapping[str, Value]) -> nn.Module:
        """A standalone, BN-recalibrated copy of ``arch``'s sub-network, in eval mode."""
        arch = self.space.validate(arch)
        model = _detached(self.supernet.extract(arch), self.supernet)
        recalibrate_bn(model, self._calib, batch_size=self.batch_size, resolution=arch_resolution(self.space, arch))
        return model

    def accuracy(self, arch: Mapping[str, Value], split: str | None = None) -> float:
        """Top-1 accuracy in [0, 1] of ``arch`` on ``split`` (default: the evaluator's ``eval_split``)."""
        split = self.eval_split if split is None else split
        part = self.data.split(split)
        arch = self.space.validate(arch)
        model = self.subnet(arch)
        return evaluate(model, part.X, part.y, resolution=arch_resolution(self.space, arch), batch_size=self.batch_size)


def _detached(model: nn.Module, supernet: nn.Module) -> nn.Module:
    """``model`` with any parameter or buffer that shares memory with ``supernet`` replaced by a copy.

    ``extract`` is meant to copy, but recalibration writes BatchNorm buffers in place, and a view into the
    supernet would silently change the supernet; this guard makes the evaluator safe either way.
    """
    shared = {t.untyped_storage().data_ptr() for t in supernet.state_dict(keep_vars=True).values()}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and param.untyped_storage().data_ptr() in shared:
                module._parameters[name] = nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
        for name, buf in list(module._buffers.items()):
            if buf is not None and buf.untyped_storage().data_ptr() in shared:
                module._buffers[name] = buf.detach().clone()
    return model
