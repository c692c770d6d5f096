"""The steps of one search run, called by :mod:`nas.search` (kept apart so tests can call them directly)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from nas.arch import Arch, arch_id, parse_json_arg
from nas.choice import choose, given, resolve_rule
from nas.config_schema import validate_config
from nas.errors import ConfigError
from nas.objectives import ACCURACY, LATENCY, CodedTrials, Constraints, Trial, objectives_for, pareto_front
from nas.registry import SPACES, STRATEGIES, TARGETS
from nas.report import plot_pareto, run_files, write_json
from nas.surrogate import PriorSurrogate, Surrogate, calibrate_prior, fit_surrogate
from search_spaces.base import SearchSpace, WeightSharingSpace

log = logging.getLogger("nas.search")

#: Trained supernets shipped for the default configuration, named ``<space>-<supernet_key>.npz``
#: (``experiments/ship_default_supernet.py`` makes them).
SHIPPED_SUPERNETS = Path(__file__).resolve().parent / "assets" / "supernets"
#: ``evaluator=`` choices: accuracy from a trained supernet's shared weights, or looked up in a table; on the
#: channels space, the pruned base network or its slimmable supernet (:mod:`nas.channels.evaluators`).
EVALUATORS = ("supernet", "tabular", "pruned", "slimmable")
# Keys of a space config that are not constructor arguments of the space (finetune, slimmable: channels).
_SPACE_META_KEYS = ("name", "train", "checkpoint", "finetune", "slimmable")


# ---------------------------------------------------------------------------------------------- config
def make_space(space_cfg: Mapping, **data_shape: int) -> SearchSpace:
    """The configured space; ``data_shape`` (``num_classes``, ``in_channels``) comes from the data when there is any."""
    factory = SPACES.get(space_cfg["name"])
    kwargs = {k: v for k, v in space_cfg.items() if k not in _SPACE_META_KEYS}
    kwargs.update(data_shape)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad option for space {space_cfg['name']!r}: {exc}") from None


def make_target(target_cfg: Mapping):
    factory = TARGETS.get(target_cfg["name"])
    kwargs = {k: v for k, v in target_cfg.items() if k != "name"}
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad option for target {target_cfg['name']!r}: {exc}") from None


def make_strategy(strategy_cfg: Mapping, *, space: SearchSpace, objective: str, constraints: Constraints, seed: int,
                  budget: int | None = None, evaluator: str = "supernet"):
    """The configured strategy, told the run's budget (``budget.queries``: population-like settings left unset
    are sized to it); ``strategy=auto`` picks one by ``evaluator`` and budget (:mod:`nas.strategies.auto`)."""
    from nas.strategies.auto import AUTO

    factory = STRATEGIES.get(strategy_cfg["name"])
    kwargs = {k: v for k, v in strategy_cfg.items() if k != "name"}
    if strategy_cfg["name"] == AUTO:
        kwargs["evaluator"] = evaluator
    try:
        return factory(space=space, objectives=objectives_for(objective), constraints=constraints, seed=seed,
                       budget=budget, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad option for strategy {strategy_cfg['name']!r}: {exc}") from None


def parse_arch_option(value: object, space: SearchSpace) -> Arch:
    """The ``arch=`` option: a Hydra mapping, inline JSON, or a path to a JSON file (OFA form or flat labels)."""
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, str):
        text = value.strip()
        # JSON (inline, @file, .json) as before; any other text is the space's public string form (an NB201
        # string, FBNet op names, a DARTS genotype), which the space parses and reports on itself.
        if text.startswith(("{", "@")) or text.endswith(".json"):
            value = parse_json_arg(value)
    return space.parse(value)


# ---------------------------------------------------------------------------------------------- supernet
def supernet_key(space_cfg: Mapping, data_cfg: Mapping, seed: int) -> str:
    """Cache key of a trained supernet: everything that changes its weights."""
    payload = {k: v for k, v in space_cfg.items() if k != "checkpoint"}
    payload = {"space": payload, "data": dict(data_cfg), "seed": seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def obtain_supernet(space: WeightSharingSpace, *, space_cfg: Mapping, data_cfg: Mapping, data, seed: int,
                    cache_dir: Path, progress: bool) -> tuple[torch.nn.Module, dict]:
    """Load the supernet from ``space.checkpoint`` or the cache; otherwise train it (resuming a cut-off run)."""
    from nas.training import TrainConfig, load_trained_supernet, train_supernet

    key = supernet_key(space_cfg, data_cfg, seed)
    explicit = space_cfg.get("checkpoint")
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(f"space.checkpoint={explicit} does not exist; give a supernet.npz path, or null to train")
        supernet, meta = load_trained_supernet(explicit, space)
        return supernet, {"source": "checkpoint", "path": str(explicit), "key": key, "train": meta.get("summary")}
    ckpt_dir = cache_dir / "supernets" / f"{space.name}-{key}"
    cached = ckpt_dir / "supernet.npz"
    if cached.is_file():
        supernet, meta = load_trained_supernet(cached, space)
        log.info("supernet loaded from cache %s", cached)
        return supernet, {"source": "cache", "path": str(cached), "key": key, "train": meta.get("summary")}
    shipped = SHIPPED_SUPERNETS / f"{space.name}-{key}.npz"
    if shipped.is_file():  # the embedded default's supernet ships with the package (made by the same code)
        supernet, meta = load_trained_supernet(shipped, space)
        log.info("supernet loaded from the package %s", shipped)
        return supernet, {"source": "shipped", "path": str(shipped), "key": key, "train": meta.get("summary")}
    train_cfg = TrainConfig(**dict(space_cfg.get("train") or {}), seed=seed)
    supernet = space.supernet()
    started = time.time()
    summary = train_supernet(space, supernet, data, config=train_cfg, checkpoint_dir=ckpt_dir, progress=progress)
    return supernet, {"source": "trained", "path": str(cached), "key": key,
                      "train": summary, "train_seconds": round(time.time() - started, 1)}


# ---------------------------------------------------------------------------------------------- predictors
def sample_distinct(space: SearchSpace, n: int, rng: np.random.Generator, *, include: Sequence[Arch] = ()) -> list[Arch]:
    """``n`` distinct archs: ``include`` first (e.g. the extremes, so predictors see the whole range), then random."""
    archs: dict[str, Arch] = {}
    for arch in include:
        archs.setdefault(arch_id(arch), arch)
    for _ in range(50 * n):
        if len(archs) >= n:
            break
        arch = space.sample(rng)
        archs.setdefault(arch_id(arch), arch)
    return list(archs.values())[:n]


def fit_accuracy_surrogate(space, evaluator, cfg: DictConfig, rng, progress: bool) -> tuple[Surrogate, dict[str, float]]:
    archs = sample_distinct(space, int(cfg.accuracy.samples), rng, include=_extremes(space))
    accuracies: dict[str, float] = {}
    for arch in tqdm(archs, desc="accuracy of sampled subnets (shared weights, BN recalibrated)", disable=not progress):
        accuracies[arch_id(arch)] = float(evaluator.accuracy(arch))
    surrogate = fit_surrogate(space=space, archs=archs, values=list(accuracies.values()), metric="accuracy",
                              predictor=cfg.accuracy.predictor, features=str(cfg.accuracy.features),
                              predictor_kwargs={"log_target": bool(cfg.accuracy.log_target)},
                              holdout=float(cfg.accuracy.holdout), seed=int(cfg.seed))
    return surrogate, accuracies


def fit_latency_surrogate(space, target, cfg: DictConfig, rng, progress: bool) -> tuple[object, dict[str, dict], dict]:
    """The latency model the search runs on, the measurements made for it, and a record of where it comes from.

    - a target that measures and has no prior (``cpu``): a predictor fitted on ``latency.samples`` measured
      subnets;
    - a target that measures and has a prior (``arm_cpu`` with an agent or on an ARM machine): the prior
      calibrated on those measurements (few-shot);
    - a target that cannot measure but has a prior (``arm_cpu`` with no board): the prior alone, said loudly.
    """
    if not target.can_measure:
        prior = device_less_prior(target, space)
        # Which kernel kinds the prior prices by a borrowed rule, seen on 50 archs of its own stream (the
        # run's rng stays untouched, so the search draws what it drew before).
        borrowed = _borrowed(prior, space, sample_distinct(space, 50, np.random.default_rng(0)))
        info = {"predictor": prior.name, "source": "prior", "samples": 0, "calibrated": False,
                "prior": prior.description, "borrowed": borrowed, "holdout": {"n": 0}}
        return PriorSurrogate(prior=prior, space=space), {}, info
    prior = target.latency_prior(space)
    archs = sample_distinct(space, int(cfg.latency.samples), rng, include=_extremes(space))
    remeasure = bool((cfg.get("measurements") or {}).get("remeasure", False))
    measurements = measure_archs(space, target, archs, progress=progress, remeasure=remeasure,
                                 desc=f"latency of sampled subnets on {target.name}")
    values = [measurements[arch_id(a)]["median_ms"] for a in archs]
    if prior is not None:
        surrogate = calibrate_prior(prior=prior, space=space, archs=archs, values=values,
                                    holdout=float(cfg.latency.holdout), seed=int(cfg.seed))
        info = {"predictor": f"{prior.name} calibrated", "source": "predicted", "samples": len(measurements),
                "calibrated": True, "prior": prior.description, "borrowed": _borrowed(prior, space, archs),
                "features": surrogate.features, "holdout": surrogate.holdout_metrics}
        return surrogate, measurements, info
    surrogate = fit_surrogate(space=space, archs=archs, values=values,
                              metric="latency_ms", predictor=cfg.latency.predictor, features=str(cfg.latency.features),
                              predictor_kwargs={"log_target": bool(cfg.latency.log_target)},
                              holdout=float(cfg.latency.holdout), seed=int(cfg.seed))
    info = {"predictor": cfg.latency.predictor, "source": "predicted", "samples": len(measurements),
            "calibrated": False, "features": surrogate.features, "holdout": surrogate.holdout_metrics}
    return surrogate, measurements, info


def _borrowed(prior, space: SearchSpace, archs: Sequence[Arch]) -> dict[str, str]:
    """``{kernel kind: pricing rule}`` of the kinds ``archs`` execute that ``prior`` never saw measured
    (``results.json``: ``predictors.latency.borrowed``); empty for a prior that borrows nothing."""
    borrowed_in = getattr(prior, "borrowed_in", None)
    return dict(borrowed_in(space, archs)) if callable(borrowed_in) else {}


def device_less_prior(target, space: SearchSpace):
    """The prior of a target with no device to measure on, announced loudly (a ConfigError if it has none)."""
    prior = target.latency_prior(space)
    if prior is None:
        raise ConfigError(f"target {target.name!r} can neither measure space {space.name!r} nor predict it; "
                          f"use a measuring target (+target=cpu) or one with a prior (+target=arm_cpu)")
    # Hydra's console handler shows the warning, and the run directory's log keeps it.
    log.warning(f"WARNING: target {target.name!r} has no device to measure on; latencies are a PRIOR "
                f"({prior.description}), NOT calibrated on your board. To measure and calibrate, run "
                f"`python -m nas.device serve` on the board and add target.agent=http://BOARD:8765 "
                f"(or run hwnas on the board itself).")
    return prior


def attach_store(target, cfg: DictConfig) -> None:
    """Give a measuring target the configured measurement store (``measurements.store``)."""
    section = cfg.get("measurements") or {}
    path = section.get("store")
    if target.can_measure and path:
        target.use_store(Path(str(path)).expanduser())


def measure_archs(space, target, archs: Sequence[Arch], *, progress: bool, desc: str,
                  remeasure: bool = False) -> dict[str, dict]:
    """Serial on-target measurements keyed by arch id (serial: two sessions at once disturb each other).

    With a store, archs measured before on this device come from it (``remeasure`` measures them again)."""
    out: dict[str, dict] = {}
    for arch in tqdm(archs, desc=desc, disable=not progress):
        out[arch_id(arch)] = target.measure(space, arch, remeasure=remeasure).to_dict()
    return out


def _extremes(space: SearchSpace) -> list[Arch]:
    if isinstance(space, WeightSharingSpace):
        return [space.smallest(), space.largest()]
    return []


# ---------------------------------------------------------------------------------------------- search
def run_strategy(strategy, accuracy: Surrogate, latency: Surrogate, *, queries: int,
                 progress: bool) -> Sequence[Trial]:
    """Ask/tell loop with both metrics predicted, in batches of the strategy's natural size.

    Batches travel as the space's integer codes (``ask_codes`` / ``predict_codes`` / ``tell_codes``): an arch
    dict and its id are made only when the returned trials are read (:class:`nas.objectives.CodedTrials`)."""
    batch = int(getattr(strategy, "population_size", 100))
    history = CodedTrials(strategy.space)
    with tqdm(total=queries, desc=f"search ({strategy.name}, predictor-scored)", disable=not progress) as bar:
        while len(history) < queries:
            codes = strategy.ask_codes(min(batch, queries - len(history)))
            metrics = {"accuracy": np.clip(accuracy.predict_codes(codes), 0.0, 1.0),
                       "latency_ms": np.maximum(latency.predict_codes(codes), 1e-6)}
            strategy.tell_codes(codes, metrics)
            history.extend_codes(codes, metrics)
            bar.update(len(codes))
    return history


def pick_to_measure(front: Sequence[Trial], k: int, budget_ms: float | None) -> list[Trial]:
    """Up to ``k`` front points spread along the front; with a budget, those near or under it."""
    pool = list(front)
    if budget_ms is not None:
        near = [t for t in pool if t.metrics["latency_ms"] <= 1.25 * budget_ms]
        pool = near or pool[:k]
    if len(pool) <= k:
        return pool
    idx = sorted(set(np.linspace(0, len(pool) - 1, k).round().astype(int).tolist()))
    return [pool[i] for i in idx]


def debias_unmeasured(front: Sequence[Trial], measured: Sequence[Trial]) -> None:
    """Scale the predicted latency of front points not re-measured by the median measured / predicted ratio of
    those that were: a predictor fitted on few (or, for a prior, different) measurements is often biased as
    a whole, and an unmeasured point that looks faster only through that bias would push the measured ones
    off the reported front. The original prediction stays in ``predicted_latency_ms``."""
    ratios = [t.metrics["latency_ms"] / t.metrics["predicted_latency_ms"] for t in measured
              if t.metrics.get("latency_source") == "measured" and t.metrics.get("predicted_latency_ms", 0) > 0]
    if not ratios:
        return
    ratio = float(np.median(ratios))
    for trial in front:
        if "latency_source" not in trial.metrics:  # neither measured nor already labelled
            trial.metrics["predicted_latency_ms"] = trial.metrics["latency_ms"]
            trial.metrics["latency_ms"] *= ratio


# ---------------------------------------------------------------------------------------------- finalize
def export_and_check(space, evaluator, target, arch: Arch, data, run_dir: Path, *, name: str = "best") -> dict:
    """Export the chosen subnet to ONNX (``models/<name>.onnx``), verify it against PyTorch, measure it and test
    it on held-out data."""
    from nas.accuracy import evaluate, resize_batch
    from nas.export import export_onnx, load_session, verify_onnx

    model = evaluator.subnet(arch).eval()
    shape = space.input_shape(arch)
    onnx_path = export_onnx(model, shape, run_dir / "models" / f"{name}.onnx")
    max_abs_diff = verify_onnx(onnx_path, model, shape)
    measurement = target.measure_onnx_file(onnx_path, shape).to_dict() if target.can_measure else None
    X_test, y_test = data.test
    resolution = shape[-1]
    test_acc_torch = evaluate(model, X_test, y_test, resolution=resolution)
    session = load_session(onnx_path, threads=1, allow_spinning=False)  # a check, not a measurement
    name = session.get_inputs()[0].name
    correct = 0
    with torch.no_grad():
        for i in range(len(y_test)):
            x = resize_batch(X_test[i : i + 1], resolution).numpy().astype(np.float32)
            correct += int(np.argmax(session.run(None, {name: x})[0], axis=1)[0] == int(y_test[i]))
    return {
        "onnx": str(onnx_path.relative_to(run_dir)),
        "onnx_max_abs_diff": max_abs_diff,
        "measurement": measurement,
        "test_accuracy": correct / max(1, len(y_test)),
        "test_accuracy_torch": test_acc_torch,
        "n_test": int(len(y_test)),
    }


# ---------------------------------------------------------------------------------------------- run
def run_search(cfg: DictConfig, run_dir: Path, *, thread_policy: dict | None = None) -> Path:
    """One search run into ``run_dir``; ``thread_policy`` is what the entry point set (:mod:`nas.threads`)."""
    from nas.accuracy import SupernetEvaluator
    from nas.data import load_data

    # Every config value is checked before any work starts (types, ranges, paths, unknown keys): one home,
    # nas/config_schema.py; a bad value ends the run with one line naming the key.
    # Everything below may assume a valid config: names registered, sections present, values in range.
    default_target_for_one_shot(cfg)
    validate_config(cfg)
    space_cfg = OmegaConf.to_container(cfg.space, resolve=True)
    target_cfg = OmegaConf.to_container(cfg.target, resolve=True)
    seed = int(cfg.seed)
    progress = bool(cfg.progress)
    constraints = Constraints(latency_ms=cfg.constraint.latency_ms)
    choice_rule = resolve_rule(cfg.final.get("choose", "auto"), budget_ms=constraints.latency_ms,
                               objective=str(cfg.objective))
    if thread_policy is None:
        from nas.threads import describe_current

        thread_policy = describe_current()
    evaluator_name = str(cfg.evaluator.name)
    if cfg.get("compress") is not None and (space_cfg["name"] == "channels" or evaluator_name == "tabular"
                                            or getattr(STRATEGIES.get(str(cfg.strategy.name)), "one_shot", False)):
        raise ConfigError("compress=default compresses the winner of a supernet search (+space=ofa, evaluator="
                          "supernet); for this run, compress its result afterwards with python -m nas.compress "
                          "model=RUN/models/best.onnx 'steps=[quantize]'")
    if space_cfg["name"] == "channels":
        return _run_channels(cfg, run_dir, space_cfg=space_cfg, target_cfg=target_cfg, thread_policy=thread_policy)
    if getattr(STRATEGIES.get(str(cfg.strategy.name)), "one_shot", False):
        return _run_one_shot(cfg, run_dir, space_cfg=space_cfg, target_cfg=target_cfg, constraints=constraints,
                             thread_policy=thread_policy)
    if evaluator_name == "tabular":
        from nas.tabular import run_tabular_search

        space = make_space(space_cfg)
        return run_tabular_search(
            cfg, run_dir, space=space, target=make_target(target_cfg), thread_policy=thread_policy,
            strategy_factory=lambda: make_strategy(dict(cfg.strategy), space=space, objective=str(cfg.objective),
                                                   constraints=constraints, seed=seed,
                                                   budget=int(cfg.budget.queries), evaluator="tabular"))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}
    clock = time.time()

    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data = load_data(**data_cfg, seed=seed)
    space = make_space(space_cfg, num_classes=data.num_classes, in_channels=data.in_channels)
    given_arch = parse_arch_option(cfg.arch, space) if cfg.arch is not None else None
    strategy = None if given_arch else make_strategy(dict(cfg.strategy), space=space, objective=str(cfg.objective),
                                                     constraints=constraints, seed=seed,
                                                     budget=int(cfg.budget.queries), evaluator=evaluator_name)
    target = make_target(target_cfg)
    attach_store(target, cfg)
    if not isinstance(space, WeightSharingSpace):
        raise ConfigError(f"space {space.name!r} has no supernet to estimate accuracy with: use evaluator=tabular "
                          f"(accuracy from a table) or a weight-sharing space (ofa)")

    supernet, supernet_info = obtain_supernet(space, space_cfg=space_cfg, data_cfg=data_cfg, data=data, seed=seed,
                                              cache_dir=Path(str(cfg.cache_dir)).expanduser(), progress=progress)
    timings["supernet"] = time.time() - clock
    evaluator = SupernetEvaluator(space, supernet, data, calib_images=int(cfg.accuracy.calib_images), seed=seed)

    predictors_info: dict = {}
    history: Sequence[Trial] = []
    measured: dict[str, dict] = {}
    latency_info: dict = {}
    if given_arch is not None:
        candidates = [Trial(arch=given_arch, metrics={"accuracy": float("nan"), "latency_ms": float("nan")})]
        front: list[Trial] = []
    else:
        clock = time.time()
        acc_sur, sampled_acc = fit_accuracy_surrogate(space, evaluator, cfg, rng, progress)
        timings["accuracy_samples"] = time.time() - clock
        clock = time.time()
        lat_sur, measured, latency_info = fit_latency_surrogate(space, target, cfg, rng, progress)
        timings["latency_samples"] = time.time() - clock
        predictors_info = {
            "accuracy": {"predictor": cfg.accuracy.predictor, "features": acc_sur.features, "samples": len(sampled_acc),
                         "holdout": acc_sur.holdout_metrics},
            "latency": latency_info,
        }
        clock = time.time()
        history = run_strategy(strategy, acc_sur, lat_sur, queries=int(cfg.budget.queries), progress=progress)
        timings["search"] = time.time() - clock
        front = pareto_front(history, (ACCURACY, LATENCY), constraints=None)
        candidates = pick_to_measure(front, int(cfg.final.measure_front), constraints.latency_ms)

    clock = time.time()
    # Re-measure the candidates on the target and re-estimate their accuracy with the shared weights. A target
    # with no device (a prior) keeps the prior's latency, labelled as such.
    predicted_source = latency_info.get("source") or ("predicted" if target.can_measure else "prior")
    if given_arch is not None and not target.can_measure:
        candidates[0].metrics["latency_ms"] = float(device_less_prior(target, space).predict(space, [given_arch])[0])
    for trial in tqdm(candidates, desc=f"measuring front on {target.name}", disable=not progress):
        trial.metrics["predicted_latency_ms"] = trial.metrics["latency_ms"]
        trial.metrics["predicted_accuracy"] = trial.metrics["accuracy"]
        trial.metrics.update(accuracy=float(evaluator.accuracy(trial.arch)), accuracy_source="supernet")
        if target.can_measure:
            m = measured.get(trial.arch_id) or target.measure(space, trial.arch).to_dict()
            measured[trial.arch_id] = m
            trial.metrics.update(latency_ms=m["median_ms"], latency_source="measured")
        else:
            trial.metrics["latency_source"] = predicted_source
    debias_unmeasured(front, candidates)
    for trial in front:
        trial.metrics.setdefault("latency_source", predicted_source)
        trial.metrics.setdefault("accuracy_source", "predicted")
    # The front as it stands once measured values replace predicted ones (a point the predictor flattered may drop).
    front = pareto_front(front, (ACCURACY, LATENCY))
    choice = (given(candidates[0], budget_ms=constraints.latency_ms) if given_arch is not None else
              choose(candidates, rule=choice_rule, budget_ms=constraints.latency_ms,
                     tolerance=float(cfg.final.accuracy_tolerance), what="re-measured front points"))
    best_trial = choice.trial
    final = export_and_check(space, evaluator, target, best_trial.arch, data, run_dir)
    timings["finalize"] = time.time() - clock

    best = {
        "arch": best_trial.arch,
        "arch_id": best_trial.arch_id,
        "public": space.to_public(best_trial.arch),
        "description": space.describe(best_trial.arch),
        "accuracy": best_trial.metrics["accuracy"],
        "predicted_accuracy": best_trial.metrics.get("predicted_accuracy"),
        "predicted_latency_ms": best_trial.metrics.get("predicted_latency_ms"),
        "measured_latency_ms": final["measurement"]["median_ms"] if final["measurement"] else None,
        "latency_ms": best_trial.metrics["latency_ms"],
        "latency_source": best_trial.metrics.get("latency_source", predicted_source),
        **choice.record(),
        **final,
    }
    results = {
        "space": space.name,
        "target": target.name,
        "strategy": strategy.name if strategy else None,
        "strategy_resolved": strategy.resolution() if strategy else None,  # requested, chosen, why, settings
        "seed": seed,
        "objective": str(cfg.objective),
        "constraint": constraints.to_dict(),
        "data": {"name": data.name, "train": len(data.train[1]), "val": len(data.val[1]), "test": len(data.test[1]),
                 "num_classes": data.num_classes, "input": list(space.input_shape(best_trial.arch))},
        "device": target.describe(),
        "supernet": supernet_info,
        "predictors": predictors_info,
        "pareto": [trial_entry(space, t) for t in front] if front else [trial_entry(space, best_trial)],
        "best": best,
        "latency_source": predicted_source if not target.can_measure else "measured",
        "history": [{"arch_id": t.arch_id, "public": space.to_public(t.arch), "accuracy": t.metrics["accuracy"],
                     "latency_ms": t.metrics["latency_ms"], "latency_source": predicted_source} for t in history],
        "measurements": measured,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "threads": thread_policy,
        "run_dir": str(run_dir),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    # The plot first, so results.json (written last: its presence means the run finished) can list it.
    results["plot"] = plot_pareto(run_dir / "pareto.png", history=results["history"], pareto=results["pareto"],
                                  best=best, budget_ms=constraints.latency_ms,
                                  title=f"{space.name} on {target.name}: accuracy vs latency ({data.name})")
    compressed = []
    if cfg.get("compress") is not None:
        from nas.compress.command import compress_winner

        results["compress"] = compress_winner(
            OmegaConf.to_container(cfg.compress, resolve=True), model=evaluator.subnet(best_trial.arch).eval(),
            onnx=run_dir / best["onnx"], shape=tuple(space.input_shape(best_trial.arch)), data=data, target=target,
            run_dir=run_dir, cache_dir=Path(str(cfg.cache_dir)).expanduser(), seed=seed, progress=progress)
        compressed = ["compress/report.json", "compress/models/compressed.onnx"]
    results["files"] = run_files(run_dir, "results.json", "pareto.png", best["onnx"], *compressed)
    return write_json(run_dir / "results.json", results)


#: The target a one-shot search without a latency term measures when none is given: this machine.
ONE_SHOT_DEFAULT_TARGET = "cpu"


def default_target_for_one_shot(cfg: DictConfig) -> None:
    """A differentiable search needs no latency to search (without a budget), so ``+target=`` may be left out
    (``python -m nas.search +space=darts strategy=darts``): the derived network is then measured on this
    machine's CPU (``+target=cpu``), and ``results.json`` says so (``device``)."""
    from omegaconf import open_dict

    strategy = cfg.get("strategy")
    if cfg.get("target") is not None or strategy is None or not isinstance(strategy.get("name"), str):
        return
    if not getattr(STRATEGIES.get(str(strategy.name)), "one_shot", False):
        return
    if cfg.get("constraint") is not None and cfg.constraint.get("latency_ms") is not None:
        return  # a budget is on some device: the user must name it (validate_config says so)
    path = Path(__file__).resolve().parents[1] / "conf" / "target" / f"{ONE_SHOT_DEFAULT_TARGET}.yaml"
    with open_dict(cfg):
        cfg.target = OmegaConf.load(path)
    log.info("no +target given: the derived network is measured on this machine (+target=%s)",
             ONE_SHOT_DEFAULT_TARGET)


