"""Ridge regression with standardised features and alpha chosen by exact leave-one-out cross-validation.

Why ridge: on one-hot architecture encodings latency is close to a sum of per-choice costs, so a linear
model is a strong, fast, deterministic baseline. With ``log_target=True`` it fits ``log y``: latency is
multiplicative (a wider layer scales the cost of what follows), and errors become relative.

Leave-one-out error comes in closed form from one SVD of the standardised features ``Z = U S V^T``: for
ridge with an unpenalised intercept the hat matrix is ``1/n + U diag(s^2 / (s^2 + alpha)) U^T`` and the LOO
residual is ``r_i / (1 - h_ii)``, so every alpha of the grid costs O(n d), no refits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nas.errors import ConfigError, DataError
from nas.registry import register_predictor
from predictors.base import Predictor, check_bool, check_float

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 4, 15))


@register_predictor("ridge")
class RidgePredictor(Predictor):
    """``y ~ b + sum_j w_j (x_j - mean_j) / std_j`` (or ``log y``), alpha picked from ``alphas`` by LOO CV."""

    name = "ridge"

    def __init__(self, *, alphas: Sequence[float] | None = None, log_target: bool = False) -> None:
        super().__init__()
        grid = DEFAULT_ALPHAS if alphas is None else alphas
        if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or len(grid) == 0:
            raise ConfigError(f"ridge predictor: alphas must be a non-empty list of positive numbers, got {alphas!r}")
        self.alphas = tuple(check_float("ridge", "each alpha", a) for a in grid)
        self.log_target = check_bool("ridge", "log_target", log_target)
        # fitted state
        self.x_mean: np.ndarray | None = None
        self.x_scale: np.ndarray | None = None
        self.coef: np.ndarray | None = None
        self.t_mean = 0.0
        self.alpha_: float | None = None
        self.cv_mse: np.ndarray | None = None  # LOO mean squared error per alpha (on the fitted, maybe log, scale)

    def hyperparameters(self) -> dict[str, Any]:
        return {"alphas": list(self.alphas), "log_target": self.log_target}

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        n = X.shape[0]
        if n < 2:
            raise DataError("ridge predictor needs at least 2 samples (leave-one-out selects alpha)")
        if self.log_target and np.any(y <= 0):
            raise DataError("ridge predictor with log_target=true needs all targets > 0 (e.g. latency in ms)")
        t = np.log(y) if self.log_target else y
        x_mean = X.mean(axis=0)
        x_scale = X.std(axis=0)
        x_scale[x_scale == 0] = 1.0  # constant columns (a choice never seen) standardise to 0 and get no weight
        Z = (X - x_mean) / x_scale
        t_mean = float(t.mean())
        tc = t - t_mean

        U, s, Vt = np.linalg.svd(Z, full_matrices=False)
        Uty = U.T @ tc
        s2 = s**2
        U2 = U**2
        cv_mse = np.empty(len(self.alphas))
        for i, alpha in enumerate(self.alphas):
            shrink = s2 / (s2 + alpha)
            residual = tc - U @ (shrink * Uty)
            leverage = U2 @ shrink + 1.0 / n
            # leverage -> 1 means the point is fitted exactly and its LOO error is undefined: treat as huge.
            cv_mse[i] = np.mean((residual / np.maximum(1.0 - leverage, 1e-12)) ** 2)
        best = int(np.argmin(cv_mse))
        alpha = self.alphas[best]
        self.coef = Vt.T @ (s / (s2 + alpha) * Uty)
        self.x_mean, self.x_scale, self.t_mean = x_mean, x_scale, t_mean
        self.alpha_, self.cv_mse = alpha, cv_mse

    def _predict(self, X: np.ndarray) -> np.ndarray:
        assert self.coef is not None and self.x_mean is not None and self.x_scale is not None
        t = self.t_mean + ((X - self.x_mean) / self.x_scale) @ self.coef
        return np.exp(t) if self.log_target else t

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {
            "x_mean": self.x_mean,
            "x_scale": self.x_scale,
            "coef": self.coef,
            "t_mean": np.asarray(self.t_mean),
            "alpha": np.asarray(self.alpha_),
            "cv_mse": self.cv_mse,
        }

    def set_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        x_mean = np.asarray(arrays["x_mean"], dtype=np.float64)
        x_scale = np.asarray(arrays["x_scale"], dtype=np.float64)
        coef = np.asarray(arrays["coef"], dtype=np.float64)
        if not (x_mean.ndim == 1 and x_mean.shape == x_scale.shape == coef.shape):
            raise ValueError(
                f"ridge arrays disagree: x_mean {x_mean.shape}, x_scale {x_scale.shape}, coef {coef.shape}"
            )
        self.x_mean, self.x_scale, self.coef = x_mean, x_scale, coef
        self.t_mean = float(arrays["t_mean"])
        self.alpha_ = float(arrays["alpha"])
        self.cv_mse = np.asarray(arrays["cv_mse"], dtype=np.float64)
