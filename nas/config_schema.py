"""One validation layer for the whole search config, run before any work starts.

``run_search`` calls :func:`validate_config` first: before data is read, a supernet loaded or trained, or
anything measured. A bad value anywhere ends the run with one line ``error: <key>=<value>: <allowed range>``
(``nas.search`` prints it and exits with status 2), naming the dotted path the user typed.

Where the ranges live (one home each, no second copy):

- keys only the pipeline reads (``seed``, ``budget.*``, ``accuracy.*``, ``latency.*``, ``final.*`` ...) are
  declared in :data:`TOP_LEVEL` below, or, for a key another module owns (``threads``, ``final.choose``),
  checked by that module's own function, which :data:`TOP_LEVEL` points to;
- a config group (``space``, ``strategy``, ``target``, ``data``, ``evaluator``, ``space.train``) is checked by
  what consumes it: its keyword-only constructor (or ``load_data``'s checks, or ``TrainConfig``) is called
  up front with the section, cheaply, after two generic checks derived from its signature: no unknown keys
  (a typo names the valid ones) and values of the annotated types (``int``, ``float | None``, lists ...).
  A constructor's :class:`ConfigError` names the bad option; this layer prefixes the dotted path and value.

Why not Hydra structured configs: they would type the YAML, but not range it, and a second dataclass per
constructor would repeat every signature; their errors also come out of composition as several lines with
exit status 1. The signatures are already typed and the constructors already validate.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nas.errors import ConfigError, DataError, UserError

#: Config groups: validated by building what consumes them, not by :data:`TOP_LEVEL`.
GROUPS = ("space", "strategy", "target", "data", "evaluator")
#: Subnets the accuracy / latency predictors are fitted on, at least: the two extremes of a weight-sharing
#: space (always included) plus one sampled subnet, so a fit is more than a line through two points.
MIN_PREDICTOR_SAMPLES = 3


# ---------------------------------------------------------------------------------------------- options
@dataclass(frozen=True, kw_only=True)
class Option:
    """The type and range of one config key the pipeline reads.

    ``kind``: ``int``, ``float``, ``bool``, ``str`` or ``any``; bounds ``ge``/``gt``/``le``/``lt``; ``nullable``:
    ``null`` allowed (what it means is in conf/config.yaml); ``choices``: allowed strings (or a function that
    lists them, e.g. a registry); ``check``: the owning module's validator, called with the value (raises
    :class:`ConfigError`); ``existing``: a path that must exist (``file`` or ``dir``).
    """

    kind: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    nullable: bool = False
    choices: tuple[str, ...] | Callable[[], Sequence[str]] | None = None
    check: Callable[[Any], Any] | None = None
    existing: str | None = None

    def allowed(self) -> str:
        """The allowed values in words, e.g. ``an integer >= 1`` or ``null or a number in (0, 1)``."""
        if self.choices is not None:
            text = f"one of {', '.join(map(str, self.choice_list()))}"
        else:
            text = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                    "any": "a value"}[self.kind]
            low = f"[{_num(self.ge)}" if self.ge is not None else (f"({_num(self.gt)}" if self.gt is not None else None)
            high = f"{_num(self.le)}]" if self.le is not None else (f"{_num(self.lt)})" if self.lt is not None else None)
            if low and high:
                text += f" in {low}, {high}"
            elif low:
                text += f" {'>=' if self.ge is not None else '>'} {low[1:]}"
            elif high:
                text += f" {'<=' if self.le is not None else '<'} {high[:-1]}"
            if self.existing:
                text = f"an existing {'file' if self.existing == 'file' else 'directory'} path"
        return f"null or {text}" if self.nullable else text

    def choice_list(self) -> list[str]:
        assert self.choices is not None
        return list(self.choices() if callable(self.choices) else self.choices)

    def validate(self, key: str, value: Any) -> None:
        if value is None:
            if not self.nullable:
                raise ConfigError(f"{key}=null: must be {self.allowed()}")
            return
        if self.check is not None:
            self.check(value)  # the owner's message names the key
        if not _is_kind(value, self.kind):
            raise ConfigError(f"{key}={show(value)}: must be {self.allowed()} (got {_type_name(value)})")
        if self.kind in ("int", "float"):
            bounds = (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt) \
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt)
            if not math.isfinite(value) or not bounds:
                raise ConfigError(f"{key}={show(value)}: must be {self.allowed()}")
        if self.choices is not None and value not in self.choice_list():
            raise ConfigError(f"{key}={show(value)}: must be {self.allowed()}")
        if self.existing == "file" and not Path(str(value)).expanduser().is_file():
            raise ConfigError(f"{key}={value}: no such file; must be {self.allowed()}")


def _objectives() -> list[str]:
    from nas.objectives import OBJECTIVE_MODES

    return sorted(OBJECTIVE_MODES)


def _predictors() -> list[str]:
    from nas.registry import list_predictors

    return list_predictors()


def _features() -> list[str]:
    from nas.surrogate import FEATURES

    return list(FEATURES)


def _check_threads(value: Any) -> None:
    from nas.threads import resolve_threads

    resolve_threads(value)


def _check_choice_rule(value: Any) -> None:
    from nas.choice import resolve_rule

    resolve_rule(value, budget_ms=None)  # the rules and their message live in nas/choice.py


def _predictor_options(prefix: str) -> dict[str, Option]:
    return {
        f"{prefix}.samples": Option(kind="int", ge=MIN_PREDICTOR_SAMPLES),
        f"{prefix}.holdout": Option(kind="float", ge=0, lt=1),
        f"{prefix}.predictor": Option(kind="str", choices=_predictors),
        f"{prefix}.features": Option(kind="str", choices=_features),
        f"{prefix}.log_target": Option(kind="bool"),
    }


#: Every key outside the config groups, with its type and range (what each means: conf/config.yaml).
TOP_LEVEL: dict[str, Option] = {
    "seed": Option(kind="int", ge=0),
    "objective": Option(kind="str", choices=_objectives),
    "constraint.latency_ms": Option(kind="float", gt=0, nullable=True),
    "constraint.latency_ratio": Option(kind="float", gt=0, le=1, nullable=True),  # +space=channels only
    "budget.queries": Option(kind="int", ge=1),
    "budget.seconds": Option(kind="float", gt=0, nullable=True),
    **_predictor_options("accuracy"),
    "accuracy.calib_images": Option(kind="int", ge=1),
    **_predictor_options("latency"),
    "final.measure_front": Option(kind="int", ge=1),
    "final.accuracy_tolerance": Option(kind="float", ge=0, le=1),
    "final.choose": Option(kind="str", check=_check_choice_rule),  # the rules live in nas/choice.py
    "measurements.store": Option(kind="str", nullable=True),
    "measurements.remeasure": Option(kind="bool"),
    "arch": Option(kind="any", nullable=True),  # parsed by the space below
    "progress": Option(kind="bool"),
    "threads": Option(kind="int", nullable=True, check=_check_threads),  # range: nas/threads.py
    "cache_dir": Option(kind="str"),
}

#: Constructor arguments the pipeline supplies itself: not config keys of the group.
INJECTED = {
    "space": ("num_classes", "in_channels"),  # from the data (a tabular run may still set them)
    "strategy": ("space", "objectives", "constraints", "seed", "budget", "evaluator"),
    "target": ("workdir", "store"),
    "data": ("seed",),
    "evaluator": ("space",),
}
#: Keys of a space section that are not constructor arguments: ``name``, ``train`` (TrainConfig, checked
#: below), ``checkpoint`` (a trained supernet to load) and, on the channels space, ``finetune`` and
#: ``slimmable`` (checked by :func:`check_channel_run`).
SPACE_META = {"name": Option(kind="str"), "train": Option(kind="any", nullable=True),
              "checkpoint": Option(kind="str", nullable=True, existing="file"),
              "finetune": Option(kind="any", nullable=True), "slimmable": Option(kind="any", nullable=True)}


# ---------------------------------------------------------------------------------------------- validate
def validate_config(cfg: DictConfig) -> dict[str, Any]:
    """Check the whole composed config; :class:`ConfigError` (one line, naming the key) on the first problem.

    Returns the objects built while checking (``space``, ``target``, ``strategy``, ``evaluator``; a space is
    built without the data's class and channel counts, which only a supernet run takes from the data)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]}=???: required; set it on the command line, e.g. {missing[0]}=... "
                          f"(missing: {', '.join(missing)})")
    try:
        values = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # an interpolation that cannot resolve, e.g. ${oc.env:...}
        raise ConfigError(f"cannot resolve the config: {' '.join(str(err).split())}") from None
    assert isinstance(values, dict)
    values.pop("hydra", None)
    compress = values.pop("compress", None)
    if compress is not None:  # compress=default: the winner's compression steps (nas/compress), checked by them
        from nas.compress.command import steps_of

        try:
            steps_of(compress)
        except ConfigError as err:
            raise ConfigError(f"compress: {err}") from None
    check_top_level(values)
    return check_groups(values)


