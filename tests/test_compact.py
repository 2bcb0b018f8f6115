"""Compaction computes the masked model's function with fewer channels."""

import copy

import pytest
import torch

from pruning_utils.compact import compact, compaction_error, effective_counts, kept_channels
from pruning_utils.counting import conv_weights_kept_pct, count_multiply_adds_masked, count_remaining_parameters
from pruning_utils.data import to_float
from pruning_utils.masks import copy_model
from pruning_utils.masks import layer_masks, make_permanent, prune_model
from pruning_utils.model import CONV_NAMES, VGG16, conv_layers, count_multiply_adds, count_parameters


def _images(synthetic, n=64):
    return to_float(synthetic.test_x[:n])


def _outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def _filter_oracle(model):
    """Kept filters per layer read from the weight masks alone: [C_out] bool."""
    return {name: mask.flatten(1).any(dim=1) for name, mask in layer_masks(model).items()}


def _analytic_multiply_adds(channels, hidden=(256, 128, 64), classes=10):
    """Multiply-adds of one 32x32 image for given conv output channels (3x3 convs, 4 pools)."""
    total, c_in = 0, 3
    for i, c_out in enumerate(channels):
        side = 32 // 2 ** (i // 3)
        total += 9 * c_in * c_out * side * side
        c_in = c_out
    sizes = (4 * c_in, *hidden, classes)
    return total + sum(a * b for a, b in zip(sizes, sizes[1:]))


SPARSITY_CASES = {
    "uniform 0.3": dict.fromkeys(CONV_NAMES, 0.3),
    "uniform 0.6": dict.fromkeys(CONV_NAMES, 0.6),
    "uniform 0.9": dict.fromkeys(CONV_NAMES, 0.9),
    "uneven": {name: [0.0, 0.25, 0.5, 0.75][i % 4] for i, name in enumerate(CONV_NAMES)},
}


@pytest.mark.parametrize("case", list(SPARSITY_CASES))
def test_compacted_filter_pruned_model_matches_masked_model(trained_tiny, synthetic, case):
    masked = prune_model(copy.deepcopy(trained_tiny), SPARSITY_CASES[case], "filter")
    before = {k: v.clone() for k, v in masked.state_dict().items()}
    small = compact(masked)
    x = _images(synthetic)

    torch.testing.assert_close(_outputs(small, x), _outputs(masked, x), atol=1e-5, rtol=0)
    # the input model is untouched and still masked
    assert all(torch.equal(before[k], v) for k, v in masked.state_dict().items())
    assert hasattr(conv_layers(masked)["conv0"], "weight_mask")
    assert not any(n.endswith("_orig") for n, _ in small.named_parameters())

    kept = _filter_oracle(masked)
    channels = [int(kept[name].sum()) for name in CONV_NAMES]
    assert [conv.out_channels for conv in conv_layers(small).values()] == channels
    assert [len(k) for k in kept_channels(masked).values()] == channels

    # parameters: the masked count minus the unmasked weights that read removed channels
    removed_inputs = sum(
        9 * channels[i + 1] * int((~kept[CONV_NAMES[i]]).sum()) for i in range(len(CONV_NAMES) - 1)
    )
    removed_inputs += 4 * int((~kept["conv11"]).sum()) * masked.classifier.fc0.out_features
    remaining = count_remaining_parameters(masked)["total"]
    assert count_remaining_parameters(small)["total"] == remaining - removed_inputs

    macs = count_multiply_adds(small)
    assert macs == _analytic_multiply_adds(channels)
    dense_channels = [c.out_channels for c in conv_layers(masked).values()]
    assert macs < count_multiply_adds(masked) == _analytic_multiply_adds(dense_channels)


def test_compact_works_on_permanent_models_and_keeps_the_eval_function(trained_tiny, synthetic):
    masked = prune_model(copy.deepcopy(trained_tiny), dict.fromkeys(CONV_NAMES, 0.5), "filter")
    permanent = make_permanent(copy_model(masked))
    x = _images(synthetic)
    a, b = compact(masked), compact(permanent)
    assert [c.out_channels for c in conv_layers(a).values()] == [c.out_channels for c in conv_layers(b).values()]
    torch.testing.assert_close(_outputs(b, x), _outputs(permanent, x), atol=1e-5, rtol=0)
    torch.testing.assert_close(_outputs(a, x), _outputs(b, x), atol=1e-6, rtol=0)


