"""Split a network of a search space into the kernels a runtime executes, with their shape features.

A deployed network does not run "blocks": an inference runtime fuses each convolution with the BatchNorm and
activation behind it and then launches one kernel per fused op. Latency is, to a good approximation, a sum
over those kernels of a cost that depends on the kernel's type and shape (work, memory traffic, launch
overhead). :func:`kernels` lists them for any space; :func:`flops` and :func:`params` sum the list, so the
analytic FLOP and parameter counts agree with the network ``space.build`` returns.

Where a decomposition comes from (:func:`kernels`):

- NB201, FBNet and OFA: hand-written builders below (fast, and NB201's dead-edge logic needs them); the
  tests check them against the traced network (``tests/test_kernel_trace.py``);
- a space with a ``kernel_list(arch)`` method: that method;
- any other space: derived from the built network itself by :func:`search_spaces.trace.trace_kernels`
  (torch.fx trace plus shape propagation), so a new space needs no hand-written list in a second file. An
  op the tracer has no rule for is a clear error, not a silently missing kernel.

Kernel types (``Kernel.kind``):

- ``conv``: dense k x k convolution (k > 1) fused with BN (+ activation);
- ``pwconv``: 1 x 1 convolution (possibly grouped) fused with BN (+ activation);
- ``dwconv``: depthwise k x k convolution fused with BN (+ activation);
- ``se``: squeeze-and-excitation (global pool, two tiny 1 x 1 convs, gating multiply) as one fused unit;
- ``pool``: k x k average or max pooling; ``gpool``: global (average) pooling;
- ``add``: element-wise addition (residuals, NB201 node sums); ``shuffle``: channel shuffle;
- ``linear``: fully connected layers (the classifier; a 1 x 1 conv on a globally pooled map, e.g. OFA's
  feature mix);
- ``concat``: channel concatenation (ShuffleNetV2 units, the ghost module): reads its inputs, writes the output;
- ``slice``: a channel split (``chunk`` / ``split``: one kernel for the whole split) or a channel slice that
  drops channels (the ghost module's cut to its output width): reads and writes the kept elements. Both are
  pure memory copies (``flops == 0``).

``concat`` and ``slice`` come last in :data:`KINDS` so the columns of the older kinds keep their positions.

``flops`` are multiply-accumulates of convolutions and linear layers (the convention of
:func:`search_spaces.profile.count_macs`: no biases, no BN, no pooling or additions), so ``flops(space, arch)``
equals ``count_macs(space.build(arch), space.input_shape(arch))`` (NB201: see below). Element-wise kernels have ``flops == 0``;
their cost shows up in ``in_elems`` / ``out_elems`` (memory traffic).

NAS-Bench-201 special case: an edge whose output cannot reach the cell output, or that reads a node the cell
input cannot reach, is dead code that a graph compiler can remove; HW-NAS-Bench's measurements mostly agree
(the median cell with no input-to-output path measures ~0.1 ms for the whole network). So only *live* edges
produce kernels, and a cell without a path gives an empty kernel list (flops 0). The measurements show the
runtime does not prune every dead edge (some equivalent cells measure 2.8 ms, others 20 ms), which is why the
whole-network regressors also see the cell as written (:mod:`predictors.features`). For cells where every edge
is live, :func:`flops` equals ``count_macs`` of ``space.build``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nas.arch import Value
from search_spaces.base import SearchSpace

#: Every kernel type, in the order feature vectors list them.
KINDS = ("conv", "pwconv", "dwconv", "se", "pool", "gpool", "add", "shuffle", "linear", "concat", "slice")


@dataclass(frozen=True)
class Kernel:
    """One executed kernel: its type and shape."""

    kind: str
    flops: int  # multiply-accumulates (0 for element-wise kernels)
    params: int  # weights incl. BN scale/shift and biases
    in_elems: int  # elements read (activations)
    out_elems: int  # elements written
    kernel: int = 1
    stride: int = 1
    c_in: int = 0
    c_out: int = 0
    hw_out: int = 1  # output spatial side

    @property
    def bytes(self) -> int:
        """fp32 activation traffic, the memory-bound kernels' cost driver."""
        return 4 * (self.in_elems + self.out_elems)


