"""Per-layer latency profile of an ONNX model: where the time goes, beside each layer's MACs, params and traffic.

This module holds the profile itself: :func:`profile_model` runs it, :func:`attribute` maps the kernels to
layers, and :class:`LayerProfile` is the result. The static costs it puts beside the times are in
:mod:`nas.compress.costs` (re-exported here: :func:`layer_of`, :func:`static_costs`); the table, the findings
and the plot are in :mod:`nas.compress.profile_report`.

:func:`profile_model` profiles a model on a target's device (this machine, or a board through its device agent)
with :func:`nas.hardware.profiling.profile_onnx`, and :func:`attribute` maps every kernel onnxruntime ran back to
a layer of the *original* model. A layer is a module scope of the exporter (:func:`layer_of`): the torch exporter
names nodes ``/features/features.3/conv/conv.0/Conv``, which is layer ``features.3.conv.0``.

Why attribution is not a name lookup: onnxruntime runs a rewritten graph. It fuses chains (Conv+Relu into
FusedConv; on x86 Conv+Add+activation into one NCHWc Conv), drops no-ops, and inserts layout nodes
(ReorderInput/ReorderOutput around NCHWc kernels, Memcpy for GPUs). What it keeps is tensor names: a fused node
takes over the output tensors of the last node of the chain it replaced, and inputs of the first. So a kernel is
mapped by tensors first:

1. the optimized graph's tensors are mapped to original tensors: a name that exists in the original model is
   that tensor; a layout node's output is the same tensor as its input (and a ReorderOutput's input the same as
   its output); an NCHWc node's private output (``reorder_token_N``) is the tensor its name says
   (``<tensor>_nchwc``), carried forward over the Add/activation nodes the NCHWc rewrite fuses after naming it,
   and a node that kept an original node's name writes that node's output, as does a tensor named after an
   original node (a QDQ model's fused QLinearConv writes a tensor named after its Conv);
2. each kernel covers the original nodes between its input tensors and its output tensors (walking back from
   the outputs); its time goes to the layer of the covered node of its own op type (a FusedConv to the Conv,
   not the Relu whose output it writes), else of the covered node with most MACs, else of the last one;
3. kernels that cover nothing new (layout nodes) go to the row of the tensor they convert: its producer's,
   else its first consumer's (a ReorderInput of the network input goes to the first convolution);
4. then by node name; what is left goes to the row ``(unattributed)``, which stays empty for torch-exported CNNs.

Layers whose nodes were all fused into another layer's kernels (the ReLU after a convolution, a residual Add)
get no row of their own: they are listed under that row's ``fused``, and their MACs/params/bytes are added to it.
The row ``(framework overhead)`` is the run's time outside any kernel (``run_us - kernel_us``: the executor,
input/output copies, and the profiler's own bookkeeping), so the rows' times add up to the profiled run.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nas.compress.costs import _costs, _layer_nodes, _load_original, _Original, layer_of, static_costs
from nas.errors import ConfigError, DataError, ModelError
from nas.hardware.profiling import FORMAT, _check_runs, profile_onnx
from nas.hardware.runtime import check_input_shape

__all__ = ["OVERHEAD", "SPECIAL_ROWS", "UNATTRIBUTED", "LayerProfile", "LayerRow", "attribute", "layer_of",
           "profile_model", "require_device", "static_costs"]

UNATTRIBUTED = "(unattributed)"
OVERHEAD = "(framework overhead)"
SPECIAL_ROWS = (UNATTRIBUTED, OVERHEAD)

#: Ops onnxruntime inserts to change a tensor's layout or device; they carry one tensor through unchanged.
_LAYOUT_OPS = {"ReorderInput", "ReorderOutput", "MemcpyToHost", "MemcpyFromHost"}
#: Ops the NCHWc rewrite fuses into a convolution after naming it (sum input, activation, batch norm).
_NCHWC_FUSED = {"Add", "Sum", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu",
                "BatchNormalization"}
#: Fused or quantized kernel op -> the original op it computes (the node whose layer gets its time).
_BASE_OP = {"FusedConv": "Conv", "NhwcFusedConv": "Conv", "QLinearConv": "Conv", "ConvInteger": "Conv",
            "FusedGemm": "Gemm", "FusedMatMul": "MatMul", "QLinearMatMul": "MatMul", "MatMulInteger": "MatMul",
            "QGemm": "Gemm", "QLinearAdd": "Add", "QLinearMul": "Mul"}
_NCHWC_NAME = re.compile(r"_nchwc(?:_token_\d+)*$")


# ---------------------------------------------------------------------------------------------- profile
@dataclass(kw_only=True)
class LayerRow:
    """One row of a profile: a layer (with the layers fused into its kernels) or a special row.

    ``time_share``: share of the profiled run; ``kernel_share``: share of the time in layer kernels (what
    ``time_per_mac`` and the plot compare with ``macs_share``; None for special rows); ``time_per_mac``: kernel
    share over MAC share, the layer's time per MAC relative to the network's (>1: slower than its FLOPs
    suggest; None without MACs).
    """

    layer: str
    kind: str
    us: float
    time_share: float
    kernel_share: float | None
    macs: int
    macs_share: float
    params: int
    params_share: float
    bytes: int
    bytes_share: float
    ops: list[str]
    time_per_mac: float | None
    fused: list[str] = field(default_factory=list)
    kernels: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class LayerProfile:
    """Where one model's time goes on one device, layer by layer (see the module doc).

    ``rows`` in network order, then ``(unattributed)`` (only when something is) and ``(framework overhead)``;
    their ``us`` add up to ``totals["run_us"]``, the mean profiled run. ``raw`` is the profiler record the rows
    were attributed from (:func:`nas.hardware.profiling.profile_onnx`).
    """

    rows: list[LayerRow]
    totals: dict[str, Any]
    model: str
    input_shape: tuple[int, int, int]
    runs: int
    threads: int
    provider: str
    device: dict[str, Any]
    runtime: str
    latency_source: str
    graph_source: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def layer_rows(self) -> list[LayerRow]:
        return [r for r in self.rows if r.layer not in SPECIAL_ROWS]

    def row(self, layer: str) -> LayerRow:
        """The row of ``layer``, or of the row it was fused into."""
        for r in self.rows:
            if r.layer == layer or layer in r.fused:
                return r
        raise KeyError(f"no row for layer {layer!r}; rows: {[r.layer for r in self.rows]}")

    def kinds(self) -> dict[str, dict[str, float]]:
        """Per kind: ``us``, ``kernel_share``, ``macs_share``, ``bytes_share`` and ``layers`` (row count)."""
        out: dict[str, dict[str, float]] = {}
        for r in self.layer_rows:
            entry = out.setdefault(r.kind, {"us": 0.0, "kernel_share": 0.0, "macs_share": 0.0, "bytes_share": 0.0,
                                            "layers": 0})
            entry["us"] += r.us
            entry["kernel_share"] += r.kernel_share or 0.0
            entry["macs_share"] += r.macs_share
            entry["bytes_share"] += r.bytes_share
            entry["layers"] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (no NaN: undefined ratios are None), without ``raw``."""
        return {"format": "hwnas.profile/1", "model": self.model, "input_shape": list(self.input_shape),
                "runs": self.runs, "threads": self.threads, "provider": self.provider, "device": self.device,
                "runtime": self.runtime, "latency_source": self.latency_source, "graph_source": self.graph_source,
                "totals": dict(self.totals), "kinds": self.kinds(), "rows": [asdict(r) for r in self.rows],
                "findings": self.findings()}

    def header(self) -> str:
        """The table's first line (:func:`nas.compress.profile_report.header`)."""
        from nas.compress.profile_report import header

        return header(self)

    def table(self, top: int = 15) -> str:
        """Plain-text table of the ``top`` rows by time (:func:`nas.compress.profile_report.table`)."""
        from nas.compress.profile_report import table

        return table(self, top)

    def findings(self) -> str:
        """One paragraph of what the profile shows (:func:`nas.compress.profile_report.findings`)."""
        from nas.compress.profile_report import findings

        return findings(self)


