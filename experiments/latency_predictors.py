"""Benchmark every latency predictor and baseline on every real device column of the shared tables.

    python experiments/latency_predictors.py [--quick] [--out experiments/results/latency_predictors.json]
        [--baseline-checkout DIR]

Protocol (fixed seed 0): per space, one random permutation of the table's rows; training sets are its first
100 and 1000 rows, the test set is a fixed sample of 2000 other rows (all rows not used for training when the
table is smaller). Models: see :mod:`predictors.latency` (``lut``, ``kernel``, ``gbdt``, ``ridge``,
``flops``, ``params``). Metrics: :func:`predictors.metrics.latency_metrics`.

Few-shot transfer, leave one device out: for every target column of a space, the source models are the
space's default model (``auto``) trained on the 1000 training rows of every *other* column; K in {5, 10, 20}
shots are drawn from the test rows (3 draws), the calibration (:mod:`predictors.transfer`) is fitted on them,
and it is evaluated on the remaining test rows. Baseline: the geometric mean of the source predictions,
uncalibrated (``source_mean``).

NB201 noise ceiling: NAS-Bench-201 measures every cell separately, including cells that are the *same
computation graph* up to swapping the two intermediate nodes (possible when there is no 1 -> 2 edge). Within
such a group every difference is measurement noise, so predicting each member by the mean of the other
members of its group is the best any architecture-only predictor can do on those cells; its within-10 % and
Spearman are the ceiling reported per column.

If ``experiments/results/ofa_cpu_measurements.csv`` exists (``arch``, ``latency_ms``, ``latency_retest_ms``;
space config in the ``space`` key of ``ofa_cpu_measurements.json``) it is added as OFA device ``this_cpu``
(train size 100, test on the other rows), with the test-retest agreement of its two measurements, and with a
cross-config transfer: the 12 OFA GPU kernel models (ImageNet-size space) calibrated by K shots of this CPU.

``--baseline-checkout DIR`` (a checkout of a commit before the LightGBM ``gbdt``, see ``booster_baseline.py``):
wherever ``gbdt`` is fitted, the old numpy ``hgbdt`` is fitted on the same rows too, the two alternating which
goes first; each ``gbdt`` row gets a ``baseline`` entry (the old booster's metrics, ``fit_s``, ``fit_predict_s``)
and ``booster_comparison`` sums them up per space and training size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.tables import read_frame  # noqa: E402
from predictors.cli import parse_archs  # noqa: E402
from predictors.features import latency_features  # noqa: E402
from predictors.latency import DEFAULT_MODEL, build_space, make_latency_predictor  # noqa: E402
from predictors.metrics import latency_metrics  # noqa: E402
from predictors.transfer import CalibrationPredictor  # noqa: E402
from results_io import write_results  # noqa: E402

DATA = Path("/work/shared/data/hw-nas-bench-help")
RESULTS = ROOT / "experiments" / "results"
MODELS = ("lut", "kernel", "gbdt", "ridge", "flops", "params")
TRAIN_SIZES = (100, 1000)
SHOTS = (5, 10, 20)
SHOT_DRAWS = 3
TEST_SIZE = 2000
SEED = 0
QUICK_COLUMNS = {"nb201": ["raspi4", "pixel3", "gold_6226"], "fbnet": ["raspi4", "pixel3", "gold_6226"],
                 "ofa": ["2080ti_1", "titan_rtx_1", "v100_1"]}
KEYS = ("spearman", "within_10pct", "mape", "within_5pct", "kendall", "rmse_ms", "n_test")


def _ofa_json(frame: Any) -> list[str]:
    def ints(text: str) -> list[int]:
        return [int(v) for v in str(text).split()]

    return [json.dumps({"ks": ints(k), "e": ints(e), "d": ints(d), "r": int(r)})
            for k, e, d, r in zip(frame["ks"], frame["e"], frame["d"], frame["r"])]


def load_spaces(quick: bool) -> list[dict[str, Any]]:
    """Per space: the space, parsed archs and device columns (name -> latency vector)."""
    out = []
    specs = [("nb201", "nb201_latency.csv.xz", "arch_str", ("arch_idx",)),
             ("fbnet", "fbnet_latency.csv.xz", "op_names", ("arch_id", "op_idx_list")),
             ("ofa", "ofa_mbv3_gpu_latency.csv.xz", None, ("arch_id", "ks", "e", "d", "r"))]
    for name, file, arch_column, skip in specs:
        frame = read_frame(DATA / file)
        space = build_space(name)
        values = _ofa_json(frame) if arch_column is None else frame[arch_column].tolist()
        archs = parse_archs(space, values, arch_column or "ks/e/d/r")
        columns = [c for c in frame.columns if c not in skip and c != arch_column]
        if quick:
            columns = QUICK_COLUMNS[name]
        out.append({"space": space, "name": name, "archs": archs,
                    "columns": {c: frame[c].to_numpy(dtype=np.float64) for c in columns}})
    cpu = RESULTS / "ofa_cpu_measurements.csv"
    if cpu.is_file():
        frame = read_frame(cpu)
        sidecar = RESULTS / "ofa_cpu_measurements.json"
        config = json.loads(sidecar.read_text()).get("space", {}) if sidecar.is_file() else {}
        space = build_space("ofa", config)
        out.append({"space": space, "name": "ofa(this_cpu)", "archs": parse_archs(space, frame["arch"].tolist(), "arch"),
                    "columns": {"this_cpu": frame["latency_ms"].to_numpy(dtype=np.float64)},
                    "retest": frame["latency_retest_ms"].to_numpy(dtype=np.float64)})
    return out


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    m = latency_metrics(y, p)
    return {k: m[k] for k in KEYS}


def split(n: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    perm = np.random.default_rng(SEED).permutation(n)
    sizes = [s for s in TRAIN_SIZES if s <= n // 2]
    top = max(sizes) if sizes else n // 2
    sizes = sizes or [top]
    return perm[:top], perm[top: top + TEST_SIZE], sizes


def fit_timed(predictor: Any, X_train: np.ndarray, y_train: np.ndarray,
              X_test: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(test predictions, fit seconds, fit + predict seconds)``."""
    t = time.perf_counter()
    predictor.fit(X_train, y_train)
    fitted = time.perf_counter()
    pred = predictor.predict(X_test)
    return pred, fitted - t, time.perf_counter() - t


