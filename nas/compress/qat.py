"""Quantization-aware fine-tuning: the fallback when post-training int8 loses more than ``quantize.max_drop``.

The network is fine-tuned with int8 fake quantization in the loop (torchao's PT2E flow: ``torch.export`` the
network, ``prepare_qat_pt2e`` with the X86 inductor quantizer's QAT configuration: per-channel symmetric int8
weights, affine 8-bit activations, BatchNorm folding simulated), with distillation from the float network, so
its weights learn to sit where int8 rounding does not hurt. The adapted float weights are then copied back into
the original module (the exported graph keeps every parameter's name) and quantized by onnxruntime's static QDQ
quantizer like any other model.

Why not export torchao's converted graph directly: it does export to QDQ ONNX, but measured here (MobileNetV2
width 0.5, 28 px, one session) it ran at fp32 speed (0.180 ms vs fp32 0.177 ms, onnxruntime's own QDQ 0.131 ms):
its ReLU6 stays as a float Clip between each Conv and its QuantizeLinear, which keeps onnxruntime from fusing
the pattern into an int8 convolution; onnxruntime's quantizer folds the Clip into the activation range instead.
Install with ``pip install 'hwnas[qat]'`` (torchao, no further dependencies).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from nas.errors import ConfigError


def available() -> bool:
    """Whether torchao (the ``qat`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("torchao") is not None


def _torchao():
    # torchao logs a failure for each CUDA kernel library it cannot load on a CPU-only machine; not our news.
    quiet = logging.getLogger("torchao")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
        from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    except ImportError as err:
        raise ConfigError(f"quantization-aware training needs torchao: pip install 'hwnas[qat]' ({err})") from None
    finally:
        quiet.setLevel(level)
    return (prepare_qat_pt2e, move_exported_model_to_train, move_exported_model_to_eval,
            X86InductorQuantizer, get_default_x86_inductor_quantization_config)


class _FakeQuantized(nn.Module):
    """An exported, QAT-prepared graph as a module whose ``train()``/``eval()`` work (an exported graph refuses
    them; torchao's helpers switch its BatchNorm and observers instead), so the usual training loop runs it."""

    def __init__(self, graph: nn.Module, to_train, to_eval) -> None:
        super().__init__()
        self.graph = graph
        self._to_train, self._to_eval = to_train, to_eval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def train(self, mode: bool = True) -> "_FakeQuantized":
        (self._to_train if mode else self._to_eval)(self.graph)
        self.training = mode
        return self


def qat_finetune(model: nn.Module, data, *, input_shape: Sequence[int], epochs: int, lr: float, seed: int,
                 checkpoint: Path, progress: bool = True, kd_ratio: float = 0.5, temperature: float = 2.0) -> nn.Module:
    """A copy of ``model`` whose float weights were fine-tuned with int8 fake quantization (see the module
    docstring); distilled from ``model`` itself. Checkpointed per epoch at ``checkpoint``."""
    from nas.channels.finetune import DistillationLoss
    from nas.oneshot.retrain import train_network

    prepare, to_train, to_eval, quantizer_cls, qat_config = _torchao()
    shape = tuple(int(v) for v in input_shape)
    torch.manual_seed(seed)
    float_model = copy.deepcopy(model).train()
    batch = torch.export.Dim("batch", min=1, max=4096)
    exported = torch.export.export(float_model, (torch.randn(2, *shape),), dynamic_shapes=({0: batch},)).module()
    prepared = prepare(exported, quantizer_cls().set_global(qat_config(is_qat=True)))
    wrapped = _FakeQuantized(prepared, to_train, to_eval)
    train_network(wrapped, data, epochs=epochs, lr=lr, resolution=shape[-1], seed=seed, checkpoint=checkpoint,
                  progress=progress, loss_fn=DistillationLoss(model, kd_ratio=kd_ratio, temperature=temperature),
                  desc="quantization-aware fine-tuning")
    learned = prepared.state_dict()
    state = float_model.state_dict()
    missing = [name for name in state if name not in learned]
    if missing:
        raise ConfigError(f"quantization-aware training lost track of parameters {missing[:3]}; use qat_epochs=0")
    float_model.load_state_dict({name: learned[name].detach().clone() for name in state})
    return float_model.eval()
