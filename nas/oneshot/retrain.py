"""Training a derived network on the data (from scratch, or fine-tuning the supernet's weights).

A one-shot search ranks architectures with shared weights; the network it derives is then trained on its own,
as DARTS, GDAS and FBNet do, before it is exported, measured and tested. Plain SGD with Nesterov momentum and
a cosine schedule, checkpointed after every epoch (a rerun resumes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nas.accuracy import evaluate, resize_batch
from nas.checkpoint import load_checkpoint, optimizer_from_tensors, optimizer_to_tensors, save_checkpoint
from nas.data import DataSplits


#: ``loss_fn(model, x, y, step)`` -> (loss, logits): what one step minimises (default: cross-entropy). ``step`` is
#: the global step number, so a loss that draws random choices can seed them by it (a resumed run draws alike).
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def train_network(model: nn.Module, data: DataSplits, *, epochs: int, lr: float, resolution: int, seed: int,
                  batch_size: int = 64, weight_decay: float = 3e-4, momentum: float = 0.9, grad_clip: float = 5.0,
                  checkpoint: Path | None = None, progress: bool = True, desc: str = "train",
                  loss_fn: LossFn = cross_entropy_loss, evaluate_fn: Callable[[nn.Module], float] | None = None) -> dict:
    """Train ``model`` in place on ``data.train`` for ``epochs`` epochs; its accuracy on ``data.val`` after each
    epoch (``evaluate_fn(model)`` when given), and the time it took, in the returned summary."""
    if evaluate_fn is None:
        def evaluate_fn(m: nn.Module) -> float:
            return evaluate(m, data.val.X, data.val.y, resolution=resolution)

    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True,
                                weight_decay=weight_decay)
    X, Y = data.train
    batch = min(batch_size, len(Y))
    steps = max(len(Y) // batch, 1)
    rng = np.random.default_rng(seed)
    history: list[dict] = []
    start_epoch, seconds = 0, 0.0
    if checkpoint is not None and Path(checkpoint).is_file():
        tensors, meta = load_checkpoint(checkpoint)
        if meta.get("epochs") == epochs and meta.get("lr") == lr:
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            optimizer.load_state_dict(optimizer_from_tensors(tensors, meta["optimizer"]))
            rng.bit_generator.state = meta["rng"]
            start_epoch, history, seconds = int(meta["epoch"]), list(meta["history"]), float(meta["seconds"])
    bar = tqdm(total=epochs * steps, initial=start_epoch * steps, disable=not progress, unit="step",
               dynamic_ncols=True, desc=desc)
    try:
        for epoch in range(start_epoch, epochs):
            started = time.perf_counter()
            model.train()
            order = torch.from_numpy(rng.permutation(len(Y)))
            total, correct = 0.0, 0
            for step in range(steps):
                group_lr = 0.5 * lr * (1 + math.cos(math.pi * (epoch * steps + step) / (epochs * steps)))
                for group in optimizer.param_groups:
                    group["lr"] = group_lr
                idx = order[step * batch:(step + 1) * batch]
                x, y = resize_batch(X[idx], resolution), Y[idx]
                optimizer.zero_grad(set_to_none=True)
                loss, logits = loss_fn(model, x, y, epoch * steps + step)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                total += float(loss.detach())
                correct += int((logits.detach().argmax(1) == y).sum())
                bar.update(1)
            val = evaluate_fn(model)
            seconds += time.perf_counter() - started
            history.append({"epoch": epoch + 1, "loss": total / steps, "train_acc": correct / (steps * batch),
                            "val_acc": val})
            bar.set_postfix_str(f"loss {total / steps:.3f} val acc {val:.3f}", refresh=True)
            if checkpoint is not None:
                tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
                opt_tensors, opt_meta = optimizer_to_tensors(optimizer.state_dict())
                save_checkpoint(checkpoint, tensors | opt_tensors,
                                {"epoch": epoch + 1, "epochs": epochs, "lr": lr, "optimizer": opt_meta,
                                 "rng": rng.bit_generator.state, "history": history, "seconds": seconds})
    finally:
        bar.close()
    val = history[-1]["val_acc"] if history else evaluate_fn(model)
    return {"epochs": epochs, "lr": lr, "batch_size": batch, "history": history, "val_accuracy": val,
            "seconds": round(seconds, 1)}
