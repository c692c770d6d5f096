"""Gradient-boosted regression trees (least squares), in numpy: the tree-based alternative to ridge and MLP.

Why trees: accuracy depends on interactions between choices (a wide block helps only if the stage is deep
enough to use it; in cell spaces an edge matters only on a live path) that a linear model cannot express.
Small boosted trees capture them from a few dozen samples; shrinkage and row subsampling keep them from
memorising. Each tree is stored as flat arrays (feature, threshold, left, right, value), so a fitted model
saves to npz and loads back bit-identically, with no pickles.

Split search is exact over the midpoints between sorted distinct feature values, which for one-hot and
count encodings is a handful of candidates per feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nas.errors import ConfigError, DataError
from nas.registry import register_predictor
from predictors.base import Predictor, check_bool, check_float, check_int

_LEAF = -1


@register_predictor("gbdt")
class GBDTPredictor(Predictor):
    """``y ~ base + lr * sum_t tree_t(x)`` (or ``log y``)."""

    name = "gbdt"

    def __init__(self, *, n_trees: int = 200, learning_rate: float = 0.05, max_depth: int = 3,
                 min_samples_leaf: int = 3, subsample: float = 0.8, seed: int = 0, log_target: bool = False) -> None:
        super().__init__()
        self.n_trees = check_int("gbdt", "n_trees", n_trees)
        self.learning_rate = check_float("gbdt", "learning_rate", learning_rate)
        self.max_depth = check_int("gbdt", "max_depth", max_depth)
        self.min_samples_leaf = check_int("gbdt", "min_samples_leaf", min_samples_leaf)
        self.subsample = check_float("gbdt", "subsample", subsample)
        if self.subsample > 1:
            raise ConfigError(f"gbdt predictor: subsample must be in (0, 1], got {subsample}")
        self.seed = check_int("gbdt", "seed", seed, minimum=0)
        self.log_target = check_bool("gbdt", "log_target", log_target)
        self.base = 0.0
        self.trees: dict[str, np.ndarray] | None = None  # node arrays of all trees, concatenated; "roots" indexes them

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_trees": self.n_trees, "learning_rate": self.learning_rate, "max_depth": self.max_depth,
                "min_samples_leaf": self.min_samples_leaf, "subsample": self.subsample, "seed": self.seed,
                "log_target": self.log_target}

    # ------------------------------------------------------------------ fit
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.log_target and np.any(y <= 0):
            raise DataError("gbdt predictor with log_target=true needs all targets > 0 (e.g. latency in ms)")
        t = np.log(y) if self.log_target else y
        rng = np.random.default_rng(self.seed)
        self.base = float(t.mean())
        residual = t - self.base
        nodes: dict[str, list] = {"feature": [], "threshold": [], "left": [], "right": [], "value": []}
        roots = []
        n = len(t)
        take = max(1, int(round(self.subsample * n)))
        for _ in range(self.n_trees):
            rows = rng.choice(n, size=take, replace=False) if take < n else np.arange(n)
            roots.append(len(nodes["feature"]))
            self._grow(X[rows], residual[rows], 0, nodes)
            residual = t - self.base - self.learning_rate * self._sum_trees(X, nodes, roots)
        self.trees = {key: np.asarray(values, dtype=np.float64 if key in ("threshold", "value") else np.int64)
                      for key, values in nodes.items()}
        self.trees["roots"] = np.asarray(roots, dtype=np.int64)

    def _grow(self, X: np.ndarray, r: np.ndarray, depth: int, nodes: dict[str, list]) -> int:
        index = len(nodes["feature"])
        for key, value in (("feature", _LEAF), ("threshold", 0.0), ("left", _LEAF), ("right", _LEAF), ("value", float(r.mean()))):
            nodes[key].append(value)
        if depth >= self.max_depth or len(r) < 2 * self.min_samples_leaf:
            return index
        split = self._best_split(X, r)
        if split is None:
            return index
        feature, threshold = split
        mask = X[:, feature] <= threshold
        nodes["feature"][index], nodes["threshold"][index] = feature, threshold
        nodes["left"][index] = self._grow(X[mask], r[mask], depth + 1, nodes)
        nodes["right"][index] = self._grow(X[~mask], r[~mask], depth + 1, nodes)
        return index

    def _best_split(self, X: np.ndarray, r: np.ndarray) -> tuple[int, float] | None:
        """The split that most reduces the squared error, honouring ``min_samples_leaf``; None if none helps."""
        n, best_gain, best = len(r), 1e-12, None
        total = r.sum()
        for feature in range(X.shape[1]):
            order = np.argsort(X[:, feature], kind="stable")
            xs, rs = X[order, feature], r[order]
            left_sum = np.cumsum(rs)[:-1]
            counts = np.arange(1, n)
            valid = (xs[1:] != xs[:-1]) & (counts >= self.min_samples_leaf) & (n - counts >= self.min_samples_leaf)
            if not valid.any():
                continue
            gain = left_sum**2 / counts + (total - left_sum) ** 2 / (n - counts) - total**2 / n
            gain = np.where(valid, gain, -np.inf)
            k = int(np.argmax(gain))
            if gain[k] > best_gain:
                best_gain, best = gain[k], (feature, float((xs[k] + xs[k + 1]) / 2))
        return best

    # ------------------------------------------------------------------ predict
    @staticmethod
    def _sum_trees(X: np.ndarray, nodes: Mapping, roots) -> np.ndarray:
        feature, threshold = np.asarray(nodes["feature"]), np.asarray(nodes["threshold"], dtype=np.float64)
        left, right, value = np.asarray(nodes["left"]), np.asarray(nodes["right"]), np.asarray(nodes["value"], dtype=np.float64)
        total = np.zeros(len(X))
        rows = np.arange(len(X))
        for root in roots:
            at = np.full(len(X), root)
            while True:
                f = feature[at]
                inner = f != _LEAF
                if not inner.any():
                    break
                go_left = X[rows[inner], f[inner]] <= threshold[at[inner]]
                at[inner] = np.where(go_left, left[at[inner]], right[at[inner]])
            total += value[at]
        return total

    def _predict(self, X: np.ndarray) -> np.ndarray:
        assert self.trees is not None
        t = self.base + self.learning_rate * self._sum_trees(X, self.trees, self.trees["roots"])
        return np.exp(t) if self.log_target else t

    # ------------------------------------------------------------------ state
    def get_arrays(self) -> dict[str, np.ndarray]:
        assert self.trees is not None
        return {**self.trees, "base": np.asarray(self.base)}

    def set_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        keys = ("feature", "threshold", "left", "right", "value", "roots")
        trees = {key: np.asarray(arrays[key]) for key in keys}
        n = len(trees["feature"])
        if any(len(trees[key]) != n for key in keys[:5]) or (n and trees["roots"].max(initial=0) >= n):
            raise ValueError("gbdt arrays disagree in length or point outside the node table")
        self.trees, self.base = trees, float(arrays["base"])
