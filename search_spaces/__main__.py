"""Command line for search spaces.

    python -m search_spaces list
    python -m search_spaces presets
    python -m search_spaces describe --space ofa --arch '{"ks": [...], "e": [...], "d": [...], "r": 224}'
        [--width 1.0] [--num-classes 1000] [--in-channels 3] [--resolutions 24,28,32] [--resolution 224]
    python -m search_spaces describe --preset mobilenet_v3_large
    python -m search_spaces describe --space channels --base mobilenet_v2 --base-config '{"width_mult": 0.5}'
        [--arch '{"g00": 8, ...}' | --uniform 0.5]

``describe`` prints one JSON object (space, arch, params, macs, arch_id, resolution ...). With ``--preset`` it
builds a public reference network (ImageNet configuration) as a member of its space and adds the space's
options (``space_config``: what ``python -m nas.search +space=SPACE space.KEY=VALUE ... arch=...`` needs to
evaluate that arch) and the reference implementation's parameter count. Bad input prints one line
``error: <message>`` to stderr and exits with status 2.

``--space channels`` describes a member of a base network's channel space (``--base`` / ``--base-run`` as
``space.base`` / ``space.base_run``); without ``--arch`` the full base (``--uniform R``: every group at ratio R),
and ``groups`` lists the dependency groups with their widths.
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


def _overrides(space: SearchSpace) -> list[str]:
    """The ``space.KEY=VALUE`` options (other than sizes, which come from the data) in which ``space`` differs from
    its defaults: what ``python -m nas.search +space=NAME ... arch=...`` needs to evaluate a preset's arch."""
    defaults = {k: p.default for k, p in inspect.signature(type(space)).parameters.items()}
    sizes = ("width_mult", "resolution", "num_classes", "in_channels")
    out = []
    for key, value in space.config().items():
        default = defaults.get(key)
        default = list(default) if isinstance(default, tuple) else default
        if key not in sizes and value != default:
            shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            out.append(f"space.{key}={shown}")
    return out


def describe(args: argparse.Namespace) -> dict[str, object]:
    given = {
        "width_mult": args.width,
        "num_classes": args.num_classes,
        "in_channels": args.in_channels,
        "resolutions": args.resolutions,
        "resolution": args.resolution,
        "base": args.base,
        "base_run": args.base_run,
        "base_config": json.loads(args.base_config) if args.base_config else None,
    }
    given = {k: v for k, v in given.items() if v is not None}
    extra: dict[str, object] = {}
    if args.preset is not None:
        from search_spaces.layerwise import get_preset

        if args.arch is not None or given:
            raise UserError("--preset fixes the space and the arch; leave out --arch and the space options")
        preset = get_preset(args.preset)
        space = preset.build_space()
        arch = preset.arch(space)
        extra = {"preset": preset.name, "space_config": space.config(), "reference": preset.reference,
                 "reference_params": preset.reference_params, "space_overrides": _overrides(space)}
    elif args.space == "channels":
        space = _make_space(args.space, given)
        if args.arch is not None:
            arch = space.parse(parse_json_arg(args.arch))
        else:
            arch = space.uniform(args.uniform) if args.uniform is not None else space.largest()
        extra = {"base": space.spec.to_dict(), "keep_ratio": round(space.keep_ratio(arch), 4),
                 "groups": [{"label": g.label, "channels": g.channels, "kept": space.widths(arch)[g.label],
                             "options": list(space.choices().get(g.label, (g.channels,))), "layers": g.describe()}
                            for g in space.groups]}
    else:
        if args.arch is None:
            raise UserError("describe needs --arch JSON (or --preset NAME; see python -m search_spaces presets)")
        space = _make_space(args.space, given)
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
        **extra,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m search_spaces", description="Inspect the registered search spaces.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered search spaces, one per line")
    sub.add_parser("presets", help="print the presets (public reference networks), one per line")
    p = sub.add_parser("describe", help="print params, MACs and id of one architecture as JSON")
    p.add_argument("--space", default="ofa", help="registered space name (default: ofa)")
    p.add_argument("--arch", help="architecture: inline JSON (public or flat form) or @file.json")
    p.add_argument("--preset", help="a public reference network, e.g. mobilenet_v3_large (see the presets command)")
    p.add_argument("--width", type=float, help="width multiplier (OFA: width_mult)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--in-channels", type=int)
    p.add_argument("--resolutions", type=_int_list, help="comma-separated allowed resolutions, e.g. 24,28,32")
    p.add_argument("--resolution", type=int, help="input resolution of a fixed-resolution space (mobilenet ...)")
    p.add_argument("--base", help="channels: the base network (a preset, a JSON arch {space, arch} or a base.npz)")
    p.add_argument("--base-run", help="channels: an earlier run directory whose best network is the base")
    p.add_argument("--base-config", help="channels: JSON options of the base's space, e.g. '{\"width_mult\": 0.5}'")
    p.add_argument("--uniform", type=float, help="channels: every group at this keep ratio (instead of --arch)")
    try:
        args = parser.parse_args(argv)
        if args.command == "list":
            print("\n".join(list_spaces()))
        elif args.command == "presets":
            from search_spaces.layerwise import get_preset, list_presets

            for name in list_presets():
                preset = get_preset(name)
                print(f"{name}\t{preset.space}\t{preset.reference} ({preset.reference_params:,} parameters)")
        else:
            print(json.dumps(describe(args)))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
