"""Accuracy predictors for the OFA space: ridge, MLP (OFA's choice) and boosted trees, on subnets evaluated with
the default supernet's shared weights (BatchNorm recalibrated), scored on held-out subnets.

    python experiments/ofa_accuracy_predictor.py [--subnets 160] [--train 45,120] [--repeats 5] [--seed 0]
        [--baseline-checkout DIR [--booster-seeds N]] [--subnets-from JSON]

Uses the supernet the main command trains and caches (``$HWNAS_CACHE`` or ``~/.cache/hwnas``; trained
here first if missing, a few minutes). For each training size, ``--repeats`` random splits: fit on ``train``
subnets, score Spearman / Kendall on the rest; ``fit_s`` is the mean seconds of one fit. Prints a table, writes
``experiments/results/ofa_accuracy_predictor.json`` (with every subnet and its accuracy under ``subnets``, so the
predictors can be refitted without evaluating the supernet again).

``--baseline-checkout DIR`` (a checkout of a commit before the LightGBM ``gbdt``, see ``booster_baseline.py``):
the old numpy ``gbdt`` is fitted on the same splits as the new one, the two alternating which goes first; the
``gbdt`` rows get a ``baseline`` entry and ``booster_comparison`` lists both side by side. With
``--booster-seeds N`` both are also fitted with seeds 0..N-1 on every split (``seed_spread``): on 45 subnets
the bagging seed alone moves the mean Spearman by about 0.01, as much as the boosters differ.

``--subnets-from JSON`` refits the predictors on the ``subnets`` a previous run of this script wrote, without
evaluating the supernet again (the file's own run record is kept under ``subnets_from``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tqdm import tqdm

from nas.accuracy import SupernetEvaluator
from nas.data import load_data
from nas.pipeline import make_space, obtain_supernet, sample_distinct
from nas.registry import PREDICTORS
from predictors.metrics import regression_metrics
from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
PREDICTOR_NAMES = ("ridge", "mlp", "gbdt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subnets", type=int, default=160)
    parser.add_argument("--train", default="45,120")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results" / "ofa_accuracy_predictor.json"))
    parser.add_argument("--baseline-checkout", metavar="DIR",
                        help="a checkout of a commit with the old numpy gbdt: fit it beside the new one and compare")
    parser.add_argument("--booster-seeds", type=int, default=1, metavar="N",
                        help="with --baseline-checkout: also fit both boosters with seeds 0..N-1 on every split")
    parser.add_argument("--subnets-from", metavar="JSON",
                        help="the subnets and accuracies of a previous run's results file, instead of evaluating")
    args = parser.parse_args()
    if args.booster_seeds < 1 or (args.booster_seeds > 1 and not args.baseline_checkout):
        parser.error("--booster-seeds must be >= 1, and > 1 only with --baseline-checkout")
    load_before = os.getloadavg()[0]
    baseline, provenance = None, None
    if args.baseline_checkout:
        from booster_baseline import load_old_booster

        baseline, provenance = load_old_booster(args.baseline_checkout, "gbdt")

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+space=ofa", "+target=cpu"])
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    space_cfg = OmegaConf.to_container(cfg.space, resolve=True)
    data = load_data(**data_cfg, seed=int(cfg.seed))
    space = make_space(space_cfg, num_classes=data.num_classes, in_channels=data.in_channels)
    reused = None
    if args.subnets_from:
        previous = json.loads(Path(args.subnets_from).read_text())
        if not previous.get("subnets"):
            parser.error(f"{args.subnets_from} has no 'subnets' (write one with this script first)")
        archs = [space.validate(s["arch"]) for s in previous["subnets"]]
        y = np.array([float(s["accuracy"]) for s in previous["subnets"]])
        reused = {"path": str(args.subnets_from), "run": previous.get("run")}
        info = {"source": f"subnets from {args.subnets_from}"}
        args.subnets = len(archs)
    else:
        supernet, info = obtain_supernet(space, space_cfg=space_cfg, data_cfg=data_cfg, data=data, seed=int(cfg.seed),
                                         cache_dir=Path(str(cfg.cache_dir)).expanduser(), progress=True)
        evaluator = SupernetEvaluator(space, supernet, data, calib_images=int(cfg.accuracy.calib_images),
                                      seed=int(cfg.seed))
        rng = np.random.default_rng(args.seed)
        archs = sample_distinct(space, args.subnets, rng, include=[space.smallest(), space.largest()])
        y = np.array([evaluator.accuracy(a) for a in tqdm(archs, desc="accuracy of subnets (shared weights)")])
    X = space.encode_many(archs).astype(np.float64)

    def fit_score(factory, train: np.ndarray, test: np.ndarray) -> tuple[dict, float]:
        t = time.perf_counter()
        model = factory().fit(X[train], y[train])
        seconds = time.perf_counter() - t
        return regression_metrics(y[test], model.predict(X[test])), seconds

    def summary(scores: list[dict], seconds: list[float]) -> dict:
        return {"spearman": float(np.mean([s["spearman"] for s in scores])),
                "spearman_std": float(np.std([s["spearman"] for s in scores])),
                "kendall": float(np.mean([s["kendall"] for s in scores])),
                "fit_s": round(float(np.mean(seconds)), 4)}

    # The first LightGBM fit of a process pays its import and library start (about a second here): not fit time.
    PREDICTORS.get("gbdt")(n_trees=2).fit(X[:10], y[:10])
    def seed_spread(n_train: int, old_cls: type, seeds: int) -> dict:
        """Per seed, the mean Spearman over the same splits, of the new and the old booster (alternating)."""
        by_seed: dict[str, list[float]] = {"gbdt": [], "baseline": []}
        for seed in range(seeds):
            runs = [("gbdt", lambda: PREDICTORS.get("gbdt")(seed=seed)), ("baseline", lambda: old_cls(seed=seed))]
            means: dict[str, list[float]] = {"gbdt": [], "baseline": []}
            for repeat in range(args.repeats):
                order = np.random.default_rng(1000 * repeat + n_train).permutation(len(y))
                for side, factory in runs[::-1] if (seed + repeat) % 2 else runs:
                    means[side].append(fit_score(factory, order[:n_train], order[n_train:])[0]["spearman"])
            for side in by_seed:
                by_seed[side].append(float(np.mean(means[side])))
        out: dict[str, Any] = {"seeds": seeds}
        for side, values in by_seed.items():
            out[f"{side}_spearman_by_seed"] = [round(v, 4) for v in values]
            out[f"{side}_spearman_mean"] = float(np.mean(values))
            out[f"{side}_spearman_std"] = float(np.std(values))
        return out

    rows, comparison, pairs = [], [], 0
    for n_train in (int(t) for t in args.train.split(",")):
        for name in PREDICTOR_NAMES:
            scores, seconds, old_scores, old_seconds = [], [], [], []
            for repeat in range(args.repeats):
                order = np.random.default_rng(1000 * repeat + n_train).permutation(len(y))
                train, test = order[:n_train], order[n_train:]
                with_old = baseline is not None and name == "gbdt"
                runs = [("new", PREDICTORS.get(name))] + ([("old", baseline)] if with_old else [])
                if with_old and pairs % 2 == 0:  # alternate which booster fits first
                    runs.reverse()
                pairs += with_old
                for side, factory in runs:
                    score, took = fit_score(factory, train, test)
                    (scores if side == "new" else old_scores).append(score)
                    (seconds if side == "new" else old_seconds).append(took)
            rows.append({"predictor": name, "train": n_train, "test": len(y) - n_train, **summary(scores, seconds)})
            if old_scores:
                rows[-1]["baseline"] = {"predictor": "gbdt (numpy)", **summary(old_scores, old_seconds)}
                comparison.append({"train": n_train, "test": len(y) - n_train,
                                   **{f"gbdt_{k}": v for k, v in summary(scores, seconds).items()},
                                   **{f"baseline_{k}": v for k, v in summary(old_scores, old_seconds).items()}})
                if args.booster_seeds > 1:
                    comparison[-1]["seed_spread"] = seed_spread(n_train, baseline, args.booster_seeds)
    print(f"{len(y)} subnets, accuracy {y.min():.3f}-{y.max():.3f} (supernet: {info['source']})")
    print("| predictor | train | test | Spearman | Kendall | fit s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        for label, m in ((r["predictor"], r), ("gbdt (numpy, old)", r.get("baseline"))):
            if m is not None:
                print(f"| {label} | {r['train']} | {r['test']} | {m['spearman']:.3f} ± {m['spearman_std']:.3f} "
                      f"| {m['kendall']:.3f} | {m['fit_s']:.3f} |")
    for c in comparison:
        if "seed_spread" in c:
            sp = c["seed_spread"]
            print(f"{c['train']} training subnets, mean Spearman over seeds 0..{sp['seeds'] - 1}: gbdt "
                  f"{sp['gbdt_spearman_mean']:.3f} ± {sp['gbdt_spearman_std']:.3f}, numpy gbdt (old) "
                  f"{sp['baseline_spearman_mean']:.3f} ± {sp['baseline_spearman_std']:.3f}")
    payload = {"command": "python experiments/ofa_accuracy_predictor.py", "args": vars(args),
               "accuracy_range": [float(y.min()), float(y.max())], "rows": rows,
               "subnets": [{"arch": dict(a), "accuracy": float(acc)} for a, acc in zip(archs, y)]}
    if reused is not None:
        payload["subnets_from"] = reused
    if provenance is not None:
        payload["booster_comparison"] = {"baseline": provenance, "order": "alternating: old first on every other split",
                                         "rows": comparison}
    out = write_results(Path(args.out), payload, load_before=load_before)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
