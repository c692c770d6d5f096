"""Latency ratios of networks measured one after the other versus interleaved in one session.

    python experiments/measure_together.py [--rounds 5] [--widths 0.3,0.5,0.7] [--threads 1]

A channel run compares networks as fractions of its base network's latency. This measures the base
(MobileNetV2-0.5 at 28 px, the channel space's default) and uniform-width members of it on this machine's CPU
with the ``cpu`` target's default protocol, ``--rounds`` times in two ways per round: each network in its own
measurement (``Target.measure_together`` with one network: how the runs measured before), then all of them
together (interleaved blocks in one session, what a channel run does now). It prints, per member, the spread of
its latency / base over the rounds for both ways, and writes ``experiments/results/measure_together.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics

from results_io import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--widths", default="0.3,0.5,0.7", help="uniform keep ratios measured beside the base")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    from nas.hardware.targets import LocalCPUTarget
    from search_spaces.channels import ChannelSpace

    space = ChannelSpace(base="mobilenet_v2", base_config={"width_mult": 0.5})
    target = LocalCPUTarget(threads=args.threads)
    widths = [float(w) for w in args.widths.split(",")]
    archs = [space.largest(), *(space.uniform(w) for w in widths)]
    ratios: dict[str, dict[str, list[float]]] = {"apart": {}, "together": {}}
    for round_ in range(args.rounds):
        apart = [target.measure_together(space, [arch])[0].median_ms for arch in archs]
        together = [m.median_ms for m in target.measure_together(space, archs)]
        for way, ms in (("apart", apart), ("together", together)):
            for w, value in zip(widths, ms[1:]):
                ratios[way].setdefault(f"{w:g}", []).append(value / ms[0])
        print(f"round {round_ + 1}/{args.rounds}: base {apart[0]:.3f} ms apart, {together[0]:.3f} ms together",
              flush=True)
    rows = []
    for w in widths:
        row = {"width": w}
        for way in ("apart", "together"):
            values = ratios[way][f"{w:g}"]
            row[way] = {"ratios": values, "min": min(values), "max": max(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        rows.append(row)
    print(f"{'width':>6}  {'apart: latency / base (min-max, std)':<40}  together")
    for r in rows:
        a, t = r["apart"], r["together"]
        print(f"{r['width']:>6g}  {a['min']:.3f}-{a['max']:.3f}, std {a['std']:.3f}{'':<18}  "
              f"{t['min']:.3f}-{t['max']:.3f}, std {t['std']:.3f}")
    write_results("measure_together.json", {"base": "mobilenet_v2 width 0.5 at 28 px", "threads": args.threads,
                                            "rounds": args.rounds, "rows": rows}, load_before=load_before)


if __name__ == "__main__":
    main()
