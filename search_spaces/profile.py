"""Static cost of a network: parameter count and multiply-accumulates (MACs) of one image.

MACs are counted with forward hooks on ``nn.Conv2d`` and ``nn.Linear`` only (the layers that dominate);
BatchNorm, activations, pooling and additions are not counted, and biases are not counted, which is the
usual convention (e.g. OFA's and MobileNet papers' "FLOPs"). Use it on static networks (``space.build`` or
``Supernet.extract``): the supernet's dynamic layers are not ``nn.Conv2d`` and are not counted.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on a single input of ``input_shape`` = ``(C, H, W)``."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        # Every output element is a dot product over (in_channels / groups) * kh * kw inputs.
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    first = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape, device=None if first is None else first.device,
                    dtype=torch.float32 if first is None else first.dtype)
    was_training = model.training
    try:
        model.eval()  # eval: BN must not update its running statistics while we count
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
