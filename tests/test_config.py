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
    with pytest.raises(ValueError, match="optimizer"):
        Recipe(epochs=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="precision"):
        get_profile("cpu", precision="int8")
    with pytest.raises(ValueError, match="threshold"):
        get_profile("cpu", threshold=1.5)


def test_describe_is_json_with_every_setting():
    d = json.loads(get_profile("cpu").describe())
    assert d["name"] == "cpu" and d["train"]["epochs"] == 25 and d["width"] == 0.25
