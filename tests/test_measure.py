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
from nas.hardware.measure import (
    MeasureConfig, Measurement, device_description, measure_onnx, measure_onnx_together, median_ci_rel,
    reference_baseline, summarize,
)
from nas.hardware.reference import REFERENCE_PATH, build_reference_model, reference_model
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
    config = MeasureConfig(warmup=0, min_repeats=3, max_repeats=10, max_seconds=2.0, stable_ci=None)
    m = measure_onnx(tiny_onnx, TINY, config, clock=clock)
    assert (m.n + m.rejected, clock.calls, m.stop_reason) == (4, 8, "max_seconds")
    # min_repeats wins over an exhausted budget.
    clock = FakeClock([1.0] * 10)
    config = MeasureConfig(warmup=0, min_repeats=5, max_repeats=10, max_seconds=0.5, stable_ci=None)
    m = measure_onnx(tiny_onnx, TINY, config, clock=clock)
    assert (m.n, m.rejected, m.median_ms, m.std_ms) == (5, 0, 1000.0, 0.0)


def test_stop_when_stable_stops_early_on_constant_durations(tiny_onnx: bytes) -> None:
    clock = FakeClock([0.002] * 100)
    config = MeasureConfig(warmup=0, min_repeats=5, max_repeats=100, max_seconds=100.0, stable_ci=0.01)
    m = measure_onnx(tiny_onnx, TINY, config, clock=clock)
    assert (m.n, clock.calls, m.stop_reason, m.ci_rel) == (5, 10, "stable", 0.0)


def test_stop_when_stable_runs_to_max_on_noisy_durations(tiny_onnx: bytes) -> None:
    # Durations alternating 1 ms and 3 ms: the CI of the median spans both values whatever n is.
    clock = FakeClock([0.001, 0.003] * 20)
    config = MeasureConfig(warmup=0, min_repeats=5, max_repeats=40, max_seconds=100.0, stable_ci=0.05)
    m = measure_onnx(tiny_onnx, TINY, config, clock=clock)
    assert (m.n + m.rejected, clock.calls, m.stop_reason) == (40, 80, "max_repeats")
    assert m.ci_rel is not None and m.ci_rel > 0.05


def test_median_ci_is_an_order_statistic_interval() -> None:
    assert median_ci_rel([1.0]) == float("inf")
    assert median_ci_rel([2.0] * 10) == 0.0
    # n=100: l = floor(50 - 9.8) - 1 = 39, u = ceil(59.8) = 60 (0-based): values 40 and 61 around median 50.5.
    assert median_ci_rel(np.arange(1.0, 101.0)) == pytest.approx((61 - 40) / 2 / 50.5)


def test_reference_ratio_cancels_a_midway_slowdown(tiny_onnx: bytes) -> None:
    # Pairs (ref 1 ms, cand 3 ms) for 20 rounds, then the machine slows 1.5x for 20 more: the ratio stays 3.
    steady, slow = [0.001, 0.003] * 20, [0.0015, 0.0045] * 20
    config = MeasureConfig(warmup=1, min_repeats=40, max_repeats=40, max_seconds=100.0, stable_ci=None, reference=True,
                           reference_block=1)
    m = measure_onnx(tiny_onnx, TINY, config, clock=FakeClock(steady + slow), reference_ms=2.0)
    assert m.median_ms == pytest.approx(6.0) and m.p10_ms == pytest.approx(6.0) and m.p90_ms == pytest.approx(6.0)
    assert (m.n, m.rejected, m.stop_reason) == (40, 0, "max_repeats")
    assert m.reference is not None and m.raw is not None
    assert m.reference["baseline_ms"] == 2.0 and m.reference["ratio_median"] == pytest.approx(3.0)
    assert m.reference["median_ms"] == pytest.approx(1.25)  # raw reference: median of 20 x 1.0 and 20 x 1.5
    assert m.raw["median_ms"] == pytest.approx(3.75)  # the uncorrected candidate sees the slowdown
    # The same candidate measured entirely on the slow machine gets the same corrected latency.
    m_slow = measure_onnx(tiny_onnx, TINY, config, clock=FakeClock(slow * 2), reference_ms=2.0)
    assert m_slow.median_ms == pytest.approx(m.median_ms)
    assert m_slow.raw is not None and m_slow.raw["median_ms"] == pytest.approx(4.5)
    with pytest.raises(ConfigError, match="reference_ms"):
        measure_onnx(tiny_onnx, TINY, config, reference_ms=-1.0)


def test_reference_blocks_divide_each_candidate_block_by_its_reference_block(tiny_onnx: bytes) -> None:
    # Blocks of 4: (ref 1 ms x4, cand 3 ms x4), then the machine slows 2x: (ref 2 ms x4, cand 6 ms x4).
    durations = [0.001] * 4 + [0.003] * 4 + [0.002] * 4 + [0.006] * 4
    config = MeasureConfig(warmup=0, min_repeats=8, max_repeats=8, max_seconds=100.0, stable_ci=None, reference=True,
                           reference_block=4)
    clock = FakeClock(durations)
    m = measure_onnx(tiny_onnx, TINY, config, clock=clock, reference_ms=1.0)
    assert clock.calls == 2 * len(durations)  # only timed runs read the clock, not the re-warm runs
    assert m.median_ms == pytest.approx(3.0) and m.p90_ms == pytest.approx(3.0) and m.n == 8
    assert m.raw is not None and m.raw["median_ms"] == pytest.approx(4.5)


