"""Low-rank factorisation of trained layers: plan the ranks, then replace layers by exact truncated factors.

Three kinds of layer are factorised (only plain ``nn.Conv2d`` / ``nn.Linear``, never depthwise or grouped
convolutions, whose per-group weights are too small to gain anything):

- ``pointwise``: a 1x1 convolution ``W`` (out, in) becomes ``Conv2d(in, r, 1, stride) -> Conv2d(r, out, 1)``;
- ``linear``: ``Linear(in, out)`` becomes ``Linear(in, r) -> Linear(r, out)``;
- ``tucker2``: a kxk convolution (k > 1) becomes ``Conv2d(in, r_in, 1) -> Conv2d(r_in, r_out, k, stride,
  padding, dilation) -> Conv2d(r_out, out, 1)`` (Tucker-2 along the channel modes, computed by HOSVD).

For pointwise/linear the factors are the truncated SVD ``U_r S_r V_r^T`` with ``sqrt(S_r)`` given to each
side, the best rank-r approximation in Frobenius norm (Eckart-Young). A rank is chosen per layer as the
smallest one keeping a fraction ``energy`` of the squared singular values; a plan is kept only if it cuts
the layer's MACs by at least ``min_saving``, because near full rank two factors cost more than one layer.

Whether a factorised layer is actually *faster* depends on the device; that is measured elsewhere. This
module only plans and applies the factorisation, and the replacements are plain ``nn.Sequential`` of
standard layers so that ONNX export and pruning tools see ordinary modules.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.errors import ConfigError
from nas.hardware.runtime import check_input_shape, first_line

#: The kinds of layer that can be factorised (see the module docstring).
KINDS = ("pointwise", "linear", "tucker2")
DEFAULT_KINDS = ("pointwise", "linear")

# A cumulative energy within this of the target counts as reaching it: with energy=1.0 rounding would
# otherwise leave the last cumulative sum at 0.9999999... and ask for a rank above the full one.
_ENERGY_TOL = 1e-12
# How many eligible layer names an error message lists before it only gives the count.
_MAX_NAMES_LISTED = 40


@dataclass(frozen=True, kw_only=True)
class LowRankPlan:
    """How one layer is factorised, and what it costs before and after (per image at the planned input shape).

    ``rank`` is set for ``pointwise`` and ``linear``; ``ranks`` = (input rank, output rank) for ``tucker2``.
    ``energy`` is the fraction of squared singular values the chosen rank keeps (for tucker2 the smaller of
    the two modes' fractions).
    """

    layer: str
    kind: str
    shape: tuple[int, ...]
    energy: float
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    rank: int | None = None
    ranks: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        # A plan can be written by hand (or read back from a report), so check it is self-consistent here
        # rather than fail deep inside factorise().
        if self.kind not in KINDS:
            raise ConfigError(f"low-rank plan for {self.layer!r}: unknown kind {self.kind!r}; choose one of "
                              f"{', '.join(KINDS)}")
        shape = tuple(int(v) for v in self.shape)
        object.__setattr__(self, "shape", shape)
        if self.kind == "tucker2":
            if len(shape) != 4:
                raise ConfigError(f"low-rank plan for {self.layer!r}: a tucker2 plan needs a 4-D conv weight "
                                  f"shape, got {shape}")
            if self.rank is not None or not isinstance(self.ranks, (tuple, list)) or len(self.ranks) != 2:
                raise ConfigError(f"low-rank plan for {self.layer!r}: a tucker2 plan takes ranks=(input rank, "
                                  f"output rank) and no rank, got rank={self.rank!r}, ranks={self.ranks!r}")
            ranks = (_as_int(self.ranks[0], self.layer), _as_int(self.ranks[1], self.layer))
            limits = _tucker_full_ranks(shape)
            for name, value, top in zip(("input", "output"), ranks, limits):
                if not 1 <= value <= top:
                    raise ConfigError(f"low-rank plan for {self.layer!r}: {name} rank must lie in 1..{top} for "
                                      f"weight shape {shape}, got {value}")
            object.__setattr__(self, "ranks", ranks)
        else:
            expected = 4 if self.kind == "pointwise" else 2
            if len(shape) != expected or (self.kind == "pointwise" and shape[2:] != (1, 1)):
                raise ConfigError(f"low-rank plan for {self.layer!r}: a {self.kind} plan needs a "
                                  f"{'(out, in, 1, 1)' if expected == 4 else '(out, in)'} weight shape, got {shape}")
            if self.rank is None or self.ranks is not None:
                raise ConfigError(f"low-rank plan for {self.layer!r}: a {self.kind} plan takes rank and no ranks, "
                                  f"got rank={self.rank!r}, ranks={self.ranks!r}")
            rank = _as_int(self.rank, self.layer)
            top = min(shape[0], shape[1])
            if not 1 <= rank <= top:
                raise ConfigError(f"low-rank plan for {self.layer!r}: rank must lie in 1..{top} for weight "
                                  f"shape {shape}, got {rank}")
            object.__setattr__(self, "rank", rank)

    @property
    def macs_saved(self) -> int:
        return self.macs_before - self.macs_after

    @property
    def saving(self) -> float:
        """Fraction of the layer's MACs removed (negative if the factorised layer costs more)."""
        return self.macs_saved / self.macs_before if self.macs_before else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists instead of tuples), with the derived ``macs_saved`` and ``saving``."""
        record = asdict(self)
        record["shape"] = list(self.shape)
        record["ranks"] = None if self.ranks is None else list(self.ranks)
        record["macs_saved"] = self.macs_saved
        record["saving"] = self.saving
        return record


def _as_int(value: object, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"low-rank plan for {layer!r}: ranks must be ints, got {value!r}")
    return int(value)


def _tucker_full_ranks(shape: Sequence[int]) -> tuple[int, int]:
    """(input, output) ranks at which Tucker-2 of a conv weight of ``shape`` is exact: each mode's unfolding
    rank is at most the smaller of its size and the product of the other sizes."""
    out_ch, in_ch, kh, kw = shape
    return min(in_ch, out_ch * kh * kw), min(out_ch, in_ch * kh * kw)


# ---------------------------------------------------------------------------------------------- energy
def _unfold(weight: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-``mode`` unfolding in float64 on the CPU (SVD precision; MPS-like devices lack float64)."""
    w = weight.detach().to("cpu", torch.float64)
    return torch.movedim(w, mode, 0).reshape(w.shape[mode], -1)


