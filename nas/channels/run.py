"""A channel search run (``+space=channels``): prune a trained base network to a latency budget on the target.

Steps (each a function or a call into :mod:`nas.pipeline`):

1. the budget: the base network (every group at full width) and the narrowest member are timed on the target
   first (weights do not change latency), so ``constraint.latency_ratio`` becomes milliseconds and a budget
   no member can meet is refused before anything is trained;
2. the base's trained weights (:func:`nas.channels.base.obtain_base`: a checkpoint, an earlier run, the cache,
   or trained now) and, for ``evaluator=slimmable``, the slimmable supernet trained from them with the sandwich
   rule (cached, resumable);
3. the target's latency model (:func:`nas.pipeline.fit_latency_surrogate`, on the space's kernel features);
4. the search: ``autoslim`` / ``amc`` run their own loop on the real accuracy evaluator
   (:mod:`nas.channels.strategies`); every other strategy runs ask/tell on predictors as in the main search;
5. the candidates are re-measured on the target (in one session with the base: :class:`LatencyOf`) and one
   is chosen by ``final.choose`` on measured latency;
6. finalisation: the chosen network is built with physical channel removal, fine-tuned with distillation from
   the base (``space.finetune``), exported, checked against PyTorch, measured and tested; beside it, the
   uniform width multiplier with the same measured latency (bisection on measurements) and L1-norm pruning at
   that uniform ratio, fine-tuned the same way, and the base itself, measured again together in one session
   (their ``latency_ratio``), all in ``results.json`` (``base``,
   ``best``, ``baselines.uniform``, ``baselines.l1``), ``pareto.png`` and ``channels.png``;
   ``models/base.npz`` keeps the trained base (``space.base=runs/.../models/base.npz`` reuses it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from nas.arch import Arch, arch_id
from nas.channels.base import BASE_FILE, save_base
from nas.channels.finetune import DEFAULT_FINETUNE, DistillationLoss, bisect_uniform
from nas.channels.strategies import is_channel_strategy, natural_evaluator
from nas.choice import choose, given, resolve_rule
from nas.errors import ConfigError
from nas.objectives import ACCURACY, LATENCY, Constraints, Trial, pareto_front
from nas.registry import STRATEGIES
from nas.report import run_files, write_json

log = logging.getLogger("nas.search")

#: ``constraint.latency_ratio`` when neither it nor ``constraint.latency_ms`` is given.
DEFAULT_LATENCY_RATIO = 0.5
#: Slimmable supernet training (``space.slimmable``), from the base's weights: sandwich rule, in-place distillation.
DEFAULT_SLIMMABLE = {"epochs": 2, "lr": 0.02, "random_widths": 2, "batch_size": 64, "weight_decay": 4e-5}


class LatencyOf:
    """The latency of members on the target, on one scale: measured beside the base, or the target's prior.

    Measured *in this run* (the store is written, not read) and always *together with the base*, interleaved
    in one session (:meth:`Target.measure_together`), then put on the scale of the base's first measurement:
    ``ms = (member / base, same session) x base_ms``. The budget is a fraction of the base, and measured one
    after the other the ratio of two networks on this machine moves several times as much between sessions as
    measured together (the machine's state changes by the minute: experiments/measure_together.py).
    Each member is measured once per run."""

    def __init__(self, space, target) -> None:
        from nas.pipeline import device_less_prior

        self.space, self.target = space, target
        self.source = "measured" if target.can_measure else "prior"
        self._prior = None if target.can_measure else device_less_prior(target, space)
        self.records: dict[str, dict] = {}
        self._base_ms: float | None = None

    @property
    def base_ms(self) -> float:
        """The base network's latency: the scale every other latency of the run is put on."""
        if self._base_ms is None:
            self.together([])
        assert self._base_ms is not None
        return self._base_ms

    def __call__(self, arch: Arch) -> float:
        return self.together([arch])[0]

    def together(self, archs: list[Arch]) -> list[float]:
        """The latency (ms, on the base's scale) of each of ``archs``; the new ones measured in one session."""
        new = list({arch_id(a): a for a in archs if arch_id(a) not in self.records}.values())
        if self._base_ms is None or new:
            if self._prior is not None:
                predicted = self._prior.predict(self.space, [self.space.largest(), *new])
                self._base_ms = float(predicted[0]) if self._base_ms is None else self._base_ms
                for arch, ms in zip(new, predicted[1:]):
                    self.records[arch_id(arch)] = {"median_ms": float(ms), "source": "prior"}
            else:
                base, *rest = self.target.measure_together(self.space, [self.space.largest(), *new])
                if self._base_ms is None:
                    self._base_ms = base.median_ms
                    self.records[arch_id(self.space.largest())] = {**base.to_dict(), "ratio_to_base": 1.0}
                for arch, measurement in zip(new, rest):
                    ratio = measurement.median_ms / base.median_ms
                    self.records[arch_id(arch)] = {**measurement.to_dict(), "median_ms": ratio * self._base_ms,
                                                   "session_ms": measurement.median_ms, "ratio_to_base": ratio,
                                                   "session_base_ms": base.median_ms}
        return [float(self.records[arch_id(a)]["median_ms"]) for a in archs]


def resolve_budget(cfg: DictConfig, base_ms: float, floor_ms: float, source: str) -> tuple[float, dict]:
    """The budget the search works to (ms) and its record: ``constraint.latency_ms``, or ``latency_ratio`` x the
    base's latency (``record["latency_ms"]`` is the one asked for, which ``budget_met`` is judged on).

    Below the narrowest member: refused when measured. With a device-less prior it is the prior's verdict on
    another board (the Pi 4 it was fitted on), not a measurement of the user's, so the run warns and searches
    to the narrowest member instead (AMC's resource-constrained mode does the same: every action clipped to
    the smallest), and reports the budget asked for as not met."""
    ratio, ms = cfg.constraint.get("latency_ratio"), cfg.constraint.get("latency_ms")
    record: dict = {"base_latency_ms": base_ms, "base_latency_source": source, "smallest_latency_ms": floor_ms}
    if ms is not None:
        budget = float(ms)
        record.update(latency_ms=budget, latency_ratio=budget / base_ms, given="latency_ms")
    else:
        given_ratio = ratio is not None
        ratio = float(ratio) if given_ratio else DEFAULT_LATENCY_RATIO
        if not given_ratio:
            log.info("no constraint.latency_ms or constraint.latency_ratio given: the budget is %g x the base "
                     "network's latency", ratio)
        budget = ratio * base_ms
        record.update(latency_ms=budget, latency_ratio=ratio, given="latency_ratio" if given_ratio else "default")
    if budget >= floor_ms:
        return budget, record
    what = (f"constraint.latency_ms={budget:g}" if record["given"] == "latency_ms"
            else f"constraint.latency_ratio={record['latency_ratio']:g} ({budget:.4g} ms)")
    where = f"({floor_ms:.4g} ms, {floor_ms / base_ms:.2f} of the base's {base_ms:.4g} ms, {source})"
    if source != "prior":
        raise ConfigError(f"{what} is below the narrowest network of the channels space on the target {where}; "
                          f"raise the budget or add smaller space.ratios")
    record.update(search_latency_ms=floor_ms,
                  clamped=f"below the narrowest member by the prior {where}: searched to the narrowest member")
    log.warning("%s is below the narrowest network of the channels space by the target's PRIOR %s. Pruning "
                "channels keeps every layer, and the prior charges each layer a launch cost that dominates small "
                "inputs. With no board to measure, the run searches to the narrowest member and reports the "
                "budget as not met. Measure on the board (target.agent=...), or use a larger base "
                "(space.base_config, space.resolution).", what, where)
    return floor_ms, record


class EndsMapped:
    """A latency model mapped linearly so that the base and the narrowest member predict what they measured in
    this run. The model was fitted on stored samples (often from other minutes, and biased at the ends): a
    strategy that trusts it would find a budget the run accepted infeasible, or stop well short of it (an
    evolution run at budget 0.7 landed at 0.59 of the base). Callable on one arch, and a surrogate
    (``predict`` / ``predict_codes``, the rest of the wrapped model's attributes) for the ask/tell loop."""

    def __init__(self, surrogate, offset: float, scale: float, shift: float) -> None:
        self.surrogate, self._offset, self._scale, self._shift = surrogate, offset, scale, shift

    def __getattr__(self, name: str):
        if name == "surrogate":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.surrogate, name)

    def _map(self, values) -> np.ndarray:
        return self._offset + self._scale * (np.asarray(values, dtype=np.float64) - self._shift)

    def predict(self, archs) -> np.ndarray:
        return self._map(self.surrogate.predict(archs))

    def predict_codes(self, codes) -> np.ndarray:
        return self._map(self.surrogate.predict_codes(codes))

    def __call__(self, arch: Arch) -> float:
        return float(self.predict([arch])[0])


