"""How a per-layer profile reads: the plain-text table, the findings paragraph and the plot.

This module holds the presentation of a :class:`~nas.compress.profile.LayerProfile` (whose ``table`` and
``findings`` methods delegate here), apart from the attribution that computes its numbers, so that neither
the wording nor the plot touches them. matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nas.compress.profile import OVERHEAD, UNATTRIBUTED, LayerProfile
from nas.errors import ConfigError, DataError


# ---------------------------------------------------------------------------------------------- table and findings
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _count(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def _size(value: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def _ops_text(ops: Sequence[str], width: int = 32) -> str:
    text = "+".join(dict.fromkeys(ops))
    return text if len(text) <= width else text[: width - 1] + "…"


def header(profile: LayerProfile) -> str:
    """The table's first line: the model, its input, the runs, threads, runtime and device, and the mean run."""
    c, h, w = profile.input_shape
    cpu = (profile.device or {}).get("cpu", "unknown device")
    plain = profile.totals.get("plain_wall_us")
    plain_text = f", a plain run {plain:.1f} us" if plain else ""
    return (f"{profile.model}: input 1x{c}x{h}x{w}, {profile.runs} profiled runs, {profile.threads} thread(s), "
            f"{profile.provider}, {profile.runtime} on {cpu}; latency {profile.latency_source}. Mean profiled run "
            f"{profile.totals['run_us']:.1f} us, {profile.totals['kernel_us']:.1f} us of it in kernels{plain_text}.")


