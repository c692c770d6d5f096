"""Channel groups of a network and their physical removal, by Torch-Pruning's dependency graph (DepGraph).

A *group* is a set of channels that must be pruned together: the output channels of a convolution, its
BatchNorm, the depthwise convolution behind it and the input channels of the next layer; every layer whose
output is summed by a residual addition; an SE block's gate and the channels it scales; the inputs of a
concatenation. Torch-Pruning (Fang et al., CVPR 2023) finds these groups for arbitrary PyTorch networks by
tracing them, and removes channels physically (smaller weight tensors, not masks). We use it instead of
hand-written rules per block: NNI's hand-written equivalent is what its users filed crash reports about.

Where it fails: ShuffleNetV2's channel shuffle (a reshape / transpose that interleaves two halves) breaks its
index mapping (``ZeroDivisionError`` in ``update_reshape_index_mapping``), and the ghost module's channel
slice (``out[:, :c]``) makes it prune a layer to zero channels. :func:`analyse` turns such a failure into a
:class:`~nas.errors.ConfigError` that names the network, so a base it cannot analyse is refused before any work.

A network's groups come in network order (the first module of each group, in ``named_modules`` order), so a
group's label (``g00``, ``g01`` ...) means the same layer every time the same network is analysed.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nas.errors import ConfigError

#: Channel-importance criteria: ``l1`` (the L1 norm of the group's weights, Li et al. 2017; AMC's fast reward
#: uses it) keeps the largest; ``leading`` keeps the first channels (a slimmable network's shared channels).
IMPORTANCES = ("l1", "leading")


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable group: its label, full width and the layers whose channels it ties."""

    label: str
    channels: int
    members: tuple[str, ...]  # conv / linear / BatchNorm modules whose output channels are the group's
    consumers: tuple[str, ...]  # conv / linear modules that read the group's channels as input

    def describe(self) -> str:
        layers = sorted({name.rsplit(".", 1)[0] if name.endswith((".conv", ".bn")) else name for name in self.members})
        return f"{self.label} ({self.channels} ch): {', '.join(layers)}"


def group_label(index: int) -> str:
    """The label of the ``index``-th group in network order (``g00``, ``g01`` ...)."""
    return f"g{index:02d}"


def _tp():
    import torch_pruning as tp

    return tp


def _graph(model: nn.Module, input_shape: Sequence[int], what: str):
    tp = _tp()
    example = torch.zeros(1, *input_shape)
    try:
        with torch.enable_grad():  # the graph is traced through autograd, also when a caller is under no_grad
            return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    except Exception as exc:  # Torch-Pruning's failures are assorted (ZeroDivisionError, KeyError, ...)
        raise ConfigError(f"{what}: Torch-Pruning cannot analyse this network's channel dependencies "
                          f"({type(exc).__name__}: {exc}); channel search supports networks of the mobilenet, ofa "
                          f"and fbnet spaces (ShuffleNet's channel shuffle and the ghost module's channel slice "
                          f"are not supported)") from None


def _ordered_groups(model: nn.Module, graph, classifier: nn.Module | None) -> list:
    """Torch-Pruning's groups (each rooted at a conv or linear layer), in network order."""
    ignored = [classifier] if classifier is not None else []
    groups = list(graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.Linear]))
    order = {module: i for i, module in enumerate(model.modules())}

    def first(group) -> int:
        return min(order.get(item.dep.target.module, len(order)) for item in group)

    return sorted(groups, key=first)


def classifier_of(model: nn.Module) -> nn.Module | None:
    """The last linear layer (its outputs are the classes, so it is never pruned)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def analyse(model: nn.Module, input_shape: Sequence[int], *, what: str = "the base network") -> list[ChannelGroup]:
    """The prunable channel groups of ``model`` (an input of ``input_shape``: C, H, W), in network order."""
    graph = _graph(model, input_shape, what)
    names = {module: name for name, module in model.named_modules()}
    out: list[ChannelGroup] = []
    for group in _ordered_groups(model, graph, classifier_of(model)):
        members, consumers = [], []
        for item in group:
            module = item.dep.target.module
            name = names.get(module)
            if name is None:
                continue  # an element-wise op (activation, addition) inside the traced graph
            if "out_channels" in item.dep.handler.__name__ and isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                members.append(name)
            elif "in_channels" in item.dep.handler.__name__ and isinstance(module, (nn.Conv2d, nn.Linear)):
                consumers.append(name)
        out.append(ChannelGroup(group_label(len(out)), len(group[0].idxs), tuple(dict.fromkeys(members)),
                                tuple(dict.fromkeys(consumers))))
    return out


def _ranking(group, importance: str) -> list[int]:
    """A Torch-Pruning ``group``'s channel indices, most important first."""
    n = len(group[0].idxs)
    if importance == "leading":
        return list(range(n))
    scores = _tp().importance.GroupMagnitudeImportance(p=1)(group)
    if scores is None:  # no weights to judge by (cannot happen for conv roots); fall back to leading channels
        return list(range(n))
    # Highest L1 first; ties broken by index so the choice is deterministic.
    return sorted(range(n), key=lambda i: (-float(scores[i]), i))