def calibrated_latency(surrogate, space, base_ms: float, floor_ms: float) -> tuple[EndsMapped, dict]:
    """``surrogate`` mapped onto this run's latency of the base and of the narrowest member (:class:`EndsMapped`),
    and a record of the mapping; left as it is when the ends give no usable span (noise)."""
    p_hi, p_lo = (float(v) for v in surrogate.predict([space.largest(), space.smallest()]))
    if not (p_hi > p_lo and base_ms > floor_ms):
        return EndsMapped(surrogate, 0.0, 1.0, 0.0), {"calibrated": False}
    scale = (base_ms - floor_ms) / (p_hi - p_lo)
    return (EndsMapped(surrogate, floor_ms, scale, p_lo),
            {"calibrated": True, "scale": scale, "predicted_base_ms": p_hi, "predicted_smallest_ms": p_lo})


def _settings(space_cfg: Mapping, key: str, defaults: Mapping) -> dict:
    return {**defaults, **dict(space_cfg.get(key) or {})}


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------- evaluators
def make_evaluator(name: str, space, data, *, space_cfg: Mapping, base_info: dict, seed: int, cache_dir: Path,
                   calib_images: int, progress: bool):
    """The ``pruned`` or ``slimmable`` evaluator, and a record of it (the slimmable supernet trained if need be)."""
    from nas.channels.evaluators import CHANNEL_EVALUATORS, MaskedEvaluator

    if name == "pruned":
        evaluator = MaskedEvaluator(space, space.base_model, data, importance=space.importance,
                                    calib_images=calib_images, seed=seed)
        return evaluator, {"evaluator": "pruned", "importance": space.importance}
    from nas.channels.slimmable import SandwichLoss, SlimmableNet
    from nas.oneshot.retrain import train_network

    settings = _settings(space_cfg, "slimmable", DEFAULT_SLIMMABLE)
    folder = cache_dir / "channel_slimmable" / _key(space.spec.fingerprint(), base_info.get("path"),
                                                    base_info.get("supernet"), data.describe(), seed, settings)
    supernet = SlimmableNet(space)
    summary = train_network(supernet, data, epochs=int(settings["epochs"]), lr=float(settings["lr"]),
                            batch_size=int(settings["batch_size"]), weight_decay=float(settings["weight_decay"]),
                            resolution=space.input_shape(space.largest())[-1], seed=seed,
                            checkpoint=folder / "slimmable.npz", progress=progress,
                            loss_fn=SandwichLoss(supernet, random_widths=int(settings["random_widths"]), seed=seed),
                            desc="train slimmable supernet (sandwich rule, in-place distillation)")
    evaluator = MaskedEvaluator(space, supernet.network(), data, importance=CHANNEL_EVALUATORS["slimmable"],
                                calib_images=calib_images, seed=seed)
    return evaluator, {"evaluator": "slimmable", "importance": "leading", "train": summary,
                       "checkpoint": str(folder / "slimmable.npz")}


