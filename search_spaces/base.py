"""The search-space interface every space implements.

A space is a finite set of labelled choices (``choices()``), plus the capabilities a strategy or a
predictor needs: ``sample``, ``mutate``, ``crossover``, ``encode``, ``validate`` and ``build``. Weight-sharing
spaces (OFA) also give a :class:`Supernet` from which any member can be run or extracted.

The defaults here work for any space whose choices are independent; a space with structure (for example
inactive blocks beyond a stage's depth) overrides :meth:`SearchSpace.canonical` so that every arch it hands
out is canonical and equal networks get equal :func:`nas.arch.arch_id`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn

from nas.arch import Arch, Value, check_flat
from nas.errors import InvalidArchError


class SearchSpace(abc.ABC):
    """A finite space of architectures, each a flat dict ``label -> value``."""

    #: Registry name (also the Hydra config option name under ``conf/space/``).
    name: str = ""

    # ------------------------------------------------------------------ definition
    @abc.abstractmethod
    def choices(self) -> dict[str, tuple[Value, ...]]:
        """Ordered mapping of every choice label to its allowed values (smallest/cheapest first)."""

    @abc.abstractmethod
    def build(self, arch: Mapping[str, Value]) -> nn.Module:
        """A standalone, freshly initialised ``nn.Module`` for ``arch`` (exportable to ONNX)."""

    @abc.abstractmethod
    def input_shape(self, arch: Mapping[str, Value]) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one input image for ``arch`` (batch dimension excluded)."""

    def canonical(self, arch: Mapping[str, Value]) -> Arch:
        """``arch`` with choices that do not affect the network reset to a fixed value. Default: unchanged."""
        return dict(arch)

    # ------------------------------------------------------------------ validation
    def validate(self, arch: object) -> Arch:
        """Check that ``arch`` is a member of the space and return its canonical form.

        Raises :class:`InvalidArchError` naming the offending label and the allowed values.
        """
        check_flat(arch)
        assert isinstance(arch, Mapping)
        choices = self.choices()
        missing = [label for label in choices if label not in arch]
        unknown = [label for label in arch if label not in choices]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing labels {missing[:5]}{' ...' if len(missing) > 5 else ''}")
            if unknown:
                parts.append(f"unknown labels {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
            raise InvalidArchError(
                f"not an architecture of space {self.name!r}: {'; '.join(parts)}. "
                f"Expected labels: {list(choices)[:8]}{' ...' if len(choices) > 8 else ''}"
            )
        for label, options in choices.items():
            if arch[label] not in options:
                raise InvalidArchError(
                    f"{label}={arch[label]!r} is not allowed in space {self.name!r}; choose one of {list(options)}"
                )
        return self.canonical({label: arch[label] for label in choices})

    # ------------------------------------------------------------------ capabilities
    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random architecture (each choice drawn independently)."""
        arch = {label: options[int(rng.integers(len(options)))] for label, options in self.choices().items()}
        return self.canonical(arch)

    def mutate(self, arch: Mapping[str, Value], rng: np.random.Generator, *, rate: float | None = None) -> Arch:
        """A neighbour of ``arch`` that differs from it (as a canonical arch) whenever the space allows.

        Each label is resampled with probability ``rate`` (default ``1 / number of labels``); at least one
        label is changed to a different value, so the result is never a silent copy.
        """
        choices = self.choices()
        labels = [label for label, options in choices.items() if len(options) > 1]
        if not labels:
            return self.canonical(arch)
        rate = 1.0 / len(labels) if rate is None else rate
        start = self.canonical(arch)
        for _ in range(32):  # retry until the canonical form differs (a change may hit an inactive choice)
            child = dict(start)
            forced = labels[int(rng.integers(len(labels)))]
            for label in labels:
                if label == forced or rng.random() < rate:
                    others = [v for v in choices[label] if v != child[label]]
                    child[label] = others[int(rng.integers(len(others)))]
            child = self.canonical(child)
            if child != start:
                return child
        return child

    def crossover(self, a: Mapping[str, Value], b: Mapping[str, Value], rng: np.random.Generator) -> Arch:
        """Uniform crossover: each label taken from ``a`` or ``b`` with equal probability."""
        labels = list(self.choices())
        # One call draws the same numbers, in the same order, as one rng.random() per label (and is much cheaper).
        draws = rng.random(len(labels)).tolist()
        child = {label: (a[label] if r < 0.5 else b[label]) for label, r in zip(labels, draws)}
        return self.canonical(child)

    def encode(self, arch: Mapping[str, Value]) -> np.ndarray:
        """Fixed-length float vector for predictors. Default: one-hot of every choice."""
        parts = []
        for label, options in self.choices().items():
            one_hot = np.zeros(len(options), dtype=np.float32)
            one_hot[options.index(arch[label])] = 1.0
            parts.append(one_hot)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def encode_many(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """``encode`` stacked into a ``(len(archs), dim)`` array."""
        return np.stack([self.encode(a) for a in archs]) if archs else np.zeros((0, 0), dtype=np.float32)

    def cost_features(self, arch: Mapping[str, Value]) -> np.ndarray:
        """Fixed-length features that latency is close to linear in (work and memory traffic per part of the
        network), so a latency model fits from few measurements. Default: :meth:`encode`."""
        return self.encode(arch)

    def cost_features_many(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """``cost_features`` stacked into a ``(len(archs), dim)`` array (a space may override it with a batch path
        that gives the same values)."""
        return np.stack([self.cost_features(a) for a in archs])

    # ------------------------------------------------------------------ integer codes (batch operators)
    # A batch of archs as an ``(n, labels)`` int array: column j holds the index, in ``choices()``'s order, of
    # label j's option. A predictor-scored search breeds, de-duplicates and scores tens of thousands of archs;
    # on codes each step is a few numpy operations per generation instead of Python work per arch. The
    # defaults below are derived from the per-arch methods (so every space has them); a space overrides them
    # with vectorised versions (OFA does) that draw from the same distributions, in batches.
    def option_counts(self) -> np.ndarray:
        """Number of options of each label, in ``choices()`` order."""
        return np.array([len(options) for options in self.choices().values()], dtype=np.intp)

    def to_codes(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """The codes of ``archs`` (members of the space, e.g. from :meth:`validate`); :class:`InvalidArchError`
        for a value that is not an option."""
        choices = self.choices()
        index = [({v: i for i, v in enumerate(options)}, label, options) for label, options in choices.items()]
        out = np.empty((len(archs), len(choices)), dtype=np.intp)
        for r, arch in enumerate(archs):
            for c, (lookup, label, options) in enumerate(index):
                value = arch[label]
                position = lookup.get(value)
                if position is not None and (type(value) is bool) != (type(options[position]) is bool):
                    position = None  # True == 1, but True is not the option 1
                if position is None:
                    raise InvalidArchError(f"{label}={value!r} is not allowed in space {self.name!r}; "
                                           f"choose one of {list(choices[label])}")
                out[r, c] = position
        return out

    def from_codes(self, codes: np.ndarray) -> list[Arch]:
        """The archs of ``codes`` (the stored option objects, so ids equal those of the per-arch path)."""
        choices = self.choices()
        columns = [_object_array(options)[codes[:, c]].tolist() for c, options in enumerate(choices.values())]
        labels = tuple(choices)
        return [dict(zip(labels, row)) for row in zip(*columns)]

    def canonical_codes(self, codes: np.ndarray) -> np.ndarray:
        """:meth:`canonical` of every row (unchanged when the space does not override ``canonical``)."""
        if type(self).canonical is SearchSpace.canonical:
            return np.array(codes, dtype=np.intp, copy=True)
        return self.to_codes([self.canonical(a) for a in self.from_codes(codes)])

    def sample_codes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws of :meth:`sample`, as codes."""
        return self.to_codes([self.sample(rng) for _ in range(n)]).reshape(n, len(self.choices()))

    def mutate_codes(self, codes: np.ndarray, rng: np.random.Generator, *, rate: float | None = None) -> np.ndarray:
        """:meth:`mutate` of every row, as codes."""
        children = [self.mutate(a, rng, rate=rate) for a in self.from_codes(codes)]
        return self.to_codes(children).reshape(codes.shape)

    def crossover_codes(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """:meth:`crossover` of each pair of rows, as codes."""
        children = [self.crossover(x, y, rng) for x, y in zip(self.from_codes(a), self.from_codes(b))]
        return self.to_codes(children).reshape(a.shape)

    def encode_codes(self, codes: np.ndarray) -> np.ndarray:
        """:meth:`encode_many` of the archs of ``codes``."""
        return self.encode_many(self.from_codes(codes))

    def cost_features_codes(self, codes: np.ndarray) -> np.ndarray:
        """:meth:`cost_features_many` of the archs of ``codes``."""
        return self.cost_features_many(self.from_codes(codes))

    # ------------------------------------------------------------------ public string form
    def to_public(self, arch: Mapping[str, Value]) -> object:
        """The arch in the space's own published form (for example OFA's ``{"ks", "e", "d", "r"}``).

        Default: the flat dict itself.
        """
        return dict(arch)

    def from_public(self, obj: object) -> Arch:
        """Inverse of :meth:`to_public`; validates and returns the canonical flat arch."""
        return self.validate(obj)

    def parse(self, obj: object) -> Arch:
        """Accept either the flat labelled form or the public form (also as JSON text, as tables and the
        measurement store's exports hold OFA archs), validated and canonical."""
        if isinstance(obj, str) and obj.lstrip().startswith("{"):
            import json

            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as err:
                raise InvalidArchError(f"malformed JSON architecture {obj[:80]!r}: {err}") from None
        if isinstance(obj, Mapping) and set(obj) == set(self.choices()):
            return self.validate(obj)
        return self.from_public(obj)

    def store_id(self, arch: Mapping[str, Value]) -> str:
        """The id the measurement store keys ``arch``'s latency by: its :func:`nas.arch.arch_id`, unless the labels
        alone do not identify the network (the ``channels`` space adds its base network)."""
        from nas.arch import arch_id

        return arch_id(arch)

    def describe(self, arch: Mapping[str, Value]) -> str:
        """A short human-readable summary of ``arch`` for logs and plots."""
        return ", ".join(f"{k}={v}" for k, v in arch.items())


class Supernet(nn.Module):
    """A weight-sharing network containing every member of its space.

    ``set_active(arch)`` selects the sub-network that ``forward`` runs (state held on the modules, never
    read from globals); ``extract(arch)`` returns a standalone copy of that sub-network with its weights
    (including BatchNorm running statistics), whose outputs equal the supernet's in eval mode.
    """

    def set_active(self, arch: Mapping[str, Value]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def extract(self, arch: Mapping[str, Value]) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError


class WeightSharingSpace(SearchSpace):
    """A space whose members share the weights of one :class:`Supernet`."""

    @abc.abstractmethod
    def supernet(self) -> Supernet:
        """A freshly initialised supernet for this space."""

    @abc.abstractmethod
    def elastic_dims(self) -> tuple[str, ...]:
        """Names of the elastic dimensions in progressive-shrinking order (e.g. resolution, kernel, depth, expand)."""

    @abc.abstractmethod
    def sample_elastic(self, rng: np.random.Generator, elastic: Sequence[str]) -> Arch:
        """A random arch in which only the dimensions in ``elastic`` vary; the others are at their maximum."""

    def largest(self) -> Arch:
        """The biggest member (every choice at its last, largest value)."""
        return self.canonical({label: options[-1] for label, options in self.choices().items()})

    def smallest(self) -> Arch:
        """The smallest member (every choice at its first value)."""
        return self.canonical({label: options[0] for label, options in self.choices().items()})


def _object_array(values: Sequence[object]) -> np.ndarray:
    """A 1-D object array holding exactly ``values`` (np.array would turn tuples into more dimensions)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out