def run_space(entry: dict[str, Any], log: list[str], fitted: dict[str, Any] | None = None,
              baseline: type | None = None) -> tuple[list[dict], list[dict], dict]:
    """Every model on every column of one space; ``fitted`` collects the default model per device; ``baseline``
    (the old numpy hgbdt class) is fitted beside every ``gbdt``."""
    space, archs = entry["space"], entry["archs"]
    train, test, sizes = split(len(archs))
    rows_needed = np.concatenate([train, test])
    sub = [archs[i] for i in rows_needed]
    features = {}
    t0 = time.perf_counter()
    for kind in ("onehot", "kernel", "flops", "params", "encoding"):
        features[kind] = latency_features(space, sub, kind)
    log.append(f"{entry['name']}: features of {len(sub)} archs in {time.perf_counter() - t0:.1f} s")
    ntr = len(train)
    results, test_preds = [], {}
    default = DEFAULT_MODEL[space.name]
    pairs = 0  # gbdt/baseline pairs so far: which of the two goes first alternates
    for device, y_all in entry["columns"].items():
        y = y_all[rows_needed]
        ok = np.isfinite(y) & (y > 0)
        te = np.flatnonzero(ok[ntr:]) + ntr
        for size in sizes:
            tr = np.flatnonzero(ok[:size])
            for model in MODELS:
                predictor, kind = make_latency_predictor(model, seed=SEED)
                old_first = baseline is not None and model == "gbdt" and pairs % 2 == 0
                if old_first:
                    old = fit_timed(baseline(seed=SEED), features[kind][tr], y[tr], features[kind][te])
                pred, fit_s, seconds = fit_timed(predictor, features[kind][tr], y[tr], features[kind][te])
                results.append({"space": entry["name"], "device": device, "model": model, "train_size": size,
                                "fit_predict_s": round(seconds, 2), **_metrics(y[te], pred)})
                if baseline is not None and model == "gbdt":
                    if not old_first:
                        old = fit_timed(baseline(seed=SEED), features[kind][tr], y[tr], features[kind][te])
                    pairs += 1
                    results[-1]["fit_s"] = round(fit_s, 3)
                    results[-1]["baseline"] = {"model": "hgbdt (numpy)", "fit_s": round(old[1], 3),
                                               "fit_predict_s": round(old[2], 2), **_metrics(y[te], old[0])}
                if model == default and size == max(sizes):
                    if fitted is not None:
                        fitted[device] = (predictor, kind)
                    full = np.full(len(rows_needed), np.nan)
                    full[te] = pred
                    test_preds[device] = full
    transfer = run_transfer(entry, rows_needed, ntr, test_preds)
    extra: dict[str, Any] = {}
    if space.name == "nb201":
        extra["noise_ceiling"] = {d: noise_ceiling(archs, y) for d, y in entry["columns"].items()}
    if "retest" in entry:
        a, b = entry["columns"]["this_cpu"], entry["retest"]
        ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
        extra["test_retest"] = _metrics(a[ok], b[ok])
        if entry.get("gpu_sources"):
            transfer += cross_config_transfer(entry, rows_needed, ntr, features)
    return results, transfer, extra


