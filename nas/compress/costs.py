"""Static per-layer costs of an ONNX model: MACs, parameters and memory traffic, from the graph alone.

This module holds the side of a profile that needs no device: it loads the original graph with its inferred
shapes, names each node's layer (:func:`layer_of`) and sums the costs per layer (:func:`static_costs`). It is
apart from the attribution (:mod:`nas.compress.profile`), which builds on the same graph, because the costs are
wanted without profiling anything (the compression pipeline counts MACs with it).

Static costs (:func:`static_costs`) come from the original graph with ``onnx.shape_inference`` at batch 1:
MACs of convolutions and matrix products (the convention of ``search_spaces.profile.count_macs``), parameters
(initializer elements a layer's nodes use), and a memory-traffic estimate (the layer's input and output
activations plus its weights, at their element sizes).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, ModelError
from nas.hardware.runtime import check_input_shape

_CONV_OPS = {"Conv": 1, "FusedConv": 1, "ConvInteger": 1, "QLinearConv": 3}  # op -> position of the weight input
_MATMUL_OPS = {"MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul"}
_POOL_OPS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool",
             "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2", "QLinearGlobalAveragePool",
             "QLinearAveragePool", "MaxRoiPool"}
_ELEMENTWISE_OPS = {"Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean", "Pow", "Sqrt", "Exp", "Log", "Abs",
                    "Neg", "Reciprocal", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Clip", "Sigmoid",
                    "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu", "Softplus", "Softsign", "Mish", "Swish",
                    "BatchNormalization", "QuantizeLinear", "DequantizeLinear", "QLinearAdd", "QLinearMul",
                    "Cast", "Floor", "Ceil", "Round", "Sign", "Where", "Equal", "Less", "Greater", "Not", "And",
                    "Or", "Dropout", "Identity"}
_DATA_OPS = {"Reshape", "Flatten", "Transpose", "Concat", "Split", "Slice", "Gather", "Squeeze", "Unsqueeze",
             "Pad", "Resize", "Upsample", "Expand", "Tile", "DepthToSpace", "SpaceToDepth", "Shape", "QLinearConcat"}
# TensorProto element type -> bytes per element (float32 is 1 -> 4); types not listed count 4.
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2, 17: 1, 18: 1,
             19: 1, 20: 1, 21: 1, 22: 1}


def layer_of(node_name: str) -> str:
    """The layer (module scope) of an original exported node, as a dotted module path.

    The torch exporter names a node by its module scope and op: ``/features/features.3/conv/conv.0/Conv``.
    Each scope segment of a container's child repeats its parent's name (``features`` -> ``features.3``), so a
    segment that extends the previous one replaces it: the result is the module path ``features.3.conv.0``,
    the name ``model.get_submodule`` takes. A node without a scope (``/Flatten``, ``Identity_4``) keeps its own
    name, without the leading slash.
    """
    name = str(node_name)
    parts = [part for part in name.split("/") if part]
    if len(parts) < 2:
        return parts[0] if parts else name
    path: list[str] = []
    for segment in parts[:-1]:
        if path and segment.startswith(path[-1] + "."):
            path[-1] = segment
        else:
            path.append(segment)
    return ".".join(path)


# ---------------------------------------------------------------------------------------------- original graph
def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


@dataclass
class _Original:
    """The original model's graph with what attribution and static costs need, at batch 1."""

    nodes: list[Any]  # onnx NodeProto, graph order (topological)
    layers: list[str]  # per node; a constant node has its consumer's layer
    constant: list[bool]  # computes only from initializers/constants (onnxruntime folds it away)
    producer: dict[str, int]
    consumers: dict[str, list[int]]
    dims: dict[str, list[int | None]]  # tensor -> inferred dims
    itemsize: dict[str, int]
    initializers: dict[str, tuple[int, int]]  # name -> (elements, bytes)
    constants: set[str]  # tensors that are constant: initializers and constant nodes' outputs
    graph_inputs: set[str]
    graph_outputs: set[str]
    macs: list[int]

    @property
    def tensors(self) -> set[str]:
        names = set(self.producer) | set(self.consumers) | set(self.initializers) | self.graph_inputs
        return names | self.graph_outputs

    def known(self, tensor: str) -> list[int] | None:
        dims = self.dims.get(tensor)
        return list(dims) if dims is not None and all(isinstance(d, int) and d > 0 for d in dims) else None

    def size(self, tensor: str) -> int:
        dims = self.known(tensor)
        return 0 if dims is None else _prod(dims) * self.itemsize.get(tensor, 4)


