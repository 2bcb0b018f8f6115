"""Run directories: parameter checks, records, artifact errors, model files with masks."""

import json

import pytest
import torch

from pruning_utils.model import VGG16
from pruning_utils.pruners import prune_model
from pruning_utils.runs import load_model, open_run, require, save_model


def test_open_run_records_settings_and_data(tmp_path):
    run = open_run("smoke", tmp_path / "run", seed=0, figures_dir=tmp_path / "figs")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["profile"]["name"] == "smoke" and record["seed"] == 0
    assert record["data"]["source"].startswith("synthetic")
    assert record["precision"] == "fp32" and record["torch"] == torch.__version__
    assert (tmp_path / "figs").is_dir()
    assert "train 2,000 / validation 500 / test 500" in run.summary()


def test_bad_parameters_fail_before_any_file_is_written(tmp_path):
    with pytest.raises(ValueError, match="valid profiles: paper, cpu, smoke"):
        open_run("fast", tmp_path / "a")
    with pytest.raises(ValueError, match="seed"):
        open_run("smoke", tmp_path / "b", seed=-1)
    with pytest.raises(ValueError, match="unknown profile setting 'widht'"):
        open_run("smoke", tmp_path / "c", widht=2)
    assert not any(tmp_path.iterdir())


def test_a_run_directory_is_not_reused_with_other_settings(tmp_path):
    open_run("smoke", tmp_path / "run", seed=0, figures_dir=tmp_path / "f")
    open_run("smoke", tmp_path / "run", seed=0, figures_dir=tmp_path / "f")  # same settings: fine
    with pytest.raises(ValueError, match="other settings"):
        open_run("smoke", tmp_path / "run", seed=1, figures_dir=tmp_path / "f")


def test_missing_artifact_names_its_notebook(tmp_path):
    run = open_run("smoke", tmp_path / "run", figures_dir=tmp_path / "f")
    for name, notebook in (("dense.pt", "01_train"), ("sensitivity_kernel.csv", "02_sensitivity"),
                           ("finetuned_filter.pt", "03_prune_finetune"), ("frontier.csv", "06_beyond")):
        with pytest.raises(FileNotFoundError, match=f"run notebooks/{notebook}.ipynb first"):
            require(run, name)


def test_saved_pruned_model_round_trips_with_its_masks(tmp_path):
    torch.manual_seed(0)
    model = VGG16(width=0.125, dropout=0.0)
    prune_model(model, {"conv2": 0.5, "conv9": 0.7}, "filter")
    prune_model(model, {"conv4": 0.6}, "fine-grained")
    save_model(model, tmp_path / "m.pt", stage="pruned")
    loaded, meta = load_model(tmp_path / "m.pt")
    assert meta == {"stage": "pruned"}
    assert torch.equal(loaded.features.conv2.weight, model.features.conv2.weight)  # effective weight refreshed
    assert torch.equal(loaded.features.conv4.weight_mask, model.features.conv4.weight_mask)
    assert hasattr(loaded.features.bn2, "bias_mask")  # BatchNorm masks of removed filters kept
    x = torch.rand(3, 3, 32, 32)
    model.eval()
    assert torch.equal(loaded(x), model(x))
