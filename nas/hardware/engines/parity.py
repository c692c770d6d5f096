"""The parity check that precedes a network's first measurement on an engine: the engine's output for a seeded
input against PyTorch's, within the engine's tolerance. A conversion that silently changes the function (a
dropped activation, a wrong layout) would otherwise be timed as if it were the network."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nas.errors import ModelError
from nas.hardware.engines.base import Engine, seeded_input


def check_parity(engine: Engine, onnx: Path, model, input_shape: Sequence[int], *, threads: int = 1,
                 seed: int = 1) -> float:
    """Max |engine - PyTorch| / max(1, max |PyTorch|) for ``model`` exported as ``onnx``; :class:`ModelError`
    when it is over ``engine.tolerance`` (or the engine cannot convert or run the model)."""
    import torch

    x = seeded_input(input_shape, seed)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).detach().cpu().numpy()
    try:
        got = np.asarray(engine.load(onnx, input_shape, threads=threads, seed=seed).infer(x), dtype=np.float64)
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - an engine failure on this network is the network's error
        raise ModelError(f"{engine.name} could not run {Path(onnx).name}: {type(err).__name__}: {err}") from err
    if got.size != expected.size:
        raise ModelError(f"{engine.name} returned {got.size} outputs for {Path(onnx).name}, PyTorch {expected.size}")
    error = float(np.abs(got.reshape(expected.shape) - expected).max() / max(1.0, float(np.abs(expected).max())))
    if not error <= engine.tolerance:
        raise ModelError(f"{engine.name}'s output for {Path(onnx).name} differs from PyTorch's by {error:.2g} "
                         f"(relative), over its tolerance {engine.tolerance:g}: the conversion changed the network; "
                         f"this network is not measured on {engine.name}")
    return error
