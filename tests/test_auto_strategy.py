"""strategy=auto picks a concrete strategy by evaluator and budget; population-like settings follow the budget
unless set; results.json says what was resolved and why."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from nas.errors import ConfigError
from nas.objectives import ACCURACY, LATENCY, Constraints
from nas.pipeline import make_strategy, run_search
from nas.registry import STRATEGIES
from nas.strategies.auto import GUIDED_MAX_QUERIES, choose_strategy
from tests.toy_space import ToySpace

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "evaluator, budget, expected",
    [
        ("tabular", None, "guided"),
        ("tabular", 1, "guided"),
        ("tabular", 150, "guided"),
        ("tabular", 1000, "guided"),
        ("tabular", GUIDED_MAX_QUERIES, "guided"),
        ("tabular", GUIDED_MAX_QUERIES + 1, "evolution"),
        ("tabular", 50_000, "evolution"),
        ("supernet", None, "evolution"),
        ("supernet", 150, "evolution"),
        ("supernet", 3000, "evolution"),
        ("supernet", 70_000, "evolution"),
    ],
)
def test_auto_choice_per_evaluator_and_budget(evaluator, budget, expected):
    name, reason = choose_strategy(evaluator=evaluator, budget=budget)
    assert name == expected and name in STRATEGIES
    assert f"evaluator={evaluator}" in reason
    strategy = make_strategy({"name": "auto"}, space=ToySpace(), objective="pareto", constraints=Constraints(),
                             seed=0, budget=budget, evaluator=evaluator)
    # a resolver, not a wrapper: the concrete strategy, its own state dict, the choice recorded on it
    assert type(strategy) is STRATEGIES.get(expected)
    assert strategy.state_dict()["name"] == expected
    resolution = strategy.resolution()
    assert resolution["requested"] == "auto" and resolution["name"] == expected and resolution["reason"] == reason
    assert resolution["budget"] == budget


def build(name, budget=None, **options):
    return STRATEGIES.get(name)(space=ToySpace(), objectives=(ACCURACY, LATENCY), seed=0, budget=budget, **options)


@pytest.mark.parametrize(
    "name, option, sizes",
    [
        # (budget, resolved): a tenth of the budget within [10, 100]; the old fixed default with no budget
        ("evolution", "population_size", [(None, 100), (40, 10), (150, 15), (300, 30), (1000, 100), (9000, 100)]),
        ("regularized_evolution", "population_size", [(None, 20), (40, 10), (150, 15), (1000, 100)]),
        ("regularized_evolution", "sample_size", [(None, 5), (40, 2), (150, 3), (1000, 25)]),
        ("optuna_nsga2", "population_size", [(None, 20), (40, 10), (300, 30), (5000, 100)]),
        ("optuna_tpe", "n_startup_trials", [(None, 10), (40, 10), (300, 30), (5000, 100)]),
        # guided: a twentieth within [10, 50]
        ("guided", "initial", [(None, 10), (150, 10), (300, 15), (1000, 50), (9000, 50)]),
    ],
)
def test_population_like_settings_scale_with_the_budget(name, option, sizes):
    for budget, expected in sizes:
        strategy = build(name, budget)
        assert getattr(strategy, option) == expected, (budget, expected)
        setting = strategy.settings()[option]
        assert setting["value"] == expected
        assert setting["source"] == ("default" if budget is None else "budget")


@pytest.mark.parametrize("name, option, value", [("evolution", "population_size", 30),
                                                 ("regularized_evolution", "population_size", 12),
                                                 ("regularized_evolution", "sample_size", 7),
                                                 ("optuna_nsga2", "population_size", 14),
                                                 ("optuna_tpe", "n_startup_trials", 3),
                                                 ("guided", "initial", 4)])
def test_an_explicit_value_wins_over_the_budget(name, option, value):
    for budget in (None, 100, 5000):
        strategy = build(name, budget, **{option: value})
        assert getattr(strategy, option) == value
        assert strategy.settings()[option] == {"value": value, "source": "given",
                                               "rule": f"strategy.{option}={value} was set"}


@pytest.mark.parametrize("budget", [0, -5, 2.5, True, "100"])
def test_bad_budget_is_a_config_error(budget):
    with pytest.raises(ConfigError, match="budget.queries"):
        build("random", budget)


def test_options_given_with_auto_apply_to_the_chosen_strategy():
    strategy = make_strategy({"name": "auto", "population_size": 30}, space=ToySpace(), objective="pareto",
                             constraints=Constraints(), seed=0, budget=3000, evaluator="supernet")
    assert strategy.name == "evolution" and strategy.population_size == 30
    assert strategy.resolution()["settings"]["population_size"]["source"] == "given"
    # guided has no population: said with the choice and its reason, not a TypeError
    with pytest.raises(ConfigError, match="chose 'guided'.*population_size"):
        make_strategy({"name": "auto", "population_size": 30}, space=ToySpace(), objective="pareto",
                      constraints=Constraints(), seed=0, budget=150, evaluator="tabular")


def tabular_results(tmp_path, *overrides) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["progress=false", "+space=nb201", "evaluator=tabular",
                                                        "+target=raspi4", *overrides])
    return json.loads(run_search(cfg, tmp_path).read_text())


def test_results_record_what_auto_resolved(tmp_path):
    results = tabular_results(tmp_path, "budget.queries=30", "objective=accuracy")
    assert results["strategy"] == "guided"
    resolved = results["strategy_resolved"]
    assert resolved["requested"] == "auto" and resolved["name"] == "guided" and resolved["budget"] == 30
    assert "evaluator=tabular" in resolved["reason"]
    assert resolved["settings"]["initial"] == {"value": 10, "source": "budget",
                                               "rule": "0.05 x budget.queries=30, kept within [10, 50]"}
    assert results["strategy_state"]["name"] == "guided"


def test_results_record_budget_sized_and_given_settings(tmp_path):
    results = tabular_results(tmp_path / "a", "strategy=evolution", "budget.queries=200")
    resolved = results["strategy_resolved"]
    assert resolved["requested"] == "evolution" and resolved["name"] == "evolution"
    assert resolved["settings"]["population_size"]["value"] == 20
    assert resolved["settings"]["population_size"]["source"] == "budget"
    results = tabular_results(tmp_path / "b", "strategy=evolution", "budget.queries=40",
                              "strategy.population_size=8")
    assert results["strategy_resolved"]["settings"]["population_size"]["source"] == "given"
    assert len(results["history"]) == 40
