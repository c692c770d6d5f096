"""The block spaces relaxed for differentiable search: every searchable layer a mixed op over its ops.

Each layer is a :class:`ChoiceMix`, a :class:`~search_spaces.relax.MixedOp` around the layer's SPOS
:class:`~search_spaces.layerwise.ChoiceLayer`: option ``i`` runs by setting the layer's weight-sharing block to
op ``i`` (kernels, expansions and SE of a family share one set of weights, as in single-path training), so the
supernet holds one block per family per layer, not one per op. Sampled with Gumbel-softmax (``gumbel``): one
op per layer runs, and a step costs what a single-path step costs. ``extract`` is the SPOS supernet's copy
(:func:`~search_spaces.layerwise.copy_path`).

Measured (batch 64, 1 input channel, the conf defaults: width 0.5, 28x28; CPU time on one thread): a Gumbel
step (forward + backward, one random op per layer) takes 0.09 s on mobilenet (a SPOS step 0.07 s), 0.08 s on
shufflenet (0.08), 0.11 s on ghostnet (0.10), 0.16 s on blocks (0.14). At ~56 steps an epoch on the embedded
digits (1,750 + 1,750 images, a weight and an architecture step per batch), the default 20 epochs (SPOS's
budget) take 2-3 minutes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.arch import Value
from search_spaces.blocks import init_weights
from search_spaces.layerwise import ChoiceLayer, LayerwiseNet, LayerwiseSpace, _head, _stem, copy_path
from search_spaces.relax import Gates, MixedOp, RelaxedSupernet


class ChoiceMix(MixedOp):
    """A layer's ops as a mixed op over one weight-sharing :class:`ChoiceLayer` (``run`` sets it to the op)."""

    def __init__(self, choice: ChoiceLayer, ops: Sequence[str]) -> None:
        super().__init__()
        self.choice = choice
        self.ops = tuple(ops)
        self.num_options = len(self.ops)

    def run(self, index: int, x: torch.Tensor) -> torch.Tensor:
        self.choice.set_active(self.ops[index])
        return self.choice(x)


class LayerwiseRelaxedSupernet(RelaxedSupernet):
    """Static stem and head, one :class:`ChoiceMix` per layer; channels-last weights, as the SPOS supernet."""

    def __init__(self, space: LayerwiseSpace) -> None:
        super().__init__()
        self._space = space
        self.decisions = space.decisions()
        self.stem = _stem(space)
        choices = space.choices()
        self.layers = nn.ModuleList(ChoiceMix(ChoiceLayer(layer, space.families, choices[label]), choices[label])
                                    for layer, label in zip(space.plan.layers, space.labels))
        self.head = _head(space)
        init_weights(self)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, gates: Gates) -> torch.Tensor:
        if len(gates.weights) != len(self.layers):
            raise ValueError(f"{self._space.name} supernet: gates hold {len(gates.weights)} weight vectors, expected "
                             f"one per layer ({len(self.layers)})")
        x = self.stem(x)
        for k, layer in enumerate(self.layers):
            x = layer(x, gates.weights[k], None if gates.active is None else gates.active[k], gates.aux_skip)
        return self.head(x)

    def gates_of(self, arch: Mapping[str, Value]) -> Gates:
        return Gates.one_hot(self.decisions, self._space.selection_of(self._space.validate(arch)))

    def extract(self, arch: Mapping[str, Value]) -> LayerwiseNet:
        """The :class:`LayerwiseNet` of ``arch`` with this supernet's weights and BN statistics (each layer's
        block is left set to ``arch``'s op; the next forward sets it again from its gates)."""
        arch = self._space.validate(arch)
        for mix, op in zip(self.layers, self._space.ops_of(arch)):
            mix.choice.set_active(op)
        net = copy_path(self._space, arch, self.stem, [mix.choice for mix in self.layers], self.head)
        return net.train(self.training)