# ---------------------------------------------------------------------------------------------- attribution
def _check_raw(raw: object) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping) or raw.get("format") != FORMAT:
        got = raw.get("format") if isinstance(raw, Mapping) else type(raw).__name__
        raise DataError(f"not a raw profile (format {FORMAT!r} from nas.hardware.profiling.profile_onnx), got {got!r}")
    for key in ("nodes", "kernels", "run_us", "runs"):
        if key not in raw:
            raise DataError(f"malformed raw profile: no key {key!r}")
    return raw


def _topological(nodes: Sequence[Mapping[str, Any]]) -> list[int]:
    """Node indices in a topological order, keeping the given order where it already is one."""
    producer = {t: i for i, n in enumerate(nodes) for t in n.get("outputs", []) if t}
    deps = [{producer[t] for t in n.get("inputs", []) if t in producer and producer[t] != i}
            for i, n in enumerate(nodes)]
    done: set[int] = set()
    order: list[int] = []
    pending = list(range(len(nodes)))
    while pending:
        rest = []
        for i in pending:
            if deps[i] <= done:
                order.append(i)
                done.add(i)
            else:
                rest.append(i)
        if len(rest) == len(pending):  # a cycle (malformed record): keep the rest as given
            order.extend(rest)
            break
        pending = rest
    return order


