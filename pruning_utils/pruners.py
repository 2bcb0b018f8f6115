"""Magnitude pruning of conv weights at three granularities, and counting what is left.

A *criterion* is a pure function ``weight -> BoolTensor mask`` (True = kept), as in
``torch.nn.utils.prune``'s ``compute_mask``. Applying masks to a model is written once, with
``torch.nn.utils.prune.custom_from_mask``, so masks stay enforced through fine-tuning
(``weight = weight_orig * weight_mask`` is recomputed before every forward pass).

Granularities (``sparsity = #removed units / #units``, ``round(sparsity * #units)`` removed):

- ``fine-grained``: unit = one weight, score ``|w|``.
- ``kernel``: unit = one k x k kernel ``W[o, i]``, score ``||W[o, i]||_F`` (``||.||_1`` with ``norm=1``).
- ``filter``: unit = one output filter ``W[o]``, score ``||vec(W[o])||_F`` (``||.||_1`` with ``norm=1``).

Units with the smallest scores are removed; ties are broken by position (the lower flat index is
removed first), so masks are deterministic. ``norm="random"`` scores units with uniform noise
from a seeded generator: the control that asks whether magnitude matters at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import prune

from .model import CONV_NAMES, conv_layers

STRATEGIES: tuple[str, ...] = ("fine-grained", "kernel", "filter")
NORMS: tuple[int | str, ...] = (2, 1, "random")
Norm = Literal[1, 2, "random"]


def _validate_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")


def _validate_sparsity(sparsity: float) -> None:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")


def _validate_norm(norm: object) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid norms: {', '.join(map(repr, NORMS))}")


def unit_scores(
    weight: torch.Tensor, strategy: str, norm: Norm = 2, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One importance score per pruning unit, in the unit's natural shape.

    Returns ``|W|`` (shape of ``weight``) for fine-grained, the per-kernel norm
    (``[C_out, C_in]``) for kernel and the per-filter norm (``[C_out]``) for filter.
    """
    _validate_strategy(strategy)
    _validate_norm(norm)
    if strategy != "fine-grained" and weight.dim() != 4:
        raise ValueError(
            f"{strategy} pruning needs a 4-D conv weight [C_out, C_in, k, k], got shape {tuple(weight.shape)}"
        )
    w = weight.detach().float()
    unit_shape = {"fine-grained": w.shape, "kernel": w.shape[:2], "filter": w.shape[:1]}[strategy]
    if norm == "random":
        return torch.rand(unit_shape, generator=generator, device="cpu").to(w.device)
    if strategy == "fine-grained":
        return w.abs()
    flat = w.flatten(2) if strategy == "kernel" else w.flatten(1)
    return torch.linalg.vector_norm(flat, ord=norm, dim=-1)


def _keep_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask over ``scores``: False for the ``round(sparsity * n)`` lowest scores (ties: lower index first)."""
    n = scores.numel()
    n_remove = round(sparsity * n)
    keep = torch.ones(n, dtype=torch.bool, device=scores.device)
    if n_remove > 0:
        order = torch.argsort(scores.flatten(), stable=True)
        keep[order[:n_remove]] = False
    return keep.view(scores.shape)


def make_mask(
    weight: torch.Tensor,
    sparsity: float,
    strategy: str,
    *,
    norm: Norm = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Keep-mask (``True`` = kept) of the same shape as ``weight``; see the module docstring.

    Raises ``ValueError`` for an unknown strategy or norm, a sparsity outside ``[0, 1)``, or a
    weight that is not 4-D for kernel or filter pruning.
    """
    _validate_sparsity(sparsity)
    scores = unit_scores(weight, strategy, norm, generator)
    keep = _keep_mask(scores, sparsity)
    while keep.dim() < weight.dim():
        keep = keep.unsqueeze(-1)
    return keep.expand_as(weight).clone()


def _validate_sparsities(sparsities: Mapping[str, float]) -> None:
    unknown = sorted(set(sparsities) - set(CONV_NAMES))
    if unknown:
        raise KeyError(f"unknown layer(s) {', '.join(map(repr, unknown))}; valid layers: {', '.join(CONV_NAMES)}")
    for name, sparsity in sparsities.items():
        try:
            _validate_sparsity(sparsity)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None


def _set_mask(module: nn.Module, name: str, mask: torch.Tensor) -> None:
    """Attach (or tighten) a mask on ``module.<name>`` through ``torch.nn.utils.prune``."""
    prune.custom_from_mask(module, name, mask.to(getattr(module, name).device))