def check_top_level(values: Mapping[str, Any]) -> None:
    leaves = dict(_leaves({k: v for k, v in values.items() if k not in GROUPS}))
    for key, value in leaves.items():
        option = TOP_LEVEL.get(key)
        if option is None:
            prefix = key.split(".")[0]
            near = [k for k in TOP_LEVEL if k.split(".")[0] == prefix] or sorted({k.split(".")[0] for k in TOP_LEVEL})
            raise ConfigError(f"{key}={show(value)}: unknown config key; valid keys: {', '.join(near)}")
        option.validate(key, value)


def check_groups(values: Mapping[str, Any]) -> dict[str, Any]:
    from nas.objectives import Constraints, objectives_for
    from nas.pipeline import EVALUATORS, make_space, make_strategy, make_target, parse_arch_option
    from nas.registry import SPACES, STRATEGIES, TARGETS, list_spaces, list_targets
    from search_spaces.base import WeightSharingSpace

    for group, names in (("space", list_spaces), ("target", list_targets)):
        if values.get(group) is None:
            raise ConfigError(f"no {group} chosen: add +{group}=NAME to the command (available: "
                              f"{', '.join(names())}), e.g. python -m nas.search +space=ofa +target=cpu")
    for group in GROUPS:
        section = values.get(group)
        if not isinstance(section, dict) or not isinstance(section.get("name"), str):
            raise ConfigError(f"{group}={show(section)}: a config group needs a mapping with a 'name'; choose one "
                              f"with {group}=NAME")
    objective = values["objective"]
    constraints = Constraints(latency_ms=values["constraint"]["latency_ms"])
    built: dict[str, Any] = {}

    space_cfg = values["space"]
    factory = SPACES.get(space_cfg["name"])
    for key, option in SPACE_META.items():
        if key in space_cfg:
            option.validate(f"space.{key}", space_cfg[key])
    kwargs = {k: v for k, v in space_cfg.items() if k not in SPACE_META}
    check_options("space", space_cfg["name"], kwargs, constructor_options(factory), exclude=INJECTED["space"])
    built["space"] = space = _build("space", kwargs, lambda: make_space(space_cfg))

    evaluator_cfg = values["evaluator"]
    if evaluator_cfg["name"] not in EVALUATORS:
        raise ConfigError(f"evaluator={evaluator_cfg['name']}: must be one of {', '.join(EVALUATORS)}")
    if check_channel_run(values, space_cfg):
        check_data(values["data"], seed=values["seed"])
    elif evaluator_cfg["name"] in ("pruned", "slimmable"):
        raise ConfigError(f"evaluator={evaluator_cfg['name']} scores channel widths of a base network and needs "
                          f"+space=channels; for space {space_cfg['name']!r} use evaluator=supernet or tabular")
    # A one-shot strategy (strategy=darts) trains its own relaxed supernet: it needs the data, not a table.
    one_shot = bool(getattr(STRATEGIES.get(values["strategy"]["name"]), "one_shot", False))
    if one_shot and evaluator_cfg["name"] == "tabular":
        raise ConfigError(f"strategy={values['strategy']['name']} with evaluator=tabular: a differentiable search "
                          f"trains a relaxed supernet on the data and cannot search a table; drop evaluator=tabular "
                          f"(on nb201 the derived cell is still looked up in the shipped table)")
    if space_cfg["name"] == "channels":
        pass  # checked by check_channel_run above
    elif one_shot:
        check_data(values["data"], seed=values["seed"])
    elif evaluator_cfg["name"] == "tabular":
        from nas.tabular import TabularEvaluator

        kwargs = {k: v for k, v in evaluator_cfg.items() if k != "name"}
        check_options("evaluator", "tabular", kwargs, constructor_options(TabularEvaluator),
                      exclude=INJECTED["evaluator"])
        built["evaluator"] = _build("evaluator", kwargs, lambda: TabularEvaluator(space, **kwargs))  # tables cache
    else:
        if not isinstance(space, WeightSharingSpace):
            from search_spaces.relax import RelaxableSpace

            hint = "strategy=darts (differentiable search), " if isinstance(space, RelaxableSpace) else ""
            raise ConfigError(f"evaluator=supernet: space {space.name!r} has no supernet to estimate accuracy "
                              f"with; use {hint}evaluator=tabular (accuracy from a table) or a weight-sharing "
                              f"space (ofa)")
        check_train(space_cfg.get("train"), seed=values["seed"])
        check_data(values["data"], seed=values["seed"])

    target_cfg = values["target"]
    kwargs = {k: v for k, v in target_cfg.items() if k != "name"}
    check_options("target", target_cfg["name"], kwargs, constructor_options(TARGETS.get(target_cfg["name"])),
                  exclude=INJECTED["target"])
    built["target"] = _build("target", kwargs, lambda: make_target(target_cfg))

    if values.get("arch") is not None:
        try:
            parse_arch_option(values["arch"], space)
        except UserError as err:
            raise ConfigError(f"arch={show(values['arch'])}: {err}") from None
    else:
        strategy_cfg = values["strategy"]
        kwargs = {k: v for k, v in strategy_cfg.items() if k != "name"}
        requested, queries = strategy_cfg["name"], values["budget"]["queries"]
        STRATEGIES.get(requested)
        # strategy=auto stands for a registered strategy: its options are the chosen one's
        from nas.strategies.auto import resolve

        chosen, _ = resolve(requested, evaluator=evaluator_cfg["name"], budget=queries)
        label = chosen if chosen == requested else f"{chosen} (chosen by strategy={requested})"
        check_options("strategy", label, kwargs, constructor_options(STRATEGIES.get(chosen)),
                      exclude=INJECTED["strategy"])
        built["strategy"] = _build("strategy", kwargs, lambda: make_strategy(
            dict(strategy_cfg), space=space, objective=objective, constraints=constraints, seed=values["seed"],
            budget=queries, evaluator=evaluator_cfg["name"]))
    objectives_for(objective)
    return built


