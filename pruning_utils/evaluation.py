"""Evaluation on uint8 tensor datasets: devices, precision, accuracy, BatchNorm recalibration.

:func:`evaluate` always runs in eval mode (BatchNorm running statistics, dropout off);
:func:`train_mode_accuracy` measures the way the original report did (train mode, batch
statistics). On a CPU the model runs in channels_last with bf16 autocast where the CPU supports
bf16 (fp32 selectable); on CUDA with autocast (bf16 where supported, else fp16).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .data import augment_batch, to_float
from .latency import native_bf16
from .masks import copy_model


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
        return "bf16" if native_bf16() else "fp32"
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


@torch.no_grad()
def train_mode_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    seed: int,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> float:
    """Accuracy measured the way the original report did: train mode (BatchNorm batch
    statistics, dropout on), on a copy so the model's running statistics are untouched.

    The images go in a seeded random order: the JPEG copy stores the test images class by class,
    and batch statistics of one-class batches would make this number much worse than the
    original's (its torchvision test set comes in a mixed order). The global RNG is restored.
    """
    device = device or next(model.parameters()).device
    precision = resolve_precision(precision, device)
    probe = copy_model(model).train()
    rng_state = torch.get_rng_state()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    torch.manual_seed(seed)
    correct = 0
    try:
        for start in range(0, len(x), batch_size):
            with autocast(device, precision):
                logits = probe(prepare_batch(x[start : start + batch_size], device))
            correct += int((logits.argmax(1).cpu() == y[start : start + batch_size].cpu()).sum())
    finally:
        torch.set_rng_state(rng_state)
    return correct / len(x)
