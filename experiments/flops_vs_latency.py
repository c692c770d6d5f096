"""FLOPs are not latency: MACs, parameters, measured CPU latency and the ``arm_cpu`` prior of the block spaces'
networks, and the pairs where the network with fewer MACs is the slower one.

    python experiments/flops_vs_latency.py [--archs 200] [--seed 0] [--sizes 28 224]
                                           [--spaces mobilenet shufflenet ghostnet blocks] [--quick]

Networks:

- every preset (``python -m search_spaces describe --preset NAME``) at the embedded data's size (its space's
  options with resolution 28, 1 input channel, 10 classes) and at 224 px (its ImageNet configuration: 3
  channels, 1000 classes);
- ``--archs`` distinct random archs (seeded) of each block space at the configuration ``+space=NAME``
  searches: ``conf/space/NAME.yaml`` with the embedded data's shape (1 channel, 10 classes); ``blocks`` with all
  three families and ``shufflenet`` with its Xception unit (:data:`MEASURED_OPTIONS`).

For each: MACs and parameters of the built network (``search_spaces.profile``), the number of kernels it runs
(``space.kernel_list``: the decomposition the latency models read), its latency measured on this machine by
the main command's ``cpu`` target (``conf/target/cpu.yaml``: ONNX export, onnxruntime, 1 thread, drift
correction against the reference model, the stop rule of ``nas/hardware/measure.py``), and the latency the
``arm_cpu`` prior predicts (a Raspberry Pi 4 model: its scale is not this CPU's, its ranking is what counts).
All networks are measured in one shuffled order, so drift over the run does not line up with a family.

Per group (each space's random archs, all of them together, the presets at each size): Spearman and Kendall
of MACs, parameters, kernel count and the prior with the measured latency, the median ms per million MACs,
and the inversions: pairs where one network has at least ``FEWER_MACS`` fewer MACs and is more than
``SLOWER`` slower (beyond the measurement's own noise), counted, with the most striking listed.

Prints the tables, writes ``experiments/results/flops_vs_latency.json`` (through ``results_io``) and the
scatter plot ``docs/img/flops_vs_latency.png`` (MACs vs measured latency, log axes, one colour per family;
the presets at 224 px labelled in the second panel). ``--quick`` (5 archs per space, presets at 28 px only)
is a smoke test: it writes under ``outputs/flops_vs_latency_quick/`` instead, its JSON says so, and the docs
renderer refuses it. The measurements run serially (the
target holds the machine-wide measurement lock); run the full benchmark on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from results_io import write_results
from tqdm import tqdm

from nas.arch import Arch, arch_id
from nas.hardware.priors import load_prior
from nas.pipeline import make_space, make_target, sample_distinct
from nas.registry import SPACES
from predictors.metrics import kendall_tau_b, spearman
from search_spaces.base import SearchSpace
from search_spaces.layerwise import get_preset, list_presets
from search_spaces.profile import count_macs, count_params

ROOT = Path(__file__).resolve().parents[1]
OUT = "flops_vs_latency.json"
PLOT = ROOT / "docs" / "img" / "flops_vs_latency.png"
BLOCK_SPACES = ("mobilenet", "shufflenet", "ghostnet", "blocks")
#: The embedded data (MNIST digits): what ``+space=NAME`` searches with, and the presets' small size.
EMBEDDED = {"resolution": 28, "in_channels": 1, "num_classes": 10}
SIZES = (28, 224)
#: An inversion: at least this fraction fewer MACs ...
FEWER_MACS = 0.10
#: ... and more than this fraction slower (drift-corrected medians repeat to a few %: FACTS.md, measure.py).
SLOWER = 0.10
STRIKING = 5
QUICK_ARCHS = 5
#: Where --quick writes (git-ignored), so a smoke test leaves the docs' JSON and plot alone.
QUICK_DIR = Path("outputs") / "flops_vs_latency_quick"
#: What each number is correlated with the measured latency for.
PREDICTORS = ("macs", "params", "kernels", "prior_ms")


@dataclass
class Network:
    """One network to measure: a preset at a size, or a random arch of a block space."""

    group: str  # the block space's name for random archs, "presets_28" / "presets_224" for presets
    family: str  # the space it belongs to (the plot's colour)
    name: str  # preset name, or "SPACE#INDEX"
    space: SearchSpace
    arch: Arch
    size: int
    row: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ networks
def preset_networks(sizes: Sequence[int]) -> list[Network]:
    out = []
    for name in list_presets():
        preset = get_preset(name)
        for size in sizes:
            # 224 px is the preset's own (ImageNet) configuration; 28 px the embedded data's, same ops
            config = dict(preset.config) if size == 224 else {**preset.config, **EMBEDDED}
            space = SPACES.get(preset.space)(**config)
            out.append(Network(group=f"presets_{size}", family=preset.space, name=name, space=space,
                               arch=preset.arch(space), size=size))
    return out


#: Options that differ from the search default on purpose: ``blocks`` is measured with every family (ShuffleNetV2
#: units included) and ``shufflenet`` with its Xception unit; their training defaults leave those out, for a
#: training reason (docs/spaces.md), and latency does not care.
MEASURED_OPTIONS = {"blocks": {"families": ["mb", "shuffle", "ghost"]}, "shufflenet": {"xception": True}}


def random_networks(name: str, count: int, seed: int) -> list[Network]:
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "space" / f"{name}.yaml"))
    space = make_space({**cfg, **MEASURED_OPTIONS.get(name, {})},
                       num_classes=EMBEDDED["num_classes"], in_channels=EMBEDDED["in_channels"])
    archs = sample_distinct(space, count, np.random.default_rng(seed))
    if len(archs) < count:
        sys.exit(f"error: space {name!r} gave only {len(archs)} distinct archs; pass --archs {len(archs)} or fewer")
    size = space.input_shape(archs[0])[-1]
    return [Network(group=name, family=name, name=f"{name}#{i}", space=space, arch=arch, size=size)
            for i, arch in enumerate(archs)]


def profile(networks: Sequence[Network], prior) -> dict[str, str]:
    """MACs, parameters, kernel count and the prior's latency of every network (in place); returns the kernel
    kinds the prior priced by borrowing another kind's rates (kind -> rule)."""
    borrowed: dict[str, str] = {}
    by_space: dict[int, list[Network]] = {}
    for net in networks:
        by_space.setdefault(id(net.space), []).append(net)
    for nets in tqdm(list(by_space.values()), desc="counting MACs, tracing kernels, prior", unit="space"):
        space = nets[0].space
        predicted = prior.predict(space, [n.arch for n in nets])
        borrowed.update(prior.borrowed_in(space, [n.arch for n in nets]))
        for net, ms in zip(nets, predicted):
            model = space.build(net.arch)
            shape = space.input_shape(net.arch)
            net.row = {"group": net.group, "family": net.family, "name": net.name, "size": net.size,
                       "arch_id": arch_id(net.arch), "arch": space.to_public(net.arch),
                       "macs": count_macs(model, shape), "params": count_params(model),
                       "kernels": len(space.kernel_list(net.arch)), "prior_ms": float(ms)}
    return dict(sorted(borrowed.items()))


