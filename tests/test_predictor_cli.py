"""``python -m predictors``: fit / evaluate / transfer on small slices of the shared real tables, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/hw-nas-bench-help")
KEYS = {"rmse_ms", "mape", "within_5pct", "within_10pct", "spearman", "kendall", "n_test"}
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared HW-NAS-Bench data not present")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "predictors", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert KEYS <= set(report)
    return report


def bad(proc: subprocess.CompletedProcess, match: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-1]] and match in lines[-1], proc.stderr  # notes may come first
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def fbnet_csv(tmp_path_factory) -> Path:
    import pandas as pd

    path = tmp_path_factory.mktemp("tables") / "fbnet.csv"
    frame = pd.read_csv(DATA / "fbnet_latency.csv.xz").iloc[:400]
    frame.loc[5, "raspi4"] = float("nan")  # dropped with a note
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def ofa_parquet(tmp_path_factory) -> Path:
    import pandas as pd

    frame = pd.read_csv(DATA / "ofa_mbv3_gpu_latency.csv.xz").iloc[:150]
    frame["arch"] = [json.dumps({"ks": [int(v) for v in k.split()], "e": [int(v) for v in e.split()],
                                 "d": [int(v) for v in d.split()], "r": int(r)})
                     for k, e, d, r in zip(frame["ks"], frame["e"], frame["d"], frame["r"])]
    path = tmp_path_factory.mktemp("tables") / "ofa.parquet"
    frame.to_parquet(path)
    return path


def test_fit_save_evaluate(fbnet_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    proc = run("fit", "--data", str(fbnet_csv), "--space", "fbnet", "--arch-column", "op_names",
               "--latency-column", "raspi4", "--train-size", "300", "--seed", "0", "--out", str(out))
    report = last_json(proc)
    assert report["n_test"] == 99 and report["within_10pct"] > 0.99 and "dropped 1 row" in proc.stderr
    report = last_json(run("evaluate", "--model", str(out), "--data", str(fbnet_csv), "--arch-column", "op_names",
                           "--latency-column", "raspi4"))
    assert report["n_test"] == 399 and report["within_10pct"] > 0.99


def test_transfer_and_ofa_json_column(ofa_parquet: Path) -> None:
    report = last_json(run("transfer", "--data", str(ofa_parquet), "--space", "ofa", "--arch-column", "arch",
                           "--source-columns", "2080ti_1,titan_xp_1", "--target-column", "v100_1",
                           "--shots", "20", "--seed", "0"))
    assert report["n_test"] == 130 and report["spearman"] > 0.5
    report = last_json(run("fit", "--data", str(ofa_parquet), "--space", "ofa", "--arch-column", "arch",
                           "--latency-column", "v100_1", "--train-size", "100", "--seed", "1", "--predictor", "flops"))
    assert report["n_test"] == 50


def test_bad_input_is_one_error_line(fbnet_csv: Path, tmp_path: Path) -> None:
    common = ["--arch-column", "op_names", "--latency-column", "raspi4", "--seed", "0"]
    bad(run("fit", "--data", str(fbnet_csv), "--space", "fbnet", "--arch-column", "nope", "--latency-column",
            "raspi4", "--train-size", "10"), "no column(s) ['nope']")
    bad(run("fit", "--data", str(fbnet_csv), "--space", "mobilenet", *common, "--train-size", "10"),
        "unknown space 'mobilenet'")
    bad(run("fit", "--data", str(fbnet_csv), "--space", "fbnet", *common, "--train-size", "5000"),
        "--train-size must be between 2 and 398")
    bad(run("fit", "--data", str(fbnet_csv), "--space", "nb201", *common, "--train-size", "10"), "row 0")
    bad(run("fit", "--data", str(tmp_path / "missing.csv"), "--space", "fbnet", *common, "--train-size", "10"),
        "does not exist")
    bad(run("fit", "--data", str(fbnet_csv), "--space", "fbnet", *common, "--train-size", "10",
            "--predictor", "magic"), "invalid choice")
    bad(run("evaluate", "--model", str(tmp_path / "none"), "--data", str(fbnet_csv), "--arch-column", "op_names",
            "--latency-column", "raspi4"), "no saved predictor")
    bad(run("transfer", "--data", str(fbnet_csv), "--space", "fbnet", "--arch-column", "op_names",
            "--source-columns", "pixel3", "--target-column", "raspi4", "--shots", "1000"), "--shots must be")
