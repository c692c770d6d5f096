"""Latency priors: a device's expected latency before any measurement of it.

The ``arm_cpu`` prior is the kernel-level latency model (:class:`predictors.kernels.KernelPredictor`: per
kernel type, a non-negative cost per MAC, per byte of activation traffic and per launch) fitted on the
public Raspberry Pi 4 (ARM Cortex-A72) measurements HW-NAS-Bench made of 5,000 FBNet-space networks and of
the NAS-Bench-201 cells that compute something (``nas/assets/tables``). Because it costs *kernels*, not a
space's choices, it applies to any space with a kernel decomposition (:mod:`search_spaces.kernels`), OFA
included, which no public ARM table covers. Kernel types the ARM data never executed are costed by a stated
rule (:data:`BORROW_RULES`), and a run reports which of them its space executes (:meth:`KernelPrior.borrowed`,
``results.json``: ``predictors.latency.borrowed``):

- ``se`` (OFA's, MobileNetV3's and GhostNet's squeeze-and-excitation): its MACs and launches at the
  pointwise-conv rates, its memory traffic at the pooling rate (it is a global pool plus a gating multiply);
- ``concat`` and ``slice`` (ShuffleNetV2's channel split and concat, the ghost module's concat and cut): pure
  memory copies, so no MACs, and their traffic and launches at the rates of the one pure copy the Pi 4 data
  did run: the channel shuffle (FBNet's grouped blocks; a reshape-transpose-reshape that reads and writes
  every element once, as a concat or a split does). The natural donor, ``add``, has all three coefficients
  at 0 in the fitted prior (probably because every add in NB201 and FBNet comes with the convolutions of its
  block, which take its cost in the fit), and borrowing from it would price these copies at nothing;
  shuffle's per-byte rate is not 0 (its per-launch rate is), so a concat or split costs its traffic
  (``tests/test_kernel_trace.py`` checks both facts on the shipped prior).

``linear`` did run on the Pi 4, but every network of a source space has the same classifier, so its own
rate is confounded with each space's constant; it is priced at the pointwise-conv rates (``_TIED``), before
fitting and predicting alike, and is not reported as borrowed.

It is a *prior*: another board, runtime or thread count differs in scale and balance. Runs that use it
alone say so loudly; as soon as measurements of the user's board exist it is calibrated on them
(:func:`nas.surrogate.calibrate_prior`). ``experiments/fit_arm_prior.py`` refits the shipped file
(``nas/assets/priors/arm_cpu``) and reports how well such a prior transfers across spaces.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nas.arch import Value
from nas.errors import ModelError
from nas.tables import shipped_table
from search_spaces.base import SearchSpace
from search_spaces.kernels import KINDS

PRIORS_DIR = Path(__file__).resolve().parents[1] / "assets" / "priors"
#: Device column and spaces of the public measurements the ARM prior is fitted on.
ARM_DEVICE = "raspi4"
ARM_SOURCES = ("fbnet", "nb201")
# Kernel kinds absent from the ARM data -> the kinds whose (per-MAC, per-byte, per-launch) costs they borrow
# (None: the term is dropped; concat and slice have no MACs). Why these donors: the module docstring.
_BORROW: dict[str, tuple[str | None, str, str]] = {
    "se": ("pwconv", "pool", "pwconv"),
    "concat": (None, "shuffle", "shuffle"),
    "slice": (None, "shuffle", "shuffle"),
}
_TERMS = ("MACs", "memory traffic", "launches")
_WHY = {"se": "a global pool, two tiny 1x1 convs and a gating multiply",
        "concat": "a pure memory copy, as a channel shuffle is; add's fitted costs are all 0",
        "slice": "a pure memory copy, as a channel shuffle is; add's fitted costs are all 0"}
#: The rule each borrowed kind is priced by, in words (what a run's results.json reports).
BORROW_RULES = {
    kind: "not in the Raspberry Pi 4 data; priced with " + ", ".join(
        f"its {term} at the {donor} rate" for term, donor in zip(_TERMS, donors) if donor is not None)
    + f" ({_WHY[kind]})"
    for kind, donors in _BORROW.items()}
# Kernel kinds the ARM data ran but cannot price -> the kind whose three rates they take. Every network of a
# source space has the same classifier (FBNet's 1984 -> 100, NB201's 64 -> 10), so a linear rate is confounded
# with each space's constant: the fit put 14 ms per MMAC on it, 70x the pointwise-conv rate, and a 480 -> 640
# MobileNetV3 head then cost 4.4 ms. A linear layer at batch 1 is a 1x1 convolution on a 1x1 map, so it takes
# the pwconv rates; the refit scores the same on both sources (experiments/fit_arm_prior.py).
_TIED: dict[str, tuple[str | None, str, str]] = {"linear": ("pwconv", "pwconv", "pwconv")}
# NB201 cells without an input-output path measure ~0 ms (nothing runs); they carry no cost information.
_MIN_LATENCY_MS = 0.5


def _column(kind: str, term: int) -> int:
    return 3 * KINDS.index(kind) + term  # terms: 0 MACs, 1 bytes, 2 count


def borrow_unseen_kinds(X: np.ndarray) -> np.ndarray:
    """Move the aggregates of kernel kinds the prior never saw (:data:`BORROW_RULES`) or cannot price
    (``_TIED``: linear) onto the kinds they are costed as; applied alike before fitting and predicting."""
    X = np.array(X, dtype=np.float64, copy=True)
    for kind, donors in {**_TIED, **_BORROW}.items():  # no donor is itself moved, so the order is free
        for term, donor in enumerate(donors):
            if donor is not None:
                X[:, _column(donor, term)] += X[:, _column(kind, term)]
        X[:, [_column(kind, t) for t in range(3)]] = 0.0
    return X


def borrowed_kinds(kernel_features: np.ndarray) -> dict[str, str]:
    """The borrowed kinds (:data:`BORROW_RULES`) that occur (count > 0) in some row of ``kernel_features``."""
    X = np.atleast_2d(np.asarray(kernel_features, dtype=np.float64))
    return {kind: BORROW_RULES[kind] for kind in _BORROW if X.size and np.any(X[:, _column(kind, 2)] > 0)}


class KernelPrior:
    """A fitted kernel-level model used as a latency prior (see the module docstring)."""

    def __init__(self, *, name: str, description: str, predictor) -> None:
        self.name = name
        self.description = description
        self.predictor = predictor

    def predict(self, space: SearchSpace, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        from predictors.features import latency_features

        if not archs:
            return np.zeros(0)
        return self.predict_features(latency_features(space, archs, "kernel"))

    def predict_codes(self, space: SearchSpace, codes: np.ndarray) -> np.ndarray:
        """:meth:`predict` of the archs of ``codes`` (:meth:`SearchSpace.to_codes`), with the kernel features
        gathered from a table where the space has one (OFA)."""
        from predictors.features import latency_features_codes

        if not len(codes):
            return np.zeros(0)
        return self.predict_features(latency_features_codes(space, codes, "kernel"))

    def borrowed(self, kernel_features: np.ndarray) -> dict[str, str]:
        """``{kind: rule}`` of the kernel kinds this prior prices by a borrowed rule (the Pi 4 data never ran
        them) that occur in the ``kernel`` feature rows given (:func:`borrowed_kinds`)."""
        return borrowed_kinds(kernel_features)

    def borrowed_in(self, space: SearchSpace, archs: Sequence[Mapping[str, Value]]) -> dict[str, str]:
        """:meth:`borrowed` of the ``kernel`` features of ``archs`` of ``space``."""
        from predictors.features import latency_features

        return self.borrowed(latency_features(space, archs, "kernel")) if archs else {}

    def predict_features(self, kernel_features: np.ndarray) -> np.ndarray:
        """Latencies (ms) of ``kernel`` feature rows (:func:`predictors.features.latency_features`)."""
        X = borrow_unseen_kinds(kernel_features)
        # A prior must stay a latency: floor at a microsecond so logs and ratios downstream stay defined.
        return np.maximum(np.asarray(self.predictor.predict(X), dtype=np.float64), 1e-3)


def measured_rows(space_name: str, device: str = ARM_DEVICE, *, limit: int | None = None, seed: int = 0):
    """``(space, archs, latencies_ms)`` of the shipped table of ``space_name`` on ``device``: the rows of at
    least 0.5 ms (cells that compute nothing are left out), a random ``limit`` of them if given."""
    from nas.registry import SPACES
    from nas.tables import read_frame

    entry = shipped_table(space_name)
    frame = read_frame(str(entry["path"]))
    y = frame[device].to_numpy(dtype=np.float64)
    rows = np.flatnonzero(np.isfinite(y) & (y >= _MIN_LATENCY_MS))
    if limit is not None and limit < rows.size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    space = SPACES.get(space_name)()
    archs = [space.parse(str(frame[entry["arch_column"]].iloc[i])) for i in rows]
    return space, archs, y[rows]


def training_data(device: str = ARM_DEVICE, sources: Sequence[str] = ARM_SOURCES,
                  *, limit: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kernel features, latencies (ms) and source index of the shipped tables' ``device`` column
    (:func:`measured_rows` of each source space)."""
    from predictors.features import latency_features

    features, latencies, origin = [], [], []
    for index, space_name in enumerate(sources):
        space, archs, y = measured_rows(space_name, device, limit=limit, seed=seed)
        features.append(latency_features(space, archs, "kernel"))
        latencies.append(y)
        origin.append(np.full(y.size, index))
    return np.vstack(features), np.concatenate(latencies), np.concatenate(origin)


