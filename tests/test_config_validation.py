"""Every numeric config option, fed an out-of-range value, ends the run with one ``error:`` line naming it.

The cases are derived, not listed: the composed config's top level plus every option file of every config
group (conf/<group>/*.yaml, and ``space.train``) is walked, and each numeric leaf (a number, a list of
numbers, or a null whose constructor annotation or schema entry is numeric) gets a wrong type, a negative
value, a non-integer (ints) or NaN (floats), and, where the schema declares bounds, values just outside
them. A new numeric option without a range check makes a case fail. Most cases run in-process through
:func:`nas.config_schema.validate_config` and the CLI's own error printer; a few run the real command.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nas.config_schema import GROUPS, SPACE_META, TOP_LEVEL, constructor_options, show, validate_config
from nas.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
BASE = ("+space=ofa", "+target=cpu")
ONE_SHOT_SPACES = ("darts",)  # no supernet and no table: searched by strategy=darts only
TABLE_SPACES = ("nb201", "fbnet")  # spaces without a supernet: their options are checked with evaluator=tabular


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


_COMPOSED: dict[tuple[str, ...], Any] = {}


def with_override(base: tuple[str, ...], override: str):
    """``base`` composed by Hydra (once per base: composing takes ~0.2 s), then ``override`` applied as Hydra
    applies it: parsed by its override grammar (so ``-1``, ``abc``, ``nan``, ``[..]`` get the CLI's types)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if base not in _COMPOSED:
        _COMPOSED[base] = compose_cfg(*base)
    cfg = _COMPOSED[base].copy()
    parsed = OverridesParser.create().parse_override(override)
    OmegaConf.update(cfg, parsed.key_or_group, parsed.value(), merge=False)
    return cfg


def cli_answer(overrides: tuple[str, ...], capsys, cfg=None) -> tuple[int, str]:
    """Exit status and stderr of the CLI's validation path, in-process (``0, ''`` if the config is valid)."""
    from nas.search import exit_with_error

    cfg = compose_cfg(*overrides) if cfg is None else cfg
    try:
        validate_config(cfg)
    except UserError as exc:  # anything else propagates: a traceback fails the test
        with pytest.raises(SystemExit) as stop:
            exit_with_error(exc)
        return int(stop.value.code), capsys.readouterr().err
    return 0, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- derivation
def _numeric_kind(annotation: Any) -> str | None:
    """``int`` / ``float`` for an annotation that is (optionally) a number, a list of them counts by element."""
    if annotation is bool:
        return None
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is not None and len(args) == 1 and str(typing.get_origin(annotation)) in (
            "typing.Union", "<class 'types.UnionType'>"):
        return _numeric_kind(args[0])
    return None


def _leaves(node: Any, prefix: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def _annotations(group: str, name: str) -> dict[str, Any]:
    from nas.data import load_data
    from nas.registry import SPACES, STRATEGIES, TARGETS
    from nas.tabular import TabularEvaluator
    from nas.training import TrainConfig

    factory = {"space": SPACES.get, "strategy": STRATEGIES.get, "target": TARGETS.get,
               "data": lambda _: load_data, "evaluator": lambda _: TabularEvaluator}[group](name)
    options = dict(constructor_options(factory)[0])
    if group == "space":
        hints = typing.get_type_hints(TrainConfig)
        options.update({f"train.{k}": v for k, v in hints.items()})
    return options


def _base(group: str, name: str, tmp: Path) -> tuple[str, ...]:
    if group == "space":
        if name in ONE_SHOT_SPACES:
            return (f"+space={name}", "+target=cpu", "strategy=darts")
        return (f"+space={name}", "+target=cpu", *(("evaluator=tabular",) if name in TABLE_SPACES else ()))
    if group == "target":
        return ("+space=ofa", f"+target={name}")
    if group == "data":
        raw = OmegaConf.load(CONF / "data" / f"{name}.yaml")
        return (*BASE, f"data={name}", *((f"data.root={tmp}",) if OmegaConf.is_missing(raw, "root") else ()))
    if group == "evaluator":
        space = {"tabular": "nb201", "pruned": "channels", "slimmable": "channels"}.get(name, "ofa")
        return (f"+space={space}", "+target=cpu", f"evaluator={name}")
    if group == "strategy" and getattr(_strategy(name), "one_shot", False):  # needs a space it can relax
        return ("+space=nb201", "+target=raspi4", f"strategy={name}")
    if group == "strategy" and getattr(_strategy(name), "channel_search", False):  # needs channel widths
        return ("+space=channels", "+target=cpu", f"strategy={name}")
    return (*BASE, f"{group}={name}")


def _strategy(name: str):
    from nas.registry import STRATEGIES

    return STRATEGIES.get(name)


def numeric_leaves(tmp: Path) -> list[tuple[str, str, Any, tuple[str, ...]]]:
    """``(kind, dotted key, current value, base overrides)`` for every numeric leaf of every option file."""
    found = []
    main = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"), resolve=False)
    main.pop("defaults", None)
    main.pop("hydra", None)
    for key, value in _leaves(main):
        option = TOP_LEVEL.get(key)
        kind = option.kind if option is not None and option.kind in ("int", "float") else None
        if kind is None and isinstance(value, (int, float)) and not isinstance(value, bool):
            kind = "int" if isinstance(value, int) else "float"  # numeric but without a schema entry: must fail
        if kind:
            found.append((kind, key, value, BASE))
    for group in GROUPS:
        for yaml in sorted((CONF / group).glob("*.yaml")):
            raw = OmegaConf.to_container(OmegaConf.load(yaml), resolve=False)
            annotations = _annotations(group, raw["name"])
            for key, value in _leaves(raw):
                if key in SPACE_META and group == "space" and key != "train":
                    continue
                kind = _numeric_kind(annotations.get(key))
                if isinstance(value, bool) or isinstance(value, str):
                    continue
                if isinstance(value, (int, float)):
                    kind = kind or ("int" if isinstance(value, int) else "float")
                elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
                    kind = "list"
                elif value is not None or kind is None:
                    continue
                found.append((kind, f"{group}.{key}", value, _base(group, yaml.stem, tmp)))
    return found


def bad_values(kind: str, key: str, value: Any) -> list[Any]:
    if kind == "list":
        return [[-1, *value[1:]], ["abc", *value[1:]]]
    out: list[Any] = ["abc", -1 if kind == "int" else -0.5, 2.5 if kind == "int" else math.nan]
    option = TOP_LEVEL.get(key)
    if option is not None:  # the schema's own bounds, just outside
        if option.gt is not None:
            out.append(option.gt)
        if option.ge is not None and option.ge > 0:
            out.append(option.ge - 1)
        if option.lt is not None:
            out.append(option.lt)
        if option.le is not None:
            out.append(option.le + 1)
    return out


def _override(key: str, bad: Any) -> str:
    if isinstance(bad, list):
        return f"{key}=[{','.join(str(v) for v in bad)}]"
    return f"{key}={'nan' if isinstance(bad, float) and math.isnan(bad) else bad}"


_TMP = Path(os.environ.get("TMPDIR", "/tmp"))
LEAVES = numeric_leaves(_TMP)
CASES = [(kind, key, bad, base) for kind, key, value, base in LEAVES for bad in bad_values(kind, key, value)]


def test_the_walk_finds_the_numeric_options_of_every_group():
    keys = {key for _, key, _, _ in LEAVES}
    # a few known ones from each place (if the walk breaks, these go missing rather than the test passing)
    for expected in ("seed", "budget.queries", "budget.seconds", "constraint.latency_ms", "accuracy.samples",
                     "final.measure_front", "strategy.crossover_prob", "strategy.ridge", "strategy.mutation_rate",
                     "space.width_mult", "space.kernel_sizes", "space.train.lr", "space.train.epochs.full",
                     "space.channels", "target.max_seconds", "target.stable_ci", "data.val_fraction", "data.limit"):
        assert expected in keys, expected
    assert len(CASES) > 150


@pytest.mark.parametrize("kind, key, bad, base", CASES,
                         ids=[f"{key}={show(bad)}|{base[0]}" + (f"|{base[-1]}" if len(base) > 2 else "")
                              for _, key, bad, base in CASES])
def test_out_of_range_value_is_one_error_line_naming_the_key(kind, key, bad, base, capsys):
    status, err = cli_answer((), capsys, cfg=with_override(base, _override(key, bad)))
    assert status == 2, f"{key}={bad!r} was accepted"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert f"{key}=" in lines[0], lines[0]


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_file_composes_into_a_valid_config(group, capsys, tmp_path):
    for yaml in sorted((CONF / group).glob("*.yaml")):
        overrides = _base(group, yaml.stem, tmp_path)
        if group == "target" and OmegaConf.is_missing(OmegaConf.load(yaml), "table"):
            table = tmp_path / "lat.csv"
            table.write_text("arch,ms\n")
            overrides = (*overrides, f"target.table={table}", "target.arch_column=arch", "target.latency_column=ms")
        status, err = cli_answer(overrides, capsys)
        if yaml.stem == "gpu" and status:
            assert "CUDAExecutionProvider" in err  # no GPU here: said up front, on one line
            continue
        if group == "space" and yaml.stem == "fbnet":  # no supernet, and no accuracy table ships for it
            assert status == 2 and "has no accuracy column" in err, err
            continue
        assert status == 0, f"conf/{group}/{yaml.name}: {err}"


@pytest.mark.parametrize("override, named", [
    ("+strategy.populaton_size=3", "valid options: population_size"),
    ("+space.widthmult=1", "valid options: width_mult"),
    ("+target.thread=2", "valid options: threads"),
    ("+data.limitt=10", "valid options: name, root"),
    ("+space.train.epoch=3", "valid options: batch_size"),
    ("+budjet.queries=3", "valid keys: accuracy"),
])
def test_unknown_key_is_one_line_naming_the_valid_keys(override, named, capsys):
    overrides = (*BASE, "strategy=evolution") if override.startswith("+strategy") else BASE
    status, err = cli_answer((*overrides, override), capsys)
    line = err.strip()
    assert status == 2 and "\n" not in line and override.lstrip("+") in line and named in line, err


def test_other_checks_before_any_work(capsys, tmp_path):
    cases = [
        (("objective=paretoo",), "objective=paretoo: must be one of accuracy, pareto"),
        (("accuracy.predictor=nope",), "accuracy.predictor=nope: must be one of"),
        (("space.checkpoint=/no/such.npz",), "space.checkpoint=/no/such.npz: no such file"),
        (("data=image_folder", "data.root=/no/such/dir"), "data.root=/no/such/dir"),
        (("progress=maybe",), "progress=maybe: must be true or false"),
        (("target.min_repeats=400",), "target.min_repeats=400, target.max_repeats=300"),
        (("+space=nb201",), "evaluator=supernet: space 'nb201' has no supernet"),
        (("arch={ks: [3]}",), "arch="),
    ]
    for overrides, expected in cases:
        base = ("+target=cpu",) if overrides[0].startswith("+space") else BASE
        status, err = cli_answer((*base, *overrides), capsys)
        assert status == 2 and expected in err and len(err.strip().splitlines()) == 1, (overrides, err)


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "nas.search", *args, f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("args, expected", [
    (("seed=-1",), "error: seed=-1: must be an integer >= 0"),
    (("budget.queries=0",), "error: budget.queries=0: must be an integer >= 1"),
    (("strategy=evolution", "strategy.populaton_size=3"), "error: strategy.populaton_size=3: unknown key"),
    (("strategy=evolutio",), "error: strategy=evolutio: no such strategy; available: "),
])
def test_the_command_prints_one_line_and_exits_2(args, expected, tmp_path):
    proc = _cli(*BASE, *args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "cache").exists()  # nothing was trained, measured or stored
