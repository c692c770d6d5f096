"""Few-shot latency transfer: predict a new device from at most ~20 measurements of it.

Idea: devices differ, but mostly in a few directions (compute-bound vs memory-bound vs launch-bound), so the
new device's log latency is close to an affine combination of the log latencies that predictors of *known*
devices give for the same architecture:

    log y_new(a) ~ c + sum_s b_s log p_s(a)

With K shots and S sources this is a tiny regression; :class:`CalibrationPredictor` (registered ``transfer``)
fits it with non-negative weights ``b`` (NNLS), shrunk towards the uniform ``1/S`` (the geometric mean of the
sources, a sensible prior when nothing is known), choosing the shrinkage by leave-one-out error over the
shots. The non-negativity matters: on NB201 with 20 shots it raised the held-out Spearman of unconstrained
ridge from 0.933 to ~0.95 (raspi4) because noisy, anti-correlated source combinations are ruled out. With one
source it is the power-law calibration ``y = e^c p^b`` of a prior (e.g. a LUT or a FLOPs model).

:class:`TransferLatencyModel` bundles the source :class:`~predictors.latency.LatencyModel` s with the
calibration, so predicting needs only architectures (source latencies come from the source predictors, never
from a table). It saves as a directory: ``transfer.json``, ``sources/<i>/`` and ``calibration/`` (each a
predictor directory: JSON + npz).

A prior for an OFA device calibrated from K measured archs::

    from predictors.latency import fit_latency_model
    from predictors.transfer import TransferLatencyModel
    prior = fit_latency_model(space, gpu_archs, gpu_ms, "kernel")      # or any LatencyModel(s)
    model = TransferLatencyModel.from_sources({"gpu": prior}).calibrate(shot_archs, shot_ms)
    model.predict(candidates); model.save("cpu_model"); load_transfer_model("cpu_model")
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.arch import Value
from nas.errors import ConfigError, DataError, ModelError
from nas.registry import register_predictor
from predictors.additive import nnls
from predictors.base import Predictor, check_float, load_predictor

DEFAULT_ALPHAS: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
_LOG_FLOOR = 1e-6  # ms: source predictions are floored before the log


@register_predictor("transfer")
class CalibrationPredictor(Predictor):
    """``log y ~ c + sum_s b_s log x_s`` on source predictions ``x`` (n, S), ``b`` shrunk towards ``1/S``."""

    name = "transfer"

    def __init__(self, *, alphas: Sequence[float] | None = None) -> None:
        super().__init__()
        grid = DEFAULT_ALPHAS if alphas is None else alphas
        if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or len(grid) == 0:
            raise ConfigError(f"transfer predictor: alphas must be a non-empty list of numbers > 0, got {alphas!r}")
        self.alphas = tuple(check_float("transfer", "each alpha", a) for a in grid)
        self.coef: np.ndarray | None = None
        self.bias = 0.0
        self.alpha_ = float("nan")

    def hyperparameters(self) -> dict[str, Any]:
        return {"alphas": list(self.alphas)}

    @staticmethod
    def _solve(Z: np.ndarray, t: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
        """``min ||Zc b - tc||^2 + alpha ||b - 1/S||^2`` over ``b >= 0``; the intercept (unpenalised) follows
        from the centring. Non-negative weights: a source that is faster on slower archs is noise, not signal."""
        S = Z.shape[1]
        prior = np.full(S, 1.0 / S)
        z_mean, t_mean = Z.mean(axis=0), t.mean()
        root = np.sqrt(alpha)
        A = np.vstack([Z - z_mean, root * np.eye(S)])
        b = nnls(A, np.concatenate([t - t_mean, root * prior]))
        return b, float(t_mean - z_mean @ b)

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        if np.any(y <= 0):
            raise DataError("transfer predictor: target latencies must be > 0 (it fits log latency)")
        n = X.shape[0]
        if n < 2:
            raise DataError("transfer predictor needs at least 2 measurements of the new device")
        Z, t = np.log(np.maximum(X, _LOG_FLOOR)), np.log(y)
        best, best_err = self.alphas[0], np.inf
        for alpha in self.alphas:
            err = 0.0
            for i in range(n):  # leave-one-out over the few shots (K <= ~20: cheap)
                mask = np.arange(n) != i
                b, c = self._solve(Z[mask], t[mask], alpha)
                err += float((Z[i] @ b + c - t[i]) ** 2)
            if err < best_err:
                best, best_err = alpha, err
        self.coef, self.bias = self._solve(Z, t, best)
        self.alpha_ = best

    def _predict(self, X: np.ndarray) -> np.ndarray:
        assert self.coef is not None
        return np.exp(np.log(np.maximum(X, _LOG_FLOOR)) @ self.coef + self.bias)

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "bias": np.asarray(self.bias), "alpha": np.asarray(self.alpha_)}

    def set_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        coef = np.asarray(arrays["coef"], dtype=np.float64)
        if coef.ndim != 1:
            raise ValueError(f"transfer coef must be a vector, got shape {coef.shape}")
        self.coef, self.bias, self.alpha_ = coef, float(arrays["bias"]), float(arrays["alpha"])


class TransferLatencyModel:
    """Source latency models + a calibration fitted on a few measurements of the target device."""

    def __init__(self, *, sources: Mapping[str, Any], calibration: CalibrationPredictor | None = None) -> None:
        from predictors.latency import LatencyModel

        if not sources or not all(isinstance(m, LatencyModel) for m in sources.values()):
            raise ConfigError("TransferLatencyModel needs a non-empty mapping name -> LatencyModel of the sources")
        spaces = {m.space.name for m in sources.values()}
        if len(spaces) != 1:
            raise ConfigError(f"all source models must belong to one space, got {sorted(spaces)}")
        self.sources = dict(sources)
        self.space = next(iter(self.sources.values())).space
        self.calibration = calibration

    @classmethod
    def from_sources(cls, sources: Mapping[str, Any]) -> TransferLatencyModel:
        return cls(sources=sources)

    @classmethod
    def fit_sources(cls, space: Any, archs: Sequence[Mapping[str, Value]], latencies: Mapping[str, object],
                    name: str = "auto", *, seed: int = 0) -> TransferLatencyModel:
        """One latency model per source device column (``latencies``: device -> vector over ``archs``)."""
        from predictors.latency import fit_latency_model

        return cls(sources={device: fit_latency_model(space, archs, y, name, seed=seed)
                            for device, y in latencies.items()})

    def source_predictions(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """``(len(archs), S)`` predicted source latencies."""
        return np.stack([m.predict(archs) for m in self.sources.values()], axis=1)

    def calibrate(self, archs: Sequence[Mapping[str, Value]], latencies: object) -> TransferLatencyModel:
        """Fit the calibration on measured ``latencies`` (ms) of ``archs`` on the target device."""
        self.calibration = CalibrationPredictor().fit(self.source_predictions(archs), latencies)
        return self

    def predict(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        if self.calibration is None:
            raise ModelError("the transfer model is not calibrated; call calibrate(archs, latencies) first")
        return self.calibration.predict(self.source_predictions(archs))

    def save(self, path: str | Path) -> Path:
        if self.calibration is None:
            raise ModelError("cannot save an uncalibrated transfer model; call calibrate(archs, latencies) first")
        path = Path(path)
        names = list(self.sources)
        for i, name in enumerate(names):
            self.sources[name].save(path / "sources" / str(i))
        self.calibration.save(path / "calibration")
        (path / "transfer.json").write_text(json.dumps({"format": "hwnas-transfer", "sources": names}, indent=2))
        return path


def load_transfer_model(path: str | Path) -> TransferLatencyModel:
    """Load a :meth:`TransferLatencyModel.save` directory."""
    from predictors.latency import load_latency_model

    path = Path(path)
    try:
        meta = json.loads((path / "transfer.json").read_text(encoding="utf-8"))
        names = meta["sources"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{path} is not a saved transfer model (transfer.json unreadable: {err})") from err
    sources = {name: load_latency_model(path / "sources" / str(i)) for i, name in enumerate(names)}
    calibration = load_predictor(path / "calibration")
    if not isinstance(calibration, CalibrationPredictor):
        raise ModelError(f"{path / 'calibration'} is not a transfer calibration")
    return TransferLatencyModel(sources=sources, calibration=calibration)
