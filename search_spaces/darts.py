"""The DARTS cell space (Liu, Simonyan & Yang, ICLR 2019): a normal and a reduction cell, each with two input
nodes (the outputs of the two previous cells, nodes 0 and 1) and four intermediate nodes 2..5; node ``j``
sums two of its earlier nodes, each through one op, and the cell outputs the concatenation of nodes 2..5.

Flat form. A DARTS genotype lists, per node, two ``(op, input)`` pairs; written as independent choices (so
``sample`` / ``mutate`` / ``crossover`` keep every arch valid) that is, per cell type ``t`` and node ``j``:
``t.node{j}.inputs`` (the pair of distinct earlier nodes, ``"0-1"`` .. ``"3-4"``; node 2 has only ``"0-1"``)
and ``t.node{j}.op0`` / ``t.node{j}.op1`` (the op applied to the lower / higher input), 24 labels. The flat
form is canonical by construction (each pair is sorted by input), so a genotype that lists a node's two
pairs the other way round maps to the same arch, and printing that arch lists them sorted.

Public form. The genotype string exactly as DARTS prints it, ``Genotype(normal=[('sep_conv_3x3', 0), ...],
normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])``; :func:`parse_genotype` reads it
with :func:`ast.literal_eval` on each field (never ``eval``) and accepts DARTS's ``range(2, 6)`` for a
concat. ``none`` is not an op of a derived cell (every node takes two real inputs), so it is refused.

Networks. :meth:`DartsSpace.build` gives DARTS's evaluation network (``channels`` C, ``layers`` N cells, the
cells at N//3 and 2N//3 reduce, optional auxiliary head at 2N//3 used only by
:meth:`DartsNetwork.forward_with_aux`, drop-path in training only). For differentiable search
(:mod:`search_spaces.relax`) the space relaxes every cell edge ``(node j, input i)`` into a mixed op over the
8 DARTS primitives (``none`` included) on a smaller proxy network (``search_channels``, ``search_layers``), as
DARTS searches a shallower, narrower network than it evaluates; ``partial_channels=K`` gives PC-DARTS
(Xu et al., ICLR 2020): partial channel connections and edge normalisation.
"""

from __future__ import annotations

import ast
import numbers
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from nas.arch import Arch, Value
from nas.errors import ConfigError, InvalidArchError
from nas.registry import register_space
from search_spaces.base import SearchSpace
from search_spaces.blocks.layers import ChannelShuffle
from search_spaces.kernels import (
    Kernel,
    concat_kernel,
    conv_kernel,
    elementwise_kernel,
    gpool_kernel,
    linear_kernel,
    pool_kernel,
)
from search_spaces.options import boolean, positive_int
from search_spaces.relax import CandidateMix, Decision, Gates, RelaxableSpace, RelaxedSupernet

#: DARTS's primitives, in its order (the order of a relaxed edge's options and of the architecture parameters).
PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
              "dil_conv_3x3", "dil_conv_5x5")
#: The ops of a derived cell (every primitive but ``none``), cheapest first (the order choices list them in).
OPS = ("skip_connect", "max_pool_3x3", "avg_pool_3x3", "dil_conv_3x3", "dil_conv_5x5", "sep_conv_3x3",
       "sep_conv_5x5")
CELL_TYPES = ("normal", "reduce")
#: The intermediate nodes of a cell (0 and 1 are its inputs); the cell output concatenates all of them.
NODES = (2, 3, 4, 5)
CONCAT = (2, 3, 4, 5)
#: ``(node j, input i)`` of every edge of the relaxed cell, in the order of the decisions.
EDGES = tuple((j, i) for j in NODES for i in range(j))
_NONE = PRIMITIVES.index("none")
_SHORT = {"skip_connect": "skip", "max_pool_3x3": "max3", "avg_pool_3x3": "avg3", "dil_conv_3x3": "dil3",
          "dil_conv_5x5": "dil5", "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5"}


def input_pairs(node: int) -> tuple[str, ...]:
    """The values of ``t.node{node}.inputs``: every pair ``"a-b"`` of earlier nodes, ``a < b``."""
    return tuple(f"{a}-{b}" for a in range(node) for b in range(a + 1, node))


def _labels(t: str, j: int) -> tuple[str, str, str]:
    return f"{t}.node{j}.inputs", f"{t}.node{j}.op0", f"{t}.node{j}.op1"


LABELS = tuple(label for t in CELL_TYPES for j in NODES for label in _labels(t, j))


# ---------------------------------------------------------------------------------------------- genotype
class Genotype(NamedTuple):
    """A DARTS genotype: per cell type the ``(op, input)`` pairs of nodes 2..5 (two per node, in node order)
    and the nodes the cell concatenates. ``str()`` prints it exactly as DARTS does."""

    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]


