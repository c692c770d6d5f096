"""Entry point of ``python -m predictors`` (see :mod:`predictors.cli`)."""

from predictors.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