def check_channel_run(values: Mapping[str, Any], space_cfg: Mapping[str, Any]) -> bool:
    """The channel-search keys (:mod:`nas.channels.run`): whether this is a channel run, checked.

    ``constraint.latency_ratio`` is a fraction of the base network's latency and needs the channels space;
    ``strategy=autoslim|amc`` need its channel widths; ``space.train`` / ``finetune`` / ``slimmable`` take the
    keys of their defaults (:data:`nas.channels.base.DEFAULT_TRAIN` and its siblings), positive numbers."""
    from nas.channels.strategies import is_channel_strategy
    from nas.registry import STRATEGIES

    strategy = values["strategy"]["name"]
    ratio, budget = values["constraint"].get("latency_ratio"), values["constraint"]["latency_ms"]
    if space_cfg["name"] != "channels":
        if ratio is not None:
            raise ConfigError(f"constraint.latency_ratio={show(ratio)}: a fraction of a base network's latency, for "
                              f"+space=channels only; give space {space_cfg['name']!r} a budget in ms with "
                              f"constraint.latency_ms")
        if is_channel_strategy(STRATEGIES.get(strategy)):
            raise ConfigError(f"strategy={strategy} searches channel widths and needs +space=channels (a base "
                              f"network's prunable channel groups); space {space_cfg['name']!r} has no continuous "
                              f"channel widths: use +space=channels space.base=..., or strategy=auto")
        return False
    if ratio is not None and budget is not None:
        raise ConfigError(f"constraint.latency_ms={show(budget)} and constraint.latency_ratio={show(ratio)} are both "
                          f"set; give one (latency_ratio: a fraction of the base network's measured latency)")
    if values["evaluator"]["name"] == "tabular":
        raise ConfigError("evaluator=tabular: the channels space has no accuracy table; use evaluator=pruned (the "
                          "base's weights, L1-pruned) or evaluator=slimmable (a slimmable supernet)")
    from nas.channels.base import DEFAULT_TRAIN
    from nas.channels.finetune import DEFAULT_FINETUNE
    from nas.channels.run import DEFAULT_SLIMMABLE

    for key, defaults in (("train", DEFAULT_TRAIN), ("finetune", DEFAULT_FINETUNE), ("slimmable", DEFAULT_SLIMMABLE)):
        section = space_cfg.get(key) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"space.{key}={show(section)}: expected a mapping with keys {', '.join(defaults)}")
        for name, value in section.items():
            if name not in defaults:
                raise ConfigError(f"space.{key}.{name}={show(value)}: unknown key; valid keys: {', '.join(defaults)}")
            integer = isinstance(defaults[name], int)
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or not (
                    math.isfinite(value) and (value >= 0 if name == "kd_ratio" else value > 0)):
                raise ConfigError(f"space.{key}.{name}={show(value)}: must be a positive "
                                  f"{'integer' if integer else 'number'}")
            if name == "kd_ratio" and value > 1:
                raise ConfigError(f"space.{key}.{name}={show(value)}: the distillation weight lies in [0, 1]")
    return True


