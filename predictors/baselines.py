"""Baselines a latency predictor has to beat: latency linear in FLOPs, or in the parameter count.

Both are the same non-negative affine fit in relative error (:mod:`predictors.additive`) on one column,
``latency_features(space, archs, "flops")`` (MMACs) or ``"params"`` (millions); FLOPs and parameters come
from the kernel decomposition in :mod:`search_spaces.kernels`.
"""

from __future__ import annotations

from nas.registry import register_predictor
from predictors.additive import AdditivePredictor


@register_predictor("flops")
class FlopsPredictor(AdditivePredictor):
    """``latency ~ b + w * MMACs``."""

    name = "flops"


@register_predictor("params")
class ParamsPredictor(AdditivePredictor):
    """``latency ~ b + w * million parameters``."""

    name = "params"