def energy_profile(weight: torch.Tensor, mode: int = 0) -> np.ndarray:
    """Cumulative fraction of squared singular values kept by rank: ``profile[r - 1]`` is what rank ``r`` keeps.

    The singular values are those of the mode-``mode`` unfolding of ``weight`` (0: output channels, 1: input
    channels); for a linear or 1x1 conv weight both modes give the same values. An all-zero weight keeps
    everything at every rank.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        raise ConfigError(f"energy_profile needs a weight tensor with at least 2 dimensions, got "
                          f"{getattr(weight, 'shape', type(weight).__name__)}")
    if not 0 <= mode < weight.dim():
        raise ConfigError(f"mode must lie in 0..{weight.dim() - 1} for a {weight.dim()}-D weight, got {mode}")
    values = torch.linalg.svdvals(_unfold(weight, mode)).numpy()
    squares = values**2
    total = float(squares.sum())
    if total == 0.0:
        return np.ones(len(squares))
    profile = np.cumsum(squares) / total
    profile[-1] = 1.0  # exactly: full rank keeps everything, whatever the rounding
    return np.minimum(profile, 1.0)


def _rank_for(profile: np.ndarray, energy: float) -> int:
    """Smallest rank whose cumulative energy reaches ``energy``."""
    index = int(np.searchsorted(profile, energy - _ENERGY_TOL, side="left"))
    return min(index + 1, len(profile))


# ---------------------------------------------------------------------------------------------- sites
@dataclass
class _Site:
    """An eligible layer and how many input/output positions it computes per image (summed over calls)."""

    module: nn.Module
    kind: str
    in_positions: int = 0
    out_positions: int = 0


def _kind_of(module: nn.Module) -> str | None:
    # Exact types only: a subclass may have its own forward (e.g. a weight-sharing supernet layer that
    # slices its weight), which replacing by plain factors would change.
    if type(module) is nn.Linear:
        return "linear"
    if type(module) is nn.Conv2d and module.groups == 1:
        return "pointwise" if tuple(module.kernel_size) == (1, 1) else "tucker2"
    return None


def _sites(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, _Site]:
    """Every factorisable layer that runs in one forward pass on a zero input, by dotted name."""
    sites = {name: _Site(module, kind) for name, module in model.named_modules()
             if (kind := _kind_of(module)) is not None}

    def hook(site: _Site):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            channels_in = module.in_features if site.kind == "linear" else module.in_channels
            channels_out = module.out_features if site.kind == "linear" else module.out_channels
            site.in_positions += inputs[0].numel() // channels_in
            site.out_positions += output.numel() // channels_out
        return record

    handles = [site.module.register_forward_hook(hook(site)) for site in sites.values()]
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    x = torch.zeros(1, *input_shape, device=None if first is None else first.device,
                    dtype=torch.float32 if first is None else first.dtype)
    was_training = model.training
    try:
        model.eval()  # eval: BatchNorm must not update its running statistics on our zero input
        with torch.no_grad():
            model(x)
    except Exception as err:  # any failure of the user's forward: one clear message, not a traceback
        raise ConfigError(f"could not run {type(model).__name__} on an input of shape {input_shape} (channels, "
                          f"height, width) to find its layers' output sizes: {first_line(err)}") from err
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    # A layer that never ran costs nothing in this forward pass; factorising it cannot save anything.
    return {name: site for name, site in sites.items() if site.out_positions > 0}


def _costs(site: _Site, rank: int | None, ranks: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """(MACs before, MACs after, params before, params after) of a site at the given rank(s); biases are
    parameters but not MACs (the convention of search_spaces.profile.count_macs)."""
    weight = site.module.weight
    out_ch, in_ch = int(weight.shape[0]), int(weight.shape[1])
    taps = int(math.prod(weight.shape[2:]))
    bias = 0 if site.module.bias is None else out_ch
    macs_before = site.out_positions * out_ch * in_ch * taps
    params_before = out_ch * in_ch * taps + bias
    if ranks is None:
        macs_after = site.out_positions * rank * (in_ch + out_ch)
        params_after = rank * (in_ch + out_ch) + bias
    else:
        r_in, r_out = ranks
        # The first 1x1 runs at the input's resolution, the core and the last 1x1 at the output's.
        macs_after = (site.in_positions * in_ch * r_in + site.out_positions * r_in * r_out * taps
                      + site.out_positions * r_out * out_ch)
        params_after = in_ch * r_in + r_in * r_out * taps + r_out * out_ch + bias
    return macs_before, macs_after, params_before, params_after


def _plan_site(name: str, site: _Site, energy: float, rank: int | None = None,
               ranks: tuple[int, int] | None = None) -> LowRankPlan:
    """The plan of one site at the given rank(s), or at the smallest keeping ``energy`` if none given."""
    weight = site.module.weight
    shape = tuple(int(v) for v in weight.shape)
    identity = dict(layer=name, kind=site.kind, shape=shape)
    if site.kind == "tucker2":
        profiles = (energy_profile(weight, mode=1), energy_profile(weight, mode=0))  # (input, output) modes
        if ranks is None:
            ranks = (_rank_for(profiles[0], energy), _rank_for(profiles[1], energy))
        identity.update(ranks=ranks)
    else:
        profiles = (energy_profile(weight.reshape(shape[0], shape[1])),)
        if rank is None:
            rank = _rank_for(profiles[0], energy)
        identity.update(rank=rank)
    # Validate the rank(s) (a chosen rank may be out of range) before indexing the profiles with them.
    LowRankPlan(energy=1.0, macs_before=0, macs_after=0, params_before=0, params_after=0, **identity)
    chosen = ranks if site.kind == "tucker2" else (rank,)
    kept = min(float(profile[int(r) - 1]) for profile, r in zip(profiles, chosen))
    macs_before, macs_after, params_before, params_after = _costs(site, rank, ranks)
    return LowRankPlan(energy=kept, macs_before=macs_before, macs_after=macs_after, params_before=params_before,
                       params_after=params_after, **identity)


def _check_explicit(name: str, kind: str, rank: object, ranks: object) -> None:
    if kind == "tucker2" and (rank is not None or ranks is None):
        raise ConfigError(f"layer {name!r} is a kxk conv (tucker2): give ranks=(input rank, output rank), not rank")
    if kind != "tucker2" and (ranks is not None or rank is None):
        raise ConfigError(f"layer {name!r} is {kind}: give rank=<int>, not ranks")


# ---------------------------------------------------------------------------------------------- checks
def _check_fraction(name: str, value: object, *, low: float, high: float, low_open: bool, high_open: bool) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    number = float(value) if ok else math.nan
    inside = (number > low if low_open else number >= low) and (number < high if high_open else number <= high)
    if not (ok and math.isfinite(number) and inside):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must lie in {interval}, got {value!r}")
    return number


def _check_names(name: str, value: object) -> list[str]:
    # A bare string is a sequence too, but of characters: almost surely a forgotten list.
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) \
            or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of strings, got {value!r}")
    return list(dict.fromkeys(value))


def _listing(names: Sequence[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:_MAX_NAMES_LISTED])
    return shown if len(names) <= _MAX_NAMES_LISTED else f"{shown}, ... ({len(names)} in all)"


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


# ---------------------------------------------------------------------------------------------- public API
def plan_lowrank(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    energy: float = 0.9,
    min_saving: float = 0.2,
    kinds: Sequence[str] = DEFAULT_KINDS,
    layers: Sequence[str] | None = None,
) -> list[LowRankPlan]:
    """Plan a factorisation of every eligible layer of ``model`` (a trained network; weights are read).

    Per layer of a kind in ``kinds`` (and, if given, named in ``layers``) the rank is the smallest keeping
    ``energy`` of the squared singular values (tucker2: per channel mode). Plans that cut the layer's MACs
    by less than ``min_saving`` (a fraction of its MACs) are dropped. MACs are per image of ``input_shape``
    = (channels, height, width), from one forward pass on a zero input (eval mode, restored after).
    Returns the plans sorted by MACs saved, largest first.
    """
    model = _check_model(model)
    shape = check_input_shape(input_shape)
    energy = _check_fraction("energy", energy, low=0.0, high=1.0, low_open=True, high_open=False)
    min_saving = _check_fraction("min_saving", min_saving, low=0.0, high=1.0, low_open=False, high_open=True)
    wanted_kinds = _check_names("kinds", kinds)
    unknown = [k for k in wanted_kinds if k not in KINDS]
    if unknown or not wanted_kinds:
        raise ConfigError(f"kinds must be a non-empty list of {', '.join(KINDS)}; got {list(kinds)!r}")
    wanted_layers = None if layers is None else _check_names("layers", layers)

    sites = {name: site for name, site in _sites(model, shape).items() if site.kind in wanted_kinds}
    if wanted_layers is not None:
        missing = [name for name in wanted_layers if name not in sites]
        if missing:
            raise ConfigError(f"layers {missing} are not eligible for low-rank factorisation (kinds "
                              f"{', '.join(wanted_kinds)}; depthwise/grouped convs and layers that do not run "
                              f"are never eligible); eligible layers: {_listing(list(sites))}")
        sites = {name: sites[name] for name in wanted_layers}

    plans = [_plan_site(name, site, energy) for name, site in sites.items()]
    plans = [p for p in plans if p.macs_before > 0 and p.saving >= min_saving]
    return sorted(plans, key=lambda p: (-p.macs_saved, p.layer))


def plan_layer(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    layer: str,
    *,
    rank: int | None = None,
    ranks: tuple[int, int] | None = None,
    energy: float = 0.9,
) -> LowRankPlan:
    """The plan of one layer at a chosen ``rank`` (pointwise/linear) or ``ranks`` = (input, output)
    (tucker2), or, given neither, at the rank that keeps ``energy``. No ``min_saving`` filter: this is for
    trying ranks one by one (e.g. against measured latency) and for exactness checks at full rank."""
    model = _check_model(model)
    shape = check_input_shape(input_shape)
    energy = _check_fraction("energy", energy, low=0.0, high=1.0, low_open=True, high_open=False)
    if not isinstance(layer, str):
        raise ConfigError(f"layer must be a module name (str), got {layer!r}")
    sites = _sites(model, shape)
    if layer not in sites:
        raise ConfigError(f"layer {layer!r} is not eligible for low-rank factorisation (a plain Linear or "
                          f"groups=1 Conv2d that runs in the forward pass); eligible layers: "
                          f"{_listing(list(sites))}")
    site = sites[layer]
    if rank is None and ranks is None:
        return _plan_site(layer, site, energy)
    _check_explicit(layer, site.kind, rank, ranks)
    return _plan_site(layer, site, energy, rank=rank, ranks=None if ranks is None else tuple(ranks))


def factorise(model: nn.Module, plans: Sequence[LowRankPlan]) -> nn.Module:
    """A deep copy of ``model`` with each planned layer replaced by an ``nn.Sequential`` of its factors.

    The factors are computed from the layer's current weights (truncated SVD / HOSVD at the planned
    ranks), in the layer's dtype and on its device; the new modules take the layer's train/eval mode and
    ``requires_grad``. ``model`` itself is not changed. A plan whose layer is missing or no longer has the
    planned kind or weight shape raises :class:`ConfigError`.
    """
    model = _check_model(model)
    if isinstance(plans, LowRankPlan) or not isinstance(plans, Sequence) \
            or not all(isinstance(p, LowRankPlan) for p in plans):
        raise ConfigError("plans must be a list of LowRankPlan (from plan_lowrank or plan_layer)")
    names = [p.layer for p in plans]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"more than one plan for layers {repeated}; give one plan per layer")

    result = copy.deepcopy(model)
    replaced: set[int] = set()
    for plan in plans:
        try:
            layer = result.get_submodule(plan.layer)
        except AttributeError:
            raise ConfigError(f"planned layer {plan.layer!r} is not in the model; plan again on this model") from None
        if id(layer) in replaced:
            raise ConfigError(f"planned layer {plan.layer!r} is the same module as another planned layer")
        kind = _kind_of(layer)
        shape = tuple(layer.weight.shape) if kind is not None else None
        if kind != plan.kind or shape != plan.shape:
            found = f"{type(layer).__name__}" + ("" if shape is None else f" ({kind}, weight {shape})")
            raise ConfigError(f"planned layer {plan.layer!r} was a {plan.kind} layer with weight {plan.shape} but "
                              f"is now {found}; the model changed since planning, plan again")
        replacement = _factors(layer, plan)
        replaced.add(id(layer))
        if layer is result:
            result = replacement  # the model is the layer itself
        else:
            _replace_everywhere(result, layer, replacement)
    return result


# ---------------------------------------------------------------------------------------------- factors
def _replace_everywhere(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    # A module registered under several names (shared weights) is replaced under all of them, so the
    # network keeps sharing one set of factors rather than mixing factorised and original copies.
    for parent in list(root.modules()):
        for child_name, child in list(parent._modules.items()):
            if child is old:
                setattr(parent, child_name, new)


def _factors(layer: nn.Module, plan: LowRankPlan) -> nn.Sequential:
    weight = layer.weight.detach()
    dtype, device = weight.dtype, weight.device
    bias = layer.bias is not None
    out_ch, in_ch = plan.shape[0], plan.shape[1]
    factory = dict(dtype=dtype, device=device)

    if plan.kind == "tucker2":
        r_in, r_out = plan.ranks
        w = weight.to("cpu", torch.float64)
        u_out = torch.linalg.svd(_unfold(w, 0), full_matrices=False)[0][:, :r_out]  # (out, r_out)
        u_in = torch.linalg.svd(_unfold(w, 1), full_matrices=False)[0][:, :r_in]  # (in, r_in)
        # Core: project the weight onto the leading subspaces of both channel modes.
        core = torch.einsum("oikl,oa,ib->abkl", w, u_out, u_in)
        first = nn.Conv2d(in_ch, r_in, 1, bias=False, **factory)
        middle = nn.Conv2d(r_in, r_out, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                           dilation=layer.dilation, padding_mode=layer.padding_mode, bias=False, **factory)
        last = nn.Conv2d(r_out, out_ch, 1, bias=bias, **factory)
        weights = [u_in.T.reshape(r_in, in_ch, 1, 1), core, u_out.reshape(out_ch, r_out, 1, 1)]
        modules = [first, middle, last]
    else:
        r = plan.rank
        u, s, vh = torch.linalg.svd(_unfold(weight, 0).reshape(out_ch, in_ch), full_matrices=False)
        root = s[:r].sqrt()  # sqrt(S) on both sides: balanced factors, which fine-tune better than U vs SV^T
        left = root[:, None] * vh[:r]  # (r, in)
        right = u[:, :r] * root[None, :]  # (out, r)
        if plan.kind == "linear":
            first = nn.Linear(in_ch, r, bias=False, **factory)
            last = nn.Linear(r, out_ch, bias=bias, **factory)
            weights = [left, right]
        else:
            # Stride and padding go on the first 1x1: it then runs only at the output positions (cheaper),
            # and padding commutes with a per-position channel mix, so the result is unchanged.
            first = nn.Conv2d(in_ch, r, 1, stride=layer.stride, padding=layer.padding,
                              padding_mode=layer.padding_mode, bias=False, **factory)
            last = nn.Conv2d(r, out_ch, 1, bias=bias, **factory)
            weights = [left.reshape(r, in_ch, 1, 1), right.reshape(out_ch, r, 1, 1)]
        modules = [first, last]

    with torch.no_grad():
        for module, value in zip(modules, weights):
            module.weight.copy_(value.to(**factory))
            module.weight.requires_grad_(layer.weight.requires_grad)
        if bias:
            modules[-1].bias.copy_(layer.bias.detach())
            modules[-1].bias.requires_grad_(layer.bias.requires_grad)
    sequence = nn.Sequential(*modules)
    sequence.train(layer.training)
    return sequence
