"""Training on uint8 tensor datasets, with checkpoints that know which run they belong to.

The data stays as uint8 tensors; each training batch is a slice of a seeded random permutation,
augmented as a whole batch in torch (:func:`pruning_utils.data.augment_batch`). Precision and
layout as in :mod:`pruning_utils.evaluation` (fp16 on CUDA adds a gradient scaler).

:func:`train` writes an atomic checkpoint after every epoch (model, optimizer, scheduler, RNG
states, history, and the ``identity`` of the training it belongs to) and resumes from it; a run
interrupted and resumed ends with the same weights as an uninterrupted one. A checkpoint whose
identity differs from the one asked for (another seed, recipe, width, upstream model...), or that
cannot be read or is damaged (its CRC32 checks fail), is refused with :class:`CheckpointError`,
naming the file and the way out.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .config import Recipe
from .data import augment_batch
from .data.cache import check_crc, save_atomic
from .evaluation import autocast, evaluate, pick_device, prepare_batch, resolve_precision


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed: unreadable, or written by another training."""


def load_checkpoint(path: Path, identity: dict, device: torch.device) -> dict:
    """The checkpoint at ``path`` if it is intact (:func:`pruning_utils.data.cache.check_crc`) and was
    written for ``identity``; CheckpointError otherwise."""
    try:
        check_crc(path)
        state = torch.load(path, map_location=device, weights_only=False)
        stored = state["identity"]
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); delete it, or rerun with "
            "force=True (FORCE=1), to start this training from scratch"
        ) from error
    expected = json.loads(json.dumps(identity, default=str))
    if stored != expected:
        fields = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
        detail = "; ".join(f"{k}: checkpoint {stored.get(k)!r}, this run {expected.get(k)!r}" for k in fields)
        raise CheckpointError(
            f"checkpoint {path} belongs to another training ({detail}); delete it, or rerun with "
            "force=True (FORCE=1), to start this training from scratch"
        )
    return state


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
    identity: dict | None = None,
    resume: bool = True,
    eval_batch_size: int = 1000,
    progress: bool = True,
    desc: str = "train",
    on_epoch_end: EpochCallback | None = None,
    measure: Callable[[nn.Module], dict] | None = None,
    first_epoch: int = 0,
    teacher: nn.Module | None = None,
    distill_alpha: float = 0.9,
    distill_temperature: float = 4.0,
) -> pd.DataFrame:
    """Train ``model`` in place for ``recipe.epochs`` epochs; return the per-epoch history.

    History columns: ``epoch, lr, loss, train_acc, val_acc, seconds, images_per_s`` (``val_acc``
    is NaN without ``val``). With ``checkpoint`` a checkpoint is written atomically after every
    epoch, carrying ``identity`` (a JSON-able dict naming this training: seed, recipe, model...);
    with ``resume`` an existing one is loaded first, if its identity is ``identity`` (else
    :class:`CheckpointError`), and training continues from it (a finished run returns its
    history without training). ``measure(model)`` returns extra per-epoch measurements (name ->
    number) that join each epoch's record, and so the history and the checkpoint.
    ``on_epoch_end(epoch, record)`` runs after each epoch's checkpoint is on disk.

    ``first_epoch`` > 0 runs only the recipe's last ``recipe.epochs - first_epoch`` epochs, with
    the learning-rate (and momentum) schedule where it would be at that epoch: learning-rate
    rewinding (Renda et al. 2020) is the dense recipe with ``first_epoch = epochs - budget``.
    With a ``teacher`` (kept in eval mode), the loss is knowledge distillation (Hinton et al. 2015):
    ``distill_alpha * T^2 * KL(teacher || student at temperature T) + (1 - distill_alpha) * cross-entropy``.
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
    if isinstance(first_epoch, bool) or not isinstance(first_epoch, int) or not 0 <= first_epoch < max(1, recipe.epochs):
        raise ValueError(f"first_epoch must be an int in [0, {recipe.epochs}), got {first_epoch!r}")
    if first_epoch:
        with warnings.catch_warnings():  # stepping the schedule ahead without optimizer steps, on purpose
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(first_epoch * steps_per_epoch):
                scheduler.step()
    if teacher is not None:
        teacher.eval()
    start_epoch = first_epoch
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and resume and path.exists():
        state = load_checkpoint(path, identity or {}, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        # the CPU random states, wherever map_location put every tensor (a CUDA run's checkpoint)
        generator.set_state(state["rng"]["generator"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
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
                if teacher is not None:
                    with torch.no_grad():
                        soft = F.log_softmax(teacher(inputs).float() / distill_temperature, dim=1)
                    kl = F.kl_div(F.log_softmax(logits.float() / distill_temperature, dim=1), soft, log_target=True,
                                  reduction="batchmean")
                    loss = distill_alpha * distill_temperature**2 * kl + (1 - distill_alpha) * loss
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
            **(measure(model) if measure is not None else {}),
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
                    "identity": json.loads(json.dumps(identity or {}, default=str)),
                },
                path,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)
    columns = ["epoch", "lr", "loss", "train_acc", "val_acc", "seconds", "images_per_s"]
    return pd.DataFrame(history, columns=columns + [k for k in (history[0] if history else {}) if k not in columns])
