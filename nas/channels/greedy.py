"""AutoSlim's greedy slimming (Yu & Huang 2019), over the ``channels`` space.

From the full width, every round tries shrinking each group by one step of its width grid and keeps the
shrink that loses the least accuracy per millisecond of latency saved, until the latency meets each budget
in turn: one search gives a configuration for every budget (the largest budget's first).

Trying every group every round costs a round one accuracy query per group. *Lazy* evaluation cuts that:
scores from earlier rounds are kept in a queue; a round re-scores the best-looking group in the current
configuration and accepts it when its fresh score still beats every other group's stale one (the usual lazy
greedy; a shrink's cost changes little when another group shrinks). Every ``refresh`` rounds all groups are
re-scored. ``refresh=1`` is the plain greedy search.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from nas.arch import Arch
from nas.errors import ConfigError


@dataclass(frozen=True)
class SlimStep:
    """One accepted shrink: the group, its new width, and the configuration's accuracy and latency after it."""

    round: int
    label: str
    width: int
    accuracy: float
    latency_ms: float


def greedy_slim(*, options: Mapping[str, Sequence[int]], start: Arch, budgets_ms: Sequence[float],
                accuracy: Callable[[Arch], float], latency: Callable[[Arch], float], refresh: int = 8,
                progress: Callable[[SlimStep], None] | None = None) -> tuple[dict[float, Arch], list[SlimStep]]:
    """The configuration for each budget (``{budget: arch}``) and the accepted shrinks in order.

    ``options[label]``: the group's widths, smallest first; ``latency`` must not increase when a group shrinks.
    A budget below the latency of every group at its smallest width is refused before any query."""
    if refresh < 1:
        raise ConfigError(f"refresh={refresh}: must be >= 1")
    budgets = sorted((float(b) for b in budgets_ms), reverse=True)
    smallest = {label: opts[0] for label, opts in options.items()}
    floor = latency({**start, **smallest})
    if budgets and budgets[-1] < floor:
        raise ConfigError(f"latency budget {budgets[-1]:.4g} ms is below the smallest network this space holds "
                          f"({floor:.4g} ms, every group at its narrowest); raise the budget or widen space.ratios")
    arch = dict(start)
    acc, lat = accuracy(arch), latency(arch)
    found: dict[float, Arch] = {}
    steps: list[SlimStep] = []
    stale: dict[str, tuple[float, float]] = {}
    rnd = 0

    def shrunk(label: str) -> Arch | None:
        opts = list(options[label])
        i = opts.index(arch[label])
        return None if i == 0 else {**arch, label: opts[i - 1]}

    def score(label: str) -> tuple[tuple[float, float], Arch, float, float] | None:
        child = shrunk(label)
        if child is None:
            return None
        child_acc, child_lat = accuracy(child), latency(child)
        saved = max(lat - child_lat, 1e-9)
        # Accuracy lost per ms saved; a shrink that loses nothing (or gains, which on a few hundred validation
        # images is noise) costs 0, and among equal costs the larger saving goes first.
        return (max(acc - child_acc, 0.0) / saved, -saved), child, child_acc, child_lat

    for budget in budgets:
        while lat > budget:
            rnd += 1
            labels = [label for label in options if shrunk(label) is not None]
            if not labels:
                break  # cannot happen above the floor; kept as a guard against a non-monotone latency model
            if (rnd - 1) % refresh == 0 or not stale:
                fresh = {label: score(label) for label in labels}
                stale = {label: s[0] for label, s in fresh.items() if s is not None}
                best = min(stale, key=lambda k: (stale[k], k))
                _, child, child_acc, child_lat = fresh[best]
            else:
                while True:
                    best = min((k for k in labels if k in stale), key=lambda k: (stale[k], k), default=labels[0])
                    s = score(best)
                    stale[best] = s[0]
                    others = [stale[k] for k in labels if k != best and k in stale]
                    if not others or s[0] <= min(others):
                        _, child, child_acc, child_lat = s
                        break
            # The shrunk group keeps its score as the (stale) estimate of its next shrink: re-scored when it leads.
            arch, acc, lat = child, child_acc, child_lat
            step = SlimStep(rnd, best, int(arch[best]), float(acc), float(lat))
            steps.append(step)
            if progress is not None:
                progress(step)
        found[budget] = dict(arch)
    return found, steps