class _Attribution:
    """Kernel -> row mapping for one raw profile against the original graph (steps in the module doc)."""

    def __init__(self, raw: Mapping[str, Any], g: _Original) -> None:
        self.g = g
        self.nodes = [dict(n) for n in raw["nodes"]]
        self.tensors = g.tensors
        self.named: dict[str, int] = {}
        for i, node in enumerate(g.nodes):
            if node.name and not g.constant[i]:
                self.named.setdefault(node.name, i)
        self.layer_set = set(g.layers)
        self.node_row: dict[int, str] = {}  # original node -> row
        self.opt_row: dict[int, str | None] = {}  # optimized node -> row
        self.mapping: dict[str, str] = {}
        self.readers: dict[str, list[int]] = {}  # optimized tensor -> optimized nodes that read it
        for i, node in enumerate(self.nodes):
            for t in node.get("inputs", []):
                if t:
                    self.readers.setdefault(t, []).append(i)

    def _tensor_from_name(self, name: str) -> str | None:
        base = _NCHWC_NAME.sub("", name)
        return base if base != name and base in self.tensors else None

    def _is_layout(self, node: Mapping[str, Any]) -> bool:
        if node["op_type"] in _LAYOUT_OPS:
            return True
        # a Transpose onnxruntime inserted for a layout change: not in the original, writes no original tensor
        return node["op_type"] == "Transpose" and node["name"] not in self.named and \
            not any(t in self.tensors for t in node.get("outputs", []))

    def _ends(self, node: Mapping[str, Any]) -> tuple[str | None, str | None]:
        ins = [t for t in node.get("inputs", []) if t]
        outs = [t for t in node.get("outputs", []) if t]
        return (ins[0] if ins else None), (outs[0] if outs else None)

    def map_tensors(self, order: list[int]) -> None:
        g, nodes, mapping = self.g, self.nodes, self.mapping
        for node in nodes:
            for t in [*node.get("inputs", []), *node.get("outputs", [])]:
                if t in self.tensors:
                    mapping[t] = t
                elif t in self.named:
                    # a kernel output named after an original node (the QLinearConv that replaces a QDQ model's
                    # DequantizeLinear -> Conv -> QuantizeLinear is named after the Conv): that node's output
                    mapping[t] = next((o for o in g.nodes[self.named[t]].output if o), t)
        layout = [i for i in order if self._is_layout(nodes[i])]
        changed = True
        while changed:  # a layout node carries one tensor: its two sides are the same original tensor
            changed = False
            for i in layout:
                src, dst = self._ends(nodes[i])
                if src and dst and src in mapping and dst not in mapping:
                    mapping[dst] = mapping[src]
                    changed = True
                elif src and dst and dst in mapping and src not in mapping:
                    mapping[src] = mapping[dst]
                    changed = True
        # Original nodes whose output some kernel writes exactly: a name-derived chain must not run into them.
        claimed = {g.producer[mapping[t]] for i, n in enumerate(nodes) if i not in layout
                   for t in n.get("outputs", []) if t in mapping and mapping[t] in g.producer}
        layout_set = set(layout)
        for i in order:
            src, dst = self._ends(nodes[i])
            if dst is None or dst in mapping:
                continue
            if i in layout_set:
                if src in mapping:
                    mapping[dst] = mapping[src]
                continue
            tensor = self._tensor_from_name(nodes[i]["name"])
            if tensor is None and nodes[i]["name"] in self.named:
                # a node that kept its original name (an element-wise op the NCHWc rewrite moved onto blocked
                # tensors) computes that node's output, whatever its private output is called
                tensor = next((t for t in g.nodes[self.named[nodes[i]["name"]]].output if t), None)
            if tensor is not None:
                mapping[dst] = self._extend(tensor, nodes[i], claimed)
        self.layout = layout_set

    def _extend(self, tensor: str, node: Mapping[str, Any], claimed: set[int]) -> str:
        """Follow ``tensor`` over the single-consumer Add/activation chain an NCHWc kernel fused after it was
        named, as long as the chain's other inputs are the kernel's own inputs (its sum input) or constants."""
        g = self.g
        available = {self.mapping[t] for t in node.get("inputs", []) if t in self.mapping} | g.constants
        while tensor not in g.graph_outputs:
            users = [c for c in g.consumers.get(tensor, []) if not g.constant[c]]
            if len(users) != 1 or users[0] in claimed or g.nodes[users[0]].op_type not in _NCHWC_FUSED:
                break
            user = g.nodes[users[0]]
            outs = [t for t in user.output if t]
            if len(outs) != 1 or not all(t in available for t in user.input if t and t != tensor):
                break
            tensor = outs[0]
        return tensor

    def cover(self, order: list[int]) -> list[int]:
        """Walk back from each compute kernel's outputs to its inputs; returns the nodes that covered nothing."""
        g, nodes, mapping = self.g, self.nodes, self.mapping
        covered: set[int] = set()
        deferred = []
        for i in order:
            node = nodes[i]
            if i in self.layout:
                deferred.append(i)
                continue
            anchors = [mapping[t] for t in node.get("outputs", []) if t in mapping]
            stops = {mapping[t] for t in node.get("inputs", []) if t in mapping}
            stack = [g.producer[a] for a in anchors if a in g.producer]
            cover: list[int] = []
            while stack:
                j = stack.pop()
                if j in covered or g.constant[j]:
                    continue
                covered.add(j)
                cover.append(j)
                stack.extend(g.producer[t] for t in g.nodes[j].input
                             if t and t not in stops and t in g.producer)
            if not cover:
                deferred.append(i)
                continue
            row = g.layers[self._principal(node["op_type"], cover)]
            self.opt_row[i] = row
            for j in cover:
                self.node_row[j] = row
        return deferred

    def _principal(self, op_type: str, cover: list[int]) -> int:
        g = self.g
        for op in (op_type, _BASE_OP.get(op_type)):
            same = [j for j in cover if g.nodes[j].op_type == op]
            if same:
                return max(same, key=lambda j: g.macs[j])
        heavy = max(cover, key=lambda j: g.macs[j])
        return heavy if g.macs[heavy] > 0 else cover[0]  # cover[0] produces the kernel's output

    def by_tensors(self, i: int) -> str | None:
        """The row of a kernel that covered no original node (a layout node, a piece of an inlined function):
        the row of the original tensor it writes, else of the kernel that reads its output, else of the tensor
        it reads, else of that tensor's first original consumer."""
        g, node, mapping = self.g, self.nodes[i], self.mapping
        outs = [mapping[t] for t in node.get("outputs", []) if t in mapping]
        ins = [mapping[t] for t in node.get("inputs", []) if t in mapping]
        for t in outs:
            row = self.node_row.get(g.producer.get(t, -1))
            if row is not None:
                return row
        for t in node.get("outputs", []):
            for j in self.readers.get(t, []):
                if self.opt_row.get(j) is not None:
                    return self.opt_row[j]
        for t in ins:
            row = self.node_row.get(g.producer.get(t, -1))
            if row is not None:
                return row
        for t in [*outs, *ins]:
            for c in g.consumers.get(t, []):
                if c in self.node_row:
                    return self.node_row[c]
        return None

    def by_name(self, name: str, op_type: str = "") -> str | None:
        """The row a kernel's name points to: an original node's name, or (``<tensor>_nchwc``) the node that
        computes ``op_type`` at the head of the fused chain ending in that tensor; else a layer's name."""
        g = self.g
        index = self.named.get(name)
        if index is None:
            tensor = self._tensor_from_name(name)
            index = g.producer.get(tensor) if tensor is not None else None
            if index is not None:
                index = self._head(index, op_type)
        if index is not None:
            return self.node_row.get(index, g.layers[index])
        layer = layer_of(name)
        return layer if layer in self.layer_set else None

    def _head(self, index: int, op_type: str, depth: int = 4) -> int:
        """Walk back from ``index`` over fusable nodes to the nearest node of ``op_type`` (a conv whose output
        an activation or residual add replaced); ``index`` itself if there is none within ``depth`` steps."""
        g = self.g
        wanted = {op_type, _BASE_OP.get(op_type, op_type)}
        frontier = [index]
        for _ in range(depth + 1):
            for j in frontier:
                if g.nodes[j].op_type in wanted:
                    return j
            frontier = [g.producer[t] for j in frontier if g.nodes[j].op_type in _NCHWC_FUSED
                        for t in g.nodes[j].input if t in g.producer and not g.constant[g.producer[t]]]
        return index


