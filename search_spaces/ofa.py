"""The once-for-all (OFA) MobileNetV3 space (Cai et al., ICLR 2020), structurally identical to OFA's
``OFAMobileNetV3``: stem, a fixed first block, five elastic stages (kernel, expand ratio, depth) and the
MobileNetV3 head, plus an elastic input resolution.

Flat labels (smallest value first in every choice): ``resolution``, ``stage{i}.depth`` (i = 1..5),
``stage{i}.block{j}.kernel`` and ``stage{i}.block{j}.expand`` (j = 0..max depth - 1). Blocks beyond a stage's
depth are inactive; :meth:`OFASpace.canonical` resets them to the smallest values.

The public form is OFA's own ``{"ks": [20 kernels], "e": [20 ratios], "d": [5 depths], "r": resolution}``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from itertools import compress, count
from operator import itemgetter

import numpy as np
import torch
from torch import nn

from nas.arch import Arch, Value
from nas.errors import ConfigError, InvalidArchError
from nas.registry import register_space
from search_spaces.base import Supernet, WeightSharingSpace
from search_spaces.blocks import (
    BlockSpec,
    ConvBNAct,
    DynamicMBConv,
    Head,
    MBConv,
    MobileNetV3,
    NetSpec,
    init_weights,
    make_divisible,
)
from search_spaces.options import dropout_rate, number_list, positive_int, positive_number

# OFAMobileNetV3's fixed plan: stem 16, first block 16, five stages, final expand 960, feature mix 1280.
_STEM, _FIRST_BLOCK, _FINAL_EXPAND, _FEATURE_MIX = 16, 16, 960, 1280
_STAGE_WIDTHS = (24, 40, 80, 112, 160)
_STAGE_STRIDES = (2, 2, 2, 1, 2)
_STAGE_ACTS = ("relu", "relu", "h_swish", "h_swish", "h_swish")
_STAGE_SE = (False, True, False, True, True)
NUM_STAGES = len(_STAGE_WIDTHS)
PUBLIC_KEYS = ("ks", "e", "d", "r")


@register_space("ofa")
class OFASpace(WeightSharingSpace):
    """OFA MobileNetV3 with elastic resolution, kernel size, depth and expand ratio."""

    name = "ofa"

    def __init__(
        self,
        *,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        kernel_sizes: Iterable[int] = (3, 5, 7),
        expand_ratios: Iterable[float] = (3, 4, 6),
        depths: Iterable[int] = (2, 3, 4),
        resolutions: Iterable[int] = tuple(range(128, 225, 4)),
        dropout: float = 0.1,
    ) -> None:
        self.width_mult = positive_number("ofa", "width_mult", width_mult)
        self.num_classes = positive_int("ofa", "num_classes", num_classes)
        self.in_channels = positive_int("ofa", "in_channels", in_channels)
        self.kernel_sizes: tuple[int, ...] = number_list("ofa", "kernel_sizes", kernel_sizes, integer=True)
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ConfigError(f"ofa: kernel_sizes must be odd (centred 'same' padding), got {list(self.kernel_sizes)}")
        self.expand_ratios: tuple[float, ...] = number_list("ofa", "expand_ratios", expand_ratios, integer=False)
        self.depths: tuple[int, ...] = number_list("ofa", "depths", depths, integer=True)
        self.resolutions: tuple[int, ...] = number_list("ofa", "resolutions", resolutions, integer=True)
        self.dropout = dropout_rate("ofa", dropout)
        self.max_depth = self.depths[-1]

        w = self.width_mult
        self.stem_channels = make_divisible(_STEM * w)
        self.first_block_channels = make_divisible(_FIRST_BLOCK * w)
        self.stage_widths = tuple(make_divisible(c * w) for c in _STAGE_WIDTHS)
        self.final_expand_channels = make_divisible(_FINAL_EXPAND * w)
        self.feature_mix_channels = make_divisible(_FEATURE_MIX * w)
        self._choices = self._make_choices()
        # value -> stored option per label (3.0 -> 3), and per-block cost features, memoised for speed:
        # canonical() and cost_features() run for every candidate a predictor-scored search looks at.
        self._stored = {label: {o: o for o in options} for label, options in self._choices.items()}
        self._block_costs: dict[tuple, np.ndarray] = {}
        # Label strings per stage (depth label, then (kernel label, expand label) per slot), built once:
        # formatting them per call was a visible share of a search's time.
        self._stage_labels = tuple(
            (f"stage{i}.depth", tuple((f"stage{i}.block{j}.kernel", f"stage{i}.block{j}.expand")
                                      for j in range(self.max_depth)))
            for i in range(1, NUM_STAGES + 1))
        self._init_fast_paths()

    def _init_fast_paths(self) -> None:
        """Tables for the per-candidate work of a predictor-scored search (canonical, mutate, encode and cost
        features of tens of thousands of archs): built once so each call is lookups and a numpy gather."""
        self._labels = tuple(self._choices)
        self._values_of = itemgetter(*self._labels)  # the values in label order, at C speed
        # With every option an int, an int value already is its stored option (no 3.0 -> 3 mapping to do).
        self._int_options = all(type(o) is int for options in self._choices.values() for o in options)
        self._mutable_labels = tuple(label for label, options in self._choices.items() if len(options) > 1)
        # label -> value -> the other options, in option order (what base mutate builds per call).
        self._others = {label: {v: tuple(o for o in options if o != v) for v in options}
                        for label, options in self._choices.items()}
        # Per stage: depth label, and depth -> the inactive slots' labels reset to the smallest values.
        smallest = (self.kernel_sizes[0], self.expand_ratios[0])
        self._resets = tuple(
            (depth_label, slots, {d: {label: value for pair in slots[d:] for label, value in zip(pair, smallest)}
                                  for d in range(self.max_depth + 1)})
            for depth_label, slots in self._stage_labels)
        # All stages' resets per tuple of (int) depths, filled as met: 3^5 tuples for OFA's depths.
        self._depths_of = itemgetter(*(depth_label for depth_label, _ in self._stage_labels))
        self._int_depth_types = (int,) * NUM_STAGES
        self._reset_by_depths: dict[tuple, dict[str, Value]] = {}
        # Column of each label in a value matrix (rows: archs, columns: labels in choice order).
        column = {label: c for c, label in enumerate(self._labels)}
        self._res_col = column["resolution"]
        self._depth_cols = np.array([column[d] for d, _ in self._stage_labels])
        self._kernel_cols = np.array([[column[k] for k, _ in slots] for _, slots in self._stage_labels])
        self._expand_cols = np.array([[column[e] for _, e in slots] for _, slots in self._stage_labels])
        self._cost_tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # built on first use
        # Integer codes (see SearchSpace.to_codes): per stage its slots' kernel and expand columns, and per depth
        # option which slots are active (slot j < depth) and so which of those columns keep their value.
        self._counts = np.array([len(options) for options in self._choices.values()], dtype=np.intp)
        self._counts_at_least_2 = np.maximum(self._counts, 2)  # a draw in 1..count-1 needs count >= 2
        self._mutable_mask = self._counts > 1
        self._mutable_cols = np.flatnonzero(self._mutable_mask)
        self._active_by_depth = np.arange(self.max_depth)[None, :] < np.array(self.depths)[:, None]
        self._keep_by_depth = np.repeat(self._active_by_depth, 2, axis=1).astype(np.intp)
        nk, ne = len(self.kernel_sizes), len(self.expand_ratios)
        self._slot_offsets = (np.arange(NUM_STAGES * self.max_depth) * nk * ne).reshape(NUM_STAGES, self.max_depth)

    # ------------------------------------------------------------------ definition
    def _make_choices(self) -> dict[str, tuple[Value, ...]]:
        choices: dict[str, tuple[Value, ...]] = {"resolution": self.resolutions}
        for i in range(1, NUM_STAGES + 1):
            choices[f"stage{i}.depth"] = self.depths
            for j in range(self.max_depth):
                choices[f"stage{i}.block{j}.kernel"] = self.kernel_sizes
                choices[f"stage{i}.block{j}.expand"] = self.expand_ratios
        return choices

    def choices(self) -> dict[str, tuple[Value, ...]]:
        return dict(self._choices)

    def config(self) -> dict[str, object]:
        """The constructor arguments, for logs and for rebuilding the same space."""
        return {
            "width_mult": self.width_mult,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "kernel_sizes": list(self.kernel_sizes),
            "expand_ratios": list(self.expand_ratios),
            "depths": list(self.depths),
            "resolutions": list(self.resolutions),
            "dropout": self.dropout,
        }

    def canonical(self, arch: Mapping[str, Value]) -> Arch:
        # Map 3.0 -> 3 (the stored option) so equal archs serialise, and hash, identically (bools stay bools:
        # True == 1 would otherwise map to an option 1).
        values = self._values_of(arch)
        if self._int_options and set(map(type, values)) == {int}:
            out: Arch = dict(zip(self._labels, values))  # every value already is its stored form
        else:
            out = {label: (v if type(v) is bool else stored.get(v, v))
                   for (label, stored), v in zip(self._stored.items(), values)}
        self._reset_inactive(out)
        return out

    def _reset_inactive(self, arch: Arch) -> None:
        """Set, in place, the slots beyond each stage's (int) depth to the smallest kernel and expand ratio."""
        depths = self._depths_of(arch)
        if tuple(map(type, depths)) == self._int_depth_types:  # the usual case: one lookup for all stages
            reset = self._reset_by_depths.get(depths)
            if reset is None and all(0 <= d <= self.max_depth for d in depths):
                reset = {}
                for (_, _, resets), depth in zip(self._resets, depths):
                    reset.update(resets[depth])
                if len(self._reset_by_depths) < 4096:
                    self._reset_by_depths[depths] = reset
            if reset is not None:
                arch.update(reset)
                return
        # Bools, unmapped floats and depths outside 0..max_depth, stage by stage.
        for depth_label, slots, resets in self._resets:
            depth = arch[depth_label]
            if type(depth) is int:  # not a bool, nor a float that canonical() could not map to an option
                reset = resets.get(depth)
                if reset is None:  # a depth outside 0..max_depth: slice as Python does
                    kernel0, expand0 = self.kernel_sizes[0], self.expand_ratios[0]
                    reset = {label: value for pair in slots[depth:] for label, value in zip(pair, (kernel0, expand0))}
                arch.update(reset)

    def mutate(self, arch: Mapping[str, Value], rng: np.random.Generator, *, rate: float | None = None) -> Arch:
        """:meth:`SearchSpace.mutate` with its tables precomputed and its draws batched: the same numbers from
        ``rng`` in the same order, so the same child (a seeded search gives the same result as before).

        Base mutate calls ``rng.random()`` once per label (about 40 calls of ~1 us each per child) and, after
        each hit, ``rng.integers`` for the new value. Here one ``rng.random(m)`` draws the same numbers as the m
        calls up to the next forced label; when a hit comes before the last of them, the generator is set back
        and exactly the draws up to the hit are taken again, so ``rng.integers`` sees the generator as the
        one-by-one loop leaves it."""
        labels = self._mutable_labels
        if not labels:
            return self.canonical(arch)
        n = len(labels)
        rate = 1.0 / n if rate is None else rate
        below_rate = float(rate).__gt__  # r < rate, mapped over a list at C speed
        start = self.canonical(arch)
        bit_generator = rng.bit_generator
        child = start
        for _ in range(32):  # retry until the canonical form differs (a change may hit an inactive choice)
            child = dict(start)
            forced = int(rng.integers(n))
            k = 0
            while k < n:
                if k != forced:  # labels k..stop-1 each draw one random() (the forced label draws none)
                    stop = forced if forced > k else n
                    state = bit_generator.state
                    draws = rng.random(stop - k).tolist()
                    hit = next(compress(count(), map(below_rate, draws)), None)
                    if hit is None:
                        k = stop
                        continue
                    if hit < len(draws) - 1:
                        bit_generator.state = state
                        rng.random(hit + 1)
                    k += hit
                label = labels[k]
                value = child[label]
                others = self._others[label].get(value)
                if others is None:  # a value that is not an option (canonical does not validate)
                    others = tuple(o for o in self._choices[label] if o != value)
                child[label] = others[int(rng.integers(len(others)))]
                k += 1
            # Values are start's (canonical) or options, so canonical() reduces to resetting inactive slots.
            self._reset_inactive(child)
            if child != start:
                return child
        return child

    def input_shape(self, arch: Mapping[str, Value]) -> tuple[int, int, int]:
        r = int(arch["resolution"])
        return (self.in_channels, r, r)

    def net_spec(self, arch: Mapping[str, Value]) -> NetSpec:
        """The channel plan of the (already validated) ``arch``: only its active blocks."""
        first = BlockSpec(self.stem_channels, self.first_block_channels, 3, 1, 1, "relu", False)
        blocks = [first]
        for i in range(1, NUM_STAGES + 1):
            for j in range(int(arch[f"stage{i}.depth"])):
                blocks.append(
                    self._block_spec(i, j, int(arch[f"stage{i}.block{j}.kernel"]), arch[f"stage{i}.block{j}.expand"])
                )
        return NetSpec(
            self.in_channels,
            self.stem_channels,
            tuple(blocks),
            self.final_expand_channels,
            self.feature_mix_channels,
            self.num_classes,
            self.dropout,
        )

    def _block_in_channels(self, stage: int, block: int) -> int:
        if block > 0:
            return self.stage_widths[stage - 1]
        return self.first_block_channels if stage == 1 else self.stage_widths[stage - 2]

    def _block_spec(self, stage: int, block: int, kernel: int, expand: float) -> BlockSpec:
        s = stage - 1
        return BlockSpec(
            in_channels=self._block_in_channels(stage, block),
            out_channels=self.stage_widths[s],
            kernel=kernel,
            stride=_STAGE_STRIDES[s] if block == 0 else 1,
            expand=expand,
            act=_STAGE_ACTS[s],
            use_se=_STAGE_SE[s],
        )

    def build(self, arch: Mapping[str, Value]) -> nn.Module:
        net = MobileNetV3(self.net_spec(self.validate(arch)))
        init_weights(net)
        return net

    def supernet(self) -> OFASupernet:
        return OFASupernet(self)

    # ------------------------------------------------------------------ weight sharing
    def elastic_dims(self) -> tuple[str, ...]:
        return ("resolution", "kernel", "depth", "expand")

    def sample_elastic(self, rng: np.random.Generator, elastic: Sequence[str]) -> Arch:
        unknown = [d for d in elastic if d not in self.elastic_dims()]
        if unknown:
            raise ConfigError(f"ofa: unknown elastic dimension(s) {unknown}; choose from {list(self.elastic_dims())}")
        arch: Arch = {}
        for label, options in self._choices.items():
            dim = label.rsplit(".", 1)[-1]  # resolution / depth / kernel / expand
            arch[label] = options[int(rng.integers(len(options)))] if dim in elastic else options[-1]
        return self.canonical(arch)

    # ------------------------------------------------------------------ predictor encoding
    def cost_features(self, arch: Mapping[str, Value]) -> np.ndarray:
        """Per stage (the fixed first block counts as stage 0): pointwise MACs, depthwise MACs, elements of
        the expanded activations (memory traffic of the element-wise ops) and block count (per-op overhead,
        which dominates small inputs); then stem + head MACs. Units: millions (MACs), 1e5 (elements).

        Each block's share depends only on (resolution, stage, slot, kernel, expand), so it is memoised."""
        # Only active slots are read, so no canonical() here (3.0 and 3 are the same memo key: equal hashes).
        r = int(arch["resolution"])
        features = np.zeros(4 * (NUM_STAGES + 1) + 1)
        features[0:4] = self._block_cost(r, 0, 0, 3, 1)
        for i, (depth_label, slots) in enumerate(self._stage_labels, start=1):
            for j, (kernel_label, expand_label) in enumerate(slots[: int(arch[depth_label])]):
                features[4 * i : 4 * i + 4] += self._block_cost(r, i, j, int(arch[kernel_label]), arch[expand_label])
        features[-1] = self._block_cost(r, -1, 0, 0, 0)[0]
        return features

    def _sides(self, r: int) -> list[int]:
        """Feature-map side after the stride-2 stem, then after each stage."""
        sides = [-(-r // 2)]
        for stride in _STAGE_STRIDES:
            sides.append(-(-sides[-1] // stride))
        return sides

    def _block_cost(self, r: int, stage: int, block: int, kernel: int, expand: Value) -> np.ndarray:
        key = (r, stage, block, kernel, expand)
        cost = self._block_costs.get(key)
        if cost is not None:
            return cost
        sides = self._sides(r)
        if stage == -1:  # stem and head MACs
            last = self.stage_widths[-1]
            macs = sides[0] ** 2 * self.in_channels * self.stem_channels * 9
            macs += sides[-1] ** 2 * last * self.final_expand_channels
            macs += self.final_expand_channels * self.feature_mix_channels + self.feature_mix_channels * self.num_classes
            cost = np.array([macs / 1e6, 0.0, 0.0, 0.0])
        else:
            if stage == 0:
                spec, side_in, side_out = BlockSpec(self.stem_channels, self.first_block_channels, 3, 1, 1, "relu", False), sides[0], sides[0]
            else:
                spec = self._block_spec(stage, block, kernel, expand)
                side_in, side_out = (sides[stage - 1] if block == 0 else sides[stage]), sides[stage]
            mid = spec.mid_channels
            pointwise = (side_in**2 * spec.in_channels * mid if spec.has_expand_conv else 0) + side_out**2 * mid * spec.out_channels
            cost = np.array([pointwise / 1e6, side_out**2 * mid * spec.kernel**2 / 1e6, side_out**2 * mid / 1e5, 1.0])
        self._block_costs[key] = cost
        return cost

    def encode(self, arch: Mapping[str, Value]) -> np.ndarray:
        """OFA accuracy-predictor features: per block slot one-hot kernel + one-hot expand (zeros when the
        slot is inactive), then one-hot resolution."""
        nk, ne = len(self.kernel_sizes), len(self.expand_ratios)
        slot = nk + ne
        vec = np.zeros(NUM_STAGES * self.max_depth * slot + len(self.resolutions), dtype=np.float32)
        for i, (depth_label, slots) in enumerate(self._stage_labels):
            for j, (kernel_label, expand_label) in enumerate(slots[: int(arch[depth_label])]):
                base = (i * self.max_depth + j) * slot
                vec[base + self.kernel_sizes.index(arch[kernel_label])] = 1.0
                vec[base + nk + self.expand_ratios.index(arch[expand_label])] = 1.0
        vec[NUM_STAGES * self.max_depth * slot + self.resolutions.index(arch["resolution"])] = 1.0
        return vec

    # ------------------------------------------------------------------ batch encodings
    def encode_many(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """``encode`` of every arch as one ``(len(archs), dim)`` array, by one gather from an index matrix;
        equal, value for value, to stacking :meth:`encode` (archs the fast path cannot read take that path)."""
        indices = self._choice_indices(archs)
        if indices is None:
            return super().encode_many(archs)
        return self._encode_indices(*indices)

    def _encode_indices(self, res: np.ndarray, depth: np.ndarray, kernel: np.ndarray, expand: np.ndarray,
                        active: np.ndarray) -> np.ndarray:
        n = len(res)
        nk, ne = len(self.kernel_sizes), len(self.expand_ratios)
        slot = nk + ne
        n_slots = NUM_STAGES * self.max_depth
        out = np.zeros((n, n_slots * slot + len(self.resolutions)), dtype=np.float32)
        rows = np.arange(n)[:, None]
        base = (np.arange(n_slots) * slot)[None, :]
        on = active.reshape(n, n_slots).astype(np.float32)  # inactive slots write 0 into their own zeros
        out[rows, base + kernel.reshape(n, n_slots)] = on
        out[rows, base + nk + expand.reshape(n, n_slots)] = on
        out[np.arange(n), n_slots * slot + res] = 1.0
        return out

    def cost_features_many(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """``cost_features`` of every arch as one ``(len(archs), dim)`` array from precomputed per-block cost
        tables, summed slot by slot in the order :meth:`cost_features` adds them, so the floats are identical."""
        indices = self._choice_indices(archs)
        if indices is None:
            return super().cost_features_many(archs)
        return self._cost_features_indices(*indices)

    def _cost_features_indices(self, res: np.ndarray, depth: np.ndarray, kernel: np.ndarray, expand: np.ndarray,
                               active: np.ndarray) -> np.ndarray:
        stage0, blocks, head = self._cost_table()
        n = len(res)
        # (n, stage, slot, 4): each slot's cost, the all-zero last row where the slot is inactive.
        costs = blocks[self._slot_index(res, kernel, expand, active)]
        per_stage = np.zeros((n, NUM_STAGES, 4))
        for j in range(self.max_depth):  # x + 0.0 == x, so an inactive slot leaves the running sum unchanged
            per_stage += costs[:, :, j]
        features = np.empty((n, 4 * (NUM_STAGES + 1) + 1))
        features[:, 0:4] = stage0[res]
        features[:, 4:-1] = per_stage.reshape(n, 4 * NUM_STAGES)
        features[:, -1] = head[res]
        return features

    def _slot_index(self, res: np.ndarray, kernel: np.ndarray, expand: np.ndarray, active: np.ndarray) -> np.ndarray:
        """``(n, stages, max_depth)`` row of each slot in a table of (resolution, stage, slot, kernel, expand)
        rows flattened in that order, plus one last row for inactive slots (see :meth:`slot_table_rows`)."""
        nk, ne = len(self.kernel_sizes), len(self.expand_ratios)
        per_resolution = NUM_STAGES * self.max_depth * nk * ne
        index = (res * per_resolution)[:, None, None] + self._slot_offsets + kernel * ne + expand
        return np.where(active, index, per_resolution * len(self.resolutions))

    def slot_table_rows(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For a quantity that is a part fixed per resolution plus one part per active block slot, fixed by the
        slot's (resolution, stage, slot, kernel, expand): each row's resolution index, and the ``(n, stages *
        max_depth)`` rows of its slots in a table of shape ``(resolutions * stages * max_depth * kernels *
        expands + 1, ...)`` ordered that way, whose last (zero) row stands for an inactive slot."""
        res, _, kernel, expand, active = self._code_indices(codes)
        return res, self._slot_index(res, kernel, expand, active).reshape(len(codes), -1)

    def _choice_indices(self, archs: Sequence[Mapping[str, Value]]) -> tuple[np.ndarray, ...] | None:
        """``(resolution, depth, kernel, expand, active)`` option indices of ``archs`` (kernel, expand, active
        shaped ``(n, stages, max_depth)``), or None when some arch has a value the tables do not hold (not an
        option in an active slot, a non-number, a missing label): the per-arch paths handle those as before."""
        if not archs:
            return None
        try:
            # Not np.fromiter(dtype=float): it would parse "3" as 3.0 where encode() rejects a string.
            values = np.array([self._values_of(a) for a in archs])
        except (KeyError, TypeError, ValueError):
            return None
        if values.ndim != 2 or values.dtype.kind not in "iuf":
            return None
        res, res_ok = _option_index(values[:, self._res_col], self.resolutions)
        depth_values = values[:, self._depth_cols]
        depth, depth_ok = _option_index(depth_values, self.depths)
        kernel, kernel_ok = _option_index(values[:, self._kernel_cols], self.kernel_sizes)
        expand, expand_ok = _option_index(values[:, self._expand_cols], self.expand_ratios)
        active = np.arange(self.max_depth)[None, None, :] < depth_values[:, :, None]
        if not (res_ok.all() and depth_ok.all() and (kernel_ok | ~active).all() and (expand_ok | ~active).all()):
            return None
        return res, depth, kernel, expand, active

    # ------------------------------------------------------------------ integer codes (vectorised)
    def canonical_codes(self, codes: np.ndarray) -> np.ndarray:
        """Inactive slots' kernel and expand codes set to 0 (the smallest options), as :meth:`canonical` does."""
        out = np.array(codes, dtype=np.intp, copy=True)
        stages = self._stage_view(out)
        stages[:, :, 1:] *= self._keep_by_depth[stages[:, :, 0]]
        return out

    def sample_codes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Every label drawn uniformly (the distribution of :meth:`sample`), then made canonical."""
        return self.canonical_codes(rng.integers(0, self._counts, size=(n, len(self._labels))))

    def crossover_codes(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Uniform crossover of each pair of rows (each label from ``a`` or ``b`` with equal probability)."""
        return self.canonical_codes(np.where(rng.random(a.shape) < 0.5, a, b))

    def mutate_codes(self, codes: np.ndarray, rng: np.random.Generator, *, rate: float | None = None) -> np.ndarray:
        """:meth:`mutate`'s operator on every row at once: each mutable label with probability ``rate`` (default
        1 / number of mutable labels) moved to a uniformly drawn other option, plus one forced change. The forced
        label is drawn among those the parent uses (resolution, depths, kernel and expand of active slots): a
        change to an inactive slot would be undone by :meth:`canonical`, where :meth:`mutate` draws again
        until the child differs; here every child differs from its parent at the first draw."""
        start = self.canonical_codes(codes)
        n, width = start.shape
        if not len(self._mutable_cols) or n == 0:
            return start
        rate = 1.0 / len(self._mutable_cols) if rate is None else float(rate)
        used = np.ones((n, width), dtype=bool)
        self._stage_view(used)[:, :, 1:] = self._keep_by_depth[self._stage_view(start)[:, :, 0]]
        used &= self._mutable_mask
        # The forced label: the (t+1)-th used label of its row, t uniform below the row's count of used labels.
        running = np.cumsum(used, axis=1)
        target = (rng.random(n) * running[:, -1]).astype(np.intp)
        forced = (running <= target[:, None]).sum(axis=1)
        hit = (rng.random((n, width)) < rate) & self._mutable_mask
        hit[np.arange(n), forced] = True
        # (value + s) mod count with s uniform in 1..count-1: a uniform draw among the other options.
        moved = (start + rng.integers(1, self._counts_at_least_2, size=(n, width))) % self._counts
        return self.canonical_codes(np.where(hit, moved, start))

    def encode_codes(self, codes: np.ndarray) -> np.ndarray:
        """:meth:`encode` of every row, straight from the codes (equal to :meth:`encode_many` of the archs)."""
        return self._encode_indices(*self._code_indices(codes))

    def cost_features_codes(self, codes: np.ndarray) -> np.ndarray:
        """:meth:`cost_features` of every row from the codes (bit for bit :meth:`cost_features_many`'s)."""
        return self._cost_features_indices(*self._code_indices(codes))

    def _code_indices(self, codes: np.ndarray) -> tuple[np.ndarray, ...]:
        """``_choice_indices``' tuple read off codes (the codes are the option indices), through a view of the
        stages' columns (no copies)."""
        stages = self._stage_view(codes)
        depth = stages[:, :, 0]
        return codes[:, 0], depth, stages[:, :, 1::2], stages[:, :, 2::2], self._active_by_depth[depth]

    def _stage_view(self, codes: np.ndarray) -> np.ndarray:
        """``codes[:, 1:]`` as ``(n, stages, 1 + 2 * max_depth)``: :meth:`_make_choices` lays labels out as the
        resolution, then per stage its depth and each slot's kernel and expand."""
        return codes[:, 1:].reshape(len(codes), NUM_STAGES, 1 + 2 * self.max_depth)

    def _cost_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per resolution: the first block's cost (4), every (stage, slot, kernel, expand) block's cost (rows as
        :meth:`_slot_index` reads them) and the stem + head MACs, from the same :meth:`_block_cost` the per-arch
        path adds up."""
        if self._cost_tables is None:
            nr, nk, ne = len(self.resolutions), len(self.kernel_sizes), len(self.expand_ratios)
            stage0 = np.zeros((nr, 4))
            blocks = np.zeros((nr, NUM_STAGES, self.max_depth, nk, ne, 4))
            head = np.zeros(nr)
            for a, r in enumerate(self.resolutions):
                stage0[a] = self._block_cost(r, 0, 0, 3, 1)
                head[a] = self._block_cost(r, -1, 0, 0, 0)[0]
                for i in range(NUM_STAGES):
                    for j in range(self.max_depth):
                        for b, k in enumerate(self.kernel_sizes):
                            for c, e in enumerate(self.expand_ratios):
                                blocks[a, i, j, b, c] = self._block_cost(r, i + 1, j, k, e)
            # Flattened in (resolution, stage, slot, kernel, expand) order with a zero row for inactive slots.
            self._cost_tables = (stage0, np.concatenate([blocks.reshape(-1, 4), np.zeros((1, 4))]), head)
        return self._cost_tables

    # ------------------------------------------------------------------ public form
    def to_public(self, arch: Mapping[str, Value]) -> dict[str, object]:
        arch = self.canonical(arch)
        slots = [(i, j) for i in range(1, NUM_STAGES + 1) for j in range(self.max_depth)]
        return {
            "ks": [arch[f"stage{i}.block{j}.kernel"] for i, j in slots],
            "e": [arch[f"stage{i}.block{j}.expand"] for i, j in slots],
            "d": [arch[f"stage{i}.depth"] for i in range(1, NUM_STAGES + 1)],
            "r": arch["resolution"],
        }

    def from_public(self, obj: object) -> Arch:
        """Parse OFA's ``{"ks", "e", "d", "r"}``; values in slots beyond a stage's depth are ignored."""
        if isinstance(obj, Mapping) and any(key in self._choices for key in obj):
            return self.validate(obj)  # a (possibly broken) flat arch: report its labels, not ks/e/d/r
        n_slots = NUM_STAGES * self.max_depth
        expected = (
            f'a JSON object {{"ks": [{n_slots} kernel sizes], "e": [{n_slots} expand ratios], '
            f'"d": [{NUM_STAGES} depths], "r": resolution}}'
        )
        if not isinstance(obj, Mapping):
            raise InvalidArchError(f"an OFA architecture must be {expected}, got {type(obj).__name__}")
        missing = [k for k in PUBLIC_KEYS if k not in obj]
        unknown = [k for k in obj if k not in PUBLIC_KEYS]
        if missing or unknown:
            raise InvalidArchError(
                f"OFA architecture has missing keys {missing} / unknown keys {unknown}; expected {expected}"
            )
        r = _pick("r", obj["r"], self.resolutions)
        depths = [_pick(f"d[{i}]", v, self.depths) for i, v in enumerate(_list("d", obj["d"], NUM_STAGES))]
        ks = _list("ks", obj["ks"], n_slots)
        es = _list("e", obj["e"], n_slots)
        arch: Arch = {"resolution": r}
        for i in range(1, NUM_STAGES + 1):
            arch[f"stage{i}.depth"] = depths[i - 1]
            for j in range(self.max_depth):
                n = (i - 1) * self.max_depth + j
                active = j < depths[i - 1]
                where = f"(stage {i}, block {j})"
                arch[f"stage{i}.block{j}.kernel"] = (
                    _pick(f"ks[{n}] {where}", ks[n], self.kernel_sizes) if active else self.kernel_sizes[0]
                )
                arch[f"stage{i}.block{j}.expand"] = (
                    _pick(f"e[{n}] {where}", es[n], self.expand_ratios) if active else self.expand_ratios[0]
                )
        return self.validate(arch)

    def describe(self, arch: Mapping[str, Value]) -> str:
        stages = range(1, NUM_STAGES + 1)
        depths = [int(arch[f"stage{i}.depth"]) for i in stages]

        def per_stage(kind: str) -> str:
            return "|".join(
                ",".join(f"{arch[f'stage{i}.block{j}.{kind}']:g}" for j in range(d)) for i, d in zip(stages, depths)
            )

        return f"r={arch['resolution']} d={depths} ks=[{per_stage('kernel')}] e=[{per_stage('expand')}]"


class OFASupernet(Supernet):
    """The OFA MobileNetV3 supernet: static stem, first block and head, five stages of :class:`DynamicMBConv`.

    ``forward`` runs the subnet chosen by ``set_active`` (default: the largest). The input must already be at
    the active resolution (the network is fully convolutional); ``input_shape`` gives it.

    Its 4-D weights are stored channels-last: on CPU that makes a training step 2-9x faster at MNIST sizes
    (PyTorch's contiguous depthwise 7x7 path is very slow on tiny feature maps). Outputs are unaffected;
    ``.to(memory_format=torch.contiguous_format)`` reverts it if another backend prefers NCHW.
    """

    def __init__(self, space: OFASpace) -> None:
        super().__init__()
        self._space = space
        first = space.net_spec(space.largest()).blocks[0]
        self.stem = ConvBNAct(space.in_channels, space.stem_channels, 3, 2, act="h_swish")
        self.first_block = MBConv(first)
        self.stages = nn.ModuleList()
        for i in range(1, NUM_STAGES + 1):
            blocks = []
            for j in range(space.max_depth):
                spec = space._block_spec(i, j, space.kernel_sizes[-1], space.expand_ratios[-1])
                blocks.append(
                    DynamicMBConv(
                        spec.in_channels,
                        spec.out_channels,
                        space.kernel_sizes,
                        space.expand_ratios,
                        spec.stride,
                        spec.act,
                        spec.use_se,
                    )
                )
            self.stages.append(nn.ModuleList(blocks))
        self.head = Head(
            space.stage_widths[-1],
            space.final_expand_channels,
            space.feature_mix_channels,
            space.num_classes,
            space.dropout,
        )
        init_weights(self)
        self.to(memory_format=torch.channels_last)
        self.set_active(space.largest())

    def set_active(self, arch: Mapping[str, Value]) -> None:
        arch = self._space.validate(arch)
        self.active_arch: Arch = arch
        self.active_depths = [int(arch[f"stage{i}.depth"]) for i in range(1, NUM_STAGES + 1)]
        for i, stage in enumerate(self.stages, start=1):
            for j, block in enumerate(stage):
                block.set_active(int(arch[f"stage{i}.block{j}.kernel"]), arch[f"stage{i}.block{j}.expand"])

    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, r, r)`` for the active subnet."""
        return self._space.input_shape(self.active_arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for stage, depth in zip(self.stages, self.active_depths):
            for j in range(depth):
                x = stage[j](x)
        return self.head(x)

    def extract(self, arch: Mapping[str, Value]) -> nn.Module:
        """A standalone :class:`MobileNetV3` with this supernet's weights and BN statistics for ``arch``.

        The supernet's active subnet is left as it was; the copy keeps the supernet's train/eval mode and device.
        """
        previous = self.active_arch
        self.set_active(arch)
        try:
            net = MobileNetV3(self._space.net_spec(self.active_arch)).to(next(self.parameters()).device)
            net.stem.load_state_dict(self.stem.state_dict())
            net.blocks[0].load_state_dict(self.first_block.state_dict())
            targets = iter(net.blocks[1:])
            for stage, depth in zip(self.stages, self.active_depths):
                for j in range(depth):
                    stage[j].copy_to(next(targets))
            net.head.load_state_dict(self.head.state_dict())
        finally:
            self.set_active(previous)
        return net.train(self.training)


# ---------------------------------------------------------------------------------------------- validation
def _is_number(value: object, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, numbers.Integral if integer else numbers.Real)


def _list(key: str, value: object, length: int) -> list:
    if not isinstance(value, (list, tuple)) or len(value) != length:
        got = f"a list of length {len(value)}" if isinstance(value, (list, tuple)) else repr(value)
        raise InvalidArchError(f'OFA architecture key "{key}" must be a list of {length} values, got {got}')
    return list(value)


def _option_index(values: np.ndarray, options: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Index of each value in the ascending ``options`` (clipped into range) and whether it is that option."""
    table = np.asarray(options, dtype=np.float64)
    index = np.clip(np.searchsorted(table, values), 0, len(options) - 1)
    return index, table[index] == values


def _pick(where: str, value: object, options: tuple) -> Value:
    """The option equal to ``value`` (numbers only, no booleans) or a clear error."""
    if _is_number(value, False):
        for option in options:
            if option == value:
                return option
    raise InvalidArchError(f"OFA architecture {where} = {value!r} is not allowed; choose one of {list(options)}")