def check_train(train: Any, *, seed: int) -> None:
    """``space.train``: :class:`~nas.training.TrainConfig` (its fields are the valid keys, its checks the ranges)."""
    from nas.training import TrainConfig

    train = dict(train or {})
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(TrainConfig)}
    check_options("space.train", "supernet training", train, (fields, False), exclude=("seed",))
    _build("space.train", train, lambda: TrainConfig(**train, seed=seed))


def check_data(data: Mapping[str, Any], *, seed: int) -> None:
    """``data``: :func:`nas.data.check_data_options` (the checks ``load_data`` runs, without reading anything)."""
    from nas.data import check_data_options, load_data

    kwargs = {k: v for k, v in data.items()}
    check_options("data", str(data["name"]), kwargs, constructor_options(load_data), exclude=INJECTED["data"])
    _build("data", kwargs, lambda: check_data_options(**kwargs))


# ---------------------------------------------------------------------------------------------- composition
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def composition_error(argv: Sequence[str], *, config_name: str = "config") -> ConfigError | None:
    """What Hydra would refuse in these command-line overrides, as one :class:`ConfigError`, or ``None``.

    Hydra refuses an option file that does not exist (``strategy=evolutio``), a key the config does not have
    (``strategy.populaton_size=3``) and an override that does not parse, with several lines and exit status 1;
    composing once here first (no torch imported, so the thread policy still applies) says it on one line
    naming the valid choices. Hydra's own flags (``--multirun``, ``--cfg`` ...) and sweeps are left to Hydra.
    ``config_name``: the command's primary config (``config`` for nas.search, ``compress`` for nas.compress)."""
    if any(arg.startswith("-") for arg in argv):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException

    try:
        overrides = OverridesParser.create().parse_overrides(list(argv))
    except OverrideParseException as err:
        return ConfigError(f"cannot read the command line: {' '.join(str(err).split())}")
    if any(o.is_sweep_override() for o in overrides) or GlobalHydra.instance().is_initialized():
        return None
    kept = [(arg, o) for arg, o in zip(argv, overrides) if not o.key_or_group.startswith("hydra")]

    def compose_with(args: list[str]) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=args)

    try:
        compose_with([arg for arg, _ in kept])
    except MissingConfigException as err:
        group = str(err.missing_cfg_file or "").rsplit("/", 1)
        if len(group) == 2 and err.options:
            return ConfigError(f"{group[0]}={group[1]}: no such {group[0]}; available: {', '.join(err.options)}")
        return ConfigError(" ".join(str(err).split()))
    except HydraException as err:
        full_key = getattr(err.__cause__, "full_key", None)
        culprit = next(((arg, o) for arg, o in kept if full_key and o.key_or_group.startswith(str(full_key))), None)
        if culprit is None:
            return ConfigError(" ".join(str(err).split()))
        arg, override = culprit
        others = [a for a, _ in kept if a != arg]
        key = override.key_or_group
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        try:
            root = compose_with(others)
        except HydraException:
            root = None
        head = key.split(".")[0]
        node = OmegaConf.select(root, parent) if root is not None and parent else root
        if head in GROUPS and root is not None and head not in root:
            return ConfigError(f"{arg}: no {head} is chosen yet; choose it first with +{head}=NAME")
        if not isinstance(node, DictConfig) and root is not None and head not in root:
            node, parent = root, ""  # a top-level typo (budjet.queries): the top-level keys
        if isinstance(node, DictConfig):
            where = f"of {parent}" if parent else "at the top level"
            return ConfigError(f"{arg}: unknown key; valid keys {where}: {', '.join(str(k) for k in node)} "
                               f"(to add a key the config does not list, write +{arg})")
        return ConfigError(f"{arg}: the config has no key {full_key}")
    return None


