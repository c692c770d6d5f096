"""Name -> implementation registries for spaces, strategies, predictors, targets, compression steps and engines.

The registry names are the Hydra config group option names: ``+space=ofa`` composes ``conf/space/ofa.yaml``
whose ``name: ofa`` is looked up in :data:`SPACES`. Implementations register with a decorator in the module
that defines them; :func:`load_builtins` imports those modules (registration happens on first lookup, not
as a side effect of importing :mod:`nas`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from nas.errors import ConfigError

T = TypeVar("T")

# Modules whose import registers the built-in implementations, per registry kind.
_BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "space": ("search_spaces.ofa", "search_spaces.nb201", "search_spaces.fbnet", "search_spaces.mobilenet",
              "search_spaces.shufflenet", "search_spaces.ghostnet", "search_spaces.blockmix",
              "search_spaces.darts", "search_spaces.channels"),
    "strategy": ("nas.strategies.evolution", "nas.strategies.random_search", "nas.strategies.regularized_evolution",
                 "nas.strategies.guided", "nas.strategies.reinforce", "nas.strategies.optuna_samplers",
                 "nas.strategies.auto", "nas.strategies.darts", "nas.channels.strategies"),
    "predictor": ("predictors.ridge", "predictors.mlp", "predictors.gbdt", "predictors.lut",
                  "predictors.kernels", "predictors.baselines", "predictors.transfer"),
    "target": ("nas.hardware.targets", "nas.hardware.arm_cpu", "nas.hardware.gpu"),
    "compression step": ("nas.compress.steps",),
    "engine": ("nas.hardware.engines.onnxruntime", "nas.hardware.engines.openvino", "nas.hardware.engines.ncnn",
               "nas.hardware.engines.mnn"),
}


class Registry(Generic[T]):
    """A named collection of factories of one kind (``space``, ``strategy`` ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered by {existing!r}")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        load_builtins(self.kind)
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names()) or '(none registered)'}"
            ) from None

    def names(self) -> list[str]:
        load_builtins(self.kind)
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self.names()


SPACES: Registry = Registry("space")
STRATEGIES: Registry = Registry("strategy")
PREDICTORS: Registry = Registry("predictor")
TARGETS: Registry = Registry("target")
#: ``nas.compress`` steps (``steps=[prune,distill,quantize]``), by the name the config uses.
STEPS: Registry = Registry("compression step")
#: Inference engines (``target.runtime=openvino``), by the name the config uses.
ENGINES: Registry = Registry("engine")

register_space = SPACES.register
register_strategy = STRATEGIES.register
register_predictor = PREDICTORS.register
register_target = TARGETS.register
register_step = STEPS.register
register_engine = ENGINES.register


def list_spaces() -> list[str]:
    return SPACES.names()


def list_strategies() -> list[str]:
    return STRATEGIES.names()


def list_predictors() -> list[str]:
    return PREDICTORS.names()


def list_targets() -> list[str]:
    return TARGETS.names()


def load_builtins(kind: str) -> None:
    for module in _BUILTIN_MODULES.get(kind, ()):
        importlib.import_module(module)
