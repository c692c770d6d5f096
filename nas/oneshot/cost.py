"""The cost a hardware-aware differentiable search penalises: a sum over decisions, so its expectation under
the architecture distribution is differentiable (FBNet, ProxylessNAS).

``E[cost] = base + sum_d sum_o p_d(o) * c_d(o)``, with ``c_d(o)`` the change in cost when decision ``d``
takes option ``o``, measured from a reference architecture (:func:`linear_costs`). The model behind it is
the target's own latency model, evaluated on whole architectures:

- a table target (``+target=raspi4``): the table, and for the FBNet space the per-(layer, block) sum that
  reproduces its 5,000 rows to rounding error (:meth:`nas.tables.MetricTable.additive`): exact;
- a target with a prior and no device (``arm_cpu`` here): the prior (a sum of kernel costs, so exact too);
- a measuring target: the latency predictor fitted on ``latency.samples`` measured networks (as the main
  command fits it);
- ``strategy.cost=macs``: multiply-accumulates (the FLOPs proxy a baseline searches with).

Where the model is not a sum over decisions (a predictor on log latency, NB201 cells whose ``none`` edges cut
paths), the linearisation is an approximation; :func:`additivity_error` measures how good on random
architectures and the run reports it. The budget is always checked on the model itself, not its
linearisation, for the derived architecture.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from nas.arch import Arch
from nas.errors import ConfigError
from search_spaces.relax import RelaxableSpace

#: ``strategy.cost`` values: what E[cost] is taken of.
COSTS = ("latency", "macs")


@dataclass
class DecisionCosts:
    """A cost model linearised over the decisions of a relaxed space."""

    base: float
    costs: list[np.ndarray]  # per decision: the cost change of each option from the reference
    unit: str  # "ms" or "MMACs"
    source: str  # where the values come from, in words
    evaluate_many: Callable[[Sequence[Arch]], np.ndarray]  # the model itself, on whole architectures
    info: dict = field(default_factory=dict)  # additivity check, the model's description

    def expected(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """``E[cost]`` under per-decision probabilities (differentiable in ``probs``)."""
        total = torch.tensor(self.base, dtype=torch.float32)
        for p, c in zip(probs, self.costs):
            total = total + (p * torch.as_tensor(c, dtype=p.dtype)).sum()
        return total

    def linear(self, selection: Sequence[int]) -> float:
        """The linearised cost of one option per decision."""
        return float(self.base + sum(float(c[i]) for c, i in zip(self.costs, selection)))

    def evaluate(self, arch: Arch) -> float:
        """The model's cost of ``arch`` (not linearised)."""
        return float(self.evaluate_many([arch])[0])

    def fastest(self) -> float:
        """The smallest linearised cost (every decision at its cheapest option)."""
        return float(self.base + sum(float(np.min(c)) for c in self.costs))

    def to_dict(self) -> dict:
        return {"unit": self.unit, "source": self.source, "base": self.base, "fastest": self.fastest(),
                "per_decision": [np.round(c, 6).tolist() for c in self.costs], **self.info}


def linear_costs(space: RelaxableSpace, evaluate_many: Callable[[Sequence[Arch]], np.ndarray]
                 ) -> tuple[float, list[np.ndarray]]:
    """``(base, costs)``: the model's value at the reference architecture (every decision at its last option,
    the largest), and the change of changing one decision at a time, from one batch of evaluations."""
    decisions = space.decisions()
    reference = [len(d.options) - 1 for d in decisions]
    archs, where = [space.arch_of(reference)], []
    for d, decision in enumerate(decisions):
        for o in range(len(decision.options)):
            if o != reference[d]:
                selection = list(reference)
                selection[d] = o
                archs.append(space.arch_of(selection))
                where.append((d, o))
    values = np.asarray(evaluate_many(archs), dtype=np.float64)
    base = float(values[0])
    costs = [np.zeros(len(d.options)) for d in decisions]
    for (d, o), value in zip(where, values[1:]):
        costs[d][o] = value - base
    shift = sum(float(c.min()) for c in costs)  # make the cheapest option of each decision cost 0
    costs = [c - c.min() for c in costs]
    return base + shift, costs


