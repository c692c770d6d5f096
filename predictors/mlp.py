"""A small fully connected network regressor (like OFA's accuracy predictor: 3 hidden ReLU layers of 400).

Features and targets are standardised (targets optionally in log space), training is full-batch-shuffled
Adam with a cosine learning-rate decay for a fixed number of epochs. Initialisation and shuffling use only
``seed`` (the global torch RNG state is saved and restored), so a fit is reproducible on the same machine
and thread count. Weights are saved as float32 arrays in ``arrays.npz``, never with ``torch.save``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.errors import ConfigError, DataError
from nas.registry import register_predictor
from predictors.base import Predictor, check_bool, check_float, check_int


def _network(in_dim: int, hidden_sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _linears(net: nn.Sequential) -> list[nn.Linear]:
    return [m for m in net if isinstance(m, nn.Linear)]


@register_predictor("mlp")
class MLPPredictor(Predictor):
    """Multi-layer perceptron ``R^d -> R`` trained with MSE on standardised targets."""

    name = "mlp"

    def __init__(
        self,
        *,
        hidden_sizes: Sequence[int] = (400, 400, 400),
        epochs: int = 200,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 256,
        log_target: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(hidden_sizes, (str, bytes)) or not isinstance(hidden_sizes, Sequence) or not hidden_sizes:
            raise ConfigError(
                f"mlp predictor: hidden_sizes must be a non-empty list of layer widths, got {hidden_sizes!r}"
            )
        self.hidden_sizes = tuple(check_int("mlp", "each hidden size", h) for h in hidden_sizes)
        self.epochs = check_int("mlp", "epochs", epochs)
        self.lr = check_float("mlp", "lr", lr)
        self.weight_decay = check_float("mlp", "weight_decay", weight_decay, allow_zero=True)
        self.batch_size = check_int("mlp", "batch_size", batch_size)
        self.log_target = check_bool("mlp", "log_target", log_target)
        self.seed = check_int("mlp", "seed", seed, minimum=0)
        # fitted state
        self.net: nn.Sequential | None = None
        self.x_mean: np.ndarray | None = None
        self.x_scale: np.ndarray | None = None
        self.t_mean = 0.0
        self.t_scale = 1.0

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "hidden_sizes": list(self.hidden_sizes),
            "epochs": self.epochs,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "log_target": self.log_target,
            "seed": self.seed,
        }

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.log_target and np.any(y <= 0):
            raise DataError("mlp predictor with log_target=true needs all targets > 0 (e.g. latency in ms)")
        t = np.log(y) if self.log_target else y
        x_mean = X.mean(axis=0)
        x_scale = X.std(axis=0)
        x_scale[x_scale == 0] = 1.0
        t_mean, t_scale = float(t.mean()), float(t.std())
        t_scale = t_scale if t_scale > 0 else 1.0
        inputs = torch.from_numpy(((X - x_mean) / x_scale).astype(np.float32))
        targets = torch.from_numpy(((t - t_mean) / t_scale).astype(np.float32)).unsqueeze(1)

        # fork_rng: seed the layer initialisation without changing the caller's global torch RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = _network(X.shape[1], self.hidden_sizes)
        shuffle = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        n = inputs.shape[0]
        steps_per_epoch = -(-n // self.batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs * steps_per_epoch)
        loss_fn = nn.MSELoss()
        net.train()
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=shuffle)
            for start in range(0, n, self.batch_size):
                batch = order[start : start + self.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(inputs[batch]), targets[batch])
                loss.backward()
                optimizer.step()
                schedule.step()
        self.x_mean, self.x_scale, self.t_mean, self.t_scale = x_mean, x_scale, t_mean, t_scale
        self.net = net
        # Predict through the same path as a loaded predictor, so save/load gives bit-identical predictions.
        self.set_arrays(self.get_arrays())

    def _predict(self, X: np.ndarray) -> np.ndarray:
        assert self.net is not None and self.x_mean is not None and self.x_scale is not None
        inputs = torch.from_numpy(((X - self.x_mean) / self.x_scale).astype(np.float32))
        with torch.no_grad():
            out = self.net(inputs).squeeze(1).numpy().astype(np.float64)
        t = out * self.t_scale + self.t_mean
        return np.exp(t) if self.log_target else t

    def get_arrays(self) -> dict[str, np.ndarray]:
        assert self.net is not None
        arrays: dict[str, np.ndarray] = {
            "x_mean": self.x_mean,
            "x_scale": self.x_scale,
            "t_mean": np.asarray(self.t_mean),
            "t_scale": np.asarray(self.t_scale),
        }
        for i, layer in enumerate(_linears(self.net)):
            arrays[f"layer{i}.weight"] = layer.weight.detach().cpu().numpy().copy()
            arrays[f"layer{i}.bias"] = layer.bias.detach().cpu().numpy().copy()
        return arrays

    def set_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        x_mean = np.asarray(arrays["x_mean"], dtype=np.float64)
        x_scale = np.asarray(arrays["x_scale"], dtype=np.float64)
        if x_mean.ndim != 1 or x_mean.shape != x_scale.shape:
            raise ValueError(f"mlp arrays disagree: x_mean {x_mean.shape}, x_scale {x_scale.shape}")
        layer_keys = {k for k in arrays if k.startswith("layer")}
        expected = {f"layer{i}.{part}" for i in range(len(self.hidden_sizes) + 1) for part in ("weight", "bias")}
        if layer_keys != expected:
            raise ValueError(f"mlp arrays hold layers {sorted(layer_keys)}, expected {sorted(expected)}")
        with torch.random.fork_rng(devices=[]):  # the throwaway initialisation must not move the global RNG
            net = _network(x_mean.shape[0], self.hidden_sizes)
        with torch.no_grad():
            for i, layer in enumerate(_linears(net)):
                for part in ("weight", "bias"):
                    value = np.asarray(arrays[f"layer{i}.{part}"], dtype=np.float32)
                    target = getattr(layer, part)
                    if value.shape != tuple(target.shape):
                        raise ValueError(f"mlp layer{i}.{part} has shape {value.shape}, expected {tuple(target.shape)}")
                    target.copy_(torch.from_numpy(value))
        net.eval()
        self.net = net
        self.x_mean, self.x_scale = x_mean, x_scale
        self.t_mean, self.t_scale = float(arrays["t_mean"]), float(arrays["t_scale"])
