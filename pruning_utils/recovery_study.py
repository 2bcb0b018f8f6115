"""How far pruned models recover (notebook 07).

Steps on one run (each keyed by its inputs, like :mod:`pruning_utils.steps`):

- :func:`recovery_curve`: prune at Table 1's sparsities and fine-tune at a small constant rate
  (as the original fine-tuned, though it used Adam at 1e-4: here the profile's optimizer at ``curve_lr``
  for ``curve_epochs`` epochs), measuring validation and test
  accuracy after every epoch (``recovery_curve_<strategy>.csv``). :func:`plateau_epoch` reads
  where it levels off: the first epoch after which 5 more epochs gain less than 0.2 points of
  (3-epoch smoothed) validation accuracy.
- :func:`original_budgets`: the original report's Table 1 sparsities
  (:data:`pruning_utils.original.TABLE1`) applied to our model and recovered with the profile's
  fine-tuning (``original_budgets.csv``): accuracy at equal per-layer sparsity.
- :func:`recovery_methods`: the ways to recover at equal epochs (``recovery_methods.csv``).

The narrow dense networks are in :mod:`pruning_utils.narrow`, the recovered frontier in
:mod:`pruning_utils.frontier`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from functools import partial

import numpy as np
import pandas as pd
import torch

from .criteria import STRATEGIES, check_strategy
from .counting import emptied_filters
from .evaluation import evaluate, recalibrate_batchnorm, train_mode_accuracy
from .experiments import Point, experiment_table, point_base
from .masks import copy_model, mask_inputs
from .original import TABLE1 as ORIGINAL_TABLE1
from .recovery import RecoverySettings, prune_and_recover, recover
from .runs import Run
from .steps import (checkpoint_path, dense_model, epoch_logger, pruned_model, recovery_settings, sparsity_dict,
                    strategy_sparsities, table2)
from .artifacts import step_key

PLATEAU_WINDOW = 5  # epochs
PLATEAU_MIN_GAIN = 0.2  # accuracy points
PLATEAU_SMOOTHING = 3  # epochs in the centred moving average
CURVE_COLUMNS = ["epoch", "val_acc", "test_acc", "loss", "seconds"]
BUDGET_COLUMNS = ["strategy", "conv_weights_kept_pct", "params_kept_pct", "multiply_adds_kept_pct", "acc_pruned",
                  "acc_recalibrated", "acc_finetuned", "finetune_epochs"]


# --- recovery curves --------------------------------------------------------------------------------


def curve_settings(run: Run) -> RecoverySettings:
    """The profile's fine-tuning at the constant rate ``curve_lr`` for ``curve_epochs`` epochs."""
    base = recovery_settings(run, epochs=run.profile.curve_epochs)
    return replace(base, recipe=replace(base.recipe, schedule="constant", lr=run.profile.curve_lr))


def _curve_inputs(run: Run, strategy: str) -> tuple[dict[str, float], torch.nn.Module, RecoverySettings, dict]:
    """A recovery curve's sparsities (Table 1's), dense model, settings and step inputs."""
    check_strategy(strategy)
    sparsities = strategy_sparsities(run, strategy)
    dense, dense_key = dense_model(run)
    settings = curve_settings(run)
    inputs = {"dense": dense_key, "data": run.data_inputs(), "strategy": strategy, **mask_inputs(strategy),
              "sparsities": sparsities, "recovery": settings.as_inputs()}
    return sparsities, dense, settings, inputs


def recovery_curve(run: Run, strategy: str, force: bool | None = None) -> pd.DataFrame:
    """Accuracy (%) after each fine-tuning epoch at Table 1's sparsities; epoch 0 is after BN recalibration."""
    sparsities, dense, settings, inputs = _curve_inputs(run, strategy)
    name = f"recovery_curve_{strategy}.csv"
    forced = run.force if force is None else force

    def compute(key: str) -> None:
        checkpoint = checkpoint_path(run, f"curve_{strategy}", key, forced)
        identity = {"step": "recovery_curve", "key": key, "seed": run.seed, "strategy": strategy,
                    "recipe": asdict(settings.recipe)}
        row, history = recover(copy_model(dense), run.data, sparsities, strategy, settings, track_validation=True,
                               track_test=True, checkpoint=checkpoint, identity=identity,
                               on_epoch_end=epoch_logger(run, f"recovery curve {strategy}", settings.recipe.epochs))
        start = pd.DataFrame([{"epoch": 0, "test_acc": row["acc_recalibrated"]}])
        curve = pd.concat([start, history.assign(val_acc=100 * history["val_acc"])], ignore_index=True)
        run.save_csv(name, curve.reindex(columns=CURVE_COLUMNS))
        checkpoint.unlink(missing_ok=True)

    run.step("recovery_curve", [name], inputs, compute, force, strategy)
    return run.load_csv(name)


