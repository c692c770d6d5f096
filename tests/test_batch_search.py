"""The vectorised search loop: integer codes in, valid, distinct, canonical archs out, the same features and
predictions as the per-arch path, and an exact resume from a saved state."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from nas.hardware.priors import load_prior
from nas.objectives import ACCURACY, LATENCY, CodedTrials, Constraints, non_dominated_sort
from nas.pipeline import run_strategy, sample_distinct
from nas.registry import STRATEGIES
from nas.surrogate import PriorSurrogate, calibrate_prior, fit_surrogate
from predictors.features import latency_features, latency_features_codes
from search_spaces.base import SearchSpace
from search_spaces.ofa import OFASpace
from tests.toy_space import ElasticToySpace, ToySpace

OFA_SPACES = {
    "small": lambda: OFASpace(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32)),
    "float_expand": lambda: OFASpace(expand_ratios=(2.5, 3, 6), kernel_sizes=(3, 5), depths=(1, 2, 3),
                                     resolutions=(128, 160)),
}


def reference_id(arch: dict) -> str:
    return hashlib.sha256(json.dumps(arch, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def toy_metrics(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Made-up, deterministic metrics of codes: accuracy rises with the codes, latency with a weighted sum."""
    weights = np.arange(1, codes.shape[1] + 1)
    return {"accuracy": codes.sum(axis=1) / (3.0 * codes.shape[1] + 1), "latency_ms": 1.0 + codes @ weights}


def evolution(space: SearchSpace, seed: int = 0, **kwargs):
    kwargs.setdefault("population_size", 20)
    return STRATEGIES.get("evolution")(space=space, objectives=(ACCURACY, LATENCY), seed=seed, **kwargs)


def fitted(space: OFASpace):
    rng = np.random.default_rng(0)
    archs = sample_distinct(space, 40, rng)
    accuracy = fit_surrogate(space=space, archs=archs, values=rng.random(40), metric="accuracy", predictor="ridge",
                             features="encoding")
    latency = fit_surrogate(space=space, archs=archs, values=rng.random(40) + 0.1, metric="latency_ms",
                            predictor="ridge", features="cost", predictor_kwargs={"log_target": True})
    return accuracy, latency


# ---------------------------------------------------------------------------------------------- the loop
@pytest.mark.parametrize("name", sorted(OFA_SPACES))
@pytest.mark.parametrize("latency_model", ["ridge", "prior"])
def test_vectorised_loop_gives_valid_distinct_canonical_archs(name: str, latency_model: str) -> None:
    space = OFA_SPACES[name]()
    accuracy, latency = fitted(space)
    if latency_model == "prior":
        latency = PriorSurrogate(prior=load_prior("arm_cpu"), space=space)
    history = run_strategy(evolution(space, population_size=50), accuracy, latency, queries=1_230, progress=False)
    assert len(history) == 1_230
    ids = [t.arch_id for t in history]
    assert len(set(ids)) == len(ids)  # a space of millions is far from exhausted: no repeats
    for trial in history:
        assert space.validate(trial.arch) == trial.arch
        assert space.canonical(trial.arch) == trial.arch
        assert list(trial.arch) == list(space.choices())  # label order as the per-arch path makes them
        assert trial.arch_id == reference_id(trial.arch)  # the id is nas.arch.arch_id of the arch handed out
    # The metrics recorded are the predictors' values for the arch (the per-arch path gives the same numbers).
    sample = [history[i] for i in range(0, len(history), 97)]
    archs = [t.arch for t in sample]
    np.testing.assert_allclose([t.metrics["accuracy"] for t in sample], np.clip(accuracy.predict(archs), 0, 1),
                               rtol=1e-12)
    np.testing.assert_allclose([t.metrics["latency_ms"] for t in sample], latency.predict(archs), rtol=1e-12)


