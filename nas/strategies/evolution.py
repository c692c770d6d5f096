"""Evolutionary search: NSGA-II-style selection with constraint domination.

With two objectives (accuracy up, latency down) the population converges to a Pareto front; with one it
is a plain elitist evolution. A latency budget is honoured by Deb's constraint-domination rule: feasible
archs beat infeasible ones, infeasible ones compete on how far they exceed the budget.

The search is generational but exposed through ask/tell: ``ask`` hands out the pending offspring of the
current generation; once ``population_size`` results are in, survivors are selected from parents plus
offspring and the next generation is bred. Archs already evaluated are not proposed again (a duplicate
would waste a measurement), except when the space is nearly exhausted.

A predictor-scored search asks and tells whole generations as integer codes (``ask_codes`` / ``tell_codes``):
tournaments, crossover, mutation, de-duplication and selection then run as array operations on the codes,
with the space's batch operators (``SearchSpace.sample_codes`` and its kin), and no arch dict or id is made
inside the loop.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

import numpy as np

from nas.arch import Arch
from nas.errors import ConfigError
from nas.objectives import crowding_distance, loss_columns, non_dominated_sort
from nas.registry import register_strategy
from nas.strategies.base import Strategy


@register_strategy("evolution")
class EvolutionStrategy(Strategy):
    name = "evolution"

    def __init__(
        self,
        *,
        population_size: int | None = None,
        crossover_prob: float = 0.5,
        mutation_rate: float | None = None,
        tournament_size: int = 2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if population_size is not None and population_size < 2:
            raise ConfigError(f"strategy.population_size must be at least 2, got {population_size}")
        # Unset: a tenth of the budget (10 to 100), so a short search still gets about ten generations; a fixed
        # 100 was most of a 150-query budget and searched no better than random (issue 8).
        population_size = self.sized_to_budget("population_size", population_size, share=0.1, low=10, high=100,
                                               fallback=100)
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
        # Everything is kept as integer codes (SearchSpace.to_codes: one column per choice, the option index) and
        # metric arrays: breeding, de-duplication and selection of a generation are a few array operations, and
        # an arch becomes a dict (and gets its id) only when it leaves the strategy through ask().
        self._width = len(self.space.choices())
        # The metrics selection reads: the objectives, and the latency when a budget constrains it.
        needs_latency = self.constraints.latency_ms is not None and "latency_ms" not in self._objective_names
        self._metric_names = self._objective_names + (("latency_ms",) if needs_latency else ())
        self._population = self._no_codes(), np.zeros((0, len(self._metric_names)))  # survivors
        self._offspring: list[tuple[np.ndarray, np.ndarray]] = []  # told, not yet merged (chunks)
        self._n_offspring = 0
        self._pending = self._no_codes()  # bred, not yet asked
        counts = self.space.option_counts()
        self._key_dtype = np.dtype(np.uint8 if counts.max(initial=1) <= 256 else np.uint16 if counts.max() <= 65536
                                   else np.int64)
        self._seen: set[bytes] = set()  # row keys (_row_keys) of every arch bred
        self._rank = np.zeros(0, dtype=np.intp)  # non-domination rank of each survivor (for tournaments)
        self._crowding = np.zeros(0)
        self._tournament_key = np.zeros(0, dtype=np.intp)  # tournament order of each survivor: rank, then crowding

    @property
    def _objective_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objectives)

    def _no_codes(self) -> np.ndarray:
        return np.zeros((0, self._width), dtype=np.intp)

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Arch:
        return self.space.from_codes(self.ask_codes(1))[0]

    def ask_many(self, n: int) -> list[Arch]:
        return self.space.from_codes(self.ask_codes(n))

    def ask_codes(self, n: int) -> np.ndarray:
        parts = []
        while n > 0:
            if not len(self._pending):
                self._pending = self._breed(self.population_size)
            parts.append(self._pending[:n])
            self._pending = self._pending[n:]
            n -= len(parts[-1])
        if not parts:
            return self._no_codes()
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def tell(self, arch: Mapping, metrics: Mapping[str, float]) -> None:
        self._check_metrics(metrics)
        row = [float(metrics[k]) if k in metrics and _is_number(metrics[k]) else np.nan for k in self._metric_names]
        self._add_offspring(self.space.to_codes([arch]), np.array([row], dtype=np.float64))

    def tell_codes(self, codes: np.ndarray, metrics: Mapping[str, np.ndarray]) -> None:
        self._check_metrics(metrics)
        n = len(codes)
        values = np.empty((n, len(self._metric_names)))
        for c, name in enumerate(self._metric_names):
            values[:, c] = np.asarray(metrics[name], dtype=np.float64) if name in metrics else np.nan
        self._add_offspring(np.array(codes, dtype=np.intp, copy=True), values)  # kept: not the caller's array

    def _add_offspring(self, codes: np.ndarray, values: np.ndarray) -> None:
        # A generation closes after exactly population_size results, however they are told (one by one or in
        # batches of any size), so a batched run selects the same survivors as one told arch by arch.
        start = 0
        while start < len(codes):
            take = min(len(codes) - start, self.population_size - self._n_offspring)
            self._offspring.append((codes[start : start + take], values[start : start + take]))
            self._n_offspring += take
            start += take
            if self._n_offspring >= self.population_size:
                self._select()

    # ------------------------------------------------------------------ internals
    def _breed(self, n: int) -> np.ndarray:
        """``n`` children not bred before, in breeding order. About a tenth of the children repeat an arch bred
        before, so each round breeds a few spares; a child slot is retried for up to 20 rounds, and the last
        round keeps what it breeds regardless, so a nearly exhausted space still yields."""
        parts: list[np.ndarray] = []
        need = n
        for attempt in range(20):
            final = attempt == 19
            fresh = self._children(need if final else need + need // 4 + 2)
            parts.append(fresh[self._claim(_row_keys(fresh, self._key_dtype), need, final=final)])
            need -= len(parts[-1])
            if not need:
                break
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _claim(self, keys: list[bytes], need: int, *, final: bool) -> list[int]:
        """Positions of the first ``need`` keys not seen before (nor earlier in ``keys``), marked seen; with
        ``final``, the first ``need`` regardless."""
        seen, add = self._seen, self._seen.add
        picked: list[int] = []
        for i, key in enumerate(keys):
            if final or key not in seen:
                add(key)
                picked.append(i)
                if len(picked) == need:
                    break
        return picked

    def _children(self, n: int) -> np.ndarray:
        population = self._population[0]
        if not len(population):
            return self.space.sample_codes(self.rng, n)
        winners = self._tournament(2 * n)  # a parent for each child, and a mate for those that cross over
        child = population[winners[:n]]
        cross = self.rng.random(n) < self.crossover_prob
        if cross.any():
            child[cross] = self.space.crossover_codes(child[cross], population[winners[n:][cross]], self.rng)
        # Crossover alone often reproduces a parent: a crossed child is also mutated half the time.
        mutate = ~cross | (self.rng.random(n) < 0.5)
        if mutate.any():
            child[mutate] = self.space.mutate_codes(child[mutate], self.rng, rate=self.mutation_rate)
        return child

    def _tournament(self, n: int) -> np.ndarray:
        """``n`` tournaments of ``tournament_size`` distinct survivors; each winner is the best by rank, then
        crowding (the first of equals)."""
        size = len(self._population[0])
        picks = distinct_picks(self.rng, n, size, min(self.tournament_size, size))
        best = np.argmin(self._tournament_key[picks], axis=1)
        return picks[np.arange(n), best]

    def _select(self) -> None:
        codes = np.concatenate([self._population[0], *(c for c, _ in self._offspring)])
        values = np.concatenate([self._population[1], *(v for _, v in self._offspring)])
        self._offspring, self._n_offspring = [], 0
        losses = loss_columns(values[:, : len(self.objectives)], self.objectives)
        latency = values[:, self._metric_names.index("latency_ms")] if "latency_ms" in self._metric_names else None
        violations = self.constraints.violations(latency, len(values))
        survivors: list[np.ndarray] = []
        rank: list[np.ndarray] = []
        crowding: list[np.ndarray] = []
        kept = 0
        for r, front in enumerate(non_dominated_sort(losses, violations, limit=self.population_size)):
            dist = crowding_distance(losses[front])
            take = np.argsort(-dist, kind="stable")[: self.population_size - kept]
            survivors.append(front[take])
            rank.append(np.full(len(take), r, dtype=np.intp))
            crowding.append(dist[take])
            kept += len(take)
            if kept >= self.population_size:
                break
        chosen = np.concatenate(survivors)
        self._population = codes[chosen], values[chosen]
        self._rank, self._crowding = np.concatenate(rank), np.concatenate(crowding)
        self._set_keys()
        self.generation += 1

    def _set_keys(self) -> None:
        # One integer per survivor that orders as (rank, -crowding) does, equal for equal pairs, so a tournament
        # is an argmin over its picks.
        rank, negative = self._rank, -self._crowding
        order = np.lexsort((negative, rank))
        new = np.ones(len(order), dtype=bool)
        new[1:] = (rank[order][1:] != rank[order][:-1]) | (negative[order][1:] != negative[order][:-1])
        self._tournament_key = np.empty(len(order), dtype=np.intp)
        self._tournament_key[order] = np.cumsum(new) - 1

    @property
    def population(self) -> list[dict]:
        """Current survivors as ``{"arch", "metrics"}`` dicts."""
        return self._as_records(*self._population)

    def _as_records(self, codes: np.ndarray, values: np.ndarray) -> list[dict]:
        return [{"arch": arch, "metrics": {k: float(v) for k, v in zip(self._metric_names, row) if not np.isnan(v)}}
                for arch, row in zip(self.space.from_codes(codes), values.tolist())]

    def _from_records(self, records) -> tuple[np.ndarray, np.ndarray]:
        codes = self.space.to_codes([r["arch"] for r in records]).reshape(len(records), self._width)
        values = np.array([[float(r["metrics"].get(k, np.nan)) for k in self._metric_names] for r in records],
                          dtype=np.float64).reshape(len(records), len(self._metric_names))
        return codes, values

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        offspring = (np.concatenate([c for c, _ in self._offspring]) if self._offspring else self._no_codes(),
                     np.concatenate([v for _, v in self._offspring]) if self._offspring
                     else np.zeros((0, len(self._metric_names))))
        seen = b"".join(sorted(self._seen))
        return {
            **super().state_dict(),
            "generation": self.generation,
            "population": self._as_records(*self._population),
            "rank": self._rank.tolist(),
            "crowding": [c if np.isfinite(c) else "inf" for c in self._crowding.tolist()],
            "offspring": self._as_records(*offspring),
            "pending": self.space.from_codes(self._pending),
            # Every arch bred, as rows of option indices (base64 of the key bytes): a resumed search must not
            # breed them again.
            "seen": {"dtype": self._key_dtype.str, "labels": self._width, "rows": len(self._seen),
                     "codes": base64.b64encode(seen).decode("ascii")},
        }

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.generation = int(state["generation"])
        self._population = self._from_records(state["population"])
        self._rank = np.array(state["rank"], dtype=np.intp)
        self._crowding = np.array([float(c) for c in state["crowding"]], dtype=np.float64)
        self._set_keys()
        offspring = self._from_records(state["offspring"])
        self._offspring, self._n_offspring = ([offspring], len(offspring[0])) if len(offspring[0]) else ([], 0)
        self._pending = self.space.to_codes(state["pending"]).reshape(len(state["pending"]), self._width)
        seen = state["seen"]
        if np.dtype(seen["dtype"]) != self._key_dtype or int(seen["labels"]) != self._width:
            raise ConfigError(f"evolution state was saved for a space with {seen['labels']} labels "
                              f"({seen['dtype']} codes); this space has {self._width} ({self._key_dtype.str})")
        data = base64.b64decode(seen["codes"])
        size = self._width * self._key_dtype.itemsize
        self._seen = {data[i : i + size] for i in range(0, len(data), size)}


def distinct_picks(rng: np.random.Generator, n: int, size: int, k: int) -> np.ndarray:
    """``(n, k)`` indices below ``size``, distinct within each row, each row a uniform draw without replacement.

    Draw j picks uniformly among the ``size - j`` indices not yet in its row: the r-th of them is r moved past
    the row's earlier picks (in increasing order)."""
    picks = np.empty((n, k), dtype=np.intp)
    for j in range(k):
        r = rng.integers(0, size - j, size=n)
        for earlier in np.sort(picks[:, :j], axis=1).T:
            r += r >= earlier
        picks[:, j] = r
    return picks


def _row_keys(codes: np.ndarray, dtype: np.dtype) -> list[bytes]:
    """One hashable key per row of ``codes`` (its bytes in ``dtype``), for de-duplication."""
    rows = np.ascontiguousarray(codes, dtype=dtype)
    return rows.view(np.dtype((np.void, rows.shape[1] * dtype.itemsize))).ravel().tolist()


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
