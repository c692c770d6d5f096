"""A one-shot run (``strategy=darts``): relax the space, search, derive, train the derived network, export,
measure and test it; the same run directory as a multi-trial run, plus the architecture parameters per epoch.

Steps (each a function): the cost model when the search is hardware-aware (:func:`cost_model`; a budget no
network of the space can meet is refused here, before any training); the search, checkpointed per epoch in
the cache (:meth:`nas.strategies.darts.DartsStrategy.search`); training of the derived network
(:func:`nas.oneshot.retrain.train_network`); export, ONNX parity, latency (measured, the table's exact value,
or the prior's, with its source) and test accuracy; ``results.json``, ``alphas.png`` and ``search.png``
(and ``pareto.png`` of the derived network per epoch when the search had a cost).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from nas.arch import Arch, arch_id
from nas.errors import ConfigError
from nas.objectives import Constraints
from nas.oneshot.cost import DecisionCosts, build_costs, macs_model
from nas.oneshot.plots import plot_alphas, plot_search
from nas.report import plot_pareto, run_files, write_json

log = logging.getLogger("nas.search")


# ---------------------------------------------------------------------------------------------- cost
def latency_model(space, target, cfg: DictConfig, progress: bool):
    """``(evaluate_many, source, info)``: the target's latency of whole architectures, as the search uses it."""
    from nas.pipeline import device_less_prior, fit_latency_surrogate

    if getattr(target, "latency_source", None) == "table":
        return (lambda archs: np.array([target.latency_ms(space, a) for a in archs]),
                "table", {"model": f"the {target.device} latency table shipped for {space.name} (per-layer sums "
                                   f"for networks it has no row for, where its latencies are such sums)"})
    if not target.can_measure:
        prior = device_less_prior(target, space)
        return (lambda archs: prior.predict(space, archs)), "prior", {"model": prior.description}
    surrogate, measured, info = fit_latency_surrogate(space, target, cfg, np.random.default_rng(int(cfg.seed)),
                                                      progress)
    return surrogate.predict, "predicted", {"model": info.get("predictor"), "samples": len(measured),
                                            "holdout": info.get("holdout")}


def cost_model(space, target, strategy, cfg: DictConfig, progress: bool) -> tuple[DecisionCosts | None, float | None,
                                                                                   dict]:
    """The cost the search penalises, its budget in the cost's unit, and a record for ``results.json``.

    ``cost=macs`` (the FLOPs-proxy baseline) converts the latency budget to MACs the way a FLOPs-proxy user
    does: latency taken as proportional to MACs, at the median MACs-per-ms of 64 random networks under the
    target's latency model."""
    if not strategy.hardware_aware:
        return None, None, {}
    budget_ms = strategy.constraints.latency_ms
    evaluate, source, info = latency_model(space, target, cfg, progress)
    latency = build_costs(space, evaluate, unit="ms", source=source, seed=int(cfg.seed), info=info)
    if budget_ms is not None:
        fastest = min(latency.fastest(), float(evaluate([space.arch_of([int(np.argmin(c)) for c in latency.costs])])[0]))
        if budget_ms < fastest:
            raise ConfigError(f"constraint.latency_ms={budget_ms} is below the fastest {space.name} network on "
                              f"{target.name} ({fastest:.4g} ms, {source}); set constraint.latency_ms to at least that")
    if strategy.cost == "latency":
        return latency, budget_ms, {"cost": "latency", **latency.to_dict()}
    macs = build_costs(space, macs_model(space), unit="MMACs", source="macs", seed=int(cfg.seed))
    record = {"cost": "macs", **macs.to_dict(), "latency_model": {k: v for k, v in latency.to_dict().items()
                                                                   if k != "per_decision"}}
    if budget_ms is None:
        return macs, None, record
    rng = np.random.default_rng(int(cfg.seed))
    archs = [space.arch_of([int(rng.integers(len(d.options))) for d in space.decisions()]) for _ in range(64)]
    per_ms = float(np.median(macs.evaluate_many(archs) / np.maximum(evaluate(archs), 1e-9)))
    budget = budget_ms * per_ms
    record["macs_budget"] = {"value": budget, "unit": "MMACs", "rule": f"constraint.latency_ms={budget_ms} x the "
                             f"median {per_ms:.4g} MMACs per ms of 64 random networks ({source} latency)"}
    return macs, budget, record