# ---------------------------------------------------------------------------------------------- run
def run_channel_search(cfg: DictConfig, run_dir: Path, *, space, data, target, thread_policy: dict) -> Path:
    from nas.channels.base import obtain_base
    from nas.pipeline import (
        fit_accuracy_surrogate,
        fit_latency_surrogate,
        make_strategy,
        parse_arch_option,
        pick_to_measure,
        run_strategy,
        trial_entry,
    )

    seed, progress = int(cfg.seed), bool(cfg.progress)
    space_cfg = OmegaConf.to_container(cfg.space, resolve=True)
    cache_dir = Path(str(cfg.cache_dir)).expanduser()
    calib = int(cfg.accuracy.calib_images)
    timings: dict[str, float] = {}
    given_arch = parse_arch_option(cfg.arch, space) if cfg.arch is not None else None
    factory = STRATEGIES.get(str(cfg.strategy.name))
    evaluator_name = natural_evaluator(factory, str(cfg.evaluator.name))

    # 1. the budget, from the base's and the narrowest member's latency (no weights needed, nothing trained yet)
    clock = time.time()
    latency_of = LatencyOf(space, target)
    floor_ms = latency_of(space.smallest())
    base_ms = latency_of.base_ms
    budget_ms, budget_record = resolve_budget(cfg, base_ms, floor_ms, latency_of.source)
    constraints = Constraints(latency_ms=budget_ms)
    strategy = None if given_arch is not None else make_strategy(
        dict(cfg.strategy), space=space, objective=str(cfg.objective), constraints=constraints, seed=seed,
        budget=int(cfg.budget.queries), evaluator=evaluator_name)
    timings["budget"] = time.time() - clock

    # 2. weights and the evaluator
    clock = time.time()
    base_info = obtain_base(space, data, train=space_cfg.get("train"), seed=seed, cache_dir=cache_dir,
                            calib_images=calib, progress=progress)
    evaluator, evaluator_info = make_evaluator(evaluator_name, space, data, space_cfg=space_cfg, base_info=base_info,
                                               seed=seed, cache_dir=cache_dir, calib_images=calib, progress=progress)
    timings["weights"] = time.time() - clock

    # 3-4. latency model and search
    history: list[dict] = []
    search_record: dict = {}
    predictors_info: dict = {}
    measured: dict[str, dict] = {}
    if given_arch is not None:
        candidates = [Trial(arch=given_arch, metrics={"accuracy": float("nan"), "latency_ms": float("nan")})]
    else:
        clock = time.time()
        rng = np.random.default_rng(seed)
        fitted, measured, latency_info = fit_latency_surrogate(space, target, cfg, rng, progress)
        lat_sur, latency_info["run_calibration"] = calibrated_latency(fitted, space, base_ms, floor_ms)
        predictors_info["latency"] = latency_info
        timings["latency_samples"] = time.time() - clock
        clock = time.time()
        if is_channel_strategy(factory):
            outcome = strategy.search(accuracy=evaluator.accuracy, latency=lat_sur, budget_ms=budget_ms,
                                      base_ms=base_ms, progress=progress)
            candidates = [Trial(arch=c["arch"], metrics={"accuracy": c["accuracy"], "latency_ms": c["latency_ms"]})
                          for c in outcome.candidates]
            history = [{"accuracy": t["accuracy"] if "accuracy" in t else t["reward"], "latency_ms": t["latency_ms"]}
                       for t in outcome.trace]
            search_record = {"seconds": round(outcome.seconds, 1), "cpu_seconds": round(outcome.cpu_seconds, 1),
                             "accuracy_queries": outcome.queries, "trace": outcome.trace, **outcome.extra}
        else:
            cpu = time.process_time()
            acc_sur, sampled = fit_accuracy_surrogate(space, evaluator, cfg, rng, progress)
            predictors_info["accuracy"] = {"predictor": cfg.accuracy.predictor, "features": acc_sur.features,
                                           "samples": len(sampled), "holdout": acc_sur.holdout_metrics}
            trials = run_strategy(strategy, acc_sur, lat_sur, queries=int(cfg.budget.queries), progress=progress)
            front = pareto_front(trials, (ACCURACY, LATENCY), constraints=None)
            candidates = pick_to_measure(front, int(cfg.final.measure_front), budget_ms)
            history = [{"accuracy": t.metrics["accuracy"], "latency_ms": t.metrics["latency_ms"]} for t in trials]
            search_record = {"seconds": round(time.time() - clock, 1),
                             "cpu_seconds": round(time.process_time() - cpu, 1), "accuracy_queries": len(sampled),
                             "scored": len(trials)}
        timings["search"] = time.time() - clock

    # 5. re-measure the candidates and choose on measured latency
    clock = time.time()
    log.info("measuring %d candidates on %s, together with the base", len(candidates), target.name)
    latencies = latency_of.together([trial.arch for trial in candidates])
    for trial, ms in zip(tqdm(candidates, desc="validating candidates", disable=not progress), latencies):
        trial.metrics["predicted_latency_ms"] = trial.metrics["latency_ms"]
        trial.metrics.update(accuracy=float(evaluator.accuracy(trial.arch)), accuracy_source=evaluator_name,
                             latency_ms=ms, latency_source=latency_of.source)
    rule = resolve_rule(cfg.final.get("choose", "auto"), budget_ms=budget_ms, objective=str(cfg.objective))
    choice = (given(candidates[0], budget_ms=budget_ms) if given_arch is not None else
              choose(candidates, rule=rule, budget_ms=budget_ms, tolerance=float(cfg.final.accuracy_tolerance),
                     what="re-measured candidates"))
    timings["measure_candidates"] = time.time() - clock

    # 6. finalise: the chosen network, the two baselines and the base, each fine-tuned, exported, measured, tested
    clock = time.time()
    finisher = Finisher(space, data, target, run_dir, cfg=cfg, space_cfg=space_cfg, base_info=base_info,
                        cache_dir=cache_dir, latency_of=latency_of)
    chosen = choice.trial
    best = finisher.finish("best", chosen.arch, evaluator.subnet(chosen.arch), val_accuracy=chosen.metrics["accuracy"],
                           weights=evaluator_name)
    best.update(choice.record(), predicted_latency_ms=chosen.metrics.get("predicted_latency_ms"),
                accuracy_source=f"fine-tuned ({finisher.finetune['epochs']} epochs, distillation from the base)",
                description=space.describe(chosen.arch), public=space.to_public(chosen.arch))
    uniform_arch, _, probes = bisect_uniform(space, latency_of, chosen.metrics["latency_ms"])
    baselines = {"uniform": finisher.finish("uniform", uniform_arch, finisher.pruned(uniform_arch, "leading")),
                 "l1": finisher.finish("l1", uniform_arch, finisher.pruned(uniform_arch, "l1"))}
    baselines["uniform"]["bisection"] = [{"ratio": p["ratio"], "latency_ms": p["latency_ms"],
                                          "arch_id": arch_id(p["arch"])} for p in probes]
    baselines["uniform"]["ratio"] = next(p["ratio"] for p in probes if arch_id(p["arch"]) == arch_id(uniform_arch))
    base = finisher.finish("base", space.largest(), space.base_model, finetune=False)
    final_session = finisher.measure_together(base, {"best": best, **baselines})
    best["budget_met"] = bool(best["latency_ms"] <= budget_record["latency_ms"])  # the budget asked for
    save_base(run_dir / "models" / BASE_FILE, space.base_model, space.spec, {"train": base_info.get("train")})
    timings["finalize"] = time.time() - clock

    from nas.channels.plots import plot_channels, plot_landing

    budget_record["budget_met"] = best["budget_met"]
    results = {
        "space": space.name, "target": target.name, "strategy": strategy.name if strategy else None,
        "strategy_resolved": strategy.resolution() if strategy else None, "seed": seed,
        "objective": str(cfg.objective), "constraint": {**constraints.to_dict(), **budget_record},
        "data": {"name": data.name, "train": len(data.train[1]), "val": len(data.val[1]), "test": len(data.test[1]),
                 "num_classes": data.num_classes, "input": list(space.input_shape(chosen.arch))},
        "device": target.describe(), "base_network": {**space.spec.to_dict(), "weights": base_info,
                                                      "groups": space.describe_groups(),
                                                      "divisor": space.divisor,
                                                      "divisor_asked": cfg.space.get("divisor")},
        "evaluator": evaluator_info, "predictors": predictors_info, "search": search_record,
        "finetune": finisher.finetune, "best": best, "base": base, "baselines": baselines,
        "pareto": [trial_entry(space, t) for t in pareto_front(candidates, (ACCURACY, LATENCY))],
        "candidates": [trial_entry(space, t) for t in candidates], "history": history,
        "latency_source": latency_of.source, "final_measurement": final_session,
        "measurements": {**measured, **latency_of.records},
        "timings_s": {k: round(v, 1) for k, v in timings.items()}, "threads": thread_policy,
        "run_dir": str(run_dir), "config": OmegaConf.to_container(cfg, resolve=True),
    }
    title = f"channels of {space.spec.source} on {target.name} ({data.name})"
    results["plot"] = plot_landing(run_dir / "pareto.png", results, title=title)
    results["plots"] = {"channels": plot_channels(run_dir / "channels.png", space, results, title=title)}
    results["files"] = run_files(run_dir, "results.json", "pareto.png", "channels.png", f"models/{BASE_FILE}",
                                 *(e["onnx"] for e in (best, base, *baselines.values())))
    return write_json(run_dir / "results.json", results)


