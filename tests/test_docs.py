"""README.md and docs/: numbers come from experiments/results/*.json, links resolve, the README stays short."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("render_docs", ROOT / "experiments" / "render_docs.py")
render_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_docs)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 160
MAIN_COMMAND = ("python3.11 -m venv .venv && . .venv/bin/activate && pip install -e . && "
                "python -m nas.search +space=ofa +target=arm_cpu")
TEST_COMMAND = 'python3.11 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python -m pytest'

# A measured number in prose: digits with a unit of time, rate, share, ratio or size, or a decimal fraction
# (Spearman 0.94, accuracy 0.981). Outside generated blocks only code (commands, option defaults), HTML
# comments and this allowlist may hold one.
UNIT_NUMBER = re.compile(r"(?<![\w.\-])\d[\d,]*(?:\.\d+)?\s?(?:ms|µs|us|s|sec|min|%|pp|x|archs/s|/s|MB|MiB|GB|GiB)"
                         r"(?![\w/])|(?<![\w.\-])\d+\.\d+(?![\w.])")
ALLOWED = (
    "1.53 M parameters",  # a property of NAS-Bench-201's network (tested in test_tabular_spaces), not a benchmark
    "95% CI", "95% confidence interval",  # the measurement protocol's definition of a stable median
)


def _prose(text: str) -> str:
    """``text`` without generated blocks, fenced code, inline code and HTML comments."""
    text = render_docs.BLOCK.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    for allowed in ALLOWED:
        text = text.replace(allowed, "")
    return text


def hand_written_numbers(text: str) -> list[str]:
    return [m.group(0) for m in UNIT_NUMBER.finditer(_prose(text))]


def test_generated_blocks_match_their_json():
    differ = render_docs.render(ROOT, write=False)
    assert differ == [], ("docs differ from experiments/results/*.json; run `python experiments/render_docs.py`: "
                          + ", ".join(differ))
    assert render_docs.unused_renderers(ROOT) == []


def test_each_generated_block_ends_with_its_command_and_date():
    names = []
    for path in DOCS:
        for m in render_docs.BLOCK.finditer(path.read_text()):
            names.append(m.group("name"))
            last = m.group("body").strip().splitlines()[-1]
            assert last.startswith("<sub>From `") and re.search(r"\d{4}-\d{2}-\d{2}|not committed yet", last), \
                f"{path.name}: block {m.group('name')} does not end with its command and date"
    assert "readme_headlines" in names and len(names) >= 10


def test_a_changed_number_in_a_block_is_caught():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    m = next(m for m in render_docs.BLOCK.finditer(text) if m.group("name") == "search_nb201")
    body = m.group("body")
    digit = re.search(r"\d\.\d\d", body)
    wrong = body[:digit.start()] + str((int(body[digit.start()]) + 1) % 10) + body[digit.start() + 1:]
    stale = text[:m.start("body")] + wrong + text[m.end("body"):]
    fixed, changed = render_docs.render_text(stale, render_docs.Results(ROOT))
    assert changed == ["search_nb201"] and fixed == text


def _tmp_root(tmp_path: Path, *, drop: str | None = None) -> Path:
    """A root with one results file (with a ``run`` record) and a README holding one stale block."""
    results = tmp_path / "experiments" / "results"
    results.mkdir(parents=True)
    data = json.loads((ROOT / "experiments" / "results" / "ofa_cpu_measurements.json").read_text())
    data.pop(drop, None)
    data["run"] = {"command": "python experiments/measure_ofa_cpu.py", "date": "2030-01-02 03:04 UTC",
                   "load_average_1min": [0.1, 0.2]}
    (results / "ofa_cpu_measurements.json").write_text(json.dumps(data))
    (tmp_path / "README.md").write_text("# x\n\n<!-- generated: measurement_repeatability -->\nold text 0.5 ms\n"
                                        "<!-- /generated -->\n")
    return tmp_path


def test_render_rewrites_a_stale_block_and_quotes_the_run(tmp_path):
    root = _tmp_root(tmp_path)
    assert render_docs.render(root, write=False) == ["README.md: measurement_repeatability"]
    assert "old text" in (root / "README.md").read_text()  # --check writes nothing
    render_docs.render(root, write=True)
    text = (root / "README.md").read_text()
    assert "old text" not in text
    assert "`python experiments/measure_ofa_cpu.py` (2030-01-02 03:04 UTC, load average 0.10-0.20)" in text
    assert render_docs.render(root, write=False) == []


def test_a_missing_key_fails_naming_the_file_and_key(tmp_path):
    root = _tmp_root(tmp_path, drop="test_retest")
    with pytest.raises(render_docs.RenderError, match=r"ofa_cpu_measurements\.json: no key \['test_retest'\]"):
        render_docs.render(root, write=False)
    (root / "experiments" / "results" / "ofa_cpu_measurements.json").unlink()
    with pytest.raises(render_docs.RenderError, match="ofa_cpu_measurements.json: no such results file"):
        render_docs.render(root, write=False)


def test_an_unknown_block_name_fails(tmp_path):
    root = _tmp_root(tmp_path)
    (root / "README.md").write_text("<!-- generated: no_such_renderer -->\nx\n<!-- /generated -->\n")
    with pytest.raises(render_docs.RenderError, match="no_such_renderer"):
        render_docs.render(root, write=False)


def test_check_exit_status(tmp_path, monkeypatch, capsys):
    assert render_docs.main(["--check"]) == 0
    root = _tmp_root(tmp_path)
    shutil.copy(root / "README.md", root / "README.orig")
    monkeypatch.setattr(render_docs, "ROOT", root)
    monkeypatch.setattr(render_docs, "RENDERERS", {"measurement_repeatability":
                                                   render_docs.RENDERERS["measurement_repeatability"]})
    assert render_docs.main(["--check"]) == 1
    assert "README.md: measurement_repeatability" in capsys.readouterr().err
    assert (root / "README.md").read_text() == (root / "README.orig").read_text()


def test_readme_is_short_and_keeps_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES
    first_block = lines[lines.index("```bash") + 1:lines.index("```")]
    assert MAIN_COMMAND in first_block and TEST_COMMAND in first_block
    assert "![" in "\n".join(lines[:60]) and (ROOT / "docs" / "img" / "pareto.png").is_file()


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_resolve():
    broken = []
    for path in DOCS:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"{path.name}: {target}")
            elif anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{path.name}: {target} (no such heading)")
    assert broken == []


def test_no_hand_written_numbers_outside_generated_blocks():
    found = {path.name: hand_written_numbers(path.read_text()) for path in DOCS}
    assert {k: v for k, v in found.items() if v} == {}
    every = "\n".join(path.read_text() for path in DOCS)
    assert all(a in every for a in ALLOWED), "an allowlist entry no doc uses: remove it"


@pytest.mark.parametrize("text, hits", [
    ("the loop scores 8,800 archs/s at rest", ["8,800 archs/s"]),
    ("it took 152 s, then 0.92x the peer, 36 % within", ["152 s", "0.92x", "36 %"]),
    ("Spearman 0.935 on held-out subnets", ["0.935"]),
    ("a 3x3 conv, 22 layers x 9 blocks, 5 scaled MADs, NAS-Bench-201", []),
    ("`budget.queries=3000` and `0.005`, ```\nrun 10 s\n```", []),
    ("<!-- generated: x -->\n152 s\n<!-- /generated -->", []),
])
def test_the_number_check_itself(text, hits):
    assert hand_written_numbers(text) == hits


def _shared_machine_json() -> dict:
    """A results file in the layout experiments/shared_machine.py writes (numbers made up)."""
    def run(policy, busy, wall, acc):
        return {"policy": policy, "busy_processes": busy, "wall_s": wall, "accuracy_stage_s": acc, "cpu_s": wall * 1.5,
                "timings_s": {"accuracy_samples": acc}, "threads": {"threads": 2}, "supernet_source": "shipped",
                "best_arch_id": "x", "load_average_before": 0.5}
    return {"run": {"command": "python experiments/shared_machine.py", "date": "2030-01-02 03:04 UTC"},
            "command": "python -m nas.search +space=ofa +target=arm_cpu", "busy_processes": 2, "cores": 2,
            "policies": {"new": "as shipped", "old": "before"},
            "runs": [run("new", 0, 100.0, 60.0), run("new", 2, 210.0, 130.0), run("old", 0, 100.0, 60.0),
                     run("old", 2, 900.0, 800.0)],
            "ratio_loaded_to_alone": {"new": {"wall": 2.1, "accuracy_stage": 2.17, "cpu": 1.0},
                                      "old": {"wall": 9.0, "accuracy_stage": 13.33, "cpu": 3.0}}}


def test_a_pending_renderer_must_get_a_block_once_its_json_exists(tmp_path):
    root = _tmp_root(tmp_path)
    assert "shared_machine" in render_docs.PENDING
    assert "shared_machine" not in render_docs.unused_renderers(root)
    (root / "experiments" / "results" / "shared_machine.json").write_text(json.dumps(_shared_machine_json()))
    assert "shared_machine" in render_docs.unused_renderers(root)
    text = render_docs.RENDERERS["shared_machine"](render_docs.Results(root))
    assert "| `old` | 2 | 2 | 900 | 800 |" in text and "`old`: 9.00x wall time, 13.33x accuracy stage" in text
    assert text.rstrip().endswith("(2030-01-02 03:04 UTC).</sub>")


_BASELINE = {"baseline": {"booster": "hgbdt (numpy)", "file": "predictors/hgbdt.py", "commit": "c3abfc9" + "0" * 33},
             "order": "alternating: old first on every other fit"}


@pytest.mark.parametrize("name, file, comparison_rows, expect", [
    ("latency_booster_comparison", "latency_predictors.json",
     [{"space": "nb201", "train_size": 1000, "columns": 23, "gbdt_spearman": 0.97, "gbdt_within_10pct": 0.61,
       "gbdt_mape": 9.5, "gbdt_fit_s": 2.0, "gbdt_fit_predict_s": 2.5, "baseline_spearman": 0.965,
       "baseline_within_10pct": 0.6, "baseline_mape": 9.9, "baseline_fit_s": 30.0, "baseline_fit_predict_s": 31.0,
       "spearman_wins": 20, "fit_speedup": 15.0}],
     "| nb201 | 1000 | 23 | 0.970 / 0.965 | 61% / 60% | 9.50 / 9.90 | 2.00 / 30.00 | 15.0x | 20 of 23 |"),
    ("accuracy_booster_comparison", "ofa_accuracy_predictor.json",
     [{"train": 45, "test": 115, "gbdt_spearman": 0.66, "gbdt_spearman_std": 0.04, "gbdt_kendall": 0.47,
       "gbdt_fit_s": 0.01, "baseline_spearman": 0.63, "baseline_spearman_std": 0.04, "baseline_kendall": 0.45,
       "baseline_fit_s": 0.2}],
     "| 45 | 0.660 ± 0.040 | 0.630 ± 0.040 | 0.470 / 0.450 | 0.0100 / 0.2000 |"),
])
def test_booster_comparison_renderers_wait_for_their_key(tmp_path, name, file, comparison_rows, expect):
    root = _tmp_root(tmp_path)
    path = root / "experiments" / "results" / file
    path.write_text(json.dumps({"run": {"command": "python x.py", "date": "2030-01-02 03:04 UTC"}}))
    assert name not in render_docs.unused_renderers(root)  # the file exists, the key does not: still waiting
    path.write_text(json.dumps({"run": {"command": "python x.py", "date": "2030-01-02 03:04 UTC"},
                                "booster_comparison": {**_BASELINE, "rows": comparison_rows}}))
    assert name in render_docs.unused_renderers(root)
    text = render_docs.RENDERERS[name](render_docs.Results(root))
    assert expect in text and "`predictors/hgbdt.py` at commit c3abfc9" in text


def _defaults_json(file: str) -> dict:
    """search_nb201.json / search_fbnet.json in the layout of experiments/strategy_bench.py (numbers made up)."""
    if file.startswith("search_nb201"):
        truth = {"accuracy": {"optimum": 94.37},
                 "constrained:raspi4": {"budget_ms": 25.8, "best_feasible": 93.75},
                 "pareto:raspi4": {"exact_front_points": 28}}
    else:
        truth = {"constrained:raspi4": {"budget_ms": 33.6, "optimum_mmacs": 92.78,
                                        "latency_table_fit": {"mape": 0.1}}}
    def row(setting, strategy, budget, mean, resolved=None):
        return {"setting": setting, "strategy": strategy, "budget": budget, "resolved": resolved or strategy,
                "mean": mean, "std": 0.01, "seeds": 10 if setting.endswith("raspi4") else 3}
    rows = [row("constrained:raspi4", "auto", 100, 93.5, "guided"), row("constrained:raspi4", "random", 100, 93.0),
            row("constrained:pixel3", "auto", 100, 92.0, "guided"), row("constrained:pixel3", "random", 100, 92.5)]
    check = lambda s, mine, best, theirs, ok: {  # noqa: E731
        "setting": s, "budget": 100, "default_resolves_to": "guided", "default_mean": mine, "best_other": best,
        "best_other_mean": theirs, "difference": mine - theirs, "tolerance": 0.1, "unit": "pp", "passed": ok,
        "seeds": 3}
    return {"run": {"command": "python experiments/search_nb201.py", "date": "2030-01-02 03:04 UTC"},
            "seeds": {"constrained:raspi4": 10, "constrained:pixel3": 3}, "budgets": [100],
            "strategies": ["auto", "random"], "rows": rows, "truth": truth,
            "tolerance": {"constrained": {"value": 0.1, "unit": "pp"}},
            "acceptance": [check("constrained:raspi4", 93.5, "random", 93.0, True),
                           check("constrained:pixel3", 92.0, "random", 92.5, False)]}


@pytest.mark.parametrize("file, name", [("search_nb201.json", "search_nb201"), ("search_fbnet.json", "search_fbnet")])
def test_default_strategy_renderers_read_the_new_layout(tmp_path, file, name):
    root = _tmp_root(tmp_path)
    for name_ in (file, file.replace(".json", "_150.json")):  # the 150-query check has the same layout
        (root / "experiments" / "results" / name_).write_text(json.dumps(_defaults_json(file)))
    res = render_docs.Results(root)
    text = render_docs.RENDERERS[name](res)
    assert "1 of 2 pass" in text and "| `constrained:raspi4` | +0.500 |" in text
    assert "| `constrained:pixel3` | -0.500 **below** (`random`) |" in text
    assert "`constrained:pixel3` @100: `auto` (guided) 92.000 against `random` 92.500 (3 seeds)" in text
    full = text[text.index("(10 seeds"):]  # the strategy table: only the setting with the most seeds
    assert "pixel3" not in full and "| `auto` | 93.500 ± 0.010 (guided) |" in full
    assert text.rstrip().endswith("(2030-01-02 03:04 UTC).</sub>")
    headline = {"search_nb201": render_docs._headline_nb201, "search_fbnet": render_docs._headline_fbnet}[name](res)
    assert "`auto` is at least as good" in headline and "on 1 of 2 latency columns and problems" in headline
    assert "1 of 2 pass" in render_docs.RENDERERS[f"{name}_150"](res)


def test_the_old_layout_without_its_keys_fails(tmp_path):
    root = _tmp_root(tmp_path)
    (root / "experiments" / "results" / "search_nb201.json").write_text(json.dumps({"command": "x", "rows": []}))
    with pytest.raises(render_docs.RenderError, match=r"search_nb201\.json: no key"):
        render_docs.RENDERERS["search_nb201"](render_docs.Results(root))
