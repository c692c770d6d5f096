"""OFA MobileNetV3 space: supernet/extraction equality, kernel transform, parameter parity with OFA, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas.arch import arch_id
from nas.errors import ConfigError, InvalidArchError
from search_spaces.__main__ import main as cli_main
from search_spaces.blocks import DynamicBatchNorm2d, MobileNetV3
from search_spaces.ofa import OFASpace
from search_spaces.profile import count_macs, count_params

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32))
SMALL_CLI = ["--width", "0.5", "--num-classes", "10", "--in-channels", "1", "--resolutions", "24,28,32"]


@pytest.fixture(scope="module")
def space() -> OFASpace:
    return OFASpace(**SMALL)


def _public(ks: int | list = 3, e: int | list = 3, d: int | list = 2, r: int = 28) -> dict:
    return {
        "ks": ks if isinstance(ks, list) else [ks] * 20,
        "e": e if isinstance(e, list) else [e] * 20,
        "d": d if isinstance(d, list) else [d] * 5,
        "r": r,
    }


def _randomise(net: torch.nn.Module, seed: int) -> None:
    """Non-trivial BN statistics/affines and kernel transforms, so equality checks test real slicing."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "kernel_transform" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:  # BN affine and biases
                p.copy_(torch.empty(p.shape).uniform_(0.5, 1.5, generator=g) if "weight" in name
                        else 0.1 * torch.randn(p.shape, generator=g))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.empty(m.num_features).uniform_(0.5, 1.5, generator=g))


