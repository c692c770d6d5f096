"""Non-negative additive latency models: ``latency ~ b + sum_j w_j x_j`` with ``w >= 0, b >= 0``.

Why this shape: a network's latency is the sum of the latencies of what it executes. When the features count
what is executed (one-hot blocks per position, per-kernel-type FLOPs / bytes / launches), every weight is a
cost per unit and cannot be negative; the constraint removes the sign flips that plain least squares makes on
correlated columns, and it is what keeps such models sane when extrapolating.

The fit minimises the squared *relative* error ``sum_i ((pred_i - y_i) / y_i)^2`` (rows weighted by
``1 / y``): latencies span more than an order of magnitude, and a search cares about relative differences.
Targets are floored at ``floor_fraction * median(y)`` for the weight only, so a ~0 ms measurement (an NB201 cell
without an input-output path) cannot dominate the fit. A small ridge term (on unit-norm columns) makes the
solution unique when there are fewer rows than columns.

The solver is Lawson & Hanson's active-set NNLS (1974), written here in numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nas.errors import DataError
from predictors.base import Predictor, check_bool, check_float


def nnls(A: np.ndarray, b: np.ndarray, *, max_iter: int | None = None, tol: float = 1e-10) -> np.ndarray:
    """``argmin_x ||A x - b||_2`` subject to ``x >= 0`` (Lawson-Hanson active set).

    Works on the normal equations ``A^T A``, ``A^T b`` (computed once), so each active-set step solves a
    k x k system instead of a least-squares problem over all rows; callers add a ridge term, which keeps
    ``A^T A`` well conditioned."""
    G, h = A.T @ A, A.T @ b
    n = G.shape[0]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = h - G @ x
    max_iter = 3 * n + 30 if max_iter is None else max_iter
    for _ in range(max_iter):
        candidates = ~passive & (w > tol * max(1.0, float(np.abs(h).max(initial=0.0))))
        if not candidates.any():
            break
        passive[int(np.argmax(np.where(candidates, w, -np.inf)))] = True
        while True:
            z = np.zeros(n)
            idx = np.flatnonzero(passive)
            try:
                z[idx] = np.linalg.solve(G[np.ix_(idx, idx)], h[idx])
            except np.linalg.LinAlgError:  # singular without a ridge term: fall back to least squares
                z[idx] = np.linalg.lstsq(G[np.ix_(idx, idx)], h[idx], rcond=None)[0]
            if np.all(z[idx] > 0):
                x = z
                break
            # Step back towards x until the first passive variable hits zero, then drop it.
            bad = passive & (z <= 0)
            alpha = np.min(x[bad] / (x[bad] - z[bad]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = h - G @ x
    return x


class AdditivePredictor(Predictor):
    """The shared implementation of the non-negative additive models (``lut``, ``kernel``, ``flops``, ``params``).

    Subclasses only set ``name`` and register; they differ in the features they are meant for.
    """

    def __init__(self, *, ridge: float = 1e-6, floor_fraction: float = 0.05, nonnegative: bool = True,
                 intercept: bool = True) -> None:
        super().__init__()
        owner = self.name or "additive"
        self.ridge = check_float(owner, "ridge", ridge, allow_zero=True)
        self.floor_fraction = check_float(owner, "floor_fraction", floor_fraction, allow_zero=True)
        self.nonnegative = check_bool(owner, "nonnegative", nonnegative)
        self.intercept = check_bool(owner, "intercept", intercept)
        self.coef: np.ndarray | None = None
        self.bias = 0.0

    def hyperparameters(self) -> dict[str, Any]:
        return {"ridge": self.ridge, "floor_fraction": self.floor_fraction, "nonnegative": self.nonnegative,
                "intercept": self.intercept}

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.nonnegative and np.any(y < 0):
            raise DataError(f"{self.name} predictor: latencies must be >= 0 for a non-negative additive model")
        n, d = X.shape
        design = np.hstack([X, np.ones((n, 1))]) if self.intercept else X
        scale_y = np.abs(y)
        floor = max(self.floor_fraction * float(np.median(scale_y)), 1e-12)
        weight = 1.0 / np.maximum(scale_y, floor)
        A = design * weight[:, None]
        b = y * weight
        norms = np.linalg.norm(A, axis=0)
        norms[norms == 0] = 1.0  # a column never used gets weight 0
        A = A / norms
        if self.ridge > 0:
            A = np.vstack([A, np.sqrt(self.ridge * n) * np.eye(A.shape[1])])
            b = np.concatenate([b, np.zeros(A.shape[1])])
        if self.nonnegative:
            sol = nnls(A, b)
        else:
            sol = np.linalg.lstsq(A, b, rcond=None)[0]
        sol = sol / norms
        self.coef = sol[:d].copy()
        self.bias = float(sol[d]) if self.intercept else 0.0

    def _predict(self, X: np.ndarray) -> np.ndarray:
        assert self.coef is not None
        return X @ self.coef + self.bias

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "bias": np.asarray(self.bias)}

    def set_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        coef = np.asarray(arrays["coef"], dtype=np.float64)
        if coef.ndim != 1:
            raise ValueError(f"{self.name} coef must be a vector, got shape {coef.shape}")
        self.coef = coef
        self.bias = float(arrays["bias"])
