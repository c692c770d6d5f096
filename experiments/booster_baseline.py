"""The numpy boosters hwnas had before its LightGBM ``gbdt``, loaded from an older checkout, for side-by-side
benchmarks (``--baseline-checkout`` of ``latency_predictors.py`` and ``ofa_accuracy_predictor.py``)::

    git worktree add /tmp/booster_old c3abfc9     # the last commit with predictors/hgbdt.py and the numpy gbdt
    python experiments/latency_predictors.py --baseline-checkout /tmp/booster_old
    git worktree remove /tmp/booster_old

The old module is executed under a private name without registering it (hwnas's ``gbdt`` is the LightGBM
one), on top of this checkout's :class:`predictors.base.Predictor` (whose fit/predict checks are unchanged),
so both boosters fit the same rows in one process and can be timed alternately.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

#: module file -> class name, per booster of the old checkout
OLD_BOOSTERS = {"hgbdt": ("predictors/hgbdt.py", "HistGBDTPredictor"), "gbdt": ("predictors/gbdt.py", "GBDTPredictor")}


def load_old_booster(checkout: str | Path, which: str) -> tuple[type, dict[str, Any]]:
    """``(class, provenance)`` of the old numpy booster ``which`` (``hgbdt`` or ``gbdt``) in ``checkout``."""
    relative, class_name = OLD_BOOSTERS[which]
    path = Path(checkout) / relative
    source = path.read_text(encoding="utf-8") if path.is_file() else ""
    if "import numpy" not in source or "lightgbm" in source or f"class {class_name}" not in source:
        raise SystemExit(f"error: {path} is not the numpy {which} booster; give --baseline-checkout a checkout of a "
                         f"commit before the LightGBM gbdt (e.g. git worktree add /tmp/booster_old c3abfc9)")
    spec = importlib.util.spec_from_file_location(f"_baseline_{which}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # The old file registers itself at import; a pass-through decorator keeps it out of this registry.
    with mock.patch("nas.registry.register_predictor", lambda name: (lambda cls: cls)):
        spec.loader.exec_module(module)
    try:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return getattr(module, class_name), {"booster": f"{which} (numpy)", "file": relative, "commit": commit}