def attribute(raw: dict, model: Path, input_shape: Sequence[int], *,
              latency_source: str = "measured") -> LayerProfile:
    """Map every kernel of ``raw`` (:func:`~nas.hardware.profiling.profile_onnx` of ``model``) to a layer of the
    original ``model`` and build its :class:`LayerProfile` (steps in the module doc).

    Every kernel lands in exactly one row, and the rows' ``us`` add up to ``raw["run_us"]``. Without the optimized
    graph (``graph_source`` "profiler events": the provider compiled nodes), kernels are mapped by name, and a
    kernel whose name says nothing (a layout node, an inlined function's node) goes to the kernel run before it.
    """
    raw = _check_raw(raw)
    shape = check_input_shape(input_shape)
    g = _load_original(Path(model), shape)
    work = _Attribution(raw, g)
    kernels = [dict(k) for k in raw["kernels"]]
    with_graph = any(n.get("inputs") or n.get("outputs") for n in work.nodes)
    if with_graph:
        order = _topological(work.nodes)
        work.map_tensors(order)
        deferred = work.cover(order)
        for i in [*reversed(deferred), *deferred]:  # readers first: a chain of layout nodes resolves from its end
            if work.opt_row.get(i) is None:
                work.opt_row[i] = work.by_tensors(i)
        for i in deferred:
            if work.opt_row.get(i) is None:
                work.opt_row[i] = work.by_name(work.nodes[i]["name"], work.nodes[i]["op_type"])
    rows_of_kernels: list[str | None] = []
    for kernel in kernels:
        index, name, op_type = kernel.get("graph_index"), str(kernel.get("node", "")), str(kernel.get("op", ""))
        if with_graph and isinstance(index, int) and 0 <= index < len(work.nodes):
            rows_of_kernels.append(work.opt_row.get(index) or work.by_name(name, op_type))
        else:
            rows_of_kernels.append(work.by_name(name, op_type))
    if not with_graph:  # names only: a nameless kernel runs right after (or before) the one it serves
        for i in range(len(rows_of_kernels)):
            if rows_of_kernels[i] is None:
                before = next((r for r in reversed(rows_of_kernels[:i]) if r is not None), None)
                after = next((r for r in rows_of_kernels[i + 1:] if r is not None), None)
                rows_of_kernels[i] = before or after
    return _build(raw, g, kernels, [r or UNATTRIBUTED for r in rows_of_kernels], work.node_row, model, shape,
                  latency_source, str(raw.get("graph_source", "optimized model")))


