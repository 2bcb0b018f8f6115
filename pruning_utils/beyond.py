"""Beyond the report: three experiments on the dense model, each a tidy DataFrame.

- **Frontier** (:func:`frontier_sweep`): test accuracy against the fraction of conv weights
  kept, for each strategy, with the per-layer sparsities chosen *uniformly*
  (:func:`uniform_sparsities`) or *guided* by the sensitivity scan (:func:`guided_sparsities`).
- **Criteria** (:func:`criteria_sweep`): at the same per-layer sparsities, does magnitude matter?
  L2 and L1 unit norms against random selection (several seeds).
- **Iterative** (:func:`iterative_sweep`): the same final sparsities reached in one shot or in
  ``k`` rounds of prune + recalibrate + fine-tune with the same total fine-tuning epochs.

Every point starts from a fresh copy of the dense model: prune, measure test accuracy (eval
mode, %), recalibrate BatchNorm, measure, fine-tune, measure (:func:`prune_and_recover`).

The sweeps take the dense model and the data explicitly. Given a :class:`PointCache` they
skip points already in it and add each point's rows as soon as it finishes, so an interrupted
sweep resumes at the next unfinished point. A point is identified by a hash of everything its
result depends on (dense weights, data, strategy, per-layer sparsities, criterion, seed and the
recovery settings except the device), so a changed setting is a new point, never a stale row.
The drivers :func:`frontier`, :func:`criteria` and :func:`iterative` read the model, scans and
settings from a run and keep their caches in the run directory (``frontier.csv``,
``criteria.csv``, ``iterative.csv``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune
from tqdm import tqdm

from .compact import copy_model
from .config import Recipe
from .data import CifarSplits
from .model import batchnorm_after, conv_layers
from .pruners import (
    STRATEGIES,
    Norm,
    _keep_mask,
    _validate_sparsities,
    _validate_strategy,
    layer_masks,
    prune_model,
    unit_scores,
)
from .runs import Run, load_model, require
from .train import evaluate, recalibrate_batchnorm, train

ALLOCATIONS: tuple[str, ...] = ("uniform", "guided")
CRITERIA: dict[int | str, str] = {2: "L2", 1: "L1", "random": "random"}
# Sparsities added to a scan whose largest measured sparsity cannot meet a budget (see guided_sparsities).
EXTRAPOLATED_SPARSITIES: tuple[float, ...] = (0.95, 0.98)
FRONTIER_COLUMNS = ["strategy", "allocation", "budget", "conv_params_kept_pct",
                    "acc_pruned", "acc_recalibrated", "acc_finetuned", "finetune_epochs"]
CRITERIA_COLUMNS = ["strategy", "criterion", "seed", "conv_params_kept_pct",
                    "acc_pruned", "acc_recalibrated", "acc_finetuned", "finetune_epochs"]
ITERATIVE_COLUMNS = ["strategy", "rounds", "round", "conv_params_kept_pct", "acc_after_round", "finetune_epochs"]


# ---------------------------------------------------------------------------------------------
# Allocating a budget of conv weights over layers


def _validate_budget(budget: float) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0.0 < budget <= 1.0:
        raise ValueError(f"conv_fraction_kept must be a number in (0, 1], got {budget!r}")


def uniform_sparsities(model: nn.Module, conv_fraction_kept: float, strategy: str) -> dict[str, float]:
    """The same sparsity ``1 - conv_fraction_kept`` for every conv layer of ``model``.

    Each layer then keeps ``n_units - round((1 - budget) * n_units)`` units, so the kept
    fraction of conv weights equals the budget up to half a unit per layer.
    """
    _validate_budget(conv_fraction_kept)
    _validate_strategy(strategy)
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
    scan: pd.DataFrame, layer_sizes: Mapping[str, int], conv_fraction_kept: float
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
    """
    _validate_budget(conv_fraction_kept)
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

    if smallest_kept(curves) > allowed:
        curves = _extrapolated(curves)
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


# ---------------------------------------------------------------------------------------------
# One point: prune a copy of the dense model, recalibrate, fine-tune, measure


