"""The main command's thread policy (nas/threads.py): resolution, the environment, the record in results.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.errors import ConfigError
from nas.threads import PASSIVE, WAIT_POLICY_ENV, prepare_environment, resolve_threads, usable_cores

ROOT = Path(__file__).resolve().parents[1]


def test_null_means_the_cores_this_process_may_use(monkeypatch):
    assert resolve_threads(None) == usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert resolve_threads(None) == 3


@pytest.mark.parametrize("value", [1, 2, 7])
def test_an_int_is_respected(value):
    assert resolve_threads(value) == value


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2", [2]])
def test_bad_values_are_a_config_error(value):
    with pytest.raises(ConfigError, match=r"threads=.*positive integer"):
        resolve_threads(value)


def test_passive_wait_is_set_unless_the_user_chose():
    env: dict[str, str] = {}
    record = prepare_environment(env)
    assert env[WAIT_POLICY_ENV] == PASSIVE and record["omp_wait_policy"] == PASSIVE
    assert record["omp_wait_policy_from"] == "hwnas"
    env = {WAIT_POLICY_ENV: "ACTIVE"}
    record = prepare_environment(env)
    assert env[WAIT_POLICY_ENV] == "ACTIVE" and record["omp_wait_policy_from"] == "user environment"
    # torch is imported in this test process, so a policy set now could not reach its OpenMP runtime
    import torch  # noqa: F401

    assert prepare_environment({})["omp_wait_policy_in_effect"] is False


def test_check_sessions_do_not_spin_and_measurement_sessions_keep_the_default():
    from nas.hardware.reference import reference_model
    from nas.hardware.runtime import load_session

    key = "session.intra_op.allow_spinning"
    check = load_session(reference_model(), threads=2, allow_spinning=False)
    assert check.get_session_options().get_session_config_entry(key) == "0"
    measure = load_session(reference_model(), threads=2)
    with pytest.raises(RuntimeError, match="does not have configuration"):  # onnxruntime's default: spinning on
        measure.get_session_options().get_session_config_entry(key)


def run_cli(tmp_path, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY_ENV}
    env.update({"HWNAS_CACHE": str(tmp_path / "cache"), **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "nas.search", "+space=nb201", "evaluator=tabular", "+target=raspi4",
                           "budget.queries=30", "progress=false", *args, f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("value", ["0", "-2", "abc"])
def test_cli_bad_threads_is_one_error_line(tmp_path, value):
    proc = run_cli(tmp_path, f"threads={value}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: threads=")
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_applies_and_records_the_policy(tmp_path):
    proc = run_cli(tmp_path, "threads=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "results.json").read_text())["threads"]
    assert record["threads"] == 1 and record["requested"] == 1 and record["usable_cores"] == usable_cores()
    assert record["interop_threads"] == 1 and record["applied_by"] == "nas.search"
    # set before torch was imported, so the OpenMP runtime started with it
    assert record["omp_wait_policy"] == PASSIVE and record["omp_wait_policy_in_effect"] is True


def test_cli_keeps_a_users_wait_policy_and_defaults_to_the_usable_cores(tmp_path):
    proc = run_cli(tmp_path, env_extra={WAIT_POLICY_ENV: "ACTIVE"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "results.json").read_text())["threads"]
    assert record["threads"] == usable_cores() and record["requested"] is None
    assert record["omp_wait_policy"] == "ACTIVE" and record["omp_wait_policy_from"] == "user environment"
