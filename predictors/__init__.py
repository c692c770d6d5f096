"""Predictors of architecture metrics (latency, accuracy).

The latency predictors register under their names when their modules are imported; ``nas.registry`` loads
only the original three on lookup, so they are imported here to make :func:`predictors.base.load_predictor`
find every saved predictor type.
"""

from predictors import baselines, hgbdt, kernels, lut, transfer  # noqa: F401  (registration)
