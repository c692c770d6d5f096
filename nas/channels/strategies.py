"""``strategy=autoslim`` and ``strategy=amc``: the channel-search family (``+space=channels`` only).

Unlike the ask/tell strategies (which score batches of archs by predictors, :func:`nas.pipeline.run_strategy`),
these two drive their own loop over a real accuracy evaluator (``evaluator=slimmable`` / ``pruned``, one query
per configuration, :class:`~nas.channels.evaluators.MaskedEvaluator`) and the target's latency model, and
return the candidates the run re-measures on the target before it chooses (:mod:`nas.channels.run`):

- ``autoslim`` (Yu & Huang 2019): greedy slimming from the full width (:func:`nas.channels.greedy.greedy_slim`).
  The slimming goes on ``margin`` below the budget, and the configurations of its path whose *predicted*
  latency lies within ``margin`` of the budget are the candidates: the measured value decides, so a latency
  model that is a few percent off still lands the choice under the budget. ``budgets`` adds more budgets
  (fractions of the base network's latency) whose configurations the same search records.
- ``amc`` (He et al. 2018, resource-constrained mode): a DDPG agent prunes the groups in order, one keep
  ratio each, its actions clipped so every episode meets the budget (:mod:`nas.channels.amc_agent`); the
  reward is the evaluator's validation accuracy. The ``top`` episodes by reward are the candidates.

Both are registered strategies with a ``channel_search`` flag (the run dispatches on it); their natural
evaluator (``natural_evaluator``) is used when the run's evaluator is the generic ``supernet`` default.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nas.arch import Arch, arch_id
from nas.channels.greedy import greedy_slim
from nas.errors import ConfigError
from nas.objectives import Constraints, Objective
from nas.registry import register_strategy
from search_spaces.base import SearchSpace
from search_spaces.options import number_list, positive_int

AccuracyFn = Callable[[Arch], float]
LatencyFn = Callable[[Arch], float]


@dataclass
class ChannelOutcome:
    """What a channel strategy hands to the run: candidates (``arch``, ``accuracy`` on val, ``latency_ms``
    predicted), the search trace for ``results.json`` and the plot, and the time it took."""

    candidates: list[dict]
    trace: list[dict]
    seconds: float
    cpu_seconds: float
    queries: int
    extra: dict = field(default_factory=dict)


def _channel_space(space: SearchSpace, strategy: str):
    from search_spaces.channels import ChannelSpace

    if not isinstance(space, ChannelSpace):
        raise ConfigError(f"strategy={strategy} searches channel widths and needs +space=channels (a base network's "
                          f"prunable channel groups); space {space.name!r} has no continuous channel widths. Use "
                          f"+space=channels space.base=..., or a strategy for {space.name} (strategy=auto)")
    return space


def _fraction(strategy: str, name: str, value: object, *, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < float(value) < high:
        raise ConfigError(f"strategy {strategy}: {name} must be a number in ({low:g}, {high:g}), got {value!r}")
    return float(value)


class _ChannelStrategy:
    """The constructor contract of every strategy (``space, objectives, constraints, seed, budget``)."""

    name = ""
    #: Searches the channels space with its own loop (see the module docstring), not through ask/tell.
    channel_search = True
    natural_evaluator = "pruned"

    def __init__(self, *, space: SearchSpace, objectives: Sequence[Objective], constraints: Constraints | None,
                 seed: int, budget: int | None) -> None:
        self.space = _channel_space(space, self.name)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self.objectives, self.constraints = tuple(objectives), constraints or Constraints()
        self.seed, self.queries = int(seed), budget  # budget.queries does not apply: the loop sets its own
        self._settings: dict[str, object] = {}

    def resolution(self) -> dict:
        return {"requested": self.name, "chosen": self.name, "reason": f"strategy={self.name} was requested",
                "settings": dict(self._settings)}

    def state_dict(self) -> dict:
        return {"name": self.name, "seed": self.seed, "settings": dict(self._settings)}


@register_strategy("autoslim")
class AutoSlimStrategy(_ChannelStrategy):
    """Greedy slimming (see the module docstring)."""

    name = "autoslim"
    natural_evaluator = "slimmable"

    def __init__(self, *, space: SearchSpace, objectives: Sequence[Objective], constraints: Constraints | None = None,
                 seed: int = 0, budget: int | None = None, refresh: int = 16, margin: float = 0.1,
                 budgets: Sequence[float] | None = None, measure: int = 12) -> None:
        super().__init__(space=space, objectives=objectives, constraints=constraints, seed=seed, budget=budget)
        self.refresh = positive_int(f"strategy {self.name}", "refresh", refresh)
        self.margin = _fraction(self.name, "margin", margin, high=0.5)
        self.measure = positive_int(f"strategy {self.name}", "measure", measure)
        self.budgets = () if budgets is None else tuple(
            _fraction(self.name, "budgets", b, high=1.0 + 1e-9) for b in number_list(self.name, "budgets", budgets,
                                                                                   integer=False))
        self._settings = {"refresh": self.refresh, "margin": self.margin, "budgets": list(self.budgets),
                          "measure": self.measure}

    def search(self, *, accuracy: AccuracyFn, latency: LatencyFn, budget_ms: float, base_ms: float,
               progress: bool = True) -> ChannelOutcome:
        """Slim to ``(1 - margin) x budget_ms`` (and every ``budgets`` fraction of ``base_ms``) in one search."""
        from tqdm import tqdm

        space = self.space
        options = {label: tuple(sorted(opts)) for label, opts in space.choices().items()}
        extra_ms = [b * base_ms for b in self.budgets]
        # The run maps the latency model onto its own measurements of the base and the narrowest network, so
        # the floor is the measured one; should a model still put it above the budget, slimming stops there.
        floor = latency(space.smallest())
        goals = sorted({max(g, floor) for g in (budget_ms, budget_ms * (1 - self.margin), *extra_ms)}, reverse=True)
        queries: set[str] = set()

        def counted(arch: Arch) -> float:
            queries.add(arch_id(arch))
            return accuracy(arch)

        started, cpu = time.time(), time.process_time()
        with tqdm(desc=f"autoslim (greedy slimming to {goals[-1]:.3g} ms, predicted)", unit="shrink",
                  disable=not progress) as bar:
            def shown(step) -> None:
                bar.update(1)
                bar.set_postfix(acc=f"{step.accuracy:.3f}", ms=f"{step.latency_ms:.3g}")

            found, steps = greedy_slim(options=options, start=space.largest(), budgets_ms=goals, accuracy=counted,
                                       latency=latency, refresh=self.refresh, progress=shown if progress else None)
        trace = [{"round": s.round, "group": s.label, "width": s.width, "accuracy": s.accuracy,
                  "latency_ms": s.latency_ms} for s in steps]
        # The path's configurations are replayed from the shrinks: arch after step i.
        path: list[Arch] = []
        arch = dict(space.largest())
        for s in steps:
            arch = {**arch, s.label: s.width}
            path.append(dict(arch))
        # Candidates: the path's configurations from where it enters the band (predicted within margin above
        # the budget) to its end, at most `measure` of them evenly spread; the measured latency decides.
        full = dict(space.largest())
        configs = [(full, {"accuracy": accuracy(full), "latency_ms": latency(full)})] + list(zip(path, trace))
        near = [(a, t) for a, t in configs if t["latency_ms"] <= budget_ms * (1 + self.margin)] or configs[-1:]
        if len(near) > self.measure:
            near = [near[int(i)] for i in np.unique(np.linspace(0, len(near) - 1, self.measure).round())]
        candidates = [{"arch": a, "accuracy": t["accuracy"], "latency_ms": t["latency_ms"]} for a, t in near]
        budgets = {f"{b:g}": {"budget_ms": b * base_ms, "arch": found[max(b * base_ms, floor)]} for b in self.budgets}
        return ChannelOutcome(candidates=candidates, trace=trace, seconds=time.time() - started,
                              cpu_seconds=time.process_time() - cpu, queries=len(queries),
                              extra={"budgets": budgets, "shrinks": len(steps)})


@register_strategy("amc")
class AMCStrategy(_ChannelStrategy):
    """DDPG channel pruning under a latency budget (see the module docstring)."""

    name = "amc"
    natural_evaluator = "pruned"

    def __init__(self, *, space: SearchSpace, objectives: Sequence[Objective], constraints: Constraints | None = None,
                 seed: int = 0, budget: int | None = None, episodes: int = 200, warmup: int = 50,
                 noise_sigma: float = 0.5, noise_decay: float = 0.95, hidden: int = 300, batch_size: int = 64,
                 lr_actor: float = 1e-4, lr_critic: float = 1e-3, tau: float = 0.01, top: int = 12) -> None:
        super().__init__(space=space, objectives=objectives, constraints=constraints, seed=seed, budget=budget)
        try:
            from nas.channels.amc_agent import AMCConfig
        except ImportError as exc:
            raise ConfigError(f"strategy=amc needs Stable-Baselines3 and Gymnasium ({exc.name} is not installed): "
                              f"pip install 'hwnas[rl]'") from None
        try:
            self.config = AMCConfig(episodes=episodes, warmup=warmup, noise_sigma=noise_sigma,
                                    noise_decay=noise_decay, hidden=hidden, batch_size=batch_size,
                                    lr_actor=lr_actor, lr_critic=lr_critic, tau=tau)
        except ValueError as exc:
            raise ConfigError(f"strategy {self.name}: {str(exc).replace('AMCConfig.', '')}") from None
        if warmup >= episodes:
            raise ConfigError(f"strategy {self.name}: warmup={warmup} must be below episodes={episodes} (the "
                              f"agent learns only after the warm-up's random episodes)")
        self.top = positive_int(f"strategy {self.name}", "top", top)
        self._settings = {"episodes": episodes, "warmup": warmup, "noise_sigma": noise_sigma,
                          "noise_decay": noise_decay, "top": self.top}

    def layer_features(self) -> np.ndarray:
        """AMC's static layer embedding, per searchable group: its width, the MACs, kernel size, stride and
        output side of the kernels that produce it, and the MACs of those that consume it."""
        kernels, links = self.space.linked_kernels
        rows = []
        for label in self.space.choices():
            produce = [k for k, link in zip(kernels, links) if link.get("out") == label]
            consume = [k for k, link in zip(kernels, links) if link.get("in") == label and link.get("out") != label]
            channels = self.space.groups[int(label[1:])].channels
            rows.append([channels, np.log1p(sum(k.flops for k in produce)), max((k.kernel for k in produce), default=1),
                         max((k.stride for k in produce), default=1), min((k.hw_out for k in produce), default=1),
                         np.log1p(sum(k.flops for k in consume))])
        return np.asarray(rows, dtype=np.float64)

    def arch_of(self, keeps: Sequence[float]) -> Arch:
        """The configuration of one keep ratio per searchable group (nearest option, as ``uniform`` rounds)."""
        from search_spaces.channels import kept_width

        out = {}
        for (label, opts), keep in zip(self.space.choices().items(), keeps):
            width = kept_width(self.space.groups[int(label[1:])].channels, keep, self.space.divisor)
            out[label] = min(opts, key=lambda w: (abs(w - width), w))
        return out

    def search(self, *, accuracy: AccuracyFn, latency: LatencyFn, budget_ms: float, base_ms: float,
               progress: bool = True) -> ChannelOutcome:
        from nas.channels.amc_agent import AMCAgent, PruningEnv

        cost_cache: dict[tuple, float] = {}

        def cost(keeps: tuple) -> float:
            if keeps not in cost_cache:
                cost_cache[keeps] = float(latency(self.arch_of(keeps)))
            return cost_cache[keeps]

        try:
            env = PruningEnv(layer_features=self.layer_features(), ratios=self.space.ratios,
                             reward_fn=lambda keeps: float(accuracy(self.arch_of(keeps))), cost_fn=cost,
                             budget=budget_ms)
        except ValueError as exc:
            raise ConfigError(f"strategy=amc: {exc}") from None
        started, cpu = time.time(), time.process_time()
        agent = AMCAgent(env, config=self.config, seed=self.seed, progress=progress)
        episodes = agent.run()
        trace = [{"episode": e["episode"], "reward": e["reward"], "latency_ms": e["cost"],
                  "keep_ratio": float(np.mean(e["keeps"]))} for e in episodes]
        ranked: dict[str, dict] = {}
        for e in sorted(episodes, key=lambda e: -e["reward"]):
            arch = self.arch_of(e["keeps"])
            ranked.setdefault(arch_id(arch), {"arch": arch, "accuracy": e["reward"], "latency_ms": e["cost"],
                                              "episode": e["episode"]})
            if len(ranked) >= self.top:
                break
        return ChannelOutcome(candidates=list(ranked.values()), trace=trace, seconds=time.time() - started,
                              cpu_seconds=time.process_time() - cpu, queries=len(episodes),
                              extra={"best_episode": agent.best()["episode"]})


def is_channel_strategy(factory: object) -> bool:
    """Whether a registered strategy belongs to the channel-search family (``channel_search``)."""
    return bool(getattr(factory, "channel_search", False))


def natural_evaluator(factory: object, requested: str, *, default: str = "pruned") -> str:
    """The channels evaluator of a run: the requested one, or the strategy's own for the ``supernet`` default."""
    if requested != "supernet":
        return requested
    return str(getattr(factory, "natural_evaluator", default))
