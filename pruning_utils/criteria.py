"""Pruning criteria: a conv weight in, a keep-mask out. Pure functions, no model involved.

A *criterion* scores pruning units; :func:`make_mask` turns the scores into a keep-mask (True =
kept), as ``compute_mask`` in ``torch.nn.utils.prune``; :mod:`pruning_utils.masks` applies masks.
Granularities: ``fine-grained`` (unit = one weight ``w``), ``kernel`` (one k x k kernel ``W[o, i]``),
``filter`` (one output filter ``W[o]``); ``sparsity = #removed units / #units``, and
``round(sparsity * #units)`` units with the smallest scores are removed, ties by position (the lower
flat index first), so masks are deterministic. A sparsity that removes every unit is refused.

Criteria (:data:`CRITERIA`, in the order the study compares them), the score of a unit ``u``:
``L2`` ``||vec(W_u)||_2`` (the original's), ``L1`` ``||vec(W_u)||_1`` (both ``|w|`` for one weight),
``random`` uniform noise from the seeded ``context.generator`` (does magnitude matter at all?),
``Taylor`` ``context.importance`` summed over ``u``: the first-order Taylor estimate ``|w * dL/dw|``
summed over batches (:mod:`pruning_utils.importance`), the loss-aware alternative.

Adding a criterion is one function here; the study's comparison
(:func:`pruning_utils.experiments.criteria`) runs every registered one::

    @register("Linf")
    def linf(weight, strategy, context):  # max |w| over the unit
        return unit_rows(weight, strategy).abs().amax(-1)

It takes the fp32 weight, the granularity and a :class:`Context`, and returns one score per unit,
shape :func:`unit_shape`. ``needs`` names the context it reads: ``"generator"`` (the study runs it
once per seed), ``"importance"`` (the study passes the dense model's Taylor importance). The name
is the ``criterion`` column of the tables and enters the keys of stored results: a criterion whose
formula changes needs a new name.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from .model import CONV_NAMES

STRATEGIES: tuple[str, ...] = ("fine-grained", "kernel", "filter")
CONTEXT_NEEDS: tuple[str, ...] = ("generator", "importance")
ALIASES: dict[int | str, str] = {2: "L2", 1: "L1", "taylor": "Taylor"}  # earlier spellings (norm=2), still accepted
Norm = int | str  # a criterion's name in CRITERIA, or one of ALIASES


@dataclass(frozen=True)
class Context:
    """What a criterion may read besides the weight; each criterion declares the fields it needs."""

    generator: torch.Generator | None = None  # seeded noise (random); None: torch's global generator
    importance: torch.Tensor | None = None  # per-weight importance, the weight's shape, fp32 (Taylor)


Score = Callable[[torch.Tensor, str, Context], torch.Tensor]


@dataclass(frozen=True)
class Criterion:
    name: str
    score: Score  # (fp32 weight, strategy, context) -> one score per unit, shape unit_shape(weight, strategy)
    needs: frozenset[str]  # the Context fields it reads


CRITERIA: dict[str, Criterion] = {}  # name -> criterion, in registration order; filled by register()


def register(name: str, *, needs: tuple[str, ...] = ()) -> Callable[[Score], Score]:
    """Decorator adding a scoring function to :data:`CRITERIA` as ``name``; returns the function unchanged.

    ValueError for a name that is not a non-empty string or is already taken, ``needs`` that is not
    a tuple drawn from :data:`CONTEXT_NEEDS`, or a function not callable as ``score(weight, strategy, context)``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a criterion's name must be a non-empty string, got {name!r}")
    if name in CRITERIA or name in ALIASES:
        raise ValueError(f"criterion {name!r} is already registered; taken: {_valid_names()}; "
                         "unregister() it first to replace it")
    if not isinstance(needs, (tuple, list)) or any(n not in CONTEXT_NEEDS for n in needs):
        raise ValueError(f"criterion {name!r}: needs must be a tuple drawn from {CONTEXT_NEEDS}, got {needs!r}")

    def add(score: Score) -> Score:
        try:
            inspect.signature(score).bind(None, None, None)
        except (TypeError, ValueError):
            raise ValueError(f"criterion {name!r}: {score!r} must be a function score(weight, strategy, context)"
                             ) from None
        CRITERIA[name] = Criterion(name, score, frozenset(needs))
        return score

    return add


def unregister(name: str) -> None:
    """Remove ``name`` from :data:`CRITERIA`; KeyError naming the registered ones if it is not there."""
    if name not in CRITERIA:
        raise KeyError(f"no criterion {name!r} to unregister; registered: {', '.join(CRITERIA)}")
    del CRITERIA[name]


def _valid_names() -> str:
    return ", ".join(CRITERIA) + f" (or {', '.join(map(repr, ALIASES))})"


def get_criterion(name: Norm) -> Criterion:
    """The registered criterion called ``name`` (or an alias of it); ValueError listing the valid names."""
    if isinstance(name, str) and name in CRITERIA:
        return CRITERIA[name]
    if isinstance(name, (int, str)) and not isinstance(name, bool) and ALIASES.get(name) in CRITERIA:
        return CRITERIA[ALIASES[name]]
    raise ValueError(f"unknown criterion {name!r}; valid criteria: {_valid_names()}")


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


