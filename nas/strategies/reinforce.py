"""REINFORCE controller (Williams, 1992; as in Zoph & Le's NAS and the NAS-Bench-201 baseline): a policy of
independent categorical distributions, one per choice label, trained by policy gradient.

Reward: the accuracy, standardised by running statistics (so the learning rate does not depend on whether a
table holds fractions or percent); a latency budget subtracts ``penalty`` x the relative excess; in Pareto
mode the standardised log latency is subtracted too (one trade-off, not a whole front: use the evolutionary
or guided strategies for fronts). A moving-average baseline reduces the gradient's variance.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nas.arch import Arch, arch_id
from nas.errors import ConfigError
from nas.objectives import LATENCY
from nas.registry import register_strategy
from nas.strategies.base import Strategy


@register_strategy("reinforce")
class ReinforceController(Strategy):
    name = "reinforce"

    def __init__(self, *, learning_rate: float = 0.2, baseline_decay: float = 0.9, penalty: float = 3.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        # one check per option, so the message names the one that is wrong
        if not learning_rate > 0:
            raise ConfigError(f"strategy.learning_rate must be > 0, got {learning_rate}")
        if not 0 <= baseline_decay < 1:
            raise ConfigError(f"strategy.baseline_decay must be in [0, 1), got {baseline_decay}")
        if not penalty >= 0:
            raise ConfigError(f"strategy.penalty must be >= 0, got {penalty}")
        self.learning_rate, self.baseline_decay, self.penalty = float(learning_rate), float(baseline_decay), float(penalty)
        self._labels = list(self.space.choices())
        self._logits = {label: [0.0] * len(options) for label, options in self.space.choices().items()}
        self._pending: dict[str, list[int]] = {}  # arch id -> sampled option index per label
        self._baseline: float | None = None
        self._stats = {name: [0, 0.0, 0.0] for name in ("accuracy", "log_latency")}  # Welford: n, mean, M2

    def _probs(self, label: str) -> np.ndarray:
        z = np.array(self._logits[label])
        e = np.exp(z - z.max())
        return e / e.sum()

    def ask(self) -> Arch:
        choices = self.space.choices()
        picks = [int(self.rng.choice(len(choices[label]), p=self._probs(label))) for label in self._labels]
        arch = self.space.canonical({label: choices[label][i] for label, i in zip(self._labels, picks)})
        self._pending[arch_id(arch)] = picks
        return arch

    def _standardised(self, name: str, value: float) -> float:
        stats = self._stats[name]
        stats[0] += 1
        delta = value - stats[1]
        stats[1] += delta / stats[0]
        stats[2] += delta * (value - stats[1])
        std = (stats[2] / stats[0]) ** 0.5 if stats[0] > 1 else 0.0
        return (value - stats[1]) / std if std > 0 else 0.0

    def reward(self, metrics: Mapping[str, float]) -> float:
        r = self._standardised("accuracy", float(metrics["accuracy"]))
        if LATENCY in self.objectives:
            r -= self._standardised("log_latency", float(np.log(max(float(metrics["latency_ms"]), 1e-9))))
        return r - self.penalty * self.constraints.violation(metrics)

    def tell(self, arch: Mapping, metrics: Mapping[str, float]) -> None:
        self._check_metrics(metrics)
        picks = self._pending.pop(arch_id(arch), None)
        if picks is None:  # an arch this controller did not sample: nothing to learn about its own policy
            return
        r = self.reward(metrics)
        self._baseline = r if self._baseline is None else self.baseline_decay * self._baseline + (1 - self.baseline_decay) * r
        advantage = r - self._baseline
        for label, i in zip(self._labels, picks):
            grad = -self._probs(label)
            grad[i] += 1.0
            self._logits[label] = (np.array(self._logits[label]) + self.learning_rate * advantage * grad).tolist()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "logits": self._logits, "pending": self._pending, "baseline": self._baseline,
                "stats": self._stats}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self._logits = {k: list(v) for k, v in state["logits"].items()}
        self._pending = {k: list(v) for k, v in state["pending"].items()}
        self._baseline = state["baseline"]
        self._stats = {k: list(v) for k, v in state["stats"].items()}
