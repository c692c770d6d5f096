"""A persistent store of latency measurements (SQLite), so nothing is measured twice and nothing is lost.

Each row is keyed by ``(target_key, arch_id, conditions_key)``:

- ``target_key`` identifies the device and how it runs models (:meth:`nas.hardware.targets.Target.target_key`:
  a short hash of the target name, device description, runtime, provider and threads);
- ``arch_id`` is :func:`nas.arch.arch_id` of the architecture;
- ``conditions_key`` is a short hash of the canonical JSON of the measurement conditions (input shape,
  batch, precision, reference correction ...), stored beside it in readable form.

The row also keeps the space name, the arch in its canonical JSON form and the full
:meth:`~nas.hardware.measure.Measurement.to_dict` JSON. Every :meth:`MeasurementStore.put` is its own
committed transaction, so a run that crashes loses at most the measurement in flight. The database is in
WAL mode with a busy timeout, so several processes (parallel searches on one machine, or a search and a
notebook reading results) can write and read at once.

Reference baselines (:mod:`nas.hardware.measure`) are kept per target key too, so latencies corrected
against the reference stay comparable across sessions.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nas.arch import canonical_json
from nas.errors import ConfigError, DataError
from nas.hardware.measure import Measurement

STORE_FILENAME = "measurements.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    target_key TEXT NOT NULL,
    arch_id TEXT NOT NULL,
    conditions_key TEXT NOT NULL,
    space TEXT,
    arch TEXT,
    arch_str TEXT,
    conditions TEXT NOT NULL,
    target TEXT,
    median_ms REAL NOT NULL,
    measurement TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (target_key, arch_id, conditions_key)
);
CREATE INDEX IF NOT EXISTS measurements_by_space ON measurements (space);
CREATE TABLE IF NOT EXISTS baselines (
    target_key TEXT NOT NULL,
    reference TEXT NOT NULL,
    baseline_ms REAL NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (target_key, reference)
);
"""
# Seconds a writer waits for another process's transaction before giving up (each put is milliseconds long).
_BUSY_TIMEOUT_S = 60.0


def default_cache_dir() -> Path:
    """``$HWNAS_CACHE`` or ``~/.cache/hwnas`` (the same default as the ``cache_dir`` config key)."""
    return Path(os.environ.get("HWNAS_CACHE") or Path.home() / ".cache" / "hwnas").expanduser()