@dataclass(frozen=True)
class RecoverySettings:
    """How each point recovers after pruning and how it is measured."""

    recipe: Recipe  # fine-tuning recipe; recipe.epochs per point (iterative: spread over the rounds)
    batch_size: int  # fine-tuning and BatchNorm recalibration batch size
    recalibration_batches: int  # training batches used to re-estimate BatchNorm statistics
    eval_batch_size: int = 1000  # images per test-evaluation batch
    seed: int = 0  # seeds fine-tuning and recalibration batches
    device: str = "cpu"
    precision: str = "fp32"  # bf16 | fp16 | fp32 (resolved, as Run.precision)

    @classmethod
    def from_run(cls, run: Run, finetune_epochs: int) -> RecoverySettings:
        """The run's fine-tuning recipe with ``finetune_epochs`` epochs, and its other settings."""
        if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
            raise ValueError(f"finetune_epochs must be an int >= 0, got {finetune_epochs!r}")
        p = run.profile
        return cls(replace(p.finetune, epochs=finetune_epochs), p.batch_size, p.recalibration_batches,
                   p.eval_batch_size, run.seed, str(run.device), run.precision)

    def signature(self) -> dict:
        """Everything a result depends on (all fields but the device), for point identities."""
        fields = asdict(self)
        fields.pop("device")
        return fields


def conv_weights_kept_pct(model: nn.Module) -> float:
    """Unmasked conv weights as % of all conv weights (biases not counted, as in the budgets)."""
    masks = layer_masks(model).values()
    return 100.0 * sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def accuracy_pct(model: nn.Module, data: CifarSplits, settings: RecoverySettings) -> float:
    """Test accuracy in %, eval mode."""
    return 100.0 * evaluate(model, data.test_x, data.test_y, batch_size=settings.eval_batch_size,
                            device=torch.device(settings.device), precision=settings.precision)


def recalibrate_and_finetune(model: nn.Module, data: CifarSplits, settings: RecoverySettings, epochs: int) -> float:
    """Recalibrate BatchNorm, then fine-tune ``epochs`` epochs (none for 0), in place.

    Returns the test accuracy (%) measured between the two."""
    recalibrate_batchnorm(model, data.train_x, num_batches=settings.recalibration_batches,
                          batch_size=settings.batch_size, seed=settings.seed,
                          device=torch.device(settings.device), precision=settings.precision)
    recalibrated = accuracy_pct(model, data, settings)
    if epochs > 0:
        train(model, data.train_x, data.train_y, replace(settings.recipe, epochs=epochs),
              batch_size=settings.batch_size, seed=settings.seed, device=torch.device(settings.device),
              precision=settings.precision, eval_batch_size=settings.eval_batch_size, progress=False)
    model.eval()
    return recalibrated


