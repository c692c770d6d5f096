"""Config composition and the main command's answers to bad input (one clear line, no traceback)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from nas.registry import SPACES, STRATEGIES, TARGETS

ROOT = Path(__file__).resolve().parents[1]


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_compose_ofa_cpu_resolves_registry_names():
    cfg = compose_cfg("+space=ofa", "+target=cpu")
    assert cfg.space.name == "ofa" and cfg.target.name == "cpu" and cfg.strategy.name == "auto"
    # Config group option names are registry names.
    assert cfg.space.name in SPACES and cfg.target.name in TARGETS and cfg.strategy.name in STRATEGIES
    assert cfg.data.name == "mnist5k"


def test_every_config_option_is_registered():
    for group, registry in (("space", SPACES), ("target", TARGETS), ("strategy", STRATEGIES)):
        for yaml in (ROOT / "conf" / group).glob("*.yaml"):
            assert yaml.stem in registry, f"conf/{group}/{yaml.name} has no registered {group}"


def run_cli(*args, tmp_path):
    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "nas.search", *args, f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(
    "args, expected",
    [
        ((), "no space chosen: add +space=NAME"),
        (("+space=ofa",), "no target chosen: add +target=NAME"),
        (("+space=nope", "+target=cpu"), "ofa"),
        (("+space=ofa", "+target=nope"), "cpu"),
        (("+space=ofa", "+target=cpu", "arch={ks:[3]}"), "error:"),
        (("+space=ofa", "+target=cpu", "arch='{\"ks\": [3, 5'"), "not valid JSON"),
        (("+space=ofa", "+target=cpu", "data=image_folder", "data.root=/no/such/dir"), "/no/such/dir"),
        (("+space=ofa", "+target=cpu", "data=image_folder"), "data.root"),
        (("+space=ofa", "+target=cpu", "strategy=nope"), "evolution"),
        (("+space=ofa", "+target=cpu", "constraint.latency_ms=-1"), "latency_ms"),
    ],
)
def test_bad_input_gives_one_clear_message(args, expected, tmp_path):
    proc = run_cli(*args, tmp_path=tmp_path)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