def measure(networks: Sequence[Network], target, seed: int) -> None:
    """Measured latency of every network, in one shuffled order (in place)."""
    order = np.random.default_rng(seed + 1).permutation(len(networks))
    for i in tqdm(order, desc="measuring on this CPU (cpu target)", unit="net"):
        net = networks[int(i)]
        started = time.perf_counter()
        m = target.measure(net.space, net.arch)
        net.row.update({"latency_ms": m.median_ms, "latency_ci_rel": m.ci_rel, "samples": m.n,
                        "stop_reason": m.stop_reason, "measure_s": round(time.perf_counter() - started, 3)})


# ------------------------------------------------------------------------------------------------ analysis
def inversions(rows: Sequence[dict]) -> tuple[int, int, int, list[dict]]:
    """Pairs with >= FEWER_MACS fewer MACs and > SLOWER slower: (count, how many of them pair two families,
    pairs with that many fewer MACs, the most striking)."""
    macs = np.array([r["macs"] for r in rows], dtype=np.float64)
    lat = np.array([r["latency_ms"] for r in rows], dtype=np.float64)
    # a[i, j]: network i has the fewer MACs and is the slower one
    hit = (macs[:, None] <= (1 - FEWER_MACS) * macs[None, :]) & (lat[:, None] > (1 + SLOWER) * lat[None, :])
    compared = int((macs[:, None] <= (1 - FEWER_MACS) * macs[None, :]).sum())
    i, j = np.nonzero(hit)
    families = np.array([r["family"] for r in rows])
    cross = int((families[i] != families[j]).sum())
    # striking: how far the pair is from "fewer MACs, faster": slower by x and fewer MACs by y -> x * y
    score = (lat[i] / lat[j]) * (macs[j] / macs[i])
    top = np.argsort(-score, kind="stable")[:STRIKING]
    striking = [{"fewer_macs": rows[i[k]]["name"], "more_macs": rows[j[k]]["name"],
                 "families": [rows[i[k]]["family"], rows[j[k]]["family"]],
                 "macs": [rows[i[k]]["macs"], rows[j[k]]["macs"]],
                 "latency_ms": [round(float(lat[i[k]]), 4), round(float(lat[j[k]]), 4)],
                 "macs_ratio": round(float(macs[i[k]] / macs[j[k]]), 3),
                 "latency_ratio": round(float(lat[i[k]] / lat[j[k]]), 3)} for k in top]
    return int(hit.sum()), cross, compared, striking


