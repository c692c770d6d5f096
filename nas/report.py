"""Write a run's results: ``results.json``, a Pareto plot a person would rather look at than read, and the
console summary printed before ``results: PATH`` (:func:`summarize`, a function of ``results.json`` alone)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nas.choice import rule_words


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
) -> dict:
    """Accuracy vs latency: every scored arch, the front (by where its latencies came from), the budget and the pick.

    ``accuracy_scale`` turns the accuracies into percent (100 for fractions, 1 for tables already in percent).
    The chosen point is a star on the front line, labelled with its choice rule (``best["choice_rule"]``).
    Returns a record of what was drawn (``results.json`` keeps it under ``plot``): the file name, the number
    of front points and the star's coordinates as plotted, its label and whether it lies on a front point.
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
    chosen = None
    if best is not None:
        # The latency the choice was made on (a point of the front), not the exported file's re-measurement,
        # so the star sits on the front line.
        label = f"chosen: {rule_words(best.get('choice_rule'))}"
        star = ax.scatter([best["latency_ms"]], [accuracy_scale * best["accuracy"]], marker="*", s=260,
                          c="#e67e22", edgecolors="black", label=label, zorder=5)
        x, y = (float(v) for v in star.get_offsets()[0])
        ax.annotate(f"{label}\n{x:.3g} ms, {y:.2f}" + (" %" if accuracy_scale == 100.0 else ""), (x, y),
                    xytext=(12, -28), textcoords="offset points", fontsize=8, zorder=6,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
                    arrowprops={"arrowstyle": "-", "color": "#7f8c8d", "lw": 0.8})
        on_front = any(math.isclose(x, p["latency_ms"], rel_tol=1e-9)
                       and math.isclose(y, accuracy_scale * p["accuracy"], rel_tol=1e-9) for p in pareto)
        chosen = {"latency_ms": x, "accuracy": y / accuracy_scale, "label": label, "on_front": on_front}
    values = [accuracy_scale * h["accuracy"] for h in history] + [accuracy_scale * p["accuracy"] for p in pareto]
    values = [v for v in values if v is not None and math.isfinite(v)]
    if len(values) > 20:  # zoom on where the trade-off is: degenerate networks (e.g. 10 %) would squash it
        low, high = float(np.percentile(values, 5)), max(values)
        ax.set_ylim(bottom=low - 0.1 * (high - low), top=high + 0.05 * (high - low))
    save_latency_plot(fig, ax, path, title=title,
                      ylabel="accuracy (%)" if accuracy_scale == 100.0 else "accuracy")
    return {"file": path.name, "front_points": len(pareto), "chosen": chosen}


def save_latency_plot(fig, ax, path: Path, *, title: str, ylabel: str, legend_fontsize: int = 8) -> None:
    """Label an accuracy-against-latency plot the way every run's plots are labelled, save it and close it."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("latency on target (ms, batch 1)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_fontsize, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def run_files(run_dir: Path, *names: str) -> list[str]:
    """The files a run wrote, relative to ``run_dir``: ``names`` that exist (``results.json`` is listed even though
    it is written last) and Hydra's copy of the config."""
    listed = [n for n in names if n == "results.json" or (run_dir / n).is_file()]
    hydra_config = Path(".hydra") / "config.yaml"
    if (run_dir / hydra_config).is_file():
        listed.append(str(hydra_config))
    return listed


def summarize(results: Mapping) -> str:
    """The console summary of a run, from its ``results.json`` alone: the chosen network in the space's public
    form, its accuracy, its latency with source and spread, why it was chosen and the files written.

    Works for both layouts: a supernet run (accuracy on val and test) and a tabular run (the table's accuracy).
    """
    best = results["best"]
    tabular = (results.get("evaluator") or {}).get("evaluator") == "tabular"
    public = best.get("public", best.get("arch_str"))
    arch = public if isinstance(public, str) else json.dumps(public, separators=(",", ":"))
    lines = [f"chosen network ({results.get('space')} on {results.get('target')}, "
             f"{rule_words(best.get('choice_rule'))}):",
             f"  arch      {arch}  (id {best.get('arch_id')})"]
    if best.get("description"):
        lines.append(f"  layers    {best['description']}")
    lines.append(f"  accuracy  {_accuracy_text(results, best, tabular)}")
    lines.append(f"  latency   {_latency_text(results, best)}")
    lines.append(f"  why       {_why_text(results, best)}")
    if results.get("baselines"):
        lines.append(f"  versus    {_baselines_text(results)}")
    if results.get("compress"):
        lines.append(f"  compressed {results['compress']['summary']}")
    files = results.get("files") or []
    where = results.get("run_dir")
    lines.append(f"  files     {', '.join(files)}" + (f"  (in {where})" if where else ""))
    return "\n".join(lines)


