"""Evolutionary search: NSGA-II-style selection with constraint domination.

With two objectives (accuracy up, latency down) the population converges to a Pareto front; with one it
is a plain elitist evolution. A latency budget is honoured by Deb's constraint-domination rule: feasible
archs beat infeasible ones, infeasible ones compete on how far they exceed the budget.

The search is generational but exposed through ask/tell: ``ask`` hands out the pending offspring of the
current generation; once ``population_size`` results are in, survivors are selected from parents plus
offspring and the next generation is bred. Archs already evaluated are not proposed again (a duplicate
would waste a measurement), except when the space is nearly exhausted.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nas.arch import Arch, arch_id
from nas.errors import ConfigError
from nas.objectives import crowding_distance, loss_matrix, non_dominated_sort
from nas.registry import register_strategy
from nas.strategies.base import Strategy


@register_strategy("evolution")
class EvolutionStrategy(Strategy):
    name = "evolution"

    def __init__(
        self,
        *,
        population_size: int = 100,
        crossover_prob: float = 0.5,
        mutation_rate: float | None = None,
        tournament_size: int = 2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if population_size < 2:
            raise ConfigError(f"strategy.population_size must be at least 2, got {population_size}")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ConfigError(f"strategy.crossover_prob must be in [0, 1], got {crossover_prob}")
        if mutation_rate is not None and not 0.0 < mutation_rate <= 1.0:
            raise ConfigError(f"strategy.mutation_rate must be in (0, 1] or null, got {mutation_rate}")
        if tournament_size < 1:
            raise ConfigError(f"strategy.tournament_size must be at least 1, got {tournament_size}")
        self.population_size = population_size
        self.crossover_prob = crossover_prob
        self.mutation_rate = mutation_rate
        self.tournament_size = tournament_size
        self.generation = 0
        self._population: list[dict] = []  # {"arch", "metrics"} survivors
        self._offspring: list[dict] = []  # told, not yet merged
        self._pending: list[tuple[Arch, str]] = []  # bred, not yet asked, with their ids (hashed once, in _breed)
        self._seen: set[str] = set()
        self._rank: list[int] = []  # non-domination rank of each survivor (for tournaments)
        self._crowding: list[float] = []
        self._keys: list[tuple[int, float]] = []  # tournament order of each survivor: rank, then crowding

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Arch:
        return self._next()[0]

    def ask_many_with_ids(self, n: int) -> list[tuple[Arch, str]]:
        return [self._next() for _ in range(n)]

    def _next(self) -> tuple[Arch, str]:
        if not self._pending:
            self._pending = self._breed(self.population_size)
        return self._pending.pop(0)

    def tell(self, arch: Mapping, metrics: Mapping[str, float]) -> None:
        self._check_metrics(metrics)
        self._offspring.append({"arch": dict(arch), "metrics": {k: float(v) for k, v in metrics.items() if _is_number(v)}})
        if len(self._offspring) >= self.population_size:
            self._select()

    # ------------------------------------------------------------------ internals
    def _breed(self, n: int) -> list[tuple[Arch, str]]:
        children: list[tuple[Arch, str]] = []
        for _ in range(n):
            for attempt in range(20):
                if not self._population:
                    child = self.space.sample(self.rng)
                else:
                    child = self._make_child()
                key = arch_id(child)
                if key not in self._seen or attempt == 19:
                    break
            self._seen.add(key)
            children.append((child, key))
        return children

    def _make_child(self) -> Arch:
        first = self._tournament()
        if self.rng.random() < self.crossover_prob:
            child = self.space.crossover(first, self._tournament(), self.rng)
            if self.rng.random() < 0.5:  # crossover alone often reproduces a parent; mutate half the time
                child = self.space.mutate(child, self.rng, rate=self.mutation_rate)
            return child
        return self.space.mutate(first, self.rng, rate=self.mutation_rate)

    def _tournament(self) -> Arch:
        k = min(self.tournament_size, len(self._population))
        picks = sample_without_replacement(self.rng, len(self._population), k)
        best = min(picks, key=self._keys.__getitem__)  # first of equals, as before
        return self._population[best]["arch"]

    def _select(self) -> None:
        pool = self._population + self._offspring
        self._offspring = []
        losses = loss_matrix([p["metrics"] for p in pool], self.objectives)
        violations = np.array([self.constraints.violation(p["metrics"]) for p in pool])
        survivors: list[int] = []
        rank: list[int] = []
        crowding: list[float] = []
        for r, front in enumerate(non_dominated_sort(losses, violations)):
            dist = crowding_distance(losses[front])
            order = np.argsort(-dist, kind="stable")
            take = order[: self.population_size - len(survivors)]
            survivors.extend(int(front[i]) for i in take)
            rank.extend([r] * len(take))
            crowding.extend(float(dist[i]) for i in take)
            if len(survivors) >= self.population_size:
                break
        self._population = [pool[i] for i in survivors]
        self._rank = rank
        self._crowding = crowding
        self._set_keys()
        self.generation += 1

    def _set_keys(self) -> None:
        # Built once per generation rather than as a tuple per comparison in every tournament.
        self._keys = [(r, -c) for r, c in zip(self._rank, self._crowding)]

    @property
    def population(self) -> list[dict]:
        """Current survivors as ``{"arch", "metrics"}`` dicts."""
        return list(self._population)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "generation": self.generation,
            "population": self._population,
            "rank": self._rank,
            "crowding": [c if np.isfinite(c) else "inf" for c in self._crowding],
            "offspring": self._offspring,
            "pending": [arch for arch, _ in self._pending],
            "seen": sorted(self._seen),
        }

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.generation = int(state["generation"])
        self._population = [dict(p) for p in state["population"]]
        self._rank = list(state["rank"])
        self._crowding = [float(c) for c in state["crowding"]]
        self._set_keys()
        self._offspring = [dict(p) for p in state["offspring"]]
        self._pending = [(dict(a), arch_id(a)) for a in state["pending"]]
        self._seen = set(state["seen"])


def sample_without_replacement(rng: np.random.Generator, n: int, k: int) -> list[int]:
    """``k`` distinct indices below ``n`` in random order: Floyd's algorithm, then a Fisher-Yates shuffle.

    This is what ``rng.choice(n, size=k, replace=False)`` does for populations up to 10,000 (NumPy 1.17+), with
    the same draws, so it returns the same picks and seeded searches from before are unchanged (a test checks
    it), at half the cost: ``choice``'s argument handling was the largest single cost of a tournament. Above
    10,000 ``choice`` switches algorithm; these picks stay uniform, just not ``choice``'s."""
    picks: list[int] = []
    for j in range(n - k, n):
        value = int(rng.integers(j + 1))
        picks.append(j if value in picks else value)
    for i in range(k - 1, 0, -1):
        j = int(rng.integers(i + 1))
        picks[i], picks[j] = picks[j], picks[i]
    return picks


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
