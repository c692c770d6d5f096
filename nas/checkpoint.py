"""Checkpoints as one ``.npz`` file: named arrays plus JSON metadata, never pickles.

Layout of the file (a plain numpy zip archive, readable with ``np.load(path)``):

* one entry per tensor, under its own name (for example ``model.stem.weight``);
* ``__meta__``: a 0-d unicode array holding the JSON text of the metadata;
* ``__dtypes__``: a 0-d unicode array holding JSON ``{name: torch dtype}``, so each tensor comes back with
  the dtype it was saved with (numpy has no bfloat16, so those are stored bit-for-bit as int16).

Files are written to a temporary file in the same folder and moved into place with :func:`os.replace`,
so a crash or a full disk leaves either the old file or the new one, never half of one. Loading uses
``allow_pickle=False``; a missing, truncated or foreign file raises :class:`ModelError`.

:func:`optimizer_to_tensors` / :func:`optimizer_from_tensors` flatten a ``torch.optim`` state dict into
tensors plus JSON so training can resume exactly.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.errors import ModelError

_META_KEY = "__meta__"
_DTYPES_KEY = "__dtypes__"
_RESERVED = (_META_KEY, _DTYPES_KEY)

_TORCH_DTYPES: dict[str, torch.dtype] = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64,
        torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
    )
}


def save_checkpoint(
    path: Path | str, tensors: Mapping[str, torch.Tensor | np.ndarray], meta: Mapping[str, Any]
) -> None:
    """Write ``tensors`` and JSON-serialisable ``meta`` to ``path`` atomically (see the module docstring)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name in _RESERVED:
            raise ModelError(
                f"checkpoint tensor name {name!r} is empty, not a string or reserved ({', '.join(_RESERVED)})"
            )
        arrays[name], dtypes[name] = _to_numpy(name, value)
    try:
        meta_text = json.dumps(_encode_json(meta), allow_nan=True, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"checkpoint metadata for {path} is not JSON-serialisable: {exc}") from None
    arrays[_META_KEY] = np.array(meta_text)
    arrays[_DTYPES_KEY] = np.array(json.dumps(dtypes, sort_keys=True))

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not reach the disk before the data
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_checkpoint`: ``(tensors, meta)``; :class:`ModelError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist; check the path or train/save it first")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _META_KEY not in archive.files:
                raise ModelError(f"{path} is an .npz file but not an hwnas checkpoint (no {_META_KEY} entry)")
            meta = _decode_json(json.loads(str(archive[_META_KEY])))
            dtypes = json.loads(str(archive[_DTYPES_KEY])) if _DTYPES_KEY in archive.files else {}
            tensors = {
                name: _to_torch(archive[name], dtypes.get(name)) for name in archive.files if name not in _RESERVED
            }
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ModelError(f"checkpoint {path} is corrupt or truncated ({exc}); delete it and save it again") from None
    return tensors, meta


# ---------------------------------------------------------------------- optimizer state
def optimizer_to_tensors(
    state: Mapping[str, Any], *, prefix: str = "optim."
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (per-parameter buffers) and JSON (everything else).

    Works for any optimizer whose per-parameter state holds tensors and plain scalars (SGD momentum,
    Adam/AdamW moments and steps, RMSprop ...).
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{param_id}.{key}"] = value.detach().cpu().clone()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    meta = {"param_groups": _encode_json(state["param_groups"]), "scalars": _encode_json(scalars), "prefix": prefix}
    return tensors, meta


def optimizer_from_tensors(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild the ``state_dict()`` that :func:`optimizer_to_tensors` split (ready for ``load_state_dict``)."""
    prefix = meta["prefix"]
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix):
            continue
        param_id, key = name[len(prefix):].split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    for param_id, values in _decode_json(meta["scalars"]).items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": _decode_json(meta["param_groups"])}


# ---------------------------------------------------------------------- helpers
def _to_numpy(name: str, value: torch.Tensor | np.ndarray) -> tuple[np.ndarray, str]:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ModelError(f"checkpoint array {name!r} has dtype object, which cannot be stored without pickle")
        return np.ascontiguousarray(value), ""
    if not isinstance(value, torch.Tensor):
        raise ModelError(f"checkpoint entry {name!r} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    tensor = value.detach().cpu().contiguous()
    dtype_name = str(tensor.dtype).removeprefix("torch.")
    if dtype_name not in _TORCH_DTYPES:
        raise ModelError(f"checkpoint tensor {name!r} has unsupported dtype {tensor.dtype}")
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().copy(), dtype_name
    return tensor.numpy().copy(), dtype_name


def _to_torch(array: np.ndarray, dtype_name: str | None) -> torch.Tensor:
    if dtype_name == "bfloat16":
        return torch.from_numpy(np.array(array, dtype=np.int16)).view(torch.bfloat16)
    tensor = torch.from_numpy(np.array(array))  # copy: the archive's buffer is closed after loading
    if dtype_name and dtype_name in _TORCH_DTYPES:
        tensor = tensor.to(_TORCH_DTYPES[dtype_name])
    return tensor


# JSON has no tuples, and optimizers store some hyper-parameters as tuples (Adam's betas); a tagged
# object keeps the exact type so a resumed optimizer is identical to the saved one.
_TUPLE_TAG = "__tuple__"


def _encode_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return {_TUPLE_TAG: [_encode_json(v) for v in value]}
    if isinstance(value, list):
        return [_encode_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode_json(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()  # e.g. a tensor learning rate; JSON keeps its value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def _decode_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TUPLE_TAG}:
            return tuple(_decode_json(v) for v in value[_TUPLE_TAG])
        return {k: _decode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value
