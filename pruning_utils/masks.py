"""Applying keep-masks to a model: the one place that decides what a pruned unit takes with it.

Masks are held by ``torch.nn.utils.prune`` (``weight = weight_orig * weight_mask``, recomputed
before every forward pass), so they stay enforced through fine-tuning.

What a layer's weight mask implies (:func:`mask_targets`), written once and used by
:func:`prune_model` (masks attached for good) and by the sensitivity scan (values swapped in for
a moment): the conv weight gets the mask; with ``remove_filter_outputs=True`` a filter left with
no weight, whichever strategy emptied it, also masks its conv bias and the scale and shift of the
BatchNorm after it (:func:`pruning_utils.model.batchnorm_after`), so the channel outputs exactly
zero. Filter pruning removes whole filters; kernel and fine-grained pruning empty a filter when all
its kernels or weights fall below the threshold (conv0 has only 3 kernels per filter). Kept, such
a filter's bias is a constant channel that BatchNorm divides by a near-zero running variance: its
eval-mode output then swings with every small drift of the bias during fine-tuning.
``remove_filter_outputs=False`` keeps the original report's behaviour (bias and BatchNorm
untouched: the "pruned" channel still emits a constant).

Every key of a pruned result includes :func:`mask_inputs` (the rule above), so results made
under another rule are never reused.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from .criteria import Norm, check_sparsities, check_strategy, make_mask
from .model import VGG16, batchnorm_after, conv_layers

MaskTargets = dict[tuple[nn.Module, str], torch.Tensor]  # (module, parameter name) -> keep-mask


def mask_targets(
    model: VGG16, layer: str, weight_mask: torch.Tensor, strategy: str, remove_filter_outputs: bool = True
) -> MaskTargets:
    """Every parameter a weight mask of conv layer ``layer`` masks, with its mask (see module docstring)."""
    check_strategy(strategy)
    conv = conv_layers(model)[layer]
    targets: MaskTargets = {(conv, "weight"): weight_mask.bool()}
    if remove_filter_outputs:
        alive = weight_mask.bool().flatten(1).any(dim=1)
        bn = batchnorm_after(model)[layer]
        if conv.bias is not None:
            targets[(conv, "bias")] = alive
        if bn.affine:
            targets[(bn, "weight")] = alive
            targets[(bn, "bias")] = alive
    return targets


def mask_inputs(strategy: str) -> dict:
    """What the key of a result pruned by ``strategy`` (outputs removed) records about the rule of
    :func:`mask_targets`: nothing for filter pruning (its rule has not changed since its results
    were first made), the emptied-filter rule (introduced 2026-11-29) for kernel and fine-grained."""
    check_strategy(strategy)
    return {} if strategy == "filter" else {"emptied_filters": "removed"}


def current_mask(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """The keep-mask ``torch.nn.utils.prune`` holds for ``module.<name>``, or None."""
    mask = getattr(module, f"{name}_mask", None)
    return None if mask is None else mask.bool()


def effective_weight(conv: nn.Module) -> torch.Tensor:
    """The weight a forward pass uses: ``weight_orig * weight_mask`` where masked, else ``weight``."""
    mask = current_mask(conv)
    return (conv.weight_orig * mask if mask is not None else conv.weight).detach()


def apply_masks(targets: MaskTargets) -> None:
    """Attach each mask through ``torch.nn.utils.prune`` (an existing mask is combined with it)."""
    for (module, name), mask in targets.items():
        prune.custom_from_mask(module, name, mask.to(getattr(module, name).device))


def prune_model(
    model: VGG16,
    sparsities: Mapping[str, float],
    strategy: str,
    *,
    norm: Norm = 2,
    remove_filter_outputs: bool = True,
    generator: torch.Generator | None = None,
    importance: Mapping[str, torch.Tensor] | None = None,
) -> VGG16:
    """Prune ``model``'s conv layers in place to the given sparsities and return it.

    ``sparsities`` maps ``conv0`` ... ``conv11`` (any subset) to a sparsity in ``[0, 1)``: the
    *total* fraction of units removed in that layer. On a layer already pruned, units removed
    before stay removed and count towards the total (iterative pruning calls this once per
    round with growing sparsities); the others are scored on the effective weight (or, with
    ``norm="taylor"``, on ``importance[layer]``).
    """
    check_strategy(strategy)
    check_sparsities(sparsities)
    convs = conv_layers(model)
    masks = {}
    for name, sparsity in sparsities.items():  # every mask first: a refused layer leaves the model untouched
        conv = convs[name]
        try:
            masks[name] = make_mask(effective_weight(conv), sparsity, strategy, norm=norm, generator=generator,
                                    current=current_mask(conv),
                                    importance=None if importance is None else importance[name])
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    for name, mask in masks.items():
        apply_masks(mask_targets(model, name, mask, strategy, remove_filter_outputs))
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every mask into its parameter (``prune.remove``): zeros stay, masks go."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return model


def masked_parameters(model: nn.Module) -> list[tuple[str, str]]:
    """(module name, parameter name) of every parameter carrying a ``torch.nn.utils.prune`` mask."""
    found = []
    for module_name, module in model.named_modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                found.append((module_name, hook._tensor_name))
    return found


def layer_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Keep-mask of each conv weight (all True where a layer is not pruned)."""
    return {
        name: current_mask(conv) if current_mask(conv) is not None else torch.ones_like(conv.weight, dtype=torch.bool)
        for name, conv in conv_layers(model).items()
    }


def conv_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Effective weight of each conv layer on the CPU (masked entries are zero)."""
    return {name: effective_weight(conv).cpu() for name, conv in conv_layers(model).items()}


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
