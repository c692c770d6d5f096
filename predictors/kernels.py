"""Kernel-level latency model: split a network into the kernels a runtime executes, cost each, sum.

Design. :func:`search_spaces.kernels.kernels` lists a network's fused kernels (conv+BN+act, depthwise conv,
1x1 conv, SE, pooling, add, shuffle, linear, concat, slice) with their shapes. Each kernel type ``t`` gets a
small linear cost model ``cost_t = a_t * MACs + b_t * bytes + c_t`` (compute-bound, memory-bound and launch-overhead
terms). Summed over the network this is linear in the per-type aggregates ``(sum MACs, sum bytes, count)``,
which is what ``latency_features(space, archs, "kernel")`` computes (33 columns for 11 types). So the
per-kernel costs can be learnt from whole-network latencies alone: a non-negative least-squares fit in
relative error (:mod:`predictors.additive`) of the network latency on those aggregates. Non-negativity keeps
every per-kernel cost physical and lets the model extrapolate to shapes outside the training set (new
resolutions, widths), which a one-hot table cannot do.

What it cannot capture: kernel-shape effects beyond the linear terms (e.g. a depthwise 7x7 that is slower
per MAC than a 3x3, cache cliffs), cross-kernel fusion, and measurement noise.
"""

from __future__ import annotations

from nas.registry import register_predictor
from predictors.additive import AdditivePredictor


@register_predictor("kernel")
class KernelPredictor(AdditivePredictor):
    """Non-negative linear model on per-kernel-type (MACs, bytes, count) aggregates."""

    name = "kernel"
