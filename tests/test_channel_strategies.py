"""The channel-search family (strategy=autoslim, amc): one contract over both, on the channels space with a
synthetic accuracy (what each group's channels are worth is known) and a latency linear in the kept MACs."""

import numpy as np
import pytest

from nas.channels.strategies import AMCStrategy, AutoSlimStrategy, is_channel_strategy
from nas.errors import ConfigError
from nas.objectives import ACCURACY, LATENCY
from nas.registry import STRATEGIES, list_strategies
from search_spaces.channels import ChannelSpace
from tests.toy_space import ToySpace

FAMILY = [n for n in list_strategies() if is_channel_strategy(STRATEGIES.get(n))]
# a few episodes: the contract, not the agent's learning (tests/test_amc_agent.py checks that on a toy optimum)
FAST = {"autoslim": {}, "amc": {"episodes": 12, "warmup": 4, "hidden": 32, "batch_size": 16}}


@pytest.fixture(scope="module")
def space() -> ChannelSpace:
    return ChannelSpace(base_config={"width_mult": 0.35}, resolution=16)


def problem(space: ChannelSpace):
    """Accuracy: the early groups matter (weight falls with depth); latency: the space's own MACs, as ms."""
    labels = list(space.choices())
    weight = {label: 1.0 / (1 + i) for i, label in enumerate(labels)}
    full = {g.label: g.channels for g in space.groups}
    macs0 = sum(k.flops for k in space.kernel_list(space.largest()))

    def accuracy(arch) -> float:
        return float(sum(weight[k] * np.sqrt(arch[k] / full[k]) for k in labels) / sum(weight.values()))

    def latency(arch) -> float:
        return 0.1 + sum(k.flops for k in space.kernel_list(arch)) / macs0
    return accuracy, latency


def make(name: str, space, seed: int = 0):
    return STRATEGIES.get(name)(space=space, objectives=(ACCURACY, LATENCY), seed=seed, **FAST[name])


def test_the_family_is_autoslim_and_amc():
    assert FAMILY == ["amc", "autoslim"]


@pytest.mark.parametrize("name", FAMILY)
def test_candidates_meet_the_budget_on_the_latency_model_and_are_deterministic(name, space):
    accuracy, latency = problem(space)
    base = latency(space.largest())
    budget = 0.6 * base
    runs = [make(name, space, seed).search(accuracy=accuracy, latency=latency, budget_ms=budget, base_ms=base,
                                           progress=False) for seed in (0, 0)]
    first = runs[0]
    assert first.candidates and first.queries > 0 and first.trace
    for c in first.candidates:
        assert space.validate(c["arch"]) == c["arch"]
        assert c["latency_ms"] == pytest.approx(latency(c["arch"]))
        assert c["accuracy"] == pytest.approx(accuracy(c["arch"]))
    if name == "amc":  # resource-constrained mode: every episode, not only the candidates, meets the budget
        assert all(t["latency_ms"] <= budget + 1e-9 for t in first.trace)
    else:  # the path's configurations from 10 % above the budget to 10 % below it (where slimming stops)
        assert all(c["latency_ms"] <= budget * 1.1 + 1e-9 for c in first.candidates)
        assert min(c["latency_ms"] for c in first.candidates) <= budget * 0.9
        assert max(c["latency_ms"] for c in first.candidates) > budget  # the measured value decides
        assert 1 < len(first.candidates) <= 12
    assert [c["arch"] for c in runs[1].candidates] == [c["arch"] for c in first.candidates]


