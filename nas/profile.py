"""``python -m nas.profile (run=DIR | model=PATH.onnx) [+target=NAME] [runs=N]``: where a network's time goes.

Profiles one network with onnxruntime on the target's device (this machine, or a board through its device agent:
``target.agent=http://BOARD:8765``), maps every kernel back to a layer of the model
(:mod:`nas.compress.profile`) and writes into the run directory (``runs/profile/<date>`` unless
``hydra.run.dir`` says otherwise):

- ``profile.json``: the per-layer profile (:meth:`~nas.compress.profile.LayerProfile.to_dict`) with the raw
  profiler record under ``raw``;
- ``profile.png``: "FLOPs share vs time share per layer";
- ``profile.md``: the table and the findings.

It prints the table, the findings and, last, ``profile: <path to profile.json>``. ``run=DIR`` profiles a search
run's chosen network (``results.json``'s ``best.onnx``); ``model=FILE`` any ONNX image classifier. The input
shape is the model's declared input (batch 1); a model with a dynamic input size needs ``input_shape=[C,H,W]``.
Without ``+target`` the model is profiled on this machine's CPU. Bad input ends with one line ``error: ...`` on
stderr and exit status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from nas.errors import ConfigError, ModelError, UserError
from nas.search import exit_with_error

CONFIG_NAME = "profile"


def model_path(run: object, model: object) -> Path:
    """The ONNX file to profile: ``model``, or ``run``'s best network (``results.json``: ``best.onnx``, a path
    relative to the run directory). Exactly one of the two must be given."""
    if (run is None) == (model is None):
        both = "both were given" if run is not None else "neither was given"
        raise ConfigError(f"give exactly one of run=DIR (a search run's best network) or model=PATH.onnx; {both}")
    if model is not None:
        path = Path(str(model)).expanduser()
        if not path.is_file():
            raise ModelError(f"model={model}: no such file; give the path of an .onnx file")
        return path
    run_dir = Path(str(run)).expanduser()
    results = run_dir / "results.json"
    if not results.is_file():
        raise ConfigError(f"run={run}: no results.json there; give the directory of a finished search run "
                          f"(runs/YYYY-MM-DD_HH-MM-SS), or model=PATH.onnx")
    try:
        record = json.loads(results.read_text())
        relative = record["best"]["onnx"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"run={run}: {results} names no exported network (best.onnx); profile the model file "
                          f"itself with model=PATH.onnx") from None
    path = run_dir / str(relative)
    if not path.is_file():
        raise ModelError(f"run={run}: its best network {path} is missing; give model=PATH.onnx instead")
    return path


def input_shape_of(path: Path, input_shape: Sequence[int] | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` to profile ``path`` at (:func:`nas.export.onnx_image_input`)."""
    from nas.export import onnx_image_input

    return onnx_image_input(path, input_shape)[1]


def target_config(cfg: DictConfig) -> dict[str, Any]:
    """The ``target`` section, or this machine's CPU (conf/target/cpu.yaml) when none was chosen."""
    from nas.config_schema import CONF_DIR

    section = cfg.get("target")
    if section is None:
        section = OmegaConf.load(CONF_DIR / "target" / "cpu.yaml")
    values = OmegaConf.to_container(section, resolve=True)
    assert isinstance(values, dict)
    return values


def check_request(cfg: DictConfig) -> dict[str, Any]:
    """Everything the command needs, checked before torch is imported: ``path``, ``shape``, ``runs``, ``top``
    and ``target`` (the target's config section)."""
    from nas.hardware.profiling import _check_runs

    runs = _check_runs(cfg.get("runs"))
    top = cfg.get("top", 15)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top={top!r}: must be a positive int (rows of the printed table)")
    shape_option = cfg.get("input_shape")
    if isinstance(shape_option, ListConfig):
        shape_option = list(shape_option)
    elif shape_option is not None and not isinstance(shape_option, (list, tuple)):
        raise ConfigError(f"input_shape={shape_option!r}: give it as a list, e.g. input_shape=[3,224,224]")
    path = model_path(cfg.get("run"), cfg.get("model"))
    return {"path": path, "shape": input_shape_of(path, shape_option), "runs": runs, "top": top,
            "target": target_config(cfg), "progress": bool(cfg.get("progress", True))}


def run_profile(request: dict[str, Any], run_dir: Path) -> tuple[Any, Path]:
    """Profile ``request["path"]`` on its target and write profile.json/png/md into ``run_dir``; returns the
    :class:`~nas.compress.profile.LayerProfile` and the path of profile.json."""
    from nas.compress.profile import profile_model, require_device
    from nas.compress.profile_report import plot_profile
    from nas.pipeline import make_target
    from nas.report import write_json

    path, shape, runs = request["path"], request["shape"], request["runs"]
    target = make_target(request["target"])
    require_device(target)
    if getattr(target, "client", None) is not None:
        target.health()  # an unreachable or refusing agent fails now, before anything is said to be running
    if request["progress"]:
        where = getattr(target, "agent_url", None) or "this machine"
        print(f"profiling {path} (input 1x{'x'.join(map(str, shape))}, {runs} runs) on target "
              f"{request['target']['name']!r} ({where})", file=sys.stderr, flush=True)
    profile = profile_model(path, shape, target, runs=runs)
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(run_dir / "profile.json", {**profile.to_dict(), "source": str(path), "raw": profile.raw})
    plot_profile(profile, run_dir / "profile.png")
    (run_dir / "profile.md").write_text(
        f"# Per-layer profile of {path.name}\n\n```\n{profile.table(top=request['top'])}\n```\n\n"
        f"{profile.findings()}\n\n![FLOPs share vs time share per layer](profile.png)\n")
    return profile, json_path


@hydra.main(version_base="1.3", config_path="../conf", config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        from nas.threads import apply_thread_policy, prepare_environment, resolve_threads

        resolve_threads(cfg.get("threads"))  # a bad value fails here, before anything is imported or run
        environment = prepare_environment()  # before torch is imported: OpenMP reads its wait policy once
        request = check_request(cfg)  # bad input fails here, fast, before torch is imported
        apply_thread_policy(cfg.get("threads"), environment)
        profile, json_path = run_profile(request, run_dir)
    except UserError as exc:
        exit_with_error(exc)
    print(profile.table(top=request["top"]))
    print()
    print(profile.findings())
    print(f"profile: {json_path}")


def cli(argv: list[str] | None = None) -> None:
    """The command: Hydra's own composition errors (a target that does not exist, an unknown key) are said on
    one line with exit status 2, before Hydra runs; then :func:`main`."""
    from nas.config_schema import composition_error

    problem = composition_error(sys.argv[1:] if argv is None else argv, config_name=CONFIG_NAME)
    if problem is not None:
        exit_with_error(problem)
    main()


if __name__ == "__main__":
    cli()
