"""``strategy=darts``: differentiable architecture search over a relaxed space (one-shot family).

One class covers the published variants as options, since they differ only in how a step mixes the options
and what the architecture loss adds:

- DARTS (Liu et al., 2019): ``sampling=softmax``, ``order=first|second`` (bilevel gradient,
  :mod:`nas.oneshot.bilevel`), Adam on the architecture parameters, weights by SGD on the other half of the
  training split;
- GDAS / FBNet (Dong & Yang 2019; Wu et al. 2019): ``sampling=gumbel``: one option per decision drawn from
  the Gumbel-softmax at temperature ``tau`` (annealed ``tau_max -> tau_min``), only it runs, with a
  straight-through gate; the cost of a step is one network's, which is what makes layer-wise spaces (FBNet,
  MobileNet) searchable on a CPU;
- PC-DARTS (Xu et al., 2020): ``partial_channels=K`` (cell spaces): 1/K of the channels go through each mixed
  op, and node inputs are weighted by edge-normalisation parameters;
- the collapse guard, on by default: ``guard=beta_decay`` (beta-DARTS, Ye et al. 2022) adds
  ``beta_weight`` x the mean log-sum-exp of the architecture parameters to their loss; its gradient is each
  option's probability, so it pulls hardest on whichever option dominates and stops the early
  rich-get-richer run of parameter-free operations (on NB201 with the embedded data plain DARTS ends with 5
  of 6 edges pooling; guarded, every edge a 3x3 convolution: ``experiments/darts_nb201.py``).
  ``guard=aux_skip`` is DARTS- (Chu et al. 2021): an auxiliary skip connection on every shape-preserving mixed
  op, its weight decaying 1 -> 0 (here it made pooling win faster: it neutralises the skip's advantage, not
  pooling's); ``guard=none`` is plain DARTS;
- FBNet / ProxylessNAS hardware-aware search: with ``constraint.latency_ms`` the architecture loss adds
  ``lambda * E[cost] / budget`` (E[cost] from the target's latency model, :mod:`nas.oneshot.cost`), and
  ``lambda`` is adapted by dual ascent after every architecture step so the derived architecture's cost
  settles at ``budget_target`` of the budget; ``cost=macs`` searches with MACs instead (the FLOPs-proxy
  baseline). Without a budget, ``cost_weight > 0`` gives FBNet's fixed trade-off.

The state (weights, architecture parameters, both optimizers, lambda, random generators, per-epoch history)
is checkpointed after every epoch; an interrupted search resumes where it stopped and ends as an
uninterrupted one would (``tests/test_darts.py``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nas.arch import Arch, arch_id
from nas.checkpoint import load_checkpoint, optimizer_from_tensors, optimizer_to_tensors, save_checkpoint
from nas.errors import ConfigError
from nas.objectives import Constraints, Objective
from nas.oneshot.bilevel import first_order, second_order
from nas.oneshot.cost import COSTS, DecisionCosts, constrained_argmax
from nas.registry import register_strategy
from search_spaces.base import SearchSpace
from search_spaces.options import one_of, positive_int, positive_number
from search_spaces.relax import SAMPLINGS, Gates, RelaxableSpace, RelaxedSupernet

log = logging.getLogger("nas.search")

ORDERS = ("first", "second")
GUARDS = ("aux_skip", "beta_decay", "none")
RETRAINS = ("scratch", "finetune")
_NAME = "darts"


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"strategy {_NAME}: {name} must be a number >= 0, got {value!r}")
    return float(value)


@dataclass
class SearchOutcome:
    """What a differentiable search hands to the run: the derived architecture and how it was derived, the
    per-epoch history (architecture probabilities, derived architecture, costs, lambda, losses) and times."""

    arch: Arch
    derivation: str
    history: list[dict]
    probs: list[list[float]]
    seconds: float
    cpu_seconds: float
    resumed_from: int = 0
    extra: dict = field(default_factory=dict)


@register_strategy(_NAME)
class DartsStrategy:
    """Differentiable search over a :class:`~search_spaces.relax.RelaxableSpace` (see the module docstring)."""

    name = _NAME
    #: One-shot: the run trains a relaxed supernet with this strategy instead of an ask/tell loop.
    one_shot = True

    def __init__(self, *, space: SearchSpace, objectives: Sequence[Objective], constraints: Constraints | None = None,
                 seed: int = 0, budget: int | None = None, order: str = "first", sampling: str = "auto",
                 partial_channels: int = 1, guard: str = "beta_decay", epochs: int | None = None,
                 warmup_epochs: int = 0, batch_size: int = 64, lr: float | None = None, lr_min: float = 0.001,
                 momentum: float = 0.9, weight_decay: float = 3e-4, grad_clip: float = 5.0, arch_lr: float | None = None,
                 arch_weight_decay: float = 1e-3, tau_max: float = 10.0, tau_min: float = 0.1,
                 cost: str = "latency", cost_weight: float = 0.0, lambda_lr: float = 0.5,
                 budget_target: float = 0.95, budget_band: float = 0.9, beta_weight: float = 1.0, retrain: str = "scratch", retrain_epochs: int = 4,
                 retrain_lr: float = 0.05) -> None:
        if not isinstance(space, RelaxableSpace):
            from nas.registry import SPACES

            relaxable = [n for n in SPACES.names() if issubclass(SPACES.get(n), RelaxableSpace)]
            raise ConfigError(f"strategy=darts cannot relax space {space.name!r} (no mixed-operation supernet); "
                              f"relaxable spaces: {', '.join(relaxable)}; for {space.name} use a multi-trial "
                              f"strategy (strategy=auto)")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self.space, self.objectives = space, tuple(objectives)
        self.constraints = constraints or Constraints()
        self.seed, self.queries = int(seed), budget  # budget.queries does not apply to a one-shot search
        self.order = one_of(f"strategy {_NAME}", "order", order, ORDERS)
        sampling = one_of(f"strategy {_NAME}", "sampling", sampling, ("auto", *SAMPLINGS))
        self.sampling_requested = sampling
        self.sampling = space.relax_sampling if sampling == "auto" else sampling
        self.partial_channels = positive_int(f"strategy {_NAME}", "partial_channels", partial_channels)
        if self.partial_channels > 1 and not space.supports_partial_channels:
            raise ConfigError(f"strategy.partial_channels={partial_channels}: PC-DARTS's partial channel connections "
                              f"need a cell space whose edges keep their channel count (darts, nb201); space "
                              f"{space.name!r} has none, set strategy.partial_channels=1")
        self.guard = one_of(f"strategy {_NAME}", "guard", guard, GUARDS)
        self.beta_weight = _non_negative("beta_weight", beta_weight)
        # None: sized when the search knows its data (the space's relax_steps weight steps, :meth:`resolve_epochs`)
        self.epochs = None if epochs is None else positive_int(f"strategy {_NAME}", "epochs", epochs)
        self.epochs_requested = self.epochs
        self.epochs_source = "given"
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0 or (
                self.epochs is not None and warmup_epochs >= self.epochs):
            raise ConfigError(f"strategy {_NAME}: warmup_epochs must be an integer in [0, epochs={self.epochs}), "
                              f"got {warmup_epochs!r}")
        self.warmup_epochs = warmup_epochs
        self.batch_size = positive_int(f"strategy {_NAME}", "batch_size", batch_size)
        if arch_lr is not None:
            positive_number(f"strategy {_NAME}", "arch_lr", arch_lr)
        lr_source = "given" if lr is not None else "space default"
        lr = space.relax_lr if lr is None else lr
        for key, value in (("lr", lr), ("momentum", momentum), ("tau_max", tau_max),
                           ("tau_min", tau_min), ("grad_clip", grad_clip), ("lambda_lr", lambda_lr),
                           ("retrain_lr", retrain_lr)):
            positive_number(f"strategy {_NAME}", key, value)
        self.lr, self.momentum = float(lr), float(momentum)
        self.lr_source = lr_source
        self.arch_lr = None if arch_lr is None else float(arch_lr)
        self.arch_lr_resolved: dict = {"value": self.arch_lr, "source": "given"} if arch_lr is not None else {}
        self.lr_min = _non_negative("lr_min", lr_min)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.arch_weight_decay = _non_negative("arch_weight_decay", arch_weight_decay)
        self.grad_clip, self.tau_max, self.tau_min = float(grad_clip), float(tau_max), float(tau_min)
        if self.tau_min > self.tau_max:
            raise ConfigError(f"strategy {_NAME}: tau_min={tau_min} must not exceed tau_max={tau_max}")
        self.cost = one_of(f"strategy {_NAME}", "cost", cost, COSTS)
        self.cost_weight = _non_negative("cost_weight", cost_weight)
        self.lambda_lr = float(lambda_lr)
        self.budget_target = positive_number(f"strategy {_NAME}", "budget_target", budget_target, maximum=1.0)
        self.budget_band = _non_negative("budget_band", budget_band)
        if self.budget_band > 1:
            raise ConfigError(f"strategy {_NAME}: budget_band must be in [0, 1], got {budget_band!r}")
        self.retrain = one_of(f"strategy {_NAME}", "retrain", retrain, RETRAINS)
        self.retrain_epochs = _non_negative_int("retrain_epochs", retrain_epochs)
        self.retrain_lr = float(retrain_lr)
        if self.hardware_aware:
            from nas.oneshot.cost import check_relaxable_cost

            check_relaxable_cost(space)

    def resolve_epochs(self, steps_per_epoch: int) -> int:
        """``strategy.epochs``, or with it null the epochs that make the space's ``relax_steps`` weight steps."""
        if self.epochs_requested is None:
            self.epochs = max(1, math.ceil(self.space.relax_steps / max(steps_per_epoch, 1)), self.warmup_epochs + 1)
            self.epochs_source = (f"sized: the space's {self.space.relax_steps} weight steps / {steps_per_epoch} "
                                  f"per epoch, rounded up")
        return self.epochs

    # ------------------------------------------------------------------ what the run asks
    @property
    def hardware_aware(self) -> bool:
        """Whether the architecture loss carries a cost term (a latency budget, or a fixed cost weight)."""
        return self.constraints.latency_ms is not None or self.cost_weight > 0

    def resolution(self) -> dict:
        """``results.json``'s ``strategy_resolved``: the settings this search ran with."""
        epochs = ({"value": self.epochs, "source": self.epochs_source} if self.epochs is not None else
                  {"value": None, "source": "no search ran (arch= given)"})
        settings = {"epochs": epochs,
                    "sampling": {"value": self.sampling, "source": "space default" if self.sampling_requested == "auto"
                                 else "given"}, "arch_lr": dict(self.arch_lr_resolved),
                    "lr": {"value": self.lr, "source": self.lr_source}}
        return {"requested": self.name, "name": self.name, "reason": "strategy=darts was requested",
                "family": "one-shot", "budget": None, "settings": settings,
                "options": {"order": self.order, "partial_channels": self.partial_channels, "guard": self.guard,
                            "cost": self.cost if self.hardware_aware else None, "batch_size": self.batch_size,
                            "warmup_epochs": self.warmup_epochs, "retrain": self.retrain,
                            "retrain_epochs": self.retrain_epochs}}

    def identity(self) -> dict:
        """Everything that changes the search's result (its checkpoint is reused only under the same)."""
        keys = ("order", "sampling", "partial_channels", "guard", "epochs", "warmup_epochs", "batch_size", "lr",
                "lr_min", "momentum", "weight_decay", "grad_clip", "arch_lr", "arch_weight_decay", "tau_max",
                "tau_min", "cost", "cost_weight", "lambda_lr", "budget_target", "budget_band", "beta_weight", "seed")
        return ({k: getattr(self, k) for k in keys} | {"epochs": self.epochs_requested,
                                                        "budget_ms": self.constraints.latency_ms})

    # ------------------------------------------------------------------ the search
    def search(self, supernet: RelaxedSupernet, train: tuple[torch.Tensor, torch.Tensor], *, resolution: int,
               costs: DecisionCosts | None = None, budget: float | None = None, checkpoint: Path | None = None,
               progress: bool = True, stop_after: int | None = None) -> SearchOutcome:
        """Train ``supernet``'s weights on one half of ``train`` and its architecture parameters on the other;
        ``budget`` is in ``costs``'s unit. ``stop_after`` ends after that many epochs (to test resuming)."""
        run = _Search(self, supernet, train, resolution=resolution, costs=costs, budget=budget)
        resumed = run.restore(checkpoint) if checkpoint is not None else 0
        started, cpu = time.perf_counter(), time.process_time()
        bar = tqdm(total=self.epochs, initial=run.epoch, disable=not progress, unit="epoch", dynamic_ncols=True,
                   desc=f"search ({self.name}, {self.sampling}, {self.order} order, guard {self.guard})")
        try:
            while run.epoch < self.epochs and (stop_after is None or run.epoch < stop_after):
                record = run.train_epoch()
                if checkpoint is not None:
                    run.save(checkpoint)
                bar.update(1)
                bar.set_postfix_str(_postfix(record, costs), refresh=True)
        finally:
            bar.close()
        seconds = run.seconds + time.perf_counter() - started
        cpu_seconds = run.cpu_seconds + time.process_time() - cpu
        arch, derivation = run.derive()
        return SearchOutcome(arch=arch, derivation=derivation, history=run.history, probs=run.probs(),
                             seconds=seconds, cpu_seconds=cpu_seconds, resumed_from=resumed,
                             extra={"lambda": run.lam, "steps_per_epoch": run.steps})


