"""Train the embedded default's OFA supernet from scratch and put it in the package, so a first run of the
main command on a fresh machine skips the training (minutes) and loads it.

    python experiments/ship_default_supernet.py [overrides ...]    # e.g. seed=1

Composes the main command's config (``+space=ofa +target=cpu`` plus overrides), trains the supernet with
progressive shrinking exactly as the main command would (same code, same seed, same data split) in a
temporary directory, and writes it to ``nas/assets/supernets/<space>-<key>.npz``, where ``key`` is the
cache key of that config: the main command loads it only for a config that would have trained the same weights.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nas.data import load_data
from nas.pipeline import SHIPPED_SUPERNETS, make_space, supernet_key
from nas.training import TrainConfig, train_supernet

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+space=ofa", "+target=cpu", *sys.argv[1:]])
    seed = int(cfg.seed)
    space_cfg = OmegaConf.to_container(cfg.space, resolve=True)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data = load_data(**data_cfg, seed=seed)
    space = make_space(space_cfg, num_classes=data.num_classes, in_channels=data.in_channels)
    key = supernet_key(space_cfg, data_cfg, seed)
    supernet = space.supernet()
    with tempfile.TemporaryDirectory(prefix="hwnas-ship-") as tmp:
        summary = train_supernet(space, supernet, data, config=TrainConfig(**dict(space_cfg.get("train") or {}), seed=seed),
                                 checkpoint_dir=Path(tmp), progress=True)
        target = SHIPPED_SUPERNETS / f"{space.name}-{key}.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "supernet.npz", target)
    print(f"validation accuracy: {summary.get('val_accuracy')}")
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