def rankings(model: nn.Module, input_shape: Sequence[int], importance: str) -> dict[str, list[int]]:
    """Every group's channels, most important first by ``importance`` (from ``model``'s current weights):
    keeping the first ``w`` of a group's ranking is what :func:`prune` keeps at width ``w``."""
    if importance not in IMPORTANCES:
        raise ConfigError(f"importance={importance!r}; choose one of {list(IMPORTANCES)}")
    graph = _graph(model, input_shape, "the network")
    return {group_label(i): _ranking(group, importance)
            for i, group in enumerate(_ordered_groups(model, graph, classifier_of(model)))}


def prune(model: nn.Module, input_shape: Sequence[int], widths: Mapping[str, int], *, importance: str = "l1",
          inplace: bool = False) -> tuple[nn.Module, dict[str, list[int]]]:
    """``model`` with each group's channels cut to ``widths[label]`` (physically), and the kept indices per
    group (in the base's numbering). Groups not in ``widths`` keep every channel. A copy unless ``inplace``."""
    if importance not in IMPORTANCES:
        raise ConfigError(f"importance={importance!r}; choose one of {list(IMPORTANCES)}")
    model = model if inplace else copy.deepcopy(model)
    was_training = model.training
    model.eval()
    graph = _graph(model, input_shape, "the network")
    tp_groups = _ordered_groups(model, graph, classifier_of(model))
    # Choose every group's channels first, then remove them: scores are read from the unpruned weights.
    plan = []
    kept: dict[str, list[int]] = {}
    for i, group in enumerate(tp_groups):
        label = group_label(i)
        n = len(group[0].idxs)
        keep = int(widths.get(label, n))
        if not 1 <= keep <= n:
            raise ConfigError(f"{label}: cannot keep {keep} of {n} channels")
        kept[label] = sorted(_ranking(group, importance)[:keep])
        if keep < n:
            drop = sorted(set(range(n)) - set(kept[label]))
            plan.append((group[0].dep.target.module, group[0].dep.handler, drop))
    for module, handler, drop in plan:
        graph.get_pruning_group(module, handler, drop).prune()
    model.train(was_training)
    return model, kept


class ChannelMasks:
    """Zero the channels a width configuration removes, on the unpruned network (forward hooks on the modules
    whose outputs carry a group's channels). In eval mode the masked network computes what the physically
    pruned one does (the test of the ``pruned`` evaluator checks it); a slimmable network trains this way.

    The hooks read only the mask tensors held here (no global state); :meth:`remove` takes them off."""

    def __init__(self, model: nn.Module, groups: Sequence[ChannelGroup]) -> None:
        self.model = model
        self.groups = tuple(groups)
        self._masks: dict[str, torch.Tensor] = {g.label: torch.ones(g.channels) for g in groups}
        self._handles = []
        self._attach()

    def _attach(self) -> None:
        modules = dict(self.model.named_modules())
        for g in self.groups:
            for name in g.members:
                self._handles.append(modules[name].register_forward_hook(self._hook(g.label)))

    def _hook(self, label: str):
        def apply(_module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
            mask = self._masks[label]
            shape = (1, -1) + (1,) * (output.dim() - 2)
            return output * mask.view(shape)

        return apply

    def set(self, kept: Mapping[str, Sequence[int]]) -> None:
        """Keep exactly the channels ``kept[label]`` of each listed group (the others: all channels)."""
        for label, mask in self._masks.items():
            # New tensors, never in-place edits: a sandwich step runs several widths in one autograd graph.
            fresh = torch.ones_like(mask)
            if label in kept:
                fresh = torch.zeros_like(mask)
                fresh[list(kept[label])] = 1.0
            self._masks[label] = fresh

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextlib.contextmanager
    def detached(self) -> Iterator[nn.Module]:
        """The model without the mask hooks for the duration (a deep copy of it, e.g. :func:`prune`'s, would carry
        hooks that mask with these tensors), then hooked again with the same masks."""
        self.remove()
        try:
            yield self.model
        finally:
            self._attach()