def default_store_path(cache_dir: str | Path | None = None) -> Path:
    """``<cache_dir>/measurements.sqlite`` (``cache_dir`` defaults to :func:`default_cache_dir`)."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / STORE_FILENAME


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=list)


def conditions_key(conditions: Mapping[str, Any]) -> str:
    """Short stable hash of the canonical JSON of ``conditions``."""
    if not isinstance(conditions, Mapping):
        raise ConfigError(f"measurement conditions must be a mapping, got {type(conditions).__name__}")
    return hashlib.sha256(_canonical(conditions).encode()).hexdigest()[:16]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class MeasurementStore:
    """Measurements in one SQLite file (created with its parent directory on first use)."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is not None and not isinstance(path, (str, Path)):
            raise ConfigError(f"measurement store path must be a file path, got {type(path).__name__}")
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        if self.path.suffix in (".csv", ".parquet"):
            raise ConfigError(
                f"measurement store path {self.path} looks like an export file; give a .sqlite path "
                f"(use MeasurementStore.export to write CSV or Parquet)"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                # WAL lets readers and one writer work at once; it is a property of the file, set once.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(measurements)")}
                if "arch_str" not in columns:  # a store written before arch_str existed: add the column
                    conn.execute("ALTER TABLE measurements ADD COLUMN arch_str TEXT")
        except sqlite3.DatabaseError as err:
            raise DataError(
                f"cannot open the measurement store {self.path}: {err}. If the file is not an hwnas store, "
                f"move it away or configure another path"
            ) from err
        except OSError as err:
            raise ConfigError(f"cannot create the measurement store {self.path}: {err}") from err

    def __repr__(self) -> str:
        return f"MeasurementStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        # One short-lived connection per operation: safe across threads and forked processes, and cheap
        # next to a measurement (~0.1 ms).
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable against a crashed process
        return conn

    def get(self, target_key: str, arch_id: str, conditions: Mapping[str, Any]) -> Measurement | None:
        """The stored measurement of ``arch_id`` on ``target_key`` under ``conditions``, or None."""
        with self._closing() as conn:
            row = conn.execute(
                "SELECT measurement FROM measurements WHERE target_key=? AND arch_id=? AND conditions_key=?",
                (target_key, arch_id, conditions_key(conditions)),
            ).fetchone()
        if row is None:
            return None
        try:
            return Measurement.from_dict(json.loads(row[0]))
        except (ValueError, DataError) as err:
            raise DataError(
                f"stored measurement of arch {arch_id} on target {target_key} in {self.path} is malformed: {err}; "
                f"remeasure it (remeasure=True) or delete the store"
            ) from err

    def put(
        self,
        target_key: str,
        arch_id: str,
        conditions: Mapping[str, Any],
        measurement: Measurement,
        *,
        space: str | None = None,
        arch: Mapping[str, Any] | None = None,
        arch_str: str | None = None,
        target: Mapping[str, Any] | None = None,
    ) -> None:
        """Store (or replace) one measurement and commit it at once.

        ``space``, ``arch`` (the flat arch dict, stored as canonical JSON), ``arch_str`` (the arch in the
        space's public string form, the column ``python -m predictors`` reads from an export) and ``target``
        (its describe()) are descriptive; left out on a replacing put, the earlier values stay.
        """
        if not isinstance(measurement, Measurement):
            raise ConfigError(f"put() needs a Measurement, got {type(measurement).__name__}")
        for name, value in (("target_key", target_key), ("arch_id", arch_id)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"put() needs a non-empty string {name}, got {value!r}")
        row = (
            target_key, arch_id, conditions_key(conditions), space,
            canonical_json(arch) if arch is not None else None, arch_str,
            _canonical(dict(conditions)), _canonical(dict(target)) if target is not None else None,
            float(measurement.median_ms), json.dumps(measurement.to_dict()), _now(),
        )
        with self._closing() as conn:
            # Replace the measurement; keep the descriptive columns of an earlier put that this one leaves out.
            conn.execute(
                "INSERT INTO measurements (target_key, arch_id, conditions_key, space, arch, arch_str, conditions, "
                "target, median_ms, measurement, created) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (target_key, arch_id, conditions_key) DO UPDATE SET "
                "space=COALESCE(excluded.space, space), arch=COALESCE(excluded.arch, arch), "
                "arch_str=COALESCE(excluded.arch_str, arch_str), "
                "target=COALESCE(excluded.target, target), conditions=excluded.conditions, "
                "median_ms=excluded.median_ms, measurement=excluded.measurement, created=excluded.created",
                row,
            )

    def get_baseline(self, target_key: str, reference: str) -> float | None:
        """The stored reference baseline (ms) of ``reference`` (its content hash) on ``target_key``, or None."""
        with self._closing() as conn:
            row = conn.execute(
                "SELECT baseline_ms FROM baselines WHERE target_key=? AND reference=?", (target_key, reference)
            ).fetchone()
        return None if row is None else float(row[0])

    def put_baseline(self, target_key: str, reference: str, baseline_ms: float) -> float:
        """Store a baseline unless one exists (first writer wins, so all processes agree); returns the stored one."""
        with self._closing() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO baselines (target_key, reference, baseline_ms, created) VALUES (?,?,?,?)",
                (target_key, reference, float(baseline_ms), _now())
            )
            return float(conn.execute(
                "SELECT baseline_ms FROM baselines WHERE target_key=? AND reference=?", (target_key, reference)
            ).fetchone()[0])

    def records(self, target_key: str | None = None, space: str | None = None) -> list[dict[str, Any]]:
        """All stored rows (optionally of one target key and/or space), oldest first, JSON columns parsed."""
        where, args = [], []
        if target_key is not None:
            where.append("target_key=?")
            args.append(target_key)
        if space is not None:
            where.append("space=?")
            args.append(space)
        sql = "SELECT * FROM measurements" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY rowid"
        with self._closing() as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(sql, args).fetchall()
        out = []
        for row in rows:
            record = dict(row)
            for column in ("arch", "conditions", "target", "measurement"):
                if record[column] is not None:
                    record[column] = json.loads(record[column])
            out.append(record)
        return out

    def __len__(self) -> int:
        with self._closing() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])

    def export(self, path: str | Path, *, target_key: str | None = None, space: str | None = None) -> Path:
        """Write the records as a flat table to ``path``: CSV (``.csv``) or Parquet (``.parquet``).

        Measurement fields become columns (``median_ms``, ``p10_ms`` ...); nested values (arch, conditions,
        device, reference) are JSON text so the table stays flat.
        """
        import pandas as pd

        path = Path(path)
        if path.suffix not in (".csv", ".parquet"):
            raise ConfigError(f"cannot export measurements to {path}: use a .csv or .parquet file name")
        rows = []
        for record in self.records(target_key=target_key, space=space):
            measurement = record.pop("measurement")
            flat = {k: (_canonical(v) if isinstance(v, (dict, list)) else v) for k, v in record.items()}
            for key, value in measurement.items():
                flat.setdefault(key, _canonical(value) if isinstance(value, (dict, list)) else value)
            rows.append(flat)
        frame = pd.DataFrame(rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        return path

    @contextlib.contextmanager
    def _closing(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m nas.hardware.store export OUT [--store PATH] [--space NAME] [--target-key KEY]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m nas.hardware.store",
                                     description="Export stored latency measurements to CSV or Parquet.")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the stored measurements to OUT (.csv or .parquet)")
    export.add_argument("out", type=Path)
    export.add_argument("--store", type=Path, default=None, help=f"default: {default_store_path()}")
    export.add_argument("--space", default=None)
    export.add_argument("--target-key", default=None)
    args = parser.parse_args(argv)
    try:
        if args.store is not None and not args.store.is_file():
            raise DataError(f"no measurement store at {args.store}; searches write one to <cache_dir>/{STORE_FILENAME}")
        store = MeasurementStore(args.store)
        path = store.export(args.out, target_key=args.target_key, space=args.space)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(store.records(target_key=args.target_key, space=args.space))} measurements to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
