"""Write every benchmark number in README.md and docs/*.md from ``experiments/results/*.json``.

    python experiments/render_docs.py            # rewrite the generated blocks in place
    python experiments/render_docs.py --check    # exit 1 and list the blocks whose text differs from the JSON

A generated block is a region of a Markdown file between ``<!-- generated: NAME -->`` and ``<!-- /generated -->``;
its content is what the renderer function ``NAME`` below returns, ending with a line that names the command and
the date of the run it comes from (the ``run`` record of :mod:`results_io`; for a file written before that
existed, its ``command`` key or the script that writes it, and the date of the file's last git commit). Text
outside the blocks holds no measured numbers, so prose and JSON cannot drift apart: a rerun that changes a
number changes the docs on the next render, and ``--check`` (run by ``tests/test_docs.py``) fails until it is done.

A renderer reads its JSON by key through :class:`Node`; a missing key raises :class:`RenderError` naming the file
and the key, so a change of layout breaks the check instead of leaving stale text behind.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("experiments") / "results"
DOC_FILES = ("README.md", "docs/*.md")
BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)


class RenderError(Exception):
    """A results file or key a renderer needs is missing, or a block names no renderer."""


# ------------------------------------------------------------------------------------------------ JSON access
class Node:
    """A JSON value that knows which file and key path it came from, for error messages."""

    def __init__(self, value: Any, *, file: str, path: str = "") -> None:
        self.value, self.file, self.path = value, file, path

    def __getitem__(self, key: str | int) -> Any:
        where = f"{self.path}[{key!r}]"
        try:
            value = self.value[key]
        except (KeyError, IndexError, TypeError):
            raise RenderError(f"{self.file}: no key {where} (the file's layout changed? "
                              f"update its renderer in experiments/render_docs.py)") from None
        return self._wrap(value, where)

    def get(self, key: str, default: Any = None) -> Any:
        """An optional key: ``default`` when absent."""
        return self[key] if isinstance(self.value, dict) and key in self.value else default

    def __contains__(self, key: str) -> bool:
        return isinstance(self.value, dict) and key in self.value

    def __iter__(self) -> Iterator[Any]:
        if isinstance(self.value, dict):
            return iter(self.value)
        if isinstance(self.value, list):
            return (self._wrap(v, f"{self.path}[{i}]") for i, v in enumerate(self.value))
        raise RenderError(f"{self.file}: {self.path} is not a list or an object")

    def __len__(self) -> int:
        return len(self.value)

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((k, self[k]) for k in self.value)

    def _wrap(self, value: Any, path: str) -> Any:
        return Node(value, file=self.file, path=path) if isinstance(value, (dict, list)) else value


class Results:
    """Loads ``experiments/results/*.json`` under ``root`` once each, and says where each came from."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self._cache: dict[str, Node] = {}

    def load(self, name: str) -> Node:
        if name not in self._cache:
            path = self.root / RESULTS / name
            if not path.is_file():
                raise RenderError(f"{RESULTS / name}: no such results file (run the experiment that writes it)")
            try:
                value = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise RenderError(f"{RESULTS / name}: not valid JSON ({exc})") from None
            self._cache[name] = Node(value, file=str(RESULTS / name))
        return self._cache[name]

    def source(self, name: str, *, command: str | None = None) -> str:
        """``command (date)`` of the run behind ``name``: its ``run`` record, else a command and git's date.

        Without a ``run`` record the command is ``command`` (the script that writes the file, given by the
        renderer for files that name none or name the command they timed rather than the script) or the
        file's own ``command`` key.
        """
        data = self.load(name)
        if "run" in data:
            run = data["run"]
            load = run.get("load_average_1min")
            extra = f", load average {load[0]:.2f}-{load[1]:.2f}" if load is not None else ""
            return f"`{run['command']}` ({run['date']}{extra})"
        cmd = command or data.get("command")
        if cmd is None:
            raise RenderError(f"{RESULTS / name}: no key 'run' or 'command', and its renderer names no command")
        return f"`{cmd.strip()}` ({self._git_date(name)})"

    def _git_date(self, name: str) -> str:
        rel = str(RESULTS / name)
        try:
            dirty = subprocess.run(["git", "status", "--porcelain", "--", rel], cwd=self.root, capture_output=True,
                                   text=True, check=True).stdout.strip()
            date = subprocess.run(["git", "log", "-1", "--format=%cs", "--", rel], cwd=self.root,
                                  capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            raise RenderError(f"{rel}: has no 'run' record and git cannot date it (not a git checkout?)") from None
        if dirty or not date:
            return "date: not committed yet"
        return f"date: {date}, last commit of the JSON"


# ------------------------------------------------------------------------------------------------ formatting
def pct(x: float, digits: int = 0) -> str:
    return f"{100 * x:.{digits}f}%"


def num(x: float, digits: int = 3) -> str:
    return f"{x:,.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def footer(*sources: str) -> str:
    return "\n<sub>From " + "; ".join(sources) + ".</sub>"


def _unique(values: Any) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


# ------------------------------------------------------------------------------------------------ renderers
# One function per block, named as the block. Keep them small: a results layout changes, its renderer follows.
Renderer = Callable[[Results], str]
RENDERERS: dict[str, Renderer] = {}
#: renderer -> (results file, top-level key or None) it waits for: until the file (with that key) exists the
#: renderer may be named by no block (it was written ahead of its experiment); once it exists, ``--check``
#: fails until a block names the renderer.
PENDING: dict[str, tuple[str, str | None]] = {}


def renderer(fn: Renderer | None = None, *, pending_on: str | None = None, pending_key: str | None = None) -> Any:
    def register(f: Renderer) -> Renderer:
        RENDERERS[f.__name__] = f
        if pending_on is not None:
            PENDING[f.__name__] = (pending_on, pending_key)
        return f

    return register(fn) if fn is not None else register


# main_command_arm_cpu.json's own `command` is the search it timed, not the script that timed it
_MAIN_TIMING = "python experiments/main_command_timing.py --target arm_cpu"


@renderer
def main_command_arm_cpu(res: Results) -> str:
    """The README's main command, timed twice by experiments/main_command_timing.py."""
    d = res.load("main_command_arm_cpu.json")
    cold, cached = d["runs"]["cold"], d["runs"]["cached"]
    t = cold["timings_s"]
    text = (f"The main command took {cold['wall_s']:.0f} s from an empty cache and {cached['wall_s']:.0f} s "
            f"the second time, on this 2-core machine with no ARM board reachable, so its latencies are the "
            f"prior's (`latency_source: {cold['latency_source']}`). Of the first run, {t['accuracy_samples']:.0f} s "
            f"went to evaluating subnets with the shared weights, {t['search']:.1f} s to the search and "
            f"{t['finalize']:.0f} s to re-evaluating the front and exporting, checking and testing the chosen "
            f"network. The chosen network: validation accuracy {cold['best_val_accuracy']:.3f}, test accuracy "
            f"through onnxruntime {cold['best_test_accuracy_onnx']:.3f}, max |ONNX - PyTorch| "
            f"{cold['onnx_max_abs_diff']:.1e}, prior latency {cold['best_latency_ms']:.1f} ms; "
            f"{cold['pareto_points']} points on the front; the accuracy predictor's Spearman on held-out "
            f"subnets {cold['accuracy_predictor_spearman']:.3f}.")
    return text + "\n" + footer(res.source("main_command_arm_cpu.json", command=_MAIN_TIMING))


_BLOCK_SPACES = ("mobilenet", "shufflenet", "ghostnet", "blocks")


@renderer(pending_on="main_command_blocks_arm_cpu.json")
def block_spaces_main_command(res: Results) -> str:
    """The main command on each block space and target, cold (supernet trained) and cached, from
    experiments/main_command_timing.py --space S --target T."""
    rows, sources, cold_walls, cached_walls = [], [], [], []
    for space in _BLOCK_SPACES:
        for target in ("cpu", "arm_cpu"):
            name = f"main_command_{space}_{target}.json"
            d = res.load(name)
            cold, cached = d["runs"]["cold"], d["runs"]["cached"]
            cold_walls.append(cold["wall_s"])
            cached_walls.append(cached["wall_s"])
            val = cold["supernet_val_accuracy"]
            rows.append([f"`{space}`", f"`{target}`", f"{cold['wall_s']:.0f} s ({cold['supernet_source']})",
                         f"{cached['wall_s']:.0f} s ({cached['supernet_source']})",
                         f"{val['largest']:.3f} / {val['smallest']:.3f}" if val else "-",
                         f"{cold['best_val_accuracy']:.3f}", f"{cold['best_test_accuracy_onnx']:.3f}",
                         f"{cold['best_latency_ms']:.3f} ms ({cold['latency_source']})",
                         f"{cold['onnx_max_abs_diff']:.1e}"])
            sources.append(res.source(name))
    text = (f"Every space and target from an empty cache (the supernet trained) and again from the cache, on this "
            f"2-core machine: first runs took at most {max(cold_walls):.0f} s, cached runs at most "
            f"{max(cached_walls):.0f} s.\n\n")
    text += table(["space", "target", "first run", "cached run", "supernet val acc (largest / smallest)",
                   "chosen: val acc", "test acc (onnxruntime)", "latency", "max abs ONNX - PyTorch"], rows)
    return text + "\n" + footer(*sources)


@renderer
def shipped_supernet(res: Results) -> str:
    """Largest and smallest subnet of the shipped supernet (its training summary, as the main command reports it)."""
    d = res.load("main_command_arm_cpu.json")
    val = d["runs"]["cold"]["supernet_val_accuracy"]
    return (f"The shipped supernet's largest subnet reaches {val['largest']:.3f} and its smallest "
            f"{val['smallest']:.3f} validation accuracy.\n"
            + footer(res.source("main_command_arm_cpu.json", command=_MAIN_TIMING)))


@renderer
def ofa_accuracy_predictor(res: Results) -> str:
    """Accuracy predictors on shared-weight accuracies of OFA subnets: mean (std) Spearman per training size."""
    d = res.load("ofa_accuracy_predictor.json")
    rows = list(d["rows"])
    sizes = _unique(r["train"] for r in rows)
    names = _unique(r["predictor"] for r in rows)
    cell = {(r["predictor"], r["train"]): f"{r['spearman']:.2f} ± {r['spearman_std']:.2f}" for r in rows}
    lo, hi = d["accuracy_range"][0], d["accuracy_range"][1]
    text = (f"{d['args']['subnets']} subnets of the shipped supernet evaluated with shared weights (accuracies "
            f"{lo:.3f}-{hi:.3f}); Spearman on the subnets not used for fitting, mean ± std over "
            f"{d['args']['repeats']} random splits:\n\n")
    body = table(["predictor"] + [f"{n} training subnets" for n in sizes],
                 [[f"`{p}`"] + [cell.get((p, n), "-") for n in sizes] for p in names])
    return text + body + "\n" + footer(res.source("ofa_accuracy_predictor.json"))


@renderer
def ofa_latency_predictor(res: Results) -> str:
    """Latency predictor on measured OFA subnets against the measurement's own repeatability."""
    d = res.load("ofa_latency_predictor.json")
    args, rng = d["args"], d["latency_range_ms"]
    text = (f"{args['archs']} subnets measured on this machine's CPU, {args['retest']} of them twice; fitted on "
            f"{args['train']}, scored on the rest; latencies {rng[0]:.2f}-{rng[1]:.2f} ms.\n\n")
    rows = [[f"`{name}`", f"{m['spearman']:.3f}", f"{m['kendall']:.3f}", f"{m['mape']:.1f}",
             f"{m['within_5pct']:.2f}", f"{m['within_10pct']:.2f}"] for name, m in d["rows"].items()]
    body = table(["model", "Spearman", "Kendall", "MAPE %", "within ±5%", "within ±10%"], rows)
    cmd = f"python experiments/ofa_latency_predictor.py --archs {args['archs']} --train {args['train']} " \
          f"--retest {args['retest']} --seed {args['seed']}"
    return text + body + "\n" + footer(res.source("ofa_latency_predictor.json", command=cmd))


@renderer
def measurement_repeatability(res: Results) -> str:
    """Two shuffled passes over random OFA subnets on this machine: how well a measurement repeats."""
    d = res.load("ofa_cpu_measurements.json")
    t, rng = d["test_retest"], d["latency_range_ms"]
    text = (f"{d['archs']} random subnets of the default space, each measured twice in two shuffled passes "
            f"({d['wall_s'] / 60:.1f} min; threads {d['target']['measure']['threads']}, drift correction "
            f"{'on' if d['target']['measure']['reference'] else 'off'}): the passes agree to Spearman "
            f"{t['spearman']:.3f}, {pct(t['within_10pct'])} of subnets within ±10%, mean absolute difference "
            f"{t['mape']:.1f}%. These subnets span {rng[0]:.2f}-{rng[1]:.2f} ms, mostly per-kernel overhead, so "
            f"the machine's noise is as large as most differences between them.")
    cmd = f"python experiments/measure_ofa_cpu.py --archs {d['archs']} --seed {d['seed']}"
    return text + "\n" + footer(res.source("ofa_cpu_measurements.json", command=cmd))


@renderer
def arm_prior(res: Results) -> str:
    """The kernel-level ARM prior on a space it was not fitted on, alone and calibrated on K measurements."""
    d = res.load("arm_prior.json")
    args = d["args"]
    rows = []
    for r in d["rows"]:
        power = (f"{r['power_law_spearman']:.3f} / {pct(r['power_law_within_10pct'])}"
                 if "power_law_spearman" in r else "-")
        if "test-retest" in r["fitted_on"]:  # the yardstick row: a second measurement, no prior
            k = "-"
        else:
            k = "0 (prior alone)" if r["shots"] == 0 else str(r["shots"])
        rows.append([r["evaluated_on"], r["fitted_on"], k, f"{r['spearman']:.3f}", f"{r['mape']:.1f}",
                     pct(r["within_10pct"]), power])
    text = (f"Mean over {args['repeats']} random choices of the K measured archs, scored on "
            f"{args['eval_archs']} others:\n\n")
    body = table(["evaluated on", "prior fitted on", "measurements (K)", "Spearman", "MAPE %", "within ±10%",
                  "power law alone: Spearman / ±10%"], rows)
    cmd = "python experiments/fit_arm_prior.py"
    return text + body + "\n" + footer(res.source("arm_prior.json", command=cmd))


# -- latency_predictors.json (changing: the booster columns; keep these three small)
_LAT_SHOWN = (("nb201", "raspi4"), ("nb201", "pixel3"), ("fbnet", "raspi4"), ("fbnet", "pixel3"))


def _latency_rows(d: Node) -> dict[tuple[str, str, str, int], Node]:
    return {(r["space"], r["device"], r["model"], r["train_size"]): r for r in d["results"]}


@renderer
def latency_predictors(res: Results) -> str:
    """Every latency model on the shipped device columns: Spearman / % within ±10% on held-out archs."""
    d = res.load("latency_predictors.json")
    p = d["protocol"]
    models, sizes = list(p["models"]), list(p["train_sizes"])
    rows = _latency_rows(d)

    def cell(r: Node | None) -> str:
        return "-" if r is None or r["spearman"] is None else f"{r['spearman']:.3f} / {100 * r['within_10pct']:.0f}"

    def median_cell(space: str, devices: list[str], model: str, n: int) -> str:
        got = [rows[(space, dev, model, n)] for dev in devices if (space, dev, model, n) in rows]
        got = [r for r in got if r["spearman"] is not None]
        if not got:
            return "-"
        return (f"{statistics.median(r['spearman'] for r in got):.3f} / "
                f"{100 * statistics.median(r['within_10pct'] for r in got):.0f}")

    out = []
    for space, device in _LAT_SHOWN:
        for n in sizes:
            out.append([space, device, str(n)] + [cell(rows.get((space, device, m, n))) for m in models])
    for space in ("nb201", "fbnet", "ofa"):
        devices = _unique(k[1] for k in rows if k[0] == space)
        label = f"median of the {len(devices)} {'GPU ' if space == 'ofa' else ''}columns"
        for n in sizes:
            out.append([space, label, str(n)] + [median_cell(space, devices, m, n) for m in models])
    cpu = [k for k in rows if k[0] == "ofa(this_cpu)"]
    for n in sorted({k[3] for k in cpu}):
        out.append(["ofa (default config)", "this machine's CPU", str(n)]
                   + [cell(rows.get(("ofa(this_cpu)", "this_cpu", m, n))) for m in models])
    text = (f"Fitted on {' or '.join(map(str, sizes))} random architectures, scored on a fixed {p['test_size']} "
            f"others (the CPU row: the measured subnets not used for fitting). Spearman / % within ±10%:\n\n")
    body = table(["space", "device", "training archs"] + [f"`{m}`" for m in models], out)
    cmd = "python experiments/latency_predictors.py" + (" --quick" if p["quick"] else "")
    return text + body + "\n" + footer(res.source("latency_predictors.json", command=cmd))


@renderer
def latency_ceilings(res: Results) -> str:
    """What the data allow: isomorphic NB201 cells measured separately, and a second measurement here."""
    d = res.load("latency_predictors.json")
    ceiling = d["extras"]["nb201"]["noise_ceiling"]
    pi, px = ceiling["raspi4"], ceiling["pixel3"]
    retest = d["extras"]["ofa(this_cpu)"]["test_retest"]
    text = (f"The NAS-Bench-201 Pi 4 and Pixel 3 columns measure isomorphic cells (the same network with the two "
            f"intermediate nodes swapped) separately; predicting each from its twins' mean reaches Spearman "
            f"{pi['spearman']:.3f} / {pct(pi['within_10pct'])} within ±10% on the Pi 4 and {px['spearman']:.3f} / "
            f"{pct(px['within_10pct'])} on the Pixel 3: no model of these columns can do much better. On this "
            f"machine's CPU a second measurement of the same {retest['n_test']} subnets reaches Spearman "
            f"{retest['spearman']:.3f} / {pct(retest['within_10pct'])} (mean difference {retest['mape']:.1f}%).")
    cmd = "python experiments/latency_predictors.py"
    return text + "\n" + footer(res.source("latency_predictors.json", command=cmd))


@renderer
def latency_transfer(res: Results) -> str:
    """Few-shot transfer of latency predictors to a device left out."""
    d = res.load("latency_predictors.json")
    groups: dict[tuple[str, int], list[Node]] = {}
    for r in d["transfer"]:
        if r["spearman"] is not None and r["space"] in ("nb201", "fbnet", "ofa"):
            groups.setdefault((r["space"], r["shots"]), []).append(r)
    rows = []
    for (space, shots), rs in groups.items():
        worst = min(rs, key=lambda r: r["spearman"])
        rows.append([f"{space} ({len(rs)} devices)", str(shots),
                     f"{statistics.median(r['spearman'] for r in rs):.3f}",
                     f"{worst['spearman']:.3f} ({worst['target']})",
                     pct(statistics.median(r["within_10pct"] for r in rs)),
                     f"{statistics.median(r['source_mean_spearman'] for r in rs):.3f}"])
    p = d["protocol"]
    text = (f"Sources: the space's other device columns; mean of {p['shot_draws']} draws of the K shots, scored on "
            f"the {p['test_size']} test architectures:\n\n")
    body = table(["space", "shots", "median Spearman", "worst device", "median within ±10%",
                  "uncalibrated source mean (Spearman)"], rows)
    cmd = "python experiments/latency_predictors.py"
    return text + body + "\n" + footer(res.source("latency_predictors.json", command=cmd))


# -- the LightGBM gbdt against the numpy boosters it replaced (written by --baseline-checkout runs)
def _baseline_note(c: Node) -> str:
    b = c["baseline"]
    commit = f" at commit {b['commit'][:7]}" if b.get("commit") else ""
    return f"the booster it replaced, `{b['booster']}` (`{b['file']}`{commit}), fitted on the same rows ({c['order']})"


@renderer(pending_on="latency_predictors.json", pending_key="booster_comparison")
def latency_booster_comparison(res: Results) -> str:
    """Latency: new gbdt vs the old booster per space and training size (means over columns, seconds summed)."""
    d = res.load("latency_predictors.json")
    c = d["booster_comparison"]
    rows = [[r["space"], str(r["train_size"]), str(r["columns"]),
             f"{r['gbdt_spearman']:.3f} / {r['baseline_spearman']:.3f}",
             f"{pct(r['gbdt_within_10pct'])} / {pct(r['baseline_within_10pct'])}",
             f"{r['gbdt_mape']:.2f} / {r['baseline_mape']:.2f}",
             f"{r['gbdt_fit_s']:.2f} / {r['baseline_fit_s']:.2f}", f"{r['fit_speedup']:.1f}x",
             f"{r['spearman_wins']} of {r['columns']}"] for r in c["rows"]]
    text = (f"LightGBM `gbdt` against {_baseline_note(c)}; means over the device columns, fit seconds summed "
            f"(new / old):\n\n")
    body = table(["space", "training archs", "columns", "Spearman", "within ±10%", "MAPE %", "fit s", "fit speed-up",
                  "columns where new ranks at least as well"], rows)
    return text + body + "\n" + footer(res.source("latency_predictors.json"))


@renderer(pending_on="ofa_accuracy_predictor.json", pending_key="booster_comparison")
def accuracy_booster_comparison(res: Results) -> str:
    """Accuracy on OFA subnets: new gbdt vs the old booster per training size (mean over splits)."""
    d = res.load("ofa_accuracy_predictor.json")
    c = d["booster_comparison"]
    spread = all("seed_spread" in r for r in c["rows"])  # present when run with --booster-seeds

    def seeds(r: Node) -> list[str]:
        if not spread:
            return []
        sp = r["seed_spread"]
        return [f"{sp['gbdt_spearman_mean']:.3f} ± {sp['gbdt_spearman_std']:.3f} / "
                f"{sp['baseline_spearman_mean']:.3f} ± {sp['baseline_spearman_std']:.3f} ({sp['seeds']} seeds)"]

    rows = [[str(r["train"]), f"{r['gbdt_spearman']:.3f} ± {r['gbdt_spearman_std']:.3f}",
             f"{r['baseline_spearman']:.3f} ± {r['baseline_spearman_std']:.3f}",
             f"{r['gbdt_kendall']:.3f} / {r['baseline_kendall']:.3f}",
             f"{r['gbdt_fit_s']:.4f} / {r['baseline_fit_s']:.4f}"] + seeds(r) for r in c["rows"]]
    text = (f"LightGBM `gbdt` against {_baseline_note(c)}; Spearman mean ± std over the splits"
            + (", and its mean ± std over the boosters' own seeds" if spread else "") + ":\n\n")
    body = table(["training subnets", "Spearman, new", "Spearman, old", "Kendall (new / old)",
                  "fit s, mean (new / old)"] + (["Spearman over booster seeds (new / old)"] if spread else []),
                 rows)
    return text + body + "\n" + footer(res.source("ofa_accuracy_predictor.json"))


# -- search_speed.json (changing: written by search_speed.py --against-ofa, the side-by-side with the peer)
_SPEED_PATHS = {"latency_ridge": "ridge latency predictor", "latency_prior": "`arm_cpu` prior"}


@renderer
def search_speed(res: Results) -> str:
    """Architectures scored per second on the default OFA space: ours against once-for-all's own finder."""
    d = res.load("search_speed.json")
    peer = d["peer"]
    rows = []
    for key, label in _SPEED_PATHS.items():
        r = d[key]
        load = r["load_average_1min"]
        rows.append([label, f"{r['archs_per_second']:,}", f"{r['peer_archs_per_second']:,}", f"{r['ratio']:.2f}x",
                     f"{r['queries']:,}", str(r["repeats"]), f"{load[0]:.2f}-{load[1]:.2f}"])
    text = (f"Ours: the main command's search loop (`evolution`, population {d['latency_ridge']['population']}) "
            f"on {d['space']}. The peer: {peer['package']}, `{peer['search']}` (population {peer['population']}), "
            f"its accuracy predictor `{peer['accuracy_predictor']}`, efficiency from its {peer['efficiency']}; "
            f"counted: {peer['archs_counted']}. Both timed alternately on the same machine, {d['threads']}.\n\n")
    body = table(["our latency model", "ours: archs/s", "once-for-all's finder: archs/s", "ours / theirs",
                  "archs per run", "repeats (median)", "load average (1 min)"], rows)
    return text + body + "\n" + footer(res.source("search_speed.json"))


# -- search_speed_spaces.json (search_speed.py --space all; written ahead of its final run)
@renderer(pending_on="search_speed_spaces.json")
def search_speed_spaces(res: Results) -> str:
    """The search loop's rate on each space beside the OFA space's (the block spaces' acceptance: within 2x)."""
    d = res.load("search_speed_spaces.json")
    acc = d["acceptance"]
    paths = [key for key in _SPEED_PATHS if key in d]
    names = list(d[paths[0]])
    rows = []
    for name in names:
        row = [f"`{name}`"]
        for key in paths:
            r = d[key][name]
            row.append(f"{r['archs_per_second']:,}")
            row.append("1 (yardstick)" if "ratio_to_ofa" not in r else
                       f"{r['ratio_to_ofa']:.2f}x" + ("" if r["passed"] else " **below**"))
        rows.append(row)
    header = ["space"] + [h for key in paths for h in (f"archs/s, {_SPEED_PATHS[key]}", "/ ofa's")]
    first = d[paths[0]]["ofa"]
    loads = [v for key in paths for name in names for v in d[key][name]["load_average_1min"]]
    text = (f"The main command's search loop (`evolution`, population {first['population']}, {first['queries']:,} "
            f"archs per run, median of {first['repeats']} repeats) on each space as `+space=NAME` configures it, "
            f"timed alternately with the OFA space; {d['threads']}; load average {min(loads):.2f}-{max(loads):.2f}. "
            f"Acceptance: {acc['rule']}; "
            + ("every space passes." if d["passed"] else "**not every space passes**.") + "\n\n")
    return text + table(header, rows) + "\n" + footer(res.source("search_speed_spaces.json"))


# -- flops_vs_latency.json (experiments/flops_vs_latency.py; written ahead of its full run)
_FVL_GROUPS = {"all_spaces": "all four spaces together", "presets_28": "presets at 28 px",
               "presets_224": "presets at 224 px"}


def _fvl_answer(d: Node) -> str:
    """The one-sentence answer, from the numbers: which family is slowest per MAC, and what ranks latency."""
    fam = d["families"]["random_archs"]
    per_mac = {name: fam[name]["ms_per_mmac_median"] for name in fam if name != "blocks"}  # blocks mixes them
    slow, fast = max(per_mac, key=per_mac.get), min(per_mac, key=per_mac.get)
    rho = d["groups"]["all_spaces"]["spearman"]
    inv = d["groups"]["all_spaces"]["inversions"]
    th = d["thresholds"]
    better = "better" if (rho["kernels"] or -1) > (rho["macs"] or -1) else "no better"
    text = (f"Per MAC, `{slow}` networks are the slowest here: their random archs take "
            f"{per_mac[slow] / per_mac[fast]:.1f}x the time per MAC of `{fast}`'s (median {per_mac[slow]:.3f} vs "
            f"{per_mac[fast]:.3f} ms per million MACs) and run a median {fam[slow]['kernels_median']:.0f} kernels "
            f"against {fam[fast]['kernels_median']:.0f}; across the four spaces the kernel count ranks latency "
            f"{better} than MACs do (Spearman {rho['kernels']:.2f} vs {rho['macs']:.2f}), and of the "
            f"{inv['pairs_with_fewer_macs']:,} pairs where one network has at least {pct(th['fewer_macs'])} fewer "
            f"MACs, {inv['count']:,} have it more than {pct(th['slower'])} slower ({inv['across_families']:,} of them "
            f"pairs of two families)")
    if "presets_224" in d["families"]:
        big = d["families"]["presets_224"]
        big_mac = {name: big[name]["ms_per_mmac_median"] for name in big}
        slow224, fast224 = max(big_mac, key=big_mac.get), min(big_mac, key=big_mac.get)
        text += (f"; at 224 px the presets slowest per MAC are `{slow224}`'s "
                 f"({big_mac[slow224] / big_mac[fast224]:.1f}x the time per MAC of `{fast224}`'s)")
    return text + "."


@renderer(pending_on="flops_vs_latency.json")
def flops_vs_latency(res: Results) -> str:
    """MACs, parameters, kernel count and the arm_cpu prior against latency measured on this CPU, and inversions."""
    d = res.load("flops_vs_latency.json")
    args, th = d["args"], d["thresholds"]
    if args["quick"]:
        raise RenderError("experiments/results/flops_vs_latency.json is a --quick smoke test; run "
                          "`python experiments/flops_vs_latency.py` (the full benchmark) before rendering the docs")
    m = d["target"]["measure"]
    configs = d["space_configs"] if "space_configs" in d else {}
    blocks_families = configs["blocks"].get("families") if "blocks" in configs else None
    families = f"; `blocks` with families {', '.join(blocks_families)}" if blocks_families else ""
    if "shufflenet" in configs and configs["shufflenet"].get("xception"):
        families += ", `shufflenet` with its Xception unit"
    text = (f"{args['archs']} random archs of each block space at the configuration `+space=NAME` searches "
            f"(28x28x1 input, 10 classes{families}) and every preset at 28 px and at 224 px, measured on this machine's CPU "
            f"by the `cpu` target ({d['target']['runtime']}, {m['threads']} thread, drift correction "
            f"{'on' if m['reference'] else 'off'}), and scored by the {d['prior']['name']} (a Raspberry Pi 4 model: "
            f"only its ranking compares with this CPU). Spearman (Kendall) of each quantity with the measured "
            f"latency; an inversion is a pair where one network has at least {pct(th['fewer_macs'])} fewer MACs "
            f"and is more than {pct(th['slower'])} slower.\n\n")
    rows = []
    for name in d["groups"]:
        g = d["groups"][name]
        rho, tau, inv = g["spearman"], g["kendall"], g["inversions"]
        rows.append([_FVL_GROUPS.get(name, f"`{name}`"), str(g["n"])]
                    + ["-" if rho[k] is None else f"{rho[k]:.2f} ({tau[k]:.2f})"
                       for k in ("macs", "params", "kernels", "prior_ms")]
                    + [f"{inv['count']:,} of {inv['pairs_with_fewer_macs']:,}", f"{g['ms_per_mmac_median']:.3f}"])
    body = table(["networks", "n", "MACs", "params", "kernels", "`arm_cpu` prior", "inversions",
                  "ms per M MACs (median)"], rows)
    presets = sorted((r for r in d["networks"] if r["group"] == "presets_224"), key=lambda r: r["macs"])
    body += "\n\nPresets at 224 px (1000 classes):\n\n" + table(
        ["preset", "M MACs", "params", "kernels", "measured ms", "prior ms"],
        [[f"`{r['name']}`", f"{r['macs'] / 1e6:.0f}", f"{r['params']:,}", str(r["kernels"]),
          f"{r['latency_ms']:.2f}", f"{r['prior_ms']:.1f}"] for r in presets])
    striking = []
    for name in ("presets_224", "presets_28", "all_spaces"):
        for s in list(d["groups"][name]["inversions"]["striking"])[:2] if name in d["groups"] else []:
            striking.append(f"`{s['fewer_macs']}` has {pct(1 - s['macs_ratio'])} fewer MACs than `{s['more_macs']}` "
                            f"and runs {s['latency_ratio']:.2f}x its time ({s['latency_ms'][0]:.3f} vs "
                            f"{s['latency_ms'][1]:.3f} ms; {_FVL_GROUPS.get(name, name)})")
    if striking:
        body += "\n\nThe most striking inversions: " + "; ".join(striking) + "."
    return (text + body + "\n\n" + _fvl_answer(d) + "\n" + footer(res.source("flops_vs_latency.json")))


@renderer(pending_on="flops_vs_latency.json")
def flops_vs_latency_summary(res: Results) -> str:
    """The README's short form of :func:`flops_vs_latency`: the rank correlations over all spaces and over the
    presets (each space's own row is in docs/spaces.md), and the answer."""
    d = res.load("flops_vs_latency.json")
    if d["args"]["quick"]:
        raise RenderError("experiments/results/flops_vs_latency.json is a --quick smoke test; run the full benchmark")
    rows = []
    for name in [g for g in d["groups"] if g in _FVL_GROUPS]:
        g = d["groups"][name]
        rho, inv = g["spearman"], g["inversions"]
        rows.append([_FVL_GROUPS.get(name, f"`{name}`"), str(g["n"])]
                    + ["-" if rho[k] is None else f"{rho[k]:.2f}" for k in ("macs", "kernels", "prior_ms")]
                    + [f"{inv['count']:,} of {inv['pairs_with_fewer_macs']:,}"])
    everything = d["groups"]["all_spaces"]["spearman"]
    lead = (f"Rank correlation (Spearman) with the latency measured on this CPU. Across the four block spaces at "
            f"the size they are searched at (`blocks` with every family, `shufflenet` with its Xception unit), MACs "
            f"rank latency at "
            f"{everything['macs']:.2f}, the kernel count at "
            f"{everything['kernels']:.2f} and the kernel-level `arm_cpu` prior (per kernel: MACs, memory traffic and "
            f"launches; fitted on a Raspberry Pi 4, never on this machine) at {everything['prior_ms']:.2f}: on small "
            f"inputs a network costs what its kernels launch and move, which MACs do not count.")
    if "presets_224" in d["groups"]:
        big = d["groups"]["presets_224"]["spearman"]
        lead += (f" At 224 px, where the arithmetic weighs more, MACs rank the presets at {big['macs']:.2f}, yet "
                 f"families differ per MAC (below).")
    lead += "\n\n"
    body = table(["networks", "n", "MACs", "kernel count", "`arm_cpu` prior", "fewer MACs yet slower (pairs)"], rows)
    return (lead + body + "\n\n" + _fvl_answer(d) + " Every network and preset: [docs/spaces.md]"
            "(docs/spaces.md#flops-are-not-latency).\n" + footer(res.source("flops_vs_latency.json")))


# -- shared_machine.json (written by experiments/shared_machine.py; not run yet when this renderer was written)
@renderer(pending_on="shared_machine.json")
def shared_machine(res: Results) -> str:
    """The main command alone and beside CPU-bound processes, per thread policy."""
    d = res.load("shared_machine.json")
    rows = []
    for r in d["runs"]:
        t = r["threads"]
        threads = "-" if t is None else str(t["threads"])
        rows.append([f"`{r['policy']}`", str(r["busy_processes"]), threads, f"{r['wall_s']:.0f}",
                     "-" if r["accuracy_stage_s"] is None else f"{r['accuracy_stage_s']:.0f}", f"{r['cpu_s']:.0f}",
                     f"{r['load_average_before']:.2f}"])
    body = table(["policy", "busy processes beside it", "torch threads", "wall s", "accuracy stage s", "CPU s",
                  "load average before"], rows)
    policies = "; ".join(f"`{name}`: {text}" for name, text in d["policies"].items())
    ratios = "; ".join(f"`{name}`: {r['wall']:.2f}x wall time, "
                       + ("-" if r["accuracy_stage"] is None else f"{r['accuracy_stage']:.2f}x")
                       + " accuracy stage" for name, r in d["ratio_loaded_to_alone"].items())
    text = (f"`{d['command']}` on {d['cores']} cores, alone and beside {d['busy_processes']} CPU-bound "
            f"processes. Policies: {policies}.\n\n")
    return (text + body + f"\n\nLoaded / alone: {ratios}.\n"
            + footer(res.source("shared_machine.json", command="python experiments/shared_machine.py")))


# -- search_nb201.json / search_fbnet.json and their 10-seed, 150-query reruns *_150.json
# (experiments/strategy_bench.py): every strategy at its CLI defaults, `auto` first, per setting ("accuracy",
# "constrained:DEVICE", "pareto:DEVICE") and budget, with the acceptance check of the default per setting.
def _full_settings(d: Node) -> list[str]:
    """The settings run with the most seeds (the full device column, and the accuracy problem)."""
    seeds = {k: d["seeds"][k] for k in d["seeds"]}
    top = max(seeds.values())
    return [k for k, v in seeds.items() if v == top]


def _strategy_tables(d: Node, *, digits: int, settings: list[str]) -> str:
    budgets = list(d["budgets"])
    by = {(r["setting"], r["strategy"], r["budget"]): r for r in d["rows"]}

    def cell(r: Node | None) -> str:
        if r is None:
            return "-"
        text = f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}"
        return text + (f" ({r['resolved']})" if r["resolved"] != r["strategy"] else "")

    parts = []
    for setting in settings:
        names = [n for n in d["strategies"] if any((setting, n, b) in by for b in budgets)]
        seeds = d["seeds"][setting]
        parts.append(f"`{setting}` ({seeds} seeds; mean ± std; `auto`'s resolved strategy in brackets):\n\n"
                     + table(["strategy"] + [f"@{b}" for b in budgets],
                             [[f"`{n}`"] + [cell(by.get((setting, n, b))) for b in budgets] for n in names]))
    return "\n\n".join(parts)


def _acceptance(d: Node, *, digits: int) -> str:
    budgets = list(d["budgets"])
    checks = list(d["acceptance"])
    by = {(c["setting"], c["budget"]): c for c in checks}
    settings = _unique(c["setting"] for c in checks)

    def cell(c: Node | None) -> str:
        if c is None:
            return "-"
        return f"{c['difference']:+.{digits}f}" + ("" if c["passed"] else f" **below** (`{c['best_other']}`)")

    units = "; ".join(_unique(f"{c['tolerance']} {c['unit']}" for c in checks))
    passed = sum(bool(c["passed"]) for c in checks)
    text = (f"`auto`'s mean minus the best other strategy's mean, per setting and budget; the acceptance is "
            f"`auto` >= best other - tolerance ({units}). {passed} of {len(checks)} pass.\n\n")
    body = table(["setting"] + [f"@{b}" for b in budgets],
                 [[f"`{s}`"] + [cell(by.get((s, b))) for b in budgets] for s in settings])
    fails = [c for c in checks if not c["passed"]]
    if fails:
        body += "\n\nBelow the tolerance: " + "; ".join(
            f"`{c['setting']}` @{c['budget']}: `auto` ({c['default_resolves_to']}) {c['default_mean']:.{digits}f} "
            f"against `{c['best_other']}` {c['best_other_mean']:.{digits}f} ({c['seeds']} seeds)" for c in fails) + "."
    return text + body


def _problems(d: Node, space: str) -> str:
    """What the settings mean, with the exact answers of the full-seed column (from ``truth``)."""
    full = [s for s in _full_settings(d) if s != "accuracy"]
    device = full[0].split(":", 1)[1] if full else None
    tol = "; ".join(f"{k}: {v['value']} {v['unit']}" for k, v in d["tolerance"].items())
    capped = len(d.get("capped", []))
    cap = (f" {capped} strategy x setting x budget cells were not run (the slowest strategies above 300 queries "
           f"on columns other than {device}; listed under `capped` in the JSON)." if capped else "")
    if space == "nb201":
        acc = d["truth"]["accuracy"]
        c, p = d["truth"][f"constrained:{device}"], d["truth"][f"pareto:{device}"]
        text = (f"Settings: `accuracy` (best test accuracy found; optimum {acc['optimum']:.2f}); "
                f"`constrained:DEVICE` (best accuracy with latency under the median cell's on that column: on "
                f"{device} {c['budget_ms']:.2f} ms, best feasible {c['best_feasible']:.2f}); `pareto:DEVICE` "
                f"(hypervolume of the found front over the exact front's; on {device} the exact front has "
                f"{p['exact_front_points']} points above the reference).")
    else:
        c = d["truth"][f"constrained:{device}"]
        text = (f"Setting `constrained:DEVICE`: the most MACs under the median network's latency on that column, "
                f"scored as a fraction of the exact optimum (on {device}: budget {c['budget_ms']:.2f} ms, "
                f"optimum {c['optimum_mmacs']:.2f} M MACs; the per-(layer, block) table reproduces the shipped "
                f"networks' latency to {c['latency_table_fit']['mape']:.2f}% mean error).")
    return f"{text} Tolerance of the acceptance: {tol}.{cap}"


def _strategy_bench(res: Results, name: str, space: str) -> str:
    d = res.load(name)
    return (_problems(d, space) + "\n\n" + _acceptance(d, digits=3) + "\n\n"
            + _strategy_tables(d, digits=3, settings=_full_settings(d)) + "\n" + footer(res.source(name)))


@renderer
def search_nb201(res: Results) -> str:
    """Strategies on NAS-Bench-201 (table accuracy and latency): accuracy, constrained and Pareto problems."""
    return _strategy_bench(res, "search_nb201.json", "nb201")


@renderer
def search_fbnet(res: Results) -> str:
    """Strategies on the FBNet space: most MACs under a latency budget, as a fraction of the exact optimum."""
    return _strategy_bench(res, "search_fbnet.json", "fbnet")


def _as_default(d: Node) -> str:
    """The same check with each other strategy in ``auto``'s place: whether any single strategy would pass it
    on every setting (when none does, the settings' winners differ, which is the cause of the exceptions)."""
    by: dict[tuple[str, int], dict[str, float]] = {}
    for r in d["rows"]:
        if r["strategy"] != "auto":
            by.setdefault((r["setting"], r["budget"]), {})[r["strategy"]] = r["mean"]
    counts = []
    for name in d["strategies"]:
        if name == "auto":
            continue
        passed = total = 0
        for (setting, _), means in by.items():
            if name not in means or len(means) < 2:
                continue
            tol = d["tolerance"][setting.split(":", 1)[0]]["value"]
            total += 1
            passed += means[name] >= max(m for s, m in means.items() if s != name) - tol
        counts.append(f"`{name}` {passed} of {total}")
    return "The same check with another strategy as the default passes on: " + ", ".join(counts) + "."


def _acceptance_150(res: Results, name: str) -> str:
    d = res.load(name)
    return _acceptance(d, digits=3) + "\n\n" + _as_default(d) + "\n" + footer(res.source(name))


@renderer
def search_nb201_150(res: Results) -> str:
    """The acceptance at 150 queries with 10 seeds on every setting (NAS-Bench-201)."""
    return _acceptance_150(res, "search_nb201_150.json")


@renderer
def search_fbnet_150(res: Results) -> str:
    """The acceptance at 150 queries with 10 seeds on every setting (FBNet)."""
    return _acceptance_150(res, "search_fbnet_150.json")


def _headline_main(res: Results) -> str:
    main = res.load("main_command_arm_cpu.json")["runs"]["cold"]
    return (f"**Main command**: {main['wall_s']:.0f} s on 2 CPU cores with the shipped supernet; the chosen "
            f"network scores {main['best_test_accuracy_onnx']:.3f} test accuracy through onnxruntime, at "
            f"{main['best_latency_ms']:.1f} ms on the ARM prior.")


def _headline_defaults(res: Results, name: str, space: str) -> str:
    """How often the default strategy holds against every other strategy's CLI default at 150 queries."""
    d = res.load(name)
    checks = list(d["acceptance"])
    passed = sum(bool(c["passed"]) for c in checks)
    seeds = min(d["seeds"][k] for k in d["seeds"])
    return (f"**Default strategy, {space}**: at {', '.join(map(str, d['budgets']))} queries `auto` is at least as "
            f"good as the best other strategy's CLI default (minus the tolerance) on {passed} of {len(checks)} "
            f"latency columns and problems ({seeds} seeds each).")


def _headline_nb201(res: Results) -> str:
    return _headline_defaults(res, "search_nb201_150.json", "NAS-Bench-201")


def _headline_fbnet(res: Results) -> str:
    return _headline_defaults(res, "search_fbnet_150.json", "FBNet")


def _headline_speed(res: Results) -> str:
    speed = res.load("search_speed.json")
    ridge, prior = speed["latency_ridge"], speed["latency_prior"]
    return (f"**Search speed**: {ridge['archs_per_second']:,} architectures/s with the ridge predictors, "
            f"{ridge['ratio']:.1f}x once-for-all's own evolution search timed beside it ({prior['ratio']:.1f}x with "
            f"the `arm_cpu` prior; load average {ridge['load_average_1min'][0]:.1f}).")


def _headline_latency(res: Results) -> str:
    lat = _latency_rows(res.load("latency_predictors.json"))
    best = max((r for k, r in lat.items() if k[:2] == ("fbnet", "raspi4") and k[3] == 1000
                and r["spearman"] is not None), key=lambda r: r["within_10pct"])
    return (f"**Latency predictors**: on FBNet Pi 4 latencies from 1,000 measured networks, `{best['model']}` "
            f"predicts {pct(best['within_10pct'])} of unseen networks within ±10%.")


# README headlines: one line per result, each a small function of the JSON behind its table in the docs
@renderer
def readme_headlines(res: Results) -> str:
    lines = [f"- {line(res)}" for line in (_headline_main, _headline_nb201, _headline_fbnet, _headline_speed,
                                             _headline_latency)]
    sources = [res.source("main_command_arm_cpu.json", command=_MAIN_TIMING), res.source("search_nb201_150.json"),
               res.source("search_fbnet_150.json"), res.source("search_speed.json"),
               res.source("latency_predictors.json", command="python experiments/latency_predictors.py")]
    return "\n".join(lines) + "\n" + footer(*sources)


# ------------------------------------------------------------------------------------------------ driver
def doc_paths(root: Path = ROOT) -> list[Path]:
    paths: list[Path] = []
    for pattern in DOC_FILES:
        paths += sorted(root.glob(pattern))
    return paths


def render_text(text: str, res: Results, *, where: str = "") -> tuple[str, list[str]]:
    """``text`` with every generated block re-rendered, and the names of blocks whose content changed."""
    changed: list[str] = []

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in RENDERERS:
            raise RenderError(f"{where}: block 'generated: {name}' names no renderer in experiments/render_docs.py "
                              f"(known: {', '.join(sorted(RENDERERS))})")
        body = RENDERERS[name](res).rstrip("\n") + "\n"
        if body != m.group("body"):
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(sub, text), changed


def render(root: Path = ROOT, *, write: bool) -> list[str]:
    """Render every doc under ``root``; returns ``FILE: block`` for each block that differed (written if ``write``)."""
    res = Results(root)
    differ: list[str] = []
    for path in doc_paths(root):
        rel = path.relative_to(root)
        text = path.read_text()
        new, changed = render_text(text, res, where=str(rel))
        differ += [f"{rel}: {name}" for name in changed]
        if write and new != text:
            path.write_text(new)
    return differ


def unused_renderers(root: Path = ROOT) -> list[str]:
    """Renderers no block names (a renamed or deleted block would otherwise leave a renderer nobody runs)."""
    used = {m.group("name") for path in doc_paths(root) for m in BLOCK.finditer(path.read_text())}
    waiting = {name for name, (file, key) in PENDING.items() if not _has(root / RESULTS / file, key)}
    return sorted(set(RENDERERS) - used - waiting)


def _has(path: Path, key: str | None) -> bool:
    if not path.is_file():
        return False
    if key is None:
        return True
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return True  # a broken file is not "waiting": let its renderer fail on it
    return isinstance(data, dict) and key in data


_DARTS_HW = "python experiments/darts_hardware.py"
#: Settings the hardware-aware benchmark ran under separate files (each its own command)
_DARTS_HW_FILES = ("darts_hardware.json", "darts_hardware_arm_cpu.json")


def _darts_hw(res: Results) -> tuple[list[dict], list[str]]:
    rows, sources = [], []
    for name in _DARTS_HW_FILES:
        if name == _DARTS_HW_FILES[0] or (res.root / RESULTS / name).is_file():
            rows += res.load(name)["rows"]
            sources.append(res.source(name, command=_DARTS_HW))
    return rows, sources
_DARTS_NB = "python experiments/darts_nb201.py"


@renderer(pending_on="darts_cells.json")
def darts_summary(res: Results) -> str:
    """The README's one-shot headlines: one row per darts_* benchmark, with its command."""
    nb, cells = res.load("darts_nb201.json"), res.load("darts_cells.json")
    hw_rows, hw_sources = _darts_hw(res)
    s = nb["summary"]
    seeds = nb["seeds"]
    rows = [[f"NAS-Bench-201, {seeds} seeds (table CIFAR-10 test accuracy, mean)",
             f"plain {s['none']['mean_cifar10_test']:.2f}, guarded {s['beta_decay']['mean_cifar10_test']:.2f} "
             f"({s['beta_decay']['seeds_in_top5']} of {seeds} in the top 5 %)", f"`{_DARTS_NB}`"]]
    for space, target in _unique((r["space"], r["target"]) for r in hw_rows):
        mine = [r for r in hw_rows if r["space"] == space and r["target"] == target]
        lat = [r for r in mine if r["cost"] == "latency"]
        mac = [r for r in mine if r["cost"] == "macs"]
        rows.append([f"`{space}` on `{target}`, {len(lat)} budgets (latency / budget; test accuracy)",
                     f"latency-aware {min(r['latency_over_budget'] for r in lat):.2f}-"
                     f"{max(r['latency_over_budget'] for r in lat):.2f}, "
                     f"{sum(r['test_accuracy'] for r in lat) / len(lat):.1f} %; MACs baseline "
                     f"{min(r['latency_over_budget'] for r in mac):.2f}-{max(r['latency_over_budget'] for r in mac):.2f}, "
                     f"{sum(r['test_accuracy'] for r in mac) / len(mac):.1f} %", f"`{_DARTS_HW}`"])
    c = cells["summary"]
    rows.append([f"`darts` cells vs {len(cells['rows']) - 1} random (test accuracy)",
                 f"derived {c['derived_test_accuracy']:.1f} %, random mean {c['random_mean']:.1f} %, best "
                 f"{c['random_best']:.1f} % (percentile {c['percentile_among_random']:.0f})", "`python experiments/darts_cells.py`"])
    return table(["benchmark", "result", "command"], rows) + "\n" + footer(
        res.source("darts_nb201.json", command=_DARTS_NB), *hw_sources,
        res.source("darts_cells.json", command="python experiments/darts_cells.py"))


_CHANNELS = "python experiments/channel_search.py"


@renderer(pending_on="channel_search.json")
def channel_search_table(res: Results) -> str:
    """Channel search at equal measured latency: each method's latency / base and test accuracy (mean ± std)."""
    d = res.load("channel_search.json")

    def pm(pair: Node, scale: float = 100.0, digits: int = 2) -> str:
        return f"{scale * pair[0]:.{digits}f} ± {scale * pair[1]:.{digits}f}"

    rows = []
    for r in d["rows"]:
        cpu = r.get("search_cpu_min")
        rows.append([f"`{r['base']}`", f"{r['ratio']:g}", f"`{r['method']}`", str(r["n"]), pm(r["latency_ratio"], 1.0, 3),
                     pm(r["test_before"]), pm(r["test_accuracy"]), "" if cpu is None else f"{cpu[0]:.1f}"])
    return table(["base", "budget (x base latency)", "method", "runs", "measured latency / base",
                  "test % before fine-tuning", "test % after", "search CPU min"], rows) + "\n" + footer(
        *_channel_sources(res))


@renderer(pending_on="measure_together.json")
def measure_together_summary(res: Results) -> str:
    """How far latency / base moves between rounds, measured apart versus together (docs/channels.md)."""
    d = res.load("measure_together.json")
    parts = [f"at width {r['width']:g}, {r['apart']['min']:.2f}-{r['apart']['max']:.2f} apart (std "
             f"{r['apart']['std']:.3f}) against {r['together']['min']:.2f}-{r['together']['max']:.2f} together "
             f"(std {r['together']['std']:.3f})" for r in d["rows"]]
    return (f"Over {d['rounds']} rounds on this machine, the latency / base of uniform-width members of "
            f"{d['base']} moved " + "; ".join(parts) + ".\n" + footer(res.source("measure_together.json")))


@renderer(pending_on="channel_multiple.json")
def channel_multiple_summary(res: Results) -> str:
    """What a width between two multiples of the kernels' block costs, and the space's members at divisor 8 and 16
    (docs/channels.md)."""
    d = res.load("channel_multiple.json")
    widths = [str(w) for w in d["widths"]]
    lines = ["| onnxruntime level | " + " | ".join(f"C = {w}" for w in widths) + " |",
             "|---|" + "---|" * len(widths)]
    for level, row in d["block_probe"].items():
        lines.append(f"| {level} | " + " | ".join(f"{row[w]:.3f} ms" for w in widths) + " |")
    lines += ["", "| `space.divisor` | narrowest member / base | uniform 0.5 / base |", "|---|---|---|"]
    lines += [f"| {m['divisor']} | {m['narrowest']:.2f} | {m['uniform_0.5']:.2f} |" for m in d["members"]]
    lines += ["", f"`onnxruntime_channel_block()` answers {d['channel_block']} on this machine, so `space.divisor: "
              f"auto` rounds widths to multiples of {d['channel_block']} for `+target=cpu` here."]
    return "\n".join(lines) + "\n\n" + footer(res.source("channel_multiple.json"))


def _channel_sources(res: Results) -> list[str]:
    """The merge command's record and, for a merged file, the commands that made its runs."""
    d = res.load("channel_search.json")
    parts = [f"`{m['command']}` ({m['date']}, load average {m['load_average_1min'][0]:.2f}-"
             f"{m['load_average_1min'][1]:.2f})" for m in d.get("merged", [])]
    return [res.source("channel_search.json", command=_CHANNELS), *parts]


def _channel_cells(d: Node) -> list[tuple[str, float, dict]]:
    """(base, budget, {method: [runs' entries]}) with the uniform and L1 baselines of every run at that budget."""
    out = []
    for base in _unique(r["base"] for r in d["runs"]):
        for ratio in sorted({r["ratio"] for r in d["runs"] if r["base"] == base}, reverse=True):
            runs = [r for r in d["runs"] if r["base"] == base and r["ratio"] == ratio]
            methods = {m: [r["best"] for r in runs if r["strategy"] == m] for m in _unique(r["strategy"] for r in runs)}
            methods.update(uniform=[r["uniform"] for r in runs], l1=[r["l1"] for r in runs],
                           base=[{"test_accuracy": r["base_test_accuracy"], "latency_ratio": 1.0} for r in runs])
            out.append((base, ratio, methods))
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@renderer(pending_on="channel_search.json")
def channel_search_summary(res: Results) -> str:
    """The README's channel-search table: per base and budget, each method's test accuracy after fine-tuning
    and measured latency / base (means over the runs; uniform and L1 over every run's own baselines)."""
    d = res.load("channel_search.json")
    cells = _channel_cells(d)
    methods = _unique(m for _, _, ms in cells for m in ms if m not in ("uniform", "l1", "base"))
    rows = []
    for base, ratio, ms in cells:
        rows.append([f"`{base}`", ratio] + [
            f"{100 * _mean([e['test_accuracy'] for e in ms[m]]):.1f} % at {_mean([e['latency_ratio'] for e in ms[m]]):.2f}"
            if ms.get(m) else "" for m in (*methods, "uniform", "l1")] +
            [f"{100 * _mean([e['test_accuracy'] for e in ms['base']]):.1f} %"])
    for u in _unique((u["base"], u["ratio"]) for u in d.get("unreachable", [])):
        if not any(c[0] == u[0] and c[1] == u[1] for c in cells):
            rows.append([f"`{u[0]}`", u[1]] + ["below the narrowest member"] + [""] * (len(methods) + 2))
    order = _unique(row[0] for row in rows)
    rows = [[row[0], f"{row[1]:g}", *row[2:]] for row in sorted(rows, key=lambda r: (order.index(r[0]), -r[1]))]
    return table(["base", "budget", *methods, "uniform width", "L1 pruning", "base network"], rows) + "\n" + footer(
        *_channel_sources(res))


@renderer(pending_on="channel_search.json")
def channel_search_findings(res: Results) -> str:
    """The issue's targets checked on channel_search.json: budget ratios, the margin over uniform width against
    the seeds' spread, the tightest budget within 0.5 pp of the base, search CPU minutes, unreachable budgets."""
    d = res.load("channel_search.json")
    lines = []
    for base, ratio, ms in _channel_cells(d):
        parts = []
        for m, entries in ms.items():
            if m in ("uniform", "l1", "base"):
                continue
            runs = [r for r in d["runs"] if r["base"] == base and r["ratio"] == ratio and r["strategy"] == m]
            # each run's own uniform baseline is matched to its network's measured latency: paired differences
            gains = [100 * (r["best"]["test_accuracy"] - r["uniform"]["test_accuracy"]) for r in runs]
            std = statistics.stdev(gains) if len(gains) > 1 else float("nan")
            verdict = "beats it" if len(gains) > 1 and _mean(gains) > std else "does not separate"
            lat = [e["latency_ratio"] for e in entries]
            within = sum(abs(x / ratio - 1) <= 0.10 for x in lat)
            parts.append(f"`{m}` {_mean(gains):+.2f} ± {std:.2f} pp over uniform width ({verdict}), latency "
                         f"{min(lat):.2f}-{max(lat):.2f} of the base ({within} of {len(lat)} within ±10 % of {ratio:g})")
        lines.append(f"- `{base}` at {ratio:g}: " + "; ".join(parts) + ".")
    for base in _unique(t["base"] for t in d.get("tightest", [])):
        mine = [t for t in d["tightest"] if t["base"] == base and "@" not in t["method"] or
                t["base"] == base and t["method"].startswith("uniform@")]
        lines.append(f"- tightest budget within {mine[0]['drop_pp']:g} pp of the base's test accuracy, `{base}`: " +
                     ", ".join(f"`{t['method']}` {'none' if t['ratio'] is None else format(t['ratio'], 'g')}"
                               for t in mine) + ".")
    cpu = [r["search_cpu_s"] / 60 for r in d["runs"] if r.get("search_cpu_s") is not None]
    if cpu:
        lines.append(f"- search CPU minutes per run: {min(cpu):.1f}-{max(cpu):.1f} (whole runs, with training and "
                     f"fine-tuning: {min(r['run_cpu_s'] for r in d['runs']) / 60:.1f}-"
                     f"{max(r['run_cpu_s'] for r in d['runs']) / 60:.1f}).")
    measured = [r for r in d["runs"] if (r.get("sessions") or {}).get("best_search_ratio") is not None]
    if measured:
        moves = [abs(r["sessions"]["best_final_ratio"] - r["sessions"]["best_search_ratio"]) for r in measured]
        floors = "; ".join(
            f"`{b}` {min(fl):.2f}-{max(fl):.2f}" for b in _unique(r["base"] for r in measured)
            for fl in [[r["sessions"]["floor_ratio"] for r in measured if r["base"] == b]])
        lines.append(f"- one network measured in two sessions of its run (at search time and in the final session, "
                     f"each with the base): latency / base moved by a median of {statistics.median(moves):.3f} and at "
                     f"most {max(moves):.2f} over {len(moves)} runs; the narrowest member's latency / base, measured "
                     f"at the start of every run, ranged {floors}.")
    for base, ratio in _unique((u["base"], u["ratio"]) for u in d.get("unreachable", [])):
        refused = [u for u in d["unreachable"] if u["base"] == base and u["ratio"] == ratio]
        ran = sum(r["base"] == base and r["ratio"] == ratio for r in d["runs"])
        lines.append(f"- `{base}` at {ratio:g}: {len(refused)} of {len(refused) + ran} runs refused the budget as below "
                     f"the narrowest member measured at their start, e.g. "
                     f"{refused[0]['error'].removeprefix('error: ')}")
    return "\n".join(lines) + "\n" + footer(*_channel_sources(res))


@renderer(pending_on="darts_cells.json")
def darts_findings(res: Results) -> str:
    """The issue's targets, checked against the darts_* results."""
    nb, cells = res.load("darts_nb201.json"), res.load("darts_cells.json")
    hw_rows, hw_sources = _darts_hw(res)
    plain = [r for r in nb["rows"] if r["guard"] == "none"]
    guarded = [r for r in nb["rows"] if r["guard"] == "beta_decay"]
    lines = [f"- NAS-Bench-201 (target: every guarded seed in the top 5 %, at least {nb['top5_threshold']:.2f}): "
             f"{sum(r['top5'] for r in guarded)} of {len(guarded)} guarded seeds are "
             f"({', '.join(format(r['cifar10_test'], '.2f') for r in guarded)}). "
             f"Plain DARTS collapses to parameter-free operations: {sum(r['parameter_free_ops'] for r in plain)} of "
             f"{6 * len(plain)} edges over its {len(plain)} seeds are pooling or none, at "
             f"{min(r['cifar10_test'] for r in plain):.2f}-{max(r['cifar10_test'] for r in plain):.2f}."]
    for space, target in _unique((r["space"], r["target"]) for r in hw_rows):
        lat = [r for r in hw_rows if (r["space"], r["target"], r["cost"]) == (space, target, "latency")]
        mac = {r["budget_ms"]: r for r in hw_rows if (r["space"], r["target"], r["cost"]) == (space, target, "macs")}
        within = sum(0.9 <= r["latency_over_budget"] <= 1.0 for r in lat)
        wins = sum(r["test_accuracy"] > mac[r["budget_ms"]]["test_accuracy"] for r in lat)
        ties = sum(r["test_accuracy"] == mac[r["budget_ms"]]["test_accuracy"] for r in lat)
        lines.append(f"- `{space}` on `{target}` (target: latency within 90-100 % of the budget at each budget, and "
                     f"more accurate than the MACs baseline): {within} of {len(lat)} budgets within; latency-aware "
                     f"more accurate at {wins}, as accurate at {ties}, less at {len(lat) - wins - ties}; the MACs "
                     f"baseline's networks land at {min(m['latency_over_budget'] for m in mac.values()):.2f}-"
                     f"{max(m['latency_over_budget'] for m in mac.values()):.2f} of the budget.")
    c = cells["summary"]
    minutes = [r["search_cpu_min"] for r in [*nb["rows"], *hw_rows]] + [c["search_cpu_min"]]
    lines.append(f"- `darts` cells: the derived cell's test accuracy is at percentile {c['percentile_among_random']:.0f} "
                 f"of {len(cells['rows']) - 1} random cells.")
    lines.append(f"- Search time (target: at most 10 CPU minutes on the embedded data): {min(minutes):.1f}-"
                 f"{max(minutes):.1f} CPU minutes per search at the defaults (`data=digits`, one thread).")
    return "\n".join(lines) + "\n" + footer(res.source("darts_nb201.json", command=_DARTS_NB), *hw_sources,
                                             res.source("darts_cells.json", command="python experiments/darts_cells.py"))


@renderer(pending_on="darts_cells.json")
def darts_cells(res: Results) -> str:
    """The darts space's derived cell against random cells, from experiments/darts_cells.py."""
    d = res.load("darts_cells.json")
    rows = [[r["cell"], f"{r['test_accuracy']:.1f} %", str(r["parameter_free_ops"]), f"`{r['genotype']}`"]
            for r in d["rows"]]
    c = d["summary"]
    text = table(["cell", "test accuracy", "parameter-free ops", "genotype"], rows)
    text += (f"\n\nThe derived cell is at percentile {c['percentile_among_random']:.0f} of the random cells; the "
             f"search took {c['search_cpu_min']:.1f} CPU minutes; every cell trained {c['retrain_epochs']} epochs.")
    return text + "\n" + footer(res.source("darts_cells.json", command="python experiments/darts_cells.py"))


@renderer(pending_on="darts_hardware.json")
def darts_hardware(res: Results) -> str:
    """Hardware-aware differentiable search at three budgets, latency vs MACs, from experiments/darts_hardware.py."""
    hw_rows, sources = _darts_hw(res)
    rows = [[f"`{r['space']}`", f"`{r['target']}`", f"{r['budget_ms']:g} ms", f"`{r['cost']}`",
             f"{r['latency_ms']:.2f} ms ({r['latency_source']})", f"{r['latency_over_budget']:.2f}",
             f"{r['test_accuracy']:.1f} %", f"{r['search_cpu_min']:.1f}"] for r in hw_rows]
    text = table(["space", "target", "budget", "cost", "derived latency", "latency / budget", "test accuracy",
                  "search CPU min"], rows)
    return text + "\n" + footer(*sources)


@renderer(pending_on="darts_nb201.json")
def darts_nb201(res: Results) -> str:
    """Plain vs guarded DARTS on NAS-Bench-201, from experiments/darts_nb201.py."""
    d = res.load("darts_nb201.json")
    rows = [[str(r["seed"]), f"`{r['guard']}`", f"`{r['cell']}`", f"{r['cifar10_test']:.2f}", f"{r['percentile']:.1f}",
             str(r["parameter_free_ops"]), f"{r['search_cpu_min']:.1f}"] for r in d["rows"]]
    text = table(["seed", "guard", "derived cell", "CIFAR-10 test (table)", "percentile", "parameter-free ops",
                  "search CPU min"], rows)
    ref = ", ".join(f"{k} {v:.2f}" for k, v in d["reference"].items())
    return text + f"\n\nReference points (NAS-Bench-201 paper, searched on CIFAR-10): {ref}.\n" + footer(
        res.source("darts_nb201.json", command=_DARTS_NB))


def _compress_rows(res: Results) -> list[dict]:
    return res.load("compress.json")["rows"]


@renderer(pending_on="compress.json")
def compress_benchmark(res: Results) -> str:
    """Every step alone and the default pipeline per network and input size, from experiments/compress.py."""
    rows = []
    for r in _compress_rows(res):
        spread = f" ±{100 * r['original_spread'] / 2:.0f}%" if r["original_spread"] else ""
        kept = ", ".join(s["name"] for s in r["steps"] if s["kept"]) or "none"
        rows.append([r["model"], str(r["resolution"]), f"`{r['config']}`", f"{r['original_ms']:.3f} ms{spread}",
                     f"{r['speedup']:.2f}x" if r["speedup"] else "?", f"{r['size_ratio']:.2f}x",
                     f"{r['accuracy_change_pp']:+.2f} pp", kept, f"{r['cpu_s'] / 60:.1f}"])
    text = table(["network", "px", "steps", "original (fp32)", "speed-up", "size", "test accuracy", "kept",
                  "CPU min"], rows)
    d = res.load("compress.json")
    if d.get("partial"):
        text = (f"Partial: {len(d['rows'])} of the {d['planned']} planned configurations "
                f"({d['settings']['models']} at {d['settings']['resolutions']} px) have run.\n\n" + text)
    return text + "\n" + footer(res.source("compress.json"))


@renderer(pending_on="compress.json")
def compress_summary(res: Results) -> str:
    """README: per network, int8 alone and the default pipeline at each input size (speed-up, size, accuracy)."""
    rows = _compress_rows(res)
    sizes = sorted({r["resolution"] for r in rows})
    out = []
    for model in _unique(r["model"] for r in rows):
        cells = {}
        for config in ("quantize", "default"):
            parts = []
            for px in sizes:
                r = next((r for r in rows if r["model"] == model and r["resolution"] == px and r["config"] == config),
                         None)
                if r is None or not r["speedup"]:
                    parts.append("—")
                elif config == "quantize":  # the int8 model itself, kept or not (the shipped one may be fp32)
                    step = r["steps"][0]
                    parts.append(f"{1 / step['latency_ratio_to_input']:.2f}x, {step['size_ratio']:.2f} size, "
                                 f"{100 * (step['test_accuracy'] - r['original_test_accuracy']):+.1f} pp"
                                 + ("" if step["kept"] else " (not kept)"))
                else:
                    parts.append(f"{r['speedup']:.2f}x, {r['size_ratio']:.2f} size, {r['accuracy_change_pp']:+.1f} pp")
            cells[config] = " / ".join(parts)
        out.append([model, cells["quantize"], cells["default"]])
    px = " / ".join(str(p) for p in sizes)
    text = table(["network", f"int8 alone at {px} px", f"default `[prune, distill, quantize]` at {px} px"], out)
    d = res.load("compress.json")
    if d.get("partial"):
        text += (f"\n\n{len(d['rows'])} of {d['planned']} configurations have run; a dash marks one that has not "
                 f"(every row: the benchmark section of the compression docs).")
    return text + "\n" + footer(res.source("compress.json"))


#: Column -> the profile's layer kinds summed in it. Element-wise and layout ("data") layers share a column: in a
#: QDQ model a reshape or transpose carries Quantize/DequantizeLinear nodes and is profiled as element-wise.
_KINDS = {"conv": ("conv",), "depthwise": ("depthwise",), "pointwise": ("pointwise",), "linear": ("linear",),
          "element-wise and layout": ("elementwise", "data"), "pool": ("pool",), "overhead": ("overhead",)}


@renderer(pending_on="compress.json")
def compress_int8_kinds(res: Results) -> str:
    """Where int8 gains or loses time: profiled microseconds per layer kind, fp32 -> int8, for every network and
    size (from the ``quantize`` rows' profiles of the original and of the int8 model, kept or not)."""
    rows = [r for r in _compress_rows(res) if r["config"] == "quantize"]
    missing = [f"{r['model']}-{r['resolution']}" for r in rows if not (r.get("kind_us") or {}).get("int8")]
    if missing:
        raise RenderError(f"experiments/results/compress.json: no int8 profile (kind_us) for {missing}; rerun "
                          f"experiments/compress.py")
    def grouped(times: Node) -> dict[str, float]:
        return {column: sum(float(times.get(kind, 0.0)) for kind in kinds) for column, kinds in _KINDS.items()}

    out = []
    columns = [c for c in _KINDS if any(grouped(r["kind_us"]["fp32"])[c] or grouped(r["kind_us"]["int8"])[c]
                                        for r in rows)]
    for r in rows:
        a, b = grouped(r["kind_us"]["fp32"]), grouped(r["kind_us"]["int8"])
        cells = []
        for k in columns:
            x, y = a.get(k, 0.0), b.get(k, 0.0)
            cells.append("—" if x == y == 0 else f"{x:.0f} → {y:.0f}" + (f" ({y / x:.1f}x)" if x >= 10 else ""))
        total_a, total_b = sum(a.values()), sum(b.values())
        out.append([r["model"], str(r["resolution"]), *cells, f"{total_a:.0f} → {total_b:.0f} ({total_b / total_a:.2f}x)"])
    text = table(["network", "px", *columns, "profiled run"], out)
    return (text + "\n\nMicroseconds per run from `nas.profile` (onnxruntime's profiler, which adds a cost to "
            "every kernel, so the totals exceed the measured latency), fp32 → int8. "
            + _machine(res.load("compress.json")) + "\n" + footer(res.source("compress.json")))


def _machine(d: Node) -> str:
    """The CPU a benchmark ran on and its SIMD flags (int8 kernels differ with VNNI), where its run recorded them."""
    run = d["run"]
    if "simd" not in run:
        return ""
    flags = list(run["simd"])
    vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    return (f"Machine: {run['cpu']}, SIMD flags {', '.join(flags) or 'none reported'} "
            f"({'with' if vnni else 'without'} a VNNI int8 dot product).")


@renderer(pending_on="compress.json")
def compress_targets(res: Results) -> str:
    """The issue's targets checked on the benchmark rows (static int8 on models above 1 ms; the default pipeline
    on the main command's winner)."""
    rows = _compress_rows(res)
    lines = []
    for r in [r for r in rows if r["config"] == "quantize"]:
        step = r["steps"][0]
        speedup = 1 / step["latency_ratio_to_input"] if step["latency_ratio_to_input"] else None
        drop = 100 * (r["original_test_accuracy"] - step["test_accuracy"])
        big = r["original_ms"] > 1.0
        ok = speedup is not None and speedup >= 1.3 and step["size_ratio"] <= 0.3 and drop <= 0.5
        verdict = ("met" if ok else "missed") if big else "below 1 ms: reported only"
        lines.append(f"- int8, {r['model']} at {r['resolution']} px ({r['original_ms']:.2f} ms fp32): "
                     f"speed-up {speedup:.2f}x, {step['size_ratio']:.2f}x the size, {drop:+.2f} pp drop, "
                     f"{'kept' if step['kept'] else 'not kept'}; target {verdict}.")
    for r in [r for r in rows if r["config"] == "default" and r["model"] == "ofa"]:
        kept = [s for s in r["steps"] if s["kept"]]
        # distillation keeps the architecture: its latency against its input is the same network measured twice
        monotone = all((s["latency_ratio_to_input"] or 1.0) <= 1.0 for s in kept if s["name"] != "distill")
        sizes = [1.0, *[s["size_ratio"] for s in kept]]
        monotone = monotone and all(b <= a + 1e-9 for a, b in zip(sizes, sizes[1:]))
        drop = -r["accuracy_change_pp"]
        lines.append(f"- default pipeline on the winner at {r['resolution']} px: kept "
                     f"{', '.join(s['name'] for s in kept) or 'nothing'}; every kept step "
                     f"{'smaller or equal and no slower' if monotone else 'NOT always smaller and faster'} than its "
                     f"input; total accuracy drop "
                     f"{drop:+.2f} pp (target at most 1 pp: {'met' if drop <= 1.0 and monotone else 'missed'}).")
    return "\n".join(lines) + "\n" + footer(res.source("compress.json"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs")
    args = parser.parse_args(argv)
    try:
        unused = unused_renderers(ROOT)
        if unused:
            raise RenderError(f"renderers named by no block in README.md or docs/: {', '.join(unused)}")
        differ = render(ROOT, write=not args.check)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check and differ:
        print("generated blocks that differ from experiments/results/*.json "
              "(run `python experiments/render_docs.py`):", file=sys.stderr)
        for item in differ:
            print(f"  {item}", file=sys.stderr)
        return 1
    for item in differ:
        print(f"rewrote {item}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
