"""Prune, measure, recalibrate BatchNorm, fine-tune, measure: the one recovery procedure.

Every experiment of the study that prunes a model goes through :func:`recover` (Table 2, the
filter-output comparison, the frontier, the criteria and, round by round, iterative pruning):

1. prune (:func:`pruning_utils.masks.prune_model`) and measure test accuracy in eval mode
   (``acc_pruned``) and, if asked, in train mode as the original did (``acc_pruned_train_mode``);
2. re-estimate BatchNorm statistics on ``recalibration_batches`` training batches, measure
   (``acc_recalibrated``);
3. fine-tune with the masks enforced for ``recipe.epochs`` epochs, measure (``acc_finetuned``;
   equal to ``acc_recalibrated`` for 0 epochs).

Accuracies are percentages on the test split. Rows also carry ``conv_weights_kept_pct``,
``params_kept_pct`` and ``multiply_adds_kept_pct`` (masked weights skipped; :mod:`pruning_utils.counting`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .config import Profile, Recipe
from .counting import conv_weights_kept_pct, count_multiply_adds_masked, params_kept_pct
from .criteria import Norm, check_sparsities, check_strategy
from .data import CifarSplits
from .evaluation import evaluate, recalibrate_batchnorm, train_mode_accuracy
from .masks import copy_model, prune_model
from .training import train


@dataclass(frozen=True)
class RecoverySettings:
    """How a pruned model recovers and how it is measured."""

    recipe: Recipe  # fine-tuning recipe (recipe.epochs epochs; 0 = recalibration only)
    batch_size: int  # fine-tuning and BatchNorm recalibration batch size
    recalibration_batches: int  # training batches used to re-estimate BatchNorm statistics
    eval_batch_size: int = 1000  # images per test-evaluation batch
    seed: int = 0  # seeds fine-tuning, recalibration batches and the train-mode measurement order
    precision: str = "fp32"  # bf16 | fp16 | fp32 (resolved)
    train_mode: bool = False  # also measure right after pruning in train mode (the original's way)

    @classmethod
    def from_profile(cls, profile: Profile, seed: int, precision: str, *, epochs: int | None = None,
                     train_mode: bool = False) -> RecoverySettings:
        """The profile's fine-tuning recipe (with ``epochs`` epochs if given) and its other settings."""
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0):
            raise ValueError(f"finetune epochs must be an int >= 0, got {epochs!r}")
        recipe = profile.finetune if epochs is None else replace(profile.finetune, epochs=epochs)
        return cls(recipe, profile.batch_size, profile.recalibration_batches, profile.eval_batch_size, seed,
                   precision, train_mode)

    def with_epochs(self, epochs: int) -> RecoverySettings:
        return replace(self, recipe=replace(self.recipe, epochs=epochs))

    def as_inputs(self) -> dict:
        """Everything a result depends on, for artifact keys (without fine-tuning, the recipe's
        settings other than its 0 epochs do not matter and are left out)."""
        inputs = asdict(self)
        if self.recipe.epochs == 0:
            inputs["recipe"] = {"epochs": 0}
        return inputs


def _accuracy(model: nn.Module, data: CifarSplits, settings: RecoverySettings, device: torch.device) -> float:
    return 100.0 * evaluate(model, data.test_x, data.test_y, batch_size=settings.eval_batch_size, device=device,
                            precision=settings.precision)


