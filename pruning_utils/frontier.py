"""The frontier: accuracy against the fraction of conv weights kept, per strategy and allocation.

- :func:`frontier_points` and :func:`frontier` (notebook 06): each strategy pruned to the profile's
  ``budgets`` with each allocation (:mod:`pruning_utils.allocation`), measured after pruning, after
  BatchNorm recalibration and after a short fine-tune (``frontier.csv``).
- :func:`frontier_sizes`: each point's *effective* size, what its compacted model keeps: the budgets
  are masked counts, and a filter-pruned model keeps far fewer weights once compacted.
- :func:`deep_scan` and :func:`recovered_frontier` (notebook 07): each layer alone scanned at the
  profile's ``deep_scan_sparsities`` (beyond the scan's grid, where notebook 06's frontier
  extrapolates), then the guided frontier at ``recovered_budgets`` with those measured accuracies and
  Table 2's fine-tuning (``deep_scan_<strategy>.csv``, ``recovered_frontier.csv``);
  :func:`frontier_exceptions` lists where a frontier is not monotone.

Points are run and stored as :mod:`pruning_utils.experiments` runs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import pandas as pd
from torch import nn

from .allocation import ALLOCATIONS, STUDY_ALLOCATIONS, allocate, check_budget
from .artifacts import step_key
from .compact import effective_counts
from .criteria import STRATEGIES, unit_scores, units_removed
from .evaluation import evaluate
from .experiments import MEASURED, Point, experiment_table, point_base, point_row
from .masks import copy_model, mask_inputs, prune_model
from .model import conv_layers
from .recovery import RecoverySettings, check_choices
from .runs import Run
from .sensitivity import COLUMNS as SCAN_COLUMNS, scan_sensitivity
from .steps import check_strategy_parameter, dense_model, recovery_settings, sensitivity

FRONTIER_COLUMNS = ["strategy", "allocation", "budget", *MEASURED]


def frontier_points(dense: nn.Module, data, base: dict, budgets: Sequence[float], strategies: Sequence[str],
                    settings: RecoverySettings, allocations: Sequence[str] = STUDY_ALLOCATIONS,
                    scans: Mapping[str, pd.DataFrame] | None = None) -> list[Point]:
    """One point per (strategy, allocation, budget); ``guided`` needs ``scans[strategy]``.
    All allocations are computed before any training, so a bad budget fails fast."""
    check_choices("strategies", strategies, STRATEGIES)
    check_choices("allocations", allocations, ALLOCATIONS)
    for budget in budgets:
        check_budget(budget)
    convs = conv_layers(dense)
    points = []
    for strategy in strategies:
        units = {name: unit_scores(conv.weight, strategy).numel() for name, conv in convs.items()}
        for allocation in allocations:
            for budget in budgets:
                sparsities = allocate(allocation, dense, budget, strategy, scans.get(strategy) if scans else None)
                for name, s in sparsities.items():
                    try:
                        units_removed(s, units[name])
                    except ValueError as error:
                        raise ValueError(f"{strategy} {allocation} budget {budget}: {name}: {error}") from None
                fixed = {"strategy": strategy, "allocation": allocation, "budget": float(budget)}
                key = step_key("frontier", {**base, **fixed, **mask_inputs(strategy), "sparsities": sparsities,
                                            "recovery": settings.as_inputs()})
                work = partial(point_row, dense, data, sparsities, strategy, settings)
                points.append((key, f"{strategy} {allocation} {budget}", fixed, work))
    return points


def frontier(run: Run, budgets: Sequence[float] | None = None, strategies: Sequence[str] = STRATEGIES,
             allocations: Sequence[str] | None = None, finetune_epochs: int | None = None,
             force: bool | None = None) -> pd.DataFrame:
    """The frontier on the run (defaults: the profile's ``budgets``, ``allocations`` and
    ``short_finetune_epochs``)."""
    allocations = run.profile.allocations if allocations is None else allocations
    check_choices("strategies", strategies, STRATEGIES)
    check_choices("allocations", allocations, ALLOCATIONS)
    for budget in run.profile.budgets if budgets is None else budgets:
        check_budget(budget)
    dense, dense_key = dense_model(run)
    epochs = run.profile.short_finetune_epochs if finetune_epochs is None else finetune_epochs
    scans = {s: sensitivity(run, s, force=False) for s in strategies} if "guided" in allocations else None
    points = frontier_points(dense, run.data, point_base(run, dense_key), run.profile.budgets if budgets is None
                             else budgets, strategies, recovery_settings(run, epochs), allocations, scans)
    return experiment_table(run, "frontier", points, FRONTIER_COLUMNS, force)


def frontier_sizes(front: pd.DataFrame, dense: nn.Module,
                   scans: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """``front`` (a :func:`frontier` table of ``dense``) with each point's *effective* size beside its
    masked one: ``conv_weights_effective_pct`` and ``multiply_adds_effective_pct``, what the point's
    model keeps once compacted (:func:`pruning_utils.compact.effective_counts`). Each point's masks are
    made again from ``dense`` (and ``scans[strategy]``, the validation scans, for ``guided``) in about
    a second; nothing is trained. The budgets are masked counts, so a filter point keeps far less."""
    rows = []
    for _, point in front.iterrows():
        scan = scans.get(point["strategy"]) if scans else None
        sparsities = allocate(point["allocation"], dense, point["budget"], point["strategy"], scan)
        counts = effective_counts(prune_model(copy_model(dense), sparsities, point["strategy"]))
        rows.append({"conv_weights_effective_pct": 100 * counts["conv_weights"] / counts["conv_weights_dense"],
                     "multiply_adds_effective_pct": 100 * counts["multiply_adds"] / counts["multiply_adds_dense"]})
    return front.assign(**pd.DataFrame(rows, index=front.index))


def deep_scan(run: Run, strategy: str, force: bool | None = None) -> pd.DataFrame:
    """Each conv layer alone pruned to the profile's ``deep_scan_sparsities`` (and 0, the dense
    model), validation accuracy: the scan continued where notebook 06's frontier extrapolates.
    A sparsity that would remove every unit of a layer (``round(s * units) == units``, e.g. 0.98
    of 16 filters) is not scanned for that layer."""
    check_strategy_parameter(strategy, allow_all=False)
    dense, dense_key = dense_model(run)
    inputs = {"dense": dense_key, "data": run.data_inputs(), "strategy": strategy, **mask_inputs(strategy),
              **run.settings("deep_scan_sparsities", "eval_batch_size", "precision")}

    def compute(key: str) -> None:
        p, x, y = run.profile, run.data.val_x, run.data.val_y
        dense_acc = evaluate(dense, x, y, batch_size=p.eval_batch_size, precision=run.precision)
        parts = []
        for layer, conv in conv_layers(dense).items():
            units = unit_scores(conv.weight, strategy).numel()
            kept = [s for s in p.deep_scan_sparsities if round(s * units) < units]  # one unit must stay
            parts.append(pd.DataFrame([(strategy, layer, 0.0, dense_acc)], columns=SCAN_COLUMNS))
            if kept:
                parts.append(scan_sensitivity(dense, x, y, strategy, sparsities=kept, layers=[layer],
                                              batch_size=p.eval_batch_size, precision=run.precision, progress=False))
        run.save_csv(f"deep_scan_{strategy}.csv", pd.concat(parts, ignore_index=True))

    run.step("deep_scan", [f"deep_scan_{strategy}.csv"], inputs, compute, force, strategy)
    return run.load_csv(f"deep_scan_{strategy}.csv")


def extended_scan(run: Run, strategy: str) -> pd.DataFrame:
    """The strategy's scan (notebook 02's grid) with the deep sparsities appended, per layer."""
    scan = sensitivity(run, strategy, force=False)
    deep = deep_scan(run, strategy, force=False)
    return pd.concat([scan, deep[deep["sparsity"] > scan["sparsity"].max()]], ignore_index=True)


def recovered_frontier(run: Run, force: bool | None = None) -> pd.DataFrame:
    """The guided frontier at ``recovered_budgets``: per-layer sparsities chosen on the extended
    (measured, not extrapolated) scans, each model recovered with Table 2's fine-tuning."""
    dense, dense_key = dense_model(run)
    scans = {s: extended_scan(run, s) for s in STRATEGIES}
    points = frontier_points(dense, run.data, point_base(run, dense_key), run.profile.recovered_budgets, STRATEGIES,
                             recovery_settings(run), ("guided",), scans)
    return experiment_table(run, "recovered_frontier", points, FRONTIER_COLUMNS, force)


def frontier_exceptions(front: pd.DataFrame, spread: float, column: str = "acc_finetuned") -> pd.DataFrame:
    """Where a frontier is not monotone: per strategy and allocation, a smaller budget whose
    ``column`` exceeds a larger budget's by more than ``spread`` points: the frontier's own spread
    (points over several seeds), or 0 for single-seed points, whose every inversion is listed. NaN
    counts as 0."""
    spread = 0.0 if spread != spread else spread
    rows = []
    for (strategy, allocation), group in front.groupby(["strategy", "allocation"], sort=False):
        group = group.sort_values("budget", ascending=False)
        for i, (_, larger) in enumerate(group.iterrows()):
            for _, smaller in group.iloc[i + 1:].iterrows():
                gain = smaller[column] - larger[column]
                if gain > spread:
                    rows.append({"strategy": strategy, "allocation": allocation, "larger budget": larger["budget"],
                                 "smaller budget": smaller["budget"], "gain (points)": round(gain, 2)})
    return pd.DataFrame(rows, columns=["strategy", "allocation", "larger budget", "smaller budget", "gain (points)"])
