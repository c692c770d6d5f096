"""The one-shot strategy (strategy=darts) on a tiny relaxed space: gradients, the cost term, derivation,
checkpoint/resume and option checks. The spaces' relaxations have their own contract (tests/test_relax.py)."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas.errors import ConfigError
from nas.objectives import ACCURACY, Constraints
from nas.oneshot.bilevel import first_order, second_order
from nas.oneshot.cost import DecisionCosts, build_costs, constrained_argmax
from nas.registry import STRATEGIES
from search_spaces.relax import Gates
from tests.toy_relaxed import OPS, ToyRelaxSpace, toy_data
from tests.toy_space import ToySpace

LATENCY = {"skip": 0.0, "conv1": 1.0, "conv3": 3.0}  # ms per layer of the toy cost model


def make(space=None, **options):
    space = space or ToyRelaxSpace()
    budget = options.pop("latency_ms", None)
    return STRATEGIES.get("darts")(space=space, objectives=(ACCURACY,), constraints=Constraints(latency_ms=budget),
                                   seed=0, **options)


def toy_costs(space):
    return build_costs(space, lambda archs: np.array([0.5 + sum(LATENCY[a[k]] for k in a) for a in archs]),
                       unit="ms", source="toy", seed=0)


def losses(net, data, alphas):
    X, y = data
    xw, yw, xv, yv = X[:16], y[:16], X[16:32], y[16:32]

    def gates():
        return Gates(weights=[F.softmax(a, -1) for a in alphas])

    return (lambda: F.cross_entropy(net(xw, gates()), yw)), (lambda: F.cross_entropy(net(xv, gates()), yv))


def numeric_grad(f, params, h=1e-5):
    out = []
    for p in params:
        g = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[i] += h
                up = float(f())
                p.view(-1)[i] -= 2 * h
                down = float(f())
                p.view(-1)[i] += h
            g.view(-1)[i] = (up - down) / (2 * h)
        out.append(g)
    return out


@pytest.fixture()
def toy_problem():
    torch.manual_seed(0)
    space = ToyRelaxSpace()
    net = space.relax().double()
    X, y = toy_data()
    alphas = [torch.nn.Parameter(0.3 * torch.randn(len(OPS), dtype=torch.float64)) for _ in space.decisions()]
    return net, (X.double(), y), alphas


def test_first_order_gradient_matches_finite_differences(toy_problem):
    net, data, alphas = toy_problem
    _, val = losses(net, data, alphas)
    grads, _ = first_order(val, alphas)
    for g, n in zip(grads, numeric_grad(val, alphas)):
        assert torch.allclose(g, n, rtol=1e-5, atol=1e-8)


def test_second_order_gradient_matches_finite_differences_of_the_unrolled_loss(toy_problem):
    net, data, alphas = toy_problem
    train, val = losses(net, data, alphas)
    weights = [p for p in net.parameters()]
    xi = 0.5
    before = [w.detach().clone() for w in weights]
    grads, _ = second_order(train, val, weights, alphas, xi=xi)
    assert all(torch.equal(w, b) for w, b in zip(weights, before))  # the weights are left as they were

    def unrolled():  # L_val(w - xi * grad_w L_train(w, a), a), differentiated numerically in a
        saved = [w.detach().clone() for w in weights]
        with torch.enable_grad():
            g = torch.autograd.grad(train(), weights)
        with torch.no_grad():
            for w, gw in zip(weights, g):
                w.sub_(xi * gw)
            value = val()
            for w, s in zip(weights, saved):
                w.copy_(s)
        return value

    first, _ = first_order(val, alphas)
    for g, n, f in zip(grads, numeric_grad(unrolled, alphas, h=1e-4), first):
        assert torch.allclose(g, n, rtol=1e-3, atol=1e-6)
        assert not torch.allclose(g, f, rtol=1e-3, atol=1e-6)  # the correction is not negligible here


def test_costs_of_an_additive_model_are_exact_and_the_fastest_network_is_their_minimum():
    space = ToyRelaxSpace()
    costs = toy_costs(space)
    assert costs.info["additivity"]["max_rel_error"] < 1e-12
    assert costs.fastest() == pytest.approx(0.5)
    for selection in itertools.product(range(3), repeat=2):
        arch = space.arch_of(selection)
        assert costs.linear(selection) == pytest.approx(costs.evaluate(arch))


def test_the_latency_term_moves_the_expected_latency_toward_the_budget():
    space = ToyRelaxSpace()
    costs = toy_costs(space)
    alphas = [torch.zeros(3, requires_grad=True) for _ in range(2)]
    expected = costs.expected([F.softmax(a, -1) for a in alphas])
    (expected / 1.0).backward()
    with torch.no_grad():
        stepped = costs.expected([F.softmax(a - 0.5 * a.grad, -1) for a in alphas])
    assert float(stepped) < float(expected.detach())  # descending the term lowers E[latency]
    # and a whole search under a budget ends within it, with lambda raised on the way
    X, y = toy_data(96)
    strategy = make(latency_ms=1.6, epochs=4, arch_lr=0.05, batch_size=16, guard="none")
    outcome = strategy.search(space.relax(), (X, y), resolution=8, costs=costs, budget=1.6, progress=False)
    assert costs.evaluate(outcome.arch) <= 1.6
    assert max(h["lambda"] for h in outcome.history) > 0
    assert outcome.history[-1]["expected_cost"] < outcome.history[0]["expected_cost"] or \
        outcome.history[0]["expected_cost"] <= 1.6


def test_constrained_argmax_is_the_most_probable_selection_within_the_budget():
    space = ToyRelaxSpace()
    costs = toy_costs(space)
    rng = np.random.default_rng(1)
    for _ in range(20):
        probs = [rng.dirichlet(np.ones(3)) for _ in range(2)]
        budget = float(rng.uniform(0.5, 6.5))
        feasible = [s for s in itertools.product(range(3), repeat=2) if costs.linear(s) <= budget + 1e-9]
        best = max(feasible, key=lambda s: sum(np.log(p[i]) for p, i in zip(probs, s)))
        got = constrained_argmax(probs, costs, budget)
        assert got is not None and costs.linear(got) <= budget + 1e-9
        assert sum(np.log(p[i]) for p, i in zip(probs, got)) == pytest.approx(
            sum(np.log(p[i]) for p, i in zip(probs, best)))
    assert constrained_argmax(probs, costs, 0.4) is None
    for _ in range(20):  # with a lower bound: the most probable selection costing within [low, budget]
        probs = [rng.dirichlet(np.ones(3)) for _ in range(2)]
        low, budget = 2.4, 4.6
        band = [s for s in itertools.product(range(3), repeat=2) if low - 1e-9 <= costs.linear(s) <= budget + 1e-9]
        best = max(band, key=lambda s: sum(np.log(p[i]) for p, i in zip(probs, s)))
        got = constrained_argmax(probs, costs, budget, low=low)
        assert low - 1e-9 <= costs.linear(got) <= budget + 1e-9
        assert sum(np.log(p[i]) for p, i in zip(probs, got)) == pytest.approx(
            sum(np.log(p[i]) for p, i in zip(probs, best)))


def test_constrained_argmax_lower_edge_holds_on_exact_costs():
    # Each option 1 costs 0.101, rounded up to two steps of 0.1: three of them are 6 rounded steps (over a
    # lower edge of 5) but 0.303 exactly, under it; the lower edge must hold on the exact costs.
    costs = DecisionCosts(base=0.0, costs=[np.array([0.0, 0.101])] * 5, unit="ms", source="test",
                          evaluate_many=lambda archs: np.zeros(len(archs)))
    probs = [np.array([0.9, 0.1])] * 5
    got = constrained_argmax(probs, costs, 1.0, low=0.5, steps=10)
    assert got is not None and costs.linear(got) >= 0.5 and costs.linear(got) <= 1.0


@pytest.mark.parametrize("options", [{}, {"sampling": "gumbel"}, {"order": "second"}])
def test_resume_equals_an_uninterrupted_search(tmp_path, options):
    X, y = toy_data(64)
    space = ToyRelaxSpace()

    def fresh():
        torch.manual_seed(3)
        return space.relax()

    full = make(epochs=3, batch_size=16, **options).search(fresh(), (X, y), resolution=8, progress=False,
                                                          checkpoint=tmp_path / "a.npz")
    make(epochs=3, batch_size=16, **options).search(fresh(), (X, y), resolution=8, progress=False,
                                                   checkpoint=tmp_path / "b.npz", stop_after=1)
    resumed = make(epochs=3, batch_size=16, **options).search(fresh(), (X, y), resolution=8, progress=False,
                                                             checkpoint=tmp_path / "b.npz")
    assert resumed.resumed_from == 1
    assert resumed.probs == full.probs and resumed.arch == full.arch
    strip = lambda h: {k: v for k, v in h.items() if k != "seconds"}  # noqa: E731
    assert [strip(h) for h in resumed.history] == [strip(h) for h in full.history]


def test_the_search_records_probabilities_and_derives_a_member_of_the_space():
    X, y = toy_data(64)
    space = ToyRelaxSpace()
    outcome = make(epochs=2, batch_size=16, guard="aux_skip").search(space.relax(), (X, y), resolution=8,
                                                                     progress=False)
    assert space.validate(outcome.arch) == outcome.arch
    assert len(outcome.history) == 2 and all(len(h["probs"]) == 2 for h in outcome.history)
    assert all(abs(sum(p) - 1) < 1e-4 for p in outcome.probs)
    assert outcome.history[0]["aux_skip"] < 1.0  # the guard's weight decays over the search


def test_beta_decay_keeps_the_architecture_probabilities_from_running_away():
    X, y = toy_data(96)
    space = ToyRelaxSpace()
    peaks = {}
    for guard in ("none", "beta_decay"):
        torch.manual_seed(0)
        outcome = make(epochs=3, batch_size=16, guard=guard, arch_lr=0.1, beta_weight=2.0).search(
            space.relax(), (X, y), resolution=8, progress=False)
        peaks[guard] = max(max(p) for p in outcome.probs)
    assert peaks["beta_decay"] < peaks["none"]


@pytest.mark.parametrize("options, message", [
    ({"sampling": "hard"}, "sampling='hard' is not one of"),
    ({"order": "third"}, "order='third' is not one of"),
    ({"partial_channels": 2}, "PC-DARTS's partial channel connections need a cell space"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"warmup_epochs": 5, "epochs": 3}, "warmup_epochs must be an integer in [0, epochs=3)"),
    ({"tau_min": 20.0}, "tau_min=20.0 must not exceed tau_max"),
    ({"budget_target": 1.5}, "budget_target must be a positive number at most 1"),
])
def test_bad_options_are_refused_with_the_option_named(options, message):
    with pytest.raises(ConfigError, match=None) as err:
        make(**options)
    assert message in str(err.value)


def test_a_space_that_cannot_be_relaxed_is_refused():
    with pytest.raises(ConfigError) as err:
        make(space=ToySpace())
    assert "strategy=darts cannot relax space" in str(err.value) and "nb201" in str(err.value)


def test_decision_costs_expected_is_differentiable_and_matches_the_linear_cost_at_one_hot():
    space = ToyRelaxSpace()
    costs: DecisionCosts = toy_costs(space)
    for selection in itertools.product(range(3), repeat=2):
        probs = [F.one_hot(torch.tensor(i), 3).float() for i in selection]
        assert float(costs.expected(probs)) == pytest.approx(costs.linear(selection))