# ---------------------------------------------------------------------------------------------- run
def search_key(cfg: DictConfig, strategy, target_name: str) -> str:
    payload = {"space": OmegaConf.to_container(cfg.space, resolve=True),
               "data": OmegaConf.to_container(cfg.data, resolve=True), "seed": int(cfg.seed),
               "strategy": strategy.identity(), "target": target_name if strategy.hardware_aware else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_differentiable_search(cfg: DictConfig, run_dir: Path, *, space_cfg: dict, target, strategy_factory,
                              data, space, thread_policy: dict | None) -> Path:
    from nas.pipeline import export_and_check, parse_arch_option

    seed, progress = int(cfg.seed), bool(cfg.progress)
    strategy = strategy_factory()
    constraints: Constraints = strategy.constraints
    timings: dict[str, float] = {}
    given = parse_arch_option(cfg.arch, space) if cfg.arch is not None else None

    clock = time.time()
    costs, budget, cost_info = cost_model(space, target, strategy, cfg, progress) if given is None else (None, None, {})
    timings["cost_model"] = time.time() - clock
    cache = Path(str(cfg.cache_dir)).expanduser() / "oneshot" / f"{space.name}-{search_key(cfg, strategy, target.name)}"

    torch.manual_seed(seed)
    supernet = None
    if given is None:
        supernet = space.relax(partial_channels=strategy.partial_channels)
        outcome = strategy.search(supernet, data.train, resolution=space.input_shape(space.sample(
            np.random.default_rng(0)))[-1], costs=costs, budget=budget, checkpoint=cache / "search.npz",
            progress=progress)
        arch, derivation, history = outcome.arch, outcome.derivation, outcome.history
        search_record = {"seconds": round(outcome.seconds, 1), "cpu_seconds": round(outcome.cpu_seconds, 1),
                         "resumed_from_epoch": outcome.resumed_from, "checkpoint": str(cache / "search.npz"),
                         "decisions": [{"name": d.name, "options": list(d.options)} for d in space.decisions()],
                         "final_probs": outcome.probs, "epochs": history, **outcome.extra}
        timings["search"] = outcome.seconds
    else:
        arch, derivation, history, search_record = given, "given (arch=)", [], None

    clock = time.time()
    model, train_summary = _train_derived(space, arch, supernet, strategy, data, cache, seed, progress)
    timings["retrain"] = time.time() - clock
    clock = time.time()
    final = export_and_check(space, _Fixed(model), target, arch, data, run_dir)
    latency_ms, latency_source = _latency_of(space, target, arch, final, costs if strategy.cost == "latency" else None)
    timings["finalize"] = time.time() - clock

    budget_ms = constraints.latency_ms
    best = {"arch": arch, "arch_id": arch_id(arch), "public": space.to_public(arch), "description": space.describe(arch),
            "accuracy": train_summary["val_accuracy"], "accuracy_source": f"trained ({strategy.retrain})",
            "latency_ms": latency_ms, "latency_source": latency_source,
            "measured_latency_ms": final["measurement"]["median_ms"] if final["measurement"] else None,
            "choice_rule": "derived", "choice_reason": f"derived by {strategy.name}: {derivation}",
            "budget_met": None if budget_ms is None else bool(latency_ms <= budget_ms), **final,
            **_table_accuracy(space, arch)}
    if costs is not None:
        best["search_cost"] = {"value": costs.evaluate(arch), "unit": costs.unit}
    results = {
        "space": space.name, "target": target.name, "strategy": strategy.name,
        "strategy_resolved": strategy.resolution(), "seed": seed, "objective": str(cfg.objective),
        "constraint": constraints.to_dict(),
        "data": {"name": data.name, "train": len(data.train[1]), "val": len(data.val[1]), "test": len(data.test[1]),
                 "num_classes": data.num_classes, "input": list(space.input_shape(arch))},
        "device": target.describe(), "search": search_record, "cost_model": cost_info,
        "retrain": train_summary, "best": best, "latency_source": latency_source,
        "pareto": [_entry(best)], "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "threads": thread_policy, "run_dir": str(run_dir), "config": OmegaConf.to_container(cfg, resolve=True),
    }
    names = ["results.json", best["onnx"]]
    if history:
        results["plots"] = {"alphas": plot_alphas(run_dir / "alphas.png", space.decisions(), history,
                                                  title=f"{space.name}: architecture probabilities per epoch"),
                            "search": plot_search(run_dir / "search.png", history, budget=budget,
                                                  unit=costs.unit if costs is not None else None,
                                                  title=f"{space.name} on {target.name}: {strategy.name} search")}
        names += ["alphas.png", "search.png"]
        if costs is not None and strategy.cost == "latency":
            per_epoch = [{"accuracy": h["arch_acc"], "latency_ms": h["derived_cost"]} for h in history]
            results["plot"] = plot_pareto(run_dir / "pareto.png", history=per_epoch, pareto=results["pareto"],
                                          best=best, budget_ms=budget_ms, history_label="derived per epoch",
                                          title=f"{space.name} on {target.name}: derived network per epoch")
            names.append("pareto.png")
    results["files"] = run_files(run_dir, *names)
    return write_json(run_dir / "results.json", results)


class _Fixed:
    """The evaluator interface :func:`nas.pipeline.export_and_check` asks for, over one trained model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def subnet(self, arch) -> torch.nn.Module:
        return self.model


def _train_derived(space, arch: Arch, supernet, strategy, data, cache: Path, seed: int, progress: bool):
    from nas.oneshot.retrain import train_network

    if strategy.retrain == "finetune":
        if supernet is None:
            raise ConfigError("strategy.retrain=finetune needs a search (there is no supernet with arch= given); "
                              "use strategy.retrain=scratch")
        model = supernet.extract(arch)
    else:
        torch.manual_seed(seed)
        model = space.build(arch)
    resolution = space.input_shape(arch)[-1]
    summary = train_network(model, data, epochs=strategy.retrain_epochs, lr=strategy.retrain_lr, resolution=resolution,
                            seed=seed, batch_size=strategy.batch_size, progress=progress,
                            checkpoint=cache / f"retrain-{strategy.retrain}-{arch_id(arch)}.npz",
                            desc=f"training the derived network ({strategy.retrain})")
    return model.eval(), summary


def _latency_of(space, target, arch: Arch, final: dict, costs: DecisionCosts | None) -> tuple[float, str]:
    """The derived network's latency and where it comes from: measured (the exported ONNX), the table's exact
    value, or the target's prior."""
    if final.get("measurement"):
        return float(final["measurement"]["median_ms"]), "measured"
    if getattr(target, "latency_source", None) == "table":
        return float(target.latency_ms(space, arch)), "table"
    from nas.pipeline import device_less_prior

    return float(device_less_prior(target, space).predict(space, [arch])[0]), "prior"


def _table_accuracy(space, arch: Arch) -> dict:
    """For a space with a shipped accuracy table (NAS-Bench-201): the derived cell's accuracy there and its
    percentile among all the table's cells."""
    from nas.tables import SHIPPED_TABLES
    from nas.tabular import TabularEvaluator

    if not (SHIPPED_TABLES.get(space.name) or {}).get("accuracy_column"):
        return {}
    evaluator = TabularEvaluator(space)  # the shipped table, as evaluator=tabular reads it
    value = evaluator.accuracy(arch)
    values = evaluator.table.values[evaluator.column]
    return {"table_accuracy": {"value": value, "column": evaluator.column, "table": evaluator.table.path.name,
                               "percentile": float(100.0 * np.mean(values[np.isfinite(values)] <= value))}}


def _entry(best: dict) -> dict:
    return {k: best[k] for k in ("arch", "arch_id", "public", "accuracy", "accuracy_source", "latency_ms",
                                 "latency_source")}