def _build(raw: Mapping[str, Any], g: _Original, kernels: list[dict[str, Any]], kernel_rows: list[str],
           node_row: dict[int, str], model: Path, shape: tuple[int, int, int], latency_source: str,
           graph_source: str) -> LayerProfile:
    costs = _costs(g)
    layer_nodes = _layer_nodes(g)
    time: dict[str, float] = {}
    names: dict[str, list[str]] = {}
    for kernel, row in zip(kernels, kernel_rows):
        time[row] = time.get(row, 0.0) + float(kernel.get("us", 0.0))
        names.setdefault(row, []).append(str(kernel.get("node", "")))
    # A layer with no kernel of its own whose nodes all ran inside other layers' kernels joins the row that ran
    # most of them; any other layer keeps its own row (zero time if onnxruntime dropped it, e.g. a no-op).
    row_of: dict[str, str] = {}
    for layer, indices in layer_nodes.items():
        owners = [node_row.get(j) for j in indices]
        if layer in time or not owners or any(o is None for o in owners):
            row_of[layer] = layer
        else:
            row_of[layer] = Counter(owners).most_common(1)[0][0]
    members: dict[str, list[str]] = {}
    for layer in layer_nodes:
        members.setdefault(row_of[layer], []).append(layer)
    order = {layer: min(indices) for layer, indices in layer_nodes.items()}
    keys = sorted(set(members) | (set(time) - set(SPECIAL_ROWS)), key=lambda k: order.get(k, len(g.nodes)))
    run_us = float(raw["run_us"])
    kernel_us = sum(float(k.get("us", 0.0)) for k in kernels)
    total_macs = sum(c["macs"] for c in costs.values())
    total_params = sum(c["params"] for c in costs.values())
    total_bytes = sum(c["bytes"] for c in costs.values())
    layer_us = sum(time.get(k, 0.0) for k in keys)

    def share(value: float, total: float) -> float:
        return value / total if total else 0.0

    rows = []
    for key in keys:
        layers = sorted(members.get(key, [key]), key=lambda x: (x != key, order.get(x, 0)))
        parts = [costs[x] for x in layers if x in costs]
        macs = sum(p["macs"] for p in parts)
        params = sum(p["params"] for p in parts)
        size = sum(p["bytes"] for p in parts)
        us = time.get(key, 0.0)
        kernel_share = share(us, layer_us)
        macs_share = share(macs, total_macs)
        rows.append(LayerRow(
            layer=key, kind=costs[key]["kind"] if key in costs else "other", us=us, time_share=share(us, run_us),
            kernel_share=kernel_share, macs=macs, macs_share=macs_share, params=params,
            params_share=share(params, total_params), bytes=size, bytes_share=share(size, total_bytes),
            ops=[op for p in parts for op in p["ops"]],
            time_per_mac=kernel_share / macs_share if macs_share > 0 and layer_us > 0 else None,
            fused=[x for x in layers if x != key], kernels=names.get(key, [])))
    special = [(UNATTRIBUTED, time.get(UNATTRIBUTED, 0.0), names.get(UNATTRIBUTED, []))] \
        if UNATTRIBUTED in time else []
    special.append((OVERHEAD, run_us - kernel_us, []))
    for name, us, kernel_names in special:
        rows.append(LayerRow(layer=name, kind="unattributed" if name == UNATTRIBUTED else "overhead", us=us,
                             time_share=share(us, run_us), kernel_share=None, macs=0, macs_share=0.0, params=0,
                             params_share=0.0, bytes=0, bytes_share=0.0, ops=[], time_per_mac=None,
                             kernels=kernel_names))
    totals = {"run_us": run_us, "kernel_us": kernel_us, "layer_us": layer_us,
              "framework_overhead_us": run_us - kernel_us, "unattributed_us": time.get(UNATTRIBUTED, 0.0),
              "macs": total_macs, "params": total_params, "bytes": total_bytes, "layers": len(layer_nodes),
              "rows": len(rows), "kernels": len(kernels), "wall_us": raw.get("wall_us"),
              "plain_wall_us": raw.get("plain_wall_us")}
    for key, value in list(totals.items()):
        if isinstance(value, float) and not math.isfinite(value):
            totals[key] = None
    return LayerProfile(rows=rows, totals=totals, model=Path(model).name, input_shape=shape,
                        runs=int(raw["runs"]), threads=int(raw.get("threads", 1)),
                        provider=str(raw.get("provider", "")), device=dict(raw.get("device") or {}),
                        runtime=str(raw.get("runtime", "")), latency_source=latency_source,
                        graph_source=graph_source, raw=dict(raw))


