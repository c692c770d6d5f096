"""ONNX export: parity with PyTorch, one self-contained file, clear errors for bad model files."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from nas.errors import ConfigError, ModelError
from nas.export import export_onnx, load_session, verify_onnx

SHAPE = (3, 16, 16)


def tiny_net(seed: int = 0) -> nn.Module:
    """Two convs with BatchNorm whose running statistics are not the defaults (so BN folding is exercised)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    bn = net[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    return net


def test_export_matches_pytorch_and_is_one_file(tmp_path: Path) -> None:
    net = tiny_net().train()  # export must switch to eval (BN running stats) and give the mode back
    path = export_onnx(net, SHAPE, tmp_path / "sub" / "tiny.onnx")
    assert path == tmp_path / "sub" / "tiny.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.onnx"]  # no .onnx.data, no temp leftovers
    assert net.training
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, *SHAPE]
    assert verify_onnx(path, net, SHAPE, samples=3, seed=1) < 1e-4
    assert net.training


def test_dynamo_exporter_also_matches(tmp_path: Path) -> None:
    # The fallback exporter (the default of future torch versions) must give the same contract.
    net = tiny_net(1)
    path = export_onnx(net, SHAPE, tmp_path / "tiny.onnx", exporter="dynamo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]
    assert verify_onnx(path, net, SHAPE) < 1e-4


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="input_shape"):
        export_onnx(tiny_net(), (1, 3, 16, 16), tmp_path / "x.onnx")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="exporter"):
        export_onnx(tiny_net(), SHAPE, tmp_path / "x.onnx", exporter="tvm")
    with pytest.raises(ConfigError, match="threads"):
        load_session(tmp_path / "x.onnx", threads=0)


def test_unexportable_model_is_a_model_error(tmp_path: Path) -> None:
    class NeedsTwoInputs(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x + y

    with pytest.raises(ModelError, match="could not export NeedsTwoInputs"):
        export_onnx(NeedsTwoInputs(), SHAPE, tmp_path / "x.onnx", exporter="legacy")
    assert list(tmp_path.iterdir()) == []


def test_missing_or_malformed_model_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_session(tmp_path / "nope.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(ModelError, match="corrupt or not an ONNX model"):
        load_session(garbage)
    good = export_onnx(tiny_net(), SHAPE, tmp_path / "good.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_session(truncated)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        load_session(empty)
    with pytest.raises(ModelError, match="empty"):
        load_session(b"")
