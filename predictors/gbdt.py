"""Gradient-boosted regression trees (least squares) on LightGBM: the tree-based predictor (``gbdt``).

Why trees: accuracy depends on interactions between choices (a wide block helps only if the stage is deep
enough to use it; in cell spaces an edge matters only on a live path), and latency on interactions too (an
NB201 edge costs nothing off a live path), which a linear model cannot express. Small boosted trees capture
them from a few dozen samples; shrinkage and row subsampling keep them from memorising.

Why LightGBM: on our latency tables it fitted as well as XGBoost's CPU booster and 1.3-2x faster, and
10-20x faster than the two numpy boosters this module replaces, with the same quality (the old-versus-new
comparison is in ``experiments/results/latency_predictors.json`` and ``ofa_accuracy_predictor.json``).

Tiny training sets: LightGBM's defaults are made for large tables (``min_data_in_leaf=20``,
``min_data_in_bin=3``, a minimum hessian per leaf); on the 45 subnets the main command fits they allow one
split or none, i.e. a nearly constant model. Here every such limit comes from ``min_samples_leaf``, bins
keep every distinct value of our one-hot and count features (up to ``max_bins``), and a tree's size is
limited by ``max_depth`` (``num_leaves = 2 ** max_depth``, so a full tree of that depth can grow).

Reproducible: ``deterministic``, row-wise histograms and ``seed`` (which seeds the bagging draws) give the
same model for the same data and seed; ``threads`` defaults to 1, the fastest on data this small and the
one that does not compete with other work for the cores.

Saved: the booster in LightGBM's own text model format, ``model.txt`` beside ``predictor.json`` (see
:mod:`predictors.base`); it parses back to the same trees, so predictions after loading are bit-identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nas.errors import ConfigError, DataError
from nas.registry import register_predictor
from predictors.base import Predictor, check_bool, check_float, check_int

MODEL_FILE = "model.txt"
#: LightGBM caps ``num_leaves`` at 131072 = 2 ** 17; seeds are C ints.
_MAX_DEPTH = 16
_MAX_SEED = 2**31 - 1


@register_predictor("gbdt")
class GBDTPredictor(Predictor):
    """``y ~ base + lr * sum_t tree_t(x)`` (or ``log y`` when ``log_target``), fitted by LightGBM."""

    name = "gbdt"

    def __init__(self, *, n_trees: int = 200, learning_rate: float = 0.05, max_depth: int = 3,
                 min_samples_leaf: int = 3, subsample: float = 0.8, max_bins: int = 255, l2: float = 0.0,
                 seed: int = 0, log_target: bool = False, threads: int = 1) -> None:
        super().__init__()
        self.n_trees = check_int("gbdt", "n_trees", n_trees)
        self.learning_rate = check_float("gbdt", "learning_rate", learning_rate)
        self.max_depth = check_int("gbdt", "max_depth", max_depth)
        if self.max_depth > _MAX_DEPTH:
            raise ConfigError(f"gbdt predictor: max_depth must be an int in [1, {_MAX_DEPTH}], got {max_depth!r}")
        self.min_samples_leaf = check_int("gbdt", "min_samples_leaf", min_samples_leaf)
        self.subsample = check_float("gbdt", "subsample", subsample)
        if self.subsample > 1:
            raise ConfigError(f"gbdt predictor: subsample must be in (0, 1], got {subsample!r}")
        self.max_bins = check_int("gbdt", "max_bins", max_bins, minimum=2)
        self.l2 = check_float("gbdt", "l2", l2, allow_zero=True)
        self.seed = check_int("gbdt", "seed", seed, minimum=0)
        if self.seed > _MAX_SEED:
            raise ConfigError(f"gbdt predictor: seed must be an int in [0, {_MAX_SEED}], got {seed!r}")
        self.log_target = check_bool("gbdt", "log_target", log_target)
        self.threads = check_int("gbdt", "threads", threads)
        self._booster: Any = None  # lightgbm.Booster once fitted or loaded

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_trees": self.n_trees, "learning_rate": self.learning_rate, "max_depth": self.max_depth,
                "min_samples_leaf": self.min_samples_leaf, "subsample": self.subsample, "max_bins": self.max_bins,
                "l2": self.l2, "seed": self.seed, "log_target": self.log_target, "threads": self.threads}

    def params(self) -> dict[str, Any]:
        """The LightGBM parameters these options map to."""
        return {
            "objective": "regression",  # least squares, from the mean (boost_from_average)
            "learning_rate": self.learning_rate,
            "max_depth": self.max_depth,
            "num_leaves": 2**self.max_depth,
            "min_data_in_leaf": self.min_samples_leaf,
            "min_sum_hessian_in_leaf": 0.0,  # the count limit above is the only one (hessian = 1 per row)
            "min_data_in_bin": 1,
            "max_bin": self.max_bins,
            "feature_pre_filter": False,
            "lambda_l2": self.l2,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1 else 0,  # a new row sample for every tree
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.threads,
            "verbosity": -1,
        }

    # ------------------------------------------------------------------ fit / predict
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        import lightgbm

        if self.log_target and np.any(y <= 0):
            raise DataError("gbdt predictor with log_target=true needs all targets > 0 (e.g. latency in ms)")
        t = np.log(y) if self.log_target else y
        data = lightgbm.Dataset(X, t, params={"verbosity": -1}, free_raw_data=True)
        self._booster = lightgbm.train(self.params(), data, num_boost_round=self.n_trees)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        assert self._booster is not None
        if self._booster.num_feature() != X.shape[1]:
            raise ValueError(f"the gbdt model has {self._booster.num_feature()} features, the input {X.shape[1]}")
        t = np.asarray(self._booster.predict(X, num_threads=self.threads), dtype=np.float64)
        return np.exp(t) if self.log_target else t

    # ------------------------------------------------------------------ state
    def get_texts(self) -> dict[str, str]:
        assert self._booster is not None
        return {MODEL_FILE: self._booster.model_to_string()}

    def set_texts(self, texts: Mapping[str, str]) -> None:
        import lightgbm

        if MODEL_FILE not in texts:
            raise ValueError(f"no {MODEL_FILE} (LightGBM model) listed: the file was saved by the numpy booster of "
                             f"an older hwnas, which is gone; refit the predictor and save it again")
        try:
            self._booster = lightgbm.Booster(model_str=texts[MODEL_FILE])
        except lightgbm.basic.LightGBMError as err:
            raise ValueError(f"{MODEL_FILE} is not a LightGBM model: {err}") from err

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {}  # everything fitted is in model.txt

    def set_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        if self._booster is None:
            raise ValueError("the gbdt model was not restored")
