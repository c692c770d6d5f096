"""Lookup-table latency: the sum of per-block latencies.

Two ways to get the table:

1. **Measured block tables** (OFA / ProxylessNAS format): :func:`read_lut_yaml` reads a YAML mapping
   ``block key -> {count, mean, var|std}`` (ms), keys such as
   ``expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:3-stride:1-idskip:1``,
   ``Conv-input:224x224x3-output:112x112x32``, ``Conv_1-...``, ``Logits-input:7x7x1280-output:1000``.
   :meth:`LUTPredictor.from_table` turns it into a predictor whose features are block counts per key
   (:meth:`LUTPredictor.block_counts`), and :meth:`LUTPredictor.predict_blocks` sums a network's blocks.
2. **Fitted from whole-network measurements**: on one-hot ``(position, choice)`` features
   (``predictors.features.latency_features(space, archs, "onehot")``) the fit is a non-negative additive
   table in relative error (:mod:`predictors.additive`). When a device's latency *is* a sum of per-layer
   measurements (HW-NAS-Bench's FBNet numbers on Raspberry Pi 4 and Pixel 3) this model is exact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError, DataError
from nas.registry import register_predictor
from predictors.additive import AdditivePredictor

_SHAPE = re.compile(r"^\d+(x\d+)*$")


def parse_lut_key(key: str) -> dict[str, Any]:
    """``"expanded_conv-input:56x56x24-...-idskip:1"`` -> ``{"op": "expanded_conv", "input": (56, 56, 24), ...}``.

    Shapes (``AxBxC``) become int tuples, other values ints; :class:`DataError` for a malformed key."""
    parts = key.split("-")
    if not parts[0] or ":" in parts[0]:
        raise DataError(f"LUT key {key!r} must start with the op name, e.g. 'expanded_conv-input:56x56x24-...'")
    out: dict[str, Any] = {"op": parts[0]}
    for part in parts[1:]:
        name, sep, value = part.partition(":")
        if not sep or not name or not _SHAPE.match(value):
            raise DataError(f"LUT key {key!r}: field {part!r} is not 'name:value' with an integer or AxBxC value")
        out[name] = tuple(int(v) for v in value.split("x")) if name in ("input", "output") else int(value)
    return out


def read_lut_yaml(path: str | Path) -> dict[str, float]:
    """Block key -> mean latency (ms) from an OFA/ProxylessNAS lookup-table YAML file."""
    import yaml  # local: only this reader needs it

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataError(f"cannot read LUT file {path}: {err}") from err
    except yaml.YAMLError as err:
        raise DataError(f"LUT file {path} is not valid YAML: {err}") from err
    if not isinstance(raw, Mapping) or not raw:
        raise DataError(f"LUT file {path} must be a non-empty mapping 'block key: {{mean: ms, ...}}'")
    table: dict[str, float] = {}
    for key, entry in raw.items():
        parse_lut_key(str(key))
        if not isinstance(entry, Mapping) or not isinstance(entry.get("mean"), (int, float)) or entry["mean"] < 0:
            raise DataError(f"LUT file {path}: entry {key!r} needs a non-negative numeric 'mean' (ms)")
        table[str(key)] = float(entry["mean"])
    return table


@register_predictor("lut")
class LUTPredictor(AdditivePredictor):
    """Sum of per-block (or per-(position, choice)) latencies; optional ``keys`` name the feature columns."""

    name = "lut"

    def __init__(self, *, keys: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise ConfigError(f"lut predictor: keys must be a list of block-key strings, got {keys!r}")
        self.keys = None if keys is None else list(keys)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "keys": self.keys}

    def set_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        assert self.coef is not None
        if self.keys is not None and self.coef.shape[0] != len(self.keys):
            raise ValueError(f"lut table has {self.coef.shape[0]} entries but {len(self.keys)} keys")

    @classmethod
    def from_table(cls, table: Mapping[str, float]) -> LUTPredictor:
        """A fitted predictor that sums ``table`` entries (e.g. :func:`read_lut_yaml`'s output)."""
        if not table:
            raise DataError("lut predictor: the lookup table is empty")
        keys = sorted(table)
        predictor = cls(keys=keys)
        predictor.coef = np.array([float(table[k]) for k in keys])
        predictor.bias = 0.0
        predictor.feature_dim = len(keys)
        return predictor

    def block_counts(self, networks: Sequence[Sequence[str]]) -> np.ndarray:
        """``(len(networks), len(keys))`` counts of each key per network; unknown blocks are a :class:`DataError`."""
        if self.keys is None:
            raise ConfigError("lut predictor: block_counts needs a predictor built with keys (LUTPredictor.from_table)")
        index = {k: i for i, k in enumerate(self.keys)}
        X = np.zeros((len(networks), len(self.keys)))
        for row, blocks in enumerate(networks):
            for block in blocks:
                if block not in index:
                    raise DataError(f"network {row}: block {block!r} is not in the lookup table "
                                    f"({len(self.keys)} keys); measure it or use a table that covers it")
                X[row, index[block]] += 1
        return X

    def predict_blocks(self, networks: Sequence[Sequence[str]]) -> np.ndarray:
        """Predicted latency of each network given as its list of block keys."""
        return self.predict(self.block_counts(networks))
