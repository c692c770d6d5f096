"""The channels space: dependency groups (Torch-Pruning), physical removal, derived kernels, the evaluators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nas.channels.evaluators import MaskedEvaluator
from nas.channels.groups import ChannelMasks, analyse, prune
from nas.errors import ConfigError
from search_spaces.channels import ChannelSpace, kept_width
from search_spaces.kernels import kernel_row
from search_spaces.profile import count_macs
from search_spaces.trace import trace_kernels


@pytest.fixture(scope="module")
def tiny_digits():
    from nas.data import load_data

    return load_data(name="digits", limit=300, seed=0)


@pytest.fixture(scope="module")
def mbv2() -> ChannelSpace:
    return ChannelSpace(base="mobilenet_v2", base_config={"width_mult": 0.5})


def test_mobilenet_v2_groups_tie_residuals_and_depthwise_convs(mbv2):
    by_members = {frozenset(g.members): g for g in mbv2.groups}
    # stage 3 (three layers of 16 channels at width 0.5) shares one group through its residual additions
    stage = [g for g in mbv2.groups if "layers.3.point_linear.conv" in g.members][0]
    assert {"layers.4.point_linear.conv", "layers.5.point_linear.conv"} <= set(stage.members)
    # an expand layer's group holds its 1x1 conv and the depthwise conv behind it
    expand = [g for g in mbv2.groups if "layers.7.inverted_bottleneck.conv" in g.members][0]
    assert "layers.7.depth_conv.conv" in expand.members and "layers.7.point_linear.conv" in expand.consumers
    assert len(by_members) == len(mbv2.groups) == 25
    assert all(g.channels > 0 for g in mbv2.groups)


def test_pruned_network_is_physically_smaller_and_has_the_predicted_shape(mbv2):
    arch = mbv2.uniform(0.5)
    model = mbv2.build(arch)
    modules = dict(model.named_modules())
    for g in mbv2.groups:
        width = mbv2.widths(arch)[g.label]
        for name in g.members:
            m = modules[name]
            assert (m.out_channels if isinstance(m, nn.Conv2d) else m.num_features) == width, name
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in mbv2.base_model.parameters())
    assert model(torch.randn(2, *mbv2.input_shape(arch))).shape == (2, 10)


def test_kernel_list_equals_tracing_the_built_network(mbv2):
    rng = np.random.default_rng(1)
    for arch in [mbv2.smallest(), mbv2.largest()] + [mbv2.sample(rng) for _ in range(3)]:
        model = mbv2.build(arch)
        traced = trace_kernels(model, mbv2.input_shape(arch))
        np.testing.assert_array_equal(kernel_row(mbv2.kernel_list(arch)), kernel_row(traced))
        assert sum(k.flops for k in mbv2.kernel_list(arch)) == count_macs(model, mbv2.input_shape(arch))


def test_se_blocks_are_pruned_with_the_channels_they_gate():
    space = ChannelSpace(base='{"space": "mobilenet", "arch": {%s}}' % ", ".join(
        f'"layer{i:02d}": "mb_k3_e4_se"' for i in range(15)), base_config={"width_mult": 0.35})
    se_groups = [g for g in space.groups if any(".se." in m or m.endswith(".se.reduce") for m in g.members)]
    assert se_groups, [g.members for g in space.groups][:4]
    arch = space.smallest()
    model = space.build(arch)
    assert model(torch.randn(1, *space.input_shape(arch))).shape == (1, 10)
    np.testing.assert_array_equal(kernel_row(space.kernel_list(arch)),
                                  kernel_row(trace_kernels(model, space.input_shape(arch))))


class _ConcatNet(nn.Module):
    """Two branches concatenated (ShuffleNet / Inception style), then a 1x1 conv and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(16, 24, 1), nn.BatchNorm2d(24), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.mix = nn.Sequential(nn.Conv2d(32, 32, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.mix(torch.cat([self.a(x), self.b(x)], dim=1))
        return self.fc(x.mean((2, 3)))


def test_concatenated_branches_are_pruned_into_the_consumer():
    model = _ConcatNet().eval()
    groups = analyse(model, (1, 12, 12))
    a = [g for g in groups if "a.0" in g.members][0]
    assert "mix.0" in a.consumers
    pruned, kept = prune(model, (1, 12, 12), {a.label: 12})
    assert pruned.a[0].out_channels == 12 and pruned.mix[0].in_channels == 12 + 8
    x = torch.randn(3, 1, 12, 12)
    assert pruned(x).shape == (3, 10)
    # equals the unpruned network with the removed channels masked
    masks = ChannelMasks(model, groups)
    masks.set({a.label: kept[a.label]})
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), atol=1e-5, rtol=1e-5)


