"""Regression quality of a predictor: error size (RMSE, MAPE, within-x %) and ranking (Spearman, Kendall).

A search uses a latency or accuracy predictor to *rank* candidates, so rank correlations matter as much as
the error size. Everything here is numpy only; ties are handled (average ranks, Kendall tau-b).
"""

from __future__ import annotations

import math

import numpy as np

from nas.errors import DataError

# Kendall tau is computed from pairwise sign products in row blocks of about this many pairs, which keeps
# memory bounded (~32 MB per block) while staying vectorised: 15,625 NB201 archs take about a second.
_PAIR_BLOCK = 4_000_000


def _check_pair(y_true: object, y_pred: object) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise DataError(f"y_true and y_pred must be vectors of equal length, got shapes {a.shape} and {b.shape}")
    if a.size == 0:
        raise DataError("cannot compute metrics on zero samples")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise DataError("y_true and y_pred must not contain NaN or infinite values")
    return a, b


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the average of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start index of each run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    average = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    return float(np.dot(da, db) / denom) if denom > 0 else float("nan")


def spearman(y_true: object, y_pred: object) -> float:
    """Spearman's rho (Pearson correlation of average ranks); NaN when either side is constant."""
    a, b = _check_pair(y_true, y_pred)
    return _pearson(rankdata(a), rankdata(b)) if a.size > 1 else float("nan")


def _tied_pairs(values: np.ndarray) -> int:
    _, counts = np.unique(values, return_counts=True)
    return int(np.sum(counts * (counts - 1) // 2))


def kendall_tau_b(y_true: object, y_pred: object) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_a)(n0 - ties_b)); NaN if a side is constant."""
    a, b = _check_pair(y_true, y_pred)
    n = a.size
    n0 = n * (n - 1) // 2
    denom = math.sqrt(float(n0 - _tied_pairs(a)) * float(n0 - _tied_pairs(b)))
    if denom == 0:
        return float("nan")
    # sum over ordered pairs (i, j) of sign(a_i - a_j) * sign(b_i - b_j) counts each unordered pair twice;
    # tied pairs contribute 0, so the total is 2 * (concordant - discordant).
    rows = max(1, _PAIR_BLOCK // n)
    total = 0
    for start in range(0, n, rows):
        sa = np.sign(a[start : start + rows, None] - a[None, :]).astype(np.int8)
        sb = np.sign(b[start : start + rows, None] - b[None, :]).astype(np.int8)
        total += int(np.sum(sa * sb, dtype=np.int64))
    return float(total // 2) / denom


def regression_metrics(y_true: object, y_pred: object) -> dict[str, float | int]:
    """Error and ranking metrics of predictions ``y_pred`` against ``y_true``.

    - ``rmse``: root mean squared error, in the unit of y;
    - ``mape``: mean absolute percentage error, **in percent** (NaN if any ``y_true`` is 0);
    - ``within_5pct`` / ``within_10pct``: fraction (0..1) of samples with ``|pred - true| <= 5 % (10 %) of |true|``;
    - ``spearman``, ``kendall`` (tau-b): rank correlations, NaN for fewer than 2 samples or a constant side;
    - ``n``: number of samples.
    """
    a, b = _check_pair(y_true, y_pred)
    abs_err = np.abs(b - a)
    scale = np.abs(a)
    mape = float(np.mean(abs_err / scale) * 100.0) if np.all(scale > 0) else float("nan")
    return {
        "rmse": float(np.sqrt(np.mean(abs_err**2))),
        "mape": mape,
        "within_5pct": float(np.mean(abs_err <= 0.05 * scale)),
        "within_10pct": float(np.mean(abs_err <= 0.10 * scale)),
        "spearman": spearman(a, b),
        "kendall": kendall_tau_b(a, b) if a.size > 1 else float("nan"),
        "n": int(a.size),
    }


def latency_metrics(y_true: object, y_pred: object, *, floor_fraction: float = 0.05) -> dict[str, float | int]:
    """The latency report: ``rmse_ms``, ``mape`` (percent), ``within_5pct``, ``within_10pct``, ``spearman``,
    ``kendall``, ``n_test``.

    Relative errors divide by ``max(|y_true|, floor_fraction * median(|y_true|))``: a measurement near 0 ms
    (NAS-Bench-201 cells without an input-output path measure ~0.01 ms) then counts as an absolute error on
    the scale of 5 % of a typical latency instead of making MAPE explode; every other row is unaffected.
    """
    a, b = _check_pair(y_true, y_pred)
    abs_err = np.abs(b - a)
    scale = np.maximum(np.abs(a), floor_fraction * float(np.median(np.abs(a))))
    rel = abs_err / np.where(scale > 0, scale, 1.0)
    return {
        "rmse_ms": float(np.sqrt(np.mean(abs_err**2))),
        "mape": float(np.mean(rel) * 100.0),
        "within_5pct": float(np.mean(rel <= 0.05)),
        "within_10pct": float(np.mean(rel <= 0.10)),
        "spearman": spearman(a, b),
        "kendall": kendall_tau_b(a, b) if a.size > 1 else float("nan"),
        "n_test": int(a.size),
    }