def table(profile: LayerProfile, top: int = 15) -> str:
    """Plain-text table of the ``top`` rows by time, then the rest in one line and the total."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be a positive int (rows to show), got {top!r}")
    rows = sorted(profile.rows, key=lambda r: -r.us)
    shown, rest = rows[:top], rows[top:]
    width = min(max([len(r.layer) for r in shown] + [5]), 40)

    def name(text: str) -> str:
        return text if len(text) <= width else "…" + text[-(width - 1):]

    head = (f"{'layer':<{width}}  {'kind':<11} {'time us':>9} {'time':>7} {'MACs':>7} {'params':>7} "
            f"{'traffic':>10} {'time/MAC':>8}  ops")
    lines = [header(profile), "", head, "-" * len(head)]
    for r in shown:
        ratio = "-" if r.time_per_mac is None else f"{r.time_per_mac:.2f}x"
        ops = _ops_text(r.ops) + (f" (+{len(r.fused)} fused)" if r.fused else "")
        lines.append(f"{name(r.layer):<{width}}  {r.kind:<11} {r.us:>9.1f} {_pct(r.time_share):>7} "
                     f"{_pct(r.macs_share):>7} {_pct(r.params_share):>7} {_size(r.bytes):>10} {ratio:>8}  {ops}")
    if rest:
        us = sum(r.us for r in rest)
        lines.append(f"{'(' + str(len(rest)) + ' more rows)':<{width}}  {'':<11} {us:>9.1f} "
                     f"{_pct(us / profile.totals['run_us'] if profile.totals['run_us'] else 0.0):>7}")
    lines.append("-" * len(head))
    lines.append(f"{'total':<{width}}  {'':<11} {profile.totals['run_us']:>9.1f} {_pct(1.0):>7} "
                 f"{_count(profile.totals['macs']):>7} {_count(profile.totals['params']):>7} "
                 f"{_size(profile.totals['bytes']):>10}")
    lines.append("time: share of the profiled run; MACs, params: shares of the network's; traffic: estimated "
                 "bytes moved; time/MAC: share of kernel time over share of MACs (>1: slower than its FLOPs "
                 "suggest).")
    return "\n".join(lines)


def findings(profile: LayerProfile) -> str:
    """One paragraph of what the profile shows, computed from the rows (nothing here is a fixed claim)."""
    layers = [r for r in profile.layer_rows if r.us > 0 or r.macs > 0]
    if not layers:
        return "No layer kernel was timed."
    sentences = []
    top = max(layers, key=lambda r: r.us)
    sentences.append(f"The most time goes to {top.layer} ({top.kind}): {_pct(top.kernel_share)} of the kernel "
                     f"time for {_pct(top.macs_share)} of the MACs.")
    kinds = profile.kinds()
    slow = sorted(((k, v) for k, v in kinds.items() if v["macs_share"] > 0 and v["kernel_share"] > v["macs_share"]),
                  key=lambda kv: -kv[1]["kernel_share"] / kv[1]["macs_share"])
    free = sorted(((k, v) for k, v in kinds.items() if v["macs_share"] == 0 and v["kernel_share"] > 0),
                  key=lambda kv: -kv[1]["kernel_share"])
    fast = sorted(((k, v) for k, v in kinds.items() if v["macs_share"] > 0 and v["kernel_share"] < v["macs_share"]),
                  key=lambda kv: kv[1]["kernel_share"] / kv[1]["macs_share"])
    if slow:
        sentences.append("More time than their MACs suggest: " + "; ".join(
            f"{k} layers take {_pct(v['kernel_share'])} of the kernel time for {_pct(v['macs_share'])} of the "
            f"MACs ({v['kernel_share'] / v['macs_share']:.1f}x)" for k, v in slow) + ".")
    if free:
        sentences.append("Time without MACs: " + "; ".join(
            f"{k} layers take {_pct(v['kernel_share'])} of the kernel time" for k, v in free) + ".")
    if fast:
        sentences.append("Less time than their MACs: " + "; ".join(
            f"{k} layers ({_pct(v['kernel_share'])} of the time for {_pct(v['macs_share'])} of the MACs)"
            for k, v in fast) + ".")
    heavy = [r for r in layers if r.time_per_mac is not None and (r.kernel_share or 0) >= 0.01]
    if heavy:
        worst = max(heavy, key=lambda r: r.time_per_mac or 0.0)
        sentences.append(f"Per MAC the slowest layer with at least 1 % of the time is {worst.layer} "
                         f"({worst.kind}), at {worst.time_per_mac:.1f}x the network's average time per MAC.")
    bound = [r for r in layers if r.us > 0 and (r.time_per_mac is None or r.time_per_mac > 1)]
    if bound:
        t = sum(r.kernel_share or 0.0 for r in bound)
        b = sum(r.bytes_share for r in bound)
        m = sum(r.macs_share for r in bound)
        if abs(t - b) < abs(t - m):
            sentences.append(f"The layers slower per MAC than average take {_pct(t)} of the kernel time, "
                             f"{_pct(m)} of the MACs and {_pct(b)} of the estimated memory traffic: their time "
                             f"follows memory traffic more closely than arithmetic, the mark of memory-bound "
                             f"layers.")
    overhead = next((r for r in profile.rows if r.layer == OVERHEAD), None)
    if overhead is not None:
        plain, wall = profile.totals.get("plain_wall_us"), profile.totals.get("wall_us")
        text = f"Time outside kernels (the executor, and the profiler's own bookkeeping) is " \
               f"{_pct(overhead.time_share)} of the profiled run"
        if plain and wall:
            text += f"; a run without the profiler took {plain:.1f} us against {wall:.1f} us profiled (wall clock)"
            if profile.totals["kernel_us"] > plain:
                text += (f", less than the kernels alone ({profile.totals['kernel_us']:.1f} us): the profiler adds "
                         f"a cost to every kernel, which inflates the shares of short kernels, so compare layers "
                         f"of similar size or profile a larger input")
        sentences.append(text + ".")
    lost = next((r for r in profile.rows if r.layer == UNATTRIBUTED), None)
    if lost is not None:
        sentences.append(f"{len(lost.kernels)} kernel(s) ({_pct(lost.time_share)} of the run) could not be "
                         f"mapped to a layer: {', '.join(lost.kernels[:5])}.")
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------------- plot
_KIND_COLORS = {"conv": "tab:blue", "pointwise": "tab:cyan", "depthwise": "tab:red", "linear": "tab:purple",
                "elementwise": "tab:orange", "pool": "tab:green", "data": "tab:brown", "other": "tab:gray"}


def plot_profile(profile: LayerProfile, path: Path) -> Path:
    """Save a PNG "FLOPs share vs time share per layer": left, each layer's MAC share and kernel-time share as
    bars side by side in network order (time bars coloured by kind); right, the same as a scatter with the
    y = x line, where a layer above the line takes more time than its FLOPs suggest. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # headless machines; set here, not at import, to avoid a global side effect
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = profile.layer_rows
    if not rows:
        raise DataError("the profile has no layer rows to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(rows)
    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(min(6 + 0.28 * n, 30) + 5, 6.5),
                                        gridspec_kw={"width_ratios": [max(2.0, min(n / 8, 5.0)), 1.6]})
    x = range(n)
    colors = [_KIND_COLORS.get(r.kind, "tab:gray") for r in rows]
    bars.bar([i - 0.2 for i in x], [100 * r.macs_share for r in rows], width=0.4, color="lightgray",
             edgecolor="gray", label="MAC share")
    bars.bar([i + 0.2 for i in x], [100 * (r.kernel_share or 0.0) for r in rows], width=0.4, color=colors,
             label="kernel time share")
    bars.set_xticks(list(x))
    bars.set_xticklabels([r.layer for r in rows], rotation=90, fontsize=max(5, min(9, int(400 / max(n, 1)))))
    bars.set_ylabel("share of the network (%)")
    bars.set_xlabel("layer (network order)")
    bars.grid(axis="y", alpha=0.3)
    used = list(dict.fromkeys(r.kind for r in rows))
    handles = [Patch(facecolor="lightgray", edgecolor="gray", label="MACs (FLOPs / 2)")]
    handles += [Patch(color=_KIND_COLORS.get(k, "tab:gray"), label=f"time: {k}") for k in used]
    bars.legend(handles=handles, fontsize=8, loc="upper right")

    top = max(max(100 * r.macs_share for r in rows), max(100 * (r.kernel_share or 0.0) for r in rows), 1.0) * 1.08
    scatter.plot([0, top], [0, top], color="black", linewidth=0.8, linestyle="--", label="time share = MAC share")
    for kind in used:
        members = [r for r in rows if r.kind == kind]
        scatter.scatter([100 * r.macs_share for r in members], [100 * (r.kernel_share or 0.0) for r in members],
                        color=_KIND_COLORS.get(kind, "tab:gray"), label=kind, s=30, alpha=0.85)
    far = sorted(rows, key=lambda r: -abs((r.kernel_share or 0.0) - r.macs_share))[:6]
    for r in far:
        scatter.annotate(r.layer, (100 * r.macs_share, 100 * (r.kernel_share or 0.0)), fontsize=7,
                         xytext=(4, 3), textcoords="offset points")
    scatter.set_xlim(0, top)
    scatter.set_ylim(0, top)
    scatter.set_xlabel("share of MACs (%)")
    scatter.set_ylabel("share of kernel time (%)")
    scatter.set_title("above the line: slower than its FLOPs suggest", fontsize=9)
    scatter.grid(alpha=0.3)
    scatter.legend(fontsize=8, loc="upper left")
    cpu = (profile.device or {}).get("cpu", "")
    fig.suptitle("FLOPs share vs time share per layer")
    fig.text(0.5, 0.93, f"{profile.model} on {cpu} ({profile.runtime}, {profile.threads} thread(s), "
             f"{profile.latency_source})", ha="center", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
