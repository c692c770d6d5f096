"""Command line for search spaces.

    python -m search_spaces list
    python -m search_spaces describe --space ofa --arch '{"ks": [...], "e": [...], "d": [...], "r": 224}'
        [--width 1.0] [--num-classes 1000] [--in-channels 3] [--resolutions 24,28,32]

``describe`` prints one JSON object (params, macs, arch_id, resolution ...). Bad input prints one line
``error: <message>`` to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence

from nas.arch import arch_id, parse_json_arg
from nas.errors import ConfigError, UserError
from nas.registry import SPACES, list_spaces
from search_spaces.base import SearchSpace
from search_spaces.profile import count_macs, count_params


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors use the same one-line ``error:`` format and status as every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see python -m search_spaces --help)")


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _make_space(name: str, options: dict[str, object]) -> SearchSpace:
    """Instantiate space ``name`` with the options given on the command line (others at their defaults)."""
    cls = SPACES.get(name)
    accepted = inspect.signature(cls).parameters
    rejected = [key for key in options if key not in accepted]
    if rejected:
        raise ConfigError(f"space {name!r} does not take option(s) {rejected}")
    return cls(**options)


def describe(args: argparse.Namespace) -> dict[str, object]:
    given = {
        "width_mult": args.width,
        "num_classes": args.num_classes,
        "in_channels": args.in_channels,
        "resolutions": args.resolutions,
    }
    space = _make_space(args.space, {k: v for k, v in given.items() if v is not None})
    arch = space.parse(parse_json_arg(args.arch))
    net = space.build(arch)
    shape = space.input_shape(arch)
    return {
        "space": space.name,
        "arch_id": arch_id(arch),
        "params": count_params(net),
        "macs": count_macs(net, shape),
        "resolution": shape[1],
        "input_shape": list(shape),
        "summary": space.describe(arch),
        "public": space.to_public(arch),
        "arch": arch,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m search_spaces", description="Inspect the registered search spaces.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered search spaces, one per line")
    p = sub.add_parser("describe", help="print params, MACs and id of one architecture as JSON")
    p.add_argument("--space", default="ofa", help="registered space name (default: ofa)")
    p.add_argument("--arch", required=True, help="architecture: inline JSON (public or flat form) or @file.json")
    p.add_argument("--width", type=float, help="width multiplier (OFA: width_mult)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--in-channels", type=int)
    p.add_argument("--resolutions", type=_int_list, help="comma-separated allowed resolutions, e.g. 24,28,32")
    try:
        args = parser.parse_args(argv)
        if args.command == "list":
            print("\n".join(list_spaces()))
        else:
            print(json.dumps(describe(args)))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