def test_models_measured_together_take_their_blocks_in_turn_after_the_reference(tiny_onnx: bytes) -> None:
    # Rounds of blocks of 2: ref 1 ms, model A 2 ms, model B 4 ms; then the machine slows 3x for a round, in which
    # the candidates take their turns in the other order (ref, B, A: the order turns each round, against a bias
    # by place).
    fast, slow = [0.001] * 2 + [0.002] * 2 + [0.004] * 2, [0.003] * 2 + [0.012] * 2 + [0.006] * 2
    config = MeasureConfig(warmup=0, min_repeats=4, max_repeats=4, max_seconds=100.0, stable_ci=None,
                           reference=True, reference_block=2)
    clock = FakeClock(fast + slow)
    a, b = measure_onnx_together([tiny_onnx, tiny_onnx], [TINY, TINY], config, clock=clock, reference_ms=1.0)
    assert clock.calls == 2 * 12
    assert (a.median_ms, b.median_ms) == (pytest.approx(2.0), pytest.approx(4.0))  # the slow round cancels out
    assert a.raw["median_ms"] == pytest.approx(4.0) and b.raw["median_ms"] == pytest.approx(8.0)
    assert a.n == b.n == 4 and a.stop_reason == b.stop_reason == "max_repeats"
    with pytest.raises(ConfigError, match="one input shape per model"):
        measure_onnx_together([tiny_onnx, tiny_onnx], [TINY], config)


def test_real_models_measured_together_keep_their_order_and_one_baseline() -> None:
    # Real timings: the same two networks measured together keep their ratio (what a channel run compares).
    small, big = onnx_bytes(conv_net(8, 2), (3, 16, 16)), onnx_bytes(conv_net(32, 2), (3, 16, 16))
    config = MeasureConfig(warmup=3, min_repeats=20, max_repeats=200, max_seconds=0.3, reference=True)
    ratios = []
    for _ in range(3):
        m_small, m_big = measure_onnx_together([small, big], [(3, 16, 16)] * 2, config)
        ratios.append(m_big.median_ms / m_small.median_ms)
        assert m_small.reference is not None and m_big.reference["baseline_ms"] == m_small.reference["baseline_ms"]
    assert min(ratios) > 1.5 and max(ratios) / min(ratios) < 1.5


def test_reference_baseline_is_established_once_per_process(tiny_onnx: bytes) -> None:
    config = MeasureConfig(warmup=0, min_repeats=3, max_repeats=3, stable_ci=None, reference=True, threads=1,
                           reference_block=1)
    baseline = reference_baseline(config, refresh=True, clock=FakeClock([0.004] * 3))
    assert baseline == pytest.approx(4.0)
    assert reference_baseline(config) == baseline  # cached: no clock needed
    # measure_onnx without reference_ms uses it: 3 pairs of (ref 1 ms, cand 2 ms) -> 2 x 4 ms.
    m = measure_onnx(tiny_onnx, TINY, config, clock=FakeClock([0.001, 0.002] * 3))
    assert m.median_ms == pytest.approx(8.0) and m.reference is not None and m.reference["baseline_ms"] == baseline
    # leave a properly measured baseline behind for later tests in this process
    reference_baseline(MeasureConfig(reference=True, threads=1), refresh=True)


def test_reference_model_is_shipped_and_reproducible() -> None:
    assert REFERENCE_PATH.is_file()
    assert reference_model() == build_reference_model()  # regenerate with python -m nas.hardware.reference


def test_real_reference_corrected_measurement() -> None:
    small = onnx_bytes(conv_net(4, 1), (3, 16, 16))
    big = onnx_bytes(conv_net(64, 4), (3, 64, 64))
    config = MeasureConfig(warmup=3, min_repeats=10, max_repeats=200, max_seconds=0.3, reference=True)
    m_small = measure_onnx(small, (3, 16, 16), config)
    m_big = measure_onnx(big, (3, 64, 64), config)
    assert m_big.median_ms > 5 * m_small.median_ms
    for m in (m_small, m_big):
        assert m.reference is not None and m.raw is not None
        assert m.stop_reason in ("stable", "max_seconds", "max_repeats")
        assert m.reference["baseline_ms"] == m_small.reference["baseline_ms"]  # type: ignore[index]
        # corrected and raw medians agree within the machine's drift (ratios only, generous margin)
        assert 0.4 < m.median_ms / m.raw["median_ms"] < 2.5


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
        dict(stable_ci=0), dict(stable_ci=1.5), dict(stable_ci=float("inf")), dict(reference="yes"),
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
    # records written before the protocol fields existed still load
    old = {k: v for k, v in m.to_dict().items() if k not in ("spread", "ci_rel", "stop_reason", "reference", "raw")}
    assert Measurement.from_dict(old).reference is None
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


def test_cpu_target_measures_archs_together_and_stores_them(tmp_path: Path) -> None:
    from nas.hardware.store import MeasurementStore

    store = MeasurementStore(tmp_path / "m.sqlite")
    target = LocalCPUTarget(warmup=2, min_repeats=10, max_repeats=100, max_seconds=0.2, store=store)
    space = WidthSpace()
    small, big = target.measure_together(space, [{"width": 4}, {"width": 64}])
    assert (small.input_shape, big.input_shape) == ((3, 16, 16), (3, 64, 64))
    assert big.median_ms > 5 * small.median_ms and target.measured_count == 2
    assert small.reference["baseline_ms"] == big.reference["baseline_ms"] == target._known_baseline()
    # stored like single measurements: measure() serves them without timing again
    assert target.measure(space, {"width": 64}).median_ms == big.median_ms and target.measured_count == 2