def test_autoslim_records_a_configuration_for_every_budget_in_one_search(space):
    accuracy, latency = problem(space)
    base = latency(space.largest())
    strategy = STRATEGIES.get("autoslim")(space=space, objectives=(ACCURACY,), budgets=[0.9, 0.7])
    outcome = strategy.search(accuracy=accuracy, latency=latency, budget_ms=0.5 * base, base_ms=base, progress=False)
    found = outcome.extra["budgets"]
    assert set(found) == {"0.9", "0.7"}
    assert latency(found["0.9"]["arch"]) <= 0.9 * base and latency(found["0.7"]["arch"]) <= 0.7 * base
    # the path shrinks one group one step at a time, and the 90 % configuration comes first on it
    assert latency(found["0.9"]["arch"]) >= latency(found["0.7"]["arch"])


@pytest.mark.parametrize("name", FAMILY)
def test_a_space_without_channel_widths_is_refused(name):
    with pytest.raises(ConfigError, match=r"needs \+space=channels"):
        STRATEGIES.get(name)(space=ToySpace(), objectives=(ACCURACY,))


def test_bad_options_are_refused_by_name(space):
    with pytest.raises(ConfigError, match="margin"):
        AutoSlimStrategy(space=space, objectives=(ACCURACY,), margin=0.9)
    with pytest.raises(ConfigError, match="warmup"):
        AMCStrategy(space=space, objectives=(ACCURACY,), episodes=10, warmup=10)
    with pytest.raises(ConfigError, match="noise_decay"):
        AMCStrategy(space=space, objectives=(ACCURACY,), noise_decay=1.5)


def test_amc_layer_state_has_one_row_per_searchable_group(space):
    feats = AMCStrategy(space=space, objectives=(ACCURACY,)).layer_features()
    assert feats.shape == (len(space.choices()), 6) and np.all(np.isfinite(feats))
    # the width column is each group's channel count
    assert feats[:, 0].tolist() == [space.groups[int(k[1:])].channels for k in space.choices()]


def test_the_run_maps_the_latency_model_onto_its_own_measurements_of_the_ends(space):
    """A model biased at the ends (predicting the narrowest network above a budget the run measured as
    reachable) is mapped linearly onto the base's and the narrowest member's measured latency."""
    from nas.channels.run import calibrated_latency

    _, latency = problem(space)

    class Biased:  # predicts 1.5x + 0.05 of the truth
        def predict(self, archs):
            return np.array([1.5 * latency(a) + 0.05 for a in archs])

    base, floor = latency(space.largest()), latency(space.smallest())
    mapped, info = calibrated_latency(Biased(), space, base, floor)
    assert info["calibrated"] and mapped(space.largest()) == pytest.approx(base)
    assert mapped(space.smallest()) == pytest.approx(floor)
    middle = space.uniform(0.5)
    assert mapped(middle) == pytest.approx(latency(middle))  # a linear bias is undone everywhere
    assert mapped.predict([middle, space.largest()]) == pytest.approx([latency(middle), base])  # ask/tell's use
    _, flat = calibrated_latency(Biased(), space, floor, base)  # measured ends in the wrong order: left alone
    assert not flat["calibrated"]


def test_a_budget_below_the_narrowest_member_is_refused_when_measured_and_searched_to_it_on_a_prior():
    from omegaconf import OmegaConf

    from nas.channels.run import resolve_budget

    cfg = OmegaConf.create({"constraint": {"latency_ratio": 0.5, "latency_ms": None}})
    assert resolve_budget(cfg, 10.0, 4.0, "measured") == (5.0, {
        "base_latency_ms": 10.0, "base_latency_source": "measured", "smallest_latency_ms": 4.0, "latency_ms": 5.0,
        "latency_ratio": 0.5, "given": "latency_ratio"})
    with pytest.raises(ConfigError, match="below the narrowest network"):
        resolve_budget(cfg, 10.0, 8.7, "measured")
    # the prior's floor is a model of another board: the run goes on to the narrowest member, the ask recorded
    budget, record = resolve_budget(cfg, 10.0, 8.7, "prior")
    assert budget == 8.7 and record["latency_ms"] == 5.0 and record["search_latency_ms"] == 8.7
    assert "by the prior" in record["clamped"]
