"""Predictor-guided local search: fit cheap models on everything evaluated so far, and evaluate next the
neighbour of the best archs that the models find most promising.

Each ``ask`` after ``initial`` random archs:

1. fits, per objective, an ensemble of ridge regressions on bootstrap resamples of the evaluated archs
   (features: the space's encoding; latency on a log scale, so errors are relative). A candidate's predictive
   spread combines the members' disagreement with the residual error of a fit on all the data, so where
   the features explain the metric poorly the search stays unsure of every prediction, not only of rare ones;
2. builds candidates: every one-change neighbour of the ``parents`` best archs (by the strategy's
   preference: feasible first, then Pareto rank, then accuracy), ``mutants`` random two-change neighbours of
   each, and ``random_candidates`` fresh samples, leaving out everything already asked;
3. picks the candidate with the largest expected gain under that predictive distribution: expected
   improvement over the best feasible value (one objective), or expected hypervolume improvement over the
   current front, estimated from ``samples`` draws (two objectives); either is multiplied by the probability
   that the candidate meets the latency budget.

Why expected gains and a probability of feasibility rather than an optimistic score and a hard "predicted to
meet the budget" filter: the best feasible archs often lie within a few percent of the budget, closer than a
latency model fitted on a few dozen points can tell, so a hard filter on the predicted mean discards about
half of them; and a front point adds little hypervolume unless both its metrics land well, which sampling
both predictions together weighs correctly.

It is BANANAS-style search (White et al., 2021) with a linear ensemble instead of a neural one, and the
constrained acquisition of Gardner et al. (2014): on NAS-Bench-201 and similar spaces the evaluated archs'
neighbourhoods hold the next improvements, and a model fitted on a few dozen points ranks those neighbours
well enough to skip most of them.
"""

from __future__ import annotations

from collections.abc import Mapping

import math

import numpy as np

from nas.arch import Arch, arch_id
from nas.errors import ConfigError
from nas.objectives import LATENCY, hypervolume_gains_2d, loss_matrix, non_dominated_sort
from nas.registry import register_strategy
from nas.strategies.base import Strategy, draw_unseen, preference_order


