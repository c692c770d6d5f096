"""The base network of a channel search: what it is (``space.base`` / ``space.base_run``) and its trained weights.

``space.base`` names a network:

- a preset (``mobilenet_v2``, ``mobilenet_v3_large`` ...: ``python -m search_spaces describe --preset``), sized to
  the data (classes, input channels) and to ``space.resolution``, with ``space.base_config`` overriding the
  preset's options (default ``{width_mult: 0.5}`` for a preset with a width multiplier);
- an arch of a block or OFA space as JSON (inline, ``@file`` or a ``.json`` path):
  ``{"space": "ofa", "arch": {...}, "config": {...}}`` (``config``: the space's options, optional);
- a trained base checkpoint (``base.npz``, as a channel run writes under ``models/``): architecture and weights.

``space.base_run`` takes the best network of an earlier run directory with its trained weights (the run's
supernet, BatchNorm recalibrated). A base without weights (a preset or an arch) is trained from scratch on
the data first (``space.train``), cached under ``cache_dir/channel_bases`` and resumable.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.checkpoint import load_checkpoint, save_checkpoint
from nas.errors import ConfigError, InvalidArchError, ModelError

log = logging.getLogger("nas.search")

BASE_FILE = "base.npz"
#: The base when neither ``space.base`` nor ``space.base_run`` is given: MobileNetV2 (at width 0.5, as every
#: preset with a width multiplier is unless ``space.base_config`` says otherwise: it trains in about two minutes
#: on the embedded data here).
DEFAULT_BASE = "mobilenet_v2"
DEFAULT_BASE_CONFIG = {"width_mult": 0.5}
_BASE_FORMAT = "hwnas.channel-base/1"


@dataclass(frozen=True)
class BaseSpec:
    """A base network: a member ``arch`` of space ``space`` built with options ``config``, and where its
    weights come from (``weights``: a base.npz, ``supernet``: a run's supernet file, or neither: train)."""

    space: str
    config: Mapping[str, Any]
    arch: Mapping[str, Any]
    source: str
    weights: str | None = None
    supernet: str | None = None
    run: str | None = None

    def fingerprint(self) -> str:
        """What identifies the network's structure (measurements of its pruned members are keyed by it)."""
        payload = {"space": self.space, "config": dict(self.config), "arch": dict(self.arch)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def build_space(self):
        from nas.registry import SPACES

        factory = SPACES.get(self.space)
        try:
            return factory(**dict(self.config))
        except TypeError as exc:
            raise ConfigError(f"space.base: bad option for space {self.space!r}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "config": dict(self.config), "arch": dict(self.arch), "source": self.source,
                "weights": self.weights, "supernet": self.supernet, "run": self.run}


def resolve_base(*, base: object, base_run: object, base_config: Mapping | None, resolution: int,
                 num_classes: int, in_channels: int) -> BaseSpec:
    """The :class:`BaseSpec` of ``space.base`` or ``space.base_run`` (at most one may be given; neither:
    :data:`DEFAULT_BASE` with :data:`DEFAULT_BASE_CONFIG` unless ``base_config`` says otherwise)."""
    if base is not None and base_run is not None:
        raise ConfigError("space.base and space.base_run are both set; give one: space.base (a preset such as "
                          "mobilenet_v2, an arch as JSON, or a base.npz) or space.base_run (an earlier run directory)")
    if base is None and base_run is None:
        base = DEFAULT_BASE
    shape = {"num_classes": num_classes, "in_channels": in_channels}
    if base_run is not None:
        return _from_run(Path(str(base_run)), shape)
    if isinstance(base, Mapping):
        return _from_mapping(dict(base), base_config, resolution, shape, source="arch")
    text = str(base).strip()
    if text.endswith(".npz"):
        return _from_checkpoint(Path(text), shape)
    if text.startswith(("{", "@")) or text.endswith(".json"):
        from nas.arch import parse_json_arg

        value = parse_json_arg(text)
        if not isinstance(value, Mapping):
            raise ConfigError(f"space.base={text[:60]!r}: expected a JSON object {{\"space\", \"arch\"}}")
        return _from_mapping(dict(value), base_config, resolution, shape, source="arch")
    from search_spaces.layerwise import get_preset, list_presets

    if text not in list_presets():
        raise ConfigError(f"space.base={text!r} is not a preset, a JSON arch or a .npz file; presets: "
                          f"{', '.join(list_presets())}")
    preset = get_preset(text)
    # A preset is an ImageNet network: sized to the data by resolution and, unless base_config says, the width
    overrides = DEFAULT_BASE_CONFIG if base_config is None and "width_mult" in preset.config else base_config
    config = {**dict(preset.config), "resolution": resolution, **dict(overrides or {}), **shape}
    return BaseSpec(preset.space, config, dict(zip(_labels(preset.space, config), preset.ops)), f"preset:{text}")


def _labels(space_name: str, config: Mapping) -> list[str]:
    return list(BaseSpec(space_name, config, {}, "").build_space().choices())


def _from_mapping(value: dict, base_config: Mapping | None, resolution: int, shape: dict, *, source: str) -> BaseSpec:
    if "space" not in value or "arch" not in value:
        raise ConfigError(f"space.base: a JSON base needs keys 'space' and 'arch', got {sorted(value)}")
    name = str(value["space"])
    config = {"resolution": resolution, **dict(value.get("config") or {}), **dict(base_config or {}), **shape}
    if "resolution" not in _init_options(name):
        config.pop("resolution")
    space = BaseSpec(name, config, {}, source).build_space()
    try:
        arch = space.parse(value["arch"])
    except InvalidArchError as exc:
        raise ConfigError(f"space.base: {exc}") from None
    return BaseSpec(name, config, arch, source)


def _init_options(space_name: str) -> set[str]:
    """The constructor options of registered space ``space_name`` (read from its signature, nothing built)."""
    import inspect

    from nas.registry import SPACES

    return set(inspect.signature(SPACES.get(space_name)).parameters)


def _from_checkpoint(path: Path, shape: dict) -> BaseSpec:
    if not path.is_file():
        raise ConfigError(f"space.base={path} does not exist; give a base.npz written by a channel run "
                          f"(runs/.../models/base.npz), a preset or a JSON arch")
    try:
        _tensors, meta = load_checkpoint(path)
    except ModelError as exc:
        raise ConfigError(f"space.base={path}: {exc}") from None
    if meta.get("format") != _BASE_FORMAT:
        raise ConfigError(f"space.base={path} is not a base network file (format {meta.get('format')!r})")
    _check_shape(meta["config"], shape, f"space.base={path}")
    return BaseSpec(meta["space"], meta["config"], meta["arch"], f"checkpoint:{path}", weights=str(path))


def _from_run(run_dir: Path, shape: dict) -> BaseSpec:
    results = run_dir / "results.json"
    if not results.is_file():
        raise ConfigError(f"space.base_run={run_dir}: no results.json there (not a finished run directory)")
    record = json.loads(results.read_text())
    if record.get("space") == "channels":
        raise ConfigError(f"space.base_run={run_dir} is a channel run: its best network is already pruned. To prune "
                          f"its base network again, give space.base={run_dir / 'models' / BASE_FILE}")
    space_cfg = dict((record.get("config") or {}).get("space") or {})
    supernet = (record.get("supernet") or {}).get("path")
    if not space_cfg or not supernet:
        raise ConfigError(f"space.base_run={run_dir}: the run has no supernet to take the best network's weights "
                          f"from (a predictor-scored search of a weight-sharing space has one)")
    if not Path(supernet).is_file():
        raise ConfigError(f"space.base_run={run_dir}: its supernet {supernet} is gone (cache cleared?); rerun it")
    config = {k: v for k, v in space_cfg.items() if k not in ("name", "train", "checkpoint")}
    data = record.get("data") or {}
    config.update(num_classes=int(data.get("num_classes", shape["num_classes"])))
    if "in_channels" in _init_options(space_cfg["name"]):
        config["in_channels"] = shape["in_channels"]
    _check_shape({**config, "in_channels": config.get("in_channels", shape["in_channels"])}, shape,
                 f"space.base_run={run_dir}")
    return BaseSpec(space_cfg["name"], config, dict(record["best"]["arch"]), f"run:{run_dir}",
                    supernet=str(supernet), run=str(run_dir))


def _check_shape(config: Mapping, shape: Mapping, what: str) -> None:
    for key in ("num_classes", "in_channels"):
        if key in config and int(config[key]) != int(shape[key]):
            raise ConfigError(f"{what} was made for {key}={config[key]} but the data has {shape[key]}; use the "
                              f"same data (data=...) as that network")


# ---------------------------------------------------------------------------------------------- weights
def save_base(path: Path, model: nn.Module, spec: BaseSpec, meta: Mapping[str, Any]) -> Path:
    """A base network file: weights plus its space, options and arch (loadable as ``space.base=path``)."""
    tensors = dict(model.state_dict())
    save_checkpoint(path, tensors, {"format": _BASE_FORMAT, "space": spec.space, "config": dict(spec.config),
                                    "arch": dict(spec.arch), **dict(meta)})
    return path


def load_network(path: Path | str, *, num_classes: int, in_channels: int) -> tuple[nn.Module, tuple[int, int, int]]:
    """The network a base file (``base.npz``) holds, built and with its weights, in eval mode, and its input
    ``(C, H, W)``; a file made for other data (classes, channels) is a :class:`ConfigError`."""
    spec = _from_checkpoint(Path(path), {"num_classes": num_classes, "in_channels": in_channels})
    space = spec.build_space()
    arch = space.validate(spec.arch)
    model = space.build(arch)
    load_base_weights(path, model)
    return model.eval(), tuple(int(v) for v in space.input_shape(arch))


def load_base_weights(path: Path | str, model: nn.Module) -> dict[str, Any]:
    tensors, meta = load_checkpoint(path)
    missing = set(model.state_dict()) ^ set(tensors)
    if missing:
        raise ModelError(f"{path} does not match the base network (differing tensors: {sorted(missing)[:4]})")
    model.load_state_dict(tensors)
    return meta


def run_network(spec: BaseSpec, data, *, calib_images: int = 500, seed: int = 0) -> nn.Module:
    """The network ``spec`` names in an earlier run (``spec.supernet``), with the run's shared weights and its
    BatchNorm statistics recalibrated on ``data``'s training images: the run's best network, as a plain module."""
    from nas.accuracy import SupernetEvaluator
    from nas.training import load_trained_supernet

    space = spec.build_space()
    supernet, _meta = load_trained_supernet(spec.supernet, space)
    evaluator = SupernetEvaluator(space, supernet, data, calib_images=calib_images, seed=seed)
    return evaluator.subnet(space.validate(spec.arch)).eval()


#: Training of a base that comes without weights (``space.train``), sized for the embedded data on 2 cores.
DEFAULT_TRAIN = {"epochs": 8, "lr": 0.1, "batch_size": 64, "weight_decay": 4e-5}


def obtain_base(space, data, *, train: Mapping[str, Any] | None, seed: int, cache_dir: Path, calib_images: int = 500,
                progress: bool = True) -> dict[str, Any]:
    """Give ``space`` (a :class:`~search_spaces.channels.ChannelSpace`) its base network's trained weights, and
    say where they came from: a base.npz, an earlier run's supernet, the cache, or training now (cached)."""
    from nas.oneshot.retrain import train_network

    spec: BaseSpec = space.spec
    torch.manual_seed(seed)  # the initialisation a base trained here starts from (weights loaded below replace it)
    model = space.base_space.build(space.base_arch)
    if spec.weights:
        meta = load_base_weights(spec.weights, model)
        space.attach_weights(model)
        return {"source": "checkpoint", "path": spec.weights, "train": meta.get("train")}
    if spec.supernet:
        model.load_state_dict(run_network(spec, data, calib_images=calib_images, seed=seed).state_dict())
        space.attach_weights(model)
        return {"source": "run", "run": spec.run, "supernet": spec.supernet}
    settings = {**DEFAULT_TRAIN, **dict(train or {})}
    key = hashlib.sha256(json.dumps({"base": spec.fingerprint(), "data": data.describe(), "seed": seed,
                                     "train": settings}, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(cache_dir) / "channel_bases" / f"{spec.fingerprint()}-{key}"
    cached = folder / BASE_FILE
    if cached.is_file():
        meta = load_base_weights(cached, model)
        space.attach_weights(model)
        log.info("base network loaded from cache %s", cached)
        return {"source": "cache", "path": str(cached), "train": meta.get("train")}
    summary = train_network(model, data, epochs=int(settings["epochs"]), lr=float(settings["lr"]),
                            batch_size=int(settings["batch_size"]), weight_decay=float(settings["weight_decay"]),
                            resolution=space.input_shape(space.base_arch)[-1], seed=seed,
                            checkpoint=folder / "state.npz", progress=progress, desc=f"train base ({spec.source})")
    save_base(cached, model, spec, {"train": summary})
    space.attach_weights(model.eval())
    return {"source": "trained", "path": str(cached), "train": summary}
