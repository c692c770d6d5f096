"""Fit a predictor of one metric from a few evaluated architectures, and say how good it is.

Both the accuracy estimate (supernet weight sharing) and the latency (on-device measurement) are too slow
to compute for every candidate a strategy considers, so the search evaluates a sample, fits a predictor on
the space's encoding, and reports the predictor's quality on a held-out part of the sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nas.errors import ConfigError
from nas.registry import PREDICTORS
from predictors.metrics import regression_metrics
from search_spaces.base import SearchSpace


@dataclass
class Surrogate:
    """A fitted predictor of ``metric`` plus its held-out quality."""

    metric: str
    predictor: object
    space: SearchSpace
    features: str
    holdout_metrics: dict

    def predict(self, archs: Sequence[Mapping]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        X = featurize(self.space, archs, self.features)
        return np.asarray(self.predictor.predict(X), dtype=np.float64)  # type: ignore[attr-defined]


#: Feature sets a surrogate can use: the space's choice encoding, or its cost features (see
#: :meth:`SearchSpace.cost_features`), which suit latency.
FEATURES = ("encoding", "cost")


def featurize(space: SearchSpace, archs: Sequence[Mapping], features: str) -> np.ndarray:
    if features == "encoding":
        return space.encode_many(archs)
    if features == "cost":
        return np.stack([space.cost_features(a) for a in archs])
    raise ConfigError(f"unknown predictor features {features!r}; choose one of {list(FEATURES)}")


def fit_surrogate(
    *,
    space: SearchSpace,
    archs: Sequence[Mapping],
    values: Sequence[float],
    metric: str,
    predictor: str,
    predictor_kwargs: Mapping | None = None,
    features: Literal["encoding", "cost"] = "encoding",
    holdout: float = 0.25,
    seed: int = 0,
) -> Surrogate:
    """Fit ``predictor`` (a registry name) on ``archs -> values``.

    A random ``holdout`` fraction is first used to measure the predictor's error (reported as
    ``holdout_metrics``); the returned predictor is then refitted on *all* samples, so no measurement is
    wasted.
    """
    if len(archs) != len(values):
        raise ValueError(f"{len(archs)} archs but {len(values)} values")
    X = featurize(space, archs, features)
    y = np.asarray(values, dtype=np.float64)
    factory = PREDICTORS.get(predictor)
    kwargs = dict(predictor_kwargs or {})
    holdout_metrics: dict = {"n": 0}
    n_test = int(round(holdout * len(y)))
    if n_test >= 3 and len(y) - n_test >= 3:
        order = np.random.default_rng(seed).permutation(len(y))
        test, train = order[:n_test], order[n_test:]
        model = factory(**kwargs).fit(X[train], y[train])
        holdout_metrics = regression_metrics(y[test], model.predict(X[test]))
    final = factory(**kwargs).fit(X, y)
    return Surrogate(metric=metric, predictor=final, space=space, features=features, holdout_metrics=holdout_metrics)
