"""Magnitude criteria: a conv weight in, a keep-mask out. Pure functions, no model involved.

A *criterion* is ``weight -> BoolTensor mask`` (True = kept), as ``compute_mask`` in
``torch.nn.utils.prune``. Applying masks to a model lives in :mod:`pruning_utils.masks`.

Granularities (``sparsity = #removed units / #units``; ``round(sparsity * #units)`` are removed):

- ``fine-grained``: unit = one weight, score ``|w|``.
- ``kernel``: unit = one k x k kernel ``W[o, i]``, score ``||W[o, i]||_F`` (``||.||_1`` with ``norm=1``).
- ``filter``: unit = one output filter ``W[o]``, score ``||vec(W[o])||_F`` (``||.||_1`` with ``norm=1``).

Units with the smallest scores are removed; ties are broken by position (the lower flat index is
removed first), so masks are deterministic. ``norm="random"`` scores units with uniform noise
from a seeded generator: the control that asks whether magnitude matters at all.
``norm="taylor"`` scores units by a given per-weight ``importance`` (the first-order Taylor
estimate ``|w * dL/dw|`` summed over batches, :mod:`pruning_utils.importance`), summed per unit:
the loss-aware alternative to magnitude. A sparsity that would remove every unit of a weight is
refused: a layer always keeps at least one unit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch

from .model import CONV_NAMES

STRATEGIES: tuple[str, ...] = ("fine-grained", "kernel", "filter")
NORMS: tuple[int | str, ...] = (2, 1, "random", "taylor")
Norm = Literal[1, 2, "random", "taylor"]


def check_strategy(strategy: str) -> None:
    """ValueError unless ``strategy`` is one of :data:`STRATEGIES`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")


def check_sparsity(sparsity: float) -> None:
    """ValueError unless ``sparsity`` is a real number in ``[0, 1)``."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")


def check_sparsities(sparsities: Mapping[str, float]) -> None:
    """KeyError for a layer name outside ``conv0`` ... ``conv11``; ValueError for a bad sparsity."""
    unknown = sorted(set(sparsities) - set(CONV_NAMES))
    if unknown:
        raise KeyError(f"unknown layer(s) {', '.join(map(repr, unknown))}; valid layers: {', '.join(CONV_NAMES)}")
    for name, sparsity in sparsities.items():
        try:
            check_sparsity(sparsity)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None


def check_norm(norm: object) -> None:
    """ValueError unless ``norm`` is one of :data:`NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid norms: {', '.join(map(repr, NORMS))}")


def units_removed(sparsity: float, n_units: int) -> int:
    """``round(sparsity * n_units)``: how many units a sparsity removes (Python's round, half to even).

    Raises ValueError when that is every unit: at least one unit must stay.
    """
    check_sparsity(sparsity)
    n_remove = round(sparsity * n_units)
    if n_remove >= n_units > 0:
        largest = (n_units - 0.5) / n_units
        raise ValueError(
            f"sparsity {sparsity!r} removes all {n_units} units (round({sparsity} * {n_units}) = {n_remove}); "
            f"at least one unit must stay, so the sparsity must be below {largest:.4f} here"
        )
    return n_remove


def unit_scores(
    weight: torch.Tensor, strategy: str, norm: Norm = 2, generator: torch.Generator | None = None,
    importance: torch.Tensor | None = None,
) -> torch.Tensor:
    """One importance score per pruning unit, in the unit's natural shape.

    Returns ``|W|`` (shape of ``weight``) for fine-grained, the per-kernel norm
    (``[C_out, C_in]``) for kernel and the per-filter norm (``[C_out]``) for filter; with
    ``norm="taylor"``, ``importance`` (shape of ``weight``) summed over each unit instead.
    """
    check_strategy(strategy)
    check_norm(norm)
    if (norm == "taylor") != (importance is not None):
        raise ValueError("norm='taylor' needs a per-weight importance tensor, and only it takes one")
    if importance is not None and importance.shape != weight.shape:
        raise ValueError(f"importance has shape {tuple(importance.shape)}, the weight {tuple(weight.shape)}")
    if strategy != "fine-grained" and weight.dim() != 4:
        raise ValueError(
            f"{strategy} pruning needs a 4-D conv weight [C_out, C_in, k, k], got shape {tuple(weight.shape)}"
        )
    w = weight.detach().float()
    unit_shape = {"fine-grained": w.shape, "kernel": w.shape[:2], "filter": w.shape[:1]}[strategy]
    if norm == "random":
        return torch.rand(unit_shape, generator=generator, device="cpu").to(w.device)
    if norm == "taylor":
        t = importance.detach().float().to(w.device)
        return t if strategy == "fine-grained" else (t.flatten(2) if strategy == "kernel" else t.flatten(1)).sum(-1)
    if strategy == "fine-grained":
        return w.abs()
    flat = w.flatten(2) if strategy == "kernel" else w.flatten(1)
    return torch.linalg.vector_norm(flat, ord=norm, dim=-1)


def keep_highest(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool mask over ``scores``: False for the ``round(sparsity * n)`` lowest (ties: lower index first).

    ``-inf`` scores go first, which is how units already removed stay removed.
    """
    n = scores.numel()
    n_remove = units_removed(sparsity, n)
    keep = torch.ones(n, dtype=torch.bool, device=scores.device)
    if n_remove > 0:
        order = torch.argsort(scores.flatten(), stable=True)
        keep[order[:n_remove]] = False
    return keep.view(scores.shape)


def expand_to_weight(unit_mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A per-unit mask (shape of :func:`unit_scores`) broadcast to the weight's shape."""
    while unit_mask.dim() < weight.dim():
        unit_mask = unit_mask.unsqueeze(-1)
    return unit_mask.expand_as(weight).clone()


def removed_units(weight_mask: torch.Tensor, strategy: str) -> torch.Tensor:
    """Units (in :func:`unit_scores`' shape) whose weights are all masked (False) in ``weight_mask``."""
    check_strategy(strategy)
    gone = ~weight_mask.bool()
    return {"fine-grained": gone, "kernel": gone.flatten(2).all(-1), "filter": gone.flatten(1).all(-1)}[strategy]


def make_mask(
    weight: torch.Tensor,
    sparsity: float,
    strategy: str,
    *,
    norm: Norm = 2,
    generator: torch.Generator | None = None,
    current: torch.Tensor | None = None,
    importance: torch.Tensor | None = None,
) -> torch.Tensor:
    """Keep-mask (``True`` = kept) of the same shape as ``weight``; see the module docstring.

    With ``current`` (a keep-mask already on this weight), units it removed stay removed and
    count towards the ``round(sparsity * n)`` removed in total; the rest are scored on
    ``weight * current``. Raises ``ValueError`` for an unknown strategy or norm, a sparsity
    outside ``[0, 1)`` or one that removes every unit, fewer units than ``current`` already
    removed, or a weight that is not 4-D for kernel or filter pruning.
    """
    check_sparsity(sparsity)
    effective = weight if current is None else weight * current
    if importance is not None and current is not None:
        importance = importance * current
    scores = unit_scores(effective, strategy, norm, generator, importance)
    if current is not None:
        gone = removed_units(current, strategy)
        target = round(sparsity * scores.numel())
        if int(gone.sum()) > target:
            raise ValueError(
                f"{int(gone.sum())} units are already removed, more than sparsity {sparsity} removes "
                f"({target}); sparsities can only grow"
            )
        scores = scores.masked_fill(gone, -math.inf)
    keep = expand_to_weight(keep_highest(scores, sparsity), weight)
    return keep if current is None else keep & current.bool()