def recovery_curves(run: Run) -> pd.DataFrame:
    """Every strategy's :func:`recovery_curve` in one frame, with a ``strategy`` column first."""
    frame = pd.concat({s: recovery_curve(run, s) for s in STRATEGIES}, names=["strategy"])
    return frame.reset_index(0).reset_index(drop=True)


BATCHNORM_CHECK_COLUMNS = ["epoch", "val_acc", "val_acc_recalibrated", "val_acc_batch_stats", "loss", "train_acc"]


def curve_batchnorm_check(run: Run, strategy: str, force: bool | None = None) -> pd.DataFrame:
    """Whether a recovery curve's jumps come from BatchNorm's running statistics or from the weights.

    The curve of ``strategy`` (:func:`recovery_curve`'s settings, seed and sparsities, so the same
    training) is run again, and after every epoch validation accuracy (%) is measured three ways:
    ``val_acc`` in eval mode with the running statistics (what the curve shows),
    ``val_acc_recalibrated`` after re-estimating them on training batches
    (:func:`pruning_utils.evaluation.recalibrate_batchnorm`, on a copy) and ``val_acc_batch_stats``
    with each batch's own statistics (:func:`pruning_utils.evaluation.train_mode_accuracy`). Neither
    measurement touches the model or the random state the training goes on with, so on one machine
    ``val_acc`` is the curve's (``recovery_curve_batchnorm_<strategy>.csv``). Falls in ``val_acc``
    alone point at stale running statistics; falls in all three, at the weights (with ``loss``)."""
    sparsities, dense, settings, inputs = _curve_inputs(run, strategy)
    name = f"recovery_curve_batchnorm_{strategy}.csv"
    forced = run.force if force is None else force

    def measure(model: torch.nn.Module) -> dict:
        probe = recalibrate_batchnorm(copy_model(model), run.data.train_x, num_batches=settings.recalibration_batches,
                                      batch_size=settings.batch_size, seed=settings.seed, precision=settings.precision)
        val = (run.data.val_x, run.data.val_y)
        return {"val_acc_recalibrated": 100 * evaluate(probe, *val, batch_size=settings.eval_batch_size,
                                                       precision=settings.precision),
                "val_acc_batch_stats": 100 * train_mode_accuracy(model, *val, batch_size=settings.batch_size,
                                                                 seed=settings.seed, precision=settings.precision)}

    def compute(key: str) -> None:
        checkpoint = checkpoint_path(run, f"curve_batchnorm_{strategy}", key, forced)
        identity = {"step": "curve_batchnorm_check", "key": key, "seed": run.seed, "strategy": strategy}
        _, history = recover(copy_model(dense), run.data, sparsities, strategy, settings, track_validation=True,
                             checkpoint=checkpoint, identity=identity, measure=measure,
                             on_epoch_end=epoch_logger(run, f"BatchNorm check {strategy}", settings.recipe.epochs))
        run.save_csv(name, history.assign(val_acc=100 * history["val_acc"], train_acc=100 * history["train_acc"])
                     .reindex(columns=BATCHNORM_CHECK_COLUMNS))
        checkpoint.unlink(missing_ok=True)

    run.step("curve_batchnorm_check", [name], inputs, compute, force, strategy)
    return run.load_csv(name)


