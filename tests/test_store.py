"""The SQLite measurement store: round-trip, concurrent writers, crash safety, export, and Target caching."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pytest
from torch import nn

from nas.arch import Value, arch_id
from nas.errors import ConfigError, DataError
from nas.hardware.measure import Measurement
from nas.hardware.reference import reference_sha256
from nas.hardware.store import MeasurementStore, conditions_key, default_store_path
from nas.hardware.targets import LocalCPUTarget, Target
from search_spaces.base import SearchSpace

ROOT = Path(__file__).resolve().parent.parent
COND = {"batch": 1, "input_shape": [3, 8, 8], "precision": "fp32"}


def fake_measurement(median_ms: float = 1.5, **extra) -> Measurement:
    return Measurement(median_ms=median_ms, mean_ms=median_ms, p10_ms=median_ms, p90_ms=median_ms, std_ms=0.0, n=5,
                       rejected=0, threads=1, provider="CPUExecutionProvider", runtime="onnxruntime 0",
                       device={"cpu": "test"}, batch=1, input_shape=(3, 8, 8), precision="fp32", **extra)


def test_round_trip_and_keys(tmp_path: Path) -> None:
    store = MeasurementStore(tmp_path / "sub" / "m.sqlite")
    assert len(store) == 0 and store.get("t", "a", COND) is None
    m = fake_measurement(reference={"baseline_ms": 2.0, "ratio_median": 0.75}, stop_reason="stable")
    store.put("t", "a", COND, m, space="toy", arch={"width": 4}, target={"target": "cpu"})
    assert store.get("t", "a", COND) == m
    assert store.get("t", "a", {**COND, "batch": 2}) is None  # other conditions: not the same measurement
    assert store.get("other-target", "a", COND) is None
    assert conditions_key(dict(reversed(list(COND.items())))) == conditions_key(COND)  # key order is irrelevant
    store.put("t", "a", COND, fake_measurement(3.0))  # remeasured: replaces
    assert store.get("t", "a", COND).median_ms == 3.0 and len(store) == 1
    store.put("t2", "b", COND, fake_measurement(4.0), space="other")
    [record] = store.records(space="toy")
    assert (record["target_key"], record["arch_id"], record["conditions"]) == ("t", "a", COND)
    assert record["arch"] == {"width": 4} and record["measurement"]["median_ms"] == 3.0
    assert [r["arch_id"] for r in store.records()] == ["a", "b"]
    assert [r["arch_id"] for r in store.records(target_key="t2")] == ["b"]
    # reopening sees everything (each put is committed)
    assert MeasurementStore(store.path).get("t2", "b", COND).median_ms == 4.0
    assert store.put_baseline("t", "ref", 1.25) == 1.25
    assert store.put_baseline("t", "ref", 9.0) == 1.25  # first writer wins
    assert store.get_baseline("t", "ref") == 1.25 and store.get_baseline("t", "other") is None


def test_bad_paths_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="export"):
        MeasurementStore(tmp_path / "m.csv")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match="junk.sqlite"):
        MeasurementStore(junk)
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))
    assert default_store_path() == tmp_path / "cache" / "measurements.sqlite"
    assert default_store_path("/x/y") == Path("/x/y/measurements.sqlite")


WRITER = textwrap.dedent("""
    import sys
    from nas.hardware.measure import Measurement
    from nas.hardware.store import MeasurementStore
    store = MeasurementStore(sys.argv[1])
    prefix, count = sys.argv[2], int(sys.argv[3])
    m = Measurement(median_ms=1.0, mean_ms=1.0, p10_ms=1.0, p90_ms=1.0, std_ms=0.0, n=1, rejected=0, threads=1,
                    provider="CPUExecutionProvider", runtime="onnxruntime 0", device={}, batch=1,
                    input_shape=(3, 8, 8), precision="fp32")
    for i in range(count):
        store.put("t", f"{prefix}{i}", {"batch": 1}, m, space="toy")
        print(i, flush=True)  # printed after the commit: the parent may count it as stored
