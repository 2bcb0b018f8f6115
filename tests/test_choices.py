"""No choice of the study reads the test set (issue 33, item 2).

Two tiny runs of the same seed are made in separate directories: one on the generated splits, one
on the same splits with the test split replaced (other images, other labels). Every choice the
study makes (Table 1's per-layer sparsities and the scans behind them, the guided allocation of the
frontier's budgets, the deep scans of the recovered frontier, the plateau read from a recovery
curve, the Taylor importance) must come out identical, while the test accuracies they are reported
with must not: so nothing chosen can have read the test split. :data:`pruning_utils.config.CHOICES`
lists the choices with the data each is made on; this file checks each of its entries.
"""

from __future__ import annotations

import dataclasses
import importlib

import pandas as pd
import pytest
import torch

from pruning_utils import allocation, config, frontier, recovery_study, runs, steps
from pruning_utils.importance import taylor_importance

TINY = {"synthetic_sizes": (400, 100, 100), "epochs": 2, "finetune_epochs": 1, "recalibration_batches": 2,
        "curve_epochs": 3}


def _other_test_split(splits):
    """The same splits with a test split that shares nothing with the real one."""
    generator = torch.Generator().manual_seed(123)
    images = torch.randint(0, 256, splits.test_x.shape, dtype=splits.test_x.dtype, generator=generator)
    return dataclasses.replace(splits, test_x=images, test_y=(splits.test_y + 1) % 10)


def _choices(run: runs.Run) -> dict:
    dense, _ = steps.dense_model(run)
    scans = {s: steps.sensitivity(run, s) for s in steps.STRATEGIES}
    curve = recovery_study.recovery_curve(run, "fine-grained")
    return {
        "table1": steps.chosen_sparsities(run),
        "scans": scans,
        "guided": {(s, b): allocation.allocate("guided", dense, b, s, scans[s])
                   for s in steps.STRATEGIES for b in run.profile.budgets},
        "deep scan": frontier.extended_scan(run, "filter"),
        "plateau": recovery_study.plateau_epoch(curve.set_index("epoch")["val_acc"].iloc[1:]),
        "curve validation": curve["val_acc"],
        "taylor": taylor_importance(dense, run.data.val_x, run.data.val_y,
                                    batch_size=run.profile.importance_batch_size, precision=run.precision),
        # what the choices are reported with: test accuracy
        "reported": (steps.train_dense(run)[2]["test_accuracy"], curve["test_acc"]),
    }


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    real = runs.open_run("smoke", tmp_path_factory.mktemp("real"), progress=False, **TINY)
    load = runs.load_splits
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs, "load_splits", lambda *a, **k: _other_test_split(load(*a, **k)))
        other = runs.open_run("smoke", tmp_path_factory.mktemp("other"), progress=False, **TINY)
    assert not torch.equal(real.data.test_x, other.data.test_x) and torch.equal(real.data.val_x, other.data.val_x)
    return _choices(real), _choices(other)


def test_every_choice_is_the_same_whatever_the_test_split(both):
    real, other = both
    pd.testing.assert_frame_equal(real["table1"], other["table1"])
    for strategy in steps.STRATEGIES:
        pd.testing.assert_frame_equal(real["scans"][strategy], other["scans"][strategy])
    assert real["guided"] == other["guided"]
    pd.testing.assert_frame_equal(real["deep scan"], other["deep scan"])
    assert real["plateau"] == other["plateau"]
    pd.testing.assert_series_equal(real["curve validation"], other["curve validation"])
    for layer in real["taylor"]:
        assert torch.equal(real["taylor"][layer], other["taylor"][layer]), layer


def test_the_test_split_reached_what_is_reported(both):
    """The other test split did change the reported numbers, so the test above can fail."""
    (real_dense, real_curve), (other_dense, other_curve) = both[0]["reported"], both[1]["reported"]
    assert real_dense != other_dense
    assert not real_curve.equals(other_curve)


def test_the_choices_table_names_each_choice_once_with_its_data():
    table = config.choices_table(config.get_profile("cpu"))
    assert table.index.is_unique and len(table) == len(config.CHOICES)
    assert set(table["made on"]) <= {"validation split", "training split", "speed on this machine",
                                     "validation curves", "none"}
    assert "test" not in " ".join(table["made on"])
    assert table.at["per-layer sparsities (Table 1)", "setting"] == "threshold = 0.5"
    assert table.at["fine-tuning length (Table 2)", "setting"] == "finetune.epochs = 20"
    for by in table["by"]:  # each names the function that makes the choice
        module, name = by.split(".")
        assert callable(getattr(importlib.import_module(f"pruning_utils.{module}"), name)), by
