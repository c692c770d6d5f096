"""The interface every inference engine implements, so the measurement protocol runs the same on each.

An :class:`Engine` turns one exported ONNX model into a :class:`Loaded` model: a callable that runs one
batch-1 inference on a fixed, seeded input (what the protocol times) and a function that returns the first
output for a given input (what the parity check compares with PyTorch). Engines that convert (ncnn, MNN,
ExecuTorch, LiteRT) do so in :meth:`Engine.load`; converted files are cached by the model's content hash and
the engine's version, since conversion can cost tens of seconds.

Each engine is an optional extra named after it (``pip install -e ".[openvino]"``) except onnxruntime, a core
dependency. A missing engine is a :class:`~nas.errors.ConfigError` that names the install command, raised
before any work. Nothing here imports an engine's package at import time: the device agent imports this on
boards that have only the engines they have.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nas.errors import ConfigError


@dataclass
class Loaded:
    """A model ready to run on an engine: ``run()`` one timed inference on the seeded input, ``infer(x)`` the
    first output for the batch-1 input ``x`` (float32, N C H W), ``input_type`` the ONNX input element type,
    ``details`` what the engine reports about how it runs the model (precision, partitions, threads)."""

    run: Callable[[], Any]
    infer: Callable[[np.ndarray], np.ndarray]
    input_type: str = "tensor(float)"
    details: dict[str, Any] = field(default_factory=dict)


class Engine(abc.ABC):
    """One inference engine. Subclasses set the class attributes and implement :meth:`version` and
    :meth:`load`; they are registered by :attr:`name` (``target.runtime=NAME``)."""

    #: Registry and config name (``target.runtime=openvino``).
    name: ClassVar[str] = ""
    #: The Python package whose presence means the engine is installed (import name).
    package: ClassVar[str] = ""
    #: Other packages it needs (a converter), checked with it.
    also_needs: ClassVar[tuple[str, ...]] = ()
    #: The pip distribution whose version is the engine's (read from its metadata: no import, since some
    #: engines print to stdout or take seconds when imported).
    distribution: ClassVar[str] = ""
    #: The pip extra that installs it (None: a core dependency).
    extra: ClassVar[str | None] = None
    #: Largest max |engine - PyTorch| / max |PyTorch| accepted by the parity check.
    tolerance: ClassVar[float] = 1e-4
    #: Model formats the engine takes from the search side (``onnx``; or its own format, converted there).
    formats: ClassVar[tuple[str, ...]] = ("onnx",)

    @classmethod
    def installed(cls) -> bool:
        """Whether the engine's packages can be imported here (without importing them)."""
        return all(importlib.util.find_spec(p) is not None for p in (cls.package, *cls.also_needs))

    @classmethod
    def install_hint(cls) -> str:
        return f'pip install -e ".[{cls.extra}]"' if cls.extra else "pip install -e ."

    @classmethod
    def require(cls) -> None:
        """:class:`ConfigError` with the install command unless the engine is installed."""
        if not cls.installed():
            missing = [p for p in (cls.package, *cls.also_needs) if importlib.util.find_spec(p) is None]
            raise ConfigError(f"inference engine {cls.name!r} is not installed here (no Python package "
                              f"{', '.join(map(repr, missing))}); install it with {cls.install_hint()}")

    def version(self) -> str:
        """The engine's version string (part of the measurement key), from its distribution's metadata."""
        from importlib import metadata

        self.require()
        try:
            return metadata.version(self.distribution or self.package)
        except metadata.PackageNotFoundError:
            raise ConfigError(f"inference engine {self.name!r}: the package {self.package!r} imports but its "
                              f"distribution {self.distribution or self.package!r} has no metadata; reinstall it "
                              f"with {self.install_hint()}") from None

    @abc.abstractmethod
    def load(self, model: Path | bytes, input_shape: Sequence[int], *, threads: int, seed: int = 0,
             provider: str | None = None) -> Loaded:
        """``model`` (an ONNX file or its bytes) loaded for batch-1 inputs of ``input_shape`` (C, H, W) with
        ``threads`` CPU threads; :class:`~nas.errors.ModelError` when the engine cannot convert or load it."""

    def describe(self) -> dict[str, Any]:
        """Name, version and what the engine takes (for ``python -m nas.hardware.engines list`` and /health)."""
        return {"name": self.name, "version": self.version(), "formats": list(self.formats),
                "tolerance": self.tolerance, "extra": self.extra}

    def runtime(self) -> str:
        """``"<name> <version>"``: the runtime a measurement records."""
        return f"{self.name} {self.version()}"


def seeded_input(input_shape: Sequence[int], seed: int) -> np.ndarray:
    """The batch-1 float32 input every engine times (the same values on every engine for one seed)."""
    return np.random.default_rng(seed).standard_normal((1, *[int(v) for v in input_shape])).astype(np.float32)


def model_bytes(model: Path | bytes) -> bytes:
    return bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()


def conversion_dir(engine: str, key: str) -> Path:
    """Where ``engine``'s converted model for ``key`` is cached: ``<cache_dir>/engines/<engine>/<key>``."""
    from nas.hardware.store import default_cache_dir

    return default_cache_dir() / "engines" / engine / key


def content_id(model: Path | bytes) -> str:
    """The short content hash converted models are cached under."""
    return hashlib.sha256(model_bytes(model)).hexdigest()[:16]