class Finisher:
    """Fine-tunes (distillation from the base), exports, checks, measures and tests one network of the run."""

    def __init__(self, space, data, target, run_dir: Path, *, cfg: DictConfig, space_cfg: Mapping, base_info: dict,
                 cache_dir: Path, latency_of: LatencyOf) -> None:
        self.space, self.data, self.target, self.run_dir = space, data, target, run_dir
        self.seed, self.progress = int(cfg.seed), bool(cfg.progress)
        self.calib = int(cfg.accuracy.calib_images)
        self.finetune = _settings(space_cfg, "finetune", DEFAULT_FINETUNE)
        self.cache = cache_dir / "channel_finetune" / _key(space.spec.fingerprint(), base_info.get("path"),
                                                           base_info.get("supernet"), data.describe(), self.seed,
                                                           self.finetune)
        self.latency_of = latency_of

    def pruned(self, arch: Arch, importance: str) -> torch.nn.Module:
        """The base cut to ``arch`` keeping channels by ``importance`` (``leading``: a width multiplier)."""
        from nas.accuracy import recalibrate_bn
        from nas.channels.evaluators import calibration_images
        from nas.channels.groups import prune

        shape = self.space.input_shape(arch)
        model, _ = prune(self.space.base_model, shape, self.space.widths(arch), importance=importance)
        return recalibrate_bn(model, calibration_images(self.data, self.calib, self.seed), resolution=shape[-1])

    def finish(self, name: str, arch: Arch, model: torch.nn.Module, *, val_accuracy: float | None = None,
               finetune: bool = True, weights: str = "base") -> dict:
        """``weights`` names where ``model``'s weights come from (its fine-tuning checkpoint is keyed by it)."""
        from nas.accuracy import evaluate
        from nas.oneshot.retrain import train_network
        from nas.oneshot.run import _Fixed
        from nas.pipeline import export_and_check
        from search_spaces.profile import count_macs

        shape = self.space.input_shape(arch)
        X_test, y_test = self.data.test
        record: dict = {"arch": dict(arch), "arch_id": arch_id(arch), "keep_ratio": self.space.keep_ratio(arch),
                        "params": int(sum(p.numel() for p in model.parameters())),
                        "macs": int(count_macs(model, shape))}
        if finetune:
            record["test_accuracy_before_finetune"] = evaluate(model, X_test, y_test, resolution=shape[-1])
            if val_accuracy is not None:
                record["val_accuracy_before_finetune"] = float(val_accuracy)
            settings = self.finetune
            teacher = DistillationLoss(self.space.base_model, kd_ratio=float(settings["kd_ratio"]),
                                       temperature=float(settings["temperature"]))
            summary = train_network(model, self.data, epochs=int(settings["epochs"]), lr=float(settings["lr"]),
                                    batch_size=int(settings["batch_size"]), resolution=shape[-1], seed=self.seed,
                                    checkpoint=self.cache / f"{name}-{weights}-{arch_id(arch)}.npz", progress=self.progress,
                                    loss_fn=teacher, desc=f"fine-tune {name} (distillation from the base)")
            record["finetune"] = summary
        model.eval()
        final = export_and_check(self.space, _Fixed(model), self.target, arch, self.data, self.run_dir, name=name)
        record.update(final, accuracy=evaluate(model, self.data.val.X, self.data.val.y, resolution=shape[-1]),
                      onnx_bytes=(self.run_dir / final["onnx"]).stat().st_size)
        return record

    def measure_together(self, base: dict, others: Mapping[str, dict]) -> dict:
        """Measure the exported base and ``others`` in one interleaved session (:meth:`Target.measure_onnx_files`)
        and give each entry ``measured_latency_ms`` (this session), ``latency_ratio`` (to the base, this
        session) and ``latency_ms`` (that ratio on the run's base scale, what the budget is compared with).
        Without a device, the run's prior gives the latencies. Returns the session's record."""
        entries = {"base": base, **others}
        latency_of = self.latency_of
        if self.target.can_measure:
            measurements = self.target.measure_onnx_files(
                [self.run_dir / e["onnx"] for e in entries.values()],
                [self.space.input_shape(e["arch"]) for e in entries.values()])
            session = {name: m.median_ms for name, m in zip(entries, measurements)}
            record = {"together": list(entries), "ms": session,
                      "why": "interleaved in one session so their ratios hold (LatencyOf explains)"}
        else:  # the prior: deterministic, so the run's own predictions (the base's is latency_of.base_ms)
            session = {"base": latency_of.base_ms,
                       **dict(zip(others, latency_of.together([e["arch"] for e in others.values()])))}
            measurements, record = [None] * len(entries), {"ms": session, "source": "prior"}
        for (name, entry), measurement in zip(entries.items(), measurements):
            ratio = session[name] / session["base"]
            entry.update(measured_latency_ms=session[name] if measurement is not None else None,
                         latency_ratio=ratio, latency_ms=ratio * latency_of.base_ms, latency_source=latency_of.source)
            if measurement is not None:
                entry["measurement_together"] = measurement.to_dict()
        return record
