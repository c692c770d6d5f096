"""The two pictures of a channel run: where the networks landed (``pareto.png``) and what was pruned
(``channels.png``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nas.report import save_latency_plot

# One colour per finalised network, the same in both plots.
_COLOURS = {"base": "#2c3e50", "best": "#e67e22", "uniform": "#27ae60", "l1": "#8e44ad"}


def _finalised(results: Mapping) -> dict[str, Mapping]:
    return {"base": results["base"], "best": results["best"], **{k: v for k, v in results["baselines"].items()}}


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless machines; set here, not at import, to avoid a global side effect
    import matplotlib.pyplot as plt

    return plt


def plot_landing(path: Path, results: Mapping, *, title: str) -> dict:
    """Accuracy vs latency: the search's configurations (val accuracy before fine-tuning, predicted latency),
    the re-measured candidates, and each finalised network before (hollow) and after (filled) fine-tuning at
    its measured latency, with the budget."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    history = results.get("history") or []
    if history:
        ax.scatter([h["latency_ms"] for h in history], [100 * h["accuracy"] for h in history], s=6, c="#b8c4d6",
                   label=f"searched: val acc before fine-tuning, predicted ms ({len(history)})", zorder=1)
    cands = results.get("candidates") or []
    if cands:
        ax.scatter([c["latency_ms"] for c in cands], [100 * c["accuracy"] for c in cands], s=22, c="#1f5fa8",
                   label=f"candidates, {cands[0]['latency_source']} ms ({len(cands)})", zorder=2)
    budget = (results.get("constraint") or {}).get("latency_ms")
    if budget is not None:
        ax.axvline(budget, color="#c0392b", ls="--", lw=1, label=f"budget {budget:.3g} ms")
    for name, entry in _finalised(results).items():
        colour, x = _COLOURS[name], entry["latency_ms"]
        if entry.get("test_accuracy_before_finetune") is not None:
            ax.scatter([x], [100 * entry["test_accuracy_before_finetune"]], s=60, facecolors="white",
                       edgecolors=colour, zorder=4)
        ax.scatter([x], [100 * entry["test_accuracy"]], s=180 if name == "best" else 70,
                   marker="*" if name == "best" else "o", c=colour, edgecolors="black", zorder=5,
                   label=f"{name}: test {100 * entry['test_accuracy']:.2f} % at {x:.3g} ms")
    save_latency_plot(fig, ax, path, title=title, ylabel="accuracy (%) (hollow: test before fine-tuning)",
                      legend_fontsize=7)
    best = results["best"]
    return {"file": path.name, "chosen": {"latency_ms": best["latency_ms"], "accuracy": best["test_accuracy"],
                                          "label": "best (test accuracy after fine-tuning)"}}


def plot_channels(path: Path, space, results: Mapping, *, title: str) -> dict:
    """Kept fraction of every searchable group: the chosen network against the uniform baseline's."""
    plt = _plt()
    labels = list(space.choices())
    channels = {g.label: g.channels for g in space.groups}
    fig, ax = plt.subplots(figsize=(max(7.5, 0.32 * len(labels)), 4), dpi=120)
    width = 0.4
    for offset, name in ((-width / 2, "best"), (width / 2, "uniform")):
        entry = results["best"] if name == "best" else results["baselines"]["uniform"]
        kept = [entry["arch"][label] / channels[label] for label in labels]
        ax.bar([i + offset for i in range(len(labels))], kept, width, color=_COLOURS[name],
               label=f"{name} ({100 * entry['keep_ratio']:.0f} % of channels, {entry['latency_ms']:.3g} ms)")
    ax.set_xticks(range(len(labels)), [f"{label}\n{channels[label]}" for label in labels], fontsize=6)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("kept fraction of the group's channels")
    ax.set_xlabel("channel group (base width), input to output")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return {"file": path.name, "groups": len(labels)}
