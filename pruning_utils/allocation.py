"""Allocating a budget of conv weights over the layers: uniform, guided by the sensitivity scans, or global.

- :func:`uniform_sparsities`: the same sparsity ``1 - budget`` in every conv layer.
- :func:`guided_sparsities`: per-layer sparsities from a scan's grid that meet the budget with
  the highest accuracy predicted by the additive model (:func:`predicted_accuracy`).
- :func:`global_sparsities`: one ranking of every layer's units by magnitude (``global``, what
  ``torch.nn.utils.prune.global_unstructured`` does), or by LAMP's per-layer normalised score (``LAMP``).

A budget is the fraction of conv weights kept (biases not counted), as
:func:`pruning_utils.counting.conv_weights_kept_pct` measures it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .criteria import check_strategy, unit_scores
from .model import conv_layers

ALLOCATIONS: tuple[str, ...] = ("uniform", "guided", "global", "LAMP")
STUDY_ALLOCATIONS: tuple[str, ...] = ("uniform", "guided")  # frontier_points' default (a run: its profile's allocations)
# Sparsities added to a scan whose largest measured sparsity cannot meet a budget (see guided_sparsities).
EXTRAPOLATED_SPARSITIES: tuple[float, ...] = (0.95, 0.98)




def check_budget(budget: float) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0.0 < budget <= 1.0:
        raise ValueError(f"conv_fraction_kept must be a number in (0, 1], got {budget!r}")


def uniform_sparsities(model: nn.Module, conv_fraction_kept: float, strategy: str) -> dict[str, float]:
    """The same sparsity ``1 - conv_fraction_kept`` for every conv layer of ``model``.

    Each layer then keeps ``n_units - round((1 - budget) * n_units)`` units, so the kept
    fraction of conv weights equals the budget up to half a unit per layer.
    """
    check_budget(conv_fraction_kept)
    check_strategy(strategy)
    sparsity = round(1.0 - conv_fraction_kept, 12)  # 1 - 0.7 = 0.30000000000000004 -> 0.3
    return dict.fromkeys(conv_layers(model), sparsity)


Curves = dict[str, list[tuple[float, float]]]  # layer -> [(sparsity, accuracy)], sparsity ascending from 0


def _accuracy_curves(scan: pd.DataFrame) -> Curves:
    """Per layer, the scan's (sparsity, accuracy) points; checks the scan's shape."""
    missing = {"strategy", "layer", "sparsity", "accuracy"} - set(scan.columns)
    if missing:
        raise ValueError(f"scan lacks column(s) {sorted(missing)}; a scan has strategy, layer, sparsity, accuracy")
    if scan["strategy"].nunique() != 1:
        raise ValueError(f"scan must hold one strategy, got {sorted(scan['strategy'].unique())}")
    curves = {}
    for layer, group in scan.groupby("layer", sort=False):
        points = sorted((float(s), float(a)) for s, a in zip(group["sparsity"], group["accuracy"]))
        grid = [s for s, _ in points]
        if len(set(grid)) != len(grid):
            raise ValueError(f"scan has repeated sparsities for {layer}: {grid}")
        if grid[0] != 0.0:
            raise ValueError(f"scan must include sparsity 0 (the dense model) for {layer}, got {grid}")
        curves[layer] = points
    return curves


def _extrapolated(curves: Curves) -> Curves:
    """Each curve continued to :data:`EXTRAPOLATED_SPARSITIES` beyond its largest measured sparsity.

    The prediction follows the slope of the last measured segment (never rising) and stops at
    the lowest accuracy anywhere in the scan, a stand-in for chance level.
    """
    floor = min(a for points in curves.values() for _, a in points)
    out = {}
    for layer, points in curves.items():
        (s0, a0), (s1, a1) = points[-2] if len(points) > 1 else points[-1], points[-1]
        slope = min(0.0, (a1 - a0) / (s1 - s0)) if s1 > s0 else 0.0
        extra = [(s, max(floor, a1 + slope * (s - s1))) for s in EXTRAPOLATED_SPARSITIES if s > s1]
        out[layer] = points + extra
    return out


def predicted_accuracy(scan: pd.DataFrame, sparsities: Mapping[str, float]) -> float:
    """The additive model's accuracy for per-layer ``sparsities`` on the scan's grid.

    ``dense + sum over layers of (acc_layer(s_layer) - dense)``, where ``acc_layer(s)`` is the
    scan's accuracy with that layer alone pruned to ``s`` (extrapolated beyond the grid as in
    :func:`guided_sparsities`). Raises ``ValueError`` for a sparsity not on the grid.
    """
    curves = _extrapolated(_accuracy_curves(scan))
    dense = sum(points[0][1] for points in curves.values()) / len(curves)
    total = dense
    for layer, s in sparsities.items():
        if layer not in curves:
            raise KeyError(f"layer {layer!r} is not in the scan; scanned layers: {', '.join(curves)}")
        accuracy = {round(g, 9): a for g, a in curves[layer]}.get(round(float(s), 9))
        if accuracy is None:
            raise ValueError(f"{layer}: sparsity {s!r} is not on the scan's grid {[g for g, _ in curves[layer]]}")
        total += accuracy - curves[layer][0][1]
    return total


def _kept(curves: Curves, sizes: Mapping[str, int], level: Mapping[str, int]) -> float:
    return sum((1.0 - curves[layer][level[layer]][0]) * sizes[layer] for layer in sizes)


def _score(curves: Curves, level: Mapping[str, int]) -> float:
    return sum(curves[layer][i][1] for layer, i in level.items())


def _greedy(curves: Curves, sizes: Mapping[str, int], allowed: float) -> dict[str, int]:
    """Raise, one move at a time, the layer whose next move costs the least accuracy per weight
    removed (a move may jump several grid points, so non-convex curves are handled), until the
    kept weights fit ``allowed``."""
    level = dict.fromkeys(sizes, 0)
    while _kept(curves, sizes, level) > allowed:
        best = None
        for layer, n in sizes.items():
            s, a = curves[layer][level[layer]]
            for j in range(level[layer] + 1, len(curves[layer])):
                s_j, a_j = curves[layer][j]
                removed = (s_j - s) * n
                key = ((a - a_j) / removed, -removed)
                if best is None or key < best[0]:
                    best = (key, layer, j)
        if best is None:  # unreachable: callers check the smallest reachable budget first
            raise ValueError("no allocation on the scan's grid meets the budget")
        level[best[1]] = best[2]
    return level


def _refined(curves: Curves, sizes: Mapping[str, int], allowed: float, level: dict[str, int]) -> dict[str, int]:
    """Lower single layers back while the budget still holds: first where the predicted accuracy
    rises most, then (equal prediction) where the most weights come back. Each move keeps more
    weights, so this ends."""
    level = dict(level)
    while True:
        slack = allowed - _kept(curves, sizes, level)
        moves = []
        for layer, i in level.items():
            for j in range(i):
                back = (curves[layer][i][0] - curves[layer][j][0]) * sizes[layer]
                gain = curves[layer][j][1] - curves[layer][i][1]
                if back <= slack and gain >= 0:
                    moves.append((gain, back, layer, j))
        if not moves:
            return level
        _, _, layer, j = max(moves)
        level[layer] = j


def guided_sparsities(
    scan: pd.DataFrame, layer_sizes: Mapping[str, int], conv_fraction_kept: float,
    layer_units: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """Per-layer sparsities from the scan's grid that keep at most ``conv_fraction_kept`` of the
    conv weights while maximising the additive model's predicted accuracy (:func:`predicted_accuracy`).

    ``scan`` is one strategy's sensitivity scan (``strategy, layer, sparsity, accuracy``, each
    layer scanned from sparsity 0); ``layer_sizes`` maps each conv layer to its number of
    weights. The budget is met on the nominal count ``sum((1 - s_l) * n_l) <= budget * sum(n_l)``
    (pruning rounds each layer to whole units). Search: a greedy that repeatedly takes the
    move with the least predicted accuracy lost per weight removed, then lowers layers back
    where the slack allows; the uniform allocation rounded up to the grid is refined the same
    way, and the better of the two is returned, so the result is never predicted worse than
    uniform pruning at a grid sparsity. Among equally predicted allocations the one keeping
    more weights wins.

    Where every layer at its largest scanned sparsity still keeps more than the budget (e.g.
    5% with a grid ending at 0.9), the grid is extended to :data:`EXTRAPOLATED_SPARSITIES`
    with *extrapolated* accuracies (the last measured segment's slope, never rising, floored
    at the scan's lowest accuracy): an unmeasured guess, used only then. A budget below
    what the extended grid can reach raises ``ValueError`` naming the smallest reachable one.
    With ``layer_units`` (each layer's number of pruning units: weights, kernels or filters),
    grid sparsities that would remove every unit of a layer (``round(s * n) >= n``) are not used.
    """
    check_budget(conv_fraction_kept)
    curves = _accuracy_curves(scan)
    if set(curves) != set(layer_sizes):
        raise ValueError(
            f"scan layers {sorted(curves)} and layer_sizes {sorted(layer_sizes)} must name the same layers"
        )
    for layer, n in layer_sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"layer_sizes[{layer!r}] must be a positive int, got {n!r}")
    sizes = dict(layer_sizes)
    total = sum(sizes.values())
    allowed = conv_fraction_kept * total + 1e-9 * total  # float slack for budgets like 0.3

    def smallest_kept(c: Curves) -> float:
        return _kept(c, sizes, {layer: len(c[layer]) - 1 for layer in sizes})

    def prunable(c: Curves) -> Curves:
        if layer_units is None:
            return c
        return {layer: [(s, a) for s, a in points if round(s * layer_units[layer]) < layer_units[layer]]
                for layer, points in c.items()}

    curves = prunable(curves)
    if smallest_kept(curves) > allowed:
        curves = prunable(_extrapolated(curves))
        if smallest_kept(curves) > allowed:
            reachable = smallest_kept(curves) / total
            raise ValueError(
                f"conv_fraction_kept {conv_fraction_kept!r} cannot be met: the smallest reachable budget "
                f"with every layer at its largest (extended) sparsity is {reachable:.4f}"
            )
    candidates = [_refined(curves, sizes, allowed, _greedy(curves, sizes, allowed))]
    uniform = {}
    for layer in sizes:
        above = [i for i, (s, _) in enumerate(curves[layer]) if s >= round(1.0 - conv_fraction_kept, 12)]
        if above:
            uniform[layer] = above[0]
    if len(uniform) == len(sizes):
        candidates.append(_refined(curves, sizes, allowed, uniform))
    best = max(candidates, key=lambda level: (_score(curves, level), _kept(curves, sizes, level)))
    return {layer: curves[layer][best[layer]][0] for layer in sizes}


def global_sparsities(model: nn.Module, conv_fraction_kept: float, strategy: str,
                      lamp: bool = False) -> dict[str, float]:
    """Per-layer sparsities from one ranking of the units of every conv layer: the lowest-scoring units
    anywhere are removed until at most ``conv_fraction_kept`` of the conv weights are kept (the nominal
    count, as for the other allocations; a filter or kernel counts its weights).

    Scores are the L2 criterion's (``|w|`` per weight, the Frobenius norm per kernel or filter), the
    ranking ``torch.nn.utils.prune.global_unstructured`` and Torch-Pruning's ``global_pruning`` use; with
    ``lamp``, LAMP's (Lee et al., ICLR 2021): a unit's squared score divided by the sum of the squared
    scores of the units of its layer that score at least as high, so that scores are comparable across
    layers and each layer's strongest unit scores 1. Pruning each layer at the returned sparsity by its
    own magnitudes removes exactly the globally ranked units (ties aside). A layer always keeps its
    strongest unit: a plain magnitude ranking can otherwise take a whole layer (layer collapse).
    ValueError when the budget cannot be met that way.
    """
    removed, units = _ranked_removals(model, conv_fraction_kept, strategy, lamp, guard=True)
    return {name: removed[name] / units[name] for name in units}


def collapsing_layers(model: nn.Module, conv_fraction_kept: float, strategy: str, lamp: bool = False) -> list[str]:
    """The layers that the ranking of :func:`global_sparsities` would empty without its guard (layer
    collapse): the layers whose strongest unit it keeps."""
    removed, units = _ranked_removals(model, conv_fraction_kept, strategy, lamp, guard=False)
    return [name for name in units if removed[name] == units[name]]


def collapses(model: nn.Module, budgets: Sequence[float], strategies: Sequence[str]) -> pd.DataFrame:
    """Per strategy, global ranking (``global``, ``LAMP``) and budget, the layers it would empty without
    its guard (:func:`collapsing_layers`), comma-separated, or ``-``."""
    return pd.DataFrame([{"strategy": s, "allocation": a, "budget": b,
                          "emptied": ", ".join(collapsing_layers(model, b, s, lamp=a == "LAMP")) or "-"}
                         for s in strategies for a in ("global", "LAMP") for b in budgets])


def _ranked_removals(model: nn.Module, conv_fraction_kept: float, strategy: str, lamp: bool,
                     guard: bool) -> tuple[dict[str, int], dict[str, int]]:
    """Units removed per layer by one ranking over the layers (see :func:`global_sparsities`), and units per
    layer. ``guard``: each layer's strongest unit is never removed."""
    check_budget(conv_fraction_kept)
    check_strategy(strategy)
    names, scores, sizes = [], [], []
    for name, conv in conv_layers(model).items():
        score = unit_scores(conv.weight, strategy).flatten().double()
        if lamp:
            squared, order = torch.sort(score ** 2)
            at_least = squared.flip(0).cumsum(0).flip(0)  # per unit: the squares of it and every stronger unit
            score = torch.empty_like(squared).scatter_(0, order, squared / at_least)
        if guard:
            score[score.argmax()] = math.inf
        names.append(name)
        scores.append(score)
        sizes.append(torch.full_like(score, conv.weight.numel() // score.numel()))
    score, size = torch.cat(scores), torch.cat(sizes)
    layer = torch.cat([torch.full((len(s),), i) for i, s in enumerate(scores)])
    total = float(size.sum())
    needed = total - conv_fraction_kept * total - 1e-9 * total  # weights to remove (float slack as in guided)
    order = torch.argsort(score, stable=True)
    removable = int(torch.isfinite(score).sum())
    removed = size[order[:removable]].cumsum(0)
    if needed > 0 and (removable == 0 or float(removed[-1]) < needed):
        reachable = (total - (float(removed[-1]) if removable else 0.0)) / total
        raise ValueError(f"conv_fraction_kept {conv_fraction_kept!r} cannot be met keeping one unit per layer: "
                         f"the smallest reachable budget is {reachable:.4f}")
    count = int(torch.searchsorted(removed, torch.tensor(needed, dtype=removed.dtype))) + 1 if needed > 0 else 0
    per_layer = torch.bincount(layer[order[:count]], minlength=len(names))
    return {name: int(per_layer[i]) for i, name in enumerate(names)}, {n: len(s) for n, s in zip(names, scores)}


def allocate(allocation: str, model: nn.Module, conv_fraction_kept: float, strategy: str,
             scan: pd.DataFrame | None = None) -> dict[str, float]:
    """Per-layer sparsities of ``model``'s conv layers by ``allocation`` (one of :data:`ALLOCATIONS`);
    ``guided`` needs the strategy's sensitivity ``scan``."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; valid: {', '.join(ALLOCATIONS)}")
    if allocation == "uniform":
        return uniform_sparsities(model, conv_fraction_kept, strategy)
    if allocation == "guided":
        if scan is None:
            raise ValueError(f"guided allocation needs the sensitivity scan of {strategy!r}")
        convs = conv_layers(model)
        return guided_sparsities(scan, {n: c.weight.numel() for n, c in convs.items()}, conv_fraction_kept,
                                 {n: unit_scores(c.weight, strategy).numel() for n, c in convs.items()})
    return global_sparsities(model, conv_fraction_kept, strategy, lamp=allocation == "LAMP")


def kept_fractions(model: nn.Module, conv_fraction_kept: float, strategy: str, scan: pd.DataFrame | None = None,
                   allocations: tuple[str, ...] = ALLOCATIONS) -> pd.DataFrame:
    """Where each allocation puts a budget: per allocation and conv layer, the fraction of the layer's
    units kept, and for the global rankings whether the guard kept the layer's last unit
    (:func:`collapsing_layers`)."""
    rows = []
    for allocation in allocations:
        sparsities = allocate(allocation, model, conv_fraction_kept, strategy, scan)
        guarded = (collapsing_layers(model, conv_fraction_kept, strategy, lamp=allocation == "LAMP")
                   if allocation in ("global", "LAMP") else [])
        rows += [{"strategy": strategy, "allocation": allocation, "budget": conv_fraction_kept, "layer": layer,
                  "kept": 1.0 - s, "guarded": layer in guarded} for layer, s in sparsities.items()]
    return pd.DataFrame(rows)
