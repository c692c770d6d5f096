"""The strategy interface: ask for architectures, tell their metrics, resume from a state dict."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import numpy as np

from nas.arch import Arch
from nas.errors import ConfigError
from nas.objectives import Constraints, Objective
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
    ) -> None:
        if not objectives:
            raise ConfigError("a strategy needs at least one objective")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
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
