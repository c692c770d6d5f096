"""Latency measurement: exact statistics on a fake clock, real ratio ordering, config validation, targets.

Real timings vary 12-20 % between runs and drift over minutes on the test machines, so real measurements
are only compared as ratios with generous margins, never as absolute times.
"""

from __future__ import annotations

import tempfile
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from nas.arch import Value, arch_id
from nas.errors import ConfigError, DataError
from nas.export import export_onnx
from nas.hardware.measure import MeasureConfig, Measurement, device_description, measure_onnx, summarize
from nas.hardware.targets import LocalCPUTarget, Target
from nas.registry import TARGETS, list_targets
from search_spaces.base import SearchSpace


def conv_net(width: int, depth: int = 2) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)]
    return nn.Sequential(*layers)


def onnx_bytes(model: nn.Module, shape: tuple[int, int, int]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return export_onnx(model, shape, Path(tmp) / "m.onnx").read_bytes()


class FakeClock:
    """Readings such that successive timed runs last exactly ``durations_s`` (read twice per run)."""

    def __init__(self, durations_s: list[float], *, gap_s: float = 0.0) -> None:
        self.readings: list[float] = []
        now = 0.0
        for d in durations_s:
            self.readings += [now, now + d]
            now += d + gap_s
        self.calls = 0

    def __call__(self) -> float:
        reading = self.readings[self.calls]
        self.calls += 1
        return reading


TINY = (3, 8, 8)


@pytest.fixture(scope="module")
def tiny_onnx() -> bytes:
    return onnx_bytes(conv_net(4, 1), TINY)


def test_statistics_on_a_fake_clock(tiny_onnx: bytes) -> None:
    # 10..29 ms plus one 500 ms outlier: median 20, MAD 5 -> tolerance 5 * 1.4826 * 5 = 37 ms rejects only 500.
    durations = [ms / 1e3 for ms in [*range(10, 30), 500]]
    clock = FakeClock(durations)
    config = MeasureConfig(warmup=2, min_repeats=21, max_repeats=21, max_seconds=100.0)
    m = measure_onnx(tiny_onnx, TINY, config, clock=clock)
    assert clock.calls == 2 * 21  # warm-up is not timed
    assert (m.n, m.rejected) == (20, 1)
    assert m.median_ms == pytest.approx(19.5)
    assert m.mean_ms == pytest.approx(19.5)
    assert m.p10_ms == pytest.approx(11.9)  # linear interpolation: 10 + 0.1 * 19
    assert m.p90_ms == pytest.approx(27.1)
    assert m.std_ms == pytest.approx(np.sqrt(35.0))  # sample std of 20 consecutive integers
    assert (m.threads, m.batch, m.input_shape, m.precision) == (1, 1, TINY, "fp32")
    assert m.runtime.startswith("onnxruntime ")
    assert m.provider == "CPUExecutionProvider"


def test_time_budget_stops_after_min_repeats(tiny_onnx: bytes) -> None:
    # 0.5 s runs with a 2 s budget: stop after the 4th run (elapsed 2.0 s), min_repeats 3 already met.
    clock = FakeClock([0.5] * 10)
    config = MeasureConfig(warmup=0, min_repeats=3, max_repeats=10, max_seconds=2.0)
    m = measure_onnx(tiny_onnx, TINY, config, clock=clock)
    assert (m.n + m.rejected, clock.calls) == (4, 8)
    # min_repeats wins over an exhausted budget.
    clock = FakeClock([1.0] * 10)
    config = MeasureConfig(warmup=0, min_repeats=5, max_repeats=10, max_seconds=0.5)
    m = measure_onnx(tiny_onnx, TINY, config, clock=clock)
    assert (m.n, m.rejected, m.median_ms, m.std_ms) == (5, 0, 1000.0, 0.0)


def test_summarize_keeps_equal_readings_of_a_coarse_clock() -> None:
    stats = summarize([0.001] * 9 + [0.001005])  # MAD 0: the 1 % floor keeps the 0.5 % slower sample
    assert (stats["n"], stats["rejected"]) == (10, 0)


def test_bigger_model_measures_slower() -> None:
    small = onnx_bytes(conv_net(4, 1), (3, 16, 16))
    big = onnx_bytes(conv_net(64, 4), (3, 64, 64))  # ~1000x the multiply-adds of `small`
    config = MeasureConfig(warmup=3, min_repeats=10, max_repeats=200, max_seconds=0.3)
    m_small = measure_onnx(small, (3, 16, 16), config)
    m_big = measure_onnx(big, (3, 64, 64), config)
    assert m_big.median_ms > 5 * m_small.median_ms, (m_small.median_ms, m_big.median_ms)
    assert 0 < m_small.p10_ms <= m_small.median_ms <= m_small.p90_ms
    assert m_small.n >= 10


def test_config_validation() -> None:
    bad_configs = (
        dict(threads=0), dict(warmup=-1), dict(min_repeats=2), dict(max_seconds=0), dict(max_seconds=float("nan")),
        dict(min_repeats=50, max_repeats=20), dict(threads=True), dict(provider=""),
    )
    for bad in bad_configs:
        with pytest.raises(ConfigError):
            MeasureConfig(**bad)
    with pytest.raises(ConfigError, match="max_repeats"):
        MeasureConfig(min_repeats=50, max_repeats=20)
    with pytest.raises(TypeError):
        MeasureConfig(2)  # type: ignore[misc]  # keyword-only
    with pytest.raises(ConfigError, match="not available"):
        measure_onnx(b"unused", TINY, MeasureConfig(provider="NoSuchExecutionProvider"))


def test_measurement_round_trips_through_json(tiny_onnx: bytes) -> None:
    config = MeasureConfig(warmup=0, min_repeats=3, max_repeats=3)
    m = measure_onnx(tiny_onnx, TINY, config, clock=FakeClock([0.001] * 3))
    back = Measurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m
    record = m.to_dict()
    del record["median_ms"]
    with pytest.raises(DataError, match="median_ms"):
        Measurement.from_dict(record)
    device = device_description()
    assert set(device) >= {"cpu", "cores", "arch", "os"} and device["cores"] >= 1


class WidthSpace(SearchSpace):
    """A one-choice space of plain conv nets, enough to drive a target."""

    name = "width-test"

    def choices(self) -> dict[str, tuple[Value, ...]]:
        return {"width": (4, 64)}

    def build(self, arch: Mapping[str, Value]) -> nn.Module:
        return conv_net(int(arch["width"]), 1 if arch["width"] == 4 else 4)

    def input_shape(self, arch: Mapping[str, Value]) -> tuple[int, int, int]:
        return (3, 16, 16) if arch["width"] == 4 else (3, 64, 64)


def test_cpu_target_measures_archs_and_keeps_files(tmp_path: Path) -> None:
    assert "cpu" in list_targets() and TARGETS.get("cpu") is LocalCPUTarget
    target = LocalCPUTarget(warmup=2, min_repeats=10, max_repeats=100, max_seconds=0.2, workdir=tmp_path)
    assert isinstance(target, Target) and target.latency_source == "measured"
    space = WidthSpace()
    small, big = {"width": 4}, {"width": 64}
    results = target.measure_many(space, [small, big], progress=False)
    assert [m.input_shape for m in results] == [(3, 16, 16), (3, 64, 64)]
    assert results[1].median_ms > 5 * results[0].median_ms
    assert (tmp_path / f"{arch_id(small)}.onnx").is_file()
    desc = json.loads(json.dumps(target.describe()))
    assert desc["target"] == "cpu" and desc["measure"]["threads"] == 1
    with pytest.raises(ConfigError):
        LocalCPUTarget(threads=0)
    with pytest.raises(TypeError):
        LocalCPUTarget(1)  # type: ignore[misc]  # keyword-only
