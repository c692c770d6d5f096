"""Accuracy predictors for the OFA space: ridge, MLP (OFA's choice) and boosted trees, on subnets evaluated with
the default supernet's shared weights (BatchNorm recalibrated), scored on held-out subnets.

    python experiments/ofa_accuracy_predictor.py [--subnets 160] [--train 45,120] [--repeats 5] [--seed 0]

Uses the supernet the main command trains and caches (``$HWNAS_CACHE`` or ``~/.cache/hwnas``; trained
here first if missing, a few minutes). For each training size, ``--repeats`` random splits: fit on ``train``
subnets, score Spearman / Kendall on the rest. Prints a table, writes
``experiments/results/ofa_accuracy_predictor.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tqdm import tqdm

from nas.accuracy import SupernetEvaluator
from nas.data import load_data
from nas.pipeline import make_space, obtain_supernet, sample_distinct
from nas.registry import PREDICTORS
from predictors.metrics import regression_metrics

ROOT = Path(__file__).resolve().parents[1]
PREDICTOR_NAMES = ("ridge", "mlp", "gbdt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subnets", type=int, default=160)
    parser.add_argument("--train", default="45,120")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results" / "ofa_accuracy_predictor.json"))
    args = parser.parse_args()

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+space=ofa", "+target=cpu"])
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    space_cfg = OmegaConf.to_container(cfg.space, resolve=True)
    data = load_data(**data_cfg, seed=int(cfg.seed))
    space = make_space(space_cfg, num_classes=data.num_classes, in_channels=data.in_channels)
    supernet, info = obtain_supernet(space, space_cfg=space_cfg, data_cfg=data_cfg, data=data, seed=int(cfg.seed),
                                     cache_dir=Path(str(cfg.cache_dir)).expanduser(), progress=True)
    evaluator = SupernetEvaluator(space, supernet, data, calib_images=int(cfg.accuracy.calib_images), seed=int(cfg.seed))
    rng = np.random.default_rng(args.seed)
    archs = sample_distinct(space, args.subnets, rng, include=[space.smallest(), space.largest()])
    y = np.array([evaluator.accuracy(a) for a in tqdm(archs, desc="accuracy of subnets (shared weights)")])
    X = space.encode_many(archs).astype(np.float64)

    rows = []
    for n_train in (int(t) for t in args.train.split(",")):
        for name in PREDICTOR_NAMES:
            scores = []
            for repeat in range(args.repeats):
                order = np.random.default_rng(1000 * repeat + n_train).permutation(len(y))
                train, test = order[:n_train], order[n_train:]
                model = PREDICTORS.get(name)().fit(X[train], y[train])
                scores.append(regression_metrics(y[test], model.predict(X[test])))
            rows.append({"predictor": name, "train": n_train, "test": len(y) - n_train,
                         "spearman": float(np.mean([s["spearman"] for s in scores])),
                         "spearman_std": float(np.std([s["spearman"] for s in scores])),
                         "kendall": float(np.mean([s["kendall"] for s in scores]))})
    print(f"{len(y)} subnets, accuracy {y.min():.3f}-{y.max():.3f} (supernet: {info['source']})")
    print("| predictor | train | test | Spearman | Kendall |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['predictor']} | {r['train']} | {r['test']} | {r['spearman']:.3f} ± {r['spearman_std']:.3f} | {r['kendall']:.3f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": "python experiments/ofa_accuracy_predictor.py", "args": vars(args),
                               "accuracy_range": [float(y.min()), float(y.max())], "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
