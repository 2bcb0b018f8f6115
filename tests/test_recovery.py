"""The one recovery procedure (prune, measure, recalibrate, fine-tune), its settings, and iterative pruning."""

import copy
import math

import pytest
import torch

from pruning_utils.config import Recipe, get_profile
from pruning_utils.criteria import STRATEGIES
from pruning_utils.evaluation import evaluate, recalibrate_batchnorm, train_mode_accuracy
from pruning_utils.masks import copy_model, layer_masks, prune_model
from pruning_utils.model import CONV_NAMES, conv_layers
from pruning_utils.recovery import (
    RecoverySettings,
    check_choices,
    geometric_schedule,
    prune_and_recover,
    prune_iteratively,
    recover,
    split_epochs,
)
from pruning_utils.training import train

SETTINGS = RecoverySettings(Recipe(epochs=1, optimizer="adamw", lr=1e-3), batch_size=100, recalibration_batches=2,
                            eval_batch_size=200, precision="fp32")
SPARSITIES = {"conv1": 0.5, "conv4": 0.25, "conv7": 0.5}


def _removed_filters(model):
    return {name: int((~mask).flatten(1).all(1).sum()) for name, mask in layer_masks(model).items()}


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _acc(model, data):
    return 100.0 * evaluate(model, data.test_x, data.test_y, batch_size=200, precision="fp32")


# --- settings -----------------------------------------------------------------------------------


def test_settings_from_profile_with_epochs_and_as_inputs():
    smoke = get_profile("smoke")
    settings = RecoverySettings.from_profile(smoke, seed=3, precision="fp32")
    assert settings.recipe == smoke.finetune and settings.batch_size == smoke.batch_size
    assert (settings.recalibration_batches, settings.eval_batch_size) == (smoke.recalibration_batches,
                                                                         smoke.eval_batch_size)
    assert (settings.seed, settings.precision, settings.train_mode) == (3, "fp32", False)
    two = RecoverySettings.from_profile(smoke, 3, "fp32", epochs=2, train_mode=True)
    assert two.recipe.epochs == 2 and two.recipe.lr == smoke.finetune.lr and two.train_mode
    assert settings.with_epochs(5).recipe.epochs == 5 and settings.recipe.epochs == smoke.finetune.epochs
    inputs = settings.as_inputs()
    assert inputs["seed"] == 3 and inputs["recipe"]["epochs"] == smoke.finetune.epochs
    assert inputs != settings.with_epochs(2).as_inputs() and inputs != two.as_inputs()
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match=f"epochs .*got {bad!r}"):
            RecoverySettings.from_profile(smoke, 0, "fp32", epochs=bad)


def test_check_choices_names_the_parameter_and_the_bad_values():
    check_choices("strategies", ["filter"], STRATEGIES)
    with pytest.raises(ValueError, match=r"strategies must be .*got \['filter', 'channel'\]"):
        check_choices("strategies", ["filter", "channel"], STRATEGIES)
    with pytest.raises(ValueError, match=r"norms must be a non-empty selection"):
        check_choices("norms", [], [2, 1, "random"])


# --- one recovery -------------------------------------------------------------------------------


def test_recover_measures_each_stage_as_the_steps_done_by_hand(trained_tiny, synthetic):
    settings = RecoverySettings(Recipe(epochs=0), batch_size=100, recalibration_batches=2, eval_batch_size=200,
                                precision="fp32", train_mode=True)
    model = copy_model(trained_tiny)
    seen = []
    row, history = recover(model, synthetic, SPARSITIES, "filter", settings,
                           on_pruned=lambda m: seen.append(copy_model(m)))
    assert set(row) == {"conv_weights_kept_pct", "params_kept_pct", "multiply_adds_kept_pct", "acc_pruned",
                        "acc_pruned_train_mode", "acc_recalibrated", "acc_finetuned", "finetune_epochs"}
    assert history.empty and row["finetune_epochs"] == 0
    # by hand: prune a copy, measure, recalibrate, measure
    oracle = prune_model(copy_model(trained_tiny), SPARSITIES, "filter")
    assert all(torch.equal(a, b) for a, b in zip(layer_masks(model).values(), layer_masks(oracle).values()))
    convs = conv_layers(trained_tiny).values()
    removed = sum(round(s * conv_layers(trained_tiny)[n].out_channels) * conv_layers(trained_tiny)[n].weight[0].numel()
                  for n, s in SPARSITIES.items())
    assert row["conv_weights_kept_pct"] == pytest.approx(100 * (1 - removed / sum(c.weight.numel() for c in convs)))
    assert 0 < row["multiply_adds_kept_pct"] < 100 and row["conv_weights_kept_pct"] < row["params_kept_pct"] < 100
    assert row["acc_pruned"] == _acc(oracle, synthetic)
    assert row["acc_pruned_train_mode"] == 100 * train_mode_accuracy(
        oracle, synthetic.test_x, synthetic.test_y, batch_size=100, seed=0, precision="fp32")
    assert len(seen) == 1 and _same_state(seen[0], oracle)  # on_pruned sees the model before recalibration
    recalibrate_batchnorm(oracle, synthetic.train_x, num_batches=2, batch_size=100, seed=0, precision="fp32")
    assert row["acc_recalibrated"] == _acc(oracle, synthetic) == row["acc_finetuned"]  # 0 epochs: no fine-tuning
    assert _same_state(model, oracle) and not model.training


