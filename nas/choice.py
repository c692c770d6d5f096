"""Which network a run hands back: the choice rule over the candidates (``final.choose``).

Rules (each over the feasible candidates, i.e. within ``constraint.latency_ms`` when one is set):

- ``knee``: the knee of the candidates' Pareto front: with accuracy and latency each scaled to [0, 1] over
  the front, the point farthest above the straight line joining the front's two ends (its fastest and its
  most accurate point). Left of the knee accuracy falls fast for little speed; right of it latency grows
  for little accuracy. A front of one or two points, or one with no point above that line, has no knee:
  the most accurate point is chosen, and the reason says so;
- ``accurate``: the most accurate candidate; candidates within ``final.accuracy_tolerance`` of the top count
  as equally accurate (estimates on a few hundred validation images differ by that much by chance), and
  the fastest of them is taken;
- ``fastest``: the fastest candidate (the smallest network the front kept);
- ``auto`` (the default): ``accurate`` when a latency budget is set (the budget already says how fast the
  network must be) or with ``objective=accuracy``, ``knee`` otherwise. Without a budget ``accurate`` picks
  the slowest end of the front, which is rarely what a user who searches for a fast network wants.

If no candidate meets the budget, the fastest one is chosen whatever the rule, and ``budget_met`` is false.
Every choice carries its rule and a one-sentence reason, which ``results.json`` and the console repeat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nas.errors import ConfigError
from nas.objectives import ACCURACY, LATENCY, Trial, pareto_front

CHOICE_RULES = ("auto", "knee", "accurate", "fastest")
#: The rules in a few words, for the plot's legend and the console.
_RULE_WORDS = {"knee": "knee of the front", "accurate": "most accurate", "fastest": "fastest",
               "given": "the given arch"}


def rule_words(rule: object) -> str:
    """A concrete rule in a few words (an unknown or missing rule, e.g. from an older results file, as is)."""
    return _RULE_WORDS.get(str(rule), "chosen" if rule is None else str(rule))


@dataclass(frozen=True, kw_only=True)
class Choice:
    """The chosen trial, whether it meets the budget, the rule that chose it and why, in words."""

    trial: Trial
    budget_met: bool
    rule: str
    reason: str

    def record(self) -> dict:
        """The ``results.json`` ``best`` fields of the choice."""
        return {"budget_met": self.budget_met, "choice_rule": self.rule, "choice_reason": self.reason}


def resolve_rule(name: object, *, budget_ms: float | None, objective: str = "pareto") -> str:
    """``final.choose`` as a concrete rule: ``auto`` is ``accurate`` with a budget or ``objective=accuracy``
    (the user asked for accuracy), else ``knee``."""
    if name not in CHOICE_RULES:
        raise ConfigError(f"final.choose={name!r} is not a choice rule; valid choices: {', '.join(CHOICE_RULES)} "
                          f"(auto = accurate with a latency budget or objective=accuracy, knee otherwise)")
    if name == "auto":
        return "accurate" if budget_ms is not None or objective == "accuracy" else "knee"
    return str(name)


def knee_index(latencies: Sequence[float], accuracies: Sequence[float]) -> int | None:
    """Index of the knee of a front (see module doc), or ``None`` if it has none.

    ``latencies``/``accuracies`` are the front's points in any order. Both axes are scaled to [0, 1] between
    the front's ends, so the result does not depend on units; the distance to the chord is then
    proportional to ``accuracy - latency`` (the chord runs from (0, 0) to (1, 1)).
    """
    lat = np.asarray(latencies, dtype=np.float64)
    acc = np.asarray(accuracies, dtype=np.float64)
    if lat.size < 3:
        return None
    lat_span, acc_span = lat.max() - lat.min(), acc.max() - acc.min()
    if lat_span <= 0 or acc_span <= 0:
        return None
    above = (acc - acc.min()) / acc_span - (lat - lat.min()) / lat_span
    best = int(np.argmax(above))
    return best if above[best] > 1e-12 else None


def choose(candidates: Sequence[Trial], *, rule: str, budget_ms: float | None, tolerance: float = 0.0,
           accuracy_scale: float = 100.0, what: str = "measured candidates") -> Choice:
    """Apply a concrete ``rule`` (see :func:`resolve_rule`) to ``candidates`` (with ``accuracy`` and ``latency_ms``).

    ``tolerance`` is in the accuracies' units; ``accuracy_scale`` turns them into percent for the reason
    text (100 for fractions, 1 for tables in percent); ``what`` names the candidates in it.
    """
    if rule not in CHOICE_RULES or rule == "auto":
        raise ValueError(f"choose() needs a concrete rule, got {rule!r}; resolve it with resolve_rule()")
    if not candidates:
        raise ValueError("choose() needs at least one candidate")
    usable = [t for t in candidates if _finite(t.metrics.get("accuracy")) and _finite(t.metrics.get("latency_ms"))]
    pool = usable or list(candidates)
    budget = "" if budget_ms is None else f" within the {budget_ms:g} ms budget"
    feasible = [t for t in pool if budget_ms is None or t.metrics["latency_ms"] <= budget_ms]
    if not feasible:
        fastest = min(pool, key=_latency)
        return Choice(trial=fastest, budget_met=False, rule=rule,
                      reason=f"none of the {len(pool)} {what} meets the {budget_ms:g} ms budget, so the fastest "
                             f"({_ms(fastest)}) is chosen whatever the rule; the budget is NOT met")

    def pct(trial: Trial) -> str:  # percent for fractions; a table's own units otherwise
        return f"{accuracy_scale * trial.metrics['accuracy']:.2f}" + (" %" if accuracy_scale == 100.0 else "")

    if rule == "fastest":
        pick = min(feasible, key=lambda t: (_latency(t), -t.metrics["accuracy"]))
        return Choice(trial=pick, budget_met=True, rule=rule,
                      reason=f"the fastest of {len(feasible)} {what}{budget} ({_ms(pick)}, {pct(pick)})")
    if rule == "knee":
        front = pareto_front(feasible, (ACCURACY, LATENCY))
        index = knee_index([_latency(t) for t in front], [t.metrics["accuracy"] for t in front])
        if index is not None:
            pick, fast, slow = front[index], front[0], front[-1]
            return Choice(trial=pick, budget_met=True, rule=rule,
                          reason=f"the knee of the front of {len(feasible)} {what}{budget}: of its {len(front)} "
                                 f"points, the one farthest above the line from the fastest ({_ms(fast)}, "
                                 f"{pct(fast)}) to the most accurate ({_ms(slow)}, {pct(slow)}), with accuracy "
                                 f"and latency each scaled to [0, 1]")
        why = (f"their front has {len(front)} point(s)" if len(front) < 3
               else "no point of their front lies above the line joining its ends")
        pick = _most_accurate(feasible, tolerance)
        return Choice(trial=pick, budget_met=True, rule=rule,
                      reason=f"no knee ({why}): the most accurate of {len(feasible)} {what}{budget} "
                             f"({pct(pick)}, {_ms(pick)})")
    top = max(t.metrics["accuracy"] for t in feasible)
    pick = _most_accurate(feasible, tolerance)
    ties = sum(t.metrics["accuracy"] >= top - tolerance for t in feasible)
    spread = (f"; the fastest of the {ties} within {accuracy_scale * tolerance:g} pp of the top"
              if tolerance > 0 and ties > 1 else "")
    return Choice(trial=pick, budget_met=True, rule=rule,
                  reason=f"the most accurate of {len(feasible)} {what}{budget} ({pct(pick)}, {_ms(pick)}){spread}")


def given(trial: Trial, *, budget_ms: float | None) -> Choice:
    """The network named with ``arch=`` (no search, so no rule chose it)."""
    latency = trial.metrics.get("latency_ms")
    met = budget_ms is None or (_finite(latency) and float(latency) <= budget_ms)
    return Choice(trial=trial, budget_met=bool(met), rule="given",
                  reason="the network given with arch=... (evaluated, exported and measured; no search)")


def _most_accurate(trials: Sequence[Trial], tolerance: float) -> Trial:
    top = max(t.metrics["accuracy"] for t in trials)
    near_top = [t for t in trials if t.metrics["accuracy"] >= top - tolerance]
    return min(near_top, key=lambda t: (_latency(t), -t.metrics["accuracy"]))


def _latency(trial: Trial) -> float:
    return float(trial.metrics["latency_ms"])


def _ms(trial: Trial) -> str:
    return f"{_latency(trial):.3g} ms"


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
