"""Predictor-guided local search: fit cheap models on everything evaluated so far, and evaluate next the
neighbour of the best archs that the models find most promising.

Each ``ask`` after ``initial`` random archs:

1. fits, per objective, an ensemble of ridge regressions on bootstrap resamples of the evaluated archs
   (features: the space's encoding; latency on a log scale, so errors are relative). The spread of the
   ensemble says how unsure the prediction is;
2. builds candidates: every one-change neighbour of the ``parents`` best archs (by the strategy's
   preference: feasible first, then Pareto rank, then accuracy), ``mutants`` random two-change neighbours of
   each, and ``random_candidates`` fresh samples, leaving out everything already asked;
3. picks the candidate with the best optimistic score (mean + ``ucb`` x spread): for one objective, the
   highest predicted value among candidates predicted to meet the budget; for two, the largest gain in
   hypervolume over the current front.

It is BANANAS-style search (White et al., 2021) with a linear ensemble instead of a neural one: on
NAS-Bench-201 and similar spaces the evaluated archs' neighbourhoods hold the next improvements, and a model
fitted on a few dozen points ranks those neighbours well enough to skip most of them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nas.arch import Arch, arch_id
from nas.errors import ConfigError
from nas.objectives import LATENCY, hypervolume_gains_2d, loss_matrix, non_dominated_sort
from nas.registry import register_strategy
from nas.strategies.base import Strategy, draw_unseen, preference_order


@register_strategy("guided")
class PredictorGuidedSearch(Strategy):
    name = "guided"

    def __init__(self, *, initial: int = 10, ensemble: int = 5, ucb: float = 0.5, parents: int = 10,
                 mutants: int = 30, random_candidates: int = 100, ridge: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        for key, value, low in (("initial", initial, 2), ("ensemble", ensemble, 1), ("parents", parents, 1),
                                ("mutants", mutants, 0), ("random_candidates", random_candidates, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"strategy.{key} must be an integer >= {low}, got {value!r}")
        if not ucb >= 0 or not ridge > 0:
            raise ConfigError(f"strategy.ucb must be >= 0 and strategy.ridge > 0, got {ucb}, {ridge}")
        if len(self.objectives) > 2:
            raise ConfigError("strategy guided handles one or two objectives")
        self.initial, self.ensemble, self.ucb, self.parents = initial, ensemble, float(ucb), parents
        self.mutants, self.random_candidates, self.ridge = mutants, random_candidates, float(ridge)
        self._history: list[dict] = []  # {"arch", "metrics"} in tell order
        self._asked = 0
        self._seen: set[str] = set()
        self._codes: dict[str, np.ndarray] = {}  # arch id -> encoding (derived, so not part of the state)

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Arch:
        self._asked += 1
        if self._asked <= self.initial or len(self._history) < 2:
            return draw_unseen(lambda: self.space.sample(self.rng), self._seen)
        candidates = self._candidates()
        if not candidates:  # everything near the parents is taken: explore
            return draw_unseen(lambda: self.space.sample(self.rng), self._seen)
        choice = candidates[int(np.argmax(self._acquisition(candidates)))]
        self._seen.add(arch_id(choice))
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
                        pool.setdefault(arch_id(child), child)
            labels = list(choices)
            for _ in range(self.mutants):  # two labels changed at once
                child = dict(parent)
                for k in self.rng.choice(len(labels), size=min(2, len(labels)), replace=False):
                    options = choices[labels[k]]
                    child[labels[k]] = options[int(self.rng.integers(len(options)))]
                child = self.space.canonical(child)
                pool.setdefault(arch_id(child), child)
        for _ in range(self.random_candidates):
            child = self.space.sample(self.rng)
            pool.setdefault(arch_id(child), child)
        return [arch for key, arch in pool.items() if key not in self._seen]

    def _encode(self, archs: list[Arch]) -> np.ndarray:
        rows = []
        for arch in archs:
            key = arch_id(arch)
            code = self._codes.get(key)
            if code is None:
                code = self._codes[key] = self.space.encode(arch).astype(np.float64)
            rows.append(code)
        return np.stack(rows)

    def _predict(self, metric: str, X: np.ndarray, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread over the ensemble of ``metric`` for the candidates (on a log scale for latency)."""
        y = np.array([h["metrics"][metric] for h in self._history], dtype=np.float64)
        if metric == LATENCY.name:
            y = np.log(np.maximum(y, 1e-9))
        n = len(y)
        preds = []
        for member in range(self.ensemble):
            rows = self.rng.integers(0, n, n) if self.ensemble > 1 else np.arange(n)
            Xb, yb = X[rows], y[rows]
            mean = yb.mean()
            w = np.linalg.solve(Xb.T @ Xb + self.ridge * np.eye(X.shape[1]), Xb.T @ (yb - mean))
            preds.append(Xc @ w + mean)
        P = np.array(preds)
        return P.mean(axis=0), P.std(axis=0)

    def _acquisition(self, candidates: list[Arch]) -> np.ndarray:
        X = self._encode([h["arch"] for h in self._history])
        Xc = self._encode(candidates)
        # Ensemble mean and spread per metric, each fitted once (latency may serve an objective and the budget).
        predicted = {o.name: self._predict(o.name, X, Xc) for o in self.objectives}
        # Optimistic loss of each candidate for each objective (smaller is better); latency back from log scale.
        optimistic = []
        for objective in self.objectives:
            mean, spread = predicted[objective.name]
            if objective.direction == "max":
                optimistic.append(-(mean + self.ucb * spread))
            else:
                loss = mean - self.ucb * spread
                optimistic.append(np.exp(loss) if objective.name == LATENCY.name else loss)
        losses = np.stack(optimistic, axis=1)
        feasible = np.ones(len(candidates), dtype=bool)
        if self.constraints.latency_ms is not None:
            if LATENCY.name not in predicted:
                predicted[LATENCY.name] = self._predict(LATENCY.name, X, Xc)
            feasible = np.exp(predicted[LATENCY.name][0]) <= self.constraints.latency_ms
        if len(self.objectives) == 1:
            score = -losses[:, 0]
            return np.where(feasible, score, score - 1e9)  # infeasible only when nothing else is left
        return self._hypervolume_gain(losses) + np.where(feasible, 0.0, -1e9)

    def _hypervolume_gain(self, candidate_losses: np.ndarray) -> np.ndarray:
        told = loss_matrix([h["metrics"] for h in self._history], self.objectives)
        violations = np.array([self.constraints.violation(h["metrics"]) for h in self._history])
        front = told[non_dominated_sort(told, violations)[0]]
        span = np.maximum(told.max(axis=0) - told.min(axis=0), 1e-12)
        reference = told.max(axis=0) + 0.1 * span
        gain = hypervolume_gains_2d(front, candidate_losses, reference)
        if gain.max() <= 0:  # nothing predicted to extend the front: the candidate closest to it
            distance = np.min(np.linalg.norm((candidate_losses[:, None, :] - front[None]) / span, axis=2), axis=1)
            return -distance
        return gain

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {**super().state_dict(), "history": self._history, "asked": self._asked, "seen": sorted(self._seen)}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self._history = [dict(h) for h in state["history"]]
        self._asked = int(state["asked"])
        self._seen = set(state["seen"])