def plateau_epoch(accuracy: pd.Series, window: int = PLATEAU_WINDOW, min_gain: float = PLATEAU_MIN_GAIN,
                  smoothing: int = PLATEAU_SMOOTHING) -> int | None:
    """The first epoch e (of ``accuracy``, indexed by epoch) after which ``window`` more epochs gain
    less than ``min_gain`` points of the centred ``smoothing``-epoch moving average; None if the
    curve is too short to show one."""
    if window < 1 or smoothing < 1:
        raise ValueError(f"window and smoothing must be >= 1, got {window!r}, {smoothing!r}")
    smooth = accuracy.rolling(smoothing, center=True, min_periods=1).mean()
    epochs = list(smooth.index)
    for i, epoch in enumerate(epochs):
        if i + window < len(epochs) and smooth.iloc[i + window] - smooth.iloc[i] < min_gain:
            return int(epoch)
    return None


UNSTABLE_DROP = 5.0  # points: a curve whose validation accuracy falls more than this between two epochs is unstable


def largest_fall(values: pd.Series | pd.DataFrame) -> float:
    """The largest fall from one epoch to the next (rows are epochs; over every column of a frame);
    0 for a curve that never falls or has one epoch."""
    falls = (-values.diff()).to_numpy(dtype=float)
    return max(0.0, float(np.nanmax(falls))) if len(values) > 1 else 0.0


def curve_readout(frame: pd.DataFrame, finetune_epochs: int) -> pd.DataFrame:
    """Per strategy, what the recovery curves of several seeds (:func:`recovery_curves` with a
    ``seed`` column) say: the plateau of the seeds' mean validation curve and of each seed's, test
    accuracy (mean, sd) at ``finetune_epochs`` (Table 2's length) and at the curves' end, and the
    largest fall of validation accuracy from one epoch to the next on any seed (``max_drop``;
    above :data:`UNSTABLE_DROP`, ``unstable``: a plateau read from such a curve means little)."""
    rows = []
    for strategy, group in frame[frame["epoch"] >= 1].groupby("strategy", sort=False):
        val = group.pivot(index="epoch", columns="seed", values="val_acc")
        test = group.pivot(index="epoch", columns="seed", values="test_acc")
        end = int(test.index.max())
        at_finetune = test.loc[finetune_epochs] if finetune_epochs in test.index else pd.Series(dtype=float)
        drop = largest_fall(val)
        rows.append({"strategy": strategy, "seeds": val.shape[1], "plateau_mean_curve": plateau_epoch(val.mean(axis=1)),
                     "plateau_seeds": [plateau_epoch(val[c]) for c in val.columns],
                     "finetune_epochs": finetune_epochs, "end_epoch": end,
                     "test_at_finetune": at_finetune.mean(), "test_at_finetune_sd": at_finetune.std(),
                     "test_at_end": test.loc[end].mean(), "test_at_end_sd": test.loc[end].std(),
                     "max_drop": drop, "unstable": drop > UNSTABLE_DROP})
    readout = pd.DataFrame(rows).set_index("strategy")
    # an epoch or None (no plateau), never NaN
    readout["plateau_mean_curve"] = pd.Series([r["plateau_mean_curve"] for r in rows], index=readout.index, dtype=object)
    return readout


def emptied_filters_at_table1(run: Run, strategy: str) -> dict[str, tuple[int, int]]:
    """Which filters the run's dense model pruned at Table 1's sparsities (where the recovery curves
    start) has with no weight left (:func:`pruning_utils.counting.emptied_filters`)."""
    return emptied_filters(pruned_model(run, strategy))


