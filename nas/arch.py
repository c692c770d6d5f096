"""Architectures: flat, human-readable dicts of labelled choices with a stable id.

An architecture is a plain ``dict[str, int | float | str | bool]`` mapping a choice label (for example
``"stage2.block1.kernel"``) to the value chosen. Keeping it flat and JSON-serialisable means it can be
logged, diffed, stored in a database and typed on a command line. Its :func:`arch_id` is a hash of the
canonical JSON form, so it is the same across processes, machines and library versions, and it is the
cache key for every measurement of that architecture.

Spaces return archs in *canonical* form (for example, the OFA space resets choices of inactive blocks),
so two dicts describing the same network get the same id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Union

from nas.errors import InvalidArchError

Value = Union[int, float, str, bool]
Arch = dict[str, Value]

_ID_LENGTH = 16
_SCALAR_TYPES = (int, float, str, bool)


def canonical_json(arch: Mapping[str, Value]) -> str:
    """The one serialisation used for hashing: sorted keys, no whitespace."""
    check_flat(arch)
    return json.dumps(dict(arch), sort_keys=True, separators=(",", ":"))


def arch_id(arch: Mapping[str, Value]) -> str:
    """Stable id of an architecture: the first 16 hex digits of SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(arch).encode("utf-8")).hexdigest()[:_ID_LENGTH]


def check_flat(arch: object) -> None:
    """Raise :class:`InvalidArchError` unless ``arch`` is a flat mapping of str to scalar values."""
    if not isinstance(arch, Mapping):
        raise InvalidArchError(f"an architecture must be a JSON object of label -> value, got {type(arch).__name__}")
    for key, value in arch.items():
        if type(key) is str and type(value) in _SCALAR_TYPES:  # the common case, checked cheaply (ids are hot)
            continue
        if not isinstance(key, str):
            raise InvalidArchError(f"architecture labels must be strings, got {key!r}")
        if isinstance(value, bool) or isinstance(value, (int, float, str)):
            continue
        raise InvalidArchError(
            f"architecture value for {key!r} must be a number, string or boolean, got {type(value).__name__}: {value!r}"
        )


def parse_json_arg(text: str, *, what: str = "architecture") -> object:
    """Parse a JSON value given inline or as ``@path`` / a path to a ``.json`` file.

    Used by every command that accepts an architecture, so they all report malformed input the same way.
    """
    source = text
    candidate = text[1:] if text.startswith("@") else text
    if text.startswith("@") or (candidate.endswith(".json") and not candidate.lstrip().startswith("{")):
        path = Path(candidate)
        if not path.is_file():
            raise InvalidArchError(f"{what} file {path} does not exist; pass inline JSON or an existing .json file")
        source = path.read_text()
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise InvalidArchError(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {source[:200]!r}. "
            'Quote it for the shell, e.g. \'{"ks": [...], "e": [...], "d": [...], "r": 224}\''
        ) from None