def test_recover_fine_tunes_resumably_with_masks_enforced(trained_tiny, synthetic, tmp_path):
    model = copy_model(trained_tiny)
    identity = {"point": "test", "seed": 0}
    checkpoint = tmp_path / "finetune.ckpt"
    row, history = recover(model, synthetic, SPARSITIES, "filter", SETTINGS, checkpoint=checkpoint,
                           identity=identity, track_validation=True)
    assert len(history) == 1 and not math.isnan(history.at[0, "val_acc"]) and row["finetune_epochs"] == 1
    assert torch.load(checkpoint, weights_only=False)["identity"] == identity
    # by hand: prune, recalibrate, train with the same settings
    oracle = prune_model(copy_model(trained_tiny), SPARSITIES, "filter")
    recalibrate_batchnorm(oracle, synthetic.train_x, num_batches=2, batch_size=100, seed=0, precision="fp32")
    train(oracle, synthetic.train_x, synthetic.train_y, SETTINGS.recipe, batch_size=100, seed=0, device="cpu",
          precision="fp32", progress=False)
    assert row["acc_finetuned"] == _acc(oracle, synthetic)
    model(torch.zeros(1, 3, 32, 32))  # refresh the masked weights
    for name, conv in conv_layers(model).items():
        mask = layer_masks(model)[name]
        assert torch.all(conv.weight[~mask] == 0), name  # masks held through fine-tuning
    assert _removed_filters(model) == {n: round(SPARSITIES.get(n, 0) * c.out_channels)
                                       for n, c in conv_layers(model).items()}


def test_prune_and_recover_leaves_the_dense_model_untouched(trained_tiny, synthetic):
    before = copy.deepcopy(trained_tiny.state_dict())
    row = prune_and_recover(trained_tiny, synthetic, SPARSITIES, "kernel", SETTINGS.with_epochs(0))
    assert row["acc_finetuned"] == row["acc_recalibrated"]
    assert not hasattr(trained_tiny.features.conv1, "weight_mask")
    assert all(torch.equal(before[k], v) for k, v in trained_tiny.state_dict().items())


def test_recover_rejects_bad_arguments_before_touching_the_model(trained_tiny, synthetic):
    model = copy_model(trained_tiny)
    with pytest.raises(ValueError, match="'channel'"):
        recover(model, synthetic, SPARSITIES, "channel", SETTINGS)
    with pytest.raises(KeyError, match="'fc0'"):
        recover(model, synthetic, {"fc0": 0.5}, "filter", SETTINGS)
    with pytest.raises(ValueError, match="conv2: .*1.5"):
        recover(model, synthetic, {"conv2": 1.5}, "filter", SETTINGS)
    assert _same_state(model, trained_tiny) and not hasattr(model.features.conv2, "weight_mask")


# --- iterative pruning --------------------------------------------------------------------------


def test_geometric_schedule_and_epoch_split():
    steps = geometric_schedule({"conv0": 0.875, "conv1": 0.0}, 3)
    assert [round(s["conv0"], 12) for s in steps] == [0.5, 0.75, 0.875]  # kept 1/2, 1/4, 1/8
    assert [s["conv1"] for s in steps] == [0.0, 0.0, 0.0]
    assert steps[-1] == {"conv0": 0.875, "conv1": 0.0}
    assert geometric_schedule({"conv0": 0.3}, 1) == [{"conv0": 0.3}]
    assert split_epochs(3, 3) == [1, 1, 1] and split_epochs(1, 2) == [0, 1] and split_epochs(5, 3) == [1, 2, 2]
    assert split_epochs(0, 2) == [0, 0]
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=f"rounds must be .*got {bad!r}"):
            geometric_schedule({"conv0": 0.5}, bad)
        with pytest.raises(ValueError, match=f"rounds must be .*got {bad!r}"):
            split_epochs(2, bad)
    with pytest.raises(ValueError, match="total_finetune_epochs .*-1"):
        split_epochs(-1, 2)
    with pytest.raises(ValueError, match="conv0: .*1.0"):
        geometric_schedule({"conv0": 1.0}, 2)


def test_iterative_final_masks_remove_as_many_units_as_one_shot(trained_tiny, synthetic):
    sparsities = dict.fromkeys(CONV_NAMES, 0.6)
    settings = SETTINGS.with_epochs(2)  # total fine-tuning epochs, spread over the rounds
    one, rows_one = prune_iteratively(trained_tiny, synthetic, sparsities, "filter", 1, settings)
    two, rows_two = prune_iteratively(trained_tiny, synthetic, sparsities, "filter", 2, settings)
    assert _removed_filters(one) == _removed_filters(two)
    assert _removed_filters(two) == {k: round(0.6 * c.out_channels) for k, c in conv_layers(two).items()}
    assert [r["round"] for r in rows_two] == [1, 2]
    assert set(rows_two[0]) == {"round", "conv_weights_kept_pct", "acc_after_round", "finetune_epochs"}
    assert [r["finetune_epochs"] for r in rows_one] == [2] and [r["finetune_epochs"] for r in rows_two] == [1, 1]
    assert rows_two[0]["conv_weights_kept_pct"] > rows_two[1]["conv_weights_kept_pct"]
    assert rows_two[1]["conv_weights_kept_pct"] == pytest.approx(rows_one[0]["conv_weights_kept_pct"])
    assert rows_two[1]["acc_after_round"] == _acc(two, synthetic)  # measured after the last round
    assert not hasattr(trained_tiny.features.conv0, "weight_mask")  # the dense model is untouched
