"""Masks on a model: what a layer's mask masks, pruning in place (also in rounds), folding masks in."""

import copy

import pytest
import torch
from torch.nn.utils import prune

from pruning_utils.criteria import STRATEGIES, make_mask, removed_units
from pruning_utils.masks import (
    apply_masks,
    conv_weights,
    current_mask,
    effective_weight,
    layer_masks,
    make_permanent,
    mask_inputs,
    mask_targets,
    masked_parameters,
    prune_model,
)
from pruning_utils.model import CONV_NAMES, VGG16, batchnorm_after, conv_layers
from pruning_utils.recovery import geometric_schedule

UNIT_SIZE = {"fine-grained": lambda w: 1, "kernel": lambda w: w[0, 0].numel(), "filter": lambda w: w[0].numel()}


def _removed_units(model, strategy):
    """Per layer, the number of units whose weights are all masked, read from the weight masks alone."""
    out = {}
    for name, mask in layer_masks(model).items():
        gone = ~mask
        units = {"fine-grained": gone, "kernel": gone.flatten(2).all(-1), "filter": gone.flatten(1).all(-1)}
        out[name] = int(units[strategy].sum())
    return out


def _scores(weight, strategy):
    """L2 unit scores computed here, independently of the package."""
    return {"fine-grained": lambda: weight.abs(), "kernel": lambda: weight.flatten(2).norm(dim=2),
            "filter": lambda: weight.flatten(1).norm(dim=1)}[strategy]()


def test_unknown_strategy_layer_and_bad_sparsity_are_refused_naming_them():
    with pytest.raises(ValueError, match="'channel'.*fine-grained, kernel, filter"):
        prune_model(VGG16(0.125), {"conv0": 0.5}, "channel")
    with pytest.raises(KeyError, match="'conv12'.*conv0, conv1"):
        prune_model(VGG16(0.125), {"conv12": 0.5}, "filter")
    with pytest.raises(ValueError, match="conv3: .*1.0"):
        prune_model(VGG16(0.125), {"conv3": 1.0}, "filter")


def test_a_sparsity_that_removes_every_filter_of_a_layer_is_refused():
    model = VGG16(width=0.25)  # conv0 has 16 filters: round(0.97 * 16) = 16
    with pytest.raises(ValueError, match=r"conv0: sparsity 0\.97 removes all 16 units"):
        prune_model(model, {"conv0": 0.97}, "filter")
    assert not prune.is_pruned(model)
    prune_model(model, {"conv0": 0.96}, "filter")  # round(15.36) = 15: one filter stays
    assert _removed_units(model, "filter")["conv0"] == 15


def test_prune_model_masks_through_torch_prune_and_survive_training():
    torch.manual_seed(0)
    model = VGG16(width=0.125)
    prune_model(model, {"conv1": 0.5, "conv7": 0.8}, "kernel")
    conv1 = conv_layers(model)["conv1"]
    assert prune.is_pruned(model) and hasattr(conv1, "weight_mask")
    assert {m for m, name in masked_parameters(model) if name == "weight"} == {
        "features.conv1", "features.bn1", "features.conv7", "features.bn7"}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        loss = model(torch.rand(4, 3, 32, 32)).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model(torch.rand(1, 3, 32, 32))
    assert torch.all(conv1.weight[~conv1.weight_mask.bool()] == 0)
    make_permanent(model)
    assert not prune.is_pruned(model) and not hasattr(conv1, "weight_mask") and masked_parameters(model) == []
    assert (conv1.weight == 0).sum() >= conv1.weight.numel() // 2


