"""Constructor option checks shared by the search spaces: each raises :class:`~nas.errors.ConfigError` as
``"<space>: <option> must be ..., got <value>"``, so every space reports a bad option the same way."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from nas.errors import ConfigError

def positive_int(space: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{space}: {name} must be a positive integer, got {value!r}")
    return int(value)


def positive_number(space: str, name: str, value: object, *, maximum: float | None = None) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value) and value > 0
    if not ok or (maximum is not None and value > maximum):
        bound = f" at most {maximum:g}" if maximum is not None else ""
        raise ConfigError(f"{space}: {name} must be a positive number{bound}, got {value!r}")
    return float(value)


def number_list(space: str, name: str, values: object, *, integer: bool, allowed: Iterable | None = None) -> tuple:
    """A non-empty, duplicate-free, ascending tuple of positive numbers (integral floats become ints)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(f"{space}: {name} must be a list of numbers, got {values!r}")
    items = list(values)
    kind = numbers.Integral if integer else numbers.Real
    if not items or not all(isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in items):
        raise ConfigError(f"{space}: {name} must be a non-empty list of positive {'integers' if integer else 'numbers'}, "
                          f"got {items!r}")
    cleaned = [int(v) if integer or float(v).is_integer() else float(v) for v in items]
    if len(set(cleaned)) != len(cleaned):
        raise ConfigError(f"{space}: {name} has duplicate values: {items!r}")
    if allowed is not None:
        bad = [v for v in cleaned if v not in tuple(allowed)]
        if bad:
            raise ConfigError(f"{space}: {name} may only hold {list(allowed)}, got {bad}")
    return tuple(sorted(cleaned))


def one_of(space: str, name: str, value: object, options: Iterable[str]) -> str:
    options = tuple(options)
    if value not in options:
        raise ConfigError(f"{space}: {name}={value!r} is not one of {list(options)}")
    return str(value)


def boolean(space: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{space}: {name} must be true or false, got {value!r}")
    return value


def dropout_rate(space: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{space}: dropout must be a number in [0, 1), got {value!r}")
    return float(value)