def cross_config_transfer(entry: dict[str, Any], rows: np.ndarray, ntr: int,
                          features: dict[str, np.ndarray]) -> list[dict]:
    """The OFA GPU models (ImageNet-size space) as priors for this CPU's (smaller) OFA space: their features
    are per-kernel-type aggregates, so they apply to any OFA config; K shots calibrate them."""
    out: list[dict] = []
    y = entry["columns"]["this_cpu"][rows]
    Z = np.stack([p.predict(features[kind]) for p, kind in entry["gpu_sources"].values()], axis=1)
    usable = np.flatnonzero(np.isfinite(y) & (y > 0) & (np.arange(len(y)) >= ntr))
    baseline = _metrics(y[usable], np.exp(np.log(np.maximum(Z[usable], 1e-6)).mean(axis=1)))
    for k in SHOTS:
        draws = []
        for draw in range(SHOT_DRAWS):
            perm = np.random.default_rng(SEED + 1000 * k + draw).permutation(usable)
            cal = CalibrationPredictor().fit(Z[perm[:k]], y[perm[:k]])
            draws.append(_metrics(y[perm[k:]], cal.predict(Z[perm[k:]])))
        out.append({"space": entry["name"], "target": "this_cpu (from OFA GPU priors)", "shots": k,
                    "n_sources": Z.shape[1], **{key: float(np.mean([d[key] for d in draws])) for key in KEYS},
                    "source_mean_spearman": baseline["spearman"],
                    "source_mean_within_10pct": baseline["within_10pct"], "source_mean_mape": baseline["mape"]})
    return out


def run_transfer(entry: dict[str, Any], rows: np.ndarray, ntr: int, preds: dict[str, np.ndarray]) -> list[dict]:
    out: list[dict] = []
    devices = list(preds)
    if len(devices) < 2:
        return out
    for target in devices:
        sources = [d for d in devices if d != target]
        y = entry["columns"][target][rows]
        Z = np.stack([preds[d] for d in sources], axis=1)
        usable = np.flatnonzero(np.isfinite(y) & (y > 0) & np.all(np.isfinite(Z), axis=1) & (np.arange(len(y)) >= ntr))
        baseline = _metrics(y[usable], np.exp(np.log(np.maximum(Z[usable], 1e-6)).mean(axis=1)))
        for k in SHOTS:
            draws = []
            for draw in range(SHOT_DRAWS):
                perm = np.random.default_rng(SEED + 1000 * k + draw).permutation(usable)
                shots, rest = perm[:k], perm[k:]
                cal = CalibrationPredictor().fit(Z[shots], y[shots])
                draws.append(_metrics(y[rest], cal.predict(Z[rest])))
            mean = {key: float(np.mean([d[key] for d in draws])) for key in KEYS}
            out.append({"space": entry["name"], "target": target, "shots": k, "n_sources": len(sources),
                        **mean, "source_mean_spearman": baseline["spearman"],
                        "source_mean_within_10pct": baseline["within_10pct"], "source_mean_mape": baseline["mape"]})
    return out


