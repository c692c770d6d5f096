"""The predictor interface: regressors from fixed-length feature vectors to one number (latency, accuracy).

A saved predictor is a directory::

    predictor.json   {"format": "hwnas-predictor", "format_version": 1, "type": <registry name>,
                      "hyperparameters": {...constructor kwargs...}, "feature_dim": d,
                      "arrays": "arrays.npz", "arrays_sha256": ..., "metadata": {...}}
    arrays.npz       the fitted arrays (saved without pickle, so loading never runs code)

A predictor built on a library (``gbdt``: LightGBM) keeps its fitted model in that library's own text format
instead, as files beside ``predictor.json`` (``"texts": {file name: sha256}``, a key present only then), so
the model is readable and loadable by the library itself and never pickled.

:func:`load_predictor` reads ``type``, looks the class up in the predictor registry and rebuilds it from
the hyperparameters and arrays, so predictions after loading are bit-identical to those before saving.
"""

from __future__ import annotations

import abc
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np

from nas.errors import ConfigError, DataError, ModelError, UserError
from nas.registry import PREDICTORS

FORMAT = "hwnas-predictor"
FORMAT_VERSION = 1
META_FILE = "predictor.json"
ARRAYS_FILE = "arrays.npz"

def check_int(owner: str, name: str, value: object, *, minimum: int = 1) -> int:
    """A constructor argument that must be an int >= ``minimum``, else :class:`ConfigError`."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{owner} predictor: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_float(owner: str, name: str, value: object, *, allow_zero: bool = False) -> float:
    """A constructor argument that must be a finite positive (or non-negative) number, else :class:`ConfigError`."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{owner} predictor: {name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_bool(owner: str, name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{owner} predictor: {name} must be true or false, got {value!r}")
    return bool(value)