# ---------------------------------------------------------------------------------------------- entry
def require_device(target: Any) -> None:
    """:class:`ConfigError` unless ``target`` can run an ONNX model (here or on its agent's board), saying how to
    give it a device: a profile times kernels, so a lookup table or a prior cannot make one."""
    name = getattr(target, "name", type(target).__name__)
    if getattr(target, "can_measure", False) and getattr(target, "measure_config", None) is not None:
        return
    if hasattr(target, "client"):  # an onnxruntime target without a device here (arm_cpu on an x86 machine)
        how = ("attach the board with target.agent=http://BOARD:8765 (start the agent there with `python -m "
               "nas.device serve --host 0.0.0.0 --token SECRET`), or profile on this machine with +target=cpu")
    else:
        how = ("profile on this machine with +target=cpu, or on a board with +target=cpu "
               "target.agent=http://BOARD:8765 (started there with `python -m nas.device serve`)")
    raise ConfigError(f"target {name!r} has no device to run the model on, and a profile needs one: {how}")


def profile_model(model: Path, input_shape: Sequence[int], target: Any, *, runs: int = 50) -> LayerProfile:
    """Profile ``model`` on ``target``'s device and attribute it to layers.

    ``target``: a :class:`nas.hardware.targets.LocalCPUTarget` (or subclass). With an agent
    (``target.client``) the model is profiled on the board (:meth:`nas.device.client.AgentClient.profile`),
    else here with ``target.measure_config``'s threads, provider and warm-up. A target that cannot run ONNX
    (table targets; ``arm_cpu`` without an agent on a non-ARM machine) raises :class:`ConfigError`
    (:func:`require_device`).
    """
    shape = check_input_shape(input_shape)
    runs = _check_runs(runs)
    require_device(target)
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"ONNX model file not found: {path}; give the path of an .onnx file")
    client = getattr(target, "client", None)
    if client is not None:
        raw = client.profile(path.read_bytes(), shape, target.measure_config, runs=runs)
        source = f"measured (agent {getattr(target, 'agent_url', None) or client.url})"
    else:
        raw = profile_onnx(path, shape, target.measure_config, runs=runs)
        source = "measured"
    return attribute(raw, path, shape, latency_source=source)
