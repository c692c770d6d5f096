"""Kernel decomposition traced from the built network (search_spaces/trace.py): it agrees with the hand-written
per-space lists and with torch's MAC counts, models the block ops (concat, split, slices, shuffle, pooling),
refuses ops it has no rule for by name, and the arm_cpu prior prices (and reports) the kinds it borrows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

import search_spaces  # noqa: F401  (registers the spaces)
from nas.errors import ConfigError
from nas.hardware.priors import BORROW_RULES, load_prior
from nas.registry import SPACES
from predictors.features import latency_features, latency_features_codes
from search_spaces.base import SearchSpace
from search_spaces.blocks.layers import ChannelShuffle, ConvBNAct, SqueezeExcite
from search_spaces.fbnet import FBNetSpace
from search_spaces.kernels import KINDS, Kernel, kernel_row, kernels, supports
from search_spaces.ofa import OFASpace
from search_spaces.profile import count_macs, count_params
from search_spaces.trace import trace_kernels


def small_ofa() -> OFASpace:
    return OFASpace(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32))


def per_kind(ks: list[Kernel]) -> tuple[Counter, int]:
    """Exact per-kind sums (MACs, bytes, count) and the total parameter count."""
    sums: Counter = Counter()
    for k in ks:
        sums[k.kind, "macs"] += k.flops
        sums[k.kind, "bytes"] += k.bytes
        sums[k.kind, "count"] += 1
    return sums, sum(k.params for k in ks)


def archs_of(space: SearchSpace, n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


# ------------------------------------------------------------------------- the trusted per-space lists
@pytest.mark.parametrize("make", [small_ofa, FBNetSpace], ids=["ofa", "fbnet"])
def test_traced_network_equals_the_hand_written_list(make, one_torch_thread):
    space = make()
    archs = archs_of(space, 25)
    if isinstance(space, OFASpace):
        archs += [space.smallest(), space.largest()]
    for arch in archs:
        model, shape = space.build(arch), space.input_shape(arch)
        traced = trace_kernels(model, shape)
        assert per_kind(traced) == per_kind(kernels(space, arch))
        # (b) and both equal what torch counts on the built network
        assert sum(k.flops for k in traced) == count_macs(model, shape)
        assert sum(k.params for k in traced) == count_params(model)


@pytest.mark.parametrize("name", [n for n in SPACES.names() if n != "nb201"])
def test_decomposition_totals_equal_the_built_network_for_every_space(name, one_torch_thread):
    # NB201 is left out: its hand list drops dead edges on purpose (tests/test_latency_predictors.py).
    space = small_ofa() if name == "ofa" else SPACES.get(name)()
    assert supports(space)
    for arch in archs_of(space, 5, seed=3):
        model, shape = space.build(arch), space.input_shape(arch)
        ks = kernels(space, arch)
        assert sum(k.flops for k in ks) == count_macs(model, shape)
        assert sum(k.params for k in ks) == count_params(model)
        if callable(getattr(space, "kernel_features_codes", None)):
            # the space's own table (per-block traces) agrees with tracing the whole network
            np.testing.assert_allclose(latency_features(space, [arch], "kernel")[0],
                                       kernel_row(trace_kernels(model, shape)), rtol=1e-12, atol=1e-12)


def test_modules_are_left_as_they_were():
    space = small_ofa()
    model = space.build(space.largest()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace_kernels(model, space.input_shape(space.largest()))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------- toy modules: the block ops
class ShuffleUnit(nn.Module):
    """ShuffleNetV2 stride-1 unit: split, one branch, concat, shuffle."""

    def __init__(self, c: int) -> None:
        super().__init__()
        half = c // 2
        self.branch = nn.Sequential(ConvBNAct(half, half, 1, act="relu"), ConvBNAct(half, half, 3, groups=half),
                                    ConvBNAct(half, half, 1, act="relu"))
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return self.shuffle(torch.cat([a, self.branch(b)], dim=1))


class GhostModule(nn.Module):
    """Primary 1x1 conv + cheap depthwise conv, concat, cut to ``out`` channels."""

    def __init__(self, c_in: int, out: int) -> None:
        super().__init__()
        init = -(-out // 2)
        self.out = out
        self.primary = ConvBNAct(c_in, init, 1, act="relu")
        self.cheap = ConvBNAct(init, init, 3, groups=init, act="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], dim=1)[:, : self.out]


def test_shuffle_unit_kernels():
    ks = trace_kernels(ShuffleUnit(16), (16, 8, 8))
    assert [k.kind for k in ks] == ["slice", "pwconv", "dwconv", "pwconv", "concat", "shuffle"]
    split, concat, shuffle = ks[0], ks[4], ks[5]
    n = 16 * 8 * 8
    assert (split.in_elems, split.out_elems, split.c_in, split.c_out) == (n, n, 16, 16)  # one kernel, whole split
    assert (concat.in_elems, concat.out_elems, concat.c_out) == (n, n, 16)
    assert (shuffle.in_elems, shuffle.out_elems) == (n, n)
    assert ks[1].params == 8 * 8 + 2 * 8  # conv weights + the BN's scale and shift
    assert sum(k.flops for k in ks) == count_macs(ShuffleUnit(16), (16, 8, 8))


@pytest.mark.parametrize("out, sliced", [(11, True), (16, False)])
def test_ghost_module_cut_is_a_slice_only_when_it_drops_channels(out, sliced):
    ks = trace_kernels(GhostModule(8, out), (8, 6, 6))
    kinds = [k.kind for k in ks]
    assert kinds == ["pwconv", "dwconv", "concat"] + (["slice"] if sliced else [])
    init = -(-out // 2)
    assert ks[2].in_elems == ks[2].out_elems == 2 * init * 36
    if sliced:
        assert (ks[3].c_in, ks[3].c_out, ks[3].in_elems, ks[3].out_elems) == (2 * init, out, out * 36, out * 36)


def test_pools_strided_convs_and_the_head():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=0, bias=True),  # 'valid' padding: 15 -> 7
        nn.ReLU(), nn.MaxPool2d(3, 2, 1),  # 7 -> 4
        SqueezeExcite(8, 8),
        nn.AvgPool2d(2),  # 4 -> 2
        nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 16, 1), nn.Hardswish(),  # 1x1 conv on a pooled map: linear
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 10))
    ks = trace_kernels(model, (3, 15, 15))
    assert [k.kind for k in ks] == ["conv", "pool", "se", "pool", "gpool", "linear", "linear"]
    conv, maxpool, se, avgpool, gpool, mix, fc = ks
    assert (conv.hw_out, conv.params) == (7, 8 * 3 * 9 + 8) and conv.flops == 7 * 7 * 8 * 27
    assert (maxpool.in_elems, maxpool.out_elems, maxpool.hw_out) == (8 * 49, 8 * 16, 4)
    assert se.flops == 2 * 8 * 8 and se.params == 2 * 8 * 8 + 8 + 8 and (se.in_elems, se.out_elems) == (256, 128)
    assert (avgpool.hw_out, gpool.in_elems, gpool.out_elems) == (2, 32, 8)
    assert (mix.flops, mix.params, fc.flops, fc.params) == (8 * 16, 8 * 16 + 16, 160, 170)
    assert sum(k.flops for k in ks) == count_macs(model, (3, 15, 15))
    assert sum(k.params for k in ks) == count_params(model)
    # a 1x1 conv on a map that is 1x1 by its size, not by a global pool, stays a pointwise conv
    assert [k.kind for k in trace_kernels(nn.Conv2d(4, 4, 1), (4, 1, 1))] == ["pwconv"]


def test_residual_add_and_fused_activations():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = ConvBNAct(4, 4, 3, act="relu6")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x)

    ks = trace_kernels(Residual(), (4, 5, 5))
    assert [k.kind for k in ks] == ["conv", "add"]
    assert (ks[1].in_elems, ks[1].out_elems) == (2 * 100, 100)


def test_arithmetic_on_sizes_is_no_kernel():
    class HalfAndHalf(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            c = x.shape[1] // 2  # traced as getattr + getitem + floordiv on sizes
            return torch.cat([x[:, :c], self.conv(x)[:, c:]], dim=1)

    ks = trace_kernels(HalfAndHalf(), (8, 4, 4))
    assert [k.kind for k in ks] == ["slice", "pwconv", "slice", "concat"]
    assert [(k.c_in, k.c_out) for k in ks] == [(8, 4), (8, 8), (8, 4), (8, 8)]


# ------------------------------------------------------------------------- ops without a rule
class Sigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class AddConstant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


class CatRows(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x], dim=2)


class Permute(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class Branchy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


@pytest.mark.parametrize("model, named", [
    (Sigmoid(), "torch.sigmoid"),
    (nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Upsample(scale_factor=2)), "Upsample"),
    (AddConstant(), "operator.add"),
    (CatRows(), "torch.cat"),
    (nn.Conv2d(3, 3, 3, padding=2, dilation=2), "dilation"),
    (nn.Sequential(nn.BatchNorm2d(3)), "BatchNorm2d"),
    (Permute(), "Tensor.permute"),
])
def test_an_op_without_a_rule_is_a_clear_error(model, named):
    with pytest.raises(ConfigError, match="search_spaces/trace.py needs a rule") as info:
        trace_kernels(model, (3, 6, 6))
    assert named in str(info.value)


def test_untraceable_forward_is_a_clear_error():
    with pytest.raises(ConfigError, match="torch.fx cannot trace Branchy"):
        trace_kernels(Branchy(), (3, 6, 6))


# ------------------------------------------------------------------------- where kernels() gets its list
class ToyBlockSpace(SearchSpace):
    """A space with no hand-written kernel list: its networks are decomposed by tracing."""

    name = "toy_blocks"

    def choices(self):
        return {"unit": ("shuffle", "ghost")}

    def input_shape(self, arch):
        return (16, 8, 8)

    def build(self, arch):
        return ShuffleUnit(16) if arch["unit"] == "shuffle" else GhostModule(16, 12)


class ListedSpace(ToyBlockSpace):
    name = "toy_listed"

    def kernel_list(self, arch):
        return [Kernel("conv", 7, 0, 1, 1)]


class TabledSpace(ToyBlockSpace):
    name = "toy_tabled"

    def __init__(self, table: np.ndarray | None) -> None:
        self.table = table

    def kernel_features_codes(self, codes):
        return None if self.table is None else np.repeat(self.table[None], len(codes), axis=0)


def test_kernels_traces_a_space_without_a_list_and_uses_a_space_list():
    space = ToyBlockSpace()
    assert supports(space)
    assert [k.kind for k in kernels(space, {"unit": "shuffle"})] == \
        ["slice", "pwconv", "dwconv", "pwconv", "concat", "shuffle"]
    assert kernels(ListedSpace(), {"unit": "ghost"}) == [Kernel("conv", 7, 0, 1, 1)]


def test_kernel_features_come_from_a_space_table_when_it_has_one():
    archs = [{"unit": "shuffle"}, {"unit": "ghost"}]
    traced = latency_features(ToyBlockSpace(), archs, "kernel")
    assert traced.shape == (2, 3 * len(KINDS)) == (2, 33)
    table = np.arange(33, dtype=np.float64)
    space = TabledSpace(table)
    assert np.array_equal(latency_features(space, archs, "kernel"), np.stack([table, table]))
    assert np.array_equal(latency_features_codes(space, space.to_codes(archs), "kernel"), np.stack([table, table]))
    assert np.array_equal(latency_features(space, archs, "encoding")[:, -33:], np.stack([table, table]))
    declined = TabledSpace(None)  # a space may decline (None): the features are traced
    assert np.array_equal(latency_features(declined, archs, "kernel"), traced)
    with pytest.raises(ConfigError, match="kernel_features_codes returned shape"):
        latency_features(TabledSpace(np.zeros(27)), archs, "kernel")


# ------------------------------------------------------------------------- the prior's borrowed kinds
def test_prior_reports_the_kinds_it_borrows():
    prior = load_prior("arm_cpu")
    ofa = small_ofa()
    assert prior.borrowed(latency_features(ofa, [ofa.largest()], "kernel")) == {"se": BORROW_RULES["se"]}
    fbnet = FBNetSpace()
    assert prior.borrowed(latency_features(fbnet, archs_of(fbnet, 3), "kernel")) == {}
    toy = ToyBlockSpace()
    assert set(prior.borrowed_in(toy, [{"unit": "shuffle"}])) == {"concat", "slice"}
    assert set(prior.borrowed_in(toy, [{"unit": "ghost"}])) == {"concat"}  # its cut 12 -> 12 is no kernel
    assert "shuffle rate" in BORROW_RULES["concat"]


def test_prior_prices_concat_and_slice_above_zero():
    prior = load_prior("arm_cpu")
    coef = prior.predictor.coef
    assert coef.shape == (33,)
    add, shuffle = 3 * KINDS.index("add"), 3 * KINDS.index("shuffle")
    assert np.all(coef[add:add + 3] == 0) and coef[shuffle + 1] > 0  # why concat/slice borrow shuffle's rates
    model = nn.Sequential(*[GhostModule(16, 16) for _ in range(6)])  # six concats
    X = kernel_row(trace_kernels(model, (16, 16, 16)))[None]
    concat = 3 * KINDS.index("concat")
    assert X[0, concat + 2] == 6
    without = X.copy()
    without[0, concat:concat + 3] = 0
    assert prior.predict_features(X)[0] > prior.predict_features(without)[0]


def test_prior_alone_records_borrowed_kinds_without_touching_the_run_rng(monkeypatch):
    from nas.pipeline import fit_latency_surrogate
    from nas.registry import TARGETS

    monkeypatch.setattr("nas.hardware.arm_cpu.is_arm_machine", lambda: False)
    target = TARGETS.get("arm_cpu")()
    rng = np.random.default_rng(7)
    state = rng.bit_generator.state
    _, measured, info = fit_latency_surrogate(small_ofa(), target, None, rng, False)
    assert measured == {} and info["source"] == "prior"
    assert info["borrowed"] == {"se": BORROW_RULES["se"]}
    assert rng.bit_generator.state == state
