"""``python -m nas.compress``: what to compress (``run=DIR`` or ``model=FILE``), checked before any work.

Order of work, cheapest checks first: the options (steps, their options, run/model, target); the model file
or run directory; the target (an agent is asked for its health now, so an unreachable board fails before
training); the data against the model (channels and classes). Only then is anything trained or measured.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nas.export import onnx_image_input
from nas.compress.stage import Stage
from nas.compress.steps import build_steps, min_speedup_of
from nas.errors import ConfigError

STEP_SECTIONS = ("prune", "distill", "lowrank", "quantize")


def steps_of(section: Mapping[str, Any]):
    """The step objects a ``compress`` config section asks for (``steps`` plus each step's options); checks
    the section's other options too."""
    known = {"steps", "profile", "min_speedup", *STEP_SECTIONS}
    unknown = sorted(set(section) - known - {"data", "run", "model", "seed", "progress", "threads", "measurements",
                                             "cache_dir", "target", "hydra"})
    if unknown:
        raise ConfigError(f"unknown compression option(s) {unknown}; valid: {', '.join(sorted(known))}")
    min_speedup_of(section.get("min_speedup"))
    steps = list(section.get("steps") or [])
    return build_steps(steps, {name: section.get(name) for name in {*STEP_SECTIONS, *map(str, steps)}})


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def run_data_config(run_dir: Path) -> dict | None:
    """The data section an earlier run was configured with (so its network is compressed on its own data)."""
    record = json.loads((run_dir / "results.json").read_text())
    data = (record.get("config") or {}).get("data")
    return dict(data) if isinstance(data, Mapping) else None


def check_run_dir(run: object) -> Path:
    run_dir = Path(str(run)).expanduser()
    if not (run_dir / "results.json").is_file():
        raise ConfigError(f"run={run}: no results.json there; give the directory of a finished search run "
                          f"(runs/YYYY-MM-DD_HH-MM-SS)")
    return run_dir


def original_from_onnx(path: Path, models: Path) -> Stage:
    """The user's ONNX model, copied into the run directory (the file given is never written to)."""
    _name, shape = onnx_image_input(path)
    models.mkdir(parents=True, exist_ok=True)
    copy = models / "original.onnx"
    shutil.copyfile(path, copy)
    return Stage("original", copy, shape)


def original_from_run(run_dir: Path, data, models: Path, *, seed: int) -> Stage:
    """The best network of a search run: with its trained weights where the run has a supernet (then prune,
    distill and lowrank can work on it), else the run's exported ONNX model alone."""
    from nas.channels.base import resolve_base, run_network

    record = json.loads((run_dir / "results.json").read_text())
    supernet = (record.get("supernet") or {}).get("path")
    if supernet and record.get("space") != "channels":
        spec = resolve_base(base=None, base_run=run_dir, base_config=None, resolution=data.image_size,
                            num_classes=data.num_classes, in_channels=data.in_channels)
        model = run_network(spec, data, seed=seed)
        shape = tuple(int(v) for v in spec.build_space().input_shape(spec.arch))
        from nas.export import export_onnx, verify_onnx

        path = export_onnx(model, shape, models / "original.onnx")
        return Stage("original", path, shape, model=model,
                     details={"onnx_max_abs_diff": verify_onnx(path, model, shape), "source": f"run:{run_dir}"})
    onnx = (record.get("best") or {}).get("onnx")
    if not onnx or not (run_dir / onnx).is_file():
        raise ConfigError(f"run={run_dir}: the run has neither a supernet nor an exported best model "
                          f"(results.json best.onnx); rerun it, or give model=FILE.onnx")
    stage = original_from_onnx(run_dir / onnx, models)
    stage.details["source"] = f"run:{run_dir} ({onnx}, ONNX only: the run keeps no PyTorch weights of it)"
    return stage


def original_from_network_file(path: Path, data, models: Path) -> Stage:
    """A network file with its weights (``base.npz``, as a channel run writes and the benchmark trains): every
    step can work on it."""
    from nas.channels.base import load_network
    from nas.export import export_onnx, verify_onnx

    model, shape = load_network(path, num_classes=data.num_classes, in_channels=data.in_channels)
    onnx = export_onnx(model, shape, models / "original.onnx")
    return Stage("original", onnx, shape, model=model,
                 details={"onnx_max_abs_diff": verify_onnx(onnx, model, shape), "source": f"network file {path}"})


def compress_command(cfg: DictConfig, run_dir: Path, *, data_given: bool) -> Path:
    """The whole command into ``run_dir``; the path of report.json. ``data_given``: the user set ``data``."""
    from nas.compress.pipeline import run_compression
    from nas.data import check_data_options, load_data
    from nas.pipeline import attach_store, make_target

    steps = steps_of(cfg)
    run, model = cfg.get("run"), cfg.get("model")
    if (run is None) == (model is None):
        raise ConfigError("give exactly one of run=DIR (a search run's best network) or model=FILE.onnx")
    if cfg.get("target") is None:
        raise ConfigError("nas.compress needs a target to measure on: add +target=cpu (this machine) or "
                          "+target=arm_cpu target.agent=http://BOARD:8765 (a board running `python -m nas.device "
                          "serve`)")
    run_dir_in = check_run_dir(run) if run is not None else None
    network_file = model is not None and str(model).endswith(".npz")
    if model is not None and network_file and not Path(str(model)).expanduser().is_file():
        raise ConfigError(f"model={model} does not exist; give an .onnx model or a base.npz network file")
    if model is not None and not network_file:
        onnx_image_input(Path(str(model)).expanduser())  # not ONNX, or not an image model: fails here
    data_cfg = dict(_plain(cfg.data))
    if run_dir_in is not None and not data_given:
        data_cfg = run_data_config(run_dir_in) or data_cfg
    data_kwargs = {k: v for k, v in data_cfg.items() if k != "seed"}
    check_data_options(**data_kwargs)
    target = make_target(_plain(cfg.target))
    if getattr(target, "client", None) is not None:
        target.health()  # an unreachable or refusing agent fails now, before anything is trained
    attach_store(target, cfg)
    data = load_data(**data_kwargs, seed=int(cfg.seed))
    models = run_dir / "models"
    if run_dir_in is not None:
        original = original_from_run(run_dir_in, data, models, seed=int(cfg.seed))
    elif network_file:
        original = original_from_network_file(Path(str(model)).expanduser(), data, models)
    else:
        original = original_from_onnx(Path(str(model)).expanduser(), models)
    return run_compression(original, steps, data=data, target=target, run_dir=run_dir,
                           cache_dir=Path(str(cfg.cache_dir)).expanduser(), seed=int(cfg.seed),
                           progress=bool(cfg.get("progress", True)), profile=bool(cfg.get("profile", True)),
                           requested=[str(s) for s in cfg.steps], min_speedup=min_speedup_of(cfg.get("min_speedup")))


def data_overridden(overrides: Sequence[str]) -> bool:
    """Whether the command line set the data (``data=...`` or ``data.key=...``)."""
    return any(o.lstrip("+~").split("=")[0].split(".")[0] == "data" for o in overrides)


def compress_winner(section: Mapping[str, Any], *, model, onnx: Path, shape, data, target, run_dir: Path,
                    cache_dir: Path, seed: int, progress: bool) -> dict[str, Any]:
    """``compress=default`` in the main search: compress the chosen network into ``run_dir/compress``; what
    ``results.json`` records of it (the report's path, the shipped model's entry, a summary line)."""
    from nas.compress.pipeline import run_compression
    from nas.compress.report import summary_line

    steps = steps_of(section)
    original = Stage("original", Path(onnx), tuple(int(v) for v in shape), model=model)
    folder = Path(run_dir) / "compress"
    report_path = run_compression(original, steps, data=data, target=target, run_dir=folder, cache_dir=cache_dir,
                                  seed=seed, progress=progress, profile=bool(section.get("profile", True)),
                                  requested=[str(s) for s in section.get("steps") or []],
                                  min_speedup=min_speedup_of(section.get("min_speedup")))
    report = json.loads(report_path.read_text())
    return {"report": str(report_path.relative_to(run_dir)), "final": report["final"],
            "summary": summary_line(report)}