def batchnorm_readout(check: pd.DataFrame, curves: pd.DataFrame | None = None,
                      emptied: Mapping[tuple[str, int], Mapping[str, tuple[int, int]]] | None = None) -> pd.DataFrame:
    """Per strategy and seed (``check``: :func:`curve_batchnorm_check` rows with ``strategy`` and
    ``seed`` columns), the largest fall of validation accuracy from one epoch to the next as the
    curve measures it (``fall_eval``), after re-estimating BatchNorm's statistics
    (``fall_recalibrated``) and with batch statistics (``fall_batch_stats``); ``falls``: how many of
    the eval-mode falls exceed :data:`UNSTABLE_DROP`, and ``recovered_at_falls``: how many points the
    re-estimation adds at those epochs, on average; ``plateau_recalibrated``: where the re-estimated
    curve levels off (:func:`plateau_epoch`; None if it does not). ``cause``: ``running statistics`` where the
    eval-mode curve falls beyond :data:`UNSTABLE_DROP` and the re-estimated one does not, ``weights``
    where both do, ``stable`` where the eval-mode curve does not. With ``curves``
    (:func:`recovery_curves` rows with a ``seed`` column), ``same_as_curve`` says whether the check's
    eval-mode column is the curve's (False: computed on another machine, whose numbers differ; None:
    no curve). With ``emptied`` (``{(strategy, seed): emptied_filters_at_table1(...)}``),
    ``emptied_filters`` lists the filters left with no weight ("conv0 11/16, ..." or "none")."""
    rows = []
    for (strategy, seed), group in check.sort_values("epoch").groupby(["strategy", "seed"], sort=False):
        largest = {c: largest_fall(group[c]) for c in ("val_acc", "val_acc_recalibrated", "val_acc_batch_stats")}
        big = -group["val_acc"].diff() > UNSTABLE_DROP
        gap = (group["val_acc_recalibrated"] - group["val_acc"])[big]
        rows.append({"strategy": strategy, "seed": seed, "epochs": len(group), "fall_eval": largest["val_acc"],
                     "fall_recalibrated": largest["val_acc_recalibrated"],
                     "fall_batch_stats": largest["val_acc_batch_stats"],
                     "falls": int(big.sum()), "recovered_at_falls": float(gap.mean()) if len(gap) else float("nan"),
                     "plateau_recalibrated": plateau_epoch(group.set_index("epoch")["val_acc_recalibrated"]),
                     "cause": ("stable" if largest["val_acc"] <= UNSTABLE_DROP else
                               "weights" if largest["val_acc_recalibrated"] > UNSTABLE_DROP else "running statistics")})
        if curves is not None:
            curve = curves[(curves["strategy"] == strategy) & (curves["seed"] == seed) & (curves["epoch"] >= 1)]
            rows[-1]["same_as_curve"] = curve["val_acc"].tolist() == group["val_acc"].tolist() if len(curve) else None
        if emptied is not None and (strategy, seed) in emptied:
            rows[-1]["emptied_filters"] = ", ".join(f"{layer} {n}/{of}" for layer, (n, of)
                                                    in emptied[(strategy, seed)].items()) or "none"
    readout = pd.DataFrame(rows).set_index(["strategy", "seed"])
    readout["plateau_recalibrated"] = pd.Series([r["plateau_recalibrated"] for r in rows], index=readout.index,
                                                dtype=object)  # an epoch or None, never NaN
    return readout


# --- the original's budgets -------------------------------------------------------------------------


def original_sparsities(strategy: str) -> dict[str, float]:
    """The original report's Table 1 column for ``strategy`` as ``{layer: sparsity}``."""
    return sparsity_dict(ORIGINAL_TABLE1, strategy)


def original_budgets(run: Run, force: bool | None = None) -> pd.DataFrame:
    """Each strategy pruned at the original's per-layer sparsities and recovered as Table 2."""
    dense, dense_key = dense_model(run)
    settings = recovery_settings(run)
    points: list[Point] = []
    for strategy in STRATEGIES:
        sparsities = original_sparsities(strategy)
        fixed = {"strategy": strategy}
        key = step_key("original_budgets", {**point_base(run, dense_key), **fixed, **mask_inputs(strategy),
                                            "sparsities": sparsities,
                                            "recovery": settings.as_inputs()})
        work = partial(lambda s, sp: [prune_and_recover(dense, run.data, sp, s, settings)], strategy, sparsities)
        points.append((key, strategy, fixed, work))
    return experiment_table(run, "original_budgets", points, BUDGET_COLUMNS, force)


# Issue 10's targets: after recovery at Table 1's sparsities, mean drop from dense in points.
RECOVERY_TARGETS: dict[str, float] = {"fine-grained": 1.0, "kernel": 2.0, "filter": 1.5}


# --- ways to recover, at equal epochs ----------------------------------------------------------------