def noise_ceiling(archs: list, y: np.ndarray) -> dict[str, Any]:
    """Leave-one-out group means over NB201 cells that are the same graph up to swapping nodes 1 and 2."""
    from search_spaces.nb201 import LABELS

    groups: dict[tuple, list[int]] = {}
    for i, arch in enumerate(archs):
        ops = [str(arch[label]) for label in LABELS]
        key = tuple(ops) if ops[2] != "none" else min(tuple(ops), (ops[1], ops[0], ops[2], ops[3], ops[5], ops[4]))
        groups.setdefault(key, []).append(i)
    truth, guess = [], []
    for members in groups.values():
        vals = y[members]
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if vals.size < 2:
            continue
        for j in range(vals.size):
            truth.append(vals[j])
            guess.append((vals.sum() - vals[j]) / (vals.size - 1))
    if len(truth) < 2:
        return {"n_cells": len(truth)}
    m = latency_metrics(np.array(truth), np.array(guess))
    return {"n_cells": len(truth), "within_10pct": m["within_10pct"], "spearman": m["spearman"], "mape": m["mape"]}


def booster_comparison(results: list[dict]) -> list[dict]:
    """Per space and training size, over the device columns: mean quality and summed seconds, new vs old."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        if "baseline" in r:
            groups.setdefault((r["space"], r["train_size"]), []).append(r)
    out = []
    for (space, size), rows in groups.items():
        entry: dict[str, Any] = {"space": space, "train_size": size, "columns": len(rows)}
        for side, pick in (("gbdt", lambda r: r), ("baseline", lambda r: r["baseline"])):
            vals = [pick(r) for r in rows]
            for key in ("spearman", "within_10pct", "mape"):
                finite = [v[key] for v in vals if v[key] is not None and np.isfinite(v[key])]
                entry[f"{side}_{key}"] = float(np.mean(finite)) if finite else None
            entry[f"{side}_fit_s"] = round(float(sum(v["fit_s"] for v in vals)), 2)
            entry[f"{side}_fit_predict_s"] = round(float(sum(v["fit_predict_s"] for v in vals)), 2)
        entry["spearman_wins"] = sum(r["spearman"] >= r["baseline"]["spearman"] for r in rows)
        entry["fit_speedup"] = round(entry["baseline_fit_s"] / max(entry["gbdt_fit_s"], 1e-9), 1)
        out.append(entry)
    return out


def print_comparison(rows: list[dict]) -> None:
    print("\ngbdt (LightGBM) vs hgbdt (numpy, the old booster), same rows, alternating; means over columns, "
          "seconds summed")
    print(f"{'space':14s} {'n':>5s} {'cols':>4s} {'sp new':>7s} {'sp old':>7s} {'w10 new':>7s} {'w10 old':>7s} "
          f"{'mape new':>8s} {'mape old':>8s} {'fit new':>8s} {'fit old':>8s} {'x':>5s}")
    for r in rows:
        print(f"{r['space']:14s} {r['train_size']:5d} {r['columns']:4d} {r['gbdt_spearman']:7.4f} "
              f"{r['baseline_spearman']:7.4f} {100 * r['gbdt_within_10pct']:7.1f} {100 * r['baseline_within_10pct']:7.1f} "
              f"{r['gbdt_mape']:8.2f} {r['baseline_mape']:8.2f} {r['gbdt_fit_s']:8.2f} {r['baseline_fit_s']:8.2f} "
              f"{r['fit_speedup']:5.1f}")


def print_tables(results: list[dict], transfer: list[dict], extras: dict[str, Any]) -> None:
    print(f"{'space':14s} {'device':14s} {'model':7s} {'n':>5s} {'spearman':>9s} {'w10%':>7s} {'mape%':>8s} {'s':>6s}")
    for r in results:
        print(f"{r['space']:14s} {r['device']:14s} {r['model']:7s} {r['train_size']:5d} {r['spearman']:9.4f} "
              f"{100 * r['within_10pct']:7.1f} {r['mape']:8.2f} {r['fit_predict_s']:6.2f}")
    print("\nfew-shot transfer (leave one device out; mean of 3 shot draws); source_mean = uncalibrated geo-mean")
    print(f"{'space':14s} {'target':14s} {'K':>3s} {'spearman':>9s} {'w10%':>7s} {'mape%':>8s} {'src_sp':>8s} {'src_w10%':>8s}")
    for r in transfer:
        print(f"{r['space']:14s} {r['target']:14s} {r['shots']:3d} {r['spearman']:9.4f} {100 * r['within_10pct']:7.1f} "
              f"{r['mape']:8.2f} {r['source_mean_spearman']:8.4f} {100 * r['source_mean_within_10pct']:8.1f}")
    for name, extra in extras.items():
        if "noise_ceiling" in extra:
            print(f"\n{name} noise ceiling (same graph measured separately; LOO group mean)")
            for device, c in extra["noise_ceiling"].items():
                if "within_10pct" in c:
                    print(f"  {device:14s} cells {c['n_cells']:5d}  w10% {100 * c['within_10pct']:5.1f}  "
                          f"spearman {c['spearman']:.4f}")
        if "test_retest" in extra:
            t = extra["test_retest"]
            print(f"\n{name} test-retest: w10% {100 * t['within_10pct']:.1f} spearman {t['spearman']:.4f} n {t['n_test']}")


def _finite(obj: Any) -> Any:
    """NaN / inf -> None (JSON has no NaN); numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 device columns per space")
    parser.add_argument("--out", default=str(RESULTS / "latency_predictors.json"))
    parser.add_argument("--baseline-checkout", metavar="DIR",
                        help="a checkout of a commit with the old numpy hgbdt: fit it beside every gbdt and compare")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    baseline, provenance = None, None
    if args.baseline_checkout:
        from booster_baseline import load_old_booster

        baseline, provenance = load_old_booster(args.baseline_checkout, "hgbdt")
    # The first LightGBM fit of a process pays its import and library start (about a second here): not fit time.
    make_latency_predictor("gbdt")[0].fit(np.arange(40.0).reshape(20, 2), np.arange(1.0, 21.0))
    start = time.perf_counter()
    log: list[str] = []
    results, transfer, extras = [], [], {}
    gpu_models: dict[str, Any] = {}
    for entry in load_spaces(args.quick):
        if "retest" in entry:
            entry["gpu_sources"] = gpu_models
        r, t, e = run_space(entry, log, gpu_models if entry["name"] == "ofa" else None, baseline)
        results += r
        transfer += t
        extras[entry["name"]] = e
        log.append(f"{entry['name']}: done at {time.perf_counter() - start:.0f} s")
        print(log[-1], file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    print_tables(results, transfer, extras)
    comparison = booster_comparison(results)
    if comparison:
        print_comparison(comparison)
    print(f"\nwall time {wall:.0f} s", file=sys.stderr)
    out = {"protocol": {"seed": SEED, "train_sizes": list(TRAIN_SIZES), "test_size": TEST_SIZE, "shots": list(SHOTS),
                        "shot_draws": SHOT_DRAWS, "models": list(MODELS), "default_model": DEFAULT_MODEL,
                        "quick": args.quick, "wall_time_s": round(wall, 1), "log": log},
           "results": results, "transfer": transfer, "extras": extras}
    if provenance is not None:
        out["booster_comparison"] = {"baseline": provenance, "order": "alternating: old first on every other fit",
                                     "rows": comparison}
    write_results(Path(args.out), _finite(out), load_before=load_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
