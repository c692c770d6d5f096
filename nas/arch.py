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
import math
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from pathlib import Path
from typing import Union

from nas.errors import InvalidArchError

Value = Union[int, float, str, bool]
Arch = dict[str, Value]

_ID_LENGTH = 16
_SCALAR_TYPES = (int, float, str, bool)


def canonical_json(arch: Mapping[str, Value]) -> str:
    """The one serialisation used for hashing: sorted keys, no whitespace."""
    fast = _numeric_json(arch) if type(arch) is dict else None
    if fast is not None:
        return fast
    check_flat(arch)
    return json.dumps(dict(arch), sort_keys=True, separators=(",", ":"))


# Per label set (the keys in insertion order): a getter of the values in sorted-key order and a "%s" template
# of the JSON text. A search hashes tens of thousands of archs of one space, and json.dumps (sorting 41 keys,
# formatting each number) was a third of a predictor-scored search's time.
_TEMPLATES: dict[tuple[str, ...], tuple[itemgetter, str]] = {}
_MAX_TEMPLATES = 256  # label sets of a few spaces; a stream of odd dicts must not grow it without bound
_NUMBER_TYPES = frozenset((int, float))


def _numeric_json(arch: dict) -> str | None:
    """``json.dumps(arch, sort_keys=True, separators=(",", ":"))`` for a dict of >= 2 str keys whose values are
    all plain ints or finite floats (``%s`` of those is exactly json's ``int.__repr__``/``float.__repr__``);
    None for anything else (bools, strings, subclasses, NaN), which the caller serialises with json itself."""
    if len(arch) < 2:  # itemgetter of one key returns the value, not a tuple
        return None
    keys = tuple(arch)
    entry = _TEMPLATES.get(keys)
    if entry is None:
        if not all(type(k) is str for k in keys):
            return None
        order = sorted(keys)
        template = "{" + ",".join(encode_basestring_ascii(k).replace("%", "%%") + ":%s" for k in order) + "}"
        entry = (itemgetter(*order), template)
        if len(_TEMPLATES) < _MAX_TEMPLATES:
            _TEMPLATES[keys] = entry
    values = entry[0](arch)
    types = set(map(type, values))
    if not types <= _NUMBER_TYPES:
        return None
    if float in types and not all(math.isfinite(v) for v in values if type(v) is float):
        return None  # json writes NaN/Infinity; leave those to it
    return entry[1] % values


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
