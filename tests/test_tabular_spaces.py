"""The NAS-Bench-201 and FBNet spaces: public string round-trips against the shipped tables, networks that
build, run and export, and clear errors for strings that are not in the space."""

import numpy as np
import pytest
import torch

from nas.arch import arch_id
from nas.errors import InvalidArchError
from nas.export import export_onnx, verify_onnx
from nas.tables import MetricTable, shipped_table
from search_spaces.fbnet import FBNetSpace
from search_spaces.nb201 import NB201Space, edges_with_path
from search_spaces.profile import count_params


@pytest.fixture(scope="module")
def nb201_table():
    space = NB201Space()
    entry = shipped_table("nb201")
    return space, MetricTable(entry["path"], space=space, arch_column="arch_str", columns=("cifar10_test_accuracy", "raspi4"))


def test_nb201_strings_round_trip_for_every_cell_of_the_benchmark(nb201_table):
    space, table = nb201_table
    import pandas as pd

    strings = pd.read_csv(shipped_table("nb201")["path"])["arch_str"].tolist()
    assert len(strings) == 15625 and len(table) == 15625  # every cell a distinct member
    for text, arch in zip(strings, table.archs):
        assert space.to_public(arch) == text
        assert space.from_public(text) == arch
    assert table.lookup(space.from_public(strings[6111]), "cifar10_test_accuracy") == pytest.approx(94.3733, abs=1e-3)


def test_nb201_rejects_strings_outside_the_space():
    space = NB201Space()
    good = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    for bad, message in [
        (good.replace("avg_pool_3x3", "max_pool_3x3"), "unknown op 'max_pool_3x3'"),
        (good.replace("~1|+", "~2|+", 1), "expected '<op>~1'"),
        ("|nor_conv_3x3~0|+|none~0|none~1|", "expected 3"),
        (42, "NAS-Bench-201 string"),
    ]:
        with pytest.raises(InvalidArchError, match=message.replace("|", r"\|")):
            space.from_public(bad)


def test_nb201_network_runs_exports_and_has_the_benchmark_size():
    space = NB201Space()
    largest = {label: "nor_conv_3x3" for label in space.choices()}
    model = space.build(largest).eval()
    # NAS-Bench-201 reports 1.53 M parameters for the all-3x3 cell on CIFAR-10 (its largest network).
    assert count_params(model) / 1e6 == pytest.approx(1.53, abs=0.01)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_nb201_onnx_export_matches_pytorch(tmp_path):
    space = NB201Space(cells_per_stage=1)
    arch = space.from_public("|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    model = space.build(arch).eval()
    path = export_onnx(model, space.input_shape(arch), tmp_path / "nb201.onnx")
    assert verify_onnx(path, model, space.input_shape(arch)) < 1e-4


def test_path_detection():
    space = NB201Space()
    cut = space.from_public("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    skip = space.from_public("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    via_nodes = space.from_public("|skip_connect~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|avg_pool_3x3~2|")
    assert not edges_with_path(cut) and edges_with_path(skip) and edges_with_path(via_nodes)


def test_fbnet_strings_round_trip_for_the_benchmark_rows():
    space = FBNetSpace()
    import pandas as pd

    frame = pd.read_csv(shipped_table("fbnet")["path"])
    for text in frame["op_names"].tolist()[:500]:
        arch = space.from_public(text)
        assert space.to_public(arch) == text
    assert len({arch_id(space.from_public(t)) for t in frame["op_names"]}) == len(frame)


def test_fbnet_rejects_bad_strings():
    space = FBNetSpace()
    with pytest.raises(InvalidArchError, match="22 op names"):
        space.from_public("k3_e1 skip")
    with pytest.raises(InvalidArchError, match="unknown fbnet op"):
        space.from_public(" ".join(["k7_e6"] * 22))


def test_fbnet_network_builds_every_block_and_exports(tmp_path):
    space = FBNetSpace()
    ops = ["k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip"]
    arch = space.from_public(" ".join(ops[i % len(ops)] for i in range(22)))
    model = space.build(arch).eval()
    x = torch.randn(1, 3, 32, 32)
    assert model(x).shape == (1, 100)
    path = export_onnx(model, space.input_shape(arch), tmp_path / "fbnet.onnx")
    assert verify_onnx(path, model, space.input_shape(arch)) < 1e-3


def test_fbnet_latency_is_a_sum_of_per_layer_costs_on_the_shipped_devices():
    """HW-NAS-Bench's FBNet latencies are sums of per-layer measurements: a per-(layer, op) linear model on the
    one-hot encoding fits them to rounding error. If this fails, the encoding or the table is misaligned."""
    space = FBNetSpace()
    table = MetricTable(shipped_table("fbnet")["path"], space=space, arch_column="op_names", columns=("raspi4",))
    X = space.encode_many(table.archs).astype(np.float64)
    y = table.values["raspi4"]
    w, *_ = np.linalg.lstsq(np.hstack([X, np.ones((len(y), 1))]), y, rcond=None)
    relative = np.abs(np.hstack([X, np.ones((len(y), 1))]) @ w - y) / y
    assert np.mean(relative <= 0.10) > 0.999