def _node_layer(node: Any, index: int) -> str:
    # The dynamo exporter names nodes node_Conv_15 and keeps the module scopes in metadata instead.
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                break
            modules = [str(s) for s in scopes[:-1] if s] if isinstance(scopes, list) else []
            if modules:
                return modules[-1]
            break
    return layer_of(node.name) if node.name else f"{node.op_type}_{index}"


def _load_original(model: Path, input_shape: Sequence[int]) -> _Original:
    import onnx
    from onnx import shape_inference

    shape = check_input_shape(input_shape)
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"ONNX model file not found: {path}; give the path of an .onnx file")
    try:
        proto = onnx.load(str(path))
    except Exception as err:  # protobuf's DecodeError and friends: any unreadable file
        raise ModelError(f"{path} is not an ONNX model ({type(err).__name__}); give an .onnx file exported with "
                         f"nas.export.export_onnx or another framework") from None
    graph = proto.graph
    if not graph.node:
        raise ModelError(f"{path} is not an ONNX model (it has no graph nodes); give an .onnx file")
    inits = {t.name: t for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if inputs and len(inputs[0].type.tensor_type.shape.dim) == 4:
        # Fix the image input at batch 1 so that shape inference sizes every activation.
        for i, (dim, value) in enumerate(zip(inputs[0].type.tensor_type.shape.dim, (1, *shape))):
            if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != value:
                raise ConfigError(f"input_shape={','.join(map(str, shape))} does not fit {path}: its input "
                                  f"{inputs[0].name!r} has size {dim.dim_value} at dimension {i}")
            dim.dim_value = value
    try:
        inferred = shape_inference.infer_shapes(proto)
    except Exception:  # ops shape inference does not know (custom domains): sizes stay unknown, MACs 0
        inferred = proto
    dims: dict[str, list[int | None]] = {}
    itemsize: dict[str, int] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        itemsize[info.name] = _ITEMSIZE.get(tensor_type.elem_type, 4)
    initializers = {}
    for name, tensor in inits.items():
        dims[name] = list(tensor.dims)
        itemsize[name] = _ITEMSIZE.get(tensor.data_type, 4)
        initializers[name] = (_prod(tensor.dims), _prod(tensor.dims) * itemsize[name])

    nodes = list(graph.node)
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    constant = [False] * len(nodes)
    constants = set(initializers)
    for i, node in enumerate(nodes):
        for t in node.output:
            if t:
                producer[t] = i
        ins = [t for t in node.input if t]
        for t in ins:
            consumers.setdefault(t, []).append(i)
        static_shape = node.op_type in ("Shape", "Size") and ins and all(
            isinstance(d, int) and d > 0 for d in (dims.get(ins[0]) or [None]))
        if node.op_type == "Constant" or (ins and all(t in constants for t in ins)) or static_shape:
            constant[i] = True
            constants.update(t for t in node.output if t)
    layers = [_node_layer(node, i) for i, node in enumerate(nodes)]
    for i in reversed(range(len(nodes))):  # consumers come later in graph order: assign them first
        if constant[i]:
            users = [c for t in nodes[i].output for c in consumers.get(t, [])]
            if users:
                layers[i] = layers[min(users)]
    original = _Original(nodes=nodes, layers=layers, constant=constant, producer=producer, consumers=consumers,
                         dims=dims, itemsize=itemsize, initializers=initializers, constants=constants,
                         graph_inputs={i.name for i in inputs}, graph_outputs={o.name for o in graph.output},
                         macs=[])
    original.macs = [0 if constant[i] else _macs(node, original) for i, node in enumerate(nodes)]
    return original


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _macs(node: Any, g: _Original) -> int:
    """Multiply-accumulates of one node at batch 1: convolutions and matrix products (0 for the rest)."""
    op = node.op_type
    if op in _CONV_OPS and len(node.input) > _CONV_OPS[op]:
        out, weight = g.known(node.output[0]), g.known(node.input[_CONV_OPS[op]])
        if out and weight and len(weight) >= 3:
            return _prod(out) * _prod(weight[1:])  # each output: a dot product over C/groups x kernel
    elif op == "ConvTranspose" and len(node.input) > 1:
        inp, weight = g.known(node.input[0]), g.known(node.input[1])
        if inp and weight and len(weight) >= 3:
            return _prod(inp) * _prod(weight[1:])  # each input element scatters into M/groups x kernel outputs
    elif op in ("Gemm", "FusedGemm"):
        out, a = g.known(node.output[0]), g.known(node.input[0])
        if out and a and len(a) == 2:
            return _prod(out) * a[0 if _attr(node, "transA", 0) else 1]
    elif op in _MATMUL_OPS:
        out, a = g.known(node.output[0]), g.known(node.input[0])
        if out and a:
            return _prod(out) * a[-1]
    return 0


def _conv_kind(node: Any, g: _Original) -> str:
    weight = g.known(node.input[_CONV_OPS.get(node.op_type, 1)]) or []
    groups = int(_attr(node, "group", 1))
    if groups > 1 and len(weight) >= 2 and weight[1] == 1:
        return "depthwise"  # one input channel per group
    if groups == 1 and len(weight) >= 3 and all(k == 1 for k in weight[2:]):
        return "pointwise"
    return "conv"


def _kind(indices: Sequence[int], g: _Original) -> str:
    """``conv``, ``depthwise``, ``pointwise``, ``linear`` (by the node with most MACs), else ``pool``,
    ``elementwise``, ``data`` (data movement: reshape, concat, pad ...) or ``other``."""
    if not indices:
        return "other"
    heavy = max(indices, key=lambda i: g.macs[i])
    if g.macs[heavy] > 0:
        op = g.nodes[heavy].op_type
        if op in _CONV_OPS:
            return _conv_kind(g.nodes[heavy], g)
        return "conv" if op == "ConvTranspose" else "linear"
    ops = {g.nodes[i].op_type for i in indices}
    for kind, members in (("pool", _POOL_OPS), ("elementwise", _ELEMENTWISE_OPS), ("data", _DATA_OPS)):
        if ops & members:
            return kind
    return "other"


def _layer_nodes(g: _Original) -> dict[str, list[int]]:
    """Non-constant node indices per layer, layers in network order (first node)."""
    out: dict[str, list[int]] = {}
    for i, layer in enumerate(g.layers):
        if not g.constant[i]:
            out.setdefault(layer, []).append(i)
    return out


def _weights(index: int, g: _Original) -> set[str]:
    """Initializers a node uses, directly or through constant nodes (an Identity of a shared bias)."""
    found: set[str] = set()
    stack = [t for t in g.nodes[index].input if t in g.constants]
    seen: set[str] = set()
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in g.initializers:
            found.add(t)
        elif t in g.producer:
            stack.extend(x for x in g.nodes[g.producer[t]].input if x)
    return found


def _costs(g: _Original) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for layer, indices in _layer_nodes(g).items():
        members = set(indices)
        produced = {t for i in indices for t in g.nodes[i].output if t}
        weights = set().union(*(_weights(i, g) for i in indices))
        inputs = {t for i in indices for t in g.nodes[i].input
                  if t and t not in g.constants and t not in produced}
        outputs = {t for t in produced if t in g.graph_outputs
                   or any(c not in members for c in g.consumers.get(t, []))}
        out[layer] = {
            "macs": int(sum(g.macs[i] for i in indices)),
            "params": int(sum(g.initializers[w][0] for w in weights)),
            "bytes": int(sum(g.size(t) for t in inputs | outputs) + sum(g.initializers[w][1] for w in weights)),
            "ops": [g.nodes[i].op_type for i in indices],
            "kind": _kind(indices, g),
            "nodes": [g.nodes[i].name for i in indices],
        }
    return out


def static_costs(model: Path, input_shape: Sequence[int]) -> dict[str, dict[str, Any]]:
    """Per layer of the original ``model`` at batch 1 (network order): ``macs``, ``params`` (initializer elements
    its nodes use; one shared by several layers, such as a bias the exporter de-duplicated, counts in each),
    ``bytes`` (memory-traffic estimate: input and output activations plus weights), ``ops``, ``kind`` and ``nodes``.

    Nodes that compute only from constants (an Identity of an initializer, a Constant, a Shape of a fixed-size
    tensor) belong to the layer that consumes them; onnxruntime folds them away before running.
    """
    return _costs(_load_original(Path(model), input_shape))