# ---------------------------------------------------------------------------------------------- signatures
def constructor_options(factory: Callable) -> tuple[dict[str, Any], bool]:
    """The keyword options ``factory`` takes, with their annotations, and whether it takes any keyword at all.

    For a class, ``__init__`` is followed up the class hierarchy while it passes ``**kwargs`` on (a subclass
    that adds defaults and forwards the rest, as targets and strategies do)."""
    functions = []
    if inspect.isclass(factory):
        for klass in factory.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            functions.append(init)
            if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
                break
        else:
            return {}, True
    else:
        functions.append(factory)
    options: dict[str, Any] = {}
    for function in functions:
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # an annotation that does not resolve: check the name only
            hints = {}
        for name, param in inspect.signature(function).parameters.items():
            if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            options.setdefault(name, hints.get(name, Any))
    open_ended = not functions or any(p.kind is p.VAR_KEYWORD
                                      for p in inspect.signature(functions[-1]).parameters.values())
    return options, open_ended


def check_options(group: str, name: str, section: Mapping[str, Any], signature: tuple[dict[str, Any], bool], *,
                  exclude: Iterable[str] = ()) -> None:
    """No unknown keys in ``section`` and every value of its annotated type, before the constructor runs."""
    options, open_ended = signature
    valid = [k for k in options if k not in set(exclude)]
    for key, value in section.items():
        if key not in valid and not open_ended:
            raise ConfigError(f"{group}.{key}={show(value)}: unknown option of {group} {name}; valid options: "
                              f"{', '.join(valid) or '(none)'}")
        annotation = options.get(key, Any)
        origin, args = typing.get_origin(annotation) or annotation, typing.get_args(annotation)
        if isinstance(value, Mapping) and inspect.isclass(origin) and issubclass(origin, Mapping) and len(args) == 2:
            for sub, item in value.items():  # name the entry: space.train.epochs.full=abc
                if not _matches(item, args[1]):
                    raise ConfigError(f"{group}.{key}.{sub}={show(item)}: must be {_describe(args[1])} "
                                      f"(got {_type_name(item)})")
        if not _matches(value, annotation):
            raise ConfigError(f"{group}.{key}={show(value)}: must be {_describe(annotation)} (got {_type_name(value)})")


