"""Tables of per-architecture metrics (benchmark accuracies, device latencies), looked up by arch id.

A table is a CSV (optionally compressed: ``.gz``, ``.xz``, ``.bz2``, ``.zip``) or Parquet file with one row
per architecture. Its architecture column holds the space's public string form (NAS-Bench-201 ``|op~0|+...``
strings, FBNet space-separated op names, OFA ``{"ks", "e", "d", "r"}`` JSON); every row is parsed with
:meth:`SearchSpace.parse`, so a row that is not a member of the space is reported with its line number.

The package ships the tables its default benchmarks need under ``nas/assets/tables/`` (provenance in
``nas/assets/DATA_PROVENANCE.md``); any table of the same form plugs in by path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from nas.arch import Arch, Value, arch_id
from nas.errors import DataError, InvalidArchError
from search_spaces.base import SearchSpace

ASSETS = Path(__file__).resolve().parent / "assets" / "tables"

#: Tables shipped with the package, per space: file, architecture column, accuracy column (None: no accuracy).
SHIPPED_TABLES: dict[str, dict[str, str | None]] = {
    "nb201": {"file": "nb201.csv.xz", "arch_column": "arch_str", "accuracy_column": "cifar10_test_accuracy"},
    "fbnet": {"file": "fbnet.csv.xz", "arch_column": "op_names", "accuracy_column": None},
}
#: Devices with real (or, for eyeriss/fpga, simulated) latencies in the shipped tables, in ms at batch 1.
TABLE_DEVICES = ("raspi4", "pixel3", "eyeriss", "fpga", "gold_6226", "gold_6240", "silver_4114", "silver_4210r",
                 "1080ti_1", "2080ti_1", "titan_rtx_1", "titanx_1", "titanxp_1")


def shipped_table(space_name: str) -> dict[str, str | None]:
    """The shipped table entry for a space, with ``path`` filled in; :class:`DataError` when there is none."""
    entry = SHIPPED_TABLES.get(space_name)
    if entry is None:
        raise DataError(f"no table ships for space {space_name!r} (tables ship for {sorted(SHIPPED_TABLES)}); "
                        f"give one with table=FILE and its column names")
    return {**entry, "path": str(ASSETS / str(entry["file"]))}


def read_frame(path: str | Path):
    """Read a CSV (possibly compressed) or Parquet file into a pandas DataFrame, with clear errors."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"table {path} does not exist; give the path of a CSV (.csv, .csv.gz, .csv.xz) or Parquet file")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as err:  # pandas raises many types for unreadable files; report them all the same way
        raise DataError(f"cannot read table {path}: {type(err).__name__}: {err}") from None


class MetricTable:
    """Metric columns of a table, indexed by the arch id of each row's architecture."""

    def __init__(self, path: str | Path, *, space: SearchSpace, arch_column: str, columns: Sequence[str]) -> None:
        self.path = Path(path).expanduser()
        self.space = space
        self.arch_column = arch_column
        frame = read_frame(self.path)
        wanted = [arch_column, *columns]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise DataError(f"table {self.path} has no column(s) {missing}; its columns are {list(frame.columns)}")
        self.archs: list[Arch] = []
        self._row: dict[str, int] = {}
        for line, text in enumerate(frame[arch_column].tolist(), start=2):  # line 1 is the header
            try:
                arch = space.parse(_decode(text))
            except InvalidArchError as err:
                raise InvalidArchError(f"table {self.path}, line {line}, column {arch_column!r}: {err}") from None
            self._row.setdefault(arch_id(arch), len(self.archs))
            self.archs.append(arch)
        self._additive: dict[str, tuple[np.ndarray, float] | None] = {}
        self.values: dict[str, np.ndarray] = {}
        for column in columns:
            values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
            if np.isnan(values).all():
                raise DataError(f"table {self.path}: column {column!r} holds no numbers")
            self.values[column] = values

    def __len__(self) -> int:
        return len(self._row)

    def lookup(self, arch: Mapping[str, Value], column: str) -> float:
        """The value of ``column`` for ``arch``; :class:`InvalidArchError` when the table has no such row."""
        row = self._row.get(arch_id(arch))
        if row is None:
            raise InvalidArchError(
                f"architecture {self.space.to_public(arch)!r} is not in table {self.path} ({len(self)} rows); "
                f"a tabular search needs a table covering every architecture the strategy may propose"
            )
        value = float(self.values[column][row])
        if math.isnan(value):
            raise DataError(f"table {self.path}: column {column!r} is empty for {self.space.to_public(arch)!r}")
        return value

    def additive(self, column: str) -> tuple[np.ndarray, float] | None:
        """``(per-(label, option) values, constant)`` when ``column`` is a sum of per-choice values, fitted on the
        table's rows to rounding error (max relative error 1e-5); None when it is not. HW-NAS-Bench's FBNet
        latencies are such sums (per-layer measurements added up), so a network the table has no row for still
        gets its exact table latency."""
        if column not in self._additive:
            X = self.space.encode_many(self.archs).astype(np.float64)
            y = self.values[column]
            keep = np.isfinite(y)
            A = np.hstack([X[keep], np.ones((int(keep.sum()), 1))])
            w, *_ = np.linalg.lstsq(A, y[keep], rcond=None)
            rel = np.abs(A @ w - y[keep]) / np.maximum(np.abs(y[keep]), 1e-12)
            onehot = X.shape[1] == sum(len(o) for o in self.space.choices().values())
            self._additive[column] = (w[:-1], float(w[-1])) if onehot and rel.max() <= 1e-5 else None
        return self._additive[column]

    def lookup_or_sum(self, arch: Mapping[str, Value], column: str) -> tuple[float, str]:
        """``(value, how)``: the row's value (``how="row"``), or for a network the table has no row for, the
        per-choice sum where the column is one (:meth:`additive`, ``how="per-choice sum"``)."""
        if arch_id(arch) in self._row:
            return self.lookup(arch, column), "row"
        fit = self.additive(column)
        if fit is None:
            return self.lookup(arch, column), "row"  # raises: not in the table, and not a sum
        weights, constant = fit
        return float(self.space.encode(arch).astype(np.float64) @ weights + constant), "per-choice sum"

    def covers(self, space: SearchSpace) -> bool:
        """Whether every member of ``space`` has a row (so any proposal can be looked up)."""
        return len(self) >= space_size(space)


def space_size(space: SearchSpace) -> int:
    """Number of label combinations (an upper bound on distinct members when canonical forms merge some)."""
    return math.prod(len(options) for options in space.choices().values())


def _decode(text: object) -> object:
    """A cell of the architecture column: JSON objects (OFA form) are decoded, strings kept as they are."""
    if isinstance(text, str) and text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidArchError(f"malformed JSON architecture {text[:80]!r}: {err.msg}") from None
    return text


@lru_cache(maxsize=8)
def load_table(path: str, space: SearchSpace, arch_column: str, columns: tuple[str, ...]) -> MetricTable:
    """A :class:`MetricTable`, parsed once per process (an evaluator and a target often read the same file)."""
    return MetricTable(path, space=space, arch_column=arch_column, columns=columns)
