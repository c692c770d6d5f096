"""Sub-network accuracy: resizing, BatchNorm recalibration, evaluation and the supernet evaluator."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nas.accuracy import SupernetEvaluator, evaluate, recalibrate_bn, resize_batch
from nas.data import load_data
from nas.errors import ConfigError, DataError

from tests.toy_space import ElasticToySpace, ElasticToySupernet, make_supernet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_data(name="digits", limit=240, seed=1)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------------------------------ helpers
def test_resize_batch() -> None:
    x = torch.randn(2, 3, 8, 8)
    assert resize_batch(x, 8) is x  # no copy when the size already fits
    assert resize_batch(x, 12).shape == (2, 3, 12, 12)
    assert resize_batch(x, (4, 6)).shape == (2, 3, 4, 6)
    flat = torch.full((1, 1, 8, 8), 0.25)
    assert torch.allclose(resize_batch(flat, 5), torch.full((1, 1, 5, 5), 0.25))


class _Brightness(nn.Module):
    """Class 1 if the image is bright: a perfect classifier for the separable set below."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1)


def test_evaluate_perfectly_separable_set_is_one() -> None:
    y = torch.arange(50) % 2
    X = (y.float() * 2 - 1)[:, None, None, None].expand(50, 1, 6, 6) + 0.1 * torch.randn(50, 1, 6, 6)
    model = _Brightness().train()
    assert evaluate(model, X, y, resolution=10, batch_size=7) == 1.0
    assert evaluate(model, X, 1 - y, batch_size=64) == 0.0
    assert model.training  # the caller's mode is restored
    with pytest.raises(DataError, match="empty"):
        evaluate(model, X[:0], y[:0])
    with pytest.raises(DataError, match="labels"):
        evaluate(model, X, y[:3])


def test_recalibrate_bn_sets_exact_statistics_of_the_images() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3, bias=False)
    model = nn.Sequential(conv, nn.BatchNorm2d(4), nn.Dropout(0.5))
    model[1].running_mean.fill_(7.0)
    images = torch.randn(40, 1, 6, 6)
    recalibrate_bn(model, images, batch_size=10)
    with torch.no_grad():
        feats = conv(images)
    assert not model.training and model[1].momentum == 0.1  # eval mode again, momentum restored
    assert torch.allclose(model[1].running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5)
    # cumulative average of per-batch unbiased variances (equal batches): close to the overall variance
    assert torch.allclose(model[1].running_var, feats.var(dim=(0, 2, 3)), rtol=0.1)
    with pytest.raises(DataError):
        recalibrate_bn(model, images[:0])


def test_recalibration_with_resolution_resizes_first() -> None:
    model = nn.Sequential(nn.BatchNorm2d(1), nn.AdaptiveAvgPool2d(1))
    images = torch.zeros(8, 1, 4, 4)
    images[:, :, :2] = 1.0  # top half bright: mean 0.5 at any resolution
    recalibrate_bn(model, images, resolution=9)
    assert float(model[0].running_mean) == pytest.approx(0.5, abs=0.02)


# ------------------------------------------------------------------------------------------ evaluator
def test_evaluator_recalibrates_the_copy_and_never_changes_the_supernet(digits) -> None:
    space = ElasticToySpace()
    supernet = make_supernet(space)
    before = _state(supernet)
    evaluator = SupernetEvaluator(space, supernet, digits, calib_images=64, batch_size=32)
    arch = space.smallest()
    sub = evaluator.subnet(arch)
    assert not sub.training
    raw = supernet.extract(arch).state_dict()
    changed = [k for k in raw if "running_mean" in k and not torch.equal(raw[k], sub.state_dict()[k])]
    assert changed, "recalibration should have changed the subnet's BatchNorm statistics"
    for a in (space.largest(), space.smallest(), space.largest()):
        acc = evaluator.accuracy(a)
        assert 0.0 <= acc <= 1.0
    _assert_same(before, _state(supernet))
    assert evaluator.accuracy(arch) == evaluator.accuracy(arch, split="val")
    # the calibration subset is fixed by the seed
    again = SupernetEvaluator(space, supernet, digits, calib_images=64, batch_size=32)
    assert again.accuracy(arch, split="test") == evaluator.accuracy(arch, split="test")


class _SharingSupernet(ElasticToySupernet):
    """An ``extract`` that (wrongly) hands out the supernet's own BatchNorm buffers."""

    def extract(self, arch):
        sub = copy.deepcopy(self)
        for mine, theirs in zip(self.modules(), sub.modules()):
            for name, buf in mine._buffers.items():
                theirs._buffers[name] = buf
        sub.set_active(arch)
        return sub


def test_evaluator_is_safe_even_when_extract_shares_buffers(digits) -> None:
    space = ElasticToySpace()
    torch.manual_seed(0)
    supernet = _SharingSupernet(space)
    before = _state(supernet)
    SupernetEvaluator(space, supernet, digits, calib_images=32).accuracy(space.smallest())
    _assert_same(before, _state(supernet))


def test_evaluator_validates_arguments(digits) -> None:
    space = ElasticToySpace()
    supernet = make_supernet(space)
    with pytest.raises(ConfigError, match="eval_split"):
        SupernetEvaluator(space, supernet, digits, eval_split="holdout")
    with pytest.raises(ConfigError, match="calib_images"):
        SupernetEvaluator(space, supernet, digits, calib_images=0)
    with pytest.raises(ConfigError, match="split"):
        SupernetEvaluator(space, supernet, digits).accuracy(space.largest(), split="dev")


def test_evaluator_on_the_ofa_space(digits) -> None:
    ofa = pytest.importorskip("search_spaces.ofa")
    space = ofa.OFASpace(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(16, 24))
    torch.manual_seed(0)
    supernet = space.supernet()
    before = _state(supernet)
    evaluator = SupernetEvaluator(space, supernet, digits, calib_images=32, batch_size=64)
    sub = evaluator.subnet(space.smallest())
    raw = supernet.extract(space.smallest()).state_dict()
    assert any(not torch.equal(raw[k], v) for k, v in sub.state_dict().items() if "running_var" in k)
    assert 0.0 <= evaluator.accuracy(space.largest()) <= 1.0
    _assert_same(before, _state(supernet))
