"""Fit a predictor of one metric from a few evaluated architectures, and say how good it is.

Both the accuracy estimate (supernet weight sharing) and the latency (on-device measurement) are too slow
to compute for every candidate a strategy considers, so the search evaluates a sample, fits a predictor on
the space's encoding, and reports the predictor's quality on a held-out part of the sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

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

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        """:meth:`predict` of the archs of ``codes`` (:meth:`SearchSpace.to_codes`), features made from the codes."""
        if not len(codes):
            return np.zeros(0)
        X = featurize_codes(self.space, codes, self.features)
        return np.asarray(self.predictor.predict(X), dtype=np.float64)  # type: ignore[attr-defined]


#: Feature sets a surrogate can use: the space's choice encoding, or its cost features (see
#: :meth:`SearchSpace.cost_features`), which suit latency.
FEATURES = ("encoding", "cost")


def featurize(space: SearchSpace, archs: Sequence[Mapping], features: str) -> np.ndarray:
    if features == "encoding":
        return space.encode_many(archs)
    if features == "cost":
        return space.cost_features_many(archs)
    raise ConfigError(f"unknown predictor features {features!r}; choose one of {list(FEATURES)}")


def featurize_codes(space: SearchSpace, codes: np.ndarray, features: str) -> np.ndarray:
    """:func:`featurize` of the archs of ``codes``."""
    if features == "encoding":
        return space.encode_codes(codes)
    if features == "cost":
        return space.cost_features_codes(codes)
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


#: Measurements from which a calibration also fits shape terms (see :func:`calibrate_prior`).
MIN_SHOTS_FOR_SHAPE = 12


class LatencyPrior(Protocol):
    """Latency (ms) of architectures on a device *before* any measurement of it, e.g. a model learned from
    public measurements of similar hardware. ``description`` says where it comes from (shown to the user).
    A prior may also give ``predict_codes(space, codes)`` for batches of integer codes (the kernel prior does);
    otherwise the archs are made from the codes."""

    name: str
    description: str

    def predict(self, space: SearchSpace, archs: Sequence[Mapping]) -> np.ndarray: ...


def _prior_of_codes(prior: LatencyPrior, space: SearchSpace, codes: np.ndarray) -> np.ndarray:
    predict_codes = getattr(prior, "predict_codes", None)
    if predict_codes is not None:
        return np.asarray(predict_codes(space, codes), dtype=np.float64)
    return np.asarray(prior.predict(space, space.from_codes(codes)), dtype=np.float64)


@dataclass
class PriorSurrogate:
    """A prior used as is (no measurement of the device exists): every latency it gives is labelled "prior"."""

    prior: LatencyPrior
    space: SearchSpace
    metric: str = "latency_ms"
    features: str = "prior"
    holdout_metrics: dict = field(default_factory=lambda: {"n": 0})

    def predict(self, archs: Sequence[Mapping]) -> np.ndarray:
        return np.asarray(self.prior.predict(self.space, archs), dtype=np.float64) if archs else np.zeros(0)

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        return _prior_of_codes(self.prior, self.space, codes) if len(codes) else np.zeros(0)


@dataclass
class CalibratedSurrogate:
    """A prior corrected by measurements of the device (few-shot calibration).

    - fewer than :data:`MIN_SHOTS_FOR_SHAPE` measurements: the power law ``latency = e^c prior^b`` of
      :class:`predictors.transfer.CalibrationPredictor` (``b >= 0`` shrunk towards 1, penalty by
      leave-one-out): the device's scale and how its cost grows with the prior's;
    - more: ``latency = prior * exp(r)``, ``r`` a ridge fit of ``log(measured / prior)`` on
      :func:`calibration_features` (log prior, log MACs, log traffic, log kernel count; penalty by
      leave-one-out), which also corrects how the device's balance of compute, memory traffic and per-kernel
      overhead differs from the hardware the prior came from.

    Why the switch: on a space the prior never saw, 5-10 shots support the power law (a scale factor alone
    left NAS-Bench-201 at 11 % within ±10 % where the power law reaches about 30 %), and with 20 the shape terms
    win on FBNet (Spearman 0.925 vs 0.913) and this CPU (0.645 vs 0.636) and lose slightly on NAS-Bench-201
    (0.870 vs 0.873); ``experiments/fit_arm_prior.py`` prints both.
    """

    prior: LatencyPrior
    space: SearchSpace
    model: object
    holdout_metrics: dict
    shape_terms: bool = True
    metric: str = "latency_ms"
    features: str = "prior+kernel totals"

    def predict(self, archs: Sequence[Mapping]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        base = np.asarray(self.prior.predict(self.space, archs), dtype=np.float64)
        return _calibrated(self.model, self.shape_terms, self.space, archs, base)

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        if not len(codes):
            return np.zeros(0)
        base = _prior_of_codes(self.prior, self.space, codes)
        if self.shape_terms:
            from predictors.features import latency_features_codes

            return _apply_calibration(self.model, base, latency_features_codes(self.space, codes, "kernel"))
        return _apply_calibration(self.model, base, None)


def _fit_calibration(shape_terms: bool, space: SearchSpace, archs: Sequence[Mapping], base: np.ndarray,
                     y: np.ndarray) -> object:
    if shape_terms:
        residual = np.log(y) - np.log(np.maximum(base, 1e-9))
        return PREDICTORS.get("ridge")().fit(calibration_features(space, archs, base), residual)
    return PREDICTORS.get("transfer")().fit(base[:, None], y)


def _calibrated(model, shape_terms: bool, space: SearchSpace, archs: Sequence[Mapping], base: np.ndarray) -> np.ndarray:
    from predictors.features import latency_features

    return _apply_calibration(model, base, latency_features(space, archs, "kernel") if shape_terms else None)


def _apply_calibration(model, base: np.ndarray, kernel_features: np.ndarray | None) -> np.ndarray:
    """The calibrated latency from the prior's ``base``: with shape terms (``kernel_features`` given) the ridge
    correction of the log ratio, otherwise the power law."""
    if kernel_features is not None:
        return base * np.exp(model.predict(_calibration_columns(kernel_features, base)))  # type: ignore[attr-defined]
    return np.asarray(model.predict(base[:, None]), dtype=np.float64)  # type: ignore[attr-defined]


def calibration_features(space: SearchSpace, archs: Sequence[Mapping], prior_ms: np.ndarray) -> np.ndarray:
    """Few, scale-free features of how a device may differ from the prior: log of the prior itself, of the
    total work, of the activation traffic and of the kernel count (launch overhead). Four numbers, so a
    handful of measurements can fit them without chasing noise."""
    from predictors.features import latency_features

    return _calibration_columns(latency_features(space, archs, "kernel"), prior_ms)


def _calibration_columns(kernel_features: np.ndarray, prior_ms: np.ndarray) -> np.ndarray:
    # Per kernel type (MMACs, MB of traffic, count), summed over the types.
    totals = kernel_features.reshape(len(kernel_features), -1, 3).sum(axis=1)
    base = np.log(np.maximum(np.asarray(prior_ms, dtype=np.float64), 1e-9))
    return np.column_stack([base, np.log1p(totals)])


def calibrate_prior(*, prior: LatencyPrior, space: SearchSpace, archs: Sequence[Mapping], values: Sequence[float],
                    holdout: float = 0.25, seed: int = 0) -> CalibratedSurrogate:
    """Calibrate ``prior`` on measured latencies ``values`` of ``archs`` (see :class:`CalibratedSurrogate`).

    As in :func:`fit_surrogate`, a random ``holdout`` part first scores the calibration, then all samples fit it.
    """
    if len(archs) != len(values) or len(archs) < 2:
        raise ValueError(f"calibration needs >= 2 measured archs with one latency each, got {len(archs)} / {len(values)}")
    y = np.asarray(values, dtype=np.float64)
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("measured latencies must be finite and > 0 ms")
    base = np.asarray(prior.predict(space, archs), dtype=np.float64)
    # Leave-one-out over a handful of points is too noisy to choose four shape terms' penalty (a wrong shape
    # term costs ranking), so below MIN_SHOTS_FOR_SHAPE only the power law is fitted.
    shape_terms = len(y) >= MIN_SHOTS_FOR_SHAPE
    holdout_metrics: dict = {"n": 0}
    n_test = int(round(holdout * len(y)))
    if n_test >= 3 and len(y) - n_test >= 3:
        order = np.random.default_rng(seed).permutation(len(y))
        test, train = order[:n_test], order[n_test:]
        pick = lambda idx: [archs[i] for i in idx]  # noqa: E731
        model = _fit_calibration(shape_terms, space, pick(train), base[train], y[train])
        holdout_metrics = regression_metrics(y[test], _calibrated(model, shape_terms, space, pick(test), base[test]))
        holdout_metrics["prior_only"] = regression_metrics(y[test], base[test])
    final = _fit_calibration(shape_terms, space, archs, base, y)
    return CalibratedSurrogate(prior=prior, space=space, model=final, holdout_metrics=holdout_metrics,
                               shape_terms=shape_terms)