def additivity_error(space: RelaxableSpace, model: DecisionCosts, rng: np.random.Generator, n: int = 32) -> dict:
    """How far the linearisation is from the model on ``n`` random architectures (relative error)."""
    decisions = space.decisions()
    selections = [[int(rng.integers(len(d.options))) for d in decisions] for _ in range(n)]
    archs = [space.arch_of(s) for s in selections]
    truth = np.asarray(model.evaluate_many(archs), dtype=np.float64)
    linear = np.array([model.linear(s) for s in selections])
    rel = np.abs(linear - truth) / np.maximum(np.abs(truth), 1e-9)
    return {"archs": n, "max_rel_error": float(rel.max()), "median_rel_error": float(np.median(rel))}


def build_costs(space: RelaxableSpace, evaluate_many: Callable[[Sequence[Arch]], np.ndarray], *, unit: str,
                source: str, seed: int, info: dict | None = None) -> DecisionCosts:
    """A :class:`DecisionCosts` for the model ``evaluate_many``, with its additivity measured."""
    base, costs = linear_costs(space, evaluate_many)
    model = DecisionCosts(base=base, costs=costs, unit=unit, source=source, evaluate_many=evaluate_many,
                          info=dict(info or {}))
    model.info["additivity"] = additivity_error(space, model, np.random.default_rng(seed))
    return model


def macs_model(space) -> Callable[[Sequence[Arch]], np.ndarray]:
    """Multiply-accumulates (millions) of whole architectures."""
    from search_spaces.kernels import flops

    return lambda archs: np.array([flops(space, a) / 1e6 for a in archs], dtype=np.float64)


def constrained_argmax(probs: Sequence[np.ndarray], model: DecisionCosts, budget: float, *, low: float | None = None,
                       steps: int = 4000) -> list[int] | None:
    """The most probable selection (max of summed log-probabilities) whose *linearised* cost is within
    ``budget`` (and, with ``low``, at least ``low``): a multiple-choice knapsack solved by dynamic programming
    over the budget in ``steps`` steps, each option's cost rounded up (so the answer is within budget, and at
    least ``low`` in exact cost). None when no selection fits."""
    slack = budget - model.base
    if slack < -1e-12:
        return None
    step = max(slack, 1e-12) / steps
    # best[b]: best log-prob of a selection costing exactly b steps (rounded up); -inf where none does
    best = np.full(steps + 1, -math.inf)
    best[0] = 0.0
    choice = []
    for p, c in zip(probs, model.costs):
        logp = np.log(np.maximum(np.asarray(p, dtype=np.float64), 1e-30))
        units = np.ceil(c / step - 1e-9).astype(np.int64)
        new = np.full(steps + 1, -math.inf)
        pick = np.zeros(steps + 1, dtype=np.int64)
        for o, (u, lp) in enumerate(zip(units, logp)):
            if u > steps:
                continue
            candidate = np.full(steps + 1, -math.inf)
            candidate[u:] = best[: steps + 1 - u] + lp
            better = candidate > new
            new[better], pick[better] = candidate[better], o
        best = new
        choice.append(pick)
    # Rounding up adds less than a step per decision, so a selection of at least ``low`` in rounded steps may
    # fall short of it in exact cost by up to one step per decision: start the window that many steps higher.
    first = 0 if low is None else int(min(max(math.ceil((low - model.base) / step - 1e-9) + len(model.costs), 0),
                                          steps))
    window = best[first:]
    if not np.isfinite(window).any():
        return None
    b, selection = first + int(np.argmax(window)), []
    for pick, c in zip(reversed(choice), reversed(model.costs)):
        o = int(pick[b])
        selection.append(o)
        b -= int(np.ceil(c[o] / step - 1e-9))
    return list(reversed(selection))


def check_relaxable_cost(space: RelaxableSpace) -> None:
    """A cost over decisions needs each decision to map to an architecture (:meth:`RelaxableSpace.arch_of`
    of any selection); a space whose derivation is not one option per decision (DARTS's top-2 edges per node)
    cannot be costed so."""
    if not space.costable:
        raise ConfigError(f"hardware-aware search (constraint.latency_ms or strategy.cost_weight) is not available "
                          f"on space {space.name!r}: its derived cell keeps 2 of each node's edges, so its cost is "
                          f"not a sum over decisions; search nb201, fbnet or a block space for a budget")