def summarize(rows: Sequence[dict]) -> dict[str, Any]:
    lat = [r["latency_ms"] for r in rows]
    out: dict[str, Any] = {"n": len(rows), "latency_ms_range": [min(lat), max(lat)],
                           "macs_range": [min(r["macs"] for r in rows), max(r["macs"] for r in rows)]}
    if len(rows) >= 3:
        out["spearman"] = {k: _rank_correlation(spearman, lat, [r[k] for r in rows]) for k in PREDICTORS}
        out["kendall"] = {k: _rank_correlation(kendall_tau_b, lat, [r[k] for r in rows]) for k in PREDICTORS}
    count, cross, compared, striking = inversions(rows)
    out["inversions"] = {"count": count, "across_families": cross, "pairs_with_fewer_macs": compared,
                         "share": round(count / compared, 4) if compared else 0.0, "striking": striking}
    out["ms_per_mmac_median"] = statistics.median(r["latency_ms"] / (r["macs"] / 1e6) for r in rows)
    out["ms_per_kernel_median"] = statistics.median(r["latency_ms"] / r["kernels"] for r in rows)
    return out


def _rank_correlation(fn, latency: Sequence[float], values: Sequence[float]) -> float | None:
    """``fn(latency, values)`` rounded; None where ``values`` are all equal (e.g. kernel counts of a space whose
    ops all run the same kernels), where a rank correlation is undefined."""
    if len(set(values)) < 2:
        return None
    return round(float(fn(latency, values)), 4)


def groups(rows: Sequence[dict], spaces: Sequence[str], sizes: Sequence[int]) -> dict[str, dict]:
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["group"], []).append(r)
    out = {name: summarize(by[name]) for name in spaces if name in by}
    if len(spaces) > 1:  # every block space's random archs together: same input, so their pairs compare
        out["all_spaces"] = summarize([r for name in spaces for r in by.get(name, [])])
    for size in sizes:
        if f"presets_{size}" in by:
            out[f"presets_{size}"] = summarize(by[f"presets_{size}"])
    return out


