"""Training, evaluation and BatchNorm recalibration on uint8 tensor datasets.

The data stays as uint8 tensors; each training batch is a slice of a seeded random permutation,
augmented as a whole batch in torch (:func:`pruning_utils.data.augment_batch`). On a CPU the
model runs in channels_last with bf16 autocast where the CPU supports bf16 (fp32 selectable);
on CUDA with autocast (bf16 where supported, else fp16 with a gradient scaler).

:func:`evaluate` always runs in eval mode (BatchNorm running statistics, dropout off): the
original report's headline numbers were measured in train mode. :func:`train` writes an atomic
checkpoint after every epoch (model, optimizer, scheduler, RNG states, history) and resumes
from it; a run interrupted and resumed ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .config import Recipe
from .data import augment_batch, to_float


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into ``bf16`` / ``fp16`` / ``fp32`` for ``device``; check explicit choices."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if torch.cpu._is_avx512_bf16_supported() else "fp32"
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}; valid: auto, bf16, fp16, fp32")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast is only supported on CUDA here; use bf16 or fp32 on CPU")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def prepare_batch(x: torch.Tensor, device: torch.device, channels_last: bool = True) -> torch.Tensor:
    """Float batch on ``device``, in channels_last memory format unless asked otherwise."""
    x = x if x.is_floating_point() else to_float(x)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(device, non_blocking=True).contiguous(memory_format=layout)


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device | None = None,
    precision: str = "fp32",
    channels_last: bool = True,
) -> torch.Tensor:
    """Predicted class of every image in uint8 ``x``, computed in eval mode."""
    device = device or next(model.parameters()).device
    precision = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    try:
        preds = []
        for start in range(0, len(x), batch_size):
            with autocast(device, precision):
                logits = model(prepare_batch(x[start : start + batch_size], device, channels_last))
            preds.append(logits.argmax(1).cpu())
        return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device | None = None,
    precision: str = "fp32",
    channels_last: bool = True,
) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``model`` on ``(x, y)``, always in eval mode."""
    if len(x) == 0:
        raise ValueError("cannot evaluate on an empty split")
    preds = predict(model, x, batch_size=batch_size, device=device, precision=precision, channels_last=channels_last)
    return int((preds == y.cpu()).sum()) / len(y)


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    x: torch.Tensor,
    *,
    num_batches: int,
    batch_size: int,
    seed: int = 0,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on augmented training batches.

    No gradient step: only BatchNorm layers run in train mode (dropout stays off), with
    ``momentum=None`` so the statistics are the plain average over ``num_batches`` batches.
    Pruning shifts each layer's activation statistics; this corrects the stale ones.
    """
    device = device or next(model.parameters()).device
    precision = resolve_precision(precision, device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = {bn: bn.momentum for bn in bns}
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        order = torch.randperm(len(x), generator=generator)
        for b in range(num_batches):
            idx = order[(b * batch_size) % len(x) :][:batch_size]
            with autocast(device, precision):
                model(prepare_batch(augment_batch(x[idx], generator), device))
    finally:
        for bn in bns:
            bn.momentum = saved[bn]
        model.train(was_training)
    return model


def _make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        params, lr=recipe.lr, momentum=recipe.momentum, nesterov=True, weight_decay=recipe.weight_decay
    )


def _make_scheduler(
    optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=max(1, recipe.epochs * steps_per_epoch), pct_start=0.25
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


EpochCallback = Callable[[int, dict], None]


def train(
    model: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    recipe: Recipe,
    *,
    batch_size: int,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    precision: str = "auto",
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    eval_batch_size: int = 1000,
    progress: bool = True,
    desc: str = "train",
    on_epoch_end: EpochCallback | None = None,
) -> pd.DataFrame:
    """Train ``model`` in place for ``recipe.epochs`` epochs; return the per-epoch history.

    History columns: ``epoch, lr, loss, train_acc, val_acc, seconds, images_per_s`` (``val_acc``
    is NaN without ``val``). With ``checkpoint`` a checkpoint is written atomically after every
    epoch; with ``resume`` an existing one is loaded first and training continues from it (a
    finished run returns its history without training). ``on_epoch_end(epoch, record)`` runs
    after each epoch's checkpoint is on disk.
    """
    device = pick_device(device) if device is None or isinstance(device, str) else device
    precision = resolve_precision(precision, device)
    model.to(device).to(memory_format=torch.channels_last)
    steps_per_epoch = -(-len(train_x) // batch_size)
    optimizer = _make_optimizer(model, recipe)
    scheduler = _make_scheduler(optimizer, recipe, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    history: list[dict] = []
    start_epoch = 0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and resume and path.exists():
        state = torch.load(path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        generator.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        history, start_epoch = state["history"], state["epoch"]

    epochs = tqdm(range(start_epoch, recipe.epochs), desc=desc, initial=start_epoch, total=recipe.epochs,
                  disable=not progress, mininterval=2.0)
    for epoch in epochs:
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(train_x), generator=generator)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            inputs = prepare_batch(augment_batch(train_x[idx], generator), device)
            targets = train_y[idx].to(device, non_blocking=True)
            with autocast(device, precision):
                logits = model(inputs)
                loss = F.cross_entropy(logits, targets, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach().float() * len(idx)
            correct += (logits.argmax(1) == targets).sum()
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "loss": loss_sum.item() / len(train_x),
            "train_acc": correct.item() / len(train_x),
            "val_acc": (
                evaluate(model, *val, batch_size=eval_batch_size, device=device, precision=precision)
                if val is not None and len(val[0])
                else float("nan")
            ),
            "seconds": seconds,
            "images_per_s": len(train_x) / seconds,
        }
        history.append(record)
        epochs.set_postfix(loss=f"{record['loss']:.3f}", val_acc=f"{record['val_acc']:.3f}")
        if path is not None:
            save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": {
                        "generator": generator.get_state(),
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                    },
                    "epoch": epoch + 1,
                    "history": history,
                    "recipe": asdict(recipe),
                    "seed": seed,
                },
                path,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)
    return pd.DataFrame(history, columns=["epoch", "lr", "loss", "train_acc", "val_acc", "seconds", "images_per_s"])
