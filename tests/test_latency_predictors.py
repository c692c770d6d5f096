"""Latency predictors: save/load round trips, kernel decomposition vs torch MAC counts, LUT tables, fits on
the shared real measurements (HW-NAS-Bench via HELP), few-shot transfer."""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from nas.errors import ConfigError, DataError, ModelError
from predictors.additive import nnls
from predictors.base import load_predictor
from predictors.latency import MODELS, fit_latency_model, load_latency_model, make_latency_predictor
from predictors.lut import LUTPredictor, parse_lut_key, read_lut_yaml
from predictors.metrics import latency_metrics
from predictors.transfer import CalibrationPredictor, TransferLatencyModel, load_transfer_model
from search_spaces.fbnet import FBNetSpace
from search_spaces.kernels import flops, kernels, nb201_canonical_ops, params
from search_spaces.nb201 import LABELS as NB201_LABELS
from search_spaces.nb201 import NB201Space
from search_spaces.ofa import OFASpace
from search_spaces.profile import count_macs

DATA = Path("/work/shared/data/hw-nas-bench-help")
LUTS = Path("/work/shared/data/ofa-latency-luts")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared HW-NAS-Bench data not present")
NEW_PREDICTORS = ("lut", "kernel", "flops", "params", "gbdt", "transfer")


def toy(n: int = 120, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(n, d)).astype(np.float64) + 0.5
    return X, 1.0 + X @ rng.uniform(0.2, 1.0, d)


@lru_cache(maxsize=None)
def table(name: str):
    import pandas as pd

    return pd.read_csv(DATA / name)


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", NEW_PREDICTORS)
def test_new_predictors_round_trip_bit_identically(name: str, tmp_path: Path) -> None:
    from nas.registry import PREDICTORS

    X, y = toy()
    small = {"gbdt": {"n_trees": 30}}.get(name, {})
    predictor = PREDICTORS.get(name)(**small).fit(X[:100], y[:100])
    before = predictor.predict(X[100:])
    loaded = load_predictor(predictor.save(tmp_path / name))
    assert type(loaded) is type(predictor) and loaded.hyperparameters() == predictor.hyperparameters()
    np.testing.assert_array_equal(loaded.predict(X[100:]), before)
    assert latency_metrics(y[100:], before)["spearman"] > 0.8


def test_latency_and_transfer_models_round_trip(tmp_path: Path) -> None:
    space = OFASpace()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(40)]
    y = np.array([1.0 + flops(space, a) / 1e8 for a in archs])
    model = fit_latency_model(space, archs[:30], y[:30], "kernel")
    loaded = load_latency_model(model.save(tmp_path / "m"))
    assert loaded.space.config() == space.config() and loaded.name == "kernel"
    np.testing.assert_array_equal(loaded.predict(archs[30:]), model.predict(archs[30:]))
    prior = TransferLatencyModel.from_sources({"prior": model}).calibrate(archs[:8], 2.0 * y[:8])
    again = load_transfer_model(prior.save(tmp_path / "t"))
    np.testing.assert_array_equal(again.predict(archs[30:]), prior.predict(archs[30:]))
    np.testing.assert_allclose(prior.predict(archs[30:]), 2.0 * y[30:], rtol=0.05)
    with pytest.raises(ModelError, match="not a latency model"):
        load_latency_model(CalibrationPredictor().fit(*toy()).save(tmp_path / "c"))


def test_factory_names_and_errors() -> None:
    for name in MODELS:
        predictor, kind = make_latency_predictor(name)
        assert predictor.name and kind
    with pytest.raises(ConfigError, match="unknown latency predictor"):
        make_latency_predictor("nope")
    with pytest.raises(DataError, match="at least 2"):
        fit_latency_model(NB201Space(), [NB201Space().sample(np.random.default_rng(0))], [float("nan")])


def test_nnls_matches_brute_force_over_active_sets() -> None:
    rng = np.random.default_rng(1)
    A, b = rng.standard_normal((20, 4)), rng.standard_normal(20)
    best = np.inf
    for mask in itertools.product([0, 1], repeat=4):
        idx = np.flatnonzero(mask)
        x = np.zeros(4)
        if idx.size:
            x[idx] = np.linalg.lstsq(A[:, idx], b, rcond=None)[0]
        if np.all(x >= 0):
            best = min(best, float(np.sum((A @ x - b) ** 2)))
    x = nnls(A, b)
    assert np.all(x >= 0) and np.sum((A @ x - b) ** 2) == pytest.approx(best, rel=1e-9)


def test_latency_metrics_floor_keeps_mape_finite() -> None:
    y = np.array([10.0, 12.0, 0.01, 11.0])
    m = latency_metrics(y, np.array([10.5, 12.0, 0.5, 11.0]))
    assert m["mape"] < 30 and m["n_test"] == 4 and set(m) >= {"rmse_ms", "within_5pct", "within_10pct", "kendall"}


