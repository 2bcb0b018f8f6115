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

:func:`latency_table` times models on this machine and lists their sizes beside the timings.
:func:`copy_model` is ``copy.deepcopy`` that also works on a model pruned a moment ago.
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .model import VGG16, batchnorm_after, conv_layers, count_multiply_adds
from .pruners import count_multiply_adds_masked, count_remaining_parameters, make_permanent

LATENCY_COLUMNS = [
    "model", "batch_size", "median_ms", "images_per_s",
    "parameters", "multiply_adds", "masked_multiply_adds", "file_size_bytes",
]


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


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works right after pruning.

    ``torch.nn.utils.prune`` stores ``weight = weight_orig * weight_mask`` as a plain attribute;
    until a forward pass under ``no_grad`` refreshes it, that tensor has a ``grad_fn`` and
    ``deepcopy`` refuses it. Such attributes are copied detached (the hook recomputes them on
    the next forward anyway); ``model`` itself is not touched.
    """
    memo: dict[int, object] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


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


def _validate_positive_ints(name: str, values: Sequence[int], minimum: int) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be integers >= {minimum}, got {value!r}")


def _file_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(state_dict)`` after folding the masks in (a temporary file)."""
    state = make_permanent(copy_model(model)).state_dict()
    handle, path = tempfile.mkstemp(suffix=".pt")
    os.close(handle)
    try:
        torch.save(state, path)
        return os.path.getsize(path)
    finally:
        os.remove(path)


@torch.inference_mode()
def _median_seconds(model: nn.Module, batch_size: int, repeats: int, warmup: int) -> float:
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, 32, 32, generator=generator).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        model(x)
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def latency_table(
    models: Mapping[str, nn.Module],
    batch_sizes: Sequence[int] = (1, 256),
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> pd.DataFrame:
    """Inference time and size of each model, one row per (model, batch size).

    Each model is timed as a copy with its masks folded in (``make_permanent``: a masked model
    runs the dense kernels; the prune hook's per-call ``weight_orig * weight_mask`` is not
    timed), in eval mode, fp32, channels_last, under ``torch.inference_mode``, on random
    inputs on the model's device. ``warmup`` untimed passes, then ``repeats`` timed ones;
    ``median_ms`` is their median and ``images_per_s = batch_size / median``. ``threads`` sets
    ``torch.set_num_threads`` during the measurement (restored afterwards).

    Size columns (per model, repeated on each row): ``parameters`` = unmasked parameters
    (``count_remaining_parameters(model)["total"]``); ``multiply_adds`` = dense multiply-adds
    of one 32x32 image with the module's actual shapes (``torch.utils.flop_counter``);
    ``masked_multiply_adds`` = what a kernel skipping masked weights would do
    (``count_multiply_adds_masked(model)["total"]``); ``file_size_bytes`` = size of
    ``torch.save(state_dict)`` with masks folded in (masked zeros still take space).
    """
    if not models:
        raise ValueError("models must name at least one model")
    if not batch_sizes:
        raise ValueError("batch_sizes must hold at least one batch size")
    _validate_positive_ints("batch_sizes", batch_sizes, 1)
    _validate_positive_ints("repeats", [repeats], 1)
    _validate_positive_ints("warmup", [warmup], 0)
    if threads is not None:
        _validate_positive_ints("threads", [threads], 1)
    saved_threads = torch.get_num_threads()
    rows = []
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for name, model in models.items():
            sizes = {
                "parameters": count_remaining_parameters(model)["total"],
                "multiply_adds": count_multiply_adds(model),
                "masked_multiply_adds": count_multiply_adds_masked(model)["total"],
                "file_size_bytes": _file_size(model),
            }
            timed = make_permanent(copy_model(model)).float().eval().to(memory_format=torch.channels_last)
            for batch_size in batch_sizes:
                seconds = _median_seconds(timed, batch_size, repeats, warmup)
                rows.append({"model": name, "batch_size": batch_size, "median_ms": 1000 * seconds,
                             "images_per_s": batch_size / seconds, **sizes})
    finally:
        torch.set_num_threads(saved_threads)
    return pd.DataFrame(rows, columns=LATENCY_COLUMNS)
