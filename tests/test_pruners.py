"""Pruning criteria against independent oracles (torch.nn.utils.prune), counts and bad input."""

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from pruning_utils.model import CONV_NAMES, VGG16, conv_layers, count_parameters
from pruning_utils.pruners import (
    STRATEGIES,
    count_multiply_adds_masked,
    count_remaining_parameters,
    make_mask,
    make_permanent,
    prune_model,
    unit_scores,
)

SHAPES = [(1, 1, 3, 3), (4, 3, 3, 3), (8, 5, 3, 3), (16, 16, 3, 3), (7, 2, 5, 5), (32, 8, 1, 1)]
SPARSITIES = [0.0, 0.05, 0.1, 0.33, 0.5, 0.7, 0.9, 0.99]


def _oracle(weight: torch.Tensor, sparsity: float, strategy: str) -> torch.Tensor:
    """The keep-mask torch.nn.utils.prune computes for the same rule."""
    holder = nn.Module()
    if strategy == "kernel":  # one row per kernel: (C_out * C_in, k * k)
        holder.weight = nn.Parameter(weight.reshape(weight.shape[0] * weight.shape[1], -1).clone())
        prune.ln_structured(holder, "weight", amount=sparsity, n=2, dim=0)
        return holder.weight_mask.reshape(weight.shape).bool()
    holder.weight = nn.Parameter(weight.clone())
    if strategy == "fine-grained":
        prune.l1_unstructured(holder, "weight", amount=sparsity)
    else:
        prune.ln_structured(holder, "weight", amount=sparsity, n=2, dim=0)
    return holder.weight_mask.bool()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_masks_match_torch_prune_oracles(strategy):
    generator = torch.Generator().manual_seed(0)
    for shape, sparsity in itertools.product(SHAPES, SPARSITIES):
        weight = torch.randn(shape, generator=generator)
        mask = make_mask(weight, sparsity, strategy)
        assert mask.dtype == torch.bool and mask.shape == weight.shape
        assert torch.equal(mask, _oracle(weight, sparsity, strategy)), (shape, sparsity)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_exact_removal_counts(strategy):
    weight = torch.randn(24, 10, 3, 3)
    units = {"fine-grained": weight.numel(), "kernel": 24 * 10, "filter": 24}[strategy]
    unit_size = weight.numel() // units
    for sparsity in [i / 20 for i in range(20)]:
        removed = (~make_mask(weight, sparsity, strategy)).sum().item()
        assert removed == round(sparsity * units) * unit_size, sparsity


def test_structured_masks_remove_whole_units():
    weight = torch.randn(12, 6, 3, 3)
    kernel = make_mask(weight, 0.5, "kernel")
    assert torch.all(kernel.all(dim=(2, 3)) | ~kernel.any(dim=(2, 3)))  # each kernel all or nothing
    filt = make_mask(weight, 0.5, "filter")
    assert torch.all(filt.flatten(1).all(1) | ~filt.flatten(1).any(1))


def test_smallest_units_are_removed():
    weight = torch.ones(4, 2, 3, 3)
    weight[2] *= 0.1  # the weakest filter
    weight[0, 1] *= 0.01  # the weakest kernel
    assert torch.equal(make_mask(weight, 0.25, "filter").flatten(1).all(1), torch.tensor([True, True, False, True]))
    kept = make_mask(weight, 1 / 8, "kernel").all(dim=(2, 3))
    assert not kept[0, 1] and kept.sum() == 7


def test_ties_are_broken_by_position_deterministically():
    weight = torch.ones(6, 1, 3, 3)
    mask = make_mask(weight, 0.5, "filter")
    assert torch.equal(mask.flatten(1).all(1), torch.tensor([False, False, False, True, True, True]))
    assert torch.equal(mask, make_mask(weight.clone(), 0.5, "filter"))


def test_l1_norm_and_random_criteria():
    weight = torch.zeros(3, 1, 2, 2)
    weight[0, 0] = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # L1 4, L2 2
    weight[1, 0] = torch.tensor([[3.0, 0.0], [0.0, 0.0]])  # L1 3, L2 3
    weight[2, 0] = torch.tensor([[5.0, 5.0], [5.0, 5.0]])
    assert not make_mask(weight, 1 / 3, "filter", norm=2)[0].any()  # L2 removes filter 0
    assert not make_mask(weight, 1 / 3, "filter", norm=1)[1].any()  # L1 removes filter 1 instead
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    w = torch.randn(64, 8, 3, 3)
    r1 = make_mask(w, 0.5, "filter", norm="random", generator=g1)
    assert torch.equal(r1, make_mask(w, 0.5, "filter", norm="random", generator=g2))
    assert (~r1).flatten(1).all(1).sum() == 32


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_bad_sparsity_raises(sparsity):
    with pytest.raises(ValueError, match="sparsity"):
        make_mask(torch.randn(4, 4, 3, 3), sparsity, "filter")


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(ValueError, match="fine-grained, kernel, filter"):
        make_mask(torch.randn(4, 4, 3, 3), 0.5, "channel")
    with pytest.raises(ValueError, match="fine-grained, kernel, filter"):
        prune_model(VGG16(0.125), {"conv0": 0.5}, "channel")