@register_strategy("guided")
class PredictorGuidedSearch(Strategy):
    name = "guided"

    def __init__(self, *, initial: int | None = None, ensemble: int = 5, samples: int = 16, parents: int = 10,
                 mutants: int = 30, random_candidates: int = 100, ridge: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        # Unset: a twentieth of the budget (10 to 50) of random archs before the models take over; 10 found the
        # NB201 optimum in every seed at 150 queries, and a longer search can afford a broader first fit.
        if initial is None or (isinstance(initial, int) and not isinstance(initial, bool) and initial >= 2):
            initial = self.sized_to_budget("initial", initial, share=0.05, low=10, high=50, fallback=10)
        for key, value, low in (("initial", initial, 2), ("ensemble", ensemble, 1), ("samples", samples, 1),
                                ("parents", parents, 1), ("mutants", mutants, 0),
                                ("random_candidates", random_candidates, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"strategy.{key} must be an integer >= {low}, got {value!r}")
        if not ridge > 0:
            raise ConfigError(f"strategy.ridge must be > 0, got {ridge}")
        if len(self.objectives) > 2:
            raise ConfigError("strategy guided handles one or two objectives")
        self.initial, self.ensemble, self.samples, self.parents = initial, ensemble, samples, parents
        self.mutants, self.random_candidates, self.ridge = mutants, random_candidates, float(ridge)
        self._history: list[dict] = []  # {"arch", "metrics"} in tell order
        self._asked = 0
        self._seen: set[str] = set()
        self._codes: dict[str, np.ndarray] = {}  # arch id -> encoding (derived, so not part of the state)
        # Arch ids by label values (derived too): the same neighbours come back ask after ask, and hashing them
        # again was half of an ask's time.
        self._labels = tuple(self.space.choices())
        self._ids: dict[tuple, str] = {}

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Arch:
        self._asked += 1
        if self._asked <= self.initial or len(self._history) < 2:
            return draw_unseen(lambda: self.space.sample(self.rng), self._seen)
        candidates = self._candidates()
        if not candidates:  # everything near the parents is taken: explore
            return draw_unseen(lambda: self.space.sample(self.rng), self._seen)
        choice = candidates[int(np.argmax(self._acquisition(candidates)))]
        self._seen.add(self._id(choice))
        return choice

    def tell(self, arch: Mapping, metrics: Mapping[str, float]) -> None:
        self._check_metrics(metrics)
        self._history.append({"arch": dict(arch), "metrics": {k: float(v) for k, v in metrics.items()
                                                              if isinstance(v, (int, float))}})

    # ------------------------------------------------------------------ internals
    def _candidates(self) -> list[Arch]:
        metrics = [h["metrics"] for h in self._history]
        order = preference_order(self, metrics)
        # With two objectives every point of the current front is a parent (the fast end of the front needs
        # neighbours as much as the accurate end); ``parents`` is then a minimum.
        n_parents = self.parents
        if len(self.objectives) > 1:
            losses = loss_matrix(metrics, self.objectives)
            violations = np.array([self.constraints.violation(m) for m in metrics])
            n_parents = max(n_parents, len(non_dominated_sort(losses, violations)[0]))
        parents = [self._history[i]["arch"] for i in order[:n_parents]]
        pool: dict[str, Arch] = {}
        choices = self.space.choices()
        for parent in parents:
            for label, options in choices.items():
                for value in options:
                    if value != parent[label]:
                        child = self.space.canonical({**parent, label: value})
                        pool.setdefault(self._id(child), child)
            labels = list(choices)
            for _ in range(self.mutants):  # two labels changed at once
                child = dict(parent)
                for k in self.rng.choice(len(labels), size=min(2, len(labels)), replace=False):
                    options = choices[labels[k]]
                    child[labels[k]] = options[int(self.rng.integers(len(options)))]
                child = self.space.canonical(child)
                pool.setdefault(self._id(child), child)
        for _ in range(self.random_candidates):
            child = self.space.sample(self.rng)
            pool.setdefault(self._id(child), child)
        return [arch for key, arch in pool.items() if key not in self._seen]

    def _encode(self, archs: list[Arch]) -> np.ndarray:
        rows = []
        for arch in archs:
            key = self._id(arch)
            code = self._codes.get(key)
            if code is None:
                code = self._codes[key] = self.space.encode(arch).astype(np.float64)
            rows.append(code)
        return np.stack(rows)

    def _id(self, arch: Arch) -> str:
        values = tuple(arch[label] for label in self._labels)
        key = self._ids.get(values)
        if key is None:
            key = self._ids[values] = arch_id(arch)
        return key

    def _predict(self, metric: str, X: np.ndarray, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and spread of ``metric`` for the candidates (on a log scale for latency): the
        ensemble's mean, and the root of its variance plus the residual variance of one model fitted on all
        the data (what the features cannot explain: noise, interactions a linear model misses)."""
        y = np.array([h["metrics"][metric] for h in self._history], dtype=np.float64)
        if metric == LATENCY.name:
            y = np.log(np.maximum(y, 1e-9))
        n = len(y)
        preds = []
        for _ in range(self.ensemble):
            rows = self.rng.integers(0, n, n) if self.ensemble > 1 else np.arange(n)
            preds.append(self._ridge_predict(X[rows], y[rows], Xc))
        residuals = y - self._ridge_predict(X, y, X)
        noise = float(np.sum(residuals**2)) / max(n - 1, 1)
        P = np.array(preds)
        return P.mean(axis=0), np.sqrt(P.var(axis=0) + noise)

    def _ridge_predict(self, X: np.ndarray, y: np.ndarray, Xc: np.ndarray) -> np.ndarray:
        mean = y.mean()
        w = np.linalg.solve(X.T @ X + self.ridge * np.eye(X.shape[1]), X.T @ (y - mean))
        return Xc @ w + mean

    def _acquisition(self, candidates: list[Arch]) -> np.ndarray:
        X = self._encode([h["arch"] for h in self._history])
        Xc = self._encode(candidates)
        # Each metric's model fitted once (latency may serve an objective and the budget).
        names = {o.name for o in self.objectives}
        if self.constraints.latency_ms is not None:
            names.add(LATENCY.name)
        predicted = {name: self._predict(name, X, Xc) for name in sorted(names)}
        p_feasible = np.ones(len(candidates))
        if self.constraints.latency_ms is not None:
            mean, spread = predicted[LATENCY.name]
            p_feasible = _normal_cdf((math.log(self.constraints.latency_ms) - mean) / np.maximum(spread, 1e-12))
        if len(self.objectives) == 1:
            score = self._expected_improvement(*predicted[self.objectives[0].name]) * p_feasible
        else:
            score = self._expected_hypervolume_gain(predicted) * p_feasible
        if score.max() > 0:
            return score
        # No candidate is expected to gain anything: the likeliest to be feasible, then (two objectives) the one
        # predicted closest to the front.
        return p_feasible - (self._distance_to_front(predicted) if len(self.objectives) > 1 else 0.0)

    def _expected_improvement(self, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """Expected improvement over the best feasible value told so far (in the model's scale); before
        anything feasible is known, every candidate counts the same and feasibility decides."""
        objective = self.objectives[0]
        told = [h["metrics"] for h in self._history if self.constraints.violation(h["metrics"]) == 0]
        if not told:
            return np.ones(len(mean))
        values = np.array([m[objective.name] for m in told], dtype=np.float64)
        if objective.name == LATENCY.name:
            values = np.log(np.maximum(values, 1e-9))
        sign = 1.0 if objective.direction == "max" else -1.0
        gap = sign * (mean - (values.max() if sign > 0 else values.min()))
        spread = np.maximum(spread, 1e-12)
        z = gap / spread
        return gap * _normal_cdf(z) + spread * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    def _front(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The told front's losses, the told losses' span, and a reference just beyond the worst told values."""
        told = loss_matrix([h["metrics"] for h in self._history], self.objectives)
        violations = np.array([self.constraints.violation(h["metrics"]) for h in self._history])
        span = np.maximum(told.max(axis=0) - told.min(axis=0), 1e-12)
        return told[non_dominated_sort(told, violations)[0]], span, told.max(axis=0) + 0.1 * span

    def _expected_hypervolume_gain(self, predicted: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Hypervolume each candidate adds to the current front, averaged over ``samples`` joint draws of its
        predicted metrics."""
        front, _, reference = self._front()
        n = len(next(iter(predicted.values()))[0])
        gain = np.zeros(n)
        for _ in range(self.samples):
            losses = []
            for objective in self.objectives:
                mean, spread = predicted[objective.name]
                draw = mean + spread * self.rng.standard_normal(n)
                if objective.name == LATENCY.name:
                    draw = np.exp(draw)
                losses.append(-draw if objective.direction == "max" else draw)
            gain += hypervolume_gains_2d(front, np.stack(losses, axis=1), reference)
        return gain / self.samples

    def _distance_to_front(self, predicted: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Each candidate's predicted distance to the told front, in units of the told values' span."""
        front, span, _ = self._front()
        means = np.stack([(-1.0 if o.direction == "max" else 1.0)
                          * (np.exp(predicted[o.name][0]) if o.name == LATENCY.name else predicted[o.name][0])
                          for o in self.objectives], axis=1)
        return np.min(np.linalg.norm((means[:, None, :] - front[None]) / span, axis=2), axis=1)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {**super().state_dict(), "history": self._history, "asked": self._asked, "seen": sorted(self._seen)}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self._history = [dict(h) for h in state["history"]]
        self._asked = int(state["asked"])
        self._seen = set(state["seen"])


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.asarray(z, dtype=np.float64) / math.sqrt(2.0)))
