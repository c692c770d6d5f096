"""Objectives, constraints, trials and Pareto fronts.

Metrics are plain dicts such as ``{"accuracy": 0.97, "latency_ms": 1.8}``. An :class:`Objective` names one
metric and whether it is maximised or minimised; internally every comparison turns objectives into a
*loss vector* (smaller is better) so the Pareto code has one direction only.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from nas.arch import Arch, arch_id
from nas.errors import ConfigError


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Literal["max", "min"]

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ConfigError(f"objective direction must be 'max' or 'min', got {self.direction!r}")

    def loss(self, value: float) -> float:
        return -float(value) if self.direction == "max" else float(value)


ACCURACY = Objective("accuracy", "max")
LATENCY = Objective("latency_ms", "min")

#: ``objective=`` config values and the objectives they optimise.
OBJECTIVE_MODES: dict[str, tuple[Objective, ...]] = {
    "pareto": (ACCURACY, LATENCY),
    "accuracy": (ACCURACY,),
}


def objectives_for(mode: str) -> tuple[Objective, ...]:
    try:
        return OBJECTIVE_MODES[mode]
    except KeyError:
        raise ConfigError(f"unknown objective {mode!r}; choose one of {sorted(OBJECTIVE_MODES)}") from None


@dataclass(frozen=True)
class Constraints:
    """Upper bounds on metrics. Only a latency budget for now."""

    latency_ms: float | None = None

    def __post_init__(self) -> None:
        if self.latency_ms is not None and not self.latency_ms > 0:
            raise ConfigError(f"constraint.latency_ms must be a positive number of milliseconds, got {self.latency_ms}")

    def violation(self, metrics: Mapping[str, float]) -> float:
        """0 when feasible, otherwise the relative amount by which the budget is exceeded."""
        if self.latency_ms is None or "latency_ms" not in metrics:
            return 0.0
        return max(0.0, (float(metrics["latency_ms"]) - self.latency_ms) / self.latency_ms)

    def violations(self, latency_ms: np.ndarray | None, n: int) -> np.ndarray:
        """:meth:`violation` of ``n`` archs from their latencies (NaN or None: not known, so 0, as a missing key)."""
        if self.latency_ms is None or latency_ms is None:
            return np.zeros(n)
        excess = (np.asarray(latency_ms, dtype=np.float64) - self.latency_ms) / self.latency_ms
        return np.where(np.isnan(excess), 0.0, np.maximum(excess, 0.0))

    def to_dict(self) -> dict:
        return {"latency_ms": self.latency_ms}


@dataclass
class Trial:
    """One evaluated architecture."""

    arch: Arch
    metrics: dict[str, float | str]
    arch_id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.arch_id:
            self.arch_id = arch_id(self.arch)

    def to_dict(self) -> dict:
        return {"arch": dict(self.arch), "arch_id": self.arch_id, **self.metrics}


class CodedTrials(Sequence[Trial]):
    """Trials of a predictor-scored search, kept as the space's integer codes and metric arrays while the
    search runs; the :class:`Trial` objects (arch dicts with their :func:`~nas.arch.arch_id`) are made once, on
    first read, and then kept, so a caller that edits a trial (e.g. adds a measured latency) sees it there."""

    def __init__(self, space) -> None:
        self._space = space
        self._codes: list[np.ndarray] = []
        self._metrics: list[dict[str, np.ndarray]] = []
        self._n = 0
        self._trials: list[Trial] | None = None

    def extend_codes(self, codes: np.ndarray, metrics: Mapping[str, np.ndarray]) -> None:
        """Append one trial per row of ``codes``, ``metrics`` holding one array per metric."""
        if self._trials is not None:
            raise RuntimeError("trials were already read; append before reading them")
        self._codes.append(np.array(codes, copy=True))
        self._metrics.append({name: np.asarray(values, dtype=np.float64) for name, values in metrics.items()})
        self._n += len(codes)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):  # type: ignore[override]
        return self._materialised()[index]

    def _materialised(self) -> list[Trial]:
        if self._trials is None:
            trials: list[Trial] = []
            for codes, metrics in zip(self._codes, self._metrics):
                columns = {name: values.tolist() for name, values in metrics.items()}
                for i, arch in enumerate(self._space.from_codes(codes)):
                    trials.append(Trial(arch=arch, metrics={name: values[i] for name, values in columns.items()}))
            self._trials = trials
        return self._trials


def loss_matrix(metrics: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> np.ndarray:
    """``(n, m)`` array of objective losses (smaller is better)."""
    return np.array([[obj.loss(m[obj.name]) for obj in objectives] for m in metrics], dtype=np.float64).reshape(
        len(metrics), len(objectives)
    )


def loss_columns(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """:func:`loss_matrix` of an ``(n, m)`` array holding each objective's values in ``objectives`` order."""
    signs = np.array([-1.0 if obj.direction == "max" else 1.0 for obj in objectives])
    return np.asarray(values, dtype=np.float64).reshape(-1, len(objectives)) * signs


