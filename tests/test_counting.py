"""Counting what pruning leaves: parameters, conv weights and multiply-adds, exact numbers."""

import pytest
import torch

from pruning_utils.counting import (
    conv_weights_kept_pct,
    count_multiply_adds_masked,
    count_remaining_parameters,
    emptied_filters,
    layer_table,
    params_kept_pct,
)
from pruning_utils.masks import prune_model
from pruning_utils.model import CONV_NAMES, VGG16, conv_layers, count_parameters

DENSE_PARAMETERS = 8_391_882
DENSE_MULTIPLY_ADDS = 360_948_352
CONV_WEIGHTS = sum(9 * c_in * c_out for c_in, c_out in zip(
    [3, 64, 64, 64, 128, 128, 128, 256, 256, 256, 512, 512], [64] * 3 + [128] * 3 + [256] * 3 + [512] * 3))


@pytest.fixture(scope="module")
def full_width():
    """Builds a full-width model (8.4M parameters) once; tests prune deep copies of its state."""
    return VGG16().state_dict()


def _model(state):
    model = VGG16()
    model.load_state_dict(state)
    return model


def test_parameter_counts_whole_model_and_per_layer(full_width):
    model = _model(full_width)
    dense = count_remaining_parameters(model)
    assert set(dense) == {"total", "total_dense", *CONV_NAMES}  # no "conv" / "conv_dense" keys any more
    assert dense["total"] == dense["total_dense"] == count_parameters(model) == DENSE_PARAMETERS
    for name, conv in conv_layers(model).items():
        assert dense[name] == conv.weight.numel() + conv.bias.numel()
    prune_model(model, {"conv11": 0.5, "conv0": 0.1}, "fine-grained")
    counts = count_remaining_parameters(model)
    removed = round(0.5 * 512 * 512 * 9) + round(0.1 * 64 * 27)
    assert counts["total"] == DENSE_PARAMETERS - removed and counts["total_dense"] == DENSE_PARAMETERS
    assert counts["conv11"] == 512 * 512 * 9 - round(0.5 * 512 * 512 * 9) + 512
    assert counts["conv0"] == 64 * 27 - round(0.1 * 64 * 27) + 64
    assert counts["conv5"] == 128 * 128 * 9 + 128  # untouched layer: weights and bias
    # filter pruning with outputs removed also drops conv bias and BatchNorm scale/shift
    model = _model(full_width)
    prune_model(model, {"conv3": 0.25}, "filter")
    per_filter = 64 * 9 + 1 + 2
    assert count_remaining_parameters(model)["total"] == DENSE_PARAMETERS - 32 * per_filter
    assert count_remaining_parameters(model)["conv3"] == 96 * (64 * 9 + 1)
    # the original's filter behaviour keeps bias and BatchNorm
    model = _model(full_width)
    prune_model(model, {"conv3": 0.25}, "filter", remove_filter_outputs=False)
    assert count_remaining_parameters(model)["total"] == DENSE_PARAMETERS - 32 * 64 * 9
    assert count_remaining_parameters(model)["conv3"] == 96 * 64 * 9 + 128


def test_conv_weights_and_params_kept_pct(full_width):
    model = _model(full_width)
    assert sum(c.weight.numel() for c in conv_layers(model).values()) == CONV_WEIGHTS
    assert conv_weights_kept_pct(model) == 100.0 and params_kept_pct(model) == 100.0
    prune_model(model, {"conv3": 0.25}, "filter")
    removed_weights = 32 * 64 * 9
    assert conv_weights_kept_pct(model) == pytest.approx(100 * (CONV_WEIGHTS - removed_weights) / CONV_WEIGHTS)
    # biases and BatchNorm count in the parameters, not in the conv weights
    assert params_kept_pct(model) == pytest.approx(
        100 * (DENSE_PARAMETERS - removed_weights - 32 * 3) / DENSE_PARAMETERS)


def test_masked_multiply_adds(full_width):
    model = _model(full_width)
    dense = count_multiply_adds_masked(model)
    assert dense["total"] == dense["total_dense"] == DENSE_MULTIPLY_ADDS
    assert set(dense) == {"total", "total_dense", *CONV_NAMES}
    prune_model(model, {"conv1": 0.5, "conv11": 0.5}, "filter")
    counts = count_multiply_adds_masked(model)
    skipped = 32 * 64 * 9 * 32 * 32 + 256 * 512 * 9 * 4 * 4
    assert counts["total"] == DENSE_MULTIPLY_ADDS - skipped and counts["total_dense"] == DENSE_MULTIPLY_ADDS
    assert counts["conv1"] == 32 * 64 * 9 * 32 * 32
    assert counts["conv11"] == 256 * 512 * 9 * 4 * 4
    assert counts["conv6"] == 256 * 128 * 9 * 8 * 8  # untouched
    # a batch of n images: n times as many
    assert count_multiply_adds_masked(model, (2, 3, 32, 32))["total"] == 2 * (DENSE_MULTIPLY_ADDS - skipped)


def test_masked_multiply_adds_of_fine_grained_masks_count_kept_weights_per_position():
    torch.manual_seed(0)
    model = VGG16(width=0.125).train()
    prune_model(model, {"conv0": 0.3, "conv10": 0.7}, "fine-grained")
    counts = count_multiply_adds_masked(model)
    assert counts["conv0"] == (8 * 27 - round(0.3 * 8 * 27)) * 32 * 32
    assert counts["conv10"] == (64 * 64 * 9 - round(0.7 * 64 * 64 * 9)) * 4 * 4
    assert model.training  # the mode it had


def test_layer_table(full_width):
    model = _model(full_width)
    prune_model(model, {"conv1": 0.5}, "filter")
    table = layer_table(model)
    assert list(table.columns) == ["layer", "in_channels", "out_channels", "parameters", "multiply_adds"]
    assert table["layer"].tolist() == list(CONV_NAMES)
    row = table.set_index("layer").loc["conv1"]
    assert (row["in_channels"], row["out_channels"]) == (64, 64)
    assert row["parameters"] == 32 * (64 * 9 + 1)
    assert row["multiply_adds"] == 32 * 64 * 9 * 32 * 32
    assert table.set_index("layer").at["conv0", "parameters"] == 64 * 27 + 64


def test_emptied_filters_counts_filters_with_no_weight_left():
    from torch.nn.utils import prune

    model = VGG16(width=0.125)
    conv0, conv3 = conv_layers(model)["conv0"], conv_layers(model)["conv3"]
    mask = torch.ones_like(conv0.weight)
    mask[[2, 5]] = 0  # two filters emptied
    mask[3, :2] = 0  # one filter keeps a kernel: not empty
    prune.custom_from_mask(conv0, "weight", mask)
    other = torch.ones_like(conv3.weight)
    other[0, :, 1, 1] = 0  # a weight per kernel gone, the filter is not empty
    prune.custom_from_mask(conv3, "weight", other)
    assert emptied_filters(model) == {"conv0": (2, 8)}
    assert emptied_filters(VGG16(width=0.125)) == {}
    filtered = VGG16(width=0.125)
    prune_model(filtered, {"conv1": 0.5}, "filter")  # filter pruning empties the filters it removes
    assert emptied_filters(filtered) == {"conv1": (4, 8)}
