"""What is left after pruning: parameters, conv weights and multiply-adds, each defined once.

- ``parameters`` (:func:`count_remaining_parameters`): every parameter of the model; a masked
  parameter counts its mask's True entries. Compare with the original report's "% params left".
- ``conv weights`` (:func:`conv_weights_kept_pct`): the conv layers' weights only (no biases), the
  quantity the pruning strategies and the budgets act on. "% conv weights left" everywhere in
  the study means this.
- ``multiply-adds`` (:func:`count_multiply_adds_masked`): of one forward pass, if masked weights
  were skipped.

These are *masked* counts: a weight counts while its mask keeps it, even where the filter that
feeds its input channel was removed. What the compacted model physically keeps (a removed filter
takes the next layer's input channel with it) is the *effective* count,
:func:`pruning_utils.compact.effective_counts`.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .masks import current_mask, layer_masks
from .model import conv_layers, count_multiply_adds


def count_remaining_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters that remain after masking.

    Returns ``{"total": ..., "total_dense": ..., "conv0": ..., ...}``: the whole model's
    remaining and dense parameter counts, and per conv layer its remaining weights and bias.
    A masked parameter contributes its mask's ``True`` count; an unmasked one counts in full.
    """
    counts: dict[str, int] = {"total": 0, "total_dense": 0}
    layer_of = {id(c): n for n, c in conv_layers(model).items()}
    for module in model.modules():
        for pname, tensor in module.named_parameters(recurse=False):
            name = pname.removesuffix("_orig")
            mask = current_mask(module, name)
            left = int(mask.sum()) if mask is not None else tensor.numel()
            counts["total"] += left
            counts["total_dense"] += tensor.numel()
            if id(module) in layer_of:
                counts[layer_of[id(module)]] = counts.get(layer_of[id(module)], 0) + left
    return counts


def conv_weights_kept_pct(model: nn.Module) -> float:
    """Unmasked conv weights as % of all conv weights (biases not counted, as in the budgets)."""
    masks = layer_masks(model).values()
    return 100.0 * sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def emptied_filters(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Per conv layer with any: how many filters have every weight masked, and how many it has.
    Besides the filters that filter pruning removes, kernel or fine-grained pruning can empty a
    filter whose weights all fall below the threshold (conv0 has only 3 kernels per filter); such a
    filter is removed as a filter-pruned one is (:func:`pruning_utils.masks.mask_targets`)."""
    out = {}
    for name, mask in layer_masks(model).items():
        empty = int((mask.flatten(1).sum(1) == 0).sum())
        if empty:
            out[name] = (empty, mask.shape[0])
    return out


def params_kept_pct(model: nn.Module) -> float:
    """Remaining parameters of the whole model as % of its dense count."""
    counts = count_remaining_parameters(model)
    return 100.0 * counts["total"] / counts["total_dense"]


def count_multiply_adds_masked(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> dict[str, int]:
    """Multiply-adds of one forward pass if masked weights were skipped.

    The dense count comes from ``torch.utils.flop_counter`` (conv and linear layers). Each conv
    weight is used once per output position, so a conv layer skips
    ``#masked weights x H_out x W_out`` multiply-adds. Returns ``{"total", "total_dense",
    "conv0", ...}`` (per-layer entries: the remaining multiply-adds of that conv). Zeros that
    masking does not name (e.g. inputs from removed filters) are not subtracted: this is what
    a sparse kernel that skips masked weights would save, not what a dense kernel does.
    """
    dense = count_multiply_adds(model, input_size)
    positions = output_positions(model, input_size)
    counts = {"total": dense, "total_dense": dense}
    for name, mask in layer_masks(model).items():
        kept = int(mask.sum()) * positions[name]
        counts["total"] -= mask.numel() * positions[name] - kept
        counts[name] = kept
    return counts


def output_positions(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> dict[str, int]:
    """Per conv layer, how many output positions (images x H_out x W_out) one forward pass of a batch
    of ``input_size`` computes: each weight is used once per position."""
    positions: dict[str, int] = {}
    hooks = [conv.register_forward_hook(lambda m, i, o, name=name: positions.__setitem__(name, o[:, 0].numel()))
             for name, conv in conv_layers(model).items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return positions


def layer_table(model: nn.Module) -> pd.DataFrame:
    """Per conv layer: shape, remaining parameters (weights and bias) and multiply-adds of one 32x32 image."""
    macs = count_multiply_adds_masked(model)
    params = count_remaining_parameters(model)
    return pd.DataFrame([
        {"layer": name, "in_channels": conv.in_channels, "out_channels": conv.out_channels,
         "parameters": params[name], "multiply_adds": macs[name]}
        for name, conv in conv_layers(model).items()
    ])