def non_dominated_sort(losses: np.ndarray, violations: np.ndarray | None = None, *,
                       limit: int | None = None) -> list[np.ndarray]:
    """Fronts of indices (best first) under constrained domination.

    A feasible point dominates every infeasible one; two infeasible points compare by violation; two
    feasible points compare by Pareto dominance of their losses (Deb's constrained NSGA-II rule). With
    ``limit``, only the first fronts that together hold at least ``limit`` points (what a selection of
    ``limit`` survivors reads).
    """
    n = len(losses)
    if n == 0:
        return []
    viol = np.zeros(n) if violations is None else np.asarray(violations, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64).reshape(n, -1)
    if losses.shape[1] <= 2 and np.isfinite(losses).all() and np.isfinite(viol).all():
        fronts = _fronts_two_objectives(losses, viol)
        if limit is not None:
            sizes = np.cumsum([len(f) for f in fronts])
            fronts = fronts[: int(np.searchsorted(sizes, limit)) + 1]
        return fronts
    # One objective at a time: reducing an (n, n, m) comparison over its last axis was ~9x slower.
    le = np.ones((n, n), dtype=bool)
    lt = np.zeros((n, n), dtype=bool)
    for column in losses.T:
        le &= column[:, None] <= column[None, :]
        lt |= column[:, None] < column[None, :]
    pareto = le & lt
    feasible = viol <= 0
    both_feasible = feasible[:, None] & feasible[None, :]
    dominates = np.where(both_feasible, pareto, False)
    dominates |= feasible[:, None] & ~feasible[None, :]
    both_infeasible = ~feasible[:, None] & ~feasible[None, :]
    dominates |= both_infeasible & (viol[:, None] < viol[None, :])
    dominated_count = dominates.sum(axis=0)
    fronts = []
    remaining = np.ones(n, dtype=bool)
    taken, limit = 0, n if limit is None else limit
    while remaining.any() and taken < limit:
        front = np.flatnonzero(remaining & (dominated_count == 0))
        fronts.append(front)
        taken += len(front)
        remaining[front] = False
        dominated_count = dominated_count - dominates[front].sum(axis=0)
        dominated_count[~remaining] = -1
    return fronts


def _fronts_two_objectives(losses: np.ndarray, violations: np.ndarray) -> list[np.ndarray]:
    """:func:`non_dominated_sort` for one or two objectives in O(n log n) (the O(n^2) domination matrix was the
    largest cost of a predictor-scored search's selection): the same fronts, each in increasing index order.

    Feasible points in lexicographic order of their losses: every point that dominates another comes before
    it, and a front's last point so far has its smallest second loss, which rises from front to front. A
    point therefore joins the first front whose last second loss exceeds its own (a bisection), or that of the
    point just before it when both are identical (identical points do not dominate each other). Infeasible
    points follow, one front per distinct violation, smallest first."""
    feasible = np.flatnonzero(violations <= 0)
    first = losses[feasible, 0]
    second = losses[feasible, 1] if losses.shape[1] == 2 else np.zeros(len(feasible))
    order = np.lexsort((second, first))
    lasts: list[float] = []  # per front, the second loss of its last point (non-decreasing over fronts)
    rank = np.empty(len(order), dtype=np.intp)
    previous: tuple[float, float] | None = None
    for position, point in enumerate(zip(first[order].tolist(), second[order].tolist())):
        if point == previous:
            rank[position] = rank[position - 1]
            continue
        r = bisect.bisect_right(lasts, point[1])
        if r == len(lasts):
            lasts.append(point[1])
        else:
            lasts[r] = point[1]
        rank[position] = r
        previous = point
    index = feasible[order]
    by_front = np.lexsort((index, rank))  # by front, then by index
    fronts = np.split(index[by_front], np.cumsum(np.bincount(rank))[:-1]) if len(index) else []
    infeasible = np.flatnonzero(violations > 0)
    if infeasible.size:
        levels, which = np.unique(violations[infeasible], return_inverse=True)
        fronts += np.split(infeasible[np.argsort(which, kind="stable")], np.cumsum(np.bincount(which))[:-1])
    return fronts