@pytest.mark.parametrize("space", [ToySpace(), ElasticToySpace()], ids=["toy", "elastic_toy"])
def test_loop_on_spaces_with_only_per_arch_methods(space: SearchSpace) -> None:
    """Spaces without batch operators use the base fallbacks (derived from sample / mutate / crossover)."""
    strategy = evolution(space, population_size=8)
    n_archs = int(np.prod(space.option_counts()))
    asked = []
    for _ in range(12):
        codes = strategy.ask_codes(8)
        strategy.tell_codes(codes, toy_metrics(codes))
        asked += space.from_codes(codes)
    for arch in asked:
        assert space.validate(arch) == arch
    if isinstance(space, ElasticToySpace):  # canonical, so ids are per network
        assert all(space.canonical(a) == a for a in asked)
    distinct = {reference_id(a) for a in asked}
    assert len(distinct) == min(len(asked), n_archs) or len(asked) > n_archs


def test_exhausted_space_still_yields() -> None:
    space = ToySpace(n=2, k=3)  # 9 archs
    strategy = evolution(space, population_size=4)
    seen = []
    for _ in range(6):
        codes = strategy.ask_codes(4)
        strategy.tell_codes(codes, toy_metrics(codes))
        seen += [tuple(row) for row in codes.tolist()]
    assert len(seen) == 24
    assert len(set(seen[:9])) == 9  # every arch once before any repeat


def test_batched_and_one_by_one_tells_select_the_same_survivors() -> None:
    space = OFA_SPACES["small"]()
    batched, single = evolution(space, seed=4), evolution(space, seed=4)
    for size in (20, 7, 13, 20, 33, 27):
        codes = batched.ask_codes(size)
        batched.tell_codes(codes, toy_metrics(codes))
        archs = [single.ask() for _ in range(size)]
        assert archs == space.from_codes(codes)
        metrics = toy_metrics(space.to_codes(archs))
        for i, arch in enumerate(archs):
            single.tell(arch, {k: float(v[i]) for k, v in metrics.items()})
    assert batched.generation == single.generation == 6
    assert batched.population == single.population


@pytest.mark.parametrize("constraints", [Constraints(), Constraints(latency_ms=60.0)], ids=["pareto", "budget"])
def test_resume_from_state_dict_asks_exactly_what_an_uninterrupted_search_asks(constraints: Constraints) -> None:
    space = OFA_SPACES["small"]()
    sizes = [20, 20, 9, 31, 20, 15, 5, 20, 20, 40]  # generations of 20, told in batches that straddle them

    def drive(strategy, batches):
        out = []
        for size in batches:
            codes = strategy.ask_codes(size)
            strategy.tell_codes(codes, toy_metrics(codes))
            out.append(codes.copy())
        return out

    full = drive(evolution(space, seed=1, constraints=constraints), sizes)
    first = evolution(space, seed=1, constraints=constraints)
    part = drive(first, sizes[:4])
    extra = first.ask_codes(6)  # asked, not told: pending in the saved state, then told after the resume
    state = json.loads(json.dumps(first.state_dict()))
    resumed = evolution(space, seed=99, constraints=constraints)
    resumed.load_state_dict(state)
    assert resumed.generation == first.generation and resumed.population == first.population
    resumed.tell_codes(extra, toy_metrics(extra))
    rest = drive(resumed, [sizes[4] - 6] + sizes[5:])
    np.testing.assert_array_equal(np.concatenate(part + [extra] + rest), np.concatenate(full))
    assert resumed.state_dict() == evolution_state_after(space, constraints, sizes)


def evolution_state_after(space, constraints, sizes):
    strategy = evolution(space, seed=1, constraints=constraints)
    for size in sizes:
        codes = strategy.ask_codes(size)
        strategy.tell_codes(codes, toy_metrics(codes))
    return strategy.state_dict()


def test_state_of_another_space_is_refused() -> None:
    state = evolution(OFA_SPACES["small"]()).state_dict()
    with pytest.raises(Exception, match="labels"):
        evolution(ToySpace()).load_state_dict(state)