def fit_kernel_prior(X: np.ndarray, y: np.ndarray):
    """The kernel-level model fitted on ``X -> y`` (kernel features, ms, priced as :func:`borrow_unseen_kinds`
    moves them: wrap it in a :class:`KernelPrior` to predict)."""
    from nas.registry import PREDICTORS

    return PREDICTORS.get("kernel")().fit(borrow_unseen_kinds(X), y)


@functools.lru_cache(maxsize=None)
def load_prior(name: str) -> KernelPrior:
    """A shipped prior by name (``arm_cpu``); :class:`ModelError` if its files are missing or malformed."""
    from predictors.base import load_predictor

    path = PRIORS_DIR / name
    if not (path / "predictor.json").is_file():
        raise ModelError(f"latency prior {name!r} is not shipped ({path} missing); reinstall hwnas or run "
                         f"python experiments/fit_arm_prior.py to rebuild it")
    predictor = load_predictor(path)
    description = str(getattr(predictor, "metadata", {}).get("description", "")) or _describe(name)
    return KernelPrior(name=f"{name} prior", description=description, predictor=predictor)


def _describe(name: str) -> str:
    return (f"kernel-level model of Raspberry Pi 4 (Cortex-A72) latency fitted on HW-NAS-Bench measurements "
            f"of {' and '.join(ARM_SOURCES)} networks") if name == "arm_cpu" else name
