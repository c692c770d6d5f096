"""Compression benchmark: each step alone and the default pipeline, on three networks at three input sizes.

    python experiments/compress.py [--models ofa,mobilenet_v2,shufflenet] [--resolutions 32,64,224]
                                   [--workdir runs/compress-bench] [--resume] [--merge]

Networks: the main command's winner (``python -m nas.search +space=ofa +target=cpu``, run here first; at 32 px
its supernet weights, at other sizes the same architecture trained), MobileNetV2 width 1.0 and ShuffleNetV2
x1.0 (the presets), each trained briefly by this script on the embedded MNIST digits resized to the input size
(``--epochs``; at 224 px ``--epochs-224`` on ``--limit-224`` images, since an epoch of 3,500 224-px images
costs minutes on two cores) and saved as a ``base.npz`` network file.

Each network is compressed by the CLI with its defaults (``python -m nas.compress model=NET.npz +target=cpu
'steps=[...]'``; the winner at 32 px with ``run=DIR``): ``quantize``, ``prune``, ``lowrank`` and ``distill``
alone, and the default ``[prune, distill, quantize]``. From each report: the shipped model's latency and size as
ratios to the original (measured in one session), its accuracy change, which steps were kept, the original's
latency with its spread. Prints a table and writes ``experiments/results/compress.json``; ``--resume`` skips
configurations whose report exists in the work directory; ``--collect`` runs nothing and writes what the work
directory holds (the JSON then says ``partial`` when configurations are missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("ofa", "mobilenet_v2", "shufflenet")
PRESETS = {"mobilenet_v2": ("mobilenet_v2", {"width_mult": 1.0}), "shufflenet": ("shufflenet_v2_x1_0", None)}
CONFIGS = {"quantize": ["quantize"], "prune": ["prune"], "lowrank": ["lowrank"], "distill": ["distill"],
           "default": None}  # None: the CLI's default steps


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` from the repository root (its output to ``log``); CPU seconds of the child."""
    before = os.times()
    with open(log, "w") as handle:
        done = subprocess.run(cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log}")
    return (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main_run(work: Path) -> Path:
    folder = work / "ofa-main"
    if not (folder / "results.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "nas.search", "+space=ofa", "+target=cpu", f"hydra.run.dir={folder}",
             "progress=false"], folder.with_suffix(".log"))
    return folder


def network_file(model: str, resolution: int, work: Path, *, epochs: int, limit: int | None, seed: int) -> Path:
    """Train ``model`` at ``resolution`` on the embedded data and save it as a base.npz network file."""
    import torch

    from nas.channels.base import resolve_base, save_base
    from nas.data import load_data
    from nas.oneshot.retrain import train_network

    path = work / "nets" / f"{model}-{resolution}.npz"
    if path.is_file():
        return path
    data = load_data(name="mnist5k", seed=seed, limit=limit)
    if model == "ofa":
        record = json.loads((main_run(work) / "results.json").read_text())
        space_cfg = {k: v for k, v in record["config"]["space"].items() if k not in ("name", "train", "checkpoint")}
        space_cfg["resolutions"] = [resolution]
        arch = {**record["best"]["public"], "r": resolution}
        base: object = {"space": "ofa", "arch": arch, "config": space_cfg}
        base_config = None
    else:
        base, base_config = PRESETS[model]
    spec = resolve_base(base=base, base_run=None, base_config=base_config, resolution=resolution,
                        num_classes=data.num_classes, in_channels=data.in_channels)
    space = spec.build_space()
    torch.manual_seed(seed)
    net = space.build(space.validate(spec.arch))
    started = time.time()
    summary = train_network(net, data, epochs=epochs, lr=0.1, batch_size=64, weight_decay=4e-5, resolution=resolution,
                            seed=seed, checkpoint=path.with_suffix(".state.npz"), progress=True,
                            desc=f"train {model} at {resolution} px")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_base(path, net.eval(), spec, {"train": {**summary, "wall_s": time.time() - started, "limit": limit}})
    return path


def compress(source: list[str], steps: list[str] | None, folder: Path, *, limit: int | None) -> tuple[dict, float, float]:
    cmd = [sys.executable, "-m", "nas.compress", *source, "+target=cpu", f"hydra.run.dir={folder}", "progress=false"]
    if steps is not None:
        cmd.append(f"steps=[{','.join(steps)}]")
    if limit is not None:
        cmd.append(f"data.limit={limit}")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    cpu = run(cmd, folder / "console.log")
    return json.loads((folder / "report.json").read_text()), time.time() - started, cpu