#: The genotype DARTS (second order) found on CIFAR-10, as published (``genotypes.py`` of the DARTS release).
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)

_EXPECTED = ("a DARTS genotype like \"Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], "
             "normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])\"")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _literal(name: str, node: ast.expr, text: str) -> object:
    """A field's value: a Python literal, or ``range(a, b[, step])`` of int literals (DARTS prints concats so)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" \
            and not node.keywords and 1 <= len(node.args) <= 3:
        args = [a.value for a in node.args if isinstance(a, ast.Constant)]
        if len(args) == len(node.args) and all(type(a) is int and abs(a) < 100 for a in args):
            return list(range(*args))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise InvalidArchError(f"genotype {_short(text)!r}: {name} is not a literal list; expected {_EXPECTED}") \
            from None


def _checked(fields: Mapping[str, object], what: str) -> Genotype:
    """A :class:`Genotype` of plain lists from ``fields``, with the type of every entry checked."""
    out: dict[str, list] = {}
    for t in CELL_TYPES:
        entries = fields[t]
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
            raise InvalidArchError(f"{what}: {t} must be a list of (op, input) pairs, got {entries!r}")
        pairs = []
        for entry in entries:
            ok = (not isinstance(entry, (str, bytes)) and isinstance(entry, Sequence) and len(entry) == 2
                  and isinstance(entry[0], str) and isinstance(entry[1], numbers.Integral)
                  and not isinstance(entry[1], bool))
            if not ok:
                raise InvalidArchError(f"{what}: {t} entry {entry!r} is not an (op, input) pair like "
                                       f"('sep_conv_3x3', 0)")
            pairs.append((str(entry[0]), int(entry[1])))
        concat = fields[f"{t}_concat"]
        if isinstance(concat, range):
            concat = list(concat)
        if isinstance(concat, (str, bytes)) or not isinstance(concat, Sequence) or not all(
                isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in concat):
            raise InvalidArchError(f"{what}: {t}_concat must be a list of node numbers like [2, 3, 4, 5], "
                                   f"got {concat!r}")
        out[t], out[f"{t}_concat"] = pairs, [int(c) for c in concat]
    return Genotype(**out)


def parse_genotype(text: str) -> Genotype:
    """Read a genotype as DARTS prints it (``str(genotype)``); each field is read with :func:`ast.literal_eval`
    (``range(2, 6)`` accepted for a concat), so no code in ``text`` is ever run. Checks the form only; whether
    the cells are members of the space is :meth:`DartsSpace.from_public`'s job."""
    if not isinstance(text, str):
        raise InvalidArchError(f"a darts genotype must be a string, got {type(text).__name__}; expected {_EXPECTED}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise InvalidArchError(f"malformed genotype {_short(text)!r} ({err.msg}); expected {_EXPECTED}") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise InvalidArchError(f"{_short(text)!r} is not a Genotype(...) expression; expected {_EXPECTED}")
    if len(call.args) > len(Genotype._fields) or any(isinstance(a, ast.Starred) for a in call.args):
        raise InvalidArchError(f"genotype {_short(text)!r} has too many positional fields; expected {_EXPECTED}")
    nodes: dict[str, ast.expr] = dict(zip(Genotype._fields, call.args))
    for keyword in call.keywords:
        if keyword.arg not in Genotype._fields:
            raise InvalidArchError(f"genotype {_short(text)!r}: unknown field {keyword.arg!r}; the fields are "
                                   f"{list(Genotype._fields)}")
        if keyword.arg in nodes:
            raise InvalidArchError(f"genotype {_short(text)!r} gives {keyword.arg} twice")
        nodes[keyword.arg] = keyword.value
    missing = [f for f in Genotype._fields if f not in nodes]
    if missing:
        raise InvalidArchError(f"genotype {_short(text)!r} lacks {missing}; expected {_EXPECTED}")
    return _checked({name: _literal(name, node, text) for name, node in nodes.items()}, f"genotype {_short(text)!r}")


def arch_of_genotype(genotype: Genotype) -> Arch:
    """The flat labels of a genotype's cells (each node's pair sorted by input); :class:`InvalidArchError` for a
    cell outside the space (not 8 pairs, ``none``, an input read twice or not an earlier node, a concat other
    than ``[2, 3, 4, 5]``)."""
    genotype = _checked(genotype._asdict(), "genotype")
    arch: Arch = {}
    for t in CELL_TYPES:
        concat = getattr(genotype, f"{t}_concat")
        if concat != list(CONCAT):
            raise InvalidArchError(f"genotype: {t}_concat={concat} is not allowed; a DARTS cell outputs the "
                                   f"concatenation of all its intermediate nodes, {list(CONCAT)}")
        entries = getattr(genotype, t)
        if len(entries) != 2 * len(NODES):
            raise InvalidArchError(f"genotype: {t} has {len(entries)} (op, input) pairs, expected "
                                   f"{2 * len(NODES)}: two per intermediate node 2..5, in node order")
        for k, j in enumerate(NODES):
            pair = sorted(entries[2 * k: 2 * k + 2], key=lambda e: e[1])
            for op, source in pair:
                if op == "none":
                    raise InvalidArchError(f"genotype: {t} node {j} uses 'none'; a derived DARTS cell has two "
                                           f"real inputs per node, ops {list(OPS)}")
                if op not in OPS:
                    raise InvalidArchError(f"genotype: {t} node {j}: unknown op {op!r}; ops are {list(OPS)}")
                if not 0 <= source < j:
                    raise InvalidArchError(f"genotype: {t} node {j} reads node {source}; node {j} can read "
                                           f"nodes 0..{j - 1}")
            if pair[0][1] == pair[1][1]:
                raise InvalidArchError(f"genotype: {t} node {j} takes input {pair[0][1]} twice; a DARTS node's "
                                       f"two inputs must be distinct nodes")
            inputs, op0, op1 = _labels(t, j)
            arch[inputs] = f"{pair[0][1]}-{pair[1][1]}"
            arch[op0], arch[op1] = pair[0][0], pair[1][0]
    return arch


def _cell(arch: Mapping[str, Value], t: str) -> list[tuple[str, int]]:
    """The ``(op, input)`` pairs of cell type ``t`` of a (validated) flat arch, two per node, by input."""
    out = []
    for j in NODES:
        inputs, op0, op1 = _labels(t, j)
        a, b = (int(n) for n in str(arch[inputs]).split("-"))
        out += [(str(arch[op0]), a), (str(arch[op1]), b)]
    return out


# ---------------------------------------------------------------------------------------------- the space
@register_space("darts")
class DartsSpace(SearchSpace, RelaxableSpace):
    """DARTS cells (normal + reduction); the public form is the DARTS genotype string."""

    name = "darts"
    relax_sampling = "softmax"
    costable = False  # a derived cell keeps 2 edges per node: its cost is not a sum over edge decisions
    # Measured (torch 2.13, 1 CPU thread, the team's shared 2-core machine): a softmax forward + backward of the
    # default proxy (8 channels, 5 cells) on a batch of 64 28x28 images takes ~2.6-2.8 s (0.7-1.3 s at 8x8:
    # ~12,000 small ops, so it is bound by per-op cost, and narrower or shallower proxies gain little). An
    # epoch on mnist5k (1,750 images for the weights, 1,750 for the architecture, first order) is 56 of them,
    # ~2.5 minutes on a quiet core; a real search wants more (strategy.epochs) or a GPU. 60 steps measured 12.2
    # CPU minutes on the digits and 15.9 on mnist5k (8-16 s a step with the architecture step, on the shared
    # machine), over the 10 CPU minutes a default search may take here: 32 steps (epochs round up, so mnist5k's
    # 27-step epochs make it 54).
    relax_steps = 32
    supports_partial_channels = True

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: int = 16,
        layers: int = 8,
        stem_multiplier: int = 3,
        auxiliary: bool = False,
        drop_path: float = 0.0,
        resolution: int = 32,
        search_channels: int | None = 8,
        search_layers: int | None = 5,
    ) -> None:
        self.num_classes = positive_int("darts", "num_classes", num_classes)
        self.in_channels = positive_int("darts", "in_channels", in_channels)
        self.channels = positive_int("darts", "channels", channels)
        self.layers = positive_int("darts", "layers", layers)
        self.stem_multiplier = positive_int("darts", "stem_multiplier", stem_multiplier)
        self.auxiliary = boolean("darts", "auxiliary", auxiliary)
        if isinstance(drop_path, bool) or not isinstance(drop_path, numbers.Real) or not 0.0 <= drop_path < 1.0:
            raise ConfigError(f"darts: drop_path must be a number in [0, 1), got {drop_path!r}")
        self.drop_path = float(drop_path)
        self.resolution = positive_int("darts", "resolution", resolution)
        self.search_channels = self.channels if search_channels is None else positive_int(
            "darts", "search_channels", search_channels)
        self.search_layers = self.layers if search_layers is None else positive_int(
            "darts", "search_layers", search_layers)
        halvings = max(len(reduction_cells(self.layers)), len(reduction_cells(self.search_layers)))
        if self.resolution % 2 ** halvings:
            raise ConfigError(f"darts: resolution must be a multiple of {2 ** halvings} (the network halves it "
                              f"{halvings} times and FactorizedReduce needs even sides), got {resolution!r}")

    # ------------------------------------------------------------------ definition
    def choices(self) -> dict[str, tuple[Value, ...]]:
        out: dict[str, tuple[Value, ...]] = {}
        for t in CELL_TYPES:
            for j in NODES:
                inputs, op0, op1 = _labels(t, j)
                out[inputs], out[op0], out[op1] = input_pairs(j), OPS, OPS
        return out

    def input_shape(self, arch: Mapping[str, Value]) -> tuple[int, int, int]:
        return (self.in_channels, self.resolution, self.resolution)

    def genotype(self, arch: Mapping[str, Value]) -> Genotype:
        """The DARTS genotype of ``arch`` (each node's pair listed by input)."""
        arch = self.validate(arch)
        return Genotype(normal=_cell(arch, "normal"), normal_concat=list(CONCAT),
                        reduce=_cell(arch, "reduce"), reduce_concat=list(CONCAT))

    def build(self, arch: Mapping[str, Value]) -> nn.Module:
        return DartsNetwork(self.genotype(arch), num_classes=self.num_classes, in_channels=self.in_channels,
                            channels=self.channels, layers=self.layers, stem_multiplier=self.stem_multiplier,
                            auxiliary=self.auxiliary, drop_path=self.drop_path)

    def encode(self, arch: Mapping[str, Value]) -> np.ndarray:
        """One-hot op (``none`` for an unused edge) of each of the 28 cell edges: an edge's feature means the
        same op on the same input in every arch, which the ``op0`` / ``op1`` labels (relative to the chosen
        pair) do not."""
        selection = self.selection_of(self.validate(arch))
        out = np.zeros((len(selection), len(PRIMITIVES)), dtype=np.float32)
        out[np.arange(len(selection)), selection] = 1.0
        return out.reshape(-1)

    def kernel_list(self, arch: Mapping[str, Value]) -> list[Kernel]:
        """The kernels ``build(arch)`` runs at inference, in order (:mod:`search_spaces.kernels`), from the arch
        without building it (the tracer has no rule for dilated convolutions or FactorizedReduce's spatial
        crop). BatchNorm scale and shift join the convolution they follow; the auxiliary head, which
        inference does not run, is left out."""
        genotype = self.genotype(arch)
        side = self.resolution
        c_stem = self.stem_multiplier * self.channels
        out = [conv_kernel(self.in_channels, c_stem, 3, 1, side)]
        sides = [side, side]  # of s0, s1
        c_prev = c_stem
        for c_pp, c_p, c, reduction, reduction_prev in cell_plan(self.layers, self.channels, self.stem_multiplier):
            side_in = sides[1]
            if reduction_prev:
                out += _factorized_reduce_kernels(c_pp, c, sides[0])
            else:
                out.append(conv_kernel(c_pp, c, 1, 1, sides[0]))
            out.append(conv_kernel(c_p, c, 1, 1, side_in))
            side_out = side_in // 2 if reduction else side_in
            entries = genotype.reduce if reduction else genotype.normal
            for k in range(len(NODES)):
                for op, source in entries[2 * k: 2 * k + 2]:
                    stride = 2 if reduction and source < 2 else 1
                    out += _op_kernels(op, c, stride, side_in if source < 2 else side_out)
                out.append(elementwise_kernel("add", c, side_out, 2))
            out.append(concat_kernel([c] * len(CONCAT), side_out))
            sides = [sides[1], side_out]
            c_prev = len(CONCAT) * c
        return out + [gpool_kernel(c_prev, sides[1]), linear_kernel(c_prev, self.num_classes)]

    # ------------------------------------------------------------------ public form
    def to_public(self, arch: Mapping[str, Value]) -> str:
        return str(self.genotype(arch))

    def from_public(self, obj: object) -> Arch:
        if isinstance(obj, Mapping):
            if set(obj) == set(Genotype._fields):
                return self.validate(arch_of_genotype(Genotype(**obj)))
            return self.validate(obj)
        if isinstance(obj, str):
            return self.validate(arch_of_genotype(parse_genotype(obj)))
        if isinstance(obj, (tuple, list)) and len(obj) == len(Genotype._fields):  # a Genotype, or its JSON list
            return self.validate(arch_of_genotype(Genotype(*obj)))
        raise InvalidArchError(f"a darts architecture must be {_EXPECTED} (or a Genotype), got {type(obj).__name__}")

    def describe(self, arch: Mapping[str, Value]) -> str:
        genotype = self.genotype(arch)
        parts = []
        for t in CELL_TYPES:
            entries = getattr(genotype, t)
            nodes = [" ".join(f"{_SHORT[op]}<{i}" for op, i in entries[2 * k: 2 * k + 2]) for k in range(len(NODES))]
            parts.append(f"{t}: " + " | ".join(nodes))
        return "; ".join(parts)

    # ------------------------------------------------------------------ relaxation (search_spaces/relax.py)
    def decisions(self) -> tuple[Decision, ...]:
        return tuple(Decision(f"{t}.node{j}.in{i}", PRIMITIVES) for t in CELL_TYPES for j, i in EDGES)

    def relax(self, *, partial_channels: int = 1) -> DartsSupernet:
        k = positive_int("darts", "partial_channels", partial_channels)
        if self.search_channels % k:
            raise ConfigError(f"darts: partial_channels={k} must divide search_channels={self.search_channels} "
                              f"(PC-DARTS mixes 1/K of every edge's channels)")
        return DartsSupernet(self, partial_channels=k)

    def arch_of(self, selection: Sequence[int]) -> Arch:
        """The arch whose nodes take their edges with an op other than ``none``; exactly two per node."""
        selection = [int(s) for s in selection]
        if len(selection) != len(CELL_TYPES) * len(EDGES):
            raise InvalidArchError(f"a darts selection has one option index per edge decision, "
                                   f"{len(CELL_TYPES) * len(EDGES)}, got {len(selection)}")
        if any(not 0 <= s < len(PRIMITIVES) for s in selection):
            raise InvalidArchError(f"darts selection {selection}: option indices must be in 0..{len(PRIMITIVES) - 1}")
        entries: dict[str, list[tuple[str, int]]] = {t: [] for t in CELL_TYPES}
        for d, (t, (j, i)) in enumerate((t, e) for t in CELL_TYPES for e in EDGES):
            if selection[d] != _NONE:
                entries[t].append((PRIMITIVES[selection[d]], i))
            if i == j - 1:  # the node's last edge: it must have taken exactly two
                taken = len(entries[t]) - 2 * (j - NODES[0])
                if taken != 2:
                    raise InvalidArchError(f"darts selection: {t}.node{j} has {taken} incoming edges with an op "
                                           f"other than 'none'; a DARTS node takes exactly 2 inputs")
        return self.validate(arch_of_genotype(Genotype(entries["normal"], list(CONCAT), entries["reduce"],
                                                       list(CONCAT))))

    def selection_of(self, arch: Mapping[str, Value]) -> list[int]:
        """Each edge's op index for ``arch``: the chosen op on the node's two edges, ``none`` on the others."""
        out = []
        for t in CELL_TYPES:
            chosen = {}
            for k, (op, source) in enumerate(_cell(arch, t)):
                chosen[NODES[k // 2], source] = PRIMITIVES.index(op)
            out += [chosen.get(edge, _NONE) for edge in EDGES]
        return out

    def derive(self, probs: Sequence[np.ndarray]) -> Arch:
        """DARTS's rule: each node keeps its two incoming edges whose strongest op other than ``none`` is most
        probable (ties: the lower input), each with that op. (PC-DARTS ranks edges by probability times edge
        weight: pass probabilities scaled by each edge's weight; the op of an edge is the same.)"""
        vectors = [np.asarray(p, dtype=np.float64).reshape(-1) for p in probs]
        if len(vectors) != len(CELL_TYPES) * len(EDGES) or any(v.shape != (len(PRIMITIVES),) for v in vectors):
            raise InvalidArchError(f"darts derive needs {len(CELL_TYPES) * len(EDGES)} probability vectors of "
                                   f"{len(PRIMITIVES)} options, got {[v.shape[0] for v in vectors]}")
        real = [i for i in range(len(PRIMITIVES)) if i != _NONE]
        selection = [_NONE] * len(vectors)
        for offset in range(0, len(vectors), len(EDGES)):
            for j in NODES:
                ds = [offset + EDGES.index((j, i)) for i in range(j)]
                strength = [float(np.max(vectors[d][real])) for d in ds]
                for i in sorted(range(j), key=lambda i: -strength[i])[:2]:  # stable: ties keep the lower input
                    selection[ds[i]] = real[int(np.argmax(vectors[ds[i]][real]))]
        return self.arch_of(selection)


def reduction_cells(layers: int) -> tuple[int, ...]:
    """The indices of the reduction cells of an ``layers``-cell network (DARTS: at a third and two thirds)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


def cell_plan(layers: int, channels: int, stem_multiplier: int) -> list[tuple[int, int, int, bool, bool]]:
    """``(c_prev_prev, c_prev, c, reduction, reduction_prev)`` of every cell: channels double at a reduction, a
    cell outputs ``4 c`` (its four nodes concatenated)."""
    c_pp = c_p = stem_multiplier * channels
    c = channels
    out = []
    reduction_prev = False
    for index in range(layers):
        reduction = index in reduction_cells(layers)
        if reduction:
            c *= 2
        out.append((c_pp, c_p, c, reduction, reduction_prev))
        c_pp, c_p, reduction_prev = c_p, len(CONCAT) * c, reduction
    return out


def _factorized_reduce_kernels(c_in: int, c_out: int, side: int) -> list[Kernel]:
    half = side // 2
    crop = c_in * (side - 1) * (side - 1)
    # Each 1x1 conv carries the BatchNorm scale and shift of the half of the channels it writes.
    a = conv_kernel(c_in, c_out // 2, 1, 2, side, side_out=half)
    b = conv_kernel(c_in, c_out - c_out // 2, 1, 2, side - 1, side_out=half)
    crop_kernel = Kernel("slice", 0, 0, crop, crop, 1, 1, c_in, c_in, side - 1)
    return [a, crop_kernel, b, concat_kernel([c_out // 2, c_out - c_out // 2], half)]


def _op_kernels(op: str, c: int, stride: int, side: int) -> list[Kernel]:
    if op == "skip_connect":
        return [] if stride == 1 else _factorized_reduce_kernels(c, c, side)
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        return [pool_kernel(c, side, 3, stride, side_out=-(-side // stride))]
    k = int(op[-1])
    out_side = -(-side // stride)
    if op.startswith("sep_conv"):
        return [conv_kernel(c, c, k, stride, side, groups=c, bn=False, side_out=out_side),
                conv_kernel(c, c, 1, 1, out_side),
                conv_kernel(c, c, k, 1, out_side, groups=c, bn=False),
                conv_kernel(c, c, 1, 1, out_side)]
    # dil_conv: MACs and parameters of a k x k depthwise conv (dilation spreads the taps, not their number)
    return [conv_kernel(c, c, k, stride, side, groups=c, bn=False, side_out=out_side), conv_kernel(c, c, 1, 1, out_side)]


# ---------------------------------------------------------------------------------------------- ops
class ReLUConvBN(nn.Sequential):
    """ReLU, k x k convolution, BatchNorm (DARTS's cell preprocessing, 1 x 1)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, *, affine: bool = True) -> None:
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class SepConv(nn.Sequential):
    """DARTS's separable conv: (ReLU, depthwise k x k, pointwise 1 x 1, BN) twice, the first one strided."""

    def __init__(self, c: int, kernel: int, stride: int, *, affine: bool = True) -> None:
        pad = kernel // 2
        super().__init__(
            nn.ReLU(), nn.Conv2d(c, c, kernel, stride, pad, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=affine),
            nn.ReLU(), nn.Conv2d(c, c, kernel, 1, pad, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=affine))


class DilConv(nn.Sequential):
    """DARTS's dilated conv: ReLU, depthwise k x k with dilation 2, pointwise 1 x 1, BN."""

    def __init__(self, c: int, kernel: int, stride: int, *, affine: bool = True) -> None:
        super().__init__(nn.ReLU(), nn.Conv2d(c, c, kernel, stride, kernel - 1, dilation=2, groups=c, bias=False),
                         nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c, affine=affine))


class FactorizedReduce(nn.Module):
    """Halve the side with two 1 x 1 stride-2 convs, one on the input shifted by a pixel (so every pixel is
    read), concatenated: DARTS's stride-2 identity and its preprocessing after a reduction cell."""

    def __init__(self, c_in: int, c_out: int, *, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Zero(nn.Module):
    """The ``none`` op of a relaxed edge: zeros of the edge's output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        layout = torch.channels_last if _channels_last(x) else torch.contiguous_format
        return torch.empty(n, c, -(-h // self.stride), -(-w // self.stride), dtype=x.dtype, device=x.device,
                           memory_format=layout).zero_()


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last)


def make_op(op: str, c: int, stride: int, *, affine: bool = True, pool_bn: bool = False) -> nn.Module:
    """One DARTS primitive on ``c`` channels. ``affine=False`` and ``pool_bn=True`` give the search-time op
    (DARTS's MixedOp: BatchNorm without affine parameters, pools followed by such a BatchNorm)."""
    if op == "none":
        return Zero(stride)
    if op == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        pool = nn.MaxPool2d(3, stride, 1) if op == "max_pool_3x3" else nn.AvgPool2d(3, stride, 1,
                                                                                     count_include_pad=False)
        return nn.Sequential(pool, nn.BatchNorm2d(c, affine=affine)) if pool_bn else pool
    if op in ("sep_conv_3x3", "sep_conv_5x5"):
        return SepConv(c, int(op[-1]), stride, affine=affine)
    if op in ("dil_conv_3x3", "dil_conv_5x5"):
        return DilConv(c, int(op[-1]), stride, affine=affine)
    raise InvalidArchError(f"unknown darts op {op!r}; ops are {list(PRIMITIVES)}")


def _drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    keep = 1.0 - p
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


# ---------------------------------------------------------------------------------------------- evaluation network
class DartsCell(nn.Module):
    """A derived cell: preprocessed inputs, node ``j`` = op_a(input a) + op_b(input b), concat of nodes 2..5."""

    def __init__(self, entries: Sequence[tuple[str, int]], c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool, *, pool_bn: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1)
        self.preprocess1 = ReLUConvBN(c_p, c, 1)
        self.inputs = [int(i) for _, i in entries]
        self.ops = nn.ModuleList(make_op(op, c, 2 if reduction and i < 2 else 1, pool_bn=pool_bn)
                                 for op, i in entries)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_path: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(len(NODES)):
            total = None
            for n in (2 * k, 2 * k + 1):
                op = self.ops[n]
                h = op(states[self.inputs[n]])
                if self.training and drop_path > 0.0 and not isinstance(op, nn.Identity):
                    h = _drop_path(h, drop_path)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in CONCAT], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's CIFAR auxiliary classifier (ReLU, pool to 2 x 2, 1 x 1 conv 128, BN, ReLU, 2 x 2 conv 768, BN,
    ReLU, linear). DARTS pools 5 x 5 windows at stride 3, which gives 2 x 2 only on its 8 x 8 map; an adaptive
    pool gives 2 x 2 at any resolution."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(), nn.Flatten())
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DartsNetwork(nn.Module):
    """DARTS's evaluation network of a genotype: 3 x 3 stem to ``stem_multiplier * channels``, ``layers`` cells
    (reductions at a third and two thirds), global average pooling, linear. ``forward`` returns the logits
    only (exports and evaluation see one output); ``forward_with_aux`` also returns the auxiliary head's
    (training with ``auxiliary``). ``drop_path`` (settable, e.g. per epoch) applies in training only."""

    def __init__(self, genotype: Genotype, *, num_classes: int = 10, in_channels: int = 3, channels: int = 16,
                 layers: int = 8, stem_multiplier: int = 3, auxiliary: bool = False, drop_path: float = 0.0,
                 pool_bn: bool = False) -> None:
        super().__init__()
        self.drop_path = drop_path
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers // 3
        c_out = c_stem
        c_aux = None
        for index, (c_pp, c_p, c, reduction, reduction_prev) in enumerate(cell_plan(layers, channels, stem_multiplier)):
            entries = genotype.reduce if reduction else genotype.normal
            self.cells.append(DartsCell(entries, c_pp, c_p, c, reduction, reduction_prev, pool_bn=pool_bn))
            c_out = len(CONCAT) * c
            if index == self.aux_index:
                c_aux = c_out
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if auxiliary and c_aux is not None else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_out, num_classes)

    def _run(self, x: torch.Tensor, aux: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = s1 = self.stem(x)
        aux_logits = None
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path)
            if aux and index == self.aux_index:
                aux_logits = self.auxiliary_head(s1)
        return self.classifier(torch.flatten(self.pool(s1), 1)), aux_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, aux=False)[0]

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, auxiliary logits)``; the second is None without an auxiliary head."""
        return self._run(x, aux=self.auxiliary_head is not None)


# ---------------------------------------------------------------------------------------------- relaxed supernet
class _PartialEdge(nn.Module):
    """PC-DARTS's edge: the mixed op sees the first ``c / k`` channels, the rest bypass it (max-pooled 2 x 2 on a
    stride-2 edge), the two are concatenated and shuffled in ``k`` groups."""

    def __init__(self, c: int, stride: int, k: int) -> None:
        super().__init__()
        self.part = c // k
        self.mix = CandidateMix([make_op(op, self.part, stride, affine=False, pool_bn=True) for op in PRIMITIVES])
        self.bypass = nn.MaxPool2d(2, 2) if stride == 2 else nn.Identity()
        self.shuffle = ChannelShuffle(k)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: int | None = None,
                aux_skip: float = 0.0) -> torch.Tensor:
        mixed = self.mix(x[:, : self.part], weights, active, aux_skip)
        out = self.shuffle(torch.cat([mixed, self.bypass(x[:, self.part:])], dim=1))
        return out.contiguous(memory_format=torch.channels_last) if _channels_last(x) else out


class _SearchCell(nn.Module):
    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, k: int) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else \
            ReLUConvBN(c_pp, c, 1, affine=False)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, affine=False)
        edges: list[nn.Module] = []
        for _, i in EDGES:
            stride = 2 if reduction and i < 2 else 1
            edges.append(CandidateMix([make_op(op, c, stride, affine=False, pool_bn=True) for op in PRIMITIVES])
                         if k == 1 else _PartialEdge(c, stride, k))
        self.edges = nn.ModuleList(edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, gates: Gates, offset: int, t: str) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for j in NODES:
            node_weights = gates.edge_weights.get(f"{t}.node{j}")
            total = None
            for i in range(j):
                d = offset + e
                active = None if gates.active is None else gates.active[d]
                h = self.edges[e](states[i], gates.weights[d], active, gates.aux_skip)
                if node_weights is not None:
                    h = node_weights[i] * h
                total = h if total is None else total + h
                e += 1
            states.append(total)
        return torch.cat([states[i] for i in CONCAT], dim=1)


class DartsSupernet(RelaxedSupernet):
    """DARTS's search network on the proxy (``search_layers`` cells of ``search_channels``): every cell edge a
    mixed op over the 8 primitives, weighted by the gates of its cell type's decisions."""

    def __init__(self, space: DartsSpace, *, partial_channels: int = 1) -> None:
        super().__init__()
        self.space = space
        self.partial_channels = partial_channels
        self.decisions = space.decisions()
        channels, layers, multiplier = space.search_channels, space.search_layers, space.stem_multiplier
        c_stem = multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(space.in_channels, c_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem))
        plan = cell_plan(layers, channels, multiplier)
        self.cells = nn.ModuleList(_SearchCell(*row, partial_channels) for row in plan)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(len(CONCAT) * plan[-1][2], space.num_classes)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, gates: Gates) -> torch.Tensor:
        if len(gates.weights) != len(self.decisions):
            raise ConfigError(f"darts supernet: gates hold {len(gates.weights)} weight vectors, expected "
                              f"{len(self.decisions)} (one per edge decision)")
        # Channels-last: the many small depthwise convolutions, pools and their backward passes of a relaxed
        # cell run 2-3x faster so on CPU (measured, torch 2.13, 1 thread); the values are the same.
        s0 = s1 = self.stem(x.contiguous(memory_format=torch.channels_last))
        for cell in self.cells:
            t = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, gates, CELL_TYPES.index(t) * len(EDGES), t)
        return self.classifier(torch.flatten(self.pool(s1), 1))

    def gates_of(self, arch: Mapping[str, Value]) -> Gates:
        return Gates.one_hot(self.decisions, self.space.selection_of(self.space.validate(arch)))

    def edge_groups(self) -> dict[str, int]:
        """PC-DARTS's edge normalisation (only with partial channels): node ``j`` weighs its ``j`` inputs."""
        if self.partial_channels == 1:
            return {}
        return {f"{t}.node{j}": j for t in CELL_TYPES for j in NODES}

    @torch.no_grad()
    def extract(self, arch: Mapping[str, Value]) -> DartsNetwork:
        """The proxy network of ``arch`` with this supernet's weights (a BatchNorm without affine parameters
        becomes one with scale 1 and shift 0; running statistics copied; pools keep their BatchNorm)."""
        if self.partial_channels != 1:
            raise ConfigError(f"darts: extract needs partial_channels=1 (got {self.partial_channels}): a PC-DARTS "
                              f"edge mixes a part of the channels, which no derived cell computes; retrain the "
                              f"derived network instead (final.train=scratch)")
        space = self.space
        genotype = space.genotype(arch)
        net = DartsNetwork(genotype, num_classes=space.num_classes, in_channels=space.in_channels,
                           channels=space.search_channels, layers=space.search_layers,
                           stem_multiplier=space.stem_multiplier, pool_bn=True)
        _copy_weights(net.stem, self.stem)
        _copy_weights(net.classifier, self.classifier)
        for cell, source in zip(net.cells, self.cells):
            _copy_weights(cell.preprocess0, source.preprocess0)
            _copy_weights(cell.preprocess1, source.preprocess1)
            entries = genotype.reduce if cell.reduction else genotype.normal
            for n, (op, i) in enumerate(entries):
                edge = source.edges[EDGES.index((NODES[n // 2], i))]
                _copy_weights(cell.ops[n], edge.candidates[PRIMITIVES.index(op)])
        return net.train(self.training)


def _copy_weights(target: nn.Module, source: nn.Module) -> None:
    """Copy ``source``'s parameters and buffers into the same-shaped ``target`` (same module structure), a
    BatchNorm's affine parameters that ``source`` lacks set to scale 1, shift 0."""
    state = source.state_dict()
    for key, value in target.state_dict().items():
        if key in state:
            value.copy_(state[key])
        elif key.endswith(".weight") or key.endswith(".bias"):
            owner = target.get_submodule(key.rsplit(".", 1)[0]) if "." in key else target
            if not isinstance(owner, nn.BatchNorm2d):
                raise ValueError(f"extract: {key} of {type(target).__name__} has no source weight")
            value.fill_(1.0 if key.endswith(".weight") else 0.0)
        else:
            raise ValueError(f"extract: {key} of {type(target).__name__} has no source value")
    for m_target, m_source in zip(target.modules(), source.modules()):
        if isinstance(m_target, nn.BatchNorm2d) and isinstance(m_source, nn.BatchNorm2d):
            m_target.momentum, m_target.eps = m_source.momentum, m_source.eps

