"""One writer for ``experiments/results/*.json``: every benchmark's result records how and when it was made.

Each script calls :func:`write_results` with its payload; the file gets a ``run`` entry with the exact command
line, the date, the 1-minute load average before and after (other work on the two cores slows every timing),
the CPU and its SIMD flags (the machines these run on change between sessions: int8 speed-ups depend on VNNI)
and the versions that matter, so the docs generator (``experiments/render_docs.py``) can quote the command
and date beside every number it prints.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_VERSIONED = ("torch", "numpy", "onnxruntime", "optuna", "lightgbm")


def run_info(*, argv: list[str] | None = None, load_before: float | None = None) -> dict[str, Any]:
    """Command, UTC date, load average and package versions of the current process."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0])
    try:
        script = script.resolve().relative_to(Path(__file__).resolve().parents[1])
    except ValueError:
        pass
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    load_after = os.getloadavg()[0]
    from nas.hardware.measure import device_description

    device = device_description()
    return {
        "command": " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, argv[1:])]),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1min": [round(load_before if load_before is not None else load_after, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "cpu": device["cpu"],
        "simd": device["simd"],
        "python": platform.python_version(),
        "versions": versions,
    }


def write_results(path: str | Path, payload: dict[str, Any], *, load_before: float | None = None,
                  argv: list[str] | None = None) -> Path:
    """Write ``payload`` plus its ``run`` record as indented JSON (a bare file name goes into
    ``experiments/results``; any other relative path is relative to the working directory)."""
    path = Path(path)
    if not path.is_absolute() and len(path.parts) == 1:
        path = RESULTS_DIR / path
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"run": run_info(argv=argv, load_before=load_before), **payload}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


def _jsonable(value: object) -> object:
    try:  # numpy scalars and arrays
        return value.tolist()  # type: ignore[attr-defined]
    except AttributeError:
        return str(value)