def crowding_distance(losses: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each point within one front (boundary points get infinity)."""
    n, m = losses.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(losses[:, k], kind="stable")
        span = losses[order[-1], k] - losses[order[0], k]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (losses[order[2:], k] - losses[order[:-2], k]) / span
    return distance


def pareto_front(trials: Sequence[Trial], objectives: Sequence[Objective], constraints: Constraints | None = None) -> list[Trial]:
    """The non-dominated feasible trials (deduplicated by arch id), sorted by the last objective.

    With a single objective this is the best feasible trial (ties kept). If no trial is feasible the
    least-violating front is returned, so a caller can still report what came closest.
    """
    unique: dict[str, Trial] = {}
    for trial in trials:
        unique.setdefault(trial.arch_id, trial)
    items = list(unique.values())
    if not items:
        return []
    constraints = constraints or Constraints()
    losses = loss_matrix([t.metrics for t in items], objectives)  # type: ignore[arg-type]
    violations = np.array([constraints.violation(t.metrics) for t in items])  # type: ignore[arg-type]
    first = non_dominated_sort(losses, violations)[0]
    # Among points with identical objective values keep one, so the front lists distinct trade-offs.
    seen: set[tuple[float, ...]] = set()
    front = []
    for i in sorted(first, key=lambda i: tuple(losses[i][::-1])):
        key = tuple(np.round(losses[i], 12))
        if key not in seen:
            seen.add(key)
            front.append(items[i])
    return front


def hypervolume_2d(losses: np.ndarray, reference: Sequence[float]) -> float:
    """Area dominated by 2-objective ``losses`` (smaller is better) and bounded by ``reference``: the union of
    the boxes ``[point, reference]``. Points not strictly better than the reference in both add nothing."""
    pts = np.asarray(losses, dtype=np.float64).reshape(-1, 2)
    ref = np.asarray(reference, dtype=np.float64)
    pts = pts[np.all(pts < ref, axis=1)]
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]  # by first loss, ties by second
    area, best_second = 0.0, ref[1]
    for first, second in pts:  # each point that lowers the second loss adds a horizontal strip
        if second < best_second:
            area += (ref[0] - first) * (best_second - second)
            best_second = second
    return float(area)


def hypervolume_gains_2d(front: np.ndarray, candidates: np.ndarray, reference: Sequence[float]) -> np.ndarray:
    """For each candidate (a row of 2 losses), the hypervolume it would add to ``front`` (vectorised).

    The region the front dominates is a staircase: left of the front's first point nothing, then between
    consecutive first-loss breakpoints the best second loss so far. A candidate adds, over each step it
    overlaps, the width times how far it lies below the step.
    """
    ref = np.asarray(reference, dtype=np.float64)
    pts = np.asarray(front, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.all(pts < ref, axis=1)]
    pts = pts[np.argsort(pts[:, 0], kind="stable")]
    starts = np.concatenate([[-np.inf], pts[:, 0]])
    ends = np.concatenate([pts[:, 0], [ref[0]]])
    heights = np.minimum.accumulate(np.concatenate([[ref[1]], pts[:, 1]]))  # step height on [start, end)
    c = np.asarray(candidates, dtype=np.float64).reshape(-1, 2)
    widths = np.clip(np.minimum(ends[None, :], ref[0]) - np.maximum(starts[None, :], c[:, :1]), 0.0, None)
    depths = np.clip(heights[None, :] - c[:, 1:2], 0.0, None)
    return (widths * depths).sum(axis=1)
