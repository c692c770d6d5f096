"""Latency features of architectures, one code path for the CLI, the benchmark and library users.

``latency_features(space, archs, kind)`` returns an ``(n, d)`` float64 array:

- ``onehot``: one-hot ``(position, choice)``; the features of the additive lookup table (``lut``). For
  NB201 the ops are the *executed* ones (dead edges -> ``none``, intermediate nodes in canonical order,
  :func:`search_spaces.kernels.nb201_canonical_ops`); for OFA inactive block slots are all-zero
  (``OFASpace.encode``), so a column is "this block slot runs with this kernel / expand ratio".
- ``kernel``: per kernel type (:data:`search_spaces.kernels.KINDS`) the sums of MMACs, MB of activation
  traffic and the kernel count: the features of the kernel-level model (``kernel``).
- ``flops``: MMACs; ``params``: millions of parameters (the baselines).
- ``encoding``: ``onehot`` + ``kernel`` (+ for NB201 the path encoding of the executed cell and the one-hot
  and path encoding of the cell as written): the input of the
  whole-network regressors (``gbdt``, ``ridge``, ``mlp``), which can then learn interactions on top of the
  physically meaningful aggregates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nas.arch import Value
from nas.errors import ConfigError
from search_spaces.base import SearchSpace
from search_spaces.kernels import KINDS, Kernel, kernels, nb201_canonical_ops

FEATURE_KINDS = ("onehot", "kernel", "flops", "params", "encoding")


def _kernel_row(ks: Sequence[Kernel]) -> np.ndarray:
    row = np.zeros(3 * len(KINDS))
    for k in ks:
        i = 3 * KINDS.index(k.kind)
        row[i] += k.flops / 1e6
        row[i + 1] += k.bytes / 1e6
        row[i + 2] += 1.0
    return row


def _executed(space: SearchSpace, arch: Mapping[str, Value]) -> Mapping[str, Value]:
    """The arch as executed: for NB201 the canonical live cell, otherwise unchanged."""
    if space.name != "nb201":
        return arch
    from search_spaces.nb201 import LABELS

    return dict(zip(LABELS, nb201_canonical_ops(arch)))


def _onehot(space: SearchSpace, arch: Mapping[str, Value]) -> np.ndarray:
    executed = _executed(space, arch)
    vec = np.asarray(space.encode(executed), dtype=np.float64)
    if space.name == "nb201":
        return vec[: 5 * 6]  # NB201Space.encode appends path features after the 6 x 5 one-hot block
    return vec


def latency_features(space: SearchSpace, archs: Sequence[Mapping[str, Value]], kind: str) -> np.ndarray:
    """``(len(archs), d)`` features of ``kind`` (see the module docstring) for validated ``archs``."""
    if kind not in FEATURE_KINDS:
        raise ConfigError(f"unknown latency feature kind {kind!r}; choose one of {list(FEATURE_KINDS)}")
    rows = []
    for arch in archs:
        if kind == "onehot":
            rows.append(_onehot(space, arch))
            continue
        ks = kernels(space, arch)
        if kind == "kernel":
            rows.append(_kernel_row(ks))
        elif kind == "flops":
            rows.append(np.array([sum(k.flops for k in ks) / 1e6]))
        elif kind == "params":
            rows.append(np.array([sum(k.params for k in ks) / 1e6]))
        else:  # encoding
            parts = [_onehot(space, arch), _kernel_row(ks)]
            if space.name == "nb201":
                # The cell as written too: HW-NAS-Bench's runtime does not prune every dead edge (some cells
                # that compute the same function measure 2.8 ms and others 20 ms), so the raw ops carry signal.
                parts.append(np.asarray(space.encode(_executed(space, arch)), dtype=np.float64)[5 * 6:])
                parts.append(np.asarray(space.encode(arch), dtype=np.float64))
            rows.append(np.concatenate(parts))
    if not rows:
        raise ConfigError("latency_features needs at least one architecture")
    return np.stack(rows)