# ---------------------------------------------------------------------------------------------- operators
@pytest.mark.parametrize("name", sorted(OFA_SPACES))
def test_ofa_batch_operators(name: str) -> None:
    space = OFA_SPACES[name]()
    rng = np.random.default_rng(3)
    codes = space.sample_codes(rng, 2_000)
    archs = space.from_codes(codes)
    assert all(space.canonical(a) == a == space.validate(a) for a in archs)
    np.testing.assert_array_equal(space.to_codes(archs), codes)
    np.testing.assert_array_equal(space.canonical_codes(codes), codes)
    # Sampling is uniform per label where the label is active (the resolution and depths always are).
    for column, count in ((0, len(space.resolutions)), (1, len(space.depths))):
        share = np.bincount(codes[:, column], minlength=count) / len(codes)
        assert np.abs(share - 1 / count).max() < 0.05
    children = space.mutate_codes(codes, rng)
    assert not (children == codes).all(axis=1).any()  # every child differs from its parent
    np.testing.assert_array_equal(space.canonical_codes(children), children)
    assert np.median((children != codes).sum(axis=1)) <= 3  # a few labels change, not the whole arch
    mates = space.sample_codes(rng, len(codes))
    crossed = space.crossover_codes(codes, mates, rng)
    np.testing.assert_array_equal(space.canonical_codes(crossed), crossed)
    # Each active label comes from one parent (inactive slots are reset, as canonical() does).
    same = (crossed == codes) | (crossed == mates) | (crossed == 0)
    assert same.all()
    # Non-canonical codes (junk in inactive slots) are made canonical exactly as the per-arch canonical().
    junk = codes.copy()
    junk[:, 1:] = rng.integers(0, space.option_counts()[1:], size=junk[:, 1:].shape)
    expected = space.to_codes([space.canonical(a) for a in space.from_codes(junk)])
    np.testing.assert_array_equal(space.canonical_codes(junk), expected)
    np.testing.assert_array_equal(SearchSpace.canonical_codes(space, junk), expected)


def test_base_codes_round_trip_and_reject_non_options() -> None:
    space = ToySpace(n=3, k=4)
    archs = [{"x0": 1, "x1": 3, "x2": 0}, {"x0": 0, "x1": 0, "x2": 2}]
    codes = space.to_codes(archs)
    np.testing.assert_array_equal(codes, [[1, 3, 0], [0, 0, 2]])
    assert space.from_codes(codes) == archs
    from nas.errors import InvalidArchError

    with pytest.raises(InvalidArchError, match="x1"):
        space.to_codes([{"x0": 1, "x1": 7, "x2": 0}])
    with pytest.raises(InvalidArchError, match="x0"):
        space.to_codes([{"x0": True, "x1": 1, "x2": 0}])  # True == 1, but it is not the option 1


# ---------------------------------------------------------------------------------------------- features
@pytest.mark.parametrize("name", sorted(OFA_SPACES))
def test_batch_features_and_predictions_equal_the_per_arch_path(name: str) -> None:
    space = OFA_SPACES[name]()
    codes = space.sample_codes(np.random.default_rng(5), 300)
    archs = space.from_codes(codes)
    np.testing.assert_array_equal(space.encode_codes(codes), space.encode_many(archs))
    np.testing.assert_array_equal(space.cost_features_codes(codes), space.cost_features_many(archs))
    np.testing.assert_array_equal(SearchSpace.encode_codes(space, codes), space.encode_many(archs))
    # Kernel features: the same sums, added in another order.
    np.testing.assert_allclose(latency_features_codes(space, codes, "kernel"), latency_features(space, archs, "kernel"),
                               rtol=1e-12, atol=1e-12)
    for kind in ("flops", "onehot"):  # no table for these: the per-arch path on the archs of the codes
        np.testing.assert_array_equal(latency_features_codes(space, codes, kind), latency_features(space, archs, kind))
    prior = load_prior("arm_cpu")
    np.testing.assert_allclose(prior.predict_codes(space, codes), prior.predict(space, archs), rtol=1e-12)
    accuracy, latency = fitted(space)
    np.testing.assert_array_equal(accuracy.predict_codes(codes), accuracy.predict(archs))
    np.testing.assert_array_equal(latency.predict_codes(codes), latency.predict(archs))
    for shots in (6, 20):  # the power law, and the shape terms
        measured = [float(v) for v in prior.predict(space, archs[:shots]) * np.linspace(0.8, 1.3, shots)]
        calibrated = calibrate_prior(prior=prior, space=space, archs=archs[:shots], values=measured)
        np.testing.assert_allclose(calibrated.predict_codes(codes), calibrated.predict(archs), rtol=1e-12)


