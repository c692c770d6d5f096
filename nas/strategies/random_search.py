"""Random search: the baseline every strategy must beat."""

from __future__ import annotations

from collections.abc import Mapping

from nas.arch import Arch
from nas.registry import register_strategy
from nas.strategies.base import Strategy, draw_unseen


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniform samples from the space; duplicates are re-drawn a few times before being allowed."""

    name = "random"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._seen: set[str] = set()

    def ask(self) -> Arch:
        return draw_unseen(lambda: self.space.sample(self.rng), self._seen, tries=16)

    def tell(self, arch: Mapping, metrics: Mapping[str, float]) -> None:
        self._check_metrics(metrics)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "seen": sorted(self._seen)}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self._seen = set(state["seen"])