def _accuracy_text(results: Mapping, best: Mapping, tabular: bool) -> str:
    if tabular:
        evaluator = results.get("evaluator") or {}
        return (f"{best['accuracy']:.2f} (the table's {evaluator.get('accuracy_column', 'accuracy')!r}; a table "
                f"gives one accuracy per network, no separate val/test)")
    data = results.get("data") or {}
    val = best.get("accuracy")
    if str(best.get("accuracy_source", "")).startswith("trained"):  # a one-shot run trains the derived network
        retrain = results.get("retrain") or {}
        text = (f"{100 * val:.2f} % on val ({data.get('val', '?')} images, the derived network "
                f"{best['accuracy_source']}, {retrain.get('epochs', '?')} epochs)")
        if best.get("test_accuracy") is not None:
            text += f", {100 * best['test_accuracy']:.2f} % on test ({best.get('n_test', '?')} images, exported ONNX model)"
        table = best.get("table_accuracy")
        if table:
            text += (f"; {table['value']:.2f} in {table['table']} ({table['column']}), above "
                     f"{table['percentile']:.1f} % of its cells")
        return text
    if str(best.get("accuracy_source", "")).startswith("fine-tuned"):  # a channel run fine-tunes its network
        text = f"{100 * val:.2f} % on val ({data.get('val', '?')} images, {best['accuracy_source']})"
        if best.get("test_accuracy_before_finetune") is not None:
            text += f", {100 * best['test_accuracy_before_finetune']:.2f} % on test before fine-tuning"
        return text + f", {100 * best['test_accuracy']:.2f} % on test ({best.get('n_test', '?')} images, exported ONNX model)"
    val_text = "not estimated" if val is None else f"{100 * val:.2f} %"
    text = f"{val_text} on val ({data.get('val', '?')} images, shared supernet weights, BatchNorm recalibrated)"
    if best.get("test_accuracy") is not None:
        text += f", {100 * best['test_accuracy']:.2f} % on test ({best.get('n_test', '?')} images, exported ONNX model)"
    return text


def _baselines_text(results: Mapping) -> str:
    """A channel run's comparison: the base and the baselines, fine-tuned the same way, at their measured latency."""
    def one(name: str, entry: Mapping) -> str:
        return f"{name} {100 * entry['test_accuracy']:.2f} % at {entry['latency_ms']:.3g} ms"

    baselines = results["baselines"]
    parts = [one(f"uniform x{baselines['uniform'].get('ratio', 0):.2f}", baselines["uniform"]),
             one("L1 at that ratio", baselines["l1"]), one("base (unpruned)", results["base"])]
    return "; ".join(parts) + " (test accuracy; the baselines fine-tuned as the chosen network)"


def _latency_text(results: Mapping, best: Mapping) -> str:
    source = best.get("latency_source", "predicted")
    value = f"{best['latency_ms']:.3g} ms" if best.get("latency_ms") is not None else "unknown"
    latency_info = (results.get("predictors") or {}).get("latency") or {}
    if source == "measured":
        m = best.get("measurement")
        if not m:
            return f"{value}, measured on {results.get('target')} (no spread recorded)"
        spread = [f"median {m['median_ms']:.3g} ms"]
        if m.get("ci_rel") is not None:
            spread.append(f"95 % CI of the median +-{100 * m['ci_rel']:.1f} %")
        if m.get("p10_ms") is not None and m.get("p90_ms") is not None:
            spread.append(f"p10-p90 {m['p10_ms']:.3g}-{m['p90_ms']:.3g} ms")
        spread.append(f"{m.get('n', '?')} runs")
        return f"{value}, measured on {results.get('target')} (exported best.onnx: {', '.join(spread)})"
    if source == "predicted":
        holdout = latency_info.get("holdout") or {}
        error = (f"holdout MAPE {holdout['mape']:.1f} % on {holdout.get('n')} measured subnets"
                 if isinstance(holdout.get("mape"), (int, float)) and math.isfinite(holdout["mape"])
                 else "no holdout error (too few measurements)")
        return f"{value}, predicted by {latency_info.get('predictor', 'the latency predictor')} ({error})"
    if source == "prior":
        prior = latency_info.get("prior") or "the target's prior"
        return (f"{value}, from a PRIOR ({prior}): not measured on your device, so no measured spread; "
                f"measure it with a device agent (target.agent=...)")
    if source == "table":
        column = (results.get("device") or {}).get("latency_column")
        return f"{value}, from the table{f' (column {column!r})' if column else ''}: one number per network, no spread"
    return f"{value} ({source})"


def _why_text(results: Mapping, best: Mapping) -> str:
    rule = best.get("choice_rule")
    if rule == "derived":  # a one-shot search derives its network; final.choose does not apply
        budget = (results.get("constraint") or {}).get("latency_ms")
        met = "" if budget is None else ("; budget met" if best.get("budget_met") else "; budget NOT met")
        return f"{best.get('choice_reason', 'derived')}{met}"
    configured = ((results.get("config") or {}).get("final") or {}).get("choose")
    setting = "" if rule == "given" else (
        f"final.choose={configured}" + (f" -> {rule}" if configured != rule else "") + ": ")
    constraint = results.get("constraint") or {}
    budget = constraint.get("latency_ms")
    met = "" if budget is None else ("; budget met" if best.get("budget_met") else "; budget NOT met")
    if constraint.get("clamped"):  # a channel run on a prior searched to its narrowest member instead
        met += f" (the {budget:.4g} ms asked for is {constraint['clamped']})"
    return f"{setting}{best.get('choice_reason', 'no reason recorded')}{met}"
