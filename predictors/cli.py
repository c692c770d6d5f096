"""``python -m predictors``: fit, evaluate and few-shot-transfer latency predictors on a measurement table.

::

    python -m predictors fit --data FILE --space {nb201,fbnet,ofa} --arch-column COL --latency-column COL \
        --train-size N --seed S [--predictor NAME] [--out DIR]
    python -m predictors evaluate --model DIR --data FILE --arch-column COL --latency-column COL
    python -m predictors transfer --data FILE --space SPACE --arch-column COL --source-columns C1,C2,... \
        --target-column COL --shots K --seed S [--predictor NAME] [--source-train-size N]

The table is CSV (optionally .gz/.xz/.bz2/.zip) or Parquet; the arch column holds the space's public form
(OFA: the JSON object ``{"ks", "e", "d", "r"}``). Notes go to stderr; the LAST stdout line is one JSON
object of :func:`predictors.metrics.latency_metrics` on rows not used for fitting (fit: rows outside the
training rows; evaluate: all rows; transfer: rows outside the shots). Rows whose latency is missing,
non-finite or <= 0 are dropped with a note. Bad input: one ``error: ...`` line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from nas.arch import Arch
from nas.errors import ConfigError, DataError, InvalidArchError, UserError
from predictors.latency import MODEL_NAMES, build_space, fit_latency_model, load_latency_model
from predictors.metrics import latency_metrics
from search_spaces.base import SearchSpace


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other bad input
        raise ConfigError(f"{message} (see python -m predictors {self.prog.split()[-1]} --help)")


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def read_table(path: str, columns: Sequence[str]) -> Any:
    from nas.tables import read_frame

    frame = read_frame(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"table {path} has no column(s) {missing}; its columns are {list(frame.columns)}")
    return frame


def parse_archs(space: SearchSpace, values: Sequence[object], column: str) -> list[Arch]:
    """Every cell of the arch column parsed into the space; the first bad one is reported with its row."""
    archs = []
    for row, value in enumerate(values):
        try:
            if isinstance(value, str) and value.lstrip().startswith("{"):
                value = json.loads(value)
            archs.append(space.parse(value))
        except (InvalidArchError, ValueError, TypeError, KeyError) as err:
            raise InvalidArchError(f"row {row} (data line {row + 2}) of column {column!r} is not a "
                                   f"{space.name} architecture: {err}") from None
    return archs


def usable_latencies(frame: Any, column: str) -> np.ndarray:
    """Indices of rows with a finite latency > 0; dropping any is noted on stderr."""
    import pandas as pd

    y = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(y) & (y > 0))
    if keep.size < len(y):
        _note(f"note: dropped {len(y) - keep.size} row(s) whose {column!r} is missing, non-finite or <= 0")
    return keep


def _space(name: str) -> SearchSpace:
    if name not in ("nb201", "fbnet", "ofa"):
        raise ConfigError(f"unknown space {name!r}; choose one of nb201, fbnet, ofa")
    return build_space(name)


def _split(n: int, train_size: int, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    if train_size < 2 or train_size >= n:
        raise DataError(f"{what} must be between 2 and {n - 1} (the table has {n} usable rows, and at least one "
                        f"row must be left for testing), got {train_size}")
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:train_size], perm[train_size:]


def _report(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    metrics = latency_metrics(y_true, y_pred)
    print(json.dumps({k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in metrics.items()}))


def cmd_fit(args: argparse.Namespace) -> None:
    space = _space(args.space)
    frame = read_table(args.data, [args.arch_column, args.latency_column])
    keep = usable_latencies(frame, args.latency_column)
    archs_all = parse_archs(space, frame[args.arch_column].tolist(), args.arch_column)
    archs = [archs_all[i] for i in keep]
    y = frame[args.latency_column].to_numpy(dtype=np.float64)[keep]
    train, test = _split(len(archs), args.train_size, args.seed, "--train-size")
    model = fit_latency_model(space, [archs[i] for i in train], y[train], args.predictor, seed=args.seed)
    _note(f"fitted {model.name} ({model.features} features) on {len(train)} rows, testing on {len(test)}")
    if args.out:
        _note(f"saved the model to {model.save(args.out)}")
    _report(y[test], model.predict([archs[i] for i in test]))


def cmd_evaluate(args: argparse.Namespace) -> None:
    model = load_latency_model(args.model)
    frame = read_table(args.data, [args.arch_column, args.latency_column])
    keep = usable_latencies(frame, args.latency_column)
    archs_all = parse_archs(model.space, frame[args.arch_column].tolist(), args.arch_column)
    if keep.size == 0:
        raise DataError(f"no row of {args.data} has a usable {args.latency_column!r} latency")
    y = frame[args.latency_column].to_numpy(dtype=np.float64)[keep]
    _report(y, model.predict([archs_all[i] for i in keep]))


def cmd_transfer(args: argparse.Namespace) -> None:
    from predictors.transfer import TransferLatencyModel

    space = _space(args.space)
    sources = [c.strip() for c in args.source_columns.split(",") if c.strip()]
    if not sources:
        raise ConfigError("--source-columns must name at least one column, e.g. raspi4,pixel3")
    if args.target_column in sources:
        raise ConfigError(f"--target-column {args.target_column!r} is also a source column; leave it out")
    frame = read_table(args.data, [args.arch_column, args.target_column, *sources])
    rows = usable_latencies(frame, args.target_column)
    for column in sources:
        rows = np.intersect1d(rows, usable_latencies(frame, column))
    archs_all = parse_archs(space, frame[args.arch_column].tolist(), args.arch_column)
    archs = [archs_all[i] for i in rows]
    if not 2 <= args.shots < len(archs):
        raise DataError(f"--shots must be between 2 and {len(archs) - 1} (usable rows), got {args.shots}")
    perm = np.random.default_rng(args.seed).permutation(len(archs))
    shots, rest = perm[: args.shots], perm[args.shots:]
    # Source models learn from rows other than the shots; the target column is read only at the shots.
    src_train = rest[: min(args.source_train_size, len(rest))]
    table = {c: frame[c].to_numpy(dtype=np.float64)[rows][src_train] for c in sources}
    model = TransferLatencyModel.fit_sources(space, [archs[i] for i in src_train], table, args.predictor,
                                             seed=args.seed)
    y = frame[args.target_column].to_numpy(dtype=np.float64)[rows]
    model.calibrate([archs[i] for i in shots], y[shots])
    _note(f"calibrated {len(sources)} source model(s) on {args.shots} shots of {args.target_column!r}")
    _report(y[rest], model.predict([archs[i] for i in rest]))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m predictors", description="Fit and evaluate latency predictors.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    table = argparse.ArgumentParser(add_help=False)  # the options every command reads its table with
    table.add_argument("--data", required=True)
    table.add_argument("--arch-column", required=True)
    fitting = argparse.ArgumentParser(add_help=False)  # the options of the commands that fit
    fitting.add_argument("--space", required=True)
    fitting.add_argument("--seed", type=int, default=0)
    fitting.add_argument("--predictor", default="auto", choices=MODEL_NAMES)
    fit = sub.add_parser("fit", parents=[table, fitting], help="fit on N random rows, test on the rest")
    fit.add_argument("--latency-column", required=True)
    fit.add_argument("--train-size", type=int, required=True)
    fit.add_argument("--out")
    ev = sub.add_parser("evaluate", parents=[table], help="evaluate a saved model on every row")
    ev.add_argument("--model", required=True)
    ev.add_argument("--latency-column", required=True)
    tr = sub.add_parser("transfer", parents=[table, fitting],
                        help="few-shot transfer from source device columns to a target column")
    tr.add_argument("--source-columns", required=True)
    tr.add_argument("--target-column", required=True)
    tr.add_argument("--shots", type=int, required=True)
    tr.add_argument("--source-train-size", type=int, default=1000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        {"fit": cmd_fit, "evaluate": cmd_evaluate, "transfer": cmd_transfer}[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
