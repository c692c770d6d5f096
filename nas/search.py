"""``python -m nas.search +space=NAME +target=NAME [key=value ...]``: one hardware-aware search.

Steps (each a function below): compose and check the config; load the data; get the supernet (shipped,
cached or trained with progressive shrinking); fit an accuracy predictor from subnets evaluated with the
shared weights and a latency predictor from subnets measured on the target; run the strategy on the
predictors; re-measure the Pareto front on the target; export the chosen network to ONNX, check it against
PyTorch, measure it and test it; write ``results.json`` and ``pareto.png`` into the run directory; print a
summary of the chosen network (:func:`nas.report.summarize`) and the path of ``results.json``.

The run sets its own thread policy first (:mod:`nas.threads`, option ``threads``), so it shares a machine
with other work without busy-waiting.

Bad input ends with one line ``error: ...`` on stderr and exit status 2; nothing already trained is lost
(supernet checkpoints are written per epoch into the cache and a rerun resumes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.errors import UserError, error_line
from nas.report import summarize


def exit_with_error(exc: UserError) -> NoReturn:
    """Bad input: one line ``error: ...`` on stderr, exit status 2."""
    print(error_line(exc), file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        from nas.threads import apply_thread_policy, prepare_environment, resolve_threads

        resolve_threads(cfg.get("threads"))  # a bad value fails here, before anything is imported or run
        # Before torch is imported (by nas.pipeline): the OpenMP runtime reads its wait policy once, when loaded.
        environment = prepare_environment()
        from nas.pipeline import run_search  # heavy imports (torch) only once the config composed

        policy = apply_thread_policy(cfg.get("threads"), environment)
        results_path = run_search(cfg, run_dir, thread_policy=policy.to_dict())
    except UserError as exc:
        exit_with_error(exc)
    except KeyboardInterrupt:
        print("interrupted: supernet checkpoints and measurements written so far are kept; rerun to resume",
              file=sys.stderr)
        sys.exit(130)
    print(summarize(json.loads(results_path.read_text())))
    print(f"results: {results_path}")


def cli(argv: list[str] | None = None) -> None:
    """The command: Hydra's own composition errors (an option file or key that does not exist, an override
    that does not parse) are said on one line with exit status 2 too, before Hydra runs; then :func:`main`."""
    from nas.config_schema import composition_error

    problem = composition_error(sys.argv[1:] if argv is None else argv)
    if problem is not None:
        exit_with_error(problem)
    main()


if __name__ == "__main__":
    cli()
