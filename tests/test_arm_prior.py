"""The arm_cpu latency prior: shipped, loads without pickles, and ranks real Raspberry Pi 4 latencies."""

import numpy as np
import pytest

from nas.errors import DeviceError, ModelError
from nas.hardware.priors import KernelPrior, borrow_unseen_kinds, fit_kernel_prior, load_prior, training_data
from nas.registry import TARGETS
from predictors.features import latency_features
from predictors.metrics import spearman
from search_spaces.kernels import KINDS
from search_spaces.ofa import OFASpace


def test_shipped_prior_ranks_real_pi4_latencies():
    X, y, origin = training_data(limit=300, seed=1)
    prior = load_prior("arm_cpu")
    assert "Raspberry Pi 4" in prior.description
    predicted = prior.predict_features(X)
    for source in (0, 1):  # fbnet, nb201
        assert spearman(y[origin == source], predicted[origin == source]) > 0.85


def test_prior_fitted_on_one_space_ranks_another():
    X, y, origin = training_data(limit=400, seed=2)
    model = KernelPrior(name="fbnet only", description="", predictor=fit_kernel_prior(X[origin == 0], y[origin == 0]))
    assert spearman(y[origin == 1], model.predict_features(X[origin == 1])) > 0.75  # NAS-Bench-201 cells


def test_prior_covers_ofa_including_squeeze_excitation():
    space = OFASpace(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32))
    prior = load_prior("arm_cpu")
    small, large = prior.predict(space, [space.smallest(), space.largest()])
    assert 0 < small < large
    X = latency_features(space, [space.largest()], "kernel")
    se = 3 * KINDS.index("se")
    assert X[0, se] > 0  # OFA's SE kernels ...
    moved = borrow_unseen_kinds(X)
    assert moved[0, se : se + 3].sum() == 0 and moved.sum() > 0  # ... are costed as pointwise conv + pooling
    assert prior.predict(space, []).shape == (0,)


def test_arm_cpu_target_without_a_board(monkeypatch):
    monkeypatch.setattr("nas.hardware.arm_cpu.is_arm_machine", lambda: False)
    target = TARGETS.get("arm_cpu")()
    assert not target.can_measure and target.latency_source == "prior"
    assert target.describe()["mode"] == "prior" and target.describe()["device"] is None
    with pytest.raises(DeviceError, match="target.agent="):
        target.measure_onnx_file("model.onnx", (1, 28, 28))
    monkeypatch.setattr("nas.hardware.arm_cpu.is_arm_machine", lambda: True)
    assert TARGETS.get("arm_cpu")().can_measure  # on an ARM machine it measures locally


def test_missing_prior_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr("nas.hardware.priors.PRIORS_DIR", tmp_path)
    load_prior.cache_clear()
    try:
        with pytest.raises(ModelError, match="fit_arm_prior.py"):
            load_prior("arm_cpu")
    finally:
        load_prior.cache_clear()


def test_gpu_target_without_cuda_says_how_to_get_it():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        TARGETS.get("gpu")()


def test_linear_layers_are_priced_as_pointwise_convs():
    # The Pi 4 data has one classifier per source space, so a free linear rate is that space's constant in
    # disguise (it came out 70x the 1x1-conv rate); the prior ties it to the pwconv rates instead.
    prior = load_prior("arm_cpu")
    linear, pw = 3 * KINDS.index("linear"), 3 * KINDS.index("pwconv")
    assert (prior.predictor.coef[linear:linear + 3] == 0).all()
    as_linear, as_pw = np.zeros((1, len(KINDS) * 3)), np.zeros((1, len(KINDS) * 3))
    as_linear[0, linear:linear + 3] = (0.3, 0.01, 1.0)  # 0.3 MMACs, 0.01 MB, one kernel
    as_pw[0, pw:pw + 3] = (0.3, 0.01, 1.0)
    assert prior.predict_features(as_linear)[0] == pytest.approx(prior.predict_features(as_pw)[0])
    assert prior.predict_features(as_linear)[0] < 1.0  # a 480 -> 640 head layer: well under a millisecond
