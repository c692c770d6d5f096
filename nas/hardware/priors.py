"""Latency priors: a device's expected latency before any measurement of it.

The ``arm_cpu`` prior is the kernel-level latency model (:class:`predictors.kernels.KernelPredictor`: per
kernel type, a non-negative cost per MAC, per byte of activation traffic and per launch) fitted on the
public Raspberry Pi 4 (ARM Cortex-A72) measurements HW-NAS-Bench made of 5,000 FBNet-space networks and of
the NAS-Bench-201 cells that compute something (``nas/assets/tables``). Because it costs *kernels*, not a
space's choices, it applies to any space with a kernel decomposition (:mod:`search_spaces.kernels`), OFA
included, which no public ARM table covers. Kernel types the ARM data never executed (OFA's
squeeze-and-excitation) are costed as their nearest measured kinds: SE's MACs at the pointwise-conv rate, its
memory traffic at the pooling rate (it is a global pool plus a gating multiply).

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
# Kernel kinds absent from the ARM data -> (kind whose per-MAC cost, kind whose per-byte cost) they borrow.
_BORROW = {"se": ("pwconv", "pool")}
# NB201 cells without an input-output path measure ~0 ms (nothing runs); they carry no cost information.
_MIN_LATENCY_MS = 0.5


def _column(kind: str, term: int) -> int:
    return 3 * KINDS.index(kind) + term  # terms: 0 MACs, 1 bytes, 2 count


def borrow_unseen_kinds(X: np.ndarray) -> np.ndarray:
    """Move the aggregates of kernel kinds the prior never saw onto the kinds they are costed as."""
    X = np.array(X, dtype=np.float64, copy=True)
    for kind, (macs_like, bytes_like) in _BORROW.items():
        X[:, _column(macs_like, 0)] += X[:, _column(kind, 0)]
        X[:, _column(bytes_like, 1)] += X[:, _column(kind, 1)]
        X[:, _column(macs_like, 2)] += X[:, _column(kind, 2)]
        X[:, [_column(kind, t) for t in range(3)]] = 0.0
    return X


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
        return self._predict_features(latency_features(space, archs, "kernel"))

    def predict_codes(self, space: SearchSpace, codes: np.ndarray) -> np.ndarray:
        """:meth:`predict` of the archs of ``codes`` (:meth:`SearchSpace.to_codes`), with the kernel features
        gathered from a table where the space has one (OFA)."""
        from predictors.features import latency_features_codes

        if not len(codes):
            return np.zeros(0)
        return self._predict_features(latency_features_codes(space, codes, "kernel"))

    def _predict_features(self, kernel_features: np.ndarray) -> np.ndarray:
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
    """The kernel-level model fitted on ``X -> y`` (kernel features, ms)."""
    from nas.registry import PREDICTORS

    return PREDICTORS.get("kernel")().fit(X, y)


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
