"""The compression report: ``report.json`` (the record), ``report.md`` (a table to read) and ``report.png``
(latency, size and accuracy per step, as bars beside the original), plus the console summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas.report import write_json


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def _ms(entry: Mapping[str, Any]) -> str:
    if entry.get("latency_ms") is None:
        return "unknown"
    spread = entry.get("latency_spread")
    return f"{entry['latency_ms']:.4g} ms" + (f" ±{100 * spread / 2:.0f} %" if spread else "")


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def rows(report: Mapping[str, Any]) -> list[list[str]]:
    """One row per model: original, every step (kept or not), final."""
    out = []
    for label, entry, verdict in [("original", report["original"], ""),
                                  *[(e["name"], e, "kept" if e["kept"] else f"not kept: {e['why']}")
                                    for e in report["steps"]],
                                  ("final", report["final"], f"from {report['final'].get('from_step')}")]:
        out.append([label, entry.get("precision", ""), _pct(entry["test_accuracy"]), _ms(entry),
                    _ratio(entry.get("latency_ratio")), f"{entry['size_bytes'] / 1e6:.3f} MB",
                    _ratio(entry.get("size_ratio")), f"{entry['params']:,}", f"{entry['macs'] / 1e6:.2f} M",
                    str(entry.get("latency_source", "")), verdict])
    return out


HEADER = ["model", "precision", "test acc", "latency", "vs original", "size", "vs original", "params", "MACs",
          "latency source", "verdict"]


def markdown(report: Mapping[str, Any]) -> str:
    lines = ["# Compression report", "",
             f"Target: {report['target'].get('target')} ({_device(report['target'])}); data: {report['data']['name']} "
             f"({report['data']['sizes']['test']} test images). Latencies of a step were measured in one session "
             f"with its input and the original; the final model was measured again beside the original.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    lines += ["", summary_line(report)]
    lines += [f"\nNote: {note}" for note in report.get("notes") or []]
    profile = report.get("profile") or {}
    for name in ("original", "final"):
        if isinstance(profile.get(name), Mapping):
            lines += ["", f"Per-layer profile of the {name} model ({profile[name]['plot']}): {profile[name]['findings']}"]
    if isinstance(profile.get("quantize"), Mapping) and isinstance(profile.get("original"), Mapping):
        lines += ["", "Where the int8 model that was not kept spent its time, against the original (microseconds "
                  "per run by layer kind, profiled): " + kind_comparison(profile["original"], profile["quantize"])]
    if profile.get("skipped"):
        lines += ["", f"Per-layer profile: skipped ({profile['skipped']})."]
    return "\n".join(lines) + "\n"


def kind_comparison(fp32: Mapping[str, Any], int8: Mapping[str, Any]) -> str:
    """``kind a -> b us`` for every layer kind, largest increase first."""
    a, b = fp32.get("kind_us") or {}, int8.get("kind_us") or {}
    kinds = sorted(set(a) | set(b), key=lambda k: -(b.get(k, 0.0) - a.get(k, 0.0)))
    return "; ".join(f"{k} {a.get(k, 0.0):.0f} -> {b.get(k, 0.0):.0f}" for k in kinds)


def _device(target: Mapping[str, Any]) -> str:
    device = target.get("device")
    if isinstance(device, Mapping):
        return str(device.get("cpu", "device"))
    return str(target.get("mode") or target.get("latency_source") or "no device")


def summary_line(report: Mapping[str, Any]) -> str:
    original, final = report["original"], report["final"]
    change = 100 * (final["test_accuracy"] - original["test_accuracy"])
    latency = (f"{final['latency_ratio']:.2f}x the original's latency" if final.get("latency_ratio") is not None
               else f"latency {final.get('latency_source')}")
    kept = [e["name"] for e in report["steps"] if e["kept"]]
    return (f"shipped {final['path']}: {latency}, {final['size_ratio']:.2f}x its size, test accuracy "
            f"{_pct(final['test_accuracy'])} ({change:+.2f} pp vs the original); steps kept: {', '.join(kept) or 'none'}")


def plot_report(report: Mapping[str, Any], path: Path) -> Path:
    """Bars per model (original, each step, final): latency and size as ratios to the original, test accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [("original", report["original"]), *[(e["name"] + ("" if e["kept"] else "\n(not kept)"), e)
                                                   for e in report["steps"]], ("final", report["final"])]
    labels = [name for name, _ in entries]
    fig, axes = plt.subplots(1, 3, figsize=(4 + 1.4 * len(entries), 3.8))
    panels = [("latency / original", [e.get("latency_ratio") for _, e in entries]),
              ("size / original", [e.get("size_ratio") for _, e in entries]),
              ("test accuracy (%)", [100 * e["test_accuracy"] for _, e in entries])]
    colours = ["#888888" if not e.get("kept", True) else "#3b7dd8" for _, e in entries]
    for ax, (title, values) in zip(axes, panels):
        heights = [v if v is not None else 0.0 for v in values]
        ax.bar(range(len(values)), heights, color=colours)
        for i, v in enumerate(values):
            ax.text(i, heights[i], "?" if v is None else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(values)), labels, fontsize=8, rotation=30, ha="right")
        ax.set_title(title, fontsize=10)
        if "accuracy" in title:
            low = min(heights)
            ax.set_ylim(max(0.0, low - 5), 100)
        else:
            ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    fig.suptitle(f"compression on {report['target'].get('target')}: each step beside the original", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(run_dir: Path, report: dict[str, Any]) -> Path:
    """Write report.json, report.md and report.png into ``run_dir``; the path of report.json."""
    run_dir = Path(run_dir)
    report["files"] = ["report.json", "report.md", "report.png"]
    (run_dir / "report.md").write_text(markdown(report))
    plot_report(report, run_dir / "report.png")
    return write_json(run_dir / "report.json", report)


def console_summary(report: Mapping[str, Any]) -> str:
    """A short table for the console (the same rows as report.md, fewer columns)."""
    table = [[r[0], r[1], r[2], r[3], r[4], r[6], r[10]] for r in rows(report)]
    head = ["model", "precision", "test acc", "latency", "latency x", "size x", "verdict"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), *[fmt.format(*row) for row in table], summary_line(report)])