def test_non_4d_weight_for_structured_pruning_raises():
    for strategy in ("kernel", "filter"):
        with pytest.raises(ValueError, match="4-D"):
            make_mask(torch.randn(10, 20), 0.5, strategy)
    assert make_mask(torch.randn(10, 20), 0.5, "fine-grained").sum() == 100


def test_unknown_layer_raises_key_error_listing_valid_names():
    with pytest.raises(KeyError, match="conv0, conv1"):
        prune_model(VGG16(0.125), {"conv12": 0.5}, "filter")
    with pytest.raises(ValueError, match="conv3"):
        prune_model(VGG16(0.125), {"conv3": 1.0}, "filter")


def test_prune_model_masks_through_torch_prune_and_survive_training():
    torch.manual_seed(0)
    model = VGG16(width=0.125)
    prune_model(model, {"conv1": 0.5, "conv7": 0.8}, "kernel")
    conv1 = conv_layers(model)["conv1"]
    assert prune.is_pruned(model) and hasattr(conv1, "weight_mask")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        loss = model(torch.rand(4, 3, 32, 32)).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model(torch.rand(1, 3, 32, 32))
    assert torch.all(conv1.weight[~conv1.weight_mask.bool()] == 0)
    make_permanent(model)
    assert not prune.is_pruned(model) and not hasattr(conv1, "weight_mask")
    assert (conv1.weight == 0).sum() >= conv1.weight.numel() // 2


def test_filter_pruning_removes_the_channel_output_unless_original_behaviour_is_asked():
    torch.manual_seed(0)
    for remove, expect_zero in ((True, True), (False, False)):
        model = VGG16(width=0.125)
        model.features.bn2.bias.data.fill_(0.3)  # a positive shift that the original left on
        prune_model(model, {"conv2": 0.5}, "filter", remove_filter_outputs=remove)
        model.eval()
        removed = ~model.features.conv2.weight_mask.flatten(1).any(1)
        out = model.features[: list(model.features._modules).index("relu2") + 1](torch.rand(2, 3, 32, 32))
        dead = out[:, removed]
        assert bool(torch.all(dead == 0)) == expect_zero
        if not expect_zero:  # the original's "pruned" filter still emits a constant
            assert torch.allclose(dead, dead[..., :1, :1].expand_as(dead))


def test_parameter_counts_whole_model_conv_and_per_layer():
    model = VGG16()
    dense = count_remaining_parameters(model)
    assert dense["total"] == dense["total_dense"] == count_parameters(model) == 8_391_882
    conv_dense = sum(c.weight.numel() + c.bias.numel() for c in conv_layers(model).values())
    assert dense["conv"] == dense["conv_dense"] == conv_dense
    prune_model(model, {"conv11": 0.5, "conv0": 0.1}, "fine-grained")
    counts = count_remaining_parameters(model)
    removed = round(0.5 * 512 * 512 * 9) + round(0.1 * 64 * 27)
    assert counts["total"] == 8_391_882 - removed
    assert counts["conv11"] == 512 * 512 * 9 - round(0.5 * 512 * 512 * 9) + 512
    assert counts["conv5"] == 128 * 128 * 9 + 128  # untouched layer: weights and bias
    # filter pruning with outputs removed also drops conv bias and BatchNorm scale/shift
    model = VGG16()
    prune_model(model, {"conv3": 0.25}, "filter")
    per_filter = 64 * 9 + 1 + 2
    assert count_remaining_parameters(model)["total"] == 8_391_882 - 32 * per_filter
    assert count_remaining_parameters(model)["conv3"] == 96 * (64 * 9 + 1)


def test_masked_multiply_adds():
    model = VGG16()
    assert count_multiply_adds_masked(model)["total"] == 360_948_352
    prune_model(model, {"conv1": 0.5, "conv11": 0.5}, "filter")
    counts = count_multiply_adds_masked(model)
    skipped = 32 * 64 * 9 * 32 * 32 + 256 * 512 * 9 * 4 * 4
    assert counts["total"] == 360_948_352 - skipped
    assert counts["conv1"] == 32 * 64 * 9 * 32 * 32


def test_unit_scores_shapes():
    w = torch.randn(6, 4, 3, 3)
    assert unit_scores(w, "fine-grained").shape == w.shape
    assert unit_scores(w, "kernel").shape == (6, 4)
    assert unit_scores(w, "filter").shape == (6,)
    assert torch.allclose(unit_scores(w, "filter"), w.flatten(1).norm(dim=1))