def kernel_row(ks: Sequence[Kernel]) -> np.ndarray:
    """Per kind (in :data:`KINDS` order): MMACs, MB of fp32 activation traffic and the kernel count, summed over
    ``ks``: the ``kernel`` latency features (:mod:`predictors.features`)."""
    row = np.zeros(3 * len(KINDS))
    for k in ks:
        i = 3 * KINDS.index(k.kind)
        row[i] += k.flops / 1e6
        row[i + 1] += k.bytes / 1e6
        row[i + 2] += 1.0
    return row


def _out_side(side: int, stride: int) -> int:
    # 'same' padding (k // 2) with odd k: out = ceil(side / stride)
    return -(-side // stride)


def conv_kernel(c_in: int, c_out: int, k: int, stride: int, side_in: int, *, groups: int = 1,
                bn: bool = True, bias: bool = False, side_out: int | None = None) -> Kernel:
    """A (grouped / depthwise / pointwise) convolution with its BN, typed by shape (``side_out``: the output
    side when it is known, e.g. traced; default: 'same' padding)."""
    side = _out_side(side_in, stride) if side_out is None else side_out
    macs = side * side * c_out * (c_in // groups) * k * k
    params = c_out * (c_in // groups) * k * k + (2 * c_out if bn else 0) + (c_out if bias else 0)
    if groups == c_in and groups == c_out and groups > 1:
        kind = "dwconv"
    elif k == 1:
        kind = "pwconv"
    else:
        kind = "conv"
    return Kernel(kind, macs, params, side_in * side_in * c_in, side * side * c_out, k, stride, c_in, c_out, side)


def elementwise_kernel(kind: str, channels: int, side: int, inputs: int = 1) -> Kernel:
    """An element-wise kernel (``add``, ``shuffle``) reading ``inputs`` maps of ``channels`` x ``side``²."""
    n = channels * side * side
    return Kernel(kind, 0, 0, inputs * n, n, 1, 1, channels, channels, side)


def pool_kernel(channels: int, side_in: int, k: int, stride: int, side_out: int | None = None) -> Kernel:
    """A k x k pooling (``side_out``: the output side when known, else from k and the stride)."""
    if side_out is not None:
        side = side_out
    else:
        side = _out_side(side_in, stride) if k > stride else side_in // stride
    return Kernel("pool", 0, 0, channels * side_in * side_in, channels * side * side, k, stride, channels, channels,
                  side)


def gpool_kernel(channels: int, side: int) -> Kernel:
    """Global pooling of ``channels`` maps of ``side`` x ``side`` to one value each."""
    return Kernel("gpool", 0, 0, channels * side * side, channels, side, side, channels, channels, 1)


def linear_kernel(c_in: int, c_out: int, *, bias: bool = True) -> Kernel:
    """A fully connected layer ``c_in -> c_out``."""
    return Kernel("linear", c_in * c_out, c_in * c_out + (c_out if bias else 0), c_in, c_out, 1, 1, c_in, c_out, 1)


def se_kernel(channels: int, mid: int, side: int) -> Kernel:
    """Squeeze-and-excitation on ``channels`` maps of ``side`` x ``side`` with ``mid`` reduced channels."""
    n = channels * side * side
    # pool + reduce (bias) + expand (bias) + gate multiply: reads the map twice, writes it once
    return Kernel("se", 2 * channels * mid, 2 * channels * mid + mid + channels, 2 * n, n, 1, 1, channels, channels,
                  side)


def concat_kernel(channels_in: Sequence[int], side: int) -> Kernel:
    """Channel concatenation of maps with ``channels_in`` channels: reads every input, writes the output."""
    c = sum(channels_in)
    n = c * side * side
    return Kernel("concat", 0, 0, n, n, 1, 1, c, c, side)


def slice_kernel(c_in: int, c_kept: int, side: int) -> Kernel:
    """A channel split or slice keeping ``c_kept`` of ``c_in`` channels: a copy of the kept elements."""
    n = c_kept * side * side
    return Kernel("slice", 0, 0, n, n, 1, 1, c_in, c_kept, side)


# ---------------------------------------------------------------------------------------------- NB201
def nb201_live_ops(arch: Mapping[str, Value]) -> list[str]:
    """The 6 edge ops with dead edges (not on any input-to-output path) replaced by ``none``."""
    from search_spaces.nb201 import EDGES, LABELS

    ops = [str(arch[label]) for label in LABELS]
    from_input = {0}
    for k, (j, i) in enumerate(EDGES):  # edges are ordered by target node
        if i in from_input and ops[k] != "none":
            from_input.add(j)
    to_output = {3}
    for k in reversed(range(len(EDGES))):  # reverse order settles "reaches node 3"
        j, i = EDGES[k]
        if j in to_output and ops[k] != "none":
            to_output.add(i)
    return [op if (i in from_input and j in to_output) else "none" for op, (j, i) in zip(ops, EDGES)]


def _nb201_kernels(space: SearchSpace, arch: Mapping[str, Value]) -> list[Kernel]:
    from search_spaces.nb201 import EDGES

    ops = nb201_live_ops(arch)
    if all(op == "none" for op in ops):
        return []  # no input-to-output path: the network computes a constant (see the module docstring)
    c, side = space.channels, space.resolution
    out = [conv_kernel(space.in_channels, c, 3, 1, side)]
    for stage in range(3):
        if stage > 0:
            c_out = 2 * c
            half = _out_side(side, 2)
            out += [conv_kernel(c, c_out, 3, 2, side), conv_kernel(c_out, c_out, 3, 1, half),
                    pool_kernel(c, side, 2, 2), conv_kernel(c, c_out, 1, 1, half),
                    elementwise_kernel("add", c_out, half, 2)]
            c, side = c_out, half
        for _ in range(space.cells_per_stage):
            inputs = {1: 0, 2: 0, 3: 0}
            for op, (j, _i) in zip(ops, EDGES):
                if op == "none":
                    continue
                inputs[j] += 1
                if op == "nor_conv_3x3":
                    out.append(conv_kernel(c, c, 3, 1, side))
                elif op == "nor_conv_1x1":
                    out.append(conv_kernel(c, c, 1, 1, side))
                elif op == "avg_pool_3x3":
                    out.append(pool_kernel(c, side, 3, 1))
            out += [elementwise_kernel("add", c, side, 2) for n in inputs.values() for _ in range(max(n - 1, 0))]
    out += [gpool_kernel(c, side), linear_kernel(c, space.num_classes)]
    return out


# ---------------------------------------------------------------------------------------------- FBNet
def _fbnet_kernels(space: SearchSpace, arch: Mapping[str, Value]) -> list[Kernel]:
    from search_spaces.fbnet import LABELS, STAGE_CHANNELS, parse_op

    side = space.resolution
    out = [conv_kernel(space.in_channels, STAGE_CHANNELS[0], 3, space.stem_stride, side)]
    side = out[-1].hw_out
    for label, (c_in, c_out, stride) in zip(LABELS, space.layer_plan()):
        op = str(arch[label])
        if op == "skip":
            if stride != 1 or c_in != c_out:  # a resizing skip is a strided 1x1 projection
                out.append(conv_kernel(c_in, c_out, 1, stride, side))
                side = out[-1].hw_out
            continue
        k, e, g = parse_op(op)
        mid = c_in * e
        out.append(conv_kernel(c_in, mid, 1, 1, side, groups=g))
        if g > 1:
            out.append(elementwise_kernel("shuffle", mid, side))
        out.append(conv_kernel(mid, mid, k, stride, side, groups=mid))
        side = out[-1].hw_out
        out.append(conv_kernel(mid, c_out, 1, 1, side, groups=g))
        if stride == 1 and c_in == c_out:
            out.append(elementwise_kernel("add", c_out, side, 2))
    out += [conv_kernel(STAGE_CHANNELS[-1], space.head_channels, 1, 1, side), gpool_kernel(space.head_channels, side),
            linear_kernel(space.head_channels, space.num_classes)]
    return out


# ---------------------------------------------------------------------------------------------- OFA
def _ofa_kernels(space: SearchSpace, arch: Mapping[str, Value]) -> list[Kernel]:
    spec = space.net_spec(arch)
    out = ofa_stem_kernels(spec, int(arch["resolution"]))
    side = out[-1].hw_out
    for block in spec.blocks:
        block_kernels = mbconv_kernels(block, side)
        side = block_kernels[-1].hw_out
        out += block_kernels
    last = spec.blocks[-1].out_channels if spec.blocks else spec.stem_channels
    return out + ofa_head_kernels(spec, last, side)


# The three parts of an OFA network, apart: a block's kernels depend only on its spec and input side, which is
# what lets predictors.features cost OFA archs from a table per (resolution, stage, slot, kernel, expand).
def ofa_stem_kernels(spec, resolution: int) -> list[Kernel]:
    """The stem convolution of an OFA ``NetSpec`` at input ``resolution``."""
    return [conv_kernel(spec.in_channels, spec.stem_channels, 3, 2, resolution)]


def mbconv_kernels(block, side: int) -> list[Kernel]:
    """The kernels of one MBConv ``BlockSpec`` on a ``side`` x ``side`` input (the last one's ``hw_out`` is the
    block's output side)."""
    mid = block.mid_channels
    out = []
    if block.has_expand_conv:
        out.append(conv_kernel(block.in_channels, mid, 1, 1, side))
    out.append(conv_kernel(mid, mid, block.kernel, block.stride, side, groups=mid))
    side = out[-1].hw_out
    if block.use_se:
        out.append(se_kernel(mid, block.se_channels, side))
    out.append(conv_kernel(mid, block.out_channels, 1, 1, side))
    if block.residual:
        out.append(elementwise_kernel("add", block.out_channels, side, 2))
    return out


def ofa_head_kernels(spec, last: int, side: int) -> list[Kernel]:
    """Final expand, global pool, feature mix and classifier after ``last`` channels at ``side``."""
    return [conv_kernel(last, spec.final_expand_channels, 1, 1, side), gpool_kernel(spec.final_expand_channels, side),
            linear_kernel(spec.final_expand_channels, spec.feature_mix_channels, bias=False),
            linear_kernel(spec.feature_mix_channels, spec.num_classes)]


_BUILDERS = {"nb201": _nb201_kernels, "fbnet": _fbnet_kernels, "ofa": _ofa_kernels}


def kernels(space: SearchSpace, arch: Mapping[str, Value]) -> list[Kernel]:
    """The kernels ``space.build(arch)`` executes at inference, in order: a hand-written builder (NB201, FBNet,
    OFA), the space's own ``kernel_list(arch)``, or else traced from the built network (module docstring)."""
    arch = space.validate(arch)
    builder = _BUILDERS.get(space.name)
    if builder is not None:
        return builder(space, arch)
    kernel_list = getattr(space, "kernel_list", None)
    if callable(kernel_list):
        return list(kernel_list(arch))
    from search_spaces.trace import trace_kernels

    return trace_kernels(space.build(arch), space.input_shape(arch))


def flops(space: SearchSpace, arch: Mapping[str, Value]) -> int:
    """Multiply-accumulates of one inference (convolutions and linear layers)."""
    return sum(k.flops for k in kernels(space, arch))


def params(space: SearchSpace, arch: Mapping[str, Value]) -> int:
    """Parameters of the executed network (dead NB201 edges excluded)."""
    return sum(k.params for k in kernels(space, arch))


def nb201_canonical_ops(arch: Mapping[str, Value]) -> list[str]:
    """Live ops (:func:`nb201_live_ops`) in a canonical order: cells that compute the same function up to
    swapping the two intermediate nodes (possible when there is no edge 1 -> 2) get the same list."""
    ops = nb201_live_ops(arch)
    if ops[2] != "none":
        return ops
    swapped = [ops[1], ops[0], ops[2], ops[3], ops[5], ops[4]]  # nodes 1 <-> 2
    return min(ops, swapped)


def supports(space: SearchSpace) -> bool:
    """Whether :func:`kernels` can decompose networks of ``space``: every space that builds its networks (a
    hand-written builder, a ``kernel_list`` method, or the traced network). A network with an op the tracer
    has no rule for still fails, loudly, when it is decomposed (:func:`search_spaces.trace.trace_kernels`)."""
    return (space.name in _BUILDERS or callable(getattr(space, "kernel_list", None))
            or callable(getattr(space, "build", None)))
