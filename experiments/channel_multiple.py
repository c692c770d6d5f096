"""Which channel widths onnxruntime's CPU kernels reward: the evidence behind ``space.divisor: auto``.

    python experiments/channel_multiple.py [--rounds 7] [--threads 1]

Part 1 times a chain of four depthwise-separable blocks (1x1 to C channels, 3x3 depthwise, 1x1 back, 28 px)
for C = 16, 24, ..., 64 with onnxruntime at the default graph optimisation level ("all", which converts
convolutions to its blocked NCHWc layout) and at "extended" (no NCHWc), the sessions interleaved round by round.
If a width between two multiples of B costs as much as the next multiple, the kernels work in blocks of B.

Part 2 measures the narrowest member and the uniform 0.5 member of the channel space's default base
(MobileNetV2-0.5, 28 px) with kept widths rounded to multiples of 8 and of 16, each measured together with the
base by the ``cpu`` target (its default protocol), as latency / base.

It prints both tables, says what ``onnxruntime_channel_block()`` answers on this machine, and writes
``experiments/results/channel_multiple.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

from results_io import write_results

WIDTHS = (16, 24, 32, 40, 48, 56, 64)


def _chain(width: int):
    from torch import nn

    def block() -> nn.Module:
        return nn.Sequential(nn.Conv2d(16, width, 1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, groups=width),
                             nn.ReLU(), nn.Conv2d(width, 16, 1))

    return nn.Sequential(*[block() for _ in range(4)]).eval()


def _session(width: int, level, threads: int):
    import onnxruntime as ort
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(_chain(width), torch.randn(1, 16, 28, 28), buffer, dynamo=False, input_names=["x"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = level
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def block_probe(rounds: int, threads: int) -> dict[str, dict[str, float]]:
    """Median ms per width at each optimisation level, over ``rounds`` interleaved rounds of 50 runs."""
    import numpy as np
    import onnxruntime as ort

    x = {"x": np.random.default_rng(0).standard_normal((1, 16, 28, 28)).astype(np.float32)}
    levels = {"all (default)": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended (no NCHWc)": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    out = {}
    for name, level in levels.items():
        sessions = {w: _session(w, level, threads) for w in WIDTHS}
        samples: dict[int, list[float]] = {w: [] for w in WIDTHS}
        for _ in range(rounds):
            for w, session in sessions.items():
                for _ in range(10):
                    session.run(None, x)
                start = time.perf_counter()
                for _ in range(50):
                    session.run(None, x)
                samples[w].append((time.perf_counter() - start) / 50 * 1e3)
        out[name] = {str(w): statistics.median(v) for w, v in samples.items()}
    return out


def member_ratios(threads: int) -> list[dict]:
    """Latency / base of the narrowest and the uniform-0.5 member at divisor 8 and 16, measured with the base."""
    from nas.hardware.targets import LocalCPUTarget
    from search_spaces.channels import ChannelSpace

    target = LocalCPUTarget(threads=threads)
    rows = []
    for divisor in (8, 16):
        space = ChannelSpace(base="mobilenet_v2", base_config={"width_mult": 0.5}, divisor=divisor)
        base, narrowest, half = target.measure_together(space, [space.largest(), space.smallest(), space.uniform(0.5)])
        rows.append({"divisor": divisor, "base_ms": base.median_ms,
                     "narrowest": narrowest.median_ms / base.median_ms, "uniform_0.5": half.median_ms / base.median_ms,
                     "narrowest_params": sum(p.numel() for p in space.build(space.smallest()).parameters())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    from nas.hardware.measure import onnxruntime_channel_block

    probe = block_probe(args.rounds, args.threads)
    print(f"{'level':<22}" + "".join(f"{w:>8}" for w in WIDTHS) + "   (ms, C channels)")
    for level, row in probe.items():
        print(f"{level:<22}" + "".join(f"{row[str(w)]:>8.3f}" for w in WIDTHS))
    members = member_ratios(args.threads)
    print(f"\n{'divisor':>7}  {'base ms':>8}  {'narrowest / base':>16}  {'uniform 0.5 / base':>18}")
    for r in members:
        print(f"{r['divisor']:>7}  {r['base_ms']:>8.3f}  {r['narrowest']:>16.3f}  {r['uniform_0.5']:>18.3f}")
    block = onnxruntime_channel_block()
    print(f"\nonnxruntime_channel_block() on this machine: {block}")
    write_results("channel_multiple.json", {"threads": args.threads, "rounds": args.rounds, "widths": list(WIDTHS),
                                            "block_probe": probe, "members": members, "channel_block": block},
                  load_before=load_before)


if __name__ == "__main__":
    main()