def test_effective_counts_of_one_removed_filter_by_hand():
    """Width 0.125: conv3 reads 8 channels and has 16 filters. Removing 4 of them takes 4 of conv4's 16
    input channels with it: the masked count still counts those weights, the effective count does not."""
    torch.manual_seed(0)
    model = prune_model(VGG16(width=0.125), {"conv3": 0.25}, "filter")
    counts = effective_counts(model)
    assert counts["conv3"] == 12 * 8 * 9 and counts["conv4"] == 16 * 12 * 9 and counts["conv5"] == 16 * 16 * 9
    dense_conv = sum(c.weight.numel() for c in conv_layers(model).values())
    assert counts["conv_weights_dense"] == dense_conv
    assert counts["conv_weights"] == dense_conv - 4 * 8 * 9 - 16 * 4 * 9
    assert 100 * (dense_conv - 4 * 8 * 9) / dense_conv == conv_weights_kept_pct(model)  # masked: conv4 untouched
    assert counts["parameters"] == count_parameters(model) - 4 * 8 * 9 - 4 * 3 - 16 * 4 * 9  # bias, BN scale, shift
    assert counts["multiply_adds"] == count_multiply_adds(model) - (4 * 8 * 9 + 16 * 4 * 9) * 16 * 16
    # the last conv's removed filters take their inputs of classifier.fc0 (4 positions each, 256 outputs)
    model = prune_model(VGG16(width=0.125), {"conv11": 0.5}, "filter")
    counts = effective_counts(model, (2, 3, 32, 32))
    assert counts["parameters"] == count_parameters(model) - 32 * (64 * 9 + 3) - 32 * 4 * 256
    assert counts["multiply_adds"] == 2 * (count_multiply_adds(model) - 32 * 64 * 9 * 4 * 4 - 32 * 4 * 256)


@pytest.mark.parametrize("case", ["uniform 0.6", "uneven"])
def test_effective_counts_of_filter_pruning_are_the_compacted_models(trained_tiny, case):
    """The oracle: the compacted model's parameters and its torch.utils.flop_counter count."""
    masked = prune_model(copy.deepcopy(trained_tiny), SPARSITY_CASES[case], "filter")
    small, counts = compact(masked), effective_counts(masked)
    assert counts["parameters"] == count_parameters(small) < count_remaining_parameters(masked)["total"]
    assert counts["multiply_adds"] == count_multiply_adds(small) < count_multiply_adds_masked(masked)["total"]
    assert [counts[n] for n in CONV_NAMES] == [c.weight.numel() for c in conv_layers(small).values()]
    assert counts["parameters_dense"] == count_parameters(trained_tiny)
    assert counts["multiply_adds_dense"] == count_multiply_adds(trained_tiny)


def test_filter_pruning_criteria_of_equal_sparsities_give_equal_effective_sizes(trained_tiny):
    """Which filters go does not change a filter-pruned model's effective size, only how many per layer
    (each kept filter reads every kept channel): notebook 06's criteria compare filter models of one
    effective size. A layer's count by hand: kept filters x kept inputs x 9."""
    sparsities = SPARSITY_CASES["uneven"]
    counts = [effective_counts(prune_model(copy.deepcopy(trained_tiny), sparsities, "filter", norm=norm,
                                           generator=torch.Generator().manual_seed(seed)))
              for norm, seed in ((2, 0), (1, 0), ("random", 0), ("random", 1))]
    assert all(c == counts[0] for c in counts[1:])
    kept, reads = {}, 3
    for name, conv in conv_layers(trained_tiny).items():
        kept[name] = conv.out_channels - round(sparsities.get(name, 0.0) * conv.out_channels)
        assert counts[0][name] == kept[name] * reads * 9, name
        reads = kept[name]