def test_a_prior_without_a_batch_path_gets_archs() -> None:
    space = OFA_SPACES["small"]()

    class MACsPrior:
        name, description = "macs", "test prior"

        def predict(self, space, archs):
            return np.array([space.cost_features(a)[-1] + 1.0 for a in archs])

    codes = space.sample_codes(np.random.default_rng(0), 10)
    surrogate = PriorSurrogate(prior=MACsPrior(), space=space)
    np.testing.assert_array_equal(surrogate.predict_codes(codes), surrogate.predict(space.from_codes(codes)))


def test_run_strategy_with_a_per_arch_strategy() -> None:
    """A strategy without its own batch path asks and is told arch by arch through the base ask_codes."""
    space = OFA_SPACES["small"]()
    accuracy, latency = fitted(space)
    strategy = STRATEGIES.get("random")(space=space, objectives=(ACCURACY, LATENCY), seed=0)
    history = run_strategy(strategy, accuracy, latency, queries=150, progress=False)
    assert len(history) == 150 and len({t.arch_id for t in history}) == 150
    assert all(t.arch_id == reference_id(t.arch) for t in history)


def test_coded_trials_are_made_once() -> None:
    space = ToySpace(n=3, k=4)
    trials = CodedTrials(space)
    trials.extend_codes(np.array([[1, 2, 3], [0, 0, 1]]), {"accuracy": np.array([0.5, 0.25])})
    assert len(trials) == 2
    first = trials[0]
    first.metrics["latency_ms"] = 3.0
    assert trials[0] is first and trials[0].metrics == {"accuracy": 0.5, "latency_ms": 3.0}
    assert [t.arch for t in trials] == [{"x0": 1, "x1": 2, "x2": 3}, {"x0": 0, "x1": 0, "x2": 1}]
    with pytest.raises(RuntimeError):
        trials.extend_codes(np.array([[3, 3, 3]]), {"accuracy": np.array([1.0])})


# ---------------------------------------------------------------------------------------------- selection
def test_fast_non_dominated_sort_equals_the_domination_matrix() -> None:
    """One or two objectives take an O(n log n) path; a third all-zero objective (which changes no domination)
    forces the O(n^2) matrix path, and both must give the same fronts in the same order."""
    rng = np.random.default_rng(0)
    for trial in range(2_000):
        n, m = int(rng.integers(1, 60)), int(rng.integers(1, 3))
        losses = rng.integers(0, 5, size=(n, m)).astype(float) if trial % 2 else rng.random((n, m))
        violations = None
        if trial % 3 == 0:
            violations = np.where(rng.random(n) < 0.3, rng.integers(0, 4, n) * 0.5, 0.0)
        elif trial % 7 == 0:
            violations = np.ones(n)  # nothing feasible
        padded = np.column_stack([losses, np.zeros(n)])
        for limit in (None, int(rng.integers(1, n + 1))):
            fast = non_dominated_sort(losses, violations, limit=limit)
            matrix = non_dominated_sort(padded, violations, limit=limit)
            assert len(fast) == len(matrix)
            for a, b in zip(fast, matrix):
                np.testing.assert_array_equal(a, b)