def prune_model(
    model: nn.Module,
    sparsities: Mapping[str, float],
    strategy: str,
    *,
    norm: Norm = 2,
    remove_filter_outputs: bool = True,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Prune ``model``'s conv layers in place, one sparsity per layer, and return it.

    ``sparsities`` maps ``conv0`` ... ``conv11`` (any subset) to a sparsity in ``[0, 1)``.
    Masks are held by ``torch.nn.utils.prune`` and stay enforced while fine-tuning; pruning an
    already pruned layer combines the masks. With ``strategy="filter"`` and
    ``remove_filter_outputs=True`` a removed filter also has its conv bias and its BatchNorm
    scale and shift masked, so the channel outputs exactly zero; ``False`` keeps the original
    report's behaviour (bias and BatchNorm untouched: the "pruned" channel still emits a constant).
    """
    _validate_strategy(strategy)
    _validate_sparsities(sparsities)
    convs = conv_layers(model)
    modules = dict(model.named_modules())
    for name, sparsity in sparsities.items():
        conv = convs[name]
        mask = make_mask(conv.weight, sparsity, strategy, norm=norm, generator=generator)
        _set_mask(conv, "weight", mask)
        if strategy == "filter" and remove_filter_outputs:
            alive = mask.flatten(1).any(dim=1)
            if conv.bias is not None:
                _set_mask(conv, "bias", alive)
            bn = modules.get(_bn_name_for(model, conv))
            if isinstance(bn, nn.BatchNorm2d) and bn.affine:
                _set_mask(bn, "weight", alive)
                _set_mask(bn, "bias", alive)
    return model


def _bn_name_for(model: nn.Module, conv: nn.Conv2d) -> str:
    """Qualified name of the BatchNorm2d that directly follows ``conv`` in ``model``, or ''."""
    previous = None
    for name, module in model.named_modules():
        if previous is conv and isinstance(module, nn.BatchNorm2d):
            return name
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            previous = module
    return ""


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every mask into its parameter (``prune.remove``): zeros stay, masks go."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return model


def is_pruned(model: nn.Module) -> bool:
    """Whether any module of ``model`` carries a ``torch.nn.utils.prune`` mask."""
    return prune.is_pruned(model)


def layer_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Keep-mask of each conv weight (all True where a layer is not pruned)."""
    return {
        name: getattr(conv, "weight_mask", torch.ones_like(conv.weight)).bool()
        for name, conv in conv_layers(model).items()
    }


def _remaining(tensor: torch.Tensor, mask: torch.Tensor | None) -> int:
    return int(mask.sum()) if mask is not None else tensor.numel()


def count_remaining_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters that remain after masking.

    Returns ``{"total": ..., "total_dense": ..., "conv": ..., "conv_dense": ..., "conv0": ..., ...}``
    where conv counts cover conv weights and biases only, and per-layer entries count the
    remaining weights and bias of that conv layer. A masked parameter contributes its mask's
    ``True`` count; an unmasked parameter counts in full.
    """
    counts: dict[str, int] = {"total": 0, "total_dense": 0, "conv": 0, "conv_dense": 0}
    conv_ids = {id(c): n for n, c in conv_layers(model).items()}
    for module in model.modules():
        for pname, tensor in _own_parameters(module):
            left = _remaining(tensor, getattr(module, f"{pname}_mask", None))
            counts["total"] += left
            counts["total_dense"] += tensor.numel()
            if id(module) in conv_ids:
                counts["conv"] += left
                counts["conv_dense"] += tensor.numel()
                layer = conv_ids[id(module)]
                counts[layer] = counts.get(layer, 0) + left
    return counts


def _own_parameters(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) for a module's own parameters, reporting pruned ones under their plain name."""
    return [(n.removesuffix("_orig"), p) for n, p in module.named_parameters(recurse=False)]


def count_multiply_adds_masked(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> dict[str, int]:
    """Multiply-adds of one forward pass if masked weights were skipped.

    The dense count comes from ``torch.utils.flop_counter`` (conv and linear layers). Each conv
    weight is used once per output position, so a conv layer skips
    ``#masked weights x H_out x W_out`` multiply-adds. Returns ``{"total", "total_dense",
    "conv0", ...}`` (per-layer entries: the remaining multiply-adds of that conv). Zeros that
    masking does not name (e.g. inputs from removed filters) are not subtracted: this is what
    a sparse kernel that skips masked weights would save, not what a dense kernel does.
    """
    from .model import count_multiply_adds

    dense = count_multiply_adds(model, input_size)
    positions: dict[str, int] = {}
    hooks = [
        conv.register_forward_hook(lambda m, i, o, name=name: positions.__setitem__(name, o.shape[-2] * o.shape[-1]))
        for name, conv in conv_layers(model).items()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    counts = {"total": dense, "total_dense": dense}
    for name, mask in layer_masks(model).items():
        kept = int(mask.sum()) * positions[name] * input_size[0]
        counts["total"] -= mask.numel() * positions[name] * input_size[0] - kept
        counts[name] = kept
    return counts