def per_family(rows: Sequence[dict]) -> dict[str, dict]:
    """Median ms per million MACs, kernels, MACs and latency of each family's networks in ``rows``."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["family"], []).append(r)
    return {family: {"n": len(rs),
                     "ms_per_mmac_median": statistics.median(r["latency_ms"] / (r["macs"] / 1e6) for r in rs),
                     "kernels_median": statistics.median(r["kernels"] for r in rs),
                     "macs_median": statistics.median(r["macs"] for r in rs),
                     "latency_ms_median": statistics.median(r["latency_ms"] for r in rs)}
            for family, rs in sorted(by.items())}


# ------------------------------------------------------------------------------------------------ output
def print_tables(result: dict) -> None:
    print(f"\n{'group':<14}{'n':>5}  {'rho MACs':>9}{'rho params':>11}{'rho kernels':>12}{'rho prior':>10}"
          f"  {'inversions':>18}  {'ms/MMAC':>8}")
    for name, g in result["groups"].items():
        rho = g.get("spearman", {})
        cells = "".join(f"{rho[k]:>{w}.3f}" if rho.get(k) is not None else f"{'-':>{w}}"
                        for k, w in zip(PREDICTORS, (9, 11, 12, 10)))
        inv = g["inversions"]
        print(f"{name:<14}{g['n']:>5}  {cells}  {inv['count']:>7} of {inv['pairs_with_fewer_macs']:<7}"
              f"  {g['ms_per_mmac_median']:>8.4f}")
    for size in result["args"]["sizes"]:
        presets = [r for r in result["networks"] if r["group"] == f"presets_{size}"]
        if not presets:
            continue
        print(f"\npresets at {size} px: {'MMACs':>9}{'params':>11}{'measured ms':>13}{'prior ms':>10}{'kernels':>9}")
        for r in sorted(presets, key=lambda r: r["macs"]):
            print(f"  {r['name']:<20}{r['macs'] / 1e6:>9.1f}{r['params']:>11,}{r['latency_ms']:>13.3f}"
                  f"{r['prior_ms']:>10.2f}{r['kernels']:>9}")
    for name, g in result["groups"].items():
        for s in g["inversions"]["striking"][:3]:
            print(f"{name}: {s['fewer_macs']} has {100 * (1 - s['macs_ratio']):.0f}% fewer MACs than "
                  f"{s['more_macs']} and is {s['latency_ratio']:.2f}x slower ({s['latency_ms'][0]:.3f} vs "
                  f"{s['latency_ms'][1]:.3f} ms)")


def plot(rows: Sequence[dict], path: Path, *, spaces: Sequence[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless; set here, not at import
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")  # 0.2, 3, 40 rather than 2x10^-1 on the log axes

    def finish(ax) -> None:
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(plain)
        ax.tick_params(which="minor", labelsize=6)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)

    colours = dict(zip(BLOCK_SPACES, ("tab:blue", "tab:orange", "tab:green", "tab:purple")))
    big = [r for r in rows if r["size"] == 224]
    fig, axes = plt.subplots(1, 2 if big else 1, figsize=(13 if big else 7, 5.2), squeeze=False)
    ax = axes[0][0]
    for name in spaces:
        pts = [r for r in rows if r["group"] == name]
        ax.scatter([r["macs"] / 1e6 for r in pts], [r["latency_ms"] for r in pts], s=12, alpha=0.55,
                   color=colours.get(name), label=f"{name}: random archs")
    small = [r for r in rows if r["group"] == "presets_28"]
    for r in small:
        ax.scatter(r["macs"] / 1e6, r["latency_ms"], marker="*", s=120, color=colours.get(r["family"]),
                   edgecolor="black", linewidth=0.6, zorder=3)
        ax.annotate(r["name"], (r["macs"] / 1e6, r["latency_ms"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    if small:
        ax.scatter([], [], marker="*", s=120, color="white", edgecolor="black", label="presets (ops) at 28 px")
    ax.set(xscale="log", yscale="log", xlabel="million MACs", ylabel="measured latency (ms, this CPU, 1 thread)",
           title="28x28x1 input, 10 classes (the embedded data)")
    finish(ax)
    if big:
        ax = axes[0][1]
        for r in big:
            ax.scatter(r["macs"] / 1e6, r["latency_ms"], marker="o", s=50, color=colours.get(r["family"]),
                       edgecolor="black", linewidth=0.6)
            ax.annotate(r["name"], (r["macs"] / 1e6, r["latency_ms"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        for family in _unique(r["family"] for r in big):
            ax.scatter([], [], marker="o", color=colours.get(family), label=family)
        ax.set(xscale="log", yscale="log", xlabel="million MACs", ylabel="measured latency (ms)",
               title="presets at 224 px, 1000 classes (ImageNet configuration)")
        finish(ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _unique(values) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


# ------------------------------------------------------------------------------------------------ driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=200, help="random archs per block space (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), choices=SIZES,
                        help="input sizes the presets are measured at (default 28 224)")
    parser.add_argument("--spaces", nargs="+", default=list(BLOCK_SPACES), choices=BLOCK_SPACES,
                        help="block spaces whose random archs are measured (default all four)")
    parser.add_argument("--no-presets", action="store_true", help="random archs only")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK_ARCHS} archs per space, presets at 28 px only (not for the docs)")
    parser.add_argument("--out", default=None,
                        help=f"results JSON (default experiments/results/{OUT}; with --quick {QUICK_DIR}/{OUT})")
    parser.add_argument("--plot", type=Path, default=None,
                        help=f"scatter plot PNG (default docs/img/{PLOT.name}; with --quick {QUICK_DIR}/{PLOT.name})")
    args = parser.parse_args()
    if args.quick:  # a smoke test never replaces the docs' numbers or plot
        args.archs, args.sizes = QUICK_ARCHS, [28]
    args.out = args.out or (ROOT / QUICK_DIR / OUT if args.quick else OUT)
    args.plot = args.plot or (ROOT / QUICK_DIR / PLOT.name if args.quick else PLOT)
    if args.archs < 0:
        parser.error("--archs must be >= 0")
    args.sizes = sorted(set(args.sizes))
    args.spaces = _unique(args.spaces)
    load_before = os.getloadavg()[0]
    started = time.time()

    # the main command's cpu target, as +target=cpu configures it (conf/target/cpu.yaml)
    target = make_target(OmegaConf.load(ROOT / "conf" / "target" / "cpu.yaml"))
    prior = load_prior("arm_cpu")
    networks = [] if args.no_presets else preset_networks(args.sizes)
    if args.archs:
        for name in args.spaces:
            networks += random_networks(name, args.archs, args.seed)
    if not networks:
        parser.error("nothing to measure: --archs 0 with --no-presets")
    borrowed = profile(networks, prior)
    measure(networks, target, args.seed)
    rows = [n.row for n in networks]
    spaces = [s for s in args.spaces if args.archs]
    result = {
        "args": {"archs": args.archs, "seed": args.seed, "sizes": args.sizes, "spaces": spaces,
                 "presets": not args.no_presets, "quick": args.quick},
        "question": "does a network with fewer MACs run faster? (measured here; the prior is a Pi 4 model)",
        "target": target.describe(),
        "prior": {"name": prior.name, "description": prior.description, "borrowed": borrowed},
        "space_configs": {n.group: n.space.config() for n in networks if n.group in spaces},
        "thresholds": {"fewer_macs": FEWER_MACS, "slower": SLOWER,
                       "rule": f"an inversion: >= {FEWER_MACS:.0%} fewer MACs and > {SLOWER:.0%} slower"},
        "groups": groups(rows, spaces, args.sizes),
        # per family: the random archs (all at the embedded size), and the presets at each size
        "families": {"random_archs": per_family([r for r in rows if r["group"] in spaces]),
                     **{f"presets_{size}": per_family([r for r in rows if r["group"] == f"presets_{size}"])
                        for size in args.sizes if not args.no_presets}},
        "networks": rows,
        "wall_s": round(time.time() - started, 1),
    }
    print_tables(result)
    plot(rows, args.plot, spaces=spaces)
    path = write_results(args.out, result, load_before=load_before)
    print(f"\nwrote {path} and {args.plot} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