def _build(group: str, section: Mapping[str, Any], build: Callable[[], Any]) -> Any:
    """``build()``, with a :class:`ConfigError` it raises said as ``group.key=value: <its message>``."""
    try:
        return build()
    except ConfigError as err:
        error: type[UserError] = ConfigError
        message = " ".join(str(err).split())
    except DataError as err:  # a missing folder: the same, keeping its class
        error, message = DataError, " ".join(str(err).split())
    except UserError as err:  # not about one option (e.g. a DeviceError: no GPU here): as it is, on one line
        raise type(err)(" ".join(str(err).split())) from None
    named = _named_options(group, section, message)
    if not named:
        raise error(f"{group}: {message}")
    if len(named) == 1:
        key, value = named[0]
        if message.startswith(f"{key}="):
            raise error(message)
        if message.startswith(f"{key} "):  # "strategy.x must be ...": say the key once
            message = message[len(key) + 1:]
    prefix = ", ".join(f"{key}={show(value)}" for key, value in named)
    raise error(f"{prefix}: {message}")


def _named_options(group: str, section: Mapping[str, Any], message: str) -> list[tuple[str, Any]]:
    """The options of ``section`` a constructor's message names: by dotted path if it uses them, else by name."""
    leaves = list(_leaves(section))
    dotted = [(f"{group}.{key}", value) for key, value in leaves
              if re.search(rf"(?<![\w.]){re.escape(group + '.' + key)}(?![\w])", message)]
    if dotted:
        return dotted
    named = [(f"{group}.{key}", value) for key, value in leaves
             if all(re.search(rf"(?<![\w]){re.escape(part)}(?![\w])", message) for part in key.split("."))]
    # A message may mention other options in passing ("... or null to run to max_seconds"): keep the ones
    # whose value it quotes, when that narrows it down.
    # Several named and none quoted: the message only mentions them as advice ("give evaluator.table=FILE").
    quoted = [(key, value) for key, value in named if _quoted(value, message)]
    return quoted or (named if len(named) == 1 else [])


