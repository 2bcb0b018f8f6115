"""Profiles: named, printable, overridable, and strict about names."""

import json

import pytest

from pruning_utils.config import PROFILES, Recipe, get_profile


def test_paper_profile_is_the_original_recipe():
    paper = get_profile("paper")
    assert paper.width == 1.0 and paper.batch_size == 512
    assert (paper.train.optimizer, paper.train.lr, paper.train.epochs) == ("adam", 1e-4, 100)
    assert (paper.finetune.optimizer, paper.finetune.lr, paper.finetune.epochs) == ("adam", 1e-4, 20)
    assert paper.scan_sparsities == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert paper.threshold == 0.5


def test_report_batch_size_is_selectable():
    assert get_profile("paper", batch_size=64).batch_size == 64


def test_overrides_and_recipe_shortcuts():
    p = get_profile("smoke", epochs=7, finetune_epochs=2, width=0.5)
    assert (p.train.epochs, p.finetune.epochs, p.width) == (7, 2, 0.5)
    assert PROFILES["smoke"].train.epochs != 7  # the registry is not mutated


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError, match="paper, cpu, smoke"):
        get_profile("fast")


def test_unknown_setting_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'epoch'"):
        get_profile("cpu", epoch=3)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="optimizer 'rmsprop'"):
        Recipe(epochs=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="schedule 'cosine'"):
        Recipe(epochs=1, schedule="cosine")
    with pytest.raises(ValueError, match=r"^lr must be a number in \(0\.0, inf\), got 0\.0$"):
        Recipe(epochs=1, lr=0.0)
    with pytest.raises(ValueError, match=r"^momentum must be .*got 1\.0$"):
        Recipe(epochs=1, momentum=1.0)
    with pytest.raises(ValueError, match="precision"):
        get_profile("cpu", precision="int8")
    with pytest.raises(ValueError, match="threshold"):
        get_profile("cpu", threshold=1.5)


@pytest.mark.parametrize("setting,value,message", [
    ("width", 0, r"^width must be a number in \(0\.0, inf\), got 0$"),
    ("batch_size", 0, r"^batch_size must be an integer >= 1, got 0$"),
    ("epochs", 2.5, r"^epochs must be an integer >= 0, got 2\.5$"),
    ("finetune_epochs", -1, r"^epochs must be an integer >= 0, got -1$"),
    ("threshold", 1.0, r"^threshold must be a number in \(0\.0, 1\.0\), got 1\.0$"),
    ("val_size", 55, r"^val_size must be a multiple of 10 .*got 55$"),
    ("eval_batch_size", 0, r"^eval_batch_size must be an integer >= 1, got 0$"),
    ("importance_batch_size", 0, r"^importance_batch_size must be an integer >= 1, got 0$"),
    ("dropout", 1.0, r"^dropout must be .*got 1\.0$"),
    ("recalibration_batches", -1, r"^recalibration_batches must be an integer >= 0, got -1$"),
    ("random_seeds", True, r"^random_seeds must be an integer >= 1, got True$"),
    ("budgets", (0.5, 0.0), r"^budgets must be .*got 0\.0$"),
    ("scan_sparsities", (0.1, 0.5), r"^scan_sparsities must start at 0\.0"),
    ("scan_sparsities", (0.0, 1.0), r"^scan_sparsities must be .*got 1\.0$"),
    ("iterative_rounds", (1, 0), r"^iterative_rounds must be an integer >= 1, got 0$"),
])
def test_impossible_values_are_refused_naming_the_setting(setting, value, message):
    with pytest.raises(ValueError, match=message):
        get_profile("cpu", **{setting: value})


def test_valid_edge_values_are_accepted():
    p = get_profile("smoke", width=0.01, batch_size=1, epochs=0, threshold=0.99, val_size=0, eval_batch_size=1,
                    recalibration_batches=0, short_finetune_epochs=0)
    assert (p.width, p.batch_size, p.train.epochs, p.val_size) == (0.01, 1, 0, 0)


def test_describe_is_json_with_every_setting():
    d = json.loads(get_profile("cpu").describe())
    assert d["name"] == "cpu" and d["train"]["epochs"] == 25 and d["width"] == 0.25