def unit_shape(weight: torch.Tensor, strategy: str) -> torch.Size:
    """Shape of one score per unit: the weight's (fine-grained), ``[C_out, C_in]`` (kernel), ``[C_out]`` (filter)."""
    return {"fine-grained": weight.shape, "kernel": weight.shape[:2], "filter": weight.shape[:1]}[strategy]


def unit_rows(t: torch.Tensor, strategy: str) -> torch.Tensor:
    """``t`` (the weight's shape) as ``[*unit_shape, weights per unit]``: reduce over ``-1`` for one score per unit."""
    if strategy == "fine-grained":
        return t.unsqueeze(-1)
    return t.flatten(2) if strategy == "kernel" else t.flatten(1)


def _norm(weight: torch.Tensor, strategy: str, p: int) -> torch.Tensor:
    if strategy == "fine-grained":
        return weight.abs()
    return torch.linalg.vector_norm(unit_rows(weight, strategy), ord=p, dim=-1)


@register("L2")
def l2_norm(weight: torch.Tensor, strategy: str, context: Context) -> torch.Tensor:
    """``||vec(W_u)||_2`` per unit (``|w|`` per weight)."""
    return _norm(weight, strategy, 2)


@register("L1")
def l1_norm(weight: torch.Tensor, strategy: str, context: Context) -> torch.Tensor:
    """``||vec(W_u)||_1`` per unit (``|w|`` per weight)."""
    return _norm(weight, strategy, 1)


@register("random", needs=("generator",))
def random_scores(weight: torch.Tensor, strategy: str, context: Context) -> torch.Tensor:
    """Uniform noise in [0, 1) per unit, drawn on the CPU from ``context.generator``."""
    return torch.rand(unit_shape(weight, strategy), generator=context.generator, device="cpu").to(weight.device)


@register("Taylor", needs=("importance",))
def taylor(weight: torch.Tensor, strategy: str, context: Context) -> torch.Tensor:
    """``sum over the unit of context.importance`` (``|w * dL/dw|`` summed over batches)."""
    return context.importance if strategy == "fine-grained" else unit_rows(context.importance, strategy).sum(-1)


def unit_scores(
    weight: torch.Tensor, strategy: str, norm: Norm = "L2", generator: torch.Generator | None = None,
    importance: torch.Tensor | None = None,
) -> torch.Tensor:
    """One score per pruning unit by the criterion ``norm`` (a name in :data:`CRITERIA`), shape :func:`unit_shape`.

    ``generator`` and ``importance`` (the weight's shape) are the :class:`Context`; ``importance`` is
    required by, and only taken by, a criterion that needs it. ValueError names a bad strategy,
    criterion, importance or weight, and a criterion that returns other than one number per unit.
    """
    check_strategy(strategy)
    criterion = get_criterion(norm)
    needing = [c.name for c in CRITERIA.values() if "importance" in c.needs]
    if "importance" in criterion.needs and importance is None:
        raise ValueError(f"criterion {criterion.name!r} needs a per-weight importance tensor (importance=...)")
    if "importance" not in criterion.needs and importance is not None:
        raise ValueError(f"criterion {criterion.name!r} takes no importance; only {', '.join(needing)} do")
    if importance is not None and importance.shape != weight.shape:
        raise ValueError(f"importance has shape {tuple(importance.shape)}, the weight {tuple(weight.shape)}")
    if strategy != "fine-grained" and weight.dim() != 4:
        raise ValueError(
            f"{strategy} pruning needs a 4-D conv weight [C_out, C_in, k, k], got shape {tuple(weight.shape)}"
        )
    w = weight.detach().float()
    context = Context(generator, None if importance is None else importance.detach().float().to(w.device))
    scores = criterion.score(w, strategy, context)
    expected = unit_shape(w, strategy)
    if not isinstance(scores, torch.Tensor) or scores.shape != expected:
        got = f"shape {tuple(scores.shape)}" if isinstance(scores, torch.Tensor) else repr(type(scores).__name__)
        raise ValueError(f"criterion {criterion.name!r} returned {got} for {strategy} pruning of a weight of shape "
                         f"{tuple(w.shape)}; it must return one score per unit, shape {tuple(expected)}")
    if scores.isnan().any():
        raise ValueError(f"criterion {criterion.name!r} returned NaN scores for {strategy} pruning; "
                         "scores must be numbers (-inf removes a unit first)")
    return scores


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
    norm: Norm = "L2",
    generator: torch.Generator | None = None,
    current: torch.Tensor | None = None,
    importance: torch.Tensor | None = None,
) -> torch.Tensor:
    """Keep-mask (``True`` = kept) of the same shape as ``weight``; see the module docstring.

    ``norm`` names the criterion (:data:`CRITERIA`), ``generator`` and ``importance`` its context.
    With ``current`` (a keep-mask already on this weight), units it removed stay removed and
    count towards the ``round(sparsity * n)`` removed in total; the rest are scored on
    ``weight * current``. Raises ``ValueError`` for an unknown strategy or criterion, a sparsity
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
