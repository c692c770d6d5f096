"""The ``channels`` space: the kept width of every prunable channel group of one base network.

The base (``space.base`` / ``space.base_run``, :mod:`nas.channels.base`) is analysed by Torch-Pruning's
dependency graph (:mod:`nas.channels.groups`): channels tied by residual additions, depthwise convolutions,
SE blocks and concatenations form one group. An arch is ``{"g00": 16, "g03": 48, ...}``: the channels each
searchable group keeps, on a grid (``ratios`` of the group's width, rounded to multiples of ``divisor`` as
``make_divisible`` does; a group with one possible width is not searchable and keeps its channels).

``build`` removes channels physically from (a copy of) the base with its current weights, ranked by the
L1 norm of the group's weights (``importance``): the network is smaller, exports to ONNX and matches what the
``pruned`` evaluator scores. The supernet (``evaluator=slimmable``) is the base with the *leading* channels of
each group kept (:mod:`nas.channels.slimmable`).

Latency models read :meth:`ChannelSpace.kernel_list`, derived, not hand-written: the base's traced kernels,
each linked to the groups that set its input, output and SE widths by pruning one group at a time once
(``tests/test_channel_space.py`` checks the list against tracing the built network).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
from torch import nn

from nas.arch import Arch, Value, arch_id
from nas.channels.base import BaseSpec, resolve_base
from nas.channels.groups import IMPORTANCES, ChannelGroup, analyse, prune
from nas.errors import ConfigError, InvalidArchError
from nas.registry import register_space
from search_spaces.base import Supernet, WeightSharingSpace
from search_spaces.kernels import (
    Kernel,
    conv_kernel,
    elementwise_kernel,
    gpool_kernel,
    kernel_row,
    linear_kernel,
    pool_kernel,
    se_kernel,
)
from search_spaces.options import number_list, one_of, positive_int

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def kept_width(channels: int, ratio: float, divisor: int) -> int:
    """Channels kept of ``channels`` at ``ratio``: the nearest multiple of ``divisor`` (at least one divisor, never
    below 90 % of the exact value, as ``make_divisible`` rounds), at most all of them."""
    exact = ratio * channels
    width = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if width < 0.9 * exact:
        width += divisor
    return min(width, channels)


@register_space("channels")
class ChannelSpace(WeightSharingSpace):
    """Kept channels per dependency group of a base network (AutoSlim / AMC-style channel search)."""

    name = "channels"

    def __init__(
        self,
        *,
        base: object = None,
        base_run: object = None,
        base_config: Mapping[str, Any] | None = None,
        resolution: int = 28,
        ratios: Iterable[float] = DEFAULT_RATIOS,
        divisor: int | str = "auto",
        importance: str = "l1",
        num_classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        self.ratios = tuple(sorted(number_list(self.name, "ratios", ratios, integer=False)))
        if not self.ratios or self.ratios[0] <= 0 or self.ratios[-1] != 1.0:
            raise ConfigError(f"space.ratios={list(self.ratios)}: keep ratios must lie in (0, 1] and end at 1.0")
        if divisor == "auto":
            # A search resolves "auto" with its target (Target.channel_multiple); alone, the space takes this
            # machine's onnxruntime block size.
            from nas.hardware.measure import onnxruntime_channel_block

            divisor = onnxruntime_channel_block()
        elif isinstance(divisor, str):
            raise ConfigError(f"space.divisor={divisor!r}: give a positive integer, or auto (the target's channel "
                              f"multiple)")
        self.divisor = positive_int(self.name, "divisor", divisor)
        self.importance = one_of(self.name, "importance", importance, IMPORTANCES)
        self.spec: BaseSpec = resolve_base(base=base, base_run=base_run, base_config=base_config,
                                           resolution=positive_int(self.name, "resolution", resolution),
                                           num_classes=positive_int(self.name, "num_classes", num_classes),
                                           in_channels=positive_int(self.name, "in_channels", in_channels))
        self.base_space = self.spec.build_space()
        try:
            self.base_arch = self.base_space.validate(self.spec.arch)
        except InvalidArchError as exc:
            raise ConfigError(f"space.base: {exc}") from None
        self._shape = tuple(int(v) for v in self.base_space.input_shape(self.base_arch))
        self.base_model: nn.Module = self.base_space.build(self.base_arch).eval()
        self.groups: tuple[ChannelGroup, ...] = tuple(analyse(self.base_model, self._shape,
                                                              what=f"space.base ({self.spec.source})"))
        self._options: dict[str, tuple[int, ...]] = {}
        for g in self.groups:
            widths = tuple(sorted({kept_width(g.channels, r, self.divisor) for r in self.ratios}))
            if len(widths) > 1:
                self._options[g.label] = widths
        if not self._options:
            raise ConfigError(f"space.base ({self.spec.source}) has no channel group wider than divisor="
                              f"{self.divisor}; nothing to search (lower space.divisor)")
        # Pruned members of different bases share labels and values: the store keys them by base and grid too.
        self._fingerprint = f"{self.spec.fingerprint()}-{self.divisor}-{'_'.join(f'{r:g}' for r in self.ratios)}"

    # ------------------------------------------------------------------ definition
    def choices(self) -> dict[str, tuple[Value, ...]]:
        return dict(self._options)

    def input_shape(self, arch: Mapping[str, Value]) -> tuple[int, int, int]:
        return self._shape  # type: ignore[return-value]

    def attach_weights(self, model: nn.Module) -> None:
        """Use ``model`` (the base network, trained) as the network that ``build`` prunes."""
        if set(model.state_dict()) != set(self.base_model.state_dict()):
            raise ConfigError("attach_weights: the model is not this space's base network")
        self.base_model = model.eval()

    def widths(self, arch: Mapping[str, Value]) -> dict[str, int]:
        """Channels kept by every group (searchable or not) under ``arch``."""
        return {g.label: int(arch.get(g.label, g.channels)) for g in self.groups}

    def build(self, arch: Mapping[str, Value], *, importance: str | None = None) -> nn.Module:
        arch = self.validate(arch)
        model, _kept = prune(self.base_model, self._shape, self.widths(arch), importance=importance or self.importance)
        return model.eval()

    def store_id(self, arch: Mapping[str, Value]) -> str:
        """Measurement-store id: the arch *and* the base (two bases' archs can have the same labels and values)."""
        return arch_id({"space": self._fingerprint, **self.validate(arch)})

    def sample(self, rng: np.random.Generator) -> Arch:
        """A random member spread over the whole range of network sizes: one network-wide position on the width
        grid drawn uniformly, each group's width within about one grid step of it (Gaussian, sd 1 step).
        Independent uniform widths would put nearly every sample near 55 % of the channels (a mean of 24
        draws), so predictors fitted on samples would never see a small or a nearly full network."""
        q = float(rng.random())
        arch = {}
        for label, opts in self._options.items():
            i = int(round(q * (len(opts) - 1) + rng.normal(0.0, 1.0)))
            arch[label] = opts[min(max(i, 0), len(opts) - 1)]
        return arch

    # ------------------------------------------------------------------ helpers for strategies
    def uniform(self, ratio: float) -> Arch:
        """Every group at ``ratio`` of its width (the nearest option): a uniform width multiplier."""
        return {label: min(opts, key=lambda w: (abs(w - ratio * self._group(label).channels), w))
                for label, opts in self._options.items()}

    def keep_ratio(self, arch: Mapping[str, Value]) -> float:
        """Kept fraction of all searchable channels."""
        kept = sum(int(arch[label]) for label in self._options)
        return kept / sum(self._group(label).channels for label in self._options)

    def _group(self, label: str) -> ChannelGroup:
        return self.groups[int(label[1:])]

    def describe(self, arch: Mapping[str, Value]) -> str:
        arch = self.validate(arch)
        changed = [f"{k}={v}/{self._group(k).channels}" for k, v in arch.items() if v != self._group(k).channels]
        return f"{100 * self.keep_ratio(arch):.0f}% of channels kept" + (f" ({', '.join(changed)})" if changed else "")

    def describe_groups(self) -> list[str]:
        return [g.describe() + ("" if g.label in self._options else " [fixed]") for g in self.groups]

    # ------------------------------------------------------------------ weight sharing (evaluator=slimmable)
    def supernet(self) -> Supernet:
        from nas.channels.slimmable import SlimmableNet

        return SlimmableNet(self)

    def elastic_dims(self) -> tuple[str, ...]:
        return ("width",)

    def sample_elastic(self, rng: np.random.Generator, elastic: Sequence[str]) -> Arch:
        return self.sample(rng) if "width" in elastic else self.largest()

    # ------------------------------------------------------------------ latency features
    def kernel_list(self, arch: Mapping[str, Value]) -> list[Kernel]:
        """The kernels the built network executes (see the module docstring), without building it."""
        widths = self.widths(self.validate(arch))
        return [_resize(k, link, widths) for k, link in zip(*self.linked_kernels)]

    def cost_features(self, arch: Mapping[str, Value]) -> np.ndarray:
        return kernel_row(self.kernel_list(arch))

    @cached_property
    def linked_kernels(self) -> tuple[list[Kernel], list[dict[str, str]]]:
        """The base's traced kernels, and for each the groups (``in``, ``out``, SE ``mid``) that set its widths."""
        from search_spaces.trace import trace_kernels

        base = trace_kernels(self.base_model, self._shape)
        for k in base:
            if k.kind in ("concat", "slice"):
                raise ConfigError(f"the base network has a channel {k.kind}; channel search supports networks "
                                  f"without concatenations or channel slices")
        links: list[dict[str, str]] = [{} for _ in base]
        for label, opts in self._options.items():
            probe, _ = prune(self.base_model, self._shape, {label: opts[0]}, importance="leading")
            pruned = trace_kernels(probe, self._shape)
            if len(pruned) != len(base):
                raise ConfigError(f"pruning group {label} changed the network's kernels; cannot derive its costs")
            for link, k0, k1 in zip(links, base, pruned):
                if k1.c_in != k0.c_in:
                    link["in"] = label
                if k1.c_out != k0.c_out:
                    link["out"] = label
                if k0.kind == "se" and k1.flops != k0.flops and k1.c_in == k0.c_in:
                    link["mid"] = label
        return base, links


def _resize(k: Kernel, link: Mapping[str, str], widths: Mapping[str, int]) -> Kernel:
    """Kernel ``k`` of the base with the widths of the groups ``link`` names."""
    if not link:
        return k
    c_in = widths[link["in"]] if "in" in link else k.c_in
    c_out = widths[link["out"]] if "out" in link else k.c_out
    side_in = int(round(math.sqrt(k.in_elems / max(1, k.c_in))))
    if k.kind in ("conv", "pwconv", "dwconv"):
        groups = c_in if k.kind == "dwconv" else 1
        base_groups = k.c_in if k.kind == "dwconv" else 1
        weight0 = k.c_out * (k.c_in // base_groups) * k.kernel * k.kernel
        per_out = (k.params - weight0) // max(1, k.c_out)  # BN scale / shift and bias per output channel
        new = conv_kernel(c_in, c_out, k.kernel, k.stride, side_in, groups=groups, bn=False, side_out=k.hw_out)
        return Kernel(new.kind, new.flops, new.params + per_out * c_out, new.in_elems, new.out_elems, new.kernel,
                      new.stride, new.c_in, new.c_out, new.hw_out)
    if k.kind == "se":
        mid0 = k.flops // max(1, 2 * k.c_in)
        mid = mid0 if "mid" not in link else widths[link["mid"]]
        return se_kernel(c_in, mid, k.hw_out)
    if k.kind in ("add", "shuffle"):
        return elementwise_kernel(k.kind, c_out, k.hw_out, inputs=k.in_elems // max(1, k.out_elems))
    if k.kind == "pool":
        return pool_kernel(c_in, side_in, k.kernel, k.stride, side_out=k.hw_out)
    if k.kind == "gpool":
        return gpool_kernel(c_in, k.kernel)
    if k.kind == "linear":
        return linear_kernel(c_in, c_out, bias=k.params - k.c_in * k.c_out == k.c_out)
    raise ConfigError(f"no width rule for a {k.kind} kernel")
