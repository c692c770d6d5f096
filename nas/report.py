"""Write a run's results: ``results.json`` and a Pareto plot a person would rather look at than read."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def write_json(path: Path, payload: Mapping) -> Path:
    """Write JSON atomically (temp file + rename) so a crash never leaves a truncated results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _jsonable(value: object) -> object:
    """Numpy scalars/arrays to Python; non-finite floats to None (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def plot_pareto(
    path: Path,
    *,
    history: Sequence[Mapping],
    pareto: Sequence[Mapping],
    best: Mapping | None,
    budget_ms: float | None,
    title: str,
    accuracy_scale: float = 100.0,
    history_label: str = "scored by predictors",
) -> Path:
    """Accuracy vs latency: every scored arch, the front (by where its latencies came from), the budget and the pick.

    ``accuracy_scale`` turns the accuracies into percent (100 for fractions, 1 for tables already in percent).
    """
    import matplotlib

    matplotlib.use("Agg")  # headless machines; set here, not at import, to avoid a global side effect
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    if history:
        ax.scatter(
            [h["latency_ms"] for h in history],
            [accuracy_scale * h["accuracy"] for h in history],
            s=6,
            c="#b8c4d6",
            label=f"{history_label} ({len(history)})",
            zorder=1,
        )
    if pareto:
        xs = [p["latency_ms"] for p in pareto]
        ys = [accuracy_scale * p["accuracy"] for p in pareto]
        ax.step(xs, ys, where="post", color="#1f5fa8", lw=1.5, zorder=2)
        for source in sorted({p.get("latency_source", "predicted") for p in pareto}):
            points = [p for p in pareto if p.get("latency_source", "predicted") == source]
            filled = source in ("measured", "table")
            ax.scatter([p["latency_ms"] for p in points], [accuracy_scale * p["accuracy"] for p in points],
                       s=36 if filled else 28, c="#1f5fa8" if filled else "white", edgecolors="#1f5fa8",
                       label=f"Pareto front ({source} latency)", zorder=4 if filled else 3)
    if budget_ms is not None:
        ax.axvline(budget_ms, color="#c0392b", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    if best is not None:
        latency = best.get("measured_latency_ms") or best.get("latency_ms")
        ax.scatter([latency], [accuracy_scale * best["accuracy"]], marker="*", s=260, c="#e67e22",
                   edgecolors="black", label="chosen", zorder=5)
    values = [accuracy_scale * h["accuracy"] for h in history] + [accuracy_scale * p["accuracy"] for p in pareto]
    values = [v for v in values if v is not None and math.isfinite(v)]
    if len(values) > 20:  # zoom on where the trade-off is: degenerate networks (e.g. 10 %) would squash it
        low, high = float(np.percentile(values, 5)), max(values)
        ax.set_ylim(bottom=low - 0.1 * (high - low), top=high + 0.05 * (high - low))
    ax.set_xlabel("latency on target (ms, batch 1)")
    ax.set_ylabel("accuracy (%)" if accuracy_scale == 100.0 else "accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