def recover(
    model: nn.Module,
    data: CifarSplits,
    sparsities: Mapping[str, float],
    strategy: str,
    settings: RecoverySettings,
    *,
    norm: Norm = 2,
    generator: torch.Generator | None = None,
    importance: Mapping[str, torch.Tensor] | None = None,
    remove_filter_outputs: bool = True,
    checkpoint: str | Path | None = None,
    identity: dict | None = None,
    on_pruned=None,
    track_validation: bool = False,
    track_test: bool = False,
    on_epoch_end=None,
    measure=None,
    progress: bool = False,
    desc: str = "fine-tune",
    **train_options,
) -> tuple[dict, pd.DataFrame]:
    """Prune ``model`` in place to ``sparsities`` and recover it (see the module docstring).

    ``on_pruned(model)`` runs right after pruning (e.g. to save the pruned model). ``checkpoint``
    and ``identity`` make the fine-tuning resumable (:func:`pruning_utils.training.train`);
    ``track_validation`` adds validation accuracy per epoch to the history, ``track_test`` test
    accuracy (percent, column ``test_acc``), ``measure(model)`` columns of its own; ``on_epoch_end`` is
    passed to :func:`pruning_utils.training.train`, with ``train_options`` (``first_epoch`` for
    learning-rate rewinding, ``teacher`` for distillation).
    Returns the row of measurements and the fine-tuning history (empty for 0 epochs).
    """
    check_strategy(strategy)
    check_sparsities(sparsities)
    device = next(model.parameters()).device
    prune_model(model, sparsities, strategy, norm=norm, generator=generator, importance=importance,
                remove_filter_outputs=remove_filter_outputs)
    macs = count_multiply_adds_masked(model)
    row = {"conv_weights_kept_pct": conv_weights_kept_pct(model), "params_kept_pct": params_kept_pct(model),
           "multiply_adds_kept_pct": 100.0 * macs["total"] / macs["total_dense"],
           "acc_pruned": _accuracy(model, data, settings, device)}
    if settings.train_mode:
        row["acc_pruned_train_mode"] = 100.0 * train_mode_accuracy(
            model, data.test_x, data.test_y, batch_size=settings.batch_size, seed=settings.seed, device=device,
            precision=settings.precision)
    if on_pruned is not None:
        on_pruned(model)
    recalibrate_batchnorm(model, data.train_x, num_batches=settings.recalibration_batches,
                          batch_size=settings.batch_size, seed=settings.seed, device=device,
                          precision=settings.precision)
    row["acc_recalibrated"] = _accuracy(model, data, settings, device)
    history = pd.DataFrame()
    if settings.recipe.epochs > 0:
        history = train(model, data.train_x, data.train_y, settings.recipe, batch_size=settings.batch_size,
                        val=(data.val_x, data.val_y) if track_validation else None, seed=settings.seed, device=device,
                        precision=settings.precision, checkpoint=checkpoint, identity=identity,
                        eval_batch_size=settings.eval_batch_size, progress=progress, desc=desc,
                        on_epoch_end=on_epoch_end,
                        measure=lambda m: {**({"test_acc": _accuracy(m, data, settings, device)} if track_test else {}),
                                           **(measure(m) if measure is not None else {})},
                        **train_options)
    model.eval()
    row["acc_finetuned"] = _accuracy(model, data, settings, device) if settings.recipe.epochs > 0 \
        else row["acc_recalibrated"]
    row["finetune_epochs"] = settings.recipe.epochs
    return row, history


def prune_and_recover(dense: nn.Module, data: CifarSplits, sparsities: Mapping[str, float], strategy: str,
                      settings: RecoverySettings, **kwargs) -> dict:
    """:func:`recover` on a copy of ``dense`` (one shot); returns the row."""
    return recover(copy_model(dense), data, sparsities, strategy, settings, **kwargs)[0]


def geometric_schedule(sparsities: Mapping[str, float], rounds: int) -> list[dict[str, float]]:
    """Per-layer sparsities after each of ``rounds`` rounds: the kept fraction shrinks
    geometrically, ``kept_r = kept_final ** (r / rounds)``, i.e. ``s_r = 1 - (1 - s) ** (r / rounds)``;
    the last round is ``sparsities`` exactly."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    check_sparsities(sparsities)
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


def prune_iteratively(dense: nn.Module, data: CifarSplits, sparsities: Mapping[str, float], strategy: str,
                      rounds: int, settings: RecoverySettings) -> tuple[nn.Module, list[dict]]:
    """Reach ``sparsities`` in ``rounds`` rounds of :func:`recover` on one copy of ``dense``, with the
    sparsities of :func:`geometric_schedule` and ``settings.recipe.epochs`` epochs in total
    (:func:`split_epochs`). Returns the final model and one row per round (``round``,
    ``conv_weights_kept_pct``, ``acc_after_round`` = test % after that round, ``finetune_epochs``)."""
    schedule, epochs = geometric_schedule(sparsities, rounds), split_epochs(settings.recipe.epochs, rounds)
    model = copy_model(dense)
    rows = []
    for r, (target, n_epochs) in enumerate(zip(schedule, epochs), start=1):
        row, _ = recover(model, data, target, strategy, settings.with_epochs(n_epochs))
        rows.append({"round": r, "conv_weights_kept_pct": row["conv_weights_kept_pct"],
                     "acc_after_round": row["acc_finetuned"], "finetune_epochs": n_epochs})
    return model, rows


def check_choices(name: str, values: Sequence, valid: Sequence) -> None:
    """ValueError unless ``values`` is a non-empty selection from ``valid``."""
    bad = [v for v in values if v not in valid]
    if bad or not values:
        raise ValueError(f"{name} must be a non-empty selection of {list(valid)}, got {list(values)!r}")