@pytest.mark.parametrize("strategy,sparsity", [("fine-grained", 0.9), ("kernel", 0.7)])
def test_effective_counts_of_fine_grained_and_kernel_pruning_skip_the_zeros_compact_keeps(trained_tiny, strategy,
                                                                                         sparsity):
    """Compacted, such a model keeps its masked weights as zeros: the effective counts are the compacted
    model's counts less those zeros (each zero weight: one multiply-add per output position)."""
    masked = prune_model(copy.deepcopy(trained_tiny), dict.fromkeys(CONV_NAMES, sparsity), strategy)
    small, counts = compact(masked), effective_counts(masked)
    zeros = {n: int((c.weight == 0).sum()) for n, c in conv_layers(small).items()}
    sides = [32 // 2 ** (i // 3) for i in range(len(CONV_NAMES))]
    assert [counts[n] for n in CONV_NAMES] == [c.weight.numel() - zeros[n] for n, c in conv_layers(small).items()]
    assert counts["parameters"] == count_parameters(small) - sum(zeros.values())
    assert counts["multiply_adds"] == count_multiply_adds(small) - sum(
        zeros[n] * side * side for n, side in zip(CONV_NAMES, sides))
    if any(len(k) < c.out_channels for k, c in zip(kept_channels(masked).values(), conv_layers(masked).values())):
        assert counts["conv_weights"] < sum(int(m.sum()) for m in layer_masks(masked).values())  # emptied filters


@pytest.mark.parametrize("strategy,sparsity", [("fine-grained", 0.3), ("fine-grained", 0.7), ("kernel", 0.5)])
def test_fine_grained_and_kernel_masks_keep_their_zeros(trained_tiny, synthetic, strategy, sparsity):
    masked = prune_model(copy.deepcopy(trained_tiny), dict.fromkeys(CONV_NAMES, sparsity), strategy)
    small = compact(masked)
    x = _images(synthetic)
    torch.testing.assert_close(_outputs(small, x), _outputs(masked, x), atol=1e-5, rtol=0)
    masks, kept = layer_masks(masked), kept_channels(masked)
    keep_in = torch.arange(3)
    for name, conv in conv_layers(small).items():
        # a channel goes only when its whole filter is masked; the zeros of kept filters stay
        assert set(_filter_oracle(masked)[name].nonzero().flatten().tolist()) <= set(kept[name].tolist())
        assert int((conv.weight == 0).sum()) == int((~masks[name][kept[name]][:, keep_in]).sum()), name
        keep_in = kept[name]


def test_fine_grained_pruning_with_no_whole_filter_masked_removes_nothing(trained_tiny, synthetic):
    masked = prune_model(copy.deepcopy(trained_tiny), dict.fromkeys(CONV_NAMES, 0.3), "fine-grained")
    assert all(alive.all() for alive in _filter_oracle(masked).values())  # precondition
    small = compact(masked)
    assert [c.out_channels for c in conv_layers(small).values()] == [
        c.out_channels for c in conv_layers(trained_tiny).values()
    ]
    assert count_remaining_parameters(small)["total_dense"] == count_remaining_parameters(masked)["total_dense"]
    torch.testing.assert_close(_outputs(small, _images(synthetic)), _outputs(masked, _images(synthetic)),
                               atol=1e-5, rtol=0)


def test_original_filter_behaviour_and_relu_killed_channels(trained_tiny, synthetic):
    """Pruned filters that keep bias and BatchNorm emit relu(c): kept when c > 0, removed when c <= 0."""
    masked = prune_model(copy.deepcopy(trained_tiny), dict.fromkeys(CONV_NAMES, 0.5), "filter",
                         remove_filter_outputs=False)
    bn = masked.features.bn3
    with torch.no_grad():  # first pruned filter of conv3: positive constant; second: negative
        pruned = (~_filter_oracle(masked)["conv3"]).nonzero().flatten()
        bn.bias[pruned[0]] = 5.0
        bn.bias[pruned[1]] = -5.0
    x = _images(synthetic)
    small = compact(masked)
    torch.testing.assert_close(_outputs(small, x), _outputs(masked, x), atol=1e-5, rtol=0)
    kept = kept_channels(masked)["conv3"].tolist()
    assert int(pruned[0]) in kept and int(pruned[1]) not in kept


def test_a_layer_with_every_filter_dead_keeps_one_channel(trained_tiny, synthetic):
    masked = prune_model(copy.deepcopy(trained_tiny), {"conv4": 0.0}, "filter")
    with torch.no_grad():
        conv, bn = masked.features.conv4, masked.features.bn4
        conv.weight_mask.zero_()
        conv.bias_mask.zero_()
        bn.weight_mask.zero_()
        bn.bias_mask.zero_()
    small = compact(masked)
    assert small.features.conv4.out_channels == 1 and small.features.conv5.in_channels == 1
    x = _images(synthetic, 16)
    torch.testing.assert_close(_outputs(small, x), _outputs(masked, x), atol=1e-5, rtol=0)


def test_compact_keeps_names_and_mode(trained_tiny):
    model = copy.deepcopy(trained_tiny).train()
    small = compact(prune_model(model, dict.fromkeys(CONV_NAMES, 0.5), "filter"))
    assert small.training
    assert [n for n, _ in small.named_modules()] == [n for n, _ in trained_tiny.named_modules()]
    with pytest.raises(TypeError, match="VGG16"):
        compact(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))


def test_compaction_error_compares_logits_and_predictions(trained_tiny, synthetic):
    masked = prune_model(copy.deepcopy(trained_tiny), dict.fromkeys(CONV_NAMES, 0.5), "filter")
    x = _images(synthetic, 32)
    check = compaction_error(masked, compact(masked), x)
    assert check["images"] == 32 and check["same_predictions"] is True
    assert 0 <= check["max_abs_logit_difference"] < 1e-5
    other = compaction_error(masked, trained_tiny, x)  # not its compaction: the logits differ
    expected = float((_outputs(masked, x) - _outputs(trained_tiny, x)).abs().max())
    assert other["max_abs_logit_difference"] == pytest.approx(expected) and expected > 1e-3
    assert other["same_predictions"] == bool(torch.equal(_outputs(masked, x).argmax(1),
                                                         _outputs(trained_tiny, x).argmax(1)))