def test_filter_pruning_removes_the_channel_output_unless_original_behaviour_is_asked():
    torch.manual_seed(0)
    for remove, expect_zero in ((True, True), (False, False)):
        model = VGG16(width=0.125)
        model.features.bn2.bias.data.fill_(0.3)  # a positive shift that the original left on
        prune_model(model, {"conv2": 0.5}, "filter", remove_filter_outputs=remove)
        model.eval()
        removed = ~model.features.conv2.weight_mask.flatten(1).any(1)
        assert int(removed.sum()) == 4
        out = model.features[: list(model.features._modules).index("relu2") + 1](torch.rand(2, 3, 32, 32))
        dead = out[:, removed]
        assert bool(torch.all(dead == 0)) == expect_zero
        assert bool(torch.all(out[:, ~removed].flatten(1).any(1)))  # kept channels are alive
        if not expect_zero:  # the original's "pruned" filter still emits a constant
            assert torch.allclose(dead, dead[..., :1, :1].expand_as(dead))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_mask_targets_mask_the_bias_and_batchnorm_of_every_filter_left_with_no_weight(strategy):
    model = VGG16(width=0.125)
    conv, bn = conv_layers(model)["conv4"], batchnorm_after(model)["conv4"]
    mask = make_mask(conv.weight, 0.5, strategy)
    mask[:3] = False  # three filters emptied, whatever the strategy
    alive = torch.tensor([bool(mask[f].any()) for f in range(conv.out_channels)])  # filter by filter
    targets = mask_targets(model, "conv4", mask, strategy)
    assert set(targets) == {(conv, "weight"), (conv, "bias"), (bn, "weight"), (bn, "bias")}
    assert torch.equal(targets[(conv, "weight")], mask)
    for key in ((conv, "bias"), (bn, "weight"), (bn, "bias")):
        assert torch.equal(targets[key], alive)
    assert not alive[:3].any() and int(alive.sum()) >= (conv.out_channels // 2 - 3 if strategy == "filter"
                                                         else conv.out_channels - 3)
    # the original's behaviour: only the weight
    assert set(mask_targets(model, "conv4", mask, strategy, remove_filter_outputs=False)) == {(conv, "weight")}
    with pytest.raises(ValueError, match="strategy"):
        mask_targets(model, "conv4", mask, "channel")


def test_mask_inputs_name_the_emptied_filter_rule_for_kernel_and_fine_grained_only():
    assert mask_inputs("filter") == {}
    assert mask_inputs("kernel") == mask_inputs("fine-grained") == {"emptied_filters": "removed"}
    with pytest.raises(ValueError, match="strategy"):
        mask_inputs("channel")


@pytest.mark.parametrize("strategy", ["kernel", "fine-grained"])
def test_a_filter_emptied_by_kernel_or_fine_grained_pruning_outputs_zero_in_both_modes(strategy):
    torch.manual_seed(0)
    model = VGG16(width=0.125)
    conv0 = model.features.conv0
    conv0.weight.data[:2] = 0  # two filters below all others: pruned first (2 of every filter's units)
    model.features.bn0.bias.data.fill_(0.3)  # a positive shift that would pass the ReLU
    prune_model(model, {"conv0": 2 / conv0.out_channels}, strategy)
    empty = ~conv0.weight_mask.flatten(1).any(1)
    assert empty.tolist()[:2] == [True, True] and int(empty.sum()) == 2
    upto_relu0 = model.features[: list(model.features._modules).index("relu0") + 1]
    x = torch.rand(4, 3, 32, 32)
    for train in (True, False):
        model.train(train)
        out = upto_relu0(x)
        assert torch.all(out[:, empty] == 0) and bool(torch.all(out[:, ~empty].flatten(1).any(1)))


def test_prune_model_applies_exactly_the_mask_targets():
    model = VGG16(width=0.125)
    prune_model(model, {"conv4": 0.5}, "filter")
    assert sorted(masked_parameters(model)) == [
        ("features.bn4", "bias"), ("features.bn4", "weight"), ("features.conv4", "bias"), ("features.conv4", "weight")]
    model = VGG16(width=0.125)
    prune_model(model, {"conv4": 0.5, "conv9": 0.3}, "kernel")
    assert sorted(masked_parameters(model)) == sorted((f"features.{m}{i}", n) for i in (4, 9) for m, n in
                                                      (("conv", "weight"), ("conv", "bias"), ("bn", "weight"), ("bn", "bias")))
    model = VGG16(width=0.125)
    prune_model(model, {"conv4": 0.5}, "kernel", remove_filter_outputs=False)
    assert masked_parameters(model) == [("features.conv4", "weight")]


def test_apply_masks_combines_with_an_existing_mask():
    model = VGG16(width=0.125)
    conv = conv_layers(model)["conv1"]
    first = torch.rand(conv.weight.shape) > 0.5
    second = torch.rand(conv.weight.shape) > 0.5
    apply_masks({(conv, "weight"): first})
    apply_masks({(conv, "weight"): second})
    assert torch.equal(current_mask(conv), first & second)


