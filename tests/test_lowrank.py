"""Low-rank factorisation: exact at full rank, Eckart-Young optimal below it, plans that respect their
thresholds, MAC accounting that agrees with count_macs, ONNX export, and clear errors for bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nas.compress.lowrank import LowRankPlan, energy_profile, factorise, plan_layer, plan_lowrank
from nas.errors import ConfigError
from search_spaces.profile import count_macs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ALL_KINDS = ("pointwise", "linear", "tucker2")


def _max_diff(a: nn.Module, b: nn.Module, shape: tuple[int, ...], *, batch: int = 3, seed: int = 0) -> float:
    x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


def _with_spectrum(out_ch: int, in_ch: int, values: np.ndarray, seed: int) -> torch.Tensor:
    """A (out, in) matrix whose singular values are ``values`` (zeros beyond them): known energy per rank."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((out_ch, out_ch)))
    v, _ = np.linalg.qr(rng.standard_normal((in_ch, in_ch)))
    s = np.zeros(min(out_ch, in_ch))
    s[: len(values)] = values
    return torch.from_numpy(u[:, : len(s)] @ np.diag(s) @ v[:, : len(s)].T)


def _expected_rank(values: np.ndarray, energy: float) -> int:
    cumulative = np.cumsum(values**2) / np.sum(values**2)
    return int(np.argmax(cumulative >= energy)) + 1


# ---------------------------------------------------------------------------------------------- exactness
def test_full_rank_pointwise_with_stride_and_bias_reproduces_the_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(12, 20, 1, stride=2, bias=True)).double()
    plan = plan_layer(model, (12, 9, 9), "0", rank=12)
    assert (plan.kind, plan.shape, plan.rank, plan.ranks) == ("pointwise", (20, 12, 1, 1), 12, None)
    assert plan.energy == pytest.approx(1.0)
    new = factorise(model, [plan])
    first, second = new[0]
    assert isinstance(new[0], nn.Sequential) and type(first) is nn.Conv2d and type(second) is nn.Conv2d
    assert (first.in_channels, first.out_channels, first.stride, first.bias) == (12, 12, (2, 2), None)
    assert (second.out_channels, second.stride, second.bias is not None) == (20, (1, 1), True)
    assert _max_diff(model, new, (12, 9, 9)) < 1e-4
    # The input model is left alone.
    assert type(model[0]) is nn.Conv2d


def test_full_rank_linear_reproduces_the_layer() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(24, 10)).double()
    plan = plan_layer(model, (24, 1, 1), "1", rank=10)
    new = factorise(model, [plan])
    assert [type(m) for m in new[1]] == [nn.Linear, nn.Linear]
    assert (new[1][0].out_features, new[1][0].bias, new[1][1].bias is not None) == (10, None, True)
    assert _max_diff(model, new, (24, 1, 1)) < 1e-4


def test_full_rank_tucker2_reproduces_a_strided_padded_3x3() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(6, 10, 3, stride=2, padding=1, bias=True)).double()
    plan = plan_layer(model, (6, 11, 11), "0", ranks=(6, 10))
    assert plan.kind == "tucker2" and plan.ranks == (6, 10) and plan.rank is None
    new = factorise(model, [plan])
    first, core, last = new[0]
    assert (first.kernel_size, first.stride, first.out_channels) == ((1, 1), (1, 1), 6)
    assert (core.kernel_size, core.stride, core.padding, core.bias) == ((3, 3), (2, 2), (1, 1), None)
    assert (last.kernel_size, last.out_channels, last.bias is not None) == ((1, 1), 10, True)
    assert _max_diff(model, new, (6, 11, 11)) < 1e-4


@pytest.mark.parametrize("kind", ["pointwise", "linear"])
def test_reduced_rank_is_the_eckart_young_optimum(kind: str) -> None:
    torch.manual_seed(3)
    layer = nn.Conv2d(16, 24, 1) if kind == "pointwise" else nn.Linear(16, 24)
    model = nn.Sequential(layer if kind == "pointwise" else nn.Sequential(nn.Flatten(), layer)).double()
    name, shape = ("0", (16, 4, 4)) if kind == "pointwise" else ("0.1", (16, 1, 1))
    weight = layer.weight.detach().reshape(24, 16)
    singular = torch.linalg.svdvals(weight)
    rank = 5
    plan = plan_layer(model, shape, name, rank=rank)
    assert plan.energy == pytest.approx(float(singular[:rank].square().sum() / singular.square().sum()))
    first, second = factorise(model, [plan]).get_submodule(name)
    product = second.weight.detach().reshape(24, rank) @ first.weight.detach().reshape(rank, 16)
    error = float(torch.linalg.norm(weight - product))
    assert error == pytest.approx(float(singular[rank:].square().sum().sqrt()), rel=1e-4)
    # sqrt(S) on both sides: the two factors carry the same Frobenius norm.
    assert float(first.weight.detach().norm()) == pytest.approx(float(second.weight.detach().norm()), rel=1e-6)
    assert torch.equal(second.bias, layer.bias)


