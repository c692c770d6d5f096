"""The strategy interface: ask for architectures, tell their metrics, resume from a state dict."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from nas.arch import Arch, arch_id
from nas.errors import ConfigError
from nas.objectives import Constraints, Objective, loss_matrix, non_dominated_sort
from search_spaces.base import SearchSpace


class Strategy(abc.ABC):
    """Ask/tell search over a space.

    ``ask()`` proposes an architecture, ``tell(arch, metrics)`` reports its metrics (a dict holding a value
    for every objective). All randomness comes from one seeded generator whose state is part of
    :meth:`state_dict`, so a resumed search continues exactly as an uninterrupted one would.
    """

    name: str = ""

    def __init__(
        self,
        *,
        space: SearchSpace,
        objectives: Sequence[Objective],
        constraints: Constraints | None = None,
        seed: int = 0,
        budget: int | None = None,
    ) -> None:
        if not objectives:
            raise ConfigError("a strategy needs at least one objective")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        if budget is not None and (not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget < 1):
            raise ConfigError(f"budget.queries must be an integer >= 1, got {budget!r}")
        #: The number of queries the run will ask (None: not known); population-like settings left unset are
        #: sized to it (:meth:`sized_to_budget`).
        self.budget = None if budget is None else int(budget)
        self._settings: dict[str, dict] = {}  # option -> {"value", "source", "rule"} of each budget-sized option
        self._choice = {"requested": self.name, "reason": f"strategy={self.name} was requested"}
        self.space = space
        self.objectives = tuple(objectives)
        self.constraints = constraints or Constraints()
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    @abc.abstractmethod
    def ask(self) -> Arch:
        """The next architecture to evaluate."""

    @abc.abstractmethod
    def tell(self, arch: Mapping, metrics: Mapping[str, float]) -> None:
        """Report the metrics of an architecture returned by :meth:`ask`."""

    def ask_many(self, n: int) -> list[Arch]:
        """``n`` proposals at once (for batched evaluation, e.g. with a predictor)."""
        return [self.ask() for _ in range(n)]

    def ask_codes(self, n: int) -> np.ndarray:
        """:meth:`ask_many` as the space's integer codes (:meth:`SearchSpace.to_codes`), for a caller that scores
        whole batches (a predictor-scored search); a strategy that breeds on codes overrides it and never makes
        the arch dicts."""
        return self.space.to_codes(self.ask_many(n)).reshape(n, len(self.space.choices()))

    def tell_codes(self, codes: np.ndarray, metrics: Mapping[str, np.ndarray]) -> None:
        """:meth:`tell` for each row of ``codes`` (from :meth:`ask_codes`), ``metrics`` holding one array per
        metric, in row order."""
        columns = {name: np.asarray(values).tolist() for name, values in metrics.items()}
        for i, arch in enumerate(self.space.from_codes(codes)):
            self.tell(arch, {name: values[i] for name, values in columns.items()})

    # ------------------------------------------------------------------ settings sized to the budget
    def sized_to_budget(self, option: str, value: int | None, *, share: float, low: int, high: int,
                        fallback: int) -> int:
        """``value`` when the user gave one; else ``share`` of the budget (rounded) kept within ``[low, high]``;
        else, with no budget known, ``fallback``. Records which, for :meth:`resolution`."""
        if value is not None:
            resolved, source, rule = value, "given", f"strategy.{option}={value} was set"
        elif self.budget is None:
            resolved, source, rule = fallback, "default", f"no budget known: the fixed default {fallback}"
        else:
            resolved = int(min(max(round(share * self.budget), low), high))
            source, rule = "budget", f"{share:g} x budget.queries={self.budget}, kept within [{low}, {high}]"
        self.record_setting(option, resolved, source=source, rule=rule)
        return resolved

    def record_setting(self, option: str, value: int, *, source: str, rule: str) -> None:
        """Record a population-like option's resolved value, its ``source`` (given, budget, default) and rule."""
        self._settings[option] = {"value": value, "source": source, "rule": rule}

    def settings(self) -> dict[str, dict]:
        """Each budget-sized option's resolved value, and whether it was given, sized to the budget or defaulted."""
        return {option: dict(entry) for option, entry in self._settings.items()}

    def record_choice(self, *, requested: str, reason: str) -> None:
        """Note that this strategy was picked for ``strategy=requested`` (e.g. ``auto``), and why."""
        self._choice = {"requested": requested, "reason": reason}

    def resolution(self) -> dict:
        """What the run resolved: the strategy requested and the one running, why, the budget it was sized to
        and its budget-sized settings (``results.json`` keeps this as ``strategy_resolved``)."""
        return {**self._choice, "name": self.name, "budget": self.budget, "settings": self.settings()}

    def state_dict(self) -> dict:
        """JSON-serialisable state; subclasses extend it with their own fields."""
        return {"name": self.name, "seed": self.seed, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("name") != self.name:
            raise ConfigError(f"state was saved by strategy {state.get('name')!r}, cannot load into {self.name!r}")
        self.seed = int(state["seed"])
        self.rng.bit_generator.state = state["rng"]

    def _check_metrics(self, metrics: Mapping[str, float]) -> None:
        missing = [o.name for o in self.objectives if o.name not in metrics]
        if missing:
            raise ValueError(f"metrics {dict(metrics)} lack objective values for {missing}")


def preference_order(strategy: Strategy, metrics: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Indices of ``metrics`` from best to worst for ``strategy``'s objectives and constraints.

    Constrained domination first (feasible before infeasible, infeasible by violation), then the
    non-domination rank, then, inside a rank, the first objective (e.g. accuracy). With one objective this is
    simply feasible-best-first.
    """
    if not metrics:
        return np.zeros(0, dtype=int)
    losses = loss_matrix(metrics, strategy.objectives)
    violations = np.array([strategy.constraints.violation(m) for m in metrics])
    if losses.shape[1] == 1:
        # One objective: the fronts of constrained domination are the feasible archs by loss, then the infeasible
        # ones by violation, so a sort gives the same order (ties by loss, then position) as the O(n^2) sort
        # below, which made guided's asks quadratic in the history (50 s for 1,000 NB201 queries).
        infeasible = violations > 0
        return np.lexsort((losses[:, 0], np.where(infeasible, violations, 0.0), infeasible))
    rank = np.empty(len(metrics), dtype=int)
    for r, front in enumerate(non_dominated_sort(losses, violations)):
        rank[front] = r
    return np.lexsort((losses[:, 0], rank))


def draw_unseen(propose: Callable[[], Arch], seen: set[str], *, tries: int = 20) -> Arch:
    """``propose()`` until it gives an arch whose id is not in ``seen`` (the last try is kept regardless, so a
    nearly exhausted space still yields); the arch's id is added to ``seen``."""
    for _ in range(tries):
        arch = propose()
        key = arch_id(arch)
        if key not in seen:
            break
    seen.add(key)
    return arch