def _data_space_target(cfg: DictConfig, space_cfg: dict, target_cfg: dict):
    """The data, the space sized to it, and the target with its measurement store (the seed set first)."""
    from nas.data import load_data

    seed = int(cfg.seed)
    torch.manual_seed(seed)
    data = load_data(**OmegaConf.to_container(cfg.data, resolve=True), seed=seed)
    target = make_target(target_cfg)
    if space_cfg["name"] == "channels" and space_cfg.get("divisor") == "auto":
        # Kept widths on the target's channel multiple: on a 16-channel kernel a width of 24 runs as slowly as 32.
        space_cfg = {**space_cfg, "divisor": target.channel_multiple()}
    space = make_space(space_cfg, num_classes=data.num_classes, in_channels=data.in_channels)
    attach_store(target, cfg)
    return data, space, target


def _run_one_shot(cfg: DictConfig, run_dir: Path, *, space_cfg: dict, target_cfg: dict, constraints: Constraints,
                  thread_policy: dict) -> Path:
    """A differentiable search (:mod:`nas.oneshot.run`)."""
    from nas.oneshot.run import run_differentiable_search

    data, space, target = _data_space_target(cfg, space_cfg, target_cfg)
    return run_differentiable_search(
        cfg, run_dir, space_cfg=space_cfg, target=target, data=data, space=space, thread_policy=thread_policy,
        strategy_factory=lambda: make_strategy(dict(cfg.strategy), space=space, objective=str(cfg.objective),
                                               constraints=constraints, seed=int(cfg.seed),
                                               budget=int(cfg.budget.queries)))


def _run_channels(cfg: DictConfig, run_dir: Path, *, space_cfg: dict, target_cfg: dict, thread_policy: dict) -> Path:
    """A channel search (:mod:`nas.channels.run`)."""
    from nas.channels.run import run_channel_search

    data, space, target = _data_space_target(cfg, space_cfg, target_cfg)
    return run_channel_search(cfg, run_dir, space=space, data=data, target=target, thread_policy=thread_policy)


def trial_entry(space: SearchSpace, trial: Trial) -> dict:
    """A front / history entry of ``results.json``: the arch, its metrics and where each came from."""
    m = trial.metrics
    return {
        "arch": trial.arch,
        "arch_id": trial.arch_id,
        "public": space.to_public(trial.arch),
        "accuracy": m["accuracy"],
        "accuracy_source": m.get("accuracy_source", "predicted"),
        "latency_ms": m["latency_ms"],
        "latency_source": m.get("latency_source", "predicted"),
        **({"predicted_latency_ms": m["predicted_latency_ms"]} if "predicted_latency_ms" in m else {}),
    }