def test_pruned_evaluator_equals_masking_the_removed_channels(tiny_digits):
    space = ChannelSpace(base="mobilenet_v2", base_config={"width_mult": 0.5},
                         num_classes=tiny_digits.num_classes, in_channels=tiny_digits.in_channels)
    torch.manual_seed(0)
    for m in space.base_model.modules():  # non-trivial BN statistics and weights, as a trained base has
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    ev = MaskedEvaluator(space, space.base_model, tiny_digits, importance="l1", calib_images=64)
    x = tiny_digits.val.X[:8]
    for arch in (space.uniform(0.3), space.sample(np.random.default_rng(2))):
        with torch.no_grad():
            physical = ev.subnet(arch)(x)
        torch.testing.assert_close(physical, ev.masked_outputs(arch, x), atol=1e-4, rtol=1e-4)
        assert 0.0 <= ev.accuracy(arch) <= 1.0
    # the L1 criterion keeps the channels with the largest weights, not the first ones
    assert ev.kept(space.uniform(0.5)) != {k: list(range(len(v))) for k, v in ev.kept(space.uniform(0.5)).items()}


def test_store_ids_name_the_base_network(mbv2):
    from nas.arch import arch_id

    arch = mbv2.uniform(0.5)
    same = ChannelSpace(base="mobilenet_v2", base_config={"width_mult": 0.5})
    wider = ChannelSpace(base="mobilenet_v2", base_config={"width_mult": 0.75})
    assert mbv2.store_id(arch) == same.store_id(arch) != arch_id(arch)
    # the same labels and values on another base are another network: the id must differ
    shared = {k: v for k, v in arch.items() if v in wider.choices().get(k, ())}
    arch_b = {**wider.largest(), **shared}
    assert wider.store_id(arch_b) != mbv2.store_id({**mbv2.largest(), **shared})


def test_grid_rounds_to_hardware_friendly_multiples():
    assert kept_width(96, 0.5, 8) == 48 and kept_width(80, 0.1, 8) == 8 and kept_width(96, 0.1, 8) == 16 and kept_width(20, 1.0, 8) == 20
    assert kept_width(1280, 0.33, 8) % 8 == 0