def prune_and_recover(
    dense: nn.Module,
    data: CifarSplits,
    sparsities: Mapping[str, float],
    strategy: str,
    settings: RecoverySettings,
    *,
    norm: Norm = 2,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Prune a copy of ``dense`` (one shot), recalibrate BatchNorm, fine-tune ``settings.recipe.epochs``.

    Returns ``conv_params_kept_pct`` and the test accuracy (%) after each stage:
    ``acc_pruned``, ``acc_recalibrated``, ``acc_finetuned`` (= recalibrated with 0 epochs).
    """
    model = prune_model(copy_model(dense).to(settings.device), sparsities, strategy, norm=norm, generator=generator)
    row = {"conv_params_kept_pct": conv_weights_kept_pct(model), "acc_pruned": accuracy_pct(model, data, settings)}
    row["acc_recalibrated"] = recalibrate_and_finetune(model, data, settings, settings.recipe.epochs)
    row["acc_finetuned"] = accuracy_pct(model, data, settings)
    return row


# ---------------------------------------------------------------------------------------------
# Iterative pruning


def _removed_units(mask: torch.Tensor, strategy: str) -> torch.Tensor:
    """Units (in :func:`unit_scores`' shape) whose weights are all masked."""
    gone = ~mask
    return {"fine-grained": gone, "kernel": gone.flatten(2).all(-1), "filter": gone.flatten(1).all(-1)}[strategy]


def prune_to(model: nn.Module, sparsities: Mapping[str, float], strategy: str, *, norm: Norm = 2) -> nn.Module:
    """Prune ``model`` in place so that each layer has exactly ``round(s * n_units)`` units removed
    *in total*, keeping every unit already removed, and return it.

    Units are scored on the effective weight ``weight_orig * weight_mask``; already removed units
    rank first, then the lowest scores (ties: lower index). Masks are applied as
    :func:`pruning_utils.pruners.prune_model` applies them (filter pruning also masks the conv
    bias and the BatchNorm scale and shift). Raises ``ValueError`` where a layer already has
    more units removed than its new sparsity asks for.
    """
    _validate_strategy(strategy)
    _validate_sparsities(sparsities)
    convs, bns = conv_layers(model), batchnorm_after(model)
    for name, sparsity in sparsities.items():
        conv = convs[name]
        current = getattr(conv, "weight_mask", None)
        effective = (conv.weight_orig * current if current is not None else conv.weight).detach()
        current = current.bool() if current is not None else torch.ones_like(effective, dtype=torch.bool)
        scores = unit_scores(effective, strategy, norm).clone()
        gone = _removed_units(current, strategy)
        target = round(sparsity * scores.numel())
        if int(gone.sum()) > target:
            raise ValueError(
                f"{name}: {int(gone.sum())} units are already removed, more than sparsity {sparsity} "
                f"removes ({target}); sparsities can only grow"
            )
        keep = _keep_mask(scores.masked_fill(gone, -math.inf), sparsity)
        while keep.dim() < effective.dim():
            keep = keep.unsqueeze(-1)
        keep = keep.expand_as(effective) & current
        prune.custom_from_mask(conv, "weight", keep)
        if strategy == "filter":
            alive = keep.flatten(1).any(dim=1)
            if conv.bias is not None:
                prune.custom_from_mask(conv, "bias", alive)
            bn = bns[name]
            if bn.affine:
                prune.custom_from_mask(bn, "weight", alive)
                prune.custom_from_mask(bn, "bias", alive)
    return model


def geometric_schedule(sparsities: Mapping[str, float], rounds: int) -> list[dict[str, float]]:
    """Per-layer sparsities after each of ``rounds`` rounds: the kept fraction shrinks
    geometrically, ``kept_r = kept_final ** (r / rounds)``, i.e. ``s_r = 1 - (1 - s) ** (r / rounds)``;
    the last round is ``sparsities`` exactly."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    _validate_sparsities(sparsities)
    steps = [{k: 1.0 - (1.0 - s) ** (r / rounds) for k, s in sparsities.items()} for r in range(1, rounds)]
    return steps + [dict(sparsities)]


def split_epochs(total: int, rounds: int) -> list[int]:
    """``total`` fine-tuning epochs spread over ``rounds`` as evenly as possible; the last
    ``total % rounds`` rounds get one more (the sparsest models get the extra recovery)."""
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"total_finetune_epochs must be an int >= 0, got {total!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    base, extra = divmod(total, rounds)
    return [base + (r >= rounds - extra) for r in range(rounds)]


def prune_iteratively(
    dense: nn.Module,
    data: CifarSplits,
    sparsities: Mapping[str, float],
    strategy: str,
    rounds: int,
    total_finetune_epochs: int,
    settings: RecoverySettings,
) -> tuple[nn.Module, list[dict]]:
    """Reach ``sparsities`` in ``rounds`` rounds of :func:`prune_to` (:func:`geometric_schedule`),
    BatchNorm recalibration and fine-tuning (:func:`split_epochs` of the total).

    Returns the final model and one row per round: ``round, conv_params_kept_pct,
    acc_after_round`` (test %, eval mode, after that round's fine-tuning) and ``finetune_epochs``.
    """
    schedule, epochs = geometric_schedule(sparsities, rounds), split_epochs(total_finetune_epochs, rounds)
    model = copy_model(dense).to(settings.device)
    rows = []
    for r, (target, n_epochs) in enumerate(zip(schedule, epochs), start=1):
        prune_to(model, target, strategy)
        recalibrate_and_finetune(model, data, settings, n_epochs)
        rows.append({"round": r, "conv_params_kept_pct": conv_weights_kept_pct(model),
                     "acc_after_round": accuracy_pct(model, data, settings), "finetune_epochs": n_epochs})
    return model, rows


# ---------------------------------------------------------------------------------------------
# Caching finished points


class PointCache:
    """Rows of finished points in a CSV, keyed by a ``point`` id column.

    :meth:`put` rewrites the file atomically after each point. With ``refresh=True`` every
    lookup misses, so points are recomputed and their rows replaced (``force``).
    """

    def __init__(self, path: str | os.PathLike, refresh: bool = False) -> None:
        self.path = Path(path)
        self.refresh = refresh
        self.frame = (pd.read_csv(self.path, dtype={"point": str}) if self.path.exists()
                      else pd.DataFrame({"point": pd.Series([], dtype=str)}))

    def get(self, point: str) -> list[dict] | None:
        if self.refresh:
            return None
        rows = self.frame[self.frame["point"] == point]
        return rows.drop(columns="point").to_dict("records") if len(rows) else None

    def put(self, point: str, rows: list[dict]) -> None:
        fresh = pd.DataFrame([{"point": point, **row} for row in rows])
        kept = self.frame[self.frame["point"] != point]
        self.frame = fresh if kept.empty else pd.concat([kept, fresh], ignore_index=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        self.frame.to_csv(tmp, index=False)
        os.replace(tmp, self.path)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-1 of a model's state (names and values), to tie cached points to the dense weights."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _point_id(**identity) -> str:
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _run_points(
    points: list[tuple[str, str, dict, Callable[[], list[dict]]]],
    cache: PointCache | None,
    progress: bool,
    desc: str,
) -> list[dict]:
    """Run ``(point id, label, fixed columns, work)`` in order, skipping cached points."""
    rows = []
    bar = tqdm(points, desc=desc, disable=not progress, mininterval=2.0)
    for point, label, fixed, work in bar:
        done = cache.get(point) if cache is not None else None
        if done is None:
            bar.set_postfix_str(label)
            done = [{**fixed, **row} for row in work()]
            if cache is not None:
                cache.put(point, done)
        rows.extend(done)
    return rows


def _base_identity(dense: nn.Module, data: CifarSplits, settings: RecoverySettings) -> dict:
    return {"dense": model_fingerprint(dense), "data": data.source_key, "settings": settings.signature()}


def _one_row(*args, **kwargs) -> list[dict]:
    return [prune_and_recover(*args, **kwargs)]


def _round_rows(*args) -> list[dict]:
    return prune_iteratively(*args)[1]


def _check_choices(name: str, values: Sequence, valid: Sequence) -> None:
    bad = [v for v in values if v not in valid]
    if bad or not values:
        raise ValueError(f"{name} must be a non-empty selection of {list(valid)}, got {list(values)!r}")


# ---------------------------------------------------------------------------------------------
# The sweeps (explicit model and data) ...


def frontier_sweep(
    dense: nn.Module,
    data: CifarSplits,
    budgets: Sequence[float],
    strategies: Sequence[str],
    settings: RecoverySettings,
    *,
    allocations: Sequence[str] = ALLOCATIONS,
    scans: Mapping[str, pd.DataFrame] | None = None,
    cache: PointCache | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Accuracy against budget: one :func:`prune_and_recover` point per (strategy, allocation, budget).

    ``guided`` needs ``scans[strategy]`` (that strategy's sensitivity scan). Columns:
    :data:`FRONTIER_COLUMNS` (``budget`` = fraction of conv weights asked to be kept,
    ``conv_params_kept_pct`` = what pruning kept, accuracies = test %, eval mode).
    All allocations are computed before any training, so a bad budget fails fast.
    """
    _check_choices("strategies", strategies, STRATEGIES)
    _check_choices("allocations", allocations, ALLOCATIONS)
    for budget in budgets:
        _validate_budget(budget)
    sizes = {name: conv.weight.numel() for name, conv in conv_layers(dense).items()}
    base = _base_identity(dense, data, settings)
    points = []
    for strategy in strategies:
        for allocation in allocations:
            if allocation == "guided" and (scans is None or strategy not in scans):
                raise ValueError(f"guided allocation needs the sensitivity scan of {strategy!r} in scans")
            for budget in budgets:
                sparsities = (uniform_sparsities(dense, budget, strategy) if allocation == "uniform"
                              else guided_sparsities(scans[strategy], sizes, budget))
                fixed = {"strategy": strategy, "allocation": allocation, "budget": float(budget)}
                point = _point_id(experiment="frontier", **base, **fixed, sparsities=sparsities)
                work = partial(_one_row, dense, data, sparsities, strategy, settings)
                points.append((point, f"{strategy} {allocation} {budget}", fixed, work))
    rows = _run_points(points, cache, progress, "frontier")
    rows = [{**row, "finetune_epochs": settings.recipe.epochs} for row in rows]
    return pd.DataFrame(rows, columns=FRONTIER_COLUMNS)


def criteria_sweep(
    dense: nn.Module,
    data: CifarSplits,
    sparsities_by_strategy: Mapping[str, Mapping[str, float]],
    settings: RecoverySettings,
    *,
    norms: Sequence[Norm] = (2, 1, "random"),
    random_seeds: int = 3,
    cache: PointCache | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The same per-layer sparsities pruned by L2 norm, L1 norm and at random.

    L2 and L1 are deterministic: one point each (``seed`` 0). ``random`` scores units with a
    ``torch.Generator`` seeded 0 ... ``random_seeds - 1``: one point per seed. Fine-tuning and
    recalibration use ``settings.seed`` throughout, so only the selection differs. Columns:
    :data:`CRITERIA_COLUMNS` (``criterion`` is ``L2``, ``L1`` or ``random``).
    """
    _check_choices("strategies", list(sparsities_by_strategy), STRATEGIES)
    _check_choices("norms", norms, list(CRITERIA))
    bad_seeds = isinstance(random_seeds, bool) or not isinstance(random_seeds, int) or random_seeds < 1
    if "random" in norms and bad_seeds:
        raise ValueError(f"random_seeds must be an int >= 1, got {random_seeds!r}")
    base = _base_identity(dense, data, settings)
    points = []
    for strategy, sparsities in sparsities_by_strategy.items():
        _validate_sparsities(sparsities)
        for norm in norms:
            for seed in range(random_seeds) if norm == "random" else [0]:
                fixed = {"strategy": strategy, "criterion": CRITERIA[norm], "seed": seed}
                point = _point_id(experiment="criteria", **base, **fixed, sparsities=dict(sparsities))
                generator = torch.Generator().manual_seed(seed) if norm == "random" else None
                work = partial(_one_row, dense, data, sparsities, strategy, settings,
                               norm=norm, generator=generator)
                points.append((point, f"{strategy} {CRITERIA[norm]} {seed}", fixed, work))
    rows = _run_points(points, cache, progress, "criteria")
    rows = [{**row, "finetune_epochs": settings.recipe.epochs} for row in rows]
    return pd.DataFrame(rows, columns=CRITERIA_COLUMNS)


def iterative_sweep(
    dense: nn.Module,
    data: CifarSplits,
    sparsities: Mapping[str, float],
    strategy: str,
    settings: RecoverySettings,
    *,
    rounds: Sequence[int] = (1, 3),
    total_finetune_epochs: int = 3,
    cache: PointCache | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One-shot against ``k``-round pruning to the same ``sparsities`` with the same total
    fine-tuning epochs (:func:`prune_iteratively`); a schedule is one point (an interrupted
    schedule restarts at round 1). ``settings.recipe.epochs`` is ignored. Columns:
    :data:`ITERATIVE_COLUMNS`, one row per round (``finetune_epochs``: that round's epochs).
    """
    _validate_strategy(strategy)
    _validate_sparsities(sparsities)
    for k in rounds:
        split_epochs(total_finetune_epochs, k)  # checks both
    base = _base_identity(dense, data, settings)
    points = []
    for k in rounds:
        fixed = {"strategy": strategy, "rounds": k}
        point = _point_id(experiment="iterative", **base, **fixed, sparsities=dict(sparsities),
                          total_finetune_epochs=total_finetune_epochs)
        work = partial(_round_rows, dense, data, sparsities, strategy, k, total_finetune_epochs, settings)
        points.append((point, f"{strategy} {k} rounds", fixed, work))
    rows = _run_points(points, cache, progress, f"iterative {strategy}")
    return pd.DataFrame(rows, columns=ITERATIVE_COLUMNS)


# ---------------------------------------------------------------------------------------------
# ... and their resumable drivers on a run


def _dense(run: Run) -> nn.Module:
    return load_model(require(run, "dense.pt"), run.device)[0]


def frontier(
    run: Run,
    budgets: Sequence[float] | None = None,
    strategies: Sequence[str] = STRATEGIES,
    allocations: Sequence[str] = ALLOCATIONS,
    finetune_epochs: int | None = None,
    *,
    force: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`frontier_sweep` on the run's dense model, test split and ``sensitivity_<strategy>.csv``
    scans, cached in ``frontier.csv``. Defaults: the profile's ``budgets`` and ``short_finetune_epochs``."""
    _check_choices("strategies", strategies, STRATEGIES)
    _check_choices("allocations", allocations, ALLOCATIONS)
    budgets = run.profile.budgets if budgets is None else budgets
    epochs = run.profile.short_finetune_epochs if finetune_epochs is None else finetune_epochs
    scans = {s: run.load_csv(f"sensitivity_{s}.csv") for s in strategies} if "guided" in allocations else None
    return frontier_sweep(_dense(run), run.data, budgets, strategies, RecoverySettings.from_run(run, epochs),
                          allocations=allocations, scans=scans,
                          cache=PointCache(run.path("frontier.csv"), refresh=force), progress=progress)


def criteria(
    run: Run,
    sparsities_by_strategy: Mapping[str, Mapping[str, float]],
    norms: Sequence[Norm] = (2, 1, "random"),
    random_seeds: int | None = None,
    finetune_epochs: int | None = None,
    *,
    force: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`criteria_sweep` on the run, cached in ``criteria.csv``. Defaults: the profile's
    ``random_seeds`` and ``short_finetune_epochs``."""
    seeds = run.profile.random_seeds if random_seeds is None else random_seeds
    epochs = run.profile.short_finetune_epochs if finetune_epochs is None else finetune_epochs
    return criteria_sweep(_dense(run), run.data, sparsities_by_strategy, RecoverySettings.from_run(run, epochs),
                          norms=norms, random_seeds=seeds,
                          cache=PointCache(run.path("criteria.csv"), refresh=force), progress=progress)


def iterative(
    run: Run,
    sparsities: Mapping[str, float],
    strategy: str,
    rounds: Sequence[int] | None = None,
    total_finetune_epochs: int | None = None,
    *,
    force: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`iterative_sweep` on the run, cached in ``iterative.csv``. Defaults: the profile's
    ``iterative_rounds`` and its fine-tuning recipe's epochs (Table 2's fine-tuning budget)."""
    rounds = run.profile.iterative_rounds if rounds is None else rounds
    total = run.profile.finetune.epochs if total_finetune_epochs is None else total_finetune_epochs
    return iterative_sweep(_dense(run), run.data, sparsities, strategy, RecoverySettings.from_run(run, total),
                           rounds=rounds, total_finetune_epochs=total,
                           cache=PointCache(run.path("iterative.csv"), refresh=force), progress=progress)