""")


def _writer(path: Path, prefix: str, count: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), prefix, str(count)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    MeasurementStore(path)  # create the schema first so both writers start on the same file
    writers = [_writer(path, prefix, 150) for prefix in ("a", "b")]
    for proc in writers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = MeasurementStore(path)
    assert len(store) == 300
    assert {r["arch_id"] for r in store.records()} == {f"{p}{i}" for p in "ab" for i in range(150)}


def test_killed_writer_loses_no_committed_measurement(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    proc = _writer(path, "k", 100_000)
    committed = -1
    deadline = time.monotonic() + 60
    while committed < 50 and time.monotonic() < deadline:
        committed = int(proc.stdout.readline())  # type: ignore[union-attr]
    os.kill(proc.pid, signal.SIGKILL)  # mid-loop, no cleanup of any kind
    proc.wait(10)
    assert committed >= 50
    stored = {r["arch_id"] for r in MeasurementStore(path).records()}
    assert {f"k{i}" for i in range(committed + 1)} <= stored
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_export_csv_and_parquet(tmp_path: Path) -> None:
    store = MeasurementStore(tmp_path / "m.sqlite")
    for i, width in enumerate((4, 8)):
        store.put("t", f"a{i}", COND, fake_measurement(1.0 + i, reference={"baseline_ms": 2.0}), space="toy",
                  arch={"width": width})
    for suffix in ("csv", "parquet"):
        out = store.export(tmp_path / f"m.{suffix}")
        frame = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
        assert list(frame["arch_id"]) == ["a0", "a1"] and list(frame["median_ms"]) == [1.0, 2.0]
        assert {"target_key", "space", "arch", "conditions", "p10_ms", "n", "threads", "reference"} <= set(frame)
        assert frame["arch"].iloc[1] == '{"width":8}'
    with pytest.raises(ConfigError, match=".csv or .parquet"):
        store.export(tmp_path / "m.xlsx")


class ToySpace(SearchSpace):
    name = "store-toy"

    def choices(self) -> dict[str, tuple[Value, ...]]:
        return {"width": (2, 4)}

    def build(self, arch: Mapping[str, Value]) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, int(arch["width"]), 3), nn.ReLU())

    def input_shape(self, arch: Mapping[str, Value]) -> tuple[int, int, int]:
        return (3, 8, 8)


class CountingTarget(Target):
    """Returns a fixed measurement per file and counts how often it really 'times' one."""

    name = "counting"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.timed = 0

    def describe(self) -> dict:
        return {"target": self.name, "device": {"cpu": "fake"}}

    def measure_onnx_file(self, path: Path, input_shape: tuple[int, int, int]) -> Measurement:
        self.timed += 1
        return fake_measurement(float(self.timed))


def test_target_measure_uses_the_store(tmp_path: Path) -> None:
    space = ToySpace()
    target = CountingTarget(store=tmp_path / "m.sqlite")
    first = target.measure(space, {"width": 2})
    assert target.measure(space, {"width": 2}) == first and target.timed == 1  # served from the store
    target.measure(space, {"width": 4})
    assert target.timed == 2 and target.measured_count == 2
    assert target.measure(space, {"width": 2}, remeasure=True).median_ms == 3.0 and target.timed == 3
    # a new process (here: a new target object on the same file) finds the stored measurements
    fresh = CountingTarget().use_store(MeasurementStore(tmp_path / "m.sqlite"))
    fresh.measure_many(space, [{"width": 2}, {"width": 4}], progress=False)
    assert fresh.timed == 0
    [record] = fresh.store.records(space="store-toy")[:1]  # type: ignore[union-attr]
    assert record["arch_id"] == arch_id({"width": 2}) and record["target_key"] == target.target_key()
    assert record["target"] == target.describe()
    assert record["arch_str"] == '{"width":2}'  # the public form (JSON when the space has no string form)
    with pytest.raises(ConfigError, match="store"):
        CountingTarget(store=42)


def test_export_cli_and_a_store_from_before_arch_str(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # the schema before the arch_str column existed
        conn.execute("CREATE TABLE measurements (target_key TEXT NOT NULL, arch_id TEXT NOT NULL, "
                     "conditions_key TEXT NOT NULL, space TEXT, arch TEXT, conditions TEXT NOT NULL, target TEXT, "
                     "median_ms REAL NOT NULL, measurement TEXT NOT NULL, created TEXT NOT NULL, "
                     "PRIMARY KEY (target_key, arch_id, conditions_key))")
    target = CountingTarget(store=path)
    target.measure(ToySpace(), {"width": 2})
    out = tmp_path / "m.csv"
    proc = subprocess.run([sys.executable, "-m", "nas.hardware.store", "export", str(out), "--store", str(path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(out)
    assert list(frame["arch_id"]) == [arch_id({"width": 2})] and "arch_str" in frame and "median_ms" in frame
    proc = subprocess.run([sys.executable, "-m", "nas.hardware.store", "export", str(out), "--store",
                           str(tmp_path / "missing.sqlite")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no measurement store")


def test_cpu_target_keeps_its_reference_baseline_in_the_store(tmp_path: Path) -> None:
    space = ToySpace()
    kwargs = dict(warmup=1, min_repeats=5, max_repeats=50, max_seconds=0.1, store=tmp_path / "m.sqlite")
    target = LocalCPUTarget(**kwargs)
    m = target.measure(space, {"width": 2})
    assert m.reference is not None
    stored = target.store.get_baseline(target.target_key(), reference_sha256())  # type: ignore[union-attr]
    assert stored == m.reference["baseline_ms"]
    # another session's target on the same store corrects against the same baseline
    other = LocalCPUTarget(**kwargs)
    assert other.target_key() == target.target_key()
    m4 = other.measure(space, {"width": 4})
    assert m4.reference is not None and m4.reference["baseline_ms"] == stored and other.measured_count == 1
    assert "reference" in target.conditions((3, 8, 8))
    assert LocalCPUTarget(threads=2).target_key() != target.target_key()


def test_cpu_target_losing_a_baseline_race_rescales_to_the_stored_one(tmp_path: Path) -> None:
    target = LocalCPUTarget(warmup=1, min_repeats=5, max_repeats=50, max_seconds=0.1, store=tmp_path / "m.sqlite")
    target.store.put_baseline(target.target_key(), reference_sha256(), 123.0)  # type: ignore[union-attr]
    target._known_baseline = lambda: None  # type: ignore[method-assign]  # as if the other process came later
    m = target.measure(ToySpace(), {"width": 2})
    assert m.reference is not None and m.reference["baseline_ms"] == 123.0
    assert m.median_ms == pytest.approx(123.0 * m.reference["ratio_median"])
    assert target.store.get(target.target_key(), arch_id({"width": 2}), target.conditions((3, 8, 8))) == m