def test_energy_profile_is_the_cumulative_squared_spectrum() -> None:
    values = np.array([4.0, 2.0, 1.0, 0.5])
    profile = energy_profile(_with_spectrum(7, 5, values, seed=0))
    expected = np.cumsum(np.r_[values, 0.0] ** 2) / np.sum(values**2)
    assert profile.shape == (5,) and np.allclose(profile, expected) and profile[-1] == 1.0
    assert np.all(energy_profile(torch.zeros(3, 4)) == 1.0)


# ---------------------------------------------------------------------------------------------- planning
def inverted_residual(seed: int = 0) -> nn.Module:
    """MobileNetV2-like: 1x1 expand, 3x3 depthwise, 1x1 project, then a linear head. The expand and
    project weights get a decaying spectrum (a trained network's typical shape), the head a flat one."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(16, 96, 1, bias=False), nn.BatchNorm2d(96), nn.ReLU6(),
        nn.Conv2d(96, 96, 3, padding=1, groups=96, bias=False), nn.BatchNorm2d(96), nn.ReLU6(),
        nn.Conv2d(96, 24, 1, bias=False), nn.BatchNorm2d(24),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10),
    )
    with torch.no_grad():
        model[0].weight.copy_(_with_spectrum(96, 16, EXPAND_SPECTRUM, seed=1).reshape(96, 16, 1, 1))
        model[6].weight.copy_(_with_spectrum(24, 96, PROJECT_SPECTRUM, seed=2).reshape(24, 96, 1, 1))
        model[10].weight.copy_(_with_spectrum(10, 24, np.ones(10), seed=3))
    return model


EXPAND_SPECTRUM = 0.7 ** np.arange(16)
PROJECT_SPECTRUM = 0.8 ** np.arange(24)


def test_plan_follows_energy_and_min_saving_and_skips_depthwise() -> None:
    model = inverted_residual()
    shape = (16, 8, 8)
    plans = plan_lowrank(model, shape, energy=0.9, min_saving=0.2, kinds=ALL_KINDS)
    by_layer = {p.layer: p for p in plans}
    # The depthwise conv is never planned; the flat-spectrum head needs full rank, which costs more: dropped.
    assert set(by_layer) == {"0", "6"}
    assert by_layer["0"].rank == _expected_rank(EXPAND_SPECTRUM, 0.9)
    assert by_layer["6"].rank == _expected_rank(PROJECT_SPECTRUM, 0.9)
    for plan in plans:
        assert plan.energy >= 0.9 and plan.saving >= 0.2
        # One rank less would not keep enough energy: the rank is the smallest that does.
        assert energy_profile(model.get_submodule(plan.layer).weight.reshape(plan.shape[:2]))[plan.rank - 2] < 0.9
        assert plan.macs_before == 64 * plan.shape[0] * plan.shape[1]
        assert plan.params_after == plan.rank * (plan.shape[0] + plan.shape[1])
        assert plan.to_dict()["macs_saved"] == plan.macs_saved
    assert [p.macs_saved for p in plans] == sorted((p.macs_saved for p in plans), reverse=True)

    # A higher energy keeps more rank; a min_saving above a plan's saving drops it.
    looser = {p.layer: p for p in plan_lowrank(model, shape, energy=0.99, min_saving=0.0)}
    assert looser["0"].rank >= by_layer["0"].rank and looser["6"].rank > by_layer["6"].rank
    strict = plan_lowrank(model, shape, energy=0.9, min_saving=by_layer["6"].saving + 1e-9)
    assert "6" not in {p.layer for p in strict}
    assert plan_lowrank(model, shape, kinds=["linear"]) == []
    only = plan_lowrank(model, shape, layers=["6"])
    assert [p.layer for p in only] == ["6"]

    # The MACs the plans claim to save are those count_macs sees after factorising.
    new = factorise(model, plans)
    assert count_macs(new, shape) == count_macs(model, shape) - sum(p.macs_saved for p in plans)
    out = new.eval()(torch.randn(2, *shape))
    assert out.shape == (2, 10)


def test_tucker2_plan_costs_agree_with_count_macs() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(8, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1))
    shape = (8, 12, 12)
    plans = [plan_layer(model, shape, "0", ranks=(4, 8)), plan_layer(model, shape, "2", ranks=(8, 6))]
    new = factorise(model, plans)
    assert count_macs(new, shape) == count_macs(model, shape) - sum(p.macs_saved for p in plans)
    params = sum(p.numel() for p in new.parameters())
    assert params == sum(p.numel() for p in model.parameters()) - sum(p.params_before - p.params_after for p in plans)
    assert new(torch.randn(1, *shape)).shape == model(torch.randn(1, *shape)).shape


def test_factorise_keeps_mode_dtype_and_grad_flags() -> None:
    model = inverted_residual().double().train()
    model[6].weight.requires_grad_(False)
    plans = plan_lowrank(model, (16, 8, 8))
    assert model.training  # planning ran in eval mode and gave the mode back
    new = factorise(model, plans)
    assert all(m.training for m in new.modules())
    assert all(p.dtype == torch.float64 for p in new.parameters())
    assert not any(p.requires_grad for p in new[6].parameters())
    assert all(m.training is False for m in factorise(model.eval(), plans).modules())


def test_factorised_model_exports_to_onnx(tmp_path: Path) -> None:
    from nas.export import export_onnx, verify_onnx

    model = inverted_residual()
    shape = (16, 8, 8)
    new = factorise(model, plan_lowrank(model, shape, kinds=ALL_KINDS))
    path = export_onnx(new, shape, tmp_path / "lowrank.onnx")
    assert verify_onnx(path, new, shape) < 1e-4


def test_repo_mobilenet_v2_plans_and_factorises() -> None:
    from nas.channels.base import resolve_base

    spec = resolve_base(base="mobilenet_v2", base_run=None, base_config=None, resolution=32, num_classes=10,
                        in_channels=1)
    model = spec.build_space().build(spec.arch)
    shape = (1, 32, 32)
    # Untrained weights have flat spectra; a low energy makes sure something gets planned.
    plans = plan_lowrank(model, shape, energy=0.6, min_saving=0.2, kinds=ALL_KINDS)
    assert plans and all(p.kind in ALL_KINDS for p in plans)
    assert not any("depth_conv" in p.layer for p in plans)
    new = factorise(model, plans)
    assert count_macs(new, shape) == count_macs(model, shape) - sum(p.macs_saved for p in plans)
    assert new.eval()(torch.randn(2, *shape)).shape == (2, 10)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"energy": 1.5}, "energy must lie in (0, 1], got 1.5"),
    ({"energy": 0}, "energy must lie in (0, 1], got 0"),
    ({"energy": "high"}, "energy must lie in (0, 1]"),
    ({"min_saving": 1.0}, "min_saving must lie in [0, 1), got 1.0"),
    ({"min_saving": -0.1}, "min_saving must lie in [0, 1)"),
    ({"kinds": ["conv"]}, "kinds must be a non-empty list of pointwise, linear, tucker2"),
    ({"kinds": "pointwise"}, "kinds must be a list of strings"),
    ({"layers": "6"}, "layers must be a list of strings"),
])
def test_bad_arguments_say_the_allowed_range(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_lowrank(inverted_residual(), (16, 8, 8), **kwargs)
    assert message in str(info.value)


def test_bad_layers_and_shapes_name_what_is_allowed() -> None:
    model = inverted_residual()
    with pytest.raises(ConfigError, match=r"layers \['3'\] are not eligible.*eligible layers: 0, 6, 10"):
        plan_lowrank(model, (16, 8, 8), layers=["3"], kinds=ALL_KINDS)  # the depthwise conv
    with pytest.raises(ConfigError, match="input_shape must be"):
        plan_lowrank(model, (16, 8))
    with pytest.raises(ConfigError, match=r"could not run Sequential on an input of shape \(3, 8, 8\)"):
        plan_lowrank(model, (3, 8, 8))
    with pytest.raises(ConfigError, match="give ranks=.*not rank"):
        plan_layer(nn.Sequential(nn.Conv2d(4, 4, 3)), (4, 6, 6), "0", rank=2)
    with pytest.raises(ConfigError, match="rank must lie in 1..16"):
        plan_layer(model, (16, 8, 8), "0", rank=17)


def test_factorise_rejects_stale_or_inconsistent_plans() -> None:
    model = inverted_residual()
    plan = plan_layer(model, (16, 8, 8), "6", rank=4)
    changed = inverted_residual()
    changed[6] = nn.Conv2d(96, 20, 1, bias=False)
    with pytest.raises(ConfigError, match=r"planned layer '6' was a pointwise layer with weight \(24, 96, 1, 1\)"):
        factorise(changed, [plan])
    with pytest.raises(ConfigError, match="not in the model"):
        factorise(model, [dataclasses.replace(plan, layer="99")])
    with pytest.raises(ConfigError, match="more than one plan"):
        factorise(model, [plan, plan])
    with pytest.raises(ConfigError, match="rank must lie in 1..24"):
        dataclasses.replace(plan, rank=25)
    with pytest.raises(ConfigError, match="takes ranks=.*and no rank"):
        LowRankPlan(layer="x", kind="tucker2", shape=(4, 4, 3, 3), rank=2, energy=1.0, macs_before=0,
                    macs_after=0, params_before=0, params_after=0)
    with pytest.raises(ConfigError, match="plans must be a list of LowRankPlan"):
        factorise(model, plan)