def row(model: str, resolution: int, config: str, report: dict, wall: float, cpu: float) -> dict:
    original, final = report["original"], report["final"]
    return {"model": model, "resolution": resolution, "config": config, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "original_ms": original["latency_ms"], "original_spread": original["latency_spread"],
            "original_test_accuracy": original["test_accuracy"], "original_size_bytes": original["size_bytes"],
            "final_ms": final["latency_ms"], "final_spread": final["latency_spread"],
            "speedup": (original["latency_ms"] / final["latency_ms"]) if final["latency_ms"] else None,
            "latency_ratio": final["latency_ratio"], "size_ratio": final["size_ratio"],
            "accuracy_change_pp": 100 * (final["test_accuracy"] - original["test_accuracy"]),
            "final_precision": final["precision"], "from_step": final.get("from_step"),
            "steps": [{"name": s["name"], "kept": s["kept"], "why": s["why"], "latency_ratio": s["latency_ratio"],
                       "latency_ratio_to_input": s.get("latency_ratio_to_input"), "size_ratio": s["size_ratio"],
                       "test_accuracy": s["test_accuracy"], "latency_spread": s["latency_spread"]}
                      for s in report["steps"]],
            "kind_us": kind_times(report),
            "report": str(Path(report["run_dir"]) / "report.json")}


def kind_times(report: dict) -> dict:
    """Profiled microseconds per layer kind of the original and of the int8 model (the shipped one, or the one not
    kept), where the report has both: where int8 gained or lost time."""
    profile = report.get("profile") or {}
    int8 = profile.get("quantize") if isinstance(profile.get("quantize"), dict) else (
        profile.get("final") if report["final"].get("precision") == "int8" else None)
    if not isinstance(profile.get("original"), dict) or not isinstance(int8, dict):
        return {}
    return {"fp32": profile["original"].get("kind_us"), "int8": int8.get("kind_us")}


def table(rows: list[dict]) -> str:
    head = ["model", "px", "steps", "original ms", "speed-up", "size", "acc change", "kept", "CPU min"]
    cells = [head]
    for r in rows:
        spread = f" ±{100 * r['original_spread'] / 2:.0f}%" if r["original_spread"] else ""
        kept = ",".join(s["name"] for s in r["steps"] if s["kept"]) or "none"
        cells.append([r["model"], str(r["resolution"]), r["config"], f"{r['original_ms']:.3f}{spread}",
                      f"{r['speedup']:.2f}x" if r["speedup"] else "?", f"{r['size_ratio']:.2f}x",
                      f"{r['accuracy_change_pp']:+.2f} pp", kept, f"{r['cpu_s'] / 60:.1f}"])
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(head))) for c in cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--resolutions", default="32,64,224")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of each network (briefly)")
    parser.add_argument("--limit-224", type=int, default=1000, help="images used at 224 px (training and compression)")
    parser.add_argument("--epochs-224", type=int, default=10,
                        help="training epochs at 224 px (on --limit-224 images: 3 epochs left the networks at chance)")
    parser.add_argument("--workdir", default="runs/compress-bench")
    parser.add_argument("--out", default="compress.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: collect the reports already in --workdir (a partial benchmark says so)")
    args = parser.parse_args()
    work = (ROOT / args.workdir).resolve()
    load = os.getloadavg()[0]
    rows = []
    for model in args.models.split(","):
        for resolution in map(int, args.resolutions.split(",")):
            limit = args.limit_224 if resolution >= 224 else None
            if args.collect:
                for config in args.configs.split(","):
                    folder = work / f"{model}-{resolution}-{config}"
                    if (folder / "report.json").is_file() and (folder / "timing.json").is_file():
                        wall, cpu = json.loads((folder / "timing.json").read_text())
                        rows.append(row(model, resolution, config, json.loads((folder / "report.json").read_text()),
                                        wall, cpu))
                continue
            if model == "ofa" and resolution == 32:
                source = [f"run={main_run(work)}"]
            else:
                epochs = args.epochs_224 if resolution >= 224 else args.epochs
                source = [f"model={network_file(model, resolution, work, epochs=epochs, limit=limit, seed=args.seed)}"]
            for config in args.configs.split(","):
                folder = work / f"{model}-{resolution}-{config}"
                if args.resume and (folder / "report.json").is_file():
                    report, wall, cpu = json.loads((folder / "report.json").read_text()), float("nan"), float("nan")
                    saved = folder / "timing.json"
                    if saved.is_file():
                        wall, cpu = json.loads(saved.read_text())
                else:
                    report, wall, cpu = compress(source, CONFIGS[config], folder, limit=limit)
                    (folder / "timing.json").write_text(json.dumps([wall, cpu]))
                rows.append(row(model, resolution, config, report, wall, cpu))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    planned = len(args.models.split(",")) * len(args.resolutions.split(",")) * len(args.configs.split(","))
    path = write_results(args.out, {"rows": rows, "planned": planned, "partial": len(rows) < planned,
                                    "settings": {"epochs": args.epochs, "epochs_224": args.epochs_224, "limit_224": args.limit_224,
                                                 "seed": args.seed, "models": args.models,
                                                 "resolutions": args.resolutions, "configs": args.configs}},
                         load_before=load)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