# ---------------------------------------------------------------------------------------------- kernels
def test_nb201_all_conv_flops_match_torch_mac_count() -> None:
    space = NB201Space()
    arch = {label: "nor_conv_3x3" for label in space.choices()}
    assert flops(space, arch) == count_macs(space.build(arch), space.input_shape(arch))
    assert params(space, arch) > 0 and {k.kind for k in kernels(space, arch)} >= {"conv", "add", "gpool", "linear"}


def test_nb201_dead_edges_and_isomorphic_cells() -> None:
    space = NB201Space()
    no_path = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|")
    assert kernels(space, no_path) == [] and flops(space, no_path) == 0
    a = space.parse("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|")
    b = space.parse("|skip_connect~0|+|nor_conv_3x3~0|none~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    assert nb201_canonical_ops(a) == nb201_canonical_ops(b)
    assert len(nb201_canonical_ops(a)) == len(NB201_LABELS)


@pytest.mark.parametrize("space", [FBNetSpace(), OFASpace()], ids=["fbnet", "ofa"])
def test_kernel_flops_match_torch_mac_count(space) -> None:
    rng = np.random.default_rng(3)
    for _ in range(3):
        arch = space.sample(rng)
        torch_macs = count_macs(space.build(arch), space.input_shape(arch))
        assert flops(space, arch) == pytest.approx(torch_macs, rel=0.02)


# ---------------------------------------------------------------------------------------------- LUT tables
def test_lut_yaml_of_the_shared_pixel1_table() -> None:
    path = LUTS / "proxylessnas_pixel1" / "pixel_trim.yaml"
    if not path.is_file():
        pytest.skip("shared LUT tables not present")
    lut = read_lut_yaml(path)
    assert len(lut) == 72 and all(v > 0 for v in lut.values())
    key = "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0"
    assert parse_lut_key(key) == {"op": "expanded_conv", "input": (112, 112, 16), "output": (56, 56, 24),
                                  "expand": 3, "kernel": 3, "stride": 2, "idskip": 0}
    predictor = LUTPredictor.from_table(lut)
    net = ["Conv-input:224x224x3-output:112x112x32", key, key, "Logits-input:7x7x1280-output:1000"]
    assert predictor.predict_blocks([net])[0] == pytest.approx(sum(lut[b] for b in net))
    with pytest.raises(DataError, match="not in the lookup table"):
        predictor.predict_blocks([["Conv-input:1x1x1-output:1x1x1"]])
    with pytest.raises(DataError, match="name:value"):
        parse_lut_key("Conv-input224")


# ---------------------------------------------------------------------------------------------- real data
@needs_data
def test_fbnet_additive_model_is_exact_on_raspi4() -> None:
    frame = table("fbnet_latency.csv.xz").iloc[:1300]
    space = FBNetSpace()
    archs = [space.parse(s) for s in frame["op_names"]]
    y = frame["raspi4"].to_numpy()
    model = fit_latency_model(space, archs[:300], y[:300], "lut")
    assert latency_metrics(y[300:], model.predict(archs[300:]))["within_10pct"] > 0.99


@needs_data
def test_nb201_gbdt_ranks_raspi4() -> None:
    frame = table("nb201_latency.csv.xz").sample(1300, random_state=0)
    space = NB201Space()
    archs = [space.parse(s) for s in frame["arch_str"]]
    y = frame["raspi4"].to_numpy()
    model = fit_latency_model(space, archs[:300], y[:300], "gbdt")
    assert latency_metrics(y[300:], model.predict(archs[300:]))["spearman"] > 0.8


@needs_data
def test_twenty_shots_beat_the_uncalibrated_source_mean() -> None:
    frame = table("fbnet_latency.csv.xz").iloc[:1000]
    space = FBNetSpace()
    archs = [space.parse(s) for s in frame["op_names"]]
    sources = {c: frame[c].to_numpy()[:300] for c in ("raspi4", "gold_6226", "2080ti_1")}
    model = TransferLatencyModel.fit_sources(space, archs[:300], sources, "kernel")
    y = frame["pixel3"].to_numpy()
    model.calibrate(archs[300:320], y[300:320])
    test = archs[320:]
    calibrated = latency_metrics(y[320:], model.predict(test))
    raw = np.exp(np.log(model.source_predictions(test)).mean(axis=1))
    baseline = latency_metrics(y[320:], raw)
    assert calibrated["within_10pct"] > baseline["within_10pct"] + 0.2
    assert calibrated["spearman"] >= baseline["spearman"] - 0.01 and calibrated["spearman"] > 0.9
