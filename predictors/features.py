"""Latency features of architectures, one code path for the CLI, the benchmark and library users.

``latency_features(space, archs, kind)`` returns an ``(n, d)`` float64 array:

- ``onehot``: one-hot ``(position, choice)``; the features of the additive lookup table (``lut``). For
  NB201 the ops are the *executed* ones (dead edges -> ``none``, intermediate nodes in canonical order,
  :func:`search_spaces.kernels.nb201_canonical_ops`); for OFA inactive block slots are all-zero
  (``OFASpace.encode``), so a column is "this block slot runs with this kernel / expand ratio".
- ``kernel``: per kernel type (:data:`search_spaces.kernels.KINDS`, 11 types: 33 columns) the sums of MMACs,
  MB of activation traffic and the kernel count: the features of the kernel-level model (``kernel``). They
  come from a table where one exists: OFA's per-(resolution, stage, slot, kernel, expand) rows, or a space's
  own ``kernel_features_codes(codes)`` (layer-wise spaces: per-(layer, option) rows of each block traced
  alone), so a search or a prior does not decompose a whole network per arch; otherwise from
  :func:`search_spaces.kernels.kernels` of each arch.
- ``flops``: MMACs; ``params``: millions of parameters (the baselines).
- ``encoding``: ``onehot`` + ``kernel`` (+ for NB201 the path encoding of the executed cell and the one-hot
  and path encoding of the cell as written): the input of the
  whole-network regressors (``gbdt``, ``ridge``, ``mlp``), which can then learn interactions on top of the
  physically meaningful aggregates.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence

import numpy as np

from nas.arch import Value
from nas.errors import ConfigError
from search_spaces.base import SearchSpace
from search_spaces.kernels import (
    KINDS,
    kernel_row,
    kernels,
    mbconv_kernels,
    nb201_canonical_ops,
    ofa_head_kernels,
    ofa_stem_kernels,
)

FEATURE_KINDS = ("onehot", "kernel", "flops", "params", "encoding")




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
    if not archs:
        raise ConfigError("latency_features needs at least one architecture")
    # A space's own table gives the kernel block of all archs at once (its codes path).
    table = None
    if kind in ("kernel", "encoding") and callable(getattr(space, "kernel_features_codes", None)):
        table = _space_kernel_table(space, space.to_codes(archs))
    if kind == "kernel" and table is not None:
        return table
    rows = []
    for index, arch in enumerate(archs):
        if kind == "onehot":
            rows.append(_onehot(space, arch))
            continue
        if kind == "encoding" and table is not None:
            ks, per_kind = None, table[index]
        else:
            ks = kernels(space, arch)
            per_kind = kernel_row(ks)
        if kind == "kernel":
            rows.append(per_kind)
        elif kind == "flops":
            rows.append(np.array([sum(k.flops for k in ks) / 1e6]))
        elif kind == "params":
            rows.append(np.array([sum(k.params for k in ks) / 1e6]))
        else:  # encoding
            parts = [_onehot(space, arch), per_kind]
            if space.name == "nb201":
                # The cell as written too: HW-NAS-Bench's runtime does not prune every dead edge (some cells
                # that compute the same function measure 2.8 ms and others 20 ms), so the raw ops carry signal.
                parts.append(np.asarray(space.encode(_executed(space, arch)), dtype=np.float64)[5 * 6:])
                parts.append(np.asarray(space.encode(arch), dtype=np.float64))
            rows.append(np.concatenate(parts))
    return np.stack(rows)


def _space_kernel_table(space: SearchSpace, codes: np.ndarray) -> np.ndarray | None:
    """The ``kernel`` features of ``codes`` from the space's ``kernel_features_codes`` (None if it has none or
    declines, e.g. for a configuration its tables do not cover)."""
    method = getattr(space, "kernel_features_codes", None)
    if not callable(method):
        return None
    table = method(codes)
    if table is None:
        return None
    table = np.asarray(table, dtype=np.float64)
    if table.shape != (len(codes), 3 * len(KINDS)):
        raise ConfigError(f"{space.name}: kernel_features_codes returned shape {table.shape}, expected "
                          f"({len(codes)}, {3 * len(KINDS)}) (3 columns per kind of search_spaces.kernels.KINDS)")
    return table


def latency_features_codes(space: SearchSpace, codes: np.ndarray, kind: str) -> np.ndarray:
    """:func:`latency_features` of the archs of ``codes`` (:meth:`SearchSpace.to_codes`). ``kernel`` features
    come from a table where there is one: the space's own ``kernel_features_codes(codes)``, or OFA's: a
    block's kernels depend only on (resolution, stage, slot, kernel, expand), so an arch's per-type sums are
    its resolution's fixed part plus one table row per active slot (equal to the per-arch sums up to float
    rounding, as they are added in another order)."""
    if kind == "kernel" and len(codes):
        table = _space_kernel_table(space, codes)
        if table is not None:
            return table
        if space.name == "ofa":
            fixed, slots = _ofa_kernel_tables(space)
            res, rows = space.slot_table_rows(codes)
            return fixed[res] + slots[rows].sum(axis=1)
    return latency_features(space, space.from_codes(codes), kind)


# Per OFA space: (fixed part per resolution, per (resolution, stage, slot, kernel, expand) block rows), built on
# first use from the same kernel lists the per-arch path sums (search_spaces.kernels).
_OFA_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _ofa_kernel_tables(space) -> tuple[np.ndarray, np.ndarray]:
    tables = _OFA_TABLES.get(space)
    if tables is None:
        spec = space.net_spec(space.smallest())  # the stem, first block and head do not depend on the choices
        nr, nk, ne = len(space.resolutions), len(space.kernel_sizes), len(space.expand_ratios)
        n_stages = len(space.stage_widths)
        fixed = np.zeros((nr, 3 * len(KINDS)))
        slots = np.zeros((nr, n_stages, space.max_depth, nk, ne, 3 * len(KINDS)))
        for a, r in enumerate(space.resolutions):
            sides = space._sides(r)  # after the stem, then after each stage
            first = mbconv_kernels(spec.blocks[0], sides[0])
            fixed[a] = kernel_row(ofa_stem_kernels(spec, r) + first +
                                   ofa_head_kernels(spec, space.stage_widths[-1], sides[-1]))
            for i in range(n_stages):
                for j in range(space.max_depth):
                    side = sides[i] if j == 0 else sides[i + 1]
                    for b, k in enumerate(space.kernel_sizes):
                        for c, e in enumerate(space.expand_ratios):
                            slots[a, i, j, b, c] = kernel_row(mbconv_kernels(space._block_spec(i + 1, j, k, e), side))
        # Rows as OFASpace.slot_table_rows reads them: flattened, and a zero row for inactive slots.
        tables = _OFA_TABLES[space] = (fixed, np.concatenate([slots.reshape(-1, slots.shape[-1]),
                                                              np.zeros((1, slots.shape[-1]))]))
    return tables
