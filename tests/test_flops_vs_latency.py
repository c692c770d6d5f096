"""experiments/flops_vs_latency.py's analysis and plot, its docs renderer, and search_speed.py's --space option."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("render_docs", ROOT / "experiments" / "render_docs.py")
render_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_docs)


@pytest.fixture
def fvl(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))  # the script imports results_io as a script does
    import flops_vs_latency

    return flops_vs_latency


def _row(name: str, family: str, macs: int, ms: float, *, group: str | None = None, kernels: int = 50,
         size: int = 28, params: int | None = None, prior: float | None = None) -> dict:
    return {"group": group or family, "family": family, "name": name, "size": size, "macs": macs,
            "params": params if params is not None else macs // 2, "kernels": kernels,
            "prior_ms": prior if prior is not None else ms * 30, "latency_ms": ms}


def test_inversions_need_fewer_macs_and_a_slowdown_beyond_the_noise(fvl):
    rows = [_row("a", "ghostnet", 100, 1.0), _row("b", "mobilenet", 200, 0.5), _row("c", "ghostnet", 95, 1.05),
            _row("d", "ghostnet", 150, 0.54)]  # d: fewer MACs than b, 8 % slower: within the noise, no inversion
    count, cross, compared, striking = fvl.inversions(rows)
    # pairs with >= 10 % fewer MACs: a<b, c<b, d<b, a<d? (100 <= 135) yes, c<d yes; c<a? (95 <= 90) no
    assert compared == 5
    assert count == 4 and cross == 2  # a and c slower than b (another family) and than d (their own)
    assert [s["fewer_macs"] for s in striking[:2]] == ["c", "a"]  # 2.1x slower with 0.475x the MACs first
    assert striking[0]["more_macs"] == "b" and striking[0]["families"] == ["ghostnet", "mobilenet"]
    assert striking[0]["latency_ratio"] == 2.1 and striking[0]["macs_ratio"] == 0.475


def test_summary_correlations_and_an_undefined_one(fvl):
    rows = [_row(f"n{i}", "shufflenet", 100 + 10 * i, 0.1 + 0.01 * i, kernels=104) for i in range(6)]
    s = fvl.summarize(rows)
    assert s["n"] == 6 and s["spearman"]["macs"] == 1.0 and s["kendall"]["params"] == 1.0
    assert s["spearman"]["kernels"] is None and s["kendall"]["kernels"] is None  # every arch runs 104 kernels
    assert s["inversions"]["count"] == 0
    assert s["ms_per_mmac_median"] == pytest.approx(statistics.median(r["latency_ms"] / r["macs"] * 1e6 for r in rows))


def _fake_result(fvl, *, quick: bool = False) -> dict:
    """A results file in the layout flops_vs_latency.py writes, from its own analysis of made-up rows."""
    rows = []
    for i in range(6):  # ghostnet slower per MAC than mobilenet, with more kernels
        rows.append(_row(f"mobilenet#{i}", "mobilenet", 2_000_000 + 100_000 * i, 0.15 + 0.01 * i, kernels=60 + i))
        rows.append(_row(f"ghostnet#{i}", "ghostnet", 1_400_000 + 50_000 * i, 0.26 + 0.01 * i, kernels=138))
        rows.append(_row(f"shufflenet#{i}", "shufflenet", 1_700_000 + 30_000 * i, 0.2 + 0.005 * i, kernels=137))
        rows.append(_row(f"blocks#{i}", "blocks", 2_100_000 + 20_000 * i, 0.22 - 0.004 * i, kernels=100 + i))
    presets = [("mobilenet_v3_small", "mobilenet", 56_500_000, 1.68, 52), ("ghostnet_050", "ghostnet", 42_300_000,
               3.39, 138), ("shufflenet_v2_x0_5", "shufflenet", 40_500_000, 1.44, 104)]
    for size, scale in ((28, 0.02), (224, 1.0)):
        for name, family, macs, ms, kernels in presets:
            rows.append(_row(name, family, int(macs * scale), ms * scale * 5 if size == 28 else ms,
                             group=f"presets_{size}", kernels=kernels, size=size))
    spaces = ["mobilenet", "shufflenet", "ghostnet", "blocks"]
    return {"run": {"command": "python experiments/flops_vs_latency.py", "date": "2030-01-02 03:04 UTC"},
            "args": {"archs": 6, "seed": 0, "sizes": [28, 224], "spaces": spaces, "presets": True, "quick": quick},
            "target": {"runtime": "onnxruntime 1.0", "measure": {"threads": 1, "reference": True}},
            "prior": {"name": "arm_cpu prior", "description": "x", "borrowed": {}},
            "thresholds": {"fewer_macs": fvl.FEWER_MACS, "slower": fvl.SLOWER},
            "groups": fvl.groups(rows, spaces, [28, 224]),
            "families": {"random_archs": fvl.per_family([r for r in rows if r["group"] in spaces]),
                         "presets_28": fvl.per_family([r for r in rows if r["group"] == "presets_28"]),
                         "presets_224": fvl.per_family([r for r in rows if r["group"] == "presets_224"])},
            "networks": rows}


def _root(tmp_path: Path, name: str, data: dict) -> Path:
    (tmp_path / "experiments" / "results").mkdir(parents=True)
    (tmp_path / "experiments" / "results" / name).write_text(json.dumps(data))
    return tmp_path


def test_flops_vs_latency_renderer_states_the_answer_from_the_numbers(fvl, tmp_path):
    assert "flops_vs_latency" not in render_docs.unused_renderers(tmp_path)  # waiting for its JSON
    root = _root(tmp_path, "flops_vs_latency.json", _fake_result(fvl))
    assert "flops_vs_latency" in render_docs.unused_renderers(root)  # now a block must name it
    text = render_docs.RENDERERS["flops_vs_latency"](render_docs.Results(root))
    assert "| `ghostnet` | 6 | 1.00 (1.00) |" in text and "| presets at 224 px | 3 |" in text
    assert "| `ghostnet_050` | 42 | 21,150,000 | 138 | 3.39 |" in text
    assert "Per MAC, `ghostnet` networks are the slowest here" in text and "time per MAC of `mobilenet`'s" in text
    assert "`ghostnet_050` has 25% fewer MACs than `mobilenet_v3_small`" in text
    assert "at 224 px the presets slowest per MAC are `ghostnet`'s" in text
    assert text.rstrip().endswith("(2030-01-02 03:04 UTC).</sub>")


def test_flops_vs_latency_renderer_refuses_a_quick_run(fvl, tmp_path):
    root = _root(tmp_path, "flops_vs_latency.json", _fake_result(fvl, quick=True))
    with pytest.raises(render_docs.RenderError, match="--quick smoke test"):
        render_docs.RENDERERS["flops_vs_latency"](render_docs.Results(root))


def test_measure_and_plot(fvl, tmp_path):
    class FakeTarget:  # latency = MACs / 1e7 ms: what matters here is that every network gets its own row
        def measure(self, space, arch):
            from types import SimpleNamespace

            return SimpleNamespace(median_ms=space.arch_macs / 1e7, ci_rel=0.01, n=20, stop_reason="stable")

    class FakeSpace:
        def __init__(self, macs):
            self.arch_macs = macs

    nets = [fvl.Network(group="mobilenet", family="mobilenet", name=f"mobilenet#{i}", space=FakeSpace(m), arch={},
                        size=28, row={"macs": m}) for i, m in enumerate((1_000_000, 3_000_000, 2_000_000))]
    fvl.measure(nets, FakeTarget(), seed=0)
    assert [n.row["latency_ms"] for n in nets] == [0.1, 0.3, 0.2]
    rows = [_row("m", "mobilenet", 1_000_000, 0.1), _row("g", "ghostnet", 900_000, 0.3),
            _row("ghostnet_050", "ghostnet", 40_000_000, 3.0, group="presets_224", size=224)]
    fvl.plot(rows, tmp_path / "img" / "plot.png", spaces=["mobilenet", "ghostnet"])
    assert (tmp_path / "img" / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_networks_are_the_presets_and_the_configured_spaces(fvl):
    nets = fvl.preset_networks([28])
    assert len(nets) == 10 and {n.group for n in nets} == {"presets_28"}
    assert all(n.space.input_shape(n.arch) == (1, 28, 28) and n.space.num_classes == 10 for n in nets)
    ghost = fvl.random_networks("ghostnet", 3, seed=0)
    assert [n.name for n in ghost] == ["ghostnet#0", "ghostnet#1", "ghostnet#2"]
    assert ghost[0].space.config()["width_mult"] == 0.5 and ghost[0].space.in_channels == 1  # conf/space/ghostnet


def _speed_spaces_json(passed: bool) -> dict:
    def r(rate, ratio=None):
        out = {"queries": 50000, "population": 100, "repeats": 3, "archs_per_second": rate,
               "load_average_1min": [0.5, 0.7]}
        if ratio is not None:
            out.update(ratio_to_ofa=ratio, passed=ratio >= 0.5)
        return out
    return {"run": {"command": "python experiments/search_speed.py --space all", "date": "2030-01-02 03:04 UTC"},
            "threads": "1 thread", "acceptance": {"rule": "archs/s >= 0.5 x the OFA space's", "min_ratio": 0.5},
            "latency_ridge": {"ofa": r(100_000), "ghostnet": r(90_000, 0.9 if passed else 0.4)},
            "latency_prior": {"ofa": r(70_000), "ghostnet": r(80_000, 1.14)}, "passed": passed}


def test_search_speed_spaces_renderer(tmp_path):
    root = _root(tmp_path, "search_speed_spaces.json", _speed_spaces_json(False))
    assert "search_speed_spaces" in render_docs.unused_renderers(root)
    text = render_docs.RENDERERS["search_speed_spaces"](render_docs.Results(root))
    assert "| `ghostnet` | 90,000 | 0.40x **below** | 80,000 | 1.14x |" in text
    assert "**not every space passes**" in text and "| `ofa` | 100,000 | 1 (yardstick) |" in text


@pytest.mark.parametrize("argv, message", [
    (["--space", "nosuch"], "unknown space 'nosuch'; choose from"),
    (["--space", "mobilenet", "--against-ofa"], "--against-ofa compares the OFA space"),
])
def test_search_speed_bad_space_option(argv, message):
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "search_speed.py"), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr
