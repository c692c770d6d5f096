"""Histogram gradient-boosted trees in numpy: the fast whole-network latency regressor (``hgbdt``).

Why another booster: :mod:`predictors.gbdt` searches exact splits feature by feature in Python, which takes
tens of seconds for 1000 architectures x 150 features x a few hundred trees; a benchmark over dozens of
device columns needs it in about a second. Here every feature is binned once (at most ``max_bins`` quantile
bins; one-hot and count features keep their few distinct values exactly), and each tree node finds its best
split over *all* features at once from one ``bincount`` of residual sums per (feature, bin).

The model is least-squares boosting on ``log y`` by default (latency errors are relative), with shrinkage and
row subsampling; trees are stored as flat arrays (feature, threshold, left, right, value), so a fitted model
saves to npz and loads back bit-identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nas.errors import ConfigError, DataError
from nas.registry import register_predictor
from predictors.base import Predictor, check_bool, check_float, check_int

_LEAF = -1


def _bin_edges(X: np.ndarray, max_bins: int) -> list[np.ndarray]:
    """Per feature, the split thresholds: midpoints between distinct values, or between quantiles."""
    edges = []
    for col in X.T:
        values = np.unique(col)
        if values.size > max_bins:
            values = np.unique(np.quantile(col, np.linspace(0, 1, max_bins)))
        edges.append((values[:-1] + values[1:]) / 2.0)
    return edges


@register_predictor("hgbdt")
class HistGBDTPredictor(Predictor):
    """``y ~ exp(base + lr * sum_t tree_t(x))`` (or without ``exp`` when ``log_target`` is false)."""

    name = "hgbdt"

    def __init__(self, *, n_trees: int = 400, learning_rate: float = 0.05, max_depth: int = 4,
                 min_samples_leaf: int = 5, subsample: float = 0.8, max_bins: int = 32, l2: float = 1.0,
                 seed: int = 0, log_target: bool = True) -> None:
        super().__init__()
        self.n_trees = check_int("hgbdt", "n_trees", n_trees)
        self.learning_rate = check_float("hgbdt", "learning_rate", learning_rate)
        self.max_depth = check_int("hgbdt", "max_depth", max_depth)
        self.min_samples_leaf = check_int("hgbdt", "min_samples_leaf", min_samples_leaf)
        self.subsample = check_float("hgbdt", "subsample", subsample)
        if self.subsample > 1:
            raise ConfigError(f"hgbdt predictor: subsample must be in (0, 1], got {subsample}")
        self.max_bins = check_int("hgbdt", "max_bins", max_bins, minimum=2)
        self.l2 = check_float("hgbdt", "l2", l2, allow_zero=True)
        self.seed = check_int("hgbdt", "seed", seed, minimum=0)
        self.log_target = check_bool("hgbdt", "log_target", log_target)
        self.base = 0.0
        self.nodes: dict[str, np.ndarray] | None = None

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_trees": self.n_trees, "learning_rate": self.learning_rate, "max_depth": self.max_depth,
                "min_samples_leaf": self.min_samples_leaf, "subsample": self.subsample, "max_bins": self.max_bins,
                "l2": self.l2, "seed": self.seed, "log_target": self.log_target}

    # ------------------------------------------------------------------ fit
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.log_target and np.any(y <= 0):
            raise DataError("hgbdt predictor with log_target=true needs all targets > 0 (e.g. latency in ms)")
        t = np.log(y) if self.log_target else y
        n, d = X.shape
        edges = _bin_edges(X, self.max_bins)
        n_bins = max(len(e) for e in edges) + 1
        # bins[i, j]: number of thresholds of feature j below X[i, j]; "x > threshold_b" <=> bin > b
        bins = np.stack([np.searchsorted(e, X[:, j]) for j, e in enumerate(edges)], axis=1)
        flat = bins + (np.arange(d) * n_bins)[None, :]
        thresholds = np.full((d, n_bins), np.inf)
        for j, e in enumerate(edges):
            thresholds[j, : len(e)] = e
        rng = np.random.default_rng(self.seed)
        self.base = float(t.mean())
        pred = np.full(n, self.base)
        feature, threshold, left, right, value = [], [], [], [], []
        roots = []
        for _ in range(self.n_trees):
            residual = t - pred
            rows = np.sort(rng.choice(n, size=max(2, int(round(self.subsample * n))), replace=False)) \
                if self.subsample < 1 else np.arange(n)
            roots.append(len(feature))
            self._grow(rows, residual, flat, bins, thresholds, d, n_bins, 0, feature, threshold, left, right, value)
            pred += self.learning_rate * self._predict_tree(X, roots[-1], feature, threshold, left, right, value)
        self.nodes = {"feature": np.array(feature, dtype=np.int64), "threshold": np.array(threshold),
                      "left": np.array(left, dtype=np.int64), "right": np.array(right, dtype=np.int64),
                      "value": np.array(value), "roots": np.array(roots, dtype=np.int64)}

    def _grow(self, rows: np.ndarray, r: np.ndarray, flat: np.ndarray, bins: np.ndarray, thresholds: np.ndarray,
              d: int, n_bins: int, depth: int, feature: list, threshold: list, left: list, right: list,
              value: list) -> int:
        node = len(feature)
        feature.append(_LEAF)
        threshold.append(0.0)
        left.append(_LEAF)
        right.append(_LEAF)
        rr = r[rows]
        total, count = float(rr.sum()), rows.size
        value.append(total / (count + self.l2))
        if depth >= self.max_depth or count < 2 * self.min_samples_leaf:
            return node
        idx = flat[rows].ravel()
        sums = np.bincount(idx, weights=np.repeat(rr, d), minlength=d * n_bins).reshape(d, n_bins)
        counts = np.bincount(idx, minlength=d * n_bins).reshape(d, n_bins)
        # left side of split b = bins 0..b
        ls, lc = np.cumsum(sums, axis=1)[:, :-1], np.cumsum(counts, axis=1)[:, :-1]
        rs, rc = total - ls, count - lc
        gain = ls**2 / (lc + self.l2) + rs**2 / (rc + self.l2) - total**2 / (count + self.l2)
        ok = (lc >= self.min_samples_leaf) & (rc >= self.min_samples_leaf) & np.isfinite(thresholds[:, :-1])
        gain = np.where(ok, gain, -np.inf)
        best = int(np.argmax(gain))
        if not np.isfinite(gain.flat[best]) or gain.flat[best] <= 1e-12:
            return node
        j, b = divmod(best, n_bins - 1)
        goes_left = bins[rows, j] <= b
        feature[node], threshold[node] = j, float(thresholds[j, b])
        left[node] = self._grow(rows[goes_left], r, flat, bins, thresholds, d, n_bins, depth + 1,
                                feature, threshold, left, right, value)
        right[node] = self._grow(rows[~goes_left], r, flat, bins, thresholds, d, n_bins, depth + 1,
                                 feature, threshold, left, right, value)
        return node

    @staticmethod
    def _predict_tree(X: np.ndarray, root: int, feature, threshold, left, right, value) -> np.ndarray:
        node = np.full(X.shape[0], root, dtype=np.int64)
        feature = np.asarray(feature)
        threshold, left, right = np.asarray(threshold), np.asarray(left), np.asarray(right)
        while True:
            f = feature[node]
            inner = f != _LEAF
            if not inner.any():
                return np.asarray(value)[node]
            rows = np.flatnonzero(inner)
            go_left = X[rows, f[rows]] <= threshold[node[rows]]
            node[rows] = np.where(go_left, left[node[rows]], right[node[rows]])

    # ------------------------------------------------------------------ predict / state
    def _predict(self, X: np.ndarray) -> np.ndarray:
        assert self.nodes is not None
        nd = self.nodes
        total = np.full(X.shape[0], self.base)
        for root in nd["roots"]:
            total += self.learning_rate * self._predict_tree(X, int(root), nd["feature"], nd["threshold"],
                                                             nd["left"], nd["right"], nd["value"])
        return np.exp(total) if self.log_target else total

    def get_arrays(self) -> dict[str, np.ndarray]:
        assert self.nodes is not None
        return {**self.nodes, "base": np.asarray(self.base)}

    def set_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        nodes = {key: np.asarray(arrays[key]) for key in ("feature", "threshold", "left", "right", "value", "roots")}
        size = nodes["feature"].shape
        if any(nodes[k].shape != size for k in ("threshold", "left", "right", "value")):
            raise ValueError("hgbdt node arrays have different lengths")
        if nodes["roots"].size and (nodes["roots"].max() >= size[0] or nodes["roots"].min() < 0):
            raise ValueError("hgbdt tree roots point outside the node arrays")
        self.nodes = nodes
        self.base = float(arrays["base"])
