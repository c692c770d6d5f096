"""Optuna's samplers (TPE, NSGA-II) as baselines behind the same ask/tell interface.

Each label becomes a categorical parameter; a latency budget becomes an Optuna constraint (violation <= 0
is feasible), which both samplers honour. Optuna studies are not JSON-serialisable, so the state dict holds
the ask/tell log instead: loading it rebuilds the study with the same seed and replays the log, which puts
the sampler in exactly the state it had (its proposals depend only on the seed and the history).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from nas.arch import Arch, arch_id
from nas.errors import ConfigError
from nas.registry import register_strategy
from nas.strategies.base import Strategy

_VIOLATION = "hwnas_violation"


class OptunaStrategy(Strategy):
    """Base: subclasses say which sampler to build in :meth:`make_sampler`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._log: list[dict] = []  # {"ask": arch_id} or {"tell": arch_id, "metrics": {...}}
        self._new_study()

    def make_sampler(self, constraints_func):  # pragma: no cover - interface
        raise NotImplementedError

    def _new_study(self) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        constraints_func = (lambda trial: [trial.user_attrs.get(_VIOLATION, 0.0)]) if self.constraints.latency_ms else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna flags constraints_func as experimental
            sampler = self.make_sampler(constraints_func)
        directions = ["maximize" if o.direction == "max" else "minimize" for o in self.objectives]
        self._study = optuna.create_study(directions=directions, sampler=sampler)
        self._distributions = {label: CategoricalDistribution(list(options)) for label, options in self.space.choices().items()}
        self._open: dict[str, list] = {}  # arch id -> Optuna trials asked and not yet told

    def ask(self) -> Arch:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self._study.ask(self._distributions)
        arch = self.space.canonical(dict(trial.params))
        key = arch_id(arch)
        self._open.setdefault(key, []).append(trial)
        self._log.append({"ask": key})
        return arch

    def tell(self, arch: Mapping, metrics: Mapping[str, float]) -> None:
        self._check_metrics(metrics)
        key = arch_id(self.space.canonical(dict(arch)))
        trials = self._open.get(key)
        if not trials:
            raise ValueError(f"tell() for an arch this strategy did not ask for (or already told): {dict(arch)}")
        trial = trials.pop(0)
        trial.set_user_attr(_VIOLATION, self.constraints.violation(metrics))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._study.tell(trial, [float(metrics[o.name]) for o in self.objectives])
        self._log.append({"tell": key, "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}})

    def state_dict(self) -> dict:
        return {**super().state_dict(), "log": self._log}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self._log = []
        self._new_study()
        asked: dict[str, Arch] = {}
        for event in state["log"]:
            if "ask" in event:
                arch = self.ask()
                asked[arch_id(arch)] = arch
                if arch_id(arch) != event["ask"]:
                    raise ConfigError("cannot resume the Optuna strategy: the replayed sampler proposed a different "
                                      "arch (was the state saved with another seed, space or Optuna version?)")
            else:
                self.tell(asked[event["tell"]], event["metrics"])


@register_strategy("optuna_tpe")
class OptunaTPE(OptunaStrategy):
    """Optuna's TPE sampler (multivariate; MOTPE for two objectives)."""

    name = "optuna_tpe"

    def __init__(self, *, n_startup_trials: int | None = None, **kwargs) -> None:
        if n_startup_trials is not None and (not isinstance(n_startup_trials, int) or n_startup_trials < 1):
            raise ConfigError(f"strategy.n_startup_trials must be a positive integer, got {n_startup_trials!r}")
        self._startup = n_startup_trials
        super().__init__(**kwargs)

    def make_sampler(self, constraints_func):
        import optuna

        # Unset: a tenth of the budget (10 to 100) of random trials before TPE models the rest (Optuna's fixed 10
        # is this rule at 100 queries). Sized here, where the base constructor has set the budget.
        self.n_startup_trials = self.sized_to_budget("n_startup_trials", self._startup, share=0.1, low=10,
                                                     high=100, fallback=10)
        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.n_startup_trials, multivariate=True,
                                          constraints_func=constraints_func)



@register_strategy("optuna_nsga2")
class OptunaNSGA2(OptunaStrategy):
    """Optuna's NSGA-II sampler."""

    name = "optuna_nsga2"

    def __init__(self, *, population_size: int | None = None, **kwargs) -> None:
        if population_size is not None and (not isinstance(population_size, int) or population_size < 2):
            raise ConfigError(f"strategy.population_size must be an integer >= 2, got {population_size!r}")
        self._population = population_size
        super().__init__(**kwargs)

    def make_sampler(self, constraints_func):
        import optuna

        # Unset: a tenth of the budget (10 to 100), about ten generations, as for the evolution strategy.
        self.population_size = self.sized_to_budget("population_size", self._population, share=0.1, low=10,
                                                    high=100, fallback=20)

        return optuna.samplers.NSGAIISampler(seed=self.seed, population_size=self.population_size,
                                             constraints_func=constraints_func)
