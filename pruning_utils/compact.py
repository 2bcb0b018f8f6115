"""Physically smaller networks from filter-pruned ones, and what they cost to run.

Masking a filter leaves a dense kernel that still computes a channel of zeros. :func:`compact`
removes such channels for real: it builds a new, plain (mask-free) VGG16 in which every *dead*
output channel of a conv layer is gone, together with its conv bias, its BatchNorm entries, the
matching input channels of the next conv and, after the last conv, the matching inputs of
``classifier.fc0``.

A channel ``o`` of conv layer ``l`` is dead when its output after ``BatchNorm -> ReLU`` is
identically zero in eval mode, which we decide from the parameters alone:

- its filter's weights on the live input channels are all zero (``W[o, live_in] == 0``), so the
  conv emits the constant ``b[o]``, and
- the post-BatchNorm constant is not positive::

      c[o] = beta[o] + gamma[o] * (b[o] - running_mean[o]) / sqrt(running_var[o] + eps) <= 0

  so ReLU outputs 0 everywhere (max-pooling zeros keeps zeros).

This covers filters pruned with ``remove_filter_outputs=True`` (weights, bias, ``gamma`` and
``beta`` masked: ``c = 0``), channels that ReLU kills, and filters that only read dead channels.
A zero-weight channel with ``c > 0`` emits a positive constant; because the next conv pads with
zeros its contribution is not a constant bias, so such channels are kept (filters pruned with
``remove_filter_outputs=False`` emit ``relu(c)``: they go only where ``c <= 0``). Zeros inside kept filters
(fine-grained or kernel masks) stay as zeros in dense tensors: only whole dead channels go, and
the compacted model carries no masks, so further training would regrow those zeros. Every layer
keeps at least one channel. In eval mode the compacted model computes the same function as the
masked one (up to float rounding).

:func:`effective_counts` counts what a compacted model keeps, from the masks; :func:`sizes` puts it
beside the masked counts. :mod:`pruning_utils.latency` times the results.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .counting import conv_weights_kept_pct, count_multiply_adds_masked, output_positions, params_kept_pct
from .masks import copy_model, layer_masks, make_permanent
from .model import VGG16, batchnorm_after, conv_layers, count_multiply_adds, count_parameters


def _dead_outputs(conv: nn.Conv2d, bn: nn.BatchNorm2d, live_in: torch.Tensor) -> torch.Tensor:
    """Bool per output channel of ``conv``: True where ``relu(bn(conv(x)))`` is identically 0
    for inputs that are zero outside the channels ``live_in`` (see the module docstring)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("compact needs BatchNorm running statistics (track_running_stats=True)")
    weight = conv.weight[:, live_in]
    zero_filter = (weight.flatten(1) == 0).all(dim=1)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    constant = (bias - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    if bn.affine:
        constant = bn.bias + bn.weight * constant
    return zero_filter & (constant <= 0)


def _sliced_conv(conv: nn.Conv2d, keep_in: torch.Tensor, keep_out: torch.Tensor) -> nn.Conv2d:
    new = nn.Conv2d(
        len(keep_in), len(keep_out), conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    new.weight.data = conv.weight.data[keep_out][:, keep_in].clone()
    if conv.bias is not None:
        new.bias.data = conv.bias.data[keep_out].clone()
    return new


def _sliced_batchnorm(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(
        len(keep), eps=bn.eps, momentum=bn.momentum, affine=bn.affine, track_running_stats=bn.track_running_stats
    ).to(device=bn.running_mean.device, dtype=bn.running_mean.dtype)
    if bn.affine:
        new.weight.data = bn.weight.data[keep].clone()
        new.bias.data = bn.bias.data[keep].clone()
    new.running_mean.data = bn.running_mean.data[keep].clone()
    new.running_var.data = bn.running_var.data[keep].clone()
    new.num_batches_tracked.data = bn.num_batches_tracked.data.clone()
    return new


def _sliced_linear_inputs(linear: nn.Linear, columns: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(columns), linear.out_features, bias=linear.bias is not None).to(
        device=linear.weight.device, dtype=linear.weight.dtype
    )
    new.weight.data = linear.weight.data[:, columns].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data.clone()
    return new


def _plain_copy(model: VGG16) -> VGG16:
    if not isinstance(model, VGG16):
        raise TypeError(f"compact works on pruning_utils.model.VGG16 models, got {type(model).__name__}")
    return make_permanent(copy_model(model))


def _kept_in_plain(plain: VGG16) -> dict[str, torch.Tensor]:
    bns = batchnorm_after(plain)
    live = torch.arange(conv_layers(plain)["conv0"].in_channels, device=next(plain.parameters()).device)
    kept = {}
    for name, conv in conv_layers(plain).items():
        keep = (~_dead_outputs(conv, bns[name], live)).nonzero().flatten()
        if len(keep) == 0:
            keep = torch.zeros(1, dtype=torch.long, device=live.device)
        kept[name] = live = keep
    return kept


@torch.no_grad()
def kept_channels(model: VGG16) -> dict[str, torch.Tensor]:
    """Indices of the output channels of each conv layer that :func:`compact` keeps.

    Reads the effective parameters (``weight_orig * weight_mask`` where masked). Layers are
    visited in forward order, so a filter whose weights are zero except on channels already
    found dead is dead too. Every layer keeps at least one channel (channel 0 if all are dead).
    """
    return _kept_in_plain(_plain_copy(model))


@torch.no_grad()
def compact(model: VGG16) -> VGG16:
    """A new, smaller, mask-free VGG16 without the dead channels of ``model`` (see the module docstring).

    ``model`` may carry prune masks or be permanent; it is not modified. The result keeps the
    module names (``features.conv0`` ... ``classifier.fc0``), so :func:`conv_layers` and
    :func:`batchnorm_after` work on it, and keeps ``model``'s train/eval mode. Its conv layers
    have uneven channel counts, so it cannot be rebuilt from ``width`` (``runs.load_model``);
    save its ``state_dict`` or the whole module instead.
    """
    plain = _plain_copy(model)
    kept = _kept_in_plain(plain)
    convs, bns = conv_layers(plain), batchnorm_after(plain)
    keep_in = torch.arange(convs["conv0"].in_channels, device=next(plain.parameters()).device)
    for name, conv in convs.items():
        keep_out = kept[name]
        setattr(plain.features, name, _sliced_conv(conv, keep_in, keep_out))
        setattr(plain.features, name.replace("conv", "bn"), _sliced_batchnorm(bns[name], keep_out))
        keep_in = keep_out
    last = list(convs.values())[-1]
    fc0 = plain.classifier.fc0
    if fc0.in_features % last.out_channels:
        raise ValueError(
            f"classifier.fc0 has {fc0.in_features} inputs, not a multiple of the last conv's "
            f"{last.out_channels} channels"
        )
    area = fc0.in_features // last.out_channels  # flattened C x H x W: channel c -> area consecutive inputs
    columns = (keep_in[:, None] * area + torch.arange(area, device=keep_in.device)).flatten()
    plain.classifier.fc0 = _sliced_linear_inputs(fc0, columns)
    return plain


@torch.no_grad()
def effective_counts(model: VGG16, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> dict[str, int]:
    """What ``model`` physically keeps once compacted, counted from its masks.

    A conv weight counts when its mask keeps it, its output channel is kept (:func:`kept_channels`)
    and so is the input channel it reads: a removed filter takes the next layer's input channel
    with it, and the last conv's removed channels take their inputs of ``classifier.fc0``. Zeros
    inside kept filters (fine-grained, kernel masks) do not count, as in the masked counts of
    :mod:`pruning_utils.counting` (:func:`compact` stores them as dense zeros).

    Returns ``conv_weights``, ``parameters`` (weights, biases, BatchNorm scales and shifts) and
    ``multiply_adds`` (one forward pass of a batch of ``input_size``), each beside its ``*_dense``
    count, and per conv layer (``conv0`` ...) its effective weights. For a filter-pruned model these
    are the compacted model's parameter count and ``torch.utils.flop_counter`` count.
    """
    kept, masks, positions = kept_channels(model), layer_masks(model), output_positions(model, input_size)
    bns = batchnorm_after(model)
    params, macs = count_parameters(model), count_multiply_adds(model, input_size)
    counts = {"conv_weights": 0, "conv_weights_dense": 0, "parameters_dense": params, "multiply_adds_dense": macs}
    live_in = torch.arange(masks["conv0"].shape[1], device=masks["conv0"].device)
    for name, conv in conv_layers(model).items():
        weights = int(masks[name][kept[name]][:, live_in].sum())
        gone = conv.out_channels - len(kept[name])
        params -= conv.weight.numel() - weights + gone * ((conv.bias is not None) + 2 * bns[name].affine)
        macs -= (conv.weight.numel() - weights) * positions[name]
        counts[name] = weights
        counts["conv_weights"] += weights
        counts["conv_weights_dense"] += conv.weight.numel()
        live_in = kept[name]
    fc0 = model.classifier.fc0
    removed_inputs = fc0.in_features // conv.out_channels * (conv.out_channels - len(live_in))
    params -= removed_inputs * fc0.out_features
    macs -= removed_inputs * fc0.out_features * input_size[0]
    return {**counts, "parameters": params, "multiply_adds": macs}


def sizes(models: dict[str, VGG16]) -> pd.DataFrame:
    """Per model, % of the dense model's conv weights, parameters and multiply-adds left: *masked*
    (what the masks keep, Table 2's columns, :mod:`pruning_utils.counting`) beside *effective* (what
    the compacted model keeps, :func:`effective_counts`)."""
    rows = {}
    for name, model in models.items():
        effective, masked_macs = effective_counts(model), count_multiply_adds_masked(model)
        rows[name] = {
            "conv weights, masked %": conv_weights_kept_pct(model),
            "conv weights, effective %": 100 * effective["conv_weights"] / effective["conv_weights_dense"],
            "parameters, masked %": params_kept_pct(model),
            "parameters, effective %": 100 * effective["parameters"] / effective["parameters_dense"],
            "multiply-adds, masked %": 100 * masked_macs["total"] / masked_macs["total_dense"],
            "multiply-adds, effective %": 100 * effective["multiply_adds"] / effective["multiply_adds_dense"]}
    return pd.DataFrame.from_dict(rows, orient="index")


@torch.no_grad()
def compaction_error(masked: nn.Module, compacted: nn.Module, x: torch.Tensor) -> dict:
    """Largest absolute difference of the logits of a masked model and its compacted version on
    float images ``x`` (eval mode, fp32), and whether their predictions agree."""
    a, b = masked.eval()(x), compacted.eval()(x)
    return {"images": len(x), "max_abs_logit_difference": float((a - b).abs().max()),
            "same_predictions": bool(torch.equal(a.argmax(1), b.argmax(1)))}
