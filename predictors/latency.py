"""Latency models of architectures: a feature kind + a predictor, fitted from ``(space, archs, latencies)``.

One factory (:func:`make_latency_predictor`) maps the model names used by the CLI and the benchmark to a
predictor and the features it reads (:func:`predictors.features.latency_features`):

========  ===========  ================================================================
name      features     predictor
========  ===========  ================================================================
lut       onehot       additive per-(position, choice) table, NNLS in relative error
kernel    kernel       per-kernel-type (MACs, bytes, count) costs, NNLS in relative error
gbdt      encoding     :mod:`predictors.gbdt` (LightGBM boosted trees) on log latency
ridge     encoding     :mod:`predictors.ridge` on log latency
mlp       encoding     :mod:`predictors.mlp` on log latency
flops     flops        affine in MACs (baseline)
params    params       affine in the parameter count (baseline)
auto      per space    :data:`DEFAULT_MODEL` (the benchmark's best: see experiments/latency_predictors.py)
========  ===========  ================================================================

A :class:`LatencyModel` saves as a predictor directory (``predictor.json`` + ``arrays.npz``) whose metadata
records the model name, feature kind, space name and space config, so :func:`load_latency_model` rebuilds
everything needed to predict from architectures alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.arch import Value
from nas.errors import ConfigError, DataError, ModelError
from nas.registry import SPACES
from predictors.base import Predictor, load_predictor
from predictors.features import latency_features
from search_spaces.base import SearchSpace

#: model name -> (registered predictor, constructor kwargs, feature kind)
MODELS: dict[str, tuple[str, dict[str, Any], str]] = {
    "lut": ("lut", {}, "onehot"),
    "kernel": ("kernel", {}, "kernel"),
    # Deeper trees and more of them than the accuracy default: latency tables have hundreds to thousands of rows.
    # LightGBM's 255 bins (not hgbdt's 32): on FBNet rows outside the benchmark's, MAPE 5.30 vs 5.57 % at 100 rows.
    "gbdt": ("gbdt", {"n_trees": 400, "max_depth": 4, "min_samples_leaf": 5, "l2": 1.0, "log_target": True},
             "encoding"),
    "ridge": ("ridge", {"log_target": True}, "encoding"),
    "mlp": ("mlp", {"log_target": True, "hidden_sizes": [128, 128], "epochs": 300}, "encoding"),
    "flops": ("flops", {}, "flops"),
    "params": ("params", {}, "params"),
}
#: ``auto`` per space: the best model of experiments/latency_predictors.py at 1000 training archs (NB201:
#: trees see interactions of the cell's edges; FBNet: per-layer sums are exact; OFA: the kernel model is as
#: good as the trees on the GPU columns and extrapolates to other configs).
DEFAULT_MODEL = {"nb201": "gbdt", "fbnet": "lut", "ofa": "kernel"}
MODEL_NAMES = (*MODELS, "auto")
#: Space constructor arguments saved with a model (OFA has its own ``config()``).
_SPACE_ATTRS = {"nb201": ("num_classes", "in_channels", "channels", "cells_per_stage", "resolution"),
                "fbnet": ("num_classes", "in_channels", "resolution", "stem_stride", "strides", "head_channels")}


def _ensure_registered() -> None:
    # The latency predictors register on import; nas.registry only auto-loads the original three.
    import predictors.baselines  # noqa: F401
    import predictors.kernels  # noqa: F401
    import predictors.lut  # noqa: F401
    import predictors.transfer  # noqa: F401


def resolve_model_name(name: str, space_name: str) -> str:
    if name == "auto":
        return DEFAULT_MODEL.get(space_name, "gbdt")
    if name not in MODELS:
        raise ConfigError(f"unknown latency predictor {name!r}; choose one of {list(MODEL_NAMES)}")
    return name


def make_latency_predictor(name: str, *, seed: int = 0, space_name: str = "") -> tuple[Predictor, str]:
    """``(unfitted predictor, feature kind)`` for model ``name`` (see the table in the module docstring)."""
    _ensure_registered()
    from nas.registry import PREDICTORS

    registered, kwargs, features = MODELS[resolve_model_name(name, space_name)]
    cls = PREDICTORS.get(registered)
    if "seed" in inspect.signature(cls).parameters:  # the stochastic ones (trees, MLP) take a seed
        kwargs = {**kwargs, "seed": seed}
    return cls(**kwargs), features


def space_config(space: SearchSpace) -> dict[str, Any]:
    """JSON-serialisable constructor arguments that rebuild ``space``."""
    if hasattr(space, "config"):
        return dict(space.config())
    attrs = _SPACE_ATTRS.get(space.name, ())
    return {a: (list(getattr(space, a)) if isinstance(getattr(space, a), tuple) else getattr(space, a)) for a in attrs}


def build_space(name: str, config: Mapping[str, Any] | None = None) -> SearchSpace:
    """The registered space ``name`` built from ``config`` (constructor keyword arguments)."""
    return SPACES.get(name)(**dict(config or {}))


def clean_latencies(latencies: object) -> tuple[np.ndarray, np.ndarray]:
    """``(values, keep mask)``: a measurement is usable when finite and > 0 (relative errors need y > 0)."""
    y = np.asarray(latencies, dtype=np.float64)
    if y.ndim != 1:
        raise DataError(f"latencies must be a vector, got shape {y.shape}")
    return y, np.isfinite(y) & (y > 0)


@dataclass
class LatencyModel:
    """A fitted latency predictor of one space: ``predict(archs) -> ms``."""

    space: SearchSpace
    name: str
    features: str
    predictor: Predictor

    def featurize(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        return latency_features(self.space, archs, self.features)

    def predict(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """Predicted latency (ms) of each (validated) architecture."""
        return self.predictor.predict(self.featurize(archs))

    def save(self, path: str | Path) -> Path:
        meta = {"latency_model": self.name, "features": self.features, "space": self.space.name,
                "space_config": space_config(self.space), "unit": "ms"}
        return self.predictor.save(Path(path), metadata=meta)


def fit_latency_model(space: SearchSpace, archs: Sequence[Mapping[str, Value]], latencies: object,
                      name: str = "auto", *, seed: int = 0,
                      features: np.ndarray | None = None) -> LatencyModel:
    """Fit model ``name`` on measured ``latencies`` (ms) of ``archs``; rows with non-finite or <= 0 ms are
    skipped. ``features`` may pass precomputed ``latency_features`` (same kind) to save time."""
    y, keep = clean_latencies(latencies)
    if y.shape[0] != len(archs):
        raise DataError(f"got {len(archs)} architectures but {y.shape[0]} latencies")
    if keep.sum() < 2:
        raise DataError("need at least 2 architectures with a finite latency > 0 to fit a latency model")
    resolved = resolve_model_name(name, space.name)
    predictor, kind = make_latency_predictor(resolved, seed=seed)
    X = latency_features(space, archs, kind) if features is None else features
    predictor.fit(X[keep], y[keep])
    return LatencyModel(space, resolved, kind, predictor)


def load_latency_model(path: str | Path) -> LatencyModel:
    """Load a :meth:`LatencyModel.save` directory (space rebuilt from its saved config)."""
    _ensure_registered()
    predictor = load_predictor(Path(path))
    meta = predictor.metadata
    for key in ("latency_model", "features", "space"):
        if not isinstance(meta.get(key), str):
            raise ModelError(f"{path} is a predictor but not a latency model (metadata lacks {key!r}); "
                             f"save it with LatencyModel.save / 'python -m predictors fit --out'")
    try:
        space = build_space(meta["space"], meta.get("space_config"))
    except (ConfigError, TypeError) as err:
        raise ModelError(f"{path}: cannot rebuild space {meta['space']!r} from its saved config: {err}") from err
    return LatencyModel(space, meta["latency_model"], meta["features"], predictor)