def _quoted(value: Any, message: str) -> bool:
    forms = {show(value), repr(value), str(value)}
    if isinstance(value, (list, tuple)):
        forms.add(repr(list(value)))
    return any(re.search(rf"(?<![\w.-]){re.escape(f)}(?![\w.])", message) for f in forms if f)


def _leaves(mapping: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and key != "arch":
            yield from _leaves(value, path + ".")
        else:
            yield path, value


# ---------------------------------------------------------------------------------------------- types
def _matches(value: Any, annotation: Any) -> bool:
    """Whether a config value can be of type ``annotation`` (unknown or open annotations accept anything)."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _is_kind(value, "int")
    if annotation is float:
        return _is_kind(value, "float")
    if annotation is str:
        return isinstance(value, str)
    if annotation is Path or annotation is type(Path()):
        return isinstance(value, (str, Path))
    container = origin or annotation
    if inspect.isclass(container) and issubclass(container, Mapping):
        return isinstance(value, Mapping) and (len(args) != 2 or all(_matches(v, args[1]) for v in value.values()))
    if inspect.isclass(container) and issubclass(container, (list, tuple, Sequence, Iterable)) \
            and container not in (str, bytes):
        if not isinstance(value, (list, tuple)):
            return False
        return not args or all(_matches(v, args[0]) for v in value) if len(args) <= 1 or args[-1] is Ellipsis \
            else True
    return True  # a class a YAML value cannot be (e.g. MeasurementStore): let the constructor decide


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        names = [_describe(a) for a in args if a is not type(None)]
        return ("null or " if type(None) in args else "") + " or ".join(names)
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    container = origin or annotation
    if inspect.isclass(container) and issubclass(container, Mapping):
        return "a mapping" + (f" of {_describe(args[1])} values" if len(args) == 2 else "")
    if inspect.isclass(container) and issubclass(container, Iterable) and container is not str:
        return "a list" + (f" of {_plural(_describe(args[0]))}" if len(args) == 1 else "")
    return getattr(annotation, "__name__", str(annotation))


def _plural(text: str) -> str:
    return {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(text, text)


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    return True


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Integral):
        return "an integer"
    if isinstance(value, numbers.Real):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def show(value: Any) -> str:
    """A config value as the user would type it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if value == "" or value.strip() != value or any(c in value for c in ",=[]{} ") \
            or _looks_like_number(value) else value
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show(v) for v in value) + "]"
    return str(value)


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.lower() in ("true", "false", "null", "none")
    return True
