"""The end of a run: the choice rule (final.choose), the console summary and the chosen point on the plot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.choice import choose, knee_index, resolve_rule
from nas.errors import ConfigError
from nas.objectives import Trial
from nas.report import plot_pareto, summarize

ROOT = Path(__file__).resolve().parents[1]

# A hand-made front (latency ms, accuracy) and two dominated points. Scaled to [0, 1] the front is
# lat (0, .111, .222, .333, .444, 1), acc (0, .667, .867, .933, .967, 1): the height above the chord
# acc - lat is largest (.644) at 3 ms.
FRONT = [(1.0, 0.80), (2.0, 0.90), (3.0, 0.93), (4.0, 0.94), (5.0, 0.945), (10.0, 0.95)]
DOMINATED = [(6.0, 0.90), (3.5, 0.85)]


def trials(points=FRONT + DOMINATED):
    return [Trial(arch={"x": i}, metrics={"latency_ms": lat, "accuracy": acc}) for i, (lat, acc) in enumerate(points)]


def picked(choice):
    m = choice.trial.metrics
    return m["latency_ms"], m["accuracy"]


def test_knee_of_a_hand_made_front():
    choice = choose(trials(), rule="knee", budget_ms=None)
    assert picked(choice) == (3.0, 0.93) and choice.budget_met and choice.rule == "knee"
    assert "knee" in choice.reason and "6 points" in choice.reason and "1 ms, 80.00 %" in choice.reason


def test_knee_does_not_depend_on_units_or_order():
    lat, acc = zip(*FRONT)
    index = knee_index(lat, acc)
    assert (lat[index], acc[index]) == (3.0, 0.93)
    order = [4, 0, 5, 2, 1, 3]
    again = knee_index([1000 * lat[i] for i in order], [100 * acc[i] for i in order])
    assert order[again] == index


def test_no_knee_falls_back_to_the_most_accurate_and_says_so():
    two = choose(trials([(1.0, 0.8), (2.0, 0.9)]), rule="knee", budget_ms=None)
    assert picked(two) == (2.0, 0.9) and "no knee" in two.reason and "2 point(s)" in two.reason
    convex = choose(trials([(1.0, 0.80), (2.0, 0.81), (3.0, 0.95)]), rule="knee", budget_ms=None)
    assert picked(convex) == (3.0, 0.95) and "above the line" in convex.reason


def test_accurate_takes_the_fastest_within_the_tolerance():
    assert picked(choose(trials(), rule="accurate", budget_ms=None, tolerance=0.0)) == (10.0, 0.95)
    tolerant = choose(trials(), rule="accurate", budget_ms=None, tolerance=0.006)
    assert picked(tolerant) == (5.0, 0.945) and "within 0.6 pp" in tolerant.reason


def test_fastest_and_budgets():
    assert picked(choose(trials(), rule="fastest", budget_ms=None)) == (1.0, 0.80)
    assert picked(choose(trials(), rule="accurate", budget_ms=4.5)) == (4.0, 0.94)
    # within 4.5 ms the front is 1-4 ms: scaled, acc - lat peaks at 2 ms (.381 vs .262 at 3 ms)
    knee = choose(trials(), rule="knee", budget_ms=4.5)
    assert picked(knee) == (2.0, 0.90) and "4.5 ms budget" in knee.reason
    none = choose(trials(), rule="knee", budget_ms=0.5)
    assert picked(none) == (1.0, 0.80) and not none.budget_met and "NOT met" in none.reason


def test_auto_rule_and_bad_names():
    assert resolve_rule("auto", budget_ms=None) == "knee"
    assert resolve_rule("auto", budget_ms=5.0) == "accurate"
    assert resolve_rule("auto", budget_ms=None, objective="accuracy") == "accurate"
    assert resolve_rule("fastest", budget_ms=5.0) == "fastest"
    with pytest.raises(ConfigError, match="final.choose='nope'.*knee"):
        resolve_rule("nope", budget_ms=None)


def test_the_plot_marks_the_chosen_point_on_the_front(tmp_path):
    front = [{"latency_ms": lat, "accuracy": acc, "latency_source": "measured"} for lat, acc in FRONT]
    best = {**front[2], "choice_rule": "knee"}
    record = plot_pareto(tmp_path / "p.png", history=front, pareto=front, best=best, budget_ms=None, title="t")
    assert record["chosen"]["on_front"] and record["chosen"]["label"] == "chosen: knee of the front"
    assert record["chosen"]["latency_ms"] == 3.0 and record["chosen"]["accuracy"] == pytest.approx(0.93)
    off = plot_pareto(tmp_path / "q.png", history=front, pareto=front, best={**best, "latency_ms": 3.3},
                      budget_ms=None, title="t")
    assert not off["chosen"]["on_front"]


def supernet_results(source: str) -> dict:
    measurement = {"median_ms": 6.45, "p10_ms": 6.31, "p90_ms": 6.6, "ci_rel": 0.009, "n": 300}
    return {
        "space": "ofa", "target": "cpu", "constraint": {"latency_ms": None},
        "data": {"val": 750},
        "predictors": {"latency": {"predictor": "ridge", "holdout": {"mape": 7.14, "n": 15},
                                   "prior": "kernel-level model of Raspberry Pi 4"}},
        "best": {"public": {"ks": [3, 5], "e": [4, 6], "d": [2], "r": 28}, "arch_id": "abc", "accuracy": 0.9813,
                 "test_accuracy": 0.98, "n_test": 1000, "latency_ms": 6.42, "latency_source": source,
                 "measurement": measurement if source == "measured" else None,
                 "choice_rule": "knee", "choice_reason": "the knee of the front of 24 points", "budget_met": True},
        "config": {"final": {"choose": "auto"}},
        "files": ["results.json", "pareto.png", "models/best.onnx"], "run_dir": "runs/x",
    }


def test_summary_of_a_supernet_run():
    text = summarize(supernet_results("measured"))
    assert '{"ks":[3,5],"e":[4,6],"d":[2],"r":28}' in text
    assert "98.13 % on val (750 images" in text and "98.00 % on test (1000 images" in text
    assert "6.42 ms, measured on cpu" in text and "95 % CI of the median +-0.9 %" in text and "p10-p90 6.31-6.6" in text
    assert "final.choose=auto -> knee: the knee of the front of 24 points" in text
    assert "results.json, pareto.png, models/best.onnx" in text and "runs/x" in text
    assert "predicted by ridge (holdout MAPE 7.1 % on 15" in summarize(supernet_results("predicted"))
    assert "from a PRIOR (kernel-level model of Raspberry Pi 4)" in summarize(supernet_results("prior"))


def test_summary_of_a_tabular_run_through_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "nas.search", "+space=nb201", "evaluator=tabular", "+target=raspi4",
                           "budget.queries=200", "progress=false", f"hydra.run.dir={run_dir}"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    best = results["best"]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == f"results: {run_dir / 'results.json'}"
    summary = "\n".join(lines[-8:-1])
    assert summary == summarize(results)
    assert best["arch_str"] in summary and f"{best['accuracy']:.2f} (the table's" in summary
    assert f"{best['latency_ms']:.3g} ms, from the table" in summary
    assert best["choice_rule"] == "knee" and best["choice_reason"] in summary and "final.choose=auto -> knee" in summary
    assert "results.json, pareto.png" in summary and str(run_dir) in summary
    assert all((run_dir / f).is_file() for f in results["files"])
    # the knee is a point of the front, and the plot's star is drawn on it
    assert best["arch_id"] in {p["arch_id"] for p in results["pareto"]}
    assert results["plot"]["chosen"]["on_front"] and results["plot"]["chosen"]["label"] == "chosen: knee of the front"
    assert results["best_accuracy"] == max(h["accuracy"] for h in results["history"])


def test_bad_choice_rule_is_one_error_line(tmp_path):
    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "nas.search", "+space=nb201", "evaluator=tabular", "+target=raspi4",
                           "final.choose=slowest", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "error: final.choose='slowest'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