# ------------------------------------------------------------------------------------------ supernet
def test_supernet_matches_extracted_subnets(space: OFASpace) -> None:
    torch.manual_seed(0)
    supernet = space.supernet()
    _randomise(supernet, seed=1)
    supernet.eval()
    rng = np.random.default_rng(0)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(4)]
    outputs = []
    for arch in archs:
        net = supernet.extract(arch).eval()
        assert type(net) is type(space.build(arch)) is MobileNetV3
        assert {k: v.shape for k, v in net.state_dict().items()} == {
            k: v.shape for k, v in space.build(arch).state_dict().items()
        }
        x = torch.randn(3, *space.input_shape(arch))
        with torch.no_grad():
            supernet.set_active(arch)
            expected, got = supernet(x), net(x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        outputs.append(expected)
    # The check is only meaningful if different archs compute different, non-degenerate functions.
    assert outputs[0].abs().max() > 1e-2
    assert not torch.allclose(outputs[0], outputs[1], atol=1e-3)


def test_sliced_batchnorm_updates_only_the_active_running_stats() -> None:
    bn = DynamicBatchNorm2d(16).train()
    bn(torch.randn(8, 6, 4, 4) + 3.0)
    assert (bn.running_mean[:6] > 0.1).all()
    assert (bn.running_mean[6:] == 0).all() and int(bn.num_batches_tracked) == 1


def test_supernet_trains_every_elastic_dimension(space: OFASpace) -> None:
    supernet = space.supernet().train()
    arch = space.smallest()  # kernel 3: the gradient must reach both transform matrices (7to5 and 5to3)
    supernet.set_active(arch)
    loss = F.cross_entropy(supernet(torch.randn(4, *space.input_shape(arch))), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    transform = supernet.stages[0][0].depth_conv.kernel_transform
    assert transform["7to5"].grad.abs().sum() > 0 and transform["5to3"].grad.abs().sum() > 0
    assert supernet.stages[0][2].depth_conv.weight.grad is None  # depth 2: block 2 is not in the graph


# ------------------------------------------------------------------------------------ kernel transform
def test_kernel_transform_changes_small_kernels_and_extraction_follows(space: OFASpace) -> None:
    torch.manual_seed(0)
    supernet = space.supernet().eval()
    dw = supernet.stages[1][0].depth_conv
    channels = dw.weight.shape[0]
    centre = dw.weight[:, :, 2:5, 2:5]
    torch.testing.assert_close(dw.active_filter(channels, 3), centre)  # identity init: plain centre crop
    with torch.no_grad():
        for p in dw.kernel_transform.values():
            p.add_(0.2 * torch.randn_like(p))
    # Independent reimplementation: 7 -> 5 on the centre 5x5, then 5 -> 3 on the centre of the result.
    m75, m53 = dw.kernel_transform["7to5"], dw.kernel_transform["5to3"]
    k5 = (dw.weight[:, :, 1:6, 1:6].reshape(channels, 25) @ m75.T).view(channels, 1, 5, 5)
    k3 = (k5[:, :, 1:4, 1:4].reshape(channels, 9) @ m53.T).view(channels, 1, 3, 3)
    torch.testing.assert_close(dw.active_filter(channels, 5), k5)
    torch.testing.assert_close(dw.active_filter(channels, 3), k3)
    assert not torch.allclose(dw.active_filter(channels, 3), centre, atol=1e-3)

    public = _public(ks=[3] * 20, e=6, d=4)
    arch = space.from_public(public)
    supernet.set_active(space.smallest())
    net = supernet.extract(arch).eval()
    assert supernet.active_arch == space.smallest()  # extract leaves the active subnet alone
    supernet.set_active(arch)
    static_dw = net.blocks[1 + 4].depth_conv.conv.weight  # stem block, then stage 1 (4 blocks), then stage 2 block 0
    torch.testing.assert_close(static_dw, k3.detach())
    x = torch.randn(2, *space.input_shape(arch))
    with torch.no_grad():
        torch.testing.assert_close(net(x), supernet(x), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------- parameter parity
def _md(v: float, divisor: int = 8) -> int:
    """OFA's make_divisible, written again here so the counter below does not depend on the module."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def ofa_param_count(public: dict, width: float, num_classes: int = 1000, in_channels: int = 3) -> int:
    """Parameters of OFA's ``get_active_subnet`` for ``public``, in closed form from OFAMobileNetV3's plan.

    Every conv is bias-free and followed by a BN (2 parameters per channel; running stats are buffers),
    except the SE convs (biased, no BN) and the feature-mix conv (no bias, no BN). The kernel-transform
    matrices exist only in the supernet.
    """
    stem, first, *stages, final_expand, feature_mix = [
        _md(c * width) for c in (16, 16, 24, 40, 80, 112, 160, 960, 1280)
    ]
    n = in_channels * stem * 9 + 2 * stem  # stem 3x3 conv + BN
    n += stem * 9 + 2 * stem + stem * first + 2 * first  # first block: expand 1 -> dw 3x3 + BN, pw + BN
    c_in = first
    for s, (out, use_se) in enumerate(zip(stages, (False, True, False, True, True))):
        for j in range(public["d"][s]):
            k, e = public["ks"][4 * s + j], public["e"][4 * s + j]
            mid = _md(round(c_in * e))
            n += c_in * mid + 2 * mid + mid * k * k + 2 * mid + mid * out + 2 * out
            if use_se:
                se = _md(mid // 4)
                n += mid * se + se + se * mid + mid
            c_in = out
    n += c_in * final_expand + 2 * final_expand + final_expand * feature_mix  # final expand + BN, feature mix
    return n + feature_mix * num_classes + num_classes  # classifier


def _random_public(rng: np.random.Generator) -> dict:
    return {
        "ks": [int(rng.choice([3, 5, 7])) for _ in range(20)],
        "e": [int(rng.choice([3, 4, 6])) for _ in range(20)],
        "d": [int(rng.choice([2, 3, 4])) for _ in range(5)],
        "r": 224,
    }


@pytest.mark.parametrize("width", [1.0, 1.2])
def test_param_count_matches_ofa_closed_form(width: float) -> None:
    space = OFASpace(width_mult=width)
    rng = np.random.default_rng(int(width * 10))
    publics = [_public(7, 6, 4, 224), _public(3, 3, 2, 128)] + [_random_public(rng) for _ in range(3)]
    for public in publics:
        assert count_params(space.build(space.from_public(public))) == ofa_param_count(public, width)
    supernet = space.supernet()
    for public in publics[:2] + publics[-1:]:
        assert count_params(supernet.extract(space.from_public(public))) == ofa_param_count(public, width)
    # The supernet holds the largest subnet plus 20 blocks x (7to5: 25x25 + 5to3: 9x9) transform matrices.
    assert count_params(supernet) == ofa_param_count(publics[0], width) + 20 * (25 * 25 + 9 * 9)


def test_param_count_absolute_values() -> None:
    # Largest w1.0 (d=4, e=6, k=7): stem 464 + first block 464 + stages 52,752 / 217,704 / 348,880 /
    # 1,472,624 / 2,906,552 + head 2,665,320 (= 160*960 + 2*960 + 960*1280 + 1280*1000 + 1000).
    # E.g. stage 5 block 0 (112 -> 160, mid 672, SE 168): 75,264+1,344 + 32,928+1,344 + 2*112,896+168+672
    # + 107,520+320 = 445,352; blocks 1-3 (mid 960, SE 240): 820,400 each.
    # OFA's released ofa_mbv3_d234_e346_k357_w1.0 is quoted as ~7.7M: this subnet is 7,664,760 and the
    # supernet (with the 14,120 transform-matrix parameters) 7,678,880, both "7.7M" -- no real difference.
    w10, w12 = OFASpace(width_mult=1.0), OFASpace(width_mult=1.2)
    assert count_params(w10.build(w10.largest())) == 7_664_760
    assert count_params(w12.build(w12.largest())) == 10_701_632  # widths 24,24 | 32,48,96,136,192 | 1152,1536
    assert count_params(w10.build(w10.smallest())) == 3_410_792  # d=2, e=3, k=3 (resolution does not matter)


def test_count_macs_of_a_known_model() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Conv2d(2, 2, 3, padding=1, groups=2),
        torch.nn.Flatten(), torch.nn.Linear(32, 3),
    )
    assert count_macs(model, (1, 4, 4)) == 2 * 16 * 9 + 2 * 16 * 9 + 32 * 3
    assert model.training  # mode restored


# ------------------------------------------------------------------------------------------ arch forms
def test_inactive_slots_do_not_change_the_arch(space: OFASpace) -> None:
    a = _public(ks=[7] * 20, e=[6] * 20, d=[2, 3, 4, 2, 3])
    b = json.loads(json.dumps(a))
    for stage, depth in enumerate(b["d"]):
        for j in range(depth, 4):
            b["ks"][4 * stage + j] = 5
            b["e"][4 * stage + j] = 4
    b["ks"][3] = 4  # stage 1 block 3 is inactive: anything goes there
    assert arch_id(space.from_public(a)) == arch_id(space.from_public(b))
    assert space.to_public(space.from_public(b))["ks"][2:4] == [3, 3]  # canonical: reset to the smallest


@pytest.mark.parametrize(
    "public, message",
    [
        ([1, 2], "JSON object"),
        ({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5}, r"missing keys \['r'\]"),
        ({**_public(), "w": 1.0}, r"unknown keys \['w'\]"),
        (_public(ks=[3] * 19), r'"ks" must be a list of 20'),
        (_public(d=[2] * 4), r'"d" must be a list of 5'),
        (_public(ks=[4] + [3] * 19), r"ks\[0\] \(stage 1, block 0\) = 4 .*\[3, 5, 7\]"),
        (_public(e=[3, 3.5] + [3] * 18), r"e\[1\].*\[3, 4, 6\]"),
        (_public(d=[2, 2, 5, 2, 2]), r"d\[2\] = 5"),
        (_public(r=30), r"r = 30 .*\[24, 28, 32\]"),
        (_public(d=[True] * 5), r"d\[0\] = True"),
    ],
)
def test_from_public_rejects_malformed_input(space: OFASpace, public: object, message: str) -> None:
    with pytest.raises(InvalidArchError, match=message):
        space.from_public(public)


def test_parse_accepts_both_forms_and_normalises_numbers(space: OFASpace) -> None:
    arch = space.from_public(_public(ks=5, e=4.0, d=3, r=24))
    assert arch["stage1.block0.expand"] == 4 and isinstance(arch["stage1.block0.expand"], int)
    assert space.parse(arch) == arch == space.parse(space.to_public(arch))
    assert arch_id(space.validate({**arch, "stage2.block1.kernel": 5.0})) == arch_id(arch)
    assert space.describe(arch).startswith("r=24 d=[3, 3, 3, 3, 3] ks=[5,5,5|")


def test_encoding_layout(space: OFASpace) -> None:
    arch = space.from_public(_public(ks=7, e=3, d=[2, 4, 4, 4, 4], r=32))
    vec = space.encode(arch)
    assert vec.shape == (20 * 6 + 3,)
    assert vec[:6].tolist() == [0, 0, 1, 1, 0, 0]  # stage 1 block 0: kernel 7, expand 3
    assert not vec[12:24].any()  # stage 1 blocks 2, 3 inactive
    assert vec[-3:].tolist() == [0, 0, 1]


def test_sample_elastic_varies_only_the_given_dims(space: OFASpace) -> None:
    rng = np.random.default_rng(0)
    archs = [space.sample_elastic(rng, ["kernel"]) for _ in range(20)]
    assert all(a["resolution"] == 32 and a["stage3.depth"] == 4 and a["stage3.block1.expand"] == 6 for a in archs)
    assert len({a["stage2.block3.kernel"] for a in archs}) > 1
    assert space.sample_elastic(rng, []) == space.largest()
    with pytest.raises(ConfigError, match="width"):
        space.sample_elastic(rng, ["width"])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(width_mult=0), dict(width_mult="1"), dict(num_classes=0), dict(in_channels=2.5),
        dict(kernel_sizes=(3, 4)), dict(kernel_sizes=()), dict(expand_ratios="346"), dict(depths=(2, 2)),
        dict(resolutions=(0, 32)), dict(dropout=1.0), dict(depths=(True,)),
    ],
)
def test_constructor_rejects_bad_config(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="ofa: "):
        OFASpace(**kwargs)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter: fast and enough here
def test_built_net_exports_to_onnx(space: OFASpace, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    arch = space.largest()
    net = space.build(arch).eval()
    x = torch.randn(1, *space.input_shape(arch))
    path = tmp_path / "ofa.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"HardSwish", "HardSigmoid", "GlobalAveragePool"} <= ops
    session = ort.InferenceSession(str(path))
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(y, net(x).detach().numpy(), atol=1e-5)


# ------------------------------------------------------------------------------------------------- CLI
def test_describe_cli_prints_json() -> None:
    public = _public(ks=5, e=4, d=3, r=28)
    result = subprocess.run(
        [sys.executable, "-m", "search_spaces", "describe", "--space", "ofa", "--arch", json.dumps(public)]
        + SMALL_CLI,
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["params"] == ofa_param_count(public, 0.5, num_classes=10, in_channels=1)
    assert info["macs"] > 0 and info["resolution"] == 28
    assert info["arch_id"] == arch_id(OFASpace(**SMALL).from_public(public))


def test_describe_cli_rejects_malformed_arch_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "search_spaces", "describe", "--arch", '{"ks": [3, 5'],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["describe", "--arch", json.dumps(_public(ks=[3] * 19))], '"ks" must be a list of 20'),
        (["describe", "--arch", json.dumps(_public(ks=[4] * 20))], "= 4 is not allowed"),
        (["describe", "--space", "nope", "--arch", "{}"], "unknown space 'nope'"),
        (["describe", "--arch", "@/no/such/file.json"], "does not exist"),
        (["describe"], "--arch"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(argv + SMALL_CLI if argv[0] == "describe" and len(argv) > 1 else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_list(capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["list"]) == 0
    assert "ofa" in capsys.readouterr().out.split()


def test_cost_features_fixed_length_and_monotone_in_size():
    from search_spaces.ofa import OFASpace

    space = OFASpace(width_mult=0.5, num_classes=10, in_channels=1, resolutions=(24, 28, 32))
    rng = np.random.default_rng(0)
    lengths = {space.cost_features(space.sample(rng)).shape for _ in range(10)}
    assert len(lengths) == 1
    big, small = space.cost_features(space.largest()), space.cost_features(space.smallest())
    assert np.all(big >= small) and big.sum() > 2 * small.sum()
    arch = space.sample(rng)
    assert np.array_equal(space.cost_features(arch), space.cost_features(dict(arch)))
