"""Tabular search (``evaluator=tabular``): every strategy runs from the config and writes a sane results.json;
any table of the shipped form plugs in; bad tables and budgets give one clear message."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from nas.errors import UserError
from nas.objectives import hypervolume_2d
from nas.pipeline import run_search
from nas.registry import STRATEGIES, list_strategies
from nas.tables import shipped_table
from search_spaces.nb201 import LABELS, NB201Space

ROOT = Path(__file__).resolve().parents[1]


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=["progress=false", *overrides])


def search(tmp_path, *overrides) -> dict:
    cfg = compose_cfg("+space=nb201", "evaluator=tabular", *overrides)
    path = run_search(cfg, tmp_path)
    return json.loads(path.read_text())


@pytest.mark.parametrize("strategy", [n for n in list_strategies() if not getattr(STRATEGIES.get(n), "one_shot", False)
                                      and not getattr(STRATEGIES.get(n), "channel_search", False)])
def test_every_strategy_runs_a_tabular_search(strategy, tmp_path):
    results = search(tmp_path, "+target=raspi4", f"strategy={strategy}", "budget.queries=40", "seed=0")
    space = NB201Space()
    history = results["history"]
    resolved = results["strategy_resolved"]
    assert resolved["requested"] == strategy and results["strategy"] == resolved["name"] != "auto"
    assert results["target"] == "raspi4" and len(history) == 40
    assert results["best_accuracy"] == max(h["accuracy"] for h in history)
    for h in history:
        assert space.to_public(space.from_public(h["arch_str"])) == h["arch_str"]
        assert h["latency_source"] == "table" and h["accuracy_source"] == "table"
    front = results["pareto"]
    assert front and all(p["arch_id"] in {h["arch_id"] for h in history} for p in front)
    for p in front:  # nothing in the history dominates a front point
        assert not any(h["accuracy"] >= p["accuracy"] and h["latency_ms"] <= p["latency_ms"]
                       and (h["accuracy"], h["latency_ms"]) != (p["accuracy"], p["latency_ms"]) for h in history)
    assert (tmp_path / "pareto.png").stat().st_size > 10_000


def test_constrained_search_respects_the_budget(tmp_path):
    results = search(tmp_path, "+target=pixel3", "strategy=regularized_evolution", "objective=accuracy",
                     "constraint.latency_ms=3.0", "budget.queries=100")
    assert results["best"]["budget_met"] and results["best"]["latency_ms"] <= 3.0
    feasible = [h["accuracy"] for h in results["history"] if h["latency_ms"] <= 3.0]
    assert results["best_accuracy"] == max(feasible)


def synthetic_table(tmp_path: Path) -> tuple[Path, str]:
    """Every NB201 cell with a made-up additive accuracy whose unique optimum is known, and a latency."""
    space = NB201Space()
    strings = pd.read_csv(shipped_table("nb201")["path"])["arch_str"]
    rng = np.random.default_rng(7)
    gains = {label: rng.normal(size=5) for label in LABELS}
    ops = list(space.choices()[LABELS[0]])
    rows = []
    for text in strings:
        arch = space.from_public(text)
        acc = 50 + sum(gains[label][ops.index(arch[label])] for label in LABELS)
        rows.append({"cell": text, "my_acc": acc, "my_ms": 1 + sum(ops.index(arch[label]) for label in LABELS)})
    frame = pd.DataFrame(rows)
    path = tmp_path / "mine.csv.gz"
    frame.to_csv(path, index=False)
    best = frame.loc[frame["my_acc"].idxmax(), "cell"]
    return path, best


def test_a_users_table_plugs_in_and_the_search_reaches_its_known_optimum(tmp_path):
    table, optimum = synthetic_table(tmp_path)
    results = search(tmp_path, "+target=table", f"target.table={table}", "target.arch_column=cell",
                     "target.latency_column=my_ms", f"evaluator.table={table}", "evaluator.arch_column=cell",
                     "evaluator.accuracy_column=my_acc", "strategy=guided", "objective=accuracy",
                     "budget.queries=150", "seed=1")
    assert results["best"]["arch_str"] == optimum
    assert results["evaluator"]["table"] == str(table) and results["device"]["latency_column"] == "my_ms"


def test_regularized_evolution_climbs_a_users_table(tmp_path):
    table, _ = synthetic_table(tmp_path)
    accuracies = np.sort(pd.read_csv(table)["my_acc"].to_numpy())
    for strategy in ("regularized_evolution",):
        results = search(tmp_path / strategy, "+target=table", f"target.table={table}", "target.arch_column=cell",
                         "target.latency_column=my_ms", f"evaluator.table={table}", "evaluator.arch_column=cell",
                         "evaluator.accuracy_column=my_acc", f"strategy={strategy}", "objective=accuracy",
                         "budget.queries=300", "seed=1")
        assert results["best_accuracy"] >= accuracies[int(0.998 * len(accuracies))], strategy  # top 0.2 %


def test_hypervolume_of_a_staircase():
    assert hypervolume_2d(np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [3.0, 0.0]]), (2.0, 2.0)) == pytest.approx(3.25)
    assert hypervolume_2d(np.zeros((0, 2)), (1.0, 1.0)) == 0.0


@pytest.mark.parametrize("overrides, message", [
    (("+target=table", "target.table=TABLE", "target.arch_column=cell", "target.latency_column=nope"),
     "has no column(s) ['nope']; its columns are ['cell', 'my_acc', 'my_ms']"),
    (("+target=raspi4", "evaluator.table=BAD", "evaluator.arch_column=cell", "evaluator.accuracy_column=my_acc"),
     "line 3, column 'cell'"),
    (("+target=raspi4", "constraint.latency_ms=0.001"), "infeasible"),
    (("+target=raspi4", "evaluator.table=/no/such.csv", "evaluator.arch_column=a", "evaluator.accuracy_column=b"),
     "/no/such.csv does not exist"),
])
def test_bad_tables_and_budgets_give_one_clear_message(overrides, message, tmp_path):
    table, _ = synthetic_table(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("cell,my_acc\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n|conv~0|+|x~0|,2\n")
    args = [o.replace("=TABLE", f"={table}").replace("=BAD", f"={bad}") for o in overrides]
    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "nas.search", "+space=nb201", "evaluator=tabular", *args,
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_table_space_must_cover_the_search_space(tmp_path):
    cfg = compose_cfg("+space=fbnet", "evaluator=tabular", "+target=raspi4")
    with pytest.raises(UserError, match="no accuracy column"):
        run_search(cfg, tmp_path)