def test_current_mask_effective_weight_layer_masks_and_conv_weights():
    torch.manual_seed(0)
    model = VGG16(width=0.125)
    dense = {name: conv.weight.detach().clone() for name, conv in conv_layers(model).items()}
    conv2 = conv_layers(model)["conv2"]
    assert current_mask(conv2) is None and torch.equal(effective_weight(conv2), dense["conv2"])
    prune_model(model, {"conv2": 0.6}, "fine-grained")
    mask = current_mask(conv2)
    assert mask.dtype == torch.bool and int((~mask).sum()) == round(0.6 * mask.numel())
    assert torch.equal(effective_weight(conv2), dense["conv2"] * mask)
    masks = layer_masks(model)
    assert list(masks) == list(CONV_NAMES) and torch.equal(masks["conv2"], mask)
    assert all(masks[name].all() and masks[name].dtype == torch.bool for name in CONV_NAMES if name != "conv2")
    weights = conv_weights(model)
    assert all(weights[name].device.type == "cpu" for name in CONV_NAMES)
    assert torch.equal(weights["conv2"], dense["conv2"] * mask) and torch.equal(weights["conv0"], dense["conv0"])


def test_random_criterion_masks_depend_on_the_seed_only(trained_tiny):
    sparsities = dict.fromkeys(CONV_NAMES, 0.5)

    def masks(seed):
        generator = torch.Generator().manual_seed(seed)
        return layer_masks(prune_model(copy.deepcopy(trained_tiny), sparsities, "filter", norm="random",
                                       generator=generator))

    a, b, c = masks(0), masks(0), masks(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert _removed_units(prune_model(copy.deepcopy(trained_tiny), sparsities, "filter"), "filter") == {
        k: int((~m).flatten(1).all(1).sum()) for k, m in a.items()}


# --- pruning an already pruned model: sparsities are totals -------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pruning_again_removes_exact_cumulative_counts_and_keeps_removed_units(trained_tiny, strategy):
    model = copy.deepcopy(trained_tiny)
    first, second = dict.fromkeys(CONV_NAMES, 0.3), dict.fromkeys(CONV_NAMES, 0.65)
    prune_model(model, first, strategy)
    after_first = {k: m.clone() for k, m in layer_masks(model).items()}
    assert _removed_units(model, strategy) == {
        k: round(0.3 * (c.weight.numel() // UNIT_SIZE[strategy](c.weight))) for k, c in conv_layers(model).items()}
    with torch.no_grad():  # training moves the surviving weights between rounds
        for conv in conv_layers(model).values():
            conv.weight_orig.mul_(1 + 0.5 * torch.rand_like(conv.weight_orig))
    prune_model(model, second, strategy)
    weights = {k: c.weight_orig for k, c in conv_layers(model).items()}
    expected = {k: round(0.65 * (w.numel() // UNIT_SIZE[strategy](w))) for k, w in weights.items()}
    assert _removed_units(model, strategy) == expected  # exactly round(s * n) in total, not on top
    for name, mask in layer_masks(model).items():
        assert not (mask & ~after_first[name]).any()  # nothing removed comes back
        # the units removed in the second round are the weakest survivors of the moved weights
        scores = _scores(conv_layers(model)[name].weight_orig.detach() * after_first[name], strategy)
        new = removed_units(mask, strategy) & ~removed_units(after_first[name], strategy)
        alive = ~removed_units(mask, strategy)
        assert scores[new].max() <= scores[alive].min(), name
    if strategy == "filter":
        alive = layer_masks(model)["conv3"].flatten(1).any(1)
        assert torch.equal(model.features.conv3.bias_mask.bool(), alive)
        assert torch.equal(model.features.bn3.weight_mask.bool(), alive)
        assert torch.equal(model.features.bn3.bias_mask.bool(), alive)
    with pytest.raises(ValueError, match=r"conv0: .*already removed.*sparsity 0\.3.*can only grow"):
        prune_model(model, first, strategy)  # a shrinking sparsity


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pruning_in_steps_without_training_equals_one_shot(trained_tiny, strategy):
    target = {name: [0.2, 0.5, 0.8][i % 3] for i, name in enumerate(CONV_NAMES)}
    stepped = copy.deepcopy(trained_tiny)
    for step in geometric_schedule(target, 3):
        prune_model(stepped, step, strategy)
    one_shot = prune_model(copy.deepcopy(trained_tiny), target, strategy)
    for name, mask in layer_masks(one_shot).items():
        assert torch.equal(layer_masks(stepped)[name], mask), name