DISTILL_ALPHA = 0.9  # weight of the distillation term (Hinton et al. 2015; 0.9 with T = 4 is common on CIFAR)
DISTILL_TEMPERATURE = 4.0
METHODS = ("constant rate", "one-cycle (Table 2)", "LR rewinding", "distillation")
METHOD_COLUMNS = ["strategy", "method", "epochs", "acc_finetuned", "conv_weights_kept_pct"]


def _recover_with(run: Run, dense, sparsities, strategy: str, settings: RecoverySettings, **options) -> list[dict]:
    row, _ = recover(copy_model(dense), run.data, sparsities, strategy, settings, **options)
    return [row]


def _method_epochs(run: Run) -> int:
    """Table 2's fine-tuning epochs, which every method gets; ValueError where the curve or the dense
    schedule is too short to compare them."""
    epochs = run.profile.finetune.epochs
    if epochs > run.profile.curve_epochs or epochs >= run.profile.train.epochs:
        raise ValueError(f"recovery methods compare {epochs} epochs: needs curve_epochs >= {epochs} and "
                         f"more dense epochs than that (have {run.profile.curve_epochs}, {run.profile.train.epochs})")
    return epochs


def trained_method_points(run: Run, strategy: str) -> list[Point]:
    """The two methods of :func:`recovery_methods` that train (LR rewinding, distillation) for
    ``strategy``: points keyed by their inputs alone, so they can be computed (and their rows cached
    in ``points/recovery_methods.csv``) before or apart from the measured ones."""
    epochs = _method_epochs(run)
    dense, dense_key = dense_model(run)
    sparsities = strategy_sparsities(run, strategy)
    settings = recovery_settings(run)
    base = {**point_base(run, dense_key), "strategy": strategy, **mask_inputs(strategy), "sparsities": sparsities}
    trained = {"LR rewinding": (replace(settings, recipe=run.profile.train),
                                {"first_epoch": run.profile.train.epochs - epochs}),
               "distillation": (settings, {"teacher": dense, "distill_alpha": DISTILL_ALPHA,
                                           "distill_temperature": DISTILL_TEMPERATURE})}
    points: list[Point] = []
    for method, (how, options) in trained.items():
        named = {k: v for k, v in options.items() if k != "teacher"}
        key = step_key("recovery_methods", {**base, "method": method, "recovery": how.as_inputs(), **named})
        points.append((key, f"{strategy} {method}", {"strategy": strategy, "method": method, "epochs": epochs},
                       partial(_recover_with, run, dense, sparsities, strategy, how, **options)))
    return points


def recovery_methods(run: Run, force: bool | None = None) -> pd.DataFrame:
    """Each strategy at Table 1's sparsities recovered for the same number of epochs (Table 2's) in
    four ways: a small constant rate (the original's kind of fine-tuning, read from the recovery curve at that
    epoch), the profile's one-cycle fine-tuning (Table 2), learning-rate rewinding (the dense
    recipe's last epochs, Renda et al. 2020), and the one-cycle fine-tuning with distillation from
    the dense model (``DISTILL_ALPHA``, ``DISTILL_TEMPERATURE``; :func:`trained_method_points`)."""
    epochs = _method_epochs(run)
    table2_rows = table2(run, force=False).set_index("strategy")
    points: list[Point] = []
    for strategy in STRATEGIES:
        curve = recovery_curve(run, strategy, force=False).set_index("epoch")
        known = {"constant rate": curve.at[epochs, "test_acc"],
                 "one-cycle (Table 2)": table2_rows.at[strategy, "acc_finetuned"]}
        kept = table2_rows.at[strategy, "conv_weights_kept_pct"]
        for method, value in known.items():  # already measured: a point whose work returns the stored number
            key = step_key("recovery_methods", {"measured": method, "strategy": strategy, "value": float(value)})
            points.append((key, f"{strategy} {method}", {"strategy": strategy, "method": method, "epochs": epochs},
                           partial(lambda v, k: [{"acc_finetuned": float(v), "conv_weights_kept_pct": float(k)}],
                                   value, kept)))
        points += trained_method_points(run, strategy)
    return experiment_table(run, "recovery_methods", points, METHOD_COLUMNS, force)
