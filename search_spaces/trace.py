"""The kernels a network executes, derived from the built network itself, so a new space needs no kernel list.

:func:`trace_kernels` traces ``model`` symbolically with :mod:`torch.fx` (keeping
:class:`~search_spaces.blocks.layers.SqueezeExcite` and :class:`~search_spaces.blocks.layers.ChannelShuffle`
whole, as a runtime runs them) in eval mode, propagates the shapes of a zeros input through the graph
(without the arithmetic of convolutions and linear layers: :class:`_KernelInterpreter`), and turns each
graph node into the kernels of :mod:`search_spaces.kernels` (their constructors, so conv / pwconv / dwconv
typing and parameter counting keep one home):

============================================================  ==============================================
op in the graph                                               kernel
============================================================  ==============================================
``nn.Conv2d`` (any groups, bias or not)                       ``conv_kernel``: conv / pwconv / dwconv
``nn.Conv2d`` 1 x 1, one group, on a globally pooled map      ``linear`` (as OFA's feature mix)
``nn.BatchNorm2d``                                            none: fused into the kernel whose output it
                                                              reads (its scale and shift join that
                                                              kernel's parameters)
activation modules (ReLU, ReLU6, Hardswish, Hardsigmoid,      none: fused into the kernel whose output they
SiLU, Sigmoid), ``nn.Identity``, ``nn.Dropout``               read
``SqueezeExcite``                                             one ``se``
``ChannelShuffle``                                            ``shuffle``
``nn.AdaptiveAvgPool2d(1)``, ``nn.AdaptiveMaxPool2d(1)``,     ``gpool``
``mean`` over H and W
``nn.MaxPool2d``, ``nn.AvgPool2d``                            ``pool``
``nn.Linear`` (on ``(N, C)``)                                 ``linear``
``x + y`` / ``torch.add`` of two same-shape tensors           ``add``
``torch.cat`` along channels                                  ``concat``
``chunk`` / ``split`` along channels                          one ``slice`` for the whole split
``x[:, a:b]`` that drops channels                             ``slice`` (a slice keeping every channel:
                                                              none)
reshape / view / flatten / ``nn.Flatten`` / ``contiguous``,   none
taking an item of a tuple, ``.shape`` / ``.size()``
============================================================  ==============================================

Anything else (a module type, function or method without a rule, a convolution with dilation or a
non-square kernel, a broadcasting add, a non-square feature map) raises :class:`~nas.errors.ConfigError`
naming the op and saying that this file needs a rule for it: a space with an unmodelled op fails loudly
in its tests instead of silently missing a kernel's cost. MACs follow the convention of
:func:`search_spaces.profile.count_macs`, so the traced MAC total equals it for every supported network.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import fx, nn

from nas.errors import ConfigError
from search_spaces.blocks.layers import ChannelShuffle, SqueezeExcite
from search_spaces.kernels import (
    Kernel,
    concat_kernel,
    conv_kernel,
    elementwise_kernel,
    gpool_kernel,
    linear_kernel,
    pool_kernel,
    se_kernel,
    slice_kernel,
)

#: Modules a runtime runs as one kernel: traced as leaves, not through their forward().
LEAF_MODULES = (SqueezeExcite, ChannelShuffle)
#: Modules fused into the kernel whose output they read (no kernel, no parameters).
FUSED_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.Identity, nn.Dropout,
                 nn.Flatten)
# Functions and methods that only relabel memory (no kernel): shape views and Python-level attribute reads.
_VIEW_FUNCTIONS = (torch.flatten, torch.reshape, getattr)
_VIEW_METHODS = ("view", "reshape", "flatten", "contiguous", "size", "dim")
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_ADD_METHODS = ("add", "add_")
_CAT_FUNCTIONS = (torch.cat, torch.concat)
_SPLIT_FUNCTIONS = (torch.chunk, torch.split, torch.tensor_split)
_SPLIT_METHODS = ("chunk", "split", "tensor_split")
_FUNCTIONS = frozenset((*_VIEW_FUNCTIONS, *_ADD_FUNCTIONS, *_CAT_FUNCTIONS, *_SPLIT_FUNCTIONS, operator.getitem,
                        torch.mean))
_METHODS = frozenset((*_VIEW_METHODS, *_ADD_METHODS, *_SPLIT_METHODS, "mean"))


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, LEAF_MODULES) or super().is_leaf_module(m, module_qualified_name)


def trace_kernels(model: nn.Module, input_shape: tuple[int, int, int]) -> list[Kernel]:
    """The kernels ``model`` executes on one ``input_shape`` = ``(C, H, W)`` input, in graph order (rules: the
    module docstring); :class:`ConfigError` naming the op for anything without a rule."""
    tracer = _Tracer()
    # A root that is itself a leaf (a bare nn.Conv2d) would be traced into functional calls: wrap it.
    root = nn.Sequential(model) if tracer.is_leaf_module(model, "") else model
    was_training = root.training
    root.eval()  # trace the inference graph (a forward() may branch on self.training)
    try:
        graph = tracer.trace(root)
    except Exception as exc:  # fx raises several types (TraceError, TypeError, ...) for untraceable code
        raise ConfigError(
            f"trace_kernels: torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: {exc}); its "
            f"forward() must not branch on tensor values (search_spaces/trace.py), or give the space a "
            f"kernel_list(arch) method") from exc
    finally:
        root.train(was_training)
    with torch.no_grad():
        return _KernelInterpreter(root).run(graph, torch.zeros(1, *input_shape))


class _KernelInterpreter:
    """Runs a traced graph node by node, keeping each value, and lists the kernels the rules give.

    Only shapes matter, so the arithmetic is skipped where a rule knows the output's shape: a convolution or
    a linear layer yields an uninitialised tensor of its output shape, a BatchNorm, activation, SE or shuffle
    its input; memory ops (pools, concat, split, slices, views) run on those tensors. A network is never
    executed (a 224 px network costs about what a 28 px one does, and no worker thread competes for the
    cores), and a module without a rule is refused before it would run.
    """

    def __init__(self, root: nn.Module) -> None:
        self.root = root
        self.modules = dict(root.named_modules())
        self.kernels: list[Kernel] = []
        # node -> index in self.kernels of the kernel whose output the node's value is (None: the input or a
        # constant); fused ops and views pass their input's owner on, which is how BN finds its convolution.
        self.owner: dict[fx.Node, int | None] = {}

    def run(self, graph: fx.Graph, x: torch.Tensor) -> list[Kernel]:
        values: dict[fx.Node, Any] = {}
        placeholders = 0
        for node in graph.nodes:
            if node.op == "output":
                break
            args = fx.node.map_arg(node.args, values.__getitem__)
            kwargs = fx.node.map_arg(node.kwargs, values.__getitem__)
            if node.op == "placeholder":
                placeholders += 1
                if placeholders > 1:
                    raise ConfigError(f"trace_kernels: the network's forward() takes more than one input "
                                      f"({node.name!r}); search_spaces/trace.py traces single-input networks")
                value = x
                self.owner[node] = None
            elif node.op == "get_attr":
                value = _fetch(self.root, node.target)
                self.owner[node] = None
            elif node.op == "call_module":
                value = self._module_rule(node, self.modules[node.target], args, kwargs)
            elif not _has_tensor((args, kwargs)):
                # Python arithmetic on sizes (x.shape[1] // 2): no kernel, whatever the function
                value = node.target(*args, **kwargs) if node.op == "call_function" else \
                    getattr(args[0], node.target)(*args[1:], **kwargs)
                if isinstance(value, torch.Tensor):
                    raise _no_rule(node, f"{_describe(node)} creating a tensor")
                self.owner[node] = None
            elif node.op == "call_function":
                if node.target not in _FUNCTIONS:  # refused before it runs
                    raise _no_rule(node, _describe(node))
                value = node.target(*args, **kwargs)
                self._function_rule(node, node.target, args, kwargs, value)
            else:  # call_method
                if node.target not in _METHODS:
                    raise _no_rule(node, _describe(node))
                value = getattr(args[0], node.target)(*args[1:], **kwargs)
                self._method_rule(node, node.target, args, kwargs, value)
            values[node] = value
        return self.kernels

    # ------------------------------------------------------------------------------------------ helpers
    def _emit(self, node: fx.Node, kernel: Kernel) -> None:
        self.kernels.append(kernel)
        self.owner[node] = len(self.kernels) - 1

    def _pass(self, node: fx.Node) -> None:
        """No kernel: the node's value is its (first) input's, relabelled or fused."""
        inputs = node.all_input_nodes
        self.owner[node] = self.owner.get(inputs[0]) if inputs else None

    def _input_owner(self, node: fx.Node) -> int | None:
        inputs = node.all_input_nodes
        return self.owner.get(inputs[0]) if inputs else None

    # ------------------------------------------------------------------------------------------ modules
    def _module_rule(self, node: fx.Node, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        """The kernel of a module call and its output (of the right shape; see the class docstring)."""
        what = f"module {node.target!r} ({type(module).__name__})"
        x = args[0] if args else None
        if isinstance(module, nn.Flatten):
            self._pass(node)
            return module(x)
        if isinstance(module, FUSED_MODULES):
            self._pass(node)
            return x
        if isinstance(module, nn.Conv2d):
            y = _conv_output(node, module, x, what)
            self._conv(node, module, _map(node, x, what), _map(node, y, what), what)
            return y
        if isinstance(module, nn.BatchNorm2d):
            source = self._input_owner(node)
            if source is None:
                raise _no_rule(node, f"{what} that reads no kernel's output (the network input)")
            _map(node, x, what)
            bn_params = sum(p.numel() for p in module.parameters())
            self.kernels[source] = replace(self.kernels[source], params=self.kernels[source].params + bn_params)
            self.owner[node] = source
            return x
        if isinstance(module, SqueezeExcite):
            c, side = _map(node, x, what)
            self._emit(node, se_kernel(c, module.reduce.out_channels, side))
            return x
        if isinstance(module, ChannelShuffle):
            c, side = _map(node, x, what)
            self._emit(node, elementwise_kernel("shuffle", c, side))
            return x
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            c, side = _map(node, x, what)
            y = module(x)
            if _map(node, y, what)[1] != 1:
                raise _no_rule(node, f"{what} to an output size other than 1")
            self._emit(node, gpool_kernel(c, side))
            return y
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            k, stride = _square(module.kernel_size), _square(module.stride)
            if k is None or stride is None or _square(getattr(module, "dilation", 1)) != 1:
                raise _no_rule(node, f"{what} with a non-square window or stride, or dilation")
            c, side = _map(node, x, what)
            y = module(x)
            self._emit(node, pool_kernel(c, side, k, stride, side_out=_map(node, y, what)[1]))
            return y
        if isinstance(module, nn.Linear):
            if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != module.in_features:
                raise _no_rule(node, f"{what} on an input that is not (batch, {module.in_features})")
            self._emit(node, linear_kernel(module.in_features, module.out_features, bias=module.bias is not None))
            return torch.empty(x.shape[0], module.out_features)
        raise _no_rule(node, what)

    def _conv(self, node: fx.Node, conv: nn.Conv2d, x: tuple[int, int], y: tuple[int, int], what: str) -> None:
        k, stride = _square(conv.kernel_size), _square(conv.stride)
        if k is None or stride is None or _square(conv.dilation) != 1:
            raise _no_rule(node, f"{what} with a non-square kernel or stride, or dilation")
        (c_in, side_in), (c_out, side_out) = x, y
        bias = conv.bias is not None
        source = self._input_owner(node)
        if k == 1 and conv.groups == 1 and side_in == 1 and source is not None and \
                self.kernels[source].kind == "gpool":
            # A 1x1 conv on a globally pooled map is a matrix-vector product: a fully connected layer.
            self._emit(node, linear_kernel(c_in, c_out, bias=bias))
        else:
            self._emit(node, conv_kernel(c_in, c_out, k, stride, side_in, groups=conv.groups, bn=False, bias=bias,
                                         side_out=side_out))

    # ------------------------------------------------------------------------------------------ functions
    def _function_rule(self, node: fx.Node, fn: Callable, args: tuple, kwargs: dict, y: Any) -> None:
        what = _describe(node)
        if fn in _VIEW_FUNCTIONS:
            self._pass(node)
        elif fn in _ADD_FUNCTIONS:
            self._add(node, args, y, what)
        elif fn in _CAT_FUNCTIONS:
            self._cat(node, args, kwargs, y, what)
        elif fn in _SPLIT_FUNCTIONS:
            self._split(node, args, kwargs, y, what)
        elif fn is operator.getitem:
            if isinstance(args[0], torch.Tensor):
                self._index(node, args[0], args[1], y)
            else:  # an item of a tuple (a split's part) or of a shape: that value, no kernel
                self._pass(node)
        elif fn is torch.mean:
            self._mean(node, args, kwargs, what)
        else:
            raise _no_rule(node, what)

    def _method_rule(self, node: fx.Node, method: str, args: tuple, kwargs: dict, y: Any) -> None:
        what = _describe(node)
        if method in _VIEW_METHODS:
            self._pass(node)
        elif method in _ADD_METHODS:
            self._add(node, args, y, what)
        elif method in _SPLIT_METHODS:
            self._split(node, args, kwargs, y, what)
        elif method == "mean":
            self._mean(node, args, kwargs, what)
        else:
            raise _no_rule(node, what)

    def _add(self, node: fx.Node, args: tuple, y: Any, what: str) -> None:
        a, b = args[0], args[1] if len(args) > 1 else None
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape):
            raise _no_rule(node, f"{what} of operands that are not two tensors of one shape (a constant or a "
                                 f"broadcast)")
        c, side = _map(node, y, what, allow_flat=True)
        self._emit(node, elementwise_kernel("add", c, side, 2))

    def _cat(self, node: fx.Node, args: tuple, kwargs: dict, y: Any, what: str) -> None:
        tensors = list(args[0])
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if _channel_dim(y, dim) is None:
            raise _no_rule(node, f"{what} along dimension {dim} (only channels are modelled)")
        side = _map(node, y, what, allow_flat=True)[1]
        for t in tensors:
            _map(node, t, what, allow_flat=True)
        self._emit(node, concat_kernel([int(t.shape[1]) for t in tensors], side))

    def _split(self, node: fx.Node, args: tuple, kwargs: dict, parts: Any, what: str) -> None:
        x = args[0]
        dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
        if _channel_dim(x, dim) is None:
            raise _no_rule(node, f"{what} along dimension {dim} (only channels are modelled)")
        c, side = _map(node, x, what, allow_flat=True)
        if len(parts) == 1:  # one part: the input itself
            self._pass(node)
        else:  # one kernel for the whole split: every channel is copied once into its part
            self._emit(node, slice_kernel(c, sum(int(p.shape[1]) for p in parts), side))

    def _index(self, node: fx.Node, x: torch.Tensor, index: Any, y: torch.Tensor) -> None:
        what = "indexing x[...]"
        items = index if isinstance(index, tuple) else (index,)
        if not all(item is Ellipsis or (isinstance(item, slice) and item.step in (None, 1)) for item in items):
            raise _no_rule(node, f"{what} with {index!r} (only plain slices are modelled)")
        if y.shape == x.shape:  # a slice that keeps everything is the tensor itself
            self._pass(node)
            return
        changed = [d for d in range(x.dim()) if x.shape[d] != y.shape[d]]
        if x.dim() not in (2, 4) or changed != [1]:
            raise _no_rule(node, f"{what} with {index!r} that cuts a dimension other than channels")
        c, side = _map(node, x, what, allow_flat=True)
        self._emit(node, slice_kernel(c, int(y.shape[1]), side))

    def _mean(self, node: fx.Node, args: tuple, kwargs: dict, what: str) -> None:
        x = args[0]
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or {d % 4 for d in dims} != {2, 3}:
            raise _no_rule(node, f"{what} over dimensions {dims} (only the mean over H and W is modelled)")
        c, side = _map(node, x, what)
        self._emit(node, gpool_kernel(c, side))


# ---------------------------------------------------------------------------------------------- utilities
def _conv_output(node: fx.Node, conv: nn.Conv2d, x: Any, what: str) -> torch.Tensor:
    """An uninitialised tensor of the shape ``conv(x)`` has (torch's output-size formula; no arithmetic)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != conv.in_channels:
        raise _no_rule(node, f"{what} on an input that is not (batch, {conv.in_channels}, H, W)")
    sizes = []
    for d, size in enumerate(x.shape[2:]):
        if conv.padding == "same":
            sizes.append(int(size))  # torch allows 'same' with stride 1 only
            continue
        pad = 0 if conv.padding == "valid" else conv.padding[d]
        span = conv.dilation[d] * (conv.kernel_size[d] - 1) + 1
        sizes.append((int(size) + 2 * pad - span) // conv.stride[d] + 1)
    return torch.empty(x.shape[0], conv.out_channels, *sizes)


def _fetch(root: nn.Module, target: str) -> Any:
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _no_rule(node: fx.Node, what: str) -> ConfigError:
    return ConfigError(f"kernel decomposition: no rule for {what} (graph node {node.name!r}); "
                       f"search_spaces/trace.py needs a rule for it (or the space a kernel_list(arch) method)")


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    return False


def _describe(node: fx.Node) -> str:
    return f"function {_name(node.target)}" if node.op == "call_function" else f"method Tensor.{node.target}"


def _name(fn: Callable) -> str:
    """``torch.sigmoid``, ``torch.nn.functional.interpolate``, ``operator.mul``: the name a user would write."""
    import torch.nn.functional as F

    name = getattr(fn, "__name__", None) or repr(fn)
    for prefix, namespace in (("torch", torch), ("torch.nn.functional", F), ("operator", operator)):
        if getattr(namespace, name, None) is fn:
            return f"{prefix}.{name}"
    module = getattr(fn, "__module__", None)
    return f"{module}.{getattr(fn, '__qualname__', name)}" if module else name


def _square(value: int | Sequence[int]) -> int | None:
    """The one size of a square window / stride, None if it is not square."""
    if isinstance(value, int):
        return value
    values = tuple(value)
    return int(values[0]) if values and all(v == values[0] for v in values) else None


def _channel_dim(t: Any, dim: int) -> int | None:
    """1 if ``dim`` is the channel dimension of the (batch, C[, H, W]) tensor ``t``, else None."""
    if not isinstance(t, torch.Tensor) or t.dim() not in (2, 4):
        return None
    return 1 if dim % t.dim() == 1 else None


def _map(node: fx.Node, t: Any, what: str, *, allow_flat: bool = False) -> tuple[int, int]:
    """``(channels, side)`` of a (1, C, S, S) feature map (or, with ``allow_flat``, a (1, C) vector: side 1)."""
    if isinstance(t, torch.Tensor) and t.dim() == 2 and allow_flat:
        return int(t.shape[1]), 1
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise _no_rule(node, f"{what} on {shape} (feature maps are (batch, C, H, W))")
    if t.shape[2] != t.shape[3]:
        raise _no_rule(node, f"{what} on a non-square {t.shape[2]}x{t.shape[3]} map (kernels record one side)")
    return int(t.shape[1]), int(t.shape[2])
