"""Per-layer sensitivity scans: accuracy when one conv layer alone is pruned to each sparsity.

:func:`scan_sensitivity` is exact and cheap. Pruning conv layer k leaves everything before it
unchanged, so for each batch the activations entering layer k are computed once and only the
rest of the network is run for each sparsity. Masks are computed once per (layer, sparsity) and
swapped into the live model (no copies); sparsity 0 is the dense model, evaluated once. In a
fixed precision the result equals :func:`scan_sensitivity_naive` (copy the model, prune one
layer with :func:`pruning_utils.masks.prune_model`, run the whole network), which is kept as
the reference for tests and benchmarks.

Both return a DataFrame with columns ``strategy, layer, sparsity, accuracy`` (accuracy in [0, 1]).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .config import SCAN_SPARSITIES
from .criteria import check_sparsity, check_strategy, make_mask, unit_scores
from .evaluation import autocast, evaluate, prepare_batch, resolve_precision
from .masks import copy_model, mask_targets, prune_model
from .model import CONV_NAMES, VGG16, conv_layers

COLUMNS = ["strategy", "layer", "sparsity", "accuracy"]


def _validate_layers(layers: Sequence[str]) -> None:
    unknown = [name for name in layers if name not in CONV_NAMES]
    if unknown:
        raise KeyError(f"unknown layer(s) {unknown}; valid layers: {', '.join(CONV_NAMES)}")


@contextlib.contextmanager
def _swapped(params: dict[nn.Parameter, torch.Tensor]) -> Iterator[None]:
    """Temporarily replace the values of parameters (restored on exit)."""
    saved = {p: p.data for p in params}
    try:
        for p, value in params.items():
            p.data = value
        yield
    finally:
        for p, value in saved.items():
            p.data = value


def _check_scan_args(strategy: str, sparsities: Sequence[float], layers: Sequence[str]) -> None:
    check_strategy(strategy)
    _validate_layers(layers)
    for s in sparsities:
        check_sparsity(s)


@torch.no_grad()
def scan_sensitivity(
    model: VGG16,
    x: torch.Tensor,
    y: torch.Tensor,
    strategy: str,
    *,
    sparsities: Sequence[float] = SCAN_SPARSITIES,
    layers: Sequence[str] = CONV_NAMES,
    batch_size: int = 1000,
    precision: str = "fp32",
    remove_filter_outputs: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Accuracy on ``(x, y)`` with each layer in ``layers`` alone pruned to each sparsity."""
    _check_scan_args(strategy, sparsities, layers)
    device = next(model.parameters()).device
    precision = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    dense_acc = None
    rows = []
    try:
        for layer in tqdm(layers, desc=f"scan {strategy}", disable=not progress, mininterval=2.0):
            weight = conv_layers(model)[layer].weight
            units = unit_scores(weight, strategy).numel()
            masks = {s: make_mask(weight, s, strategy) for s in sparsities if round(s * units) > 0}
            correct = dict.fromkeys(masks, 0)
            for start in range(0, len(x), batch_size):
                inputs = prepare_batch(x[start : start + batch_size], device)
                targets = y[start : start + batch_size].to(device)
                with autocast(device, precision):
                    entering = model.features_before(inputs, layer)
                for s, mask in masks.items():
                    # a fresh autocast context per sparsity: autocast caches the low-precision
                    # copy of each weight while a context is open, which would outlive the swap
                    masked = mask_targets(model, layer, mask, strategy, remove_filter_outputs)
                    with _swapped({getattr(m, n): getattr(m, n).data * t for (m, n), t in masked.items()}):
                        with autocast(device, precision):
                            logits = model.forward_from(entering, layer)
                    correct[s] += int((logits.argmax(1) == targets).sum())
            for s in sparsities:
                if s in correct:
                    acc = correct[s] / len(x)
                else:  # nothing removed at this sparsity: the dense model, evaluated once
                    if dense_acc is None:
                        dense_acc = evaluate(model, x, y, batch_size=batch_size, precision=precision)
                    acc = dense_acc
                rows.append((strategy, layer, float(s), acc))
    finally:
        model.train(was_training)
    return pd.DataFrame(rows, columns=COLUMNS)


def scan_sensitivity_naive(
    model: VGG16,
    x: torch.Tensor,
    y: torch.Tensor,
    strategy: str,
    *,
    sparsities: Sequence[float] = SCAN_SPARSITIES,
    layers: Sequence[str] = CONV_NAMES,
    batch_size: int = 1000,
    precision: str = "fp32",
    remove_filter_outputs: bool = True,
    progress: bool = True,
    channels_last: bool = True,
) -> pd.DataFrame:
    """Reference scan: for every point, deep-copy the model, prune one layer, evaluate it all.

    ``channels_last=False`` runs it in NCHW, as the original code did (for benchmarks).
    """
    _check_scan_args(strategy, sparsities, layers)
    rows = []
    points = [(layer, s) for layer in layers for s in sparsities]
    for layer, s in tqdm(points, desc=f"naive scan {strategy}", disable=not progress, mininterval=2.0):
        pruned = prune_model(copy_model(model), {layer: s}, strategy, remove_filter_outputs=remove_filter_outputs)
        acc = evaluate(pruned, x, y, batch_size=batch_size, precision=precision, channels_last=channels_last)
        rows.append((strategy, layer, float(s), acc))
    return pd.DataFrame(rows, columns=COLUMNS)


def choose_sparsities(scan: pd.DataFrame, threshold: float) -> dict[str, float]:
    """The original's rule, per layer: the largest scanned sparsity reached before accuracy
    first falls below ``threshold`` (scanning upward from 0; 0.0 if it starts below).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    missing = set(COLUMNS) - set(scan.columns)
    if missing or scan.empty or scan[["sparsity", "accuracy"]].isna().any().any():
        raise ValueError(f"a scan needs rows with {', '.join(COLUMNS)} and no missing values; got {len(scan)} rows "
                         f"with columns {list(scan.columns)}")
    chosen = {}
    for layer, group in scan.groupby("layer", sort=False):
        best = 0.0
        for s, acc in group.sort_values("sparsity")[["sparsity", "accuracy"]].itertuples(index=False):
            if acc < threshold:
                break
            best = float(s)
        chosen[layer] = best
    return chosen
