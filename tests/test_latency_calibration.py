"""Few-shot calibration of a latency prior (nas.surrogate.calibrate_prior) on a synthetic device."""

import numpy as np
import pytest

from nas.pipeline import sample_distinct
from nas.surrogate import PriorSurrogate, calibrate_prior
from predictors.metrics import regression_metrics
from search_spaces.ofa import OFASpace


class CostPrior:
    """A prior that weighs all work alike: the sum of the space's cost features."""

    name = "cost-sum"
    description = "sum of cost features (test prior)"

    def predict(self, space, archs):
        return np.array([space.cost_features(a).sum() for a in archs])


def device_latency(space, archs):
    # The "device": 3x slower than the prior says overall, and depthwise work costs it twice as much.
    out = []
    for a in archs:
        f = space.cost_features(a)
        depthwise = f[1::4][:6].sum()
        out.append(3.0 * (f.sum() + depthwise))
    return np.array(out)


@pytest.fixture(scope="module")
def space():
    return OFASpace(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32))


def test_calibration_fixes_scale_and_ranking_from_few_shots(space):
    rng = np.random.default_rng(0)
    shots = sample_distinct(space, 20, rng)
    test = sample_distinct(space, 200, rng, include=())
    prior = CostPrior()
    surrogate = calibrate_prior(prior=prior, space=space, archs=shots, values=device_latency(space, shots), seed=0)
    truth = device_latency(space, test)
    before = regression_metrics(truth, PriorSurrogate(prior=prior, space=space).predict(test))
    after = regression_metrics(truth, surrogate.predict(test))
    assert before["within_10pct"] < 0.05  # the prior is 3x off
    assert after["within_10pct"] > 0.9 and after["mape"] < before["mape"] / 5
    assert after["spearman"] >= before["spearman"]
    assert surrogate.holdout_metrics["n"] == 5 and "prior_only" in surrogate.holdout_metrics


def test_calibration_with_noise_only_learns_a_scale(space):
    rng = np.random.default_rng(1)
    shots = sample_distinct(space, 8, rng)
    prior = CostPrior()
    base = prior.predict(space, shots)
    noisy = 2.0 * base * np.exp(rng.normal(0, 0.02, len(base)))
    surrogate = calibrate_prior(prior=prior, space=space, archs=shots, values=noisy, holdout=0.0)
    other = sample_distinct(space, 50, rng)
    ratio = surrogate.predict(other) / prior.predict(space, other)
    assert np.allclose(ratio, 2.0, rtol=0.05)


def test_calibration_rejects_bad_measurements(space):
    archs = sample_distinct(space, 3, np.random.default_rng(2))
    with pytest.raises(ValueError, match="> 0"):
        calibrate_prior(prior=CostPrior(), space=space, archs=archs, values=[1.0, 0.0, 2.0])
