"""Inference engines the measurement protocol runs on (``target.runtime=``): one module per engine, registered
by name in :data:`nas.registry.ENGINES`; the interface is :class:`nas.hardware.engines.base.Engine`."""

from __future__ import annotations


def get_engine(name: str):
    """The engine registered as ``name`` (an instance), or :class:`~nas.errors.ConfigError` naming the choices."""
    from nas.registry import ENGINES

    return ENGINES.get(str(name))()


def installed_engines() -> dict[str, str]:
    """Name -> version of every registered engine installed here (a broken install is left out)."""
    from nas.registry import ENGINES

    out = {}
    for name in ENGINES.names():
        engine = ENGINES.get(name)()
        if engine.installed():
            try:
                out[name] = engine.version()
            except Exception:  # noqa: BLE001 - listed by `python -m nas.hardware.engines list` with its problem
                continue
    return out