def check_features(X: object, *, feature_dim: int | None = None) -> np.ndarray:
    """``X`` as a finite float64 ``(n, d)`` array (``d == feature_dim`` when given), else :class:`DataError`."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"features must be a numeric (n_samples, n_features) array: {err}") from err
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DataError(f"features must be a non-empty 2-D array (n_samples, n_features), got shape {arr.shape}")
    if feature_dim is not None and arr.shape[1] != feature_dim:
        raise DataError(
            f"features have {arr.shape[1]} columns but the predictor was fitted on {feature_dim}; "
            f"encode architectures with the same space and encoding used for fitting"
        )
    if not np.all(np.isfinite(arr)):
        raise DataError("features contain NaN or infinite values")
    return arr


def check_targets(y: object, n: int) -> np.ndarray:
    """``y`` as a finite float64 vector of length ``n``, else :class:`DataError`."""
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"targets must be a numeric vector: {err}") from err
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"targets must be a vector with one value per feature row ({n}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError("targets contain NaN or infinite values")
    return arr


class Predictor(abc.ABC):
    """A regressor ``R^d -> R``. Subclasses register with ``@register_predictor(name)`` and set ``name``."""

    #: Registry name, written to ``predictor.json`` as ``type``.
    name: str = ""

    def __init__(self) -> None:
        self.feature_dim: int | None = None  # set by fit / load
        self.metadata: dict[str, Any] = {}

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's keyword arguments, JSON-serialisable (``type(self)(**hp)`` rebuilds it unfitted)."""

    @abc.abstractmethod
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        """Fit on validated ``X`` (n, d) float64 and ``y`` (n,) float64."""

    @abc.abstractmethod
    def _predict(self, X: np.ndarray) -> np.ndarray:
        """Predict for validated ``X``; returns (n,) float64."""

    @abc.abstractmethod
    def get_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named numpy arrays (what ``arrays.npz`` holds)."""

    @abc.abstractmethod
    def set_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore the fitted state from :meth:`get_arrays`' output; raise ``KeyError``/``ValueError`` if unusable."""

    def get_texts(self) -> dict[str, str]:
        """Fitted state kept in a library's own text format, ``{file name: text}`` (none unless overridden)."""
        return {}

    def set_texts(self, texts: Mapping[str, str]) -> None:
        """Restore :meth:`get_texts`' output (called before :meth:`set_arrays`); raise ``ValueError`` if unusable."""
        if texts:
            raise ValueError(f"{type(self).__name__} keeps no text files, but the saved predictor has {sorted(texts)}")

    # ------------------------------------------------------------------ public interface
    @property
    def is_fitted(self) -> bool:
        return self.feature_dim is not None

    def fit(self, X: object, y: object) -> Self:
        """Fit on features ``X`` (n, d) and targets ``y`` (n,); returns ``self``."""
        features = check_features(X)
        targets = check_targets(y, features.shape[0])
        self._fit(features, targets)
        self.feature_dim = int(features.shape[1])
        return self

    def predict(self, X: object) -> np.ndarray:
        """Predictions (n,) float64 for features ``X`` (n, d)."""
        if not self.is_fitted:
            raise ModelError(
                f"the {self.name or type(self).__name__} predictor is not fitted; "
                f"call fit(X, y) or load_predictor(path)"
            )
        return self._predict(check_features(X, feature_dim=self.feature_dim))

    def save(self, path: Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
        """Write the fitted predictor to directory ``path`` (created; files replaced atomically). Returns ``path``.

        ``metadata`` (JSON-serialisable: e.g. what is predicted, in which unit, on which target) is stored as is.
        """
        if not self.is_fitted:
            raise ModelError(f"cannot save the {self.name} predictor before it is fitted; call fit(X, y) first")
        if self.name not in PREDICTORS or PREDICTORS.get(self.name) is not type(self):
            raise ModelError(
                f"{type(self).__name__} is not the registered predictor {self.name!r}; it could not be loaded back"
            )
        meta_extra = dict(self.metadata if metadata is None else metadata)
        buffer = io.BytesIO()
        np.savez(buffer, **{key: np.asarray(value) for key, value in self.get_arrays().items()})
        payload = buffer.getvalue()
        texts = {name: text.encode("utf-8") for name, text in self.get_texts().items()}
        for name in texts:
            if name in (META_FILE, ARRAYS_FILE) or Path(name).name != name or name.startswith("."):
                raise ModelError(f"{type(self).__name__}: text file name {name!r} must be a plain file name "
                                 f"other than {META_FILE} and {ARRAYS_FILE}")
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "type": self.name,
            "hyperparameters": self.hyperparameters(),
            "feature_dim": self.feature_dim,
            "arrays": ARRAYS_FILE,
            "arrays_sha256": hashlib.sha256(payload).hexdigest(),
            "metadata": meta_extra,
        }
        if texts:
            meta["texts"] = {name: hashlib.sha256(data).hexdigest() for name, data in texts.items()}
        try:
            text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"predictor hyperparameters and metadata must be JSON-serialisable: {err}") from err
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _atomic_write(path / ARRAYS_FILE, payload)
        for name, data in texts.items():
            _atomic_write(path / name, data)
        _atomic_write(path / META_FILE, (text + "\n").encode("utf-8"))
        self.metadata = meta_extra
        return path

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({params})"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_predictor(path: Path) -> Predictor:
    """Load a predictor saved with :meth:`Predictor.save`; :class:`ModelError` says what is wrong with the files."""
    path = Path(path)
    meta_path = path / META_FILE if path.is_dir() or path.suffix != ".json" else path
    directory = meta_path.parent
    if not meta_path.is_file():
        raise ModelError(f"no saved predictor at {path}: {meta_path} does not exist (save one with Predictor.save)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"predictor file {meta_path} is not valid JSON ({err}); save the predictor again") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path} is not an hwnas predictor file (expected \"format\": \"{FORMAT}\")")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"predictor {meta_path} has format version {version!r}; this hwnas reads version {FORMAT_VERSION}. "
            f"Refit and save it with this version"
        )
    expected_types = {"type": str, "hyperparameters": dict, "feature_dim": int, "arrays": str, "arrays_sha256": str}
    for key, kind in expected_types.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ModelError(
                f"predictor file {meta_path} has a missing or malformed {key!r} entry; save the predictor again"
            )
    try:
        cls = PREDICTORS.get(meta["type"])
    except ConfigError as err:
        raise ModelError(f"predictor {meta_path} was saved by an unknown predictor type: {err}") from err

    arrays_path = directory / meta["arrays"]
    try:
        payload = arrays_path.read_bytes()
    except OSError as err:
        raise ModelError(
            f"predictor arrays file {arrays_path} cannot be read ({err}); it belongs beside {META_FILE}"
        ) from err
    if hashlib.sha256(payload).hexdigest() != meta["arrays_sha256"]:
        raise ModelError(
            f"predictor arrays file {arrays_path} is corrupt or was changed after saving (checksum mismatch)"
        )
    texts = _read_texts(meta, meta_path)
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        predictor = cls(**meta["hyperparameters"])
        predictor.set_texts(texts)
        predictor.set_arrays(arrays)
        predictor.feature_dim = meta["feature_dim"]
        # One prediction catches arrays whose shapes disagree with each other or with feature_dim.
        predictor.predict(np.zeros((1, meta["feature_dim"])))
    except UserError as err:
        raise ModelError(f"predictor {meta_path} has invalid hyperparameters: {err}") from err
    except (KeyError, ValueError, TypeError, OSError, RuntimeError) as err:
        raise ModelError(f"predictor {meta_path} is incompatible with this {cls.__name__}: {err}") from err
    predictor.metadata = meta.get("metadata") or {}
    return predictor


def _read_texts(meta: Mapping[str, Any], meta_path: Path) -> dict[str, str]:
    """The text files a predictor.json lists under ``texts``, checked against their sha256."""
    listed = meta.get("texts", {})
    if not isinstance(listed, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in listed.items()):
        raise ModelError(f"predictor file {meta_path} has a malformed 'texts' entry; save the predictor again")
    texts = {}
    for name, digest in listed.items():
        if Path(name).name != name or name in (META_FILE, ARRAYS_FILE):
            raise ModelError(f"predictor file {meta_path} lists a text file {name!r} that is not a plain file name")
        file = meta_path.parent / name
        try:
            data = file.read_bytes()
        except OSError as err:
            raise ModelError(f"predictor model file {file} cannot be read ({err}); it belongs beside {META_FILE}") from err
        if hashlib.sha256(data).hexdigest() != digest:
            raise ModelError(f"predictor model file {file} is corrupt or was changed after saving (checksum mismatch)")
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ModelError(f"predictor model file {file} is not UTF-8 text ({err}); save the predictor again") from err
    return texts
