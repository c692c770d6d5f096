"""The main command's thread policy: how many threads torch uses, and that idle threads sleep instead of spin.

Why: torch's OpenMP worker threads busy-wait (spin) at the end of every parallel region for a while before
sleeping. On an otherwise idle machine that saves a few microseconds per region; on a machine shared with
other CPU-bound work the spinning threads take the cores the working threads need, and the main command's
accuracy stage ran 10x slower beside two other processes on two cores, while the other work only halved the
CPU available. With passive waiting a run slows in proportion to the CPU it loses.

The policy, applied once at the start of ``python -m nas.search``:

- ``threads`` (config, top level): ``null`` = the cores this process may run on (``os.sched_getaffinity``,
  so ``taskset``/cgroup cpusets are respected), or a positive int;
- torch's intra-op threads = ``threads``; its inter-op pool gets one thread (the main command runs no
  inter-op parallel work, so more would only be idle threads), where torch still allows setting it;
- ``OMP_WAIT_POLICY=PASSIVE`` in the environment, unless the user set it: the OpenMP runtime reads it once,
  when it is loaded (at ``import torch``), so :func:`prepare_environment` must run before that import;
- onnxruntime sessions that only check a model (parity, test accuracy) do not spin either
  (:func:`nas.hardware.runtime.load_session` with ``allow_spinning=False``); latency *measurement* sessions
  keep the measurement protocol's settings (see there).

Nothing here runs at import time: the entry point calls :func:`prepare_environment` and
:func:`apply_thread_policy`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

from nas.errors import ConfigError

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), which can be fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def resolve_threads(value: object) -> int:
    """The ``threads`` option as a thread count: ``None`` = :func:`usable_cores`, else a positive int."""
    if value is None:
        return usable_cores()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"threads={value!r} is not valid: give a positive integer (threads for torch), or null to use the "
            f"cores this process may run on ({usable_cores()} here), e.g. threads=2"
        )
    return value


def prepare_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, Any]:
    """Ask the OpenMP runtime not to busy-wait, before it is loaded; returns what was done.

    A value the user exported is kept (e.g. ``OMP_WAIT_POLICY=ACTIVE`` on a dedicated machine). If torch was
    already imported (a library caller), the runtime has read its environment already and the setting has no
    effect this process; the returned record says so.
    """
    environ = os.environ if environ is None else environ
    user_value = environ.get(WAIT_POLICY_ENV)
    if user_value is None:
        environ[WAIT_POLICY_ENV] = PASSIVE
    return {
        "omp_wait_policy": environ[WAIT_POLICY_ENV],
        "omp_wait_policy_from": "user environment" if user_value is not None else "hwnas",
        "omp_wait_policy_in_effect": "torch" not in sys.modules,
    }


@dataclass(frozen=True, kw_only=True)
class ThreadPolicy:
    """The thread settings a run used, as recorded in ``results.json`` under ``threads``."""

    threads: int  # torch intra-op threads
    requested: int | None  # the ``threads`` option (None = the usable cores)
    usable_cores: int
    interop_threads: int  # torch's inter-op pool, as it stands after the policy
    omp_wait_policy: str | None
    omp_wait_policy_from: str
    omp_wait_policy_in_effect: bool  # False if torch was imported before the environment was set
    onnxruntime_check_sessions_spin: bool = False
    applied_by: str = "nas.search"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_thread_policy(requested: object, environment: dict[str, Any] | None = None) -> ThreadPolicy:
    """Set torch's threads from the ``threads`` option; ``environment`` is :func:`prepare_environment`'s record."""
    threads = resolve_threads(requested)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # torch allows it once, before any inter-op work; keep what is there
        pass
    environment = environment or {
        "omp_wait_policy": os.environ.get(WAIT_POLICY_ENV),
        "omp_wait_policy_from": "user environment" if WAIT_POLICY_ENV in os.environ else "unset",
        "omp_wait_policy_in_effect": False,
    }
    return ThreadPolicy(threads=threads, requested=requested, usable_cores=usable_cores(),  # type: ignore[arg-type]
                        interop_threads=torch.get_num_interop_threads(), **environment)


def describe_current() -> dict[str, Any]:
    """The thread settings in effect when a run was started by a library caller (no policy applied)."""
    import torch

    return {"threads": torch.get_num_threads(), "requested": None, "usable_cores": usable_cores(),
            "interop_threads": torch.get_num_interop_threads(), "omp_wait_policy": os.environ.get(WAIT_POLICY_ENV),
            "omp_wait_policy_from": "user environment" if WAIT_POLICY_ENV in os.environ else "unset",
            "omp_wait_policy_in_effect": None, "onnxruntime_check_sessions_spin": False,
            "applied_by": "caller (run_search called directly: the caller's torch settings)"}
