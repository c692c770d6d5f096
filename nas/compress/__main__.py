"""``python -m nas.compress run=DIR +target=NAME [steps=[...]] [step.option=value ...]``: compress a network.

Runs the steps (:mod:`nas.compress.steps`) in order on a search run's best network (``run=DIR``) or an ONNX
model (``model=FILE``), measures every step on the target beside the original, and writes ``report.json``,
``report.md``, ``report.png``, per-layer profiles and ``models/compressed.onnx`` into the run directory. The
last line printed is ``report: <path to report.json>``. Bad input: one line ``error: ...``, exit status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.errors import UserError
from nas.search import exit_with_error


@hydra.main(version_base="1.3", config_path="../../conf", config_name="compress")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        from nas.threads import apply_thread_policy, prepare_environment, resolve_threads

        resolve_threads(cfg.get("threads"))
        environment = prepare_environment()  # before torch is imported: OpenMP reads its wait policy once
        from nas.compress.command import compress_command, data_overridden
        from nas.compress.report import console_summary

        apply_thread_policy(cfg.get("threads"), environment)
        report_path = compress_command(cfg, run_dir, data_given=data_overridden(list(hydra_cfg.overrides.task)))
    except UserError as exc:
        exit_with_error(exc)
    except KeyboardInterrupt:
        print("interrupted: measurements and training checkpoints written so far are kept; rerun to resume",
              file=sys.stderr)
        sys.exit(130)
    print(console_summary(json.loads(report_path.read_text())))
    print(f"report: {report_path}")


def cli(argv: list[str] | None = None) -> None:
    from nas.config_schema import composition_error

    problem = composition_error(sys.argv[1:] if argv is None else argv, config_name="compress")
    if problem is not None:
        exit_with_error(problem)
    main()


if __name__ == "__main__":
    cli()
