"""The plots of a one-shot search: the architecture probabilities over epochs, and the search's course."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from search_spaces.relax import Decision

#: Options drawn per decision (the most probable at the end); the rest are one grey band.
_SHOWN = 5


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless machines; set here, not at import, to avoid a global side effect
    import matplotlib.pyplot as plt

    return plt


def plot_alphas(path: Path, decisions: Sequence[Decision], history: Sequence[Mapping], *, title: str) -> dict:
    """One small panel per decision: the softmax of its architecture parameters after each epoch, the
    options most probable at the end drawn and named, the others summed in grey."""
    plt = _pyplot()
    n = len(decisions)
    cols = min(6, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.9 * rows + 0.6), dpi=110, squeeze=False,
                             sharex=True, sharey=True)
    epochs = [h["epoch"] for h in history]
    palette = plt.get_cmap("tab10" if max(len(d.options) for d in decisions) <= 10 else "tab20").colors
    for d, decision in enumerate(decisions):
        ax = axes[d // cols][d % cols]
        series = [[h["probs"][d][o] for h in history] for o in range(len(decision.options))]
        top = sorted(range(len(series)), key=lambda o: -series[o][-1])[:_SHOWN]
        rest = [sum(series[o][e] for o in range(len(series)) if o not in top) for e in range(len(epochs))]
        if any(v > 0 for v in rest):
            ax.fill_between(epochs, 0, rest, color="#d5d8dc", lw=0, label="others")
        for o in top:  # an option keeps its colour in every panel
            ax.plot(epochs, series[o], lw=1.3, label=decision.options[o], color=palette[o % len(palette)])
        ax.set_title(decision.name, fontsize=7)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="upper left", frameon=False)
        ax.grid(alpha=0.3)
    for d in range(n, rows * cols):
        axes[d // cols][d % cols].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel("probability", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return {"file": path.name, "decisions": n, "epochs": len(history)}


def plot_search(path: Path, history: Sequence[Mapping], *, budget: float | None, unit: str | None,
                title: str) -> dict:
    """Accuracy of the supernet on its two halves of the training split per epoch; with a cost, the derived
    network's cost, the expected cost, the budget and lambda."""
    plt = _pyplot()
    with_cost = unit is not None and all("derived_cost" in h for h in history)
    fig, axes = plt.subplots(1, 2 if with_cost else 1, figsize=(11 if with_cost else 6, 4), dpi=110, squeeze=False)
    epochs = [h["epoch"] for h in history]
    ax = axes[0][0]
    ax.plot(epochs, [100 * h["train_acc"] for h in history], label="weights half (train)")
    ax.plot(epochs, [100 * h["arch_acc"] for h in history], label="architecture half (val)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("supernet accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if with_cost:
        ax = axes[0][1]
        ax.plot(epochs, [h["derived_cost"] for h in history], marker="o", ms=3, label="derived network")
        ax.plot(epochs, [h["expected_cost"] for h in history], ls=":", label="expected (under the probabilities)")
        if budget is not None:
            ax.axhline(budget, color="#c0392b", ls="--", lw=1, label=f"budget {budget:.4g} {unit}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"cost ({unit})")
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        twin.plot(epochs, [h["lambda"] for h in history], color="#7f8c8d", lw=1, label="lambda")
        twin.set_ylabel("lambda", color="#7f8c8d")
        lines = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return {"file": path.name, "epochs": len(history), "with_cost": with_cost}
