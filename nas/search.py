"""``python -m nas.search +space=NAME +target=NAME [key=value ...]``: one hardware-aware search.

Steps (each a function below): compose and check the config; load the data; get the supernet (shipped,
cached or trained with progressive shrinking); fit an accuracy predictor from subnets evaluated with the
shared weights and a latency predictor from subnets measured on the target; run the strategy on the
predictors; re-measure the Pareto front on the target; export the chosen network to ONNX, check it against
PyTorch, measure it and test it; write ``results.json`` and ``pareto.png`` into the run directory.

Bad input ends with one line ``error: ...`` on stderr and exit status 2; nothing already trained is lost
(supernet checkpoints are written per epoch into the cache and a rerun resumes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.errors import UserError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        from nas.pipeline import run_search  # heavy imports (torch) only once the config composed

        results_path = run_search(cfg, run_dir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: supernet checkpoints and measurements written so far are kept; rerun to resume",
              file=sys.stderr)
        sys.exit(130)
    print(f"results: {results_path}")


if __name__ == "__main__":
    main()
