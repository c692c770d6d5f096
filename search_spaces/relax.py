"""Relaxing a space for differentiable (one-shot) search: decisions, mixed operations, a relaxed supernet.

A relaxable space names its discrete *decisions* (an NB201 edge's op, an FBNet layer's block, a DARTS cell
edge's op) and builds a :class:`RelaxedSupernet` in which every decision is a :class:`MixedOp` over all its
options. A differentiable strategy (:mod:`nas.strategies.darts`) owns the architecture parameters (one logit
vector per decision) and hands the supernet, for each forward pass, the :class:`Gates` it mixes with:

- ``softmax`` (DARTS): every option runs, weighted by its probability;
- ``gumbel`` (GDAS / FBNet): one option per decision is drawn, only it runs, scaled by a gate whose value is 1
  and whose gradient is that of its probability (straight-through), so the cost of a step is one network's.

The state a forward pass uses travels as an argument, never as a global. ``derive`` turns the probabilities
back into an architecture of the space, by the space's published rule (argmax per edge or layer; DARTS's
top-2 incoming edges per node with ``none`` excluded). ``extract`` gives the discrete network of an
architecture with the supernet's weights: with one-hot gates the supernet computes exactly what it computes
(the contract ``tests/test_relax.py`` checks for every relaxable space), and it is what ``final.train=finetune``
starts from.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from nas.arch import Arch, Value

#: How a relaxed supernet mixes the options of a decision (``strategy.sampling``).
SAMPLINGS = ("softmax", "gumbel")


@dataclass(frozen=True)
class Decision:
    """One discrete choice of the relaxed space: its name (a label of the space, or ``normal.node2.in0`` for a
    DARTS edge) and its options, in the order the architecture parameters index them."""

    name: str
    options: tuple[str, ...]


@dataclass
class Gates:
    """What one forward pass of a relaxed supernet mixes with.

    ``weights[d]`` is decision ``d``'s weight vector (probabilities, or a straight-through one-hot); with
    ``active`` given, decision ``d`` runs option ``active[d]`` only. ``aux_skip`` (DARTS-'s auxiliary skip
    connection) adds ``aux_skip * input`` to every mixed op whose output has its input's shape. ``edge_weights``
    (PC-DARTS's edge normalisation) holds, for a space that uses it, one weight per incoming edge of a node."""

    weights: list[torch.Tensor]
    active: list[int] | None = None
    aux_skip: float = 0.0
    edge_weights: dict[str, torch.Tensor] = field(default_factory=dict)

    @staticmethod
    def one_hot(decisions: Sequence[Decision], selection: Sequence[int]) -> Gates:
        """Hard gates that run option ``selection[d]`` of every decision (an architecture, as gates)."""
        weights = []
        for decision, index in zip(decisions, selection):
            w = torch.zeros(len(decision.options))
            w[int(index)] = 1.0
            weights.append(w)
        return Gates(weights=weights, active=[int(i) for i in selection])


class MixedOp(nn.Module):
    """A decision's options as one module: ``forward(x, weights, active, aux_skip)`` mixes them.

    Subclasses say how option ``index`` runs (:meth:`run`): separate candidate modules, or one weight-sharing
    block set to the option (the block spaces' layers)."""

    num_options: int

    @abc.abstractmethod
    def run(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """The output of option ``index`` on ``x``."""

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: int | None = None,
                aux_skip: float = 0.0) -> torch.Tensor:
        if active is None:
            out = None
            for index in range(self.num_options):
                term = weights[index] * self.run(index, x)
                out = term if out is None else out + term
        else:
            out = weights[active] * self.run(active, x)
        if aux_skip and out.shape == x.shape:
            out = out + aux_skip * x
        return out


class CandidateMix(MixedOp):
    """A mixed op over separate candidate modules (cell spaces, FBNet's blocks)."""

    def __init__(self, candidates: Sequence[nn.Module]) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(candidates)
        self.num_options = len(self.candidates)

    def run(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.candidates[index](x)


class RelaxedSupernet(nn.Module, abc.ABC):
    """Every option of every decision in one network; ``forward(x, gates)`` mixes them as ``gates`` say."""

    decisions: tuple[Decision, ...]

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, gates: Gates) -> torch.Tensor:
        """Logits of ``x`` with each decision mixed by ``gates``."""

    @abc.abstractmethod
    def extract(self, arch: Mapping[str, Value]) -> nn.Module:
        """The discrete network of ``arch`` (a member of the space) with this supernet's weights and BatchNorm
        statistics; in eval mode its outputs equal ``forward(x, gates_of(arch))``."""

    @abc.abstractmethod
    def gates_of(self, arch: Mapping[str, Value]) -> Gates:
        """The one-hot gates under which this supernet computes ``arch``'s network."""

    def edge_groups(self) -> dict[str, int]:
        """PC-DARTS edge normalisation: ``{node name: number of incoming edges}`` (empty: not used)."""
        return {}


class RelaxableSpace(abc.ABC):
    """A space that can be relaxed for differentiable search (mixed into a :class:`~search_spaces.base.SearchSpace`)."""

    #: How the space's options are mixed when ``strategy.sampling=auto``: ``softmax`` where every option of
    #: every decision fits in one forward pass (cell spaces), ``gumbel`` where it does not (layer-wise spaces).
    relax_sampling: str = "softmax"
    #: Weight steps a search makes when ``strategy.epochs`` is null: the epochs are this many steps over the
    #: data's weight half, rounded up, so a search takes about the same minutes on any dataset (sized per
    #: space from its measured step time to fit the embedded data's 10-minute search on this 2-core CPU).
    relax_steps: int = 500
    #: The weights' learning rate when ``strategy.lr`` is null: DARTS's 0.025 where every option trains every
    #: step (softmax); higher where each step trains one sampled path (gumbel), which learns more slowly per
    #: step (measured on FBNet with the embedded digits: at 0.025 the supernet stayed at chance for 108 steps).
    relax_lr: float = 0.025
    #: Whether :meth:`relax` supports PC-DARTS's partial channel connections (``partial_channels > 1``).
    supports_partial_channels: bool = False
    #: Whether any one option per decision is an architecture (:meth:`arch_of`), so a cost is a sum over
    #: decisions and a hardware-aware search applies (not so for DARTS cells, which keep 2 edges per node).
    costable: bool = True

    @abc.abstractmethod
    def decisions(self) -> tuple[Decision, ...]:
        """The decisions of the relaxed space, in the order of the architecture parameters."""

    @abc.abstractmethod
    def relax(self, *, partial_channels: int = 1) -> RelaxedSupernet:
        """A freshly initialised relaxed supernet (``partial_channels`` > 1: PC-DARTS, where supported)."""

    def derive(self, probs: Sequence[np.ndarray]) -> Arch:
        """The architecture the probabilities (one vector per decision) stand for. Default: the most probable
        option of every decision (NB201, FBNet, the block spaces)."""
        return self.arch_of([int(np.argmax(p)) for p in probs])

    @abc.abstractmethod
    def arch_of(self, selection: Sequence[int]) -> Arch:
        """The architecture that runs option ``selection[d]`` of every decision (canonical, validated)."""

    def selection_of(self, arch: Mapping[str, Value]) -> list[int]:
        """The option index of every decision for ``arch`` (inverse of :meth:`arch_of`). Default: decisions are
        the space's labels."""
        return [list(d.options).index(str(arch[d.name])) for d in self.decisions()]


def label_decisions(choices: Mapping[str, Sequence[Value]]) -> tuple[Decision, ...]:
    """Decisions that are exactly a space's labels (each option a string op name)."""
    return tuple(Decision(label, tuple(str(o) for o in options)) for label, options in choices.items())
