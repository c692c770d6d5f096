"""``strategy=auto`` (the default): the concrete strategy the run's evaluator and budget call for, and why.

This is a resolver, not a strategy: it returns an instance of a registered strategy (whose ``state_dict`` and
results are that strategy's own), with the choice and its reason recorded on it
(:meth:`~nas.strategies.base.Strategy.resolution`, kept in ``results.json`` as ``strategy_resolved``). Options
given for the chosen strategy (``+strategy.KEY=VALUE``) still apply; one the chosen strategy does not take
is an error that says which strategy was chosen and why.

The rule, from ``experiments/search_nb201.py`` and ``experiments/search_fbnet.py`` (every strategy at its CLI
defaults on every shipped latency column; ``experiments/results/search_*_150.json`` with 10 seeds at 150
queries, ``search_*.json`` at 100 to 1,000 queries with fewer seeds) and the per-query costs measured there:

- each query is a real evaluation (``evaluator=tabular``: a table row stands for a trained network, and a
  measuring target times every arch): ``guided`` up to :data:`GUIDED_MAX_QUERIES` queries. At 150 queries
  it had the best mean of all strategies on the accuracy-only and every constrained NAS-Bench-201 setting
  (constrained, mean over the 13 columns: 93.59 against 93.26 for the next, Optuna NSGA-II) and on every
  FBNet column. On the Pareto problem no strategy is best on every column (TPE, evolution and guided each
  win some, within their seeds' spread); with guided as the default the 150-query check passes on 16 of the
  27 NAS-Bench-201 settings, more than with any other single strategy (TPE 8, evolution 5). Its model fits
  cost 25-90 ms per ask at 1,000 queries and grow with the history, so beyond a few thousand queries
  ``evolution`` with a population sized to the budget is chosen instead. Open: at 1,000 Pareto queries on
  the raspi4 column (3 seeds) evolution's front was better (hypervolume 0.980 against 0.964);
- queries scored by predictors (``evaluator=supernet``: microseconds each, 3,000 by default): ``evolution``
  with a budget-sized population. There a query costs far less than guided's per-ask model fit, so at equal
  time evolution scores thousands of times more archs; what limits quality is the predictors, not the
  number of archs scored.
"""

from __future__ import annotations

from nas.errors import ConfigError
from nas.registry import STRATEGIES, register_strategy

AUTO = "auto"
#: Above this many queries, guided's per-ask model fits (growing with the history) cost more than they save.
GUIDED_MAX_QUERIES = 2000
#: Evaluators whose every query is a real (table or measured) evaluation.
EXPENSIVE_EVALUATORS = ("tabular",)


def choose_strategy(*, evaluator: str, budget: int | None) -> tuple[str, str]:
    """The registered strategy ``strategy=auto`` stands for with this evaluator and budget, and the reason."""
    if evaluator in EXPENSIVE_EVALUATORS:
        if budget is None or budget <= GUIDED_MAX_QUERIES:
            return "guided", (f"evaluator={evaluator}: every query is a real evaluation, and the budget "
                              f"({budget if budget is not None else 'not given'}) is at most {GUIDED_MAX_QUERIES} "
                              f"queries, where predictor-guided search found the best archs in the fewest queries "
                              f"(experiments/search_nb201.py, search_fbnet.py)")
        return "evolution", (f"evaluator={evaluator} with budget.queries={budget} > {GUIDED_MAX_QUERIES}: guided's "
                             f"model fits per ask grow with the history, so evolution with a population sized "
                             f"to the budget")
    return "evolution", (f"evaluator={evaluator}: queries are scored by predictors (microseconds each), cheaper "
                         f"than guided's model fit per ask, so evolution with a population sized to the budget")


def resolve(requested: str, *, evaluator: str, budget: int | None) -> tuple[str, str]:
    """``(name, reason)`` for ``strategy=requested``: auto's choice, or the requested strategy itself."""
    if requested == AUTO:
        return choose_strategy(evaluator=evaluator, budget=budget)
    return requested, f"strategy={requested} was requested"


@register_strategy(AUTO)
def auto_strategy(*, evaluator: str = "supernet", budget: int | None = None, **options):
    """The strategy :func:`choose_strategy` picks, built with ``options`` (the chosen strategy's options plus
    the usual ``space``, ``objectives``, ``constraints`` and ``seed``)."""
    name, reason = choose_strategy(evaluator=evaluator, budget=budget)
    factory = STRATEGIES.get(name)
    try:
        strategy = factory(budget=budget, **options)
    except TypeError as exc:
        given = sorted(set(options) - {"space", "objectives", "constraints", "seed"})
        raise ConfigError(f"strategy=auto chose {name!r} ({reason}), which does not take the option(s) given "
                          f"({', '.join(given) or 'none'}): {exc}. Choose the strategy explicitly "
                          f"(strategy=NAME) to use its options") from None
    strategy.record_choice(requested=AUTO, reason=reason)
    return strategy
