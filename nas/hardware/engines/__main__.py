"""``python -m nas.hardware.engines list``: the inference engines, whether each is installed here, its version,
what it takes, and how to install the missing ones."""

from __future__ import annotations

import argparse
import json
import sys


def rows() -> list[dict]:
    from nas.registry import ENGINES

    out = []
    for name in ENGINES.names():
        engine = ENGINES.get(name)()
        entry = {"name": name, "installed": engine.installed(), "formats": list(engine.formats),
                 "parity_tolerance": engine.tolerance, "install": engine.install_hint()}
        if entry["installed"]:
            try:
                entry["version"] = engine.version()
            except Exception as err:  # noqa: BLE001 - a broken install is reported, not raised
                entry["installed"], entry["problem"] = False, f"{type(err).__name__}: {err}"
        out.append(entry)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.hardware.engines", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["list"])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    table = rows()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for entry in table:
        state = f"installed, {entry['version']}" if entry["installed"] else f"not installed: {entry['install']}"
        if entry.get("problem"):
            state = f"broken ({entry['problem']}); reinstall: {entry['install']}"
        print(f"{entry['name']:<12} {state:<48} takes {', '.join(entry['formats'])}; parity within "
              f"{entry['parity_tolerance']:g} of PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