def _non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"strategy {_NAME}: {name} must be an integer >= 0, got {value!r}")
    return int(value)


def _postfix(record: Mapping, costs: DecisionCosts | None) -> str:
    text = f"val acc {record['arch_acc']:.3f} derived {record['derived'][:60]}"
    if costs is not None and record.get("derived_cost") is not None:
        text += f" cost {record['derived_cost']:.3g} {costs.unit} lambda {record['lambda']:.3g}"
    return text


class _Search:
    """The mutable state of one search (weights, architecture parameters, optimizers, position, history)."""

    def __init__(self, strategy: DartsStrategy, supernet: RelaxedSupernet, train: tuple[torch.Tensor, torch.Tensor],
                 *, resolution: int, costs: DecisionCosts | None, budget: float | None) -> None:
        self.s, self.net, self.costs, self.budget = strategy, supernet, costs, budget
        self.resolution = resolution
        X, y = train
        self.rng = np.random.default_rng(strategy.seed)
        order = self.rng.permutation(len(y))
        half = len(y) // 2
        self.w_data = (X[order[:half]], y[order[:half]])
        self.a_data = (X[order[half:]], y[order[half:]])
        self.batch = min(strategy.batch_size, half)
        if self.batch < 2:
            raise ConfigError(f"strategy=darts needs at least 4 training images (half for the weights, half for the "
                              f"architecture), got {len(y)}")
        self.steps = half // self.batch
        strategy.resolve_epochs(self.steps)
        self.gen = torch.Generator().manual_seed(strategy.seed)
        decisions = supernet.decisions
        self.alphas = [torch.nn.Parameter(1e-3 * torch.randn(len(d.options), generator=self.gen)) for d in decisions]
        self.betas = {name: torch.nn.Parameter(1e-3 * torch.randn(n, generator=self.gen))
                      for name, n in supernet.edge_groups().items()}
        arch_params = [*self.alphas, *self.betas.values()]
        self.weights = [p for p in supernet.parameters() if p.requires_grad]
        self.w_opt = torch.optim.SGD(self.weights, lr=strategy.lr, momentum=strategy.momentum,
                                     weight_decay=strategy.weight_decay)
        self.a_opt = torch.optim.Adam(arch_params, lr=self._arch_lr(), betas=(0.5, 0.999),
                                      weight_decay=strategy.arch_weight_decay)
        self.arch_params = arch_params
        self.lam = 0.0 if budget is not None else strategy.cost_weight
        self.epoch, self.seconds, self.cpu_seconds = 0, 0.0, 0.0
        self.history: list[dict] = []
        self._uniform_cost = None
        if costs is not None:
            with torch.no_grad():
                self._uniform_cost = float(costs.expected([torch.full((len(d.options),), 1 / len(d.options))
                                                           for d in decisions]))

    def _arch_lr(self) -> float:
        """``strategy.arch_lr``, or with it null, DARTS's 3e-4 scaled to the number of architecture steps this
        search makes: DARTS takes ~19,550 of them on CIFAR-10 (50 epochs x 391), a search on the embedded data
        a few hundred, and at 3e-4 the probabilities would barely move (measured on NB201: 0.2 +- 0.01 after
        2 epochs). Kept within [3e-4, 0.1]."""
        s = self.s
        if s.arch_lr is not None:
            return s.arch_lr
        arch_steps = max((s.epochs - s.warmup_epochs) * self.steps, 1)
        value = float(min(max(3e-4 * 19_550 / arch_steps, 3e-4), 0.1))
        s.arch_lr_resolved = {"value": round(value, 6), "source": "sized",
                              "rule": f"3e-4 x 19550 / {arch_steps} architecture steps, within [3e-4, 0.1]"}
        return value

    # ---------------------------------------------------------------- gates
    def _progress(self, step: int) -> float:
        return (self.epoch * self.steps + step) / max(self.s.epochs * self.steps, 1)

    def gates(self, step: int, noise: list[torch.Tensor] | None, *, detach: bool) -> Gates:
        alphas = [a.detach() if detach else a for a in self.alphas]
        aux = 1.0 - self._progress(step) if self.s.guard == "aux_skip" else 0.0
        edges = {name: F.softmax(b.detach() if detach else b, dim=-1) for name, b in self.betas.items()}
        if noise is None:
            return Gates(weights=[F.softmax(a, dim=-1) for a in alphas], aux_skip=aux, edge_weights=edges)
        tau = self.tau(step)
        weights, active = [], []
        for a, g in zip(alphas, noise):
            soft = F.softmax((a + g) / tau, dim=-1)
            k = int(torch.argmax(soft))
            hard = torch.zeros_like(soft)
            hard[k] = 1.0
            weights.append(hard - soft.detach() + soft)  # value one-hot, gradient of the soft sample
            active.append(k)
        return Gates(weights=weights, active=active, aux_skip=aux, edge_weights=edges)

    def tau(self, step: int) -> float:
        return self.s.tau_max - (self.s.tau_max - self.s.tau_min) * self._progress(step)

    def noise(self) -> list[torch.Tensor] | None:
        if self.s.sampling != "gumbel":
            return None
        return [-torch.log(-torch.log(torch.rand(len(a), generator=self.gen).clamp_(1e-10, 1 - 1e-10)))
                for a in self.alphas]

    def probs(self) -> list[list[float]]:
        return [F.softmax(a.detach(), dim=-1).tolist() for a in self.alphas]

    # ---------------------------------------------------------------- one epoch
    def _cost_term(self) -> torch.Tensor | None:
        if self.costs is None or self.lam == 0.0:
            return None  # lambda starts at 0 with a budget: the first steps are DARTS's own
        expected = self.costs.expected([F.softmax(a, dim=-1) for a in self.alphas])
        scale = self.budget if self.budget is not None else self._uniform_cost
        return self.lam * expected / max(float(scale), 1e-12)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, step: int, noise, *, detach: bool,
              with_cost: bool) -> torch.Tensor:
        logits = self.net(x, self.gates(step, noise, detach=detach))
        loss = F.cross_entropy(logits, y)
        if not detach and self.s.guard == "beta_decay":
            # beta-DARTS: the mean log-sum-exp of the architecture parameters; its gradient is each option's
            # probability, so it pulls hardest on the dominant options and keeps one from running away early
            loss = loss + self.s.beta_weight * torch.stack([torch.logsumexp(a, -1) for a in self.alphas]).mean()
        if with_cost:
            term = self._cost_term()
            if term is not None:
                loss = loss + term
        return loss

    def _batch(self, data, order: np.ndarray, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        from nas.accuracy import resize_batch

        idx = torch.from_numpy(order[step * self.batch:(step + 1) * self.batch])
        return resize_batch(data[0][idx], self.resolution), data[1][idx]

    def train_epoch(self) -> dict:
        s = self.s
        started, cpu = time.perf_counter(), time.process_time()
        w_order = self.rng.permutation(len(self.w_data[1]))
        a_order = self.rng.permutation(len(self.a_data[1]))
        self.net.train()
        search_arch = self.epoch >= s.warmup_epochs
        totals = {"train_loss": 0.0, "train_correct": 0, "arch_loss": 0.0, "arch_correct": 0, "seen": 0}
        for step in range(self.steps):
            lr = s.lr_min + 0.5 * (s.lr - s.lr_min) * (1 + math.cos(math.pi * self._progress(step)))
            for group in self.w_opt.param_groups:
                group["lr"] = lr
            xw, yw = self._batch(self.w_data, w_order, step)
            if search_arch:
                xa, ya = self._batch(self.a_data, a_order, step)
                noise = self.noise()
                val = lambda: self._loss(xa, ya, step, noise, detach=False, with_cost=True)  # noqa: E731
                if s.order == "second":
                    tr = lambda: self._loss(xw, yw, step, noise, detach=False, with_cost=False)  # noqa: E731
                    grads, loss = second_order(tr, val, self.weights, self.arch_params, xi=lr)
                else:
                    grads, loss = first_order(val, self.arch_params)
                self.a_opt.zero_grad(set_to_none=True)
                for p, g in zip(self.arch_params, grads):
                    p.grad = g.detach()
                self.a_opt.step()
                totals["arch_loss"] += loss
                with torch.no_grad():
                    logits = self.net(xa, self.gates(step, noise, detach=True))
                totals["arch_correct"] += int((logits.argmax(1) == ya).sum())
                self._adapt_lambda()
            noise = self.noise()
            self.w_opt.zero_grad(set_to_none=True)
            logits = self.net(xw, self.gates(step, noise, detach=True))
            loss = F.cross_entropy(logits, yw)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.weights, s.grad_clip)
            self.w_opt.step()
            totals["train_loss"] += float(loss.detach())
            totals["train_correct"] += int((logits.detach().argmax(1) == yw).sum())
            totals["seen"] += len(yw)
        self.epoch += 1
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += time.process_time() - cpu
        record = self._record(totals, time.perf_counter() - started)
        self.history.append(record)
        return record

    def _adapt_lambda(self) -> None:
        """Dual ascent on the budget: lambda grows while the expected cost (smooth in the parameters; the derived
        network's cost jumps between extremes while the probabilities are flat) is above
        ``budget_target * budget`` and falls while it is below, below 0 too: a negative lambda rewards cost,
        so a search whose derived network sits well under the budget is steered to spend it (the target is
        the budget, not the cheapest network; the final derivation never exceeds the budget)."""
        if self.budget is None or self.costs is None:
            return
        with torch.no_grad():
            ratio = float(self.costs.expected([F.softmax(a, -1) for a in self.alphas])) / self.budget
        self.lam = self.lam + self.s.lambda_lr * (ratio - self.s.budget_target)

    def _record(self, totals: Mapping, seconds: float) -> dict:
        arch, derivation = self.derive()
        space = self.s.space
        seen = max(int(totals["seen"]), 1)
        record = {"epoch": self.epoch, "probs": [[round(v, 5) for v in p] for p in self.probs()],
                  "derived": _public_text(space.to_public(arch)), "derived_id": arch_id(arch),
                  "derivation": derivation, "lambda": self.lam, "tau": self.tau(self.steps) if self.s.sampling == "gumbel"
                  else None, "aux_skip": (1.0 - self._progress(self.steps)) if self.s.guard == "aux_skip" else 0.0,
                  "train_loss": totals["train_loss"] / max(self.steps, 1), "train_acc": totals["train_correct"] / seen,
                  "arch_loss": totals["arch_loss"] / max(self.steps, 1), "arch_acc": totals["arch_correct"] / seen,
                  "seconds": round(seconds, 2)}
        if self.betas:
            record["edge_probs"] = {n: [round(v, 5) for v in F.softmax(b.detach(), -1).tolist()]
                                    for n, b in self.betas.items()}
        if self.costs is not None:
            with torch.no_grad():
                record["expected_cost"] = float(self.costs.expected([F.softmax(a, -1) for a in self.alphas]))
            record["derived_cost"] = self.costs.evaluate(arch)
        return record

    def derive(self) -> tuple[Arch, str]:
        """The derived architecture: the space's rule on the probabilities; with a budget, the most probable
        architecture whose cost is within ``[budget_band, 1] x budget`` (:func:`constrained_argmax`): a user
        with a budget wants the most accurate network it buys, and one far under it leaves accuracy unspent.
        Where no architecture lies in the band, the most probable within the budget."""
        probs = [np.asarray(p) for p in self.probs()]
        arch = self.s.space.derive(probs)
        if self.budget is None or self.costs is None:
            return arch, "argmax"
        cost = self.costs.evaluate(arch)
        low = self.s.budget_band * self.budget
        if low <= cost <= self.budget:
            return arch, "argmax (within the budget band)"
        band = f"[{self.s.budget_band:g}, 1] x budget"
        for lower, words in ((low, f"most probable within {band}"), (None, "most probable within the budget")):
            selection = constrained_argmax(probs, self.costs, self.budget, low=lower)
            if selection is not None:
                candidate = self.s.space.arch_of(selection)
                if (lower or 0.0) <= self.costs.evaluate(candidate) <= self.budget:
                    why = "argmax exceeded the budget" if cost > self.budget else "argmax used less of it"
                    return candidate, f"{words} ({why})"
        return arch, "argmax (no architecture fits the budget)"

    # ---------------------------------------------------------------- checkpoints
    def save(self, path: Path) -> None:
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors |= {f"alpha.{i}": a.detach() for i, a in enumerate(self.alphas)}
        tensors |= {f"beta.{n}": b.detach() for n, b in self.betas.items()}
        w_t, w_meta = optimizer_to_tensors(self.w_opt.state_dict(), prefix="wopt.")
        a_t, a_meta = optimizer_to_tensors(self.a_opt.state_dict(), prefix="aopt.")
        tensors |= w_t | a_t
        tensors["torch_gen"] = self.gen.get_state()
        meta = {"identity": self.s.identity(), "epoch": self.epoch, "lambda": self.lam, "history": self.history,
                "rng": self.rng.bit_generator.state, "w_opt": w_meta, "a_opt": a_meta, "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds, "budget": self.budget}
        save_checkpoint(path, tensors, meta)

    def restore(self, path: Path) -> int:
        """Load ``path`` when it holds this search's state (same settings); the number of epochs it had done."""
        if not Path(path).is_file():
            return 0
        tensors, meta = load_checkpoint(path)
        if meta.get("identity") != _jsonable(self.s.identity()) or meta.get("budget") != self.budget:
            log.info("search checkpoint %s was made with other settings; starting over", path)
            return 0
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        with torch.no_grad():
            for i, a in enumerate(self.alphas):
                a.copy_(tensors[f"alpha.{i}"])
            for n, b in self.betas.items():
                b.copy_(tensors[f"beta.{n}"])
        self.w_opt.load_state_dict(optimizer_from_tensors(tensors, meta["w_opt"]))
        self.a_opt.load_state_dict(optimizer_from_tensors(tensors, meta["a_opt"]))
        self.gen.set_state(tensors["torch_gen"])
        self.rng.bit_generator.state = meta["rng"]
        self.epoch, self.lam, self.history = int(meta["epoch"]), float(meta["lambda"]), list(meta["history"])
        self.seconds, self.cpu_seconds = float(meta["seconds"]), float(meta["cpu_seconds"])
        log.info("search resumed from %s after epoch %d", path, self.epoch)
        return self.epoch


def _public_text(public: object) -> str:
    import json

    return public if isinstance(public, str) else json.dumps(public, separators=(",", ":"))


def _jsonable(value: object) -> object:
    import json

    return json.loads(json.dumps(value))