@pytest.mark.parametrize("kwargs, words", [
    ({"base": "no_such_net"}, "not a preset"),
    ({"base": "missing/base.npz"}, "does not exist"),
    ({"base": "mobilenet_v2", "base_run": "runs/x"}, "both set"),
    ({"base_run": "/nonexistent/run"}, "no results.json"),
    ({"ratios": [0.5, 0.9]}, "end at 1.0"),
    ({"base": '{"space": "shufflenet", "arch": {}}'}, "space.base"),
])
def test_bad_bases_give_one_clear_error(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        ChannelSpace(**kwargs)


def test_a_base_torch_pruning_cannot_analyse_is_refused_with_the_reason():
    import json

    from nas.registry import SPACES

    shuffle = SPACES.get("shufflenet")()
    arch = shuffle.sample(np.random.default_rng(0))
    with pytest.raises(ConfigError, match="Torch-Pruning cannot analyse"):
        ChannelSpace(base=json.dumps({"space": "shufflenet", "arch": arch}))


def test_slimmable_supernet_at_full_width_equals_the_base(mbv2):
    from nas.channels.slimmable import SandwichLoss, SlimmableNet

    net = SlimmableNet(mbv2).eval()
    x = torch.randn(4, *mbv2.input_shape(mbv2.largest()))
    net.set_active(mbv2.largest())
    with torch.no_grad():
        torch.testing.assert_close(net(x), mbv2.base_model.eval()(x))
        # a narrower width keeps the leading channels: equal to its physically slimmed copy
        arch = mbv2.uniform(0.5)
        net.set_active(arch)
        torch.testing.assert_close(net(x), net.extract(arch)(x), atol=1e-5, rtol=1e-5)
    net.train()
    loss, logits = SandwichLoss(net, random_widths=1, seed=0)(net, x, torch.tensor([0, 1, 2, 3]), 0)
    loss.backward()
    assert logits.shape == (4, 10) and float(loss.detach()) > 0
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_a_base_without_weights_is_trained_once_cached_and_reloadable_as_a_checkpoint(tmp_path, tiny_digits,
                                                                                      one_torch_thread):
    from nas.channels.base import obtain_base

    def fresh(**kw) -> ChannelSpace:
        return ChannelSpace(base_config={"width_mult": 0.35}, num_classes=tiny_digits.num_classes,
                            in_channels=tiny_digits.in_channels, **kw)

    space = fresh()
    info = obtain_base(space, tiny_digits, train={"epochs": 1}, seed=0, cache_dir=tmp_path, progress=False)
    assert info["source"] == "trained" and info["train"]["epochs"] == 1
    again = fresh()
    assert obtain_base(again, tiny_digits, train={"epochs": 1}, seed=0, cache_dir=tmp_path,
                       progress=False)["source"] == "cache"
    x = tiny_digits.val.X[:4]
    with torch.no_grad():
        torch.testing.assert_close(again.base_model(x), space.base_model(x))
    # the cached file is a base checkpoint: space.base=<file> gives the same network with the same weights
    from_file = ChannelSpace(
        base=info["path"], num_classes=tiny_digits.num_classes, in_channels=tiny_digits.in_channels)
    assert [g.channels for g in from_file.groups] == [g.channels for g in space.groups]
    assert obtain_base(from_file, tiny_digits, train=None, seed=0, cache_dir=tmp_path,
                       progress=False)["source"] == "checkpoint"
    with torch.no_grad():
        torch.testing.assert_close(from_file.base_model(x), space.base_model(x))


def test_describe_cli_prints_params_macs_and_groups(capsys):
    import json

    from search_spaces.__main__ import main

    assert main(["describe", "--space", "channels", "--base", "mobilenet_v2", "--base-config",
                 '{"width_mult": 0.5}', "--uniform", "0.5"]) == 0
    half = json.loads(capsys.readouterr().out)
    assert main(["describe", "--space", "channels", "--base", "mobilenet_v2", "--base-config",
                 '{"width_mult": 0.5}']) == 0
    full = json.loads(capsys.readouterr().out)
    assert half["params"] < full["params"] and half["macs"] < full["macs"]
    assert len(full["groups"]) == 25 and all(g["kept"] == g["channels"] for g in full["groups"])
    assert main(["describe", "--space", "channels", "--base", "nope"]) == 2
    assert "error: space.base='nope' is not a preset" in capsys.readouterr().err


def test_random_members_span_small_to_nearly_full_networks(mbv2):
    """sample() draws a network-wide grid position, so predictors' samples cover the whole range of sizes."""
    rng = np.random.default_rng(0)
    ratios = [mbv2.keep_ratio(mbv2.sample(rng)) for _ in range(200)]
    assert min(ratios) < 0.25 and max(ratios) > 0.85
    assert all(mbv2.validate(mbv2.sample(rng)) for _ in range(20))
