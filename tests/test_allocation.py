"""Allocating a budget of conv weights over layers: uniform, and guided by the sensitivity scans."""

import copy

import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from pruning_utils.allocation import (
    EXTRAPOLATED_SPARSITIES,
    allocate,
    check_budget,
    collapses,
    collapsing_layers,
    global_sparsities,
    guided_sparsities,
    kept_fractions,
    predicted_accuracy,
    uniform_sparsities,
)
from pruning_utils.config import SCAN_SPARSITIES
from pruning_utils.counting import conv_weights_kept_pct
from pruning_utils.criteria import STRATEGIES, unit_scores
from pruning_utils.masks import layer_masks, prune_model
from pruning_utils.model import CONV_NAMES, VGG16, conv_layers

UNIT_SIZE = {"fine-grained": lambda w: 1, "kernel": lambda w: w[0, 0].numel(), "filter": lambda w: w[0].numel()}
SIZES = {name: conv.weight.numel() for name, conv in conv_layers(VGG16(width=0.125)).items()}


def scan_frame(curves, grid=SCAN_SPARSITIES, strategy="filter"):
    """A sensitivity scan DataFrame from ``{layer: [accuracy at each grid sparsity]}``."""
    rows = [(strategy, layer, s, a) for layer, accs in curves.items() for s, a in zip(grid, accs)]
    return pd.DataFrame(rows, columns=["strategy", "layer", "sparsity", "accuracy"])


def _additive(curves, grid, sparsities):
    """The additive model computed directly from the curves: dense + sum of per-layer drops."""
    index = {round(s, 9): i for i, s in enumerate(grid)}
    dense = next(iter(curves.values()))[0]
    return dense + sum(curves[l][index[round(s, 9)]] - curves[l][0] for l, s in sparsities.items())


def _kept_fraction(sizes, sparsities):
    return sum((1 - sparsities[l]) * n for l, n in sizes.items()) / sum(sizes.values())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_uniform_sparsities_hit_the_budget_up_to_rounding(strategy):
    model = VGG16(width=0.125)
    for budget in (0.8, 0.5, 0.3, 0.1, 0.05):
        sparsities = uniform_sparsities(model, budget, strategy)
        assert set(sparsities) == set(CONV_NAMES) and len(set(sparsities.values())) == 1
        assert sparsities["conv0"] == pytest.approx(1 - budget, abs=1e-12)
        if strategy == "filter" and budget == 0.05:  # round(0.95 * 8) = 8: conv0 would lose every filter
            with pytest.raises(ValueError, match=r"conv0: sparsity 0\.95 removes all 8 units"):
                prune_model(copy.deepcopy(model), sparsities, strategy)
            continue
        pruned = prune_model(copy.deepcopy(model), sparsities, strategy)
        masks = layer_masks(pruned)
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        slack = sum(UNIT_SIZE[strategy](m) / 2 for m in masks.values())  # half a unit per layer
        assert abs(kept - budget * total) <= slack, (budget, kept / total)
    assert uniform_sparsities(model, 0.7, "filter")["conv0"] == 0.3  # not 0.30000000000000004


def test_uniform_sparsities_reject_bad_budgets():
    for bad in (0, 0.0, -0.1, 1.5, True, "0.5", float("nan")):
        with pytest.raises(ValueError, match="conv_fraction_kept"):
            uniform_sparsities(VGG16(width=0.125), bad, "filter")
        with pytest.raises(ValueError, match=f"got {bad!r}"):
            check_budget(bad)
    with pytest.raises(ValueError, match="'channel'"):
        uniform_sparsities(VGG16(width=0.125), 0.5, "channel")
    assert set(uniform_sparsities(VGG16(width=0.125), 1.0, "filter").values()) == {0.0}
    check_budget(1.0)
    check_budget(0.05)


def test_guided_puts_the_sparsity_in_the_insensitive_layer():
    grid = SCAN_SPARSITIES
    curves = {"conv0": [0.9 - s for s in grid], "conv1": [0.9] * len(grid), "conv2": [0.9 - s / 2 for s in grid]}
    sizes = {"conv0": 1000, "conv1": 1000, "conv2": 1000}
    # removing 0.9 of conv1 keeps exactly 70% at no predicted cost
    assert guided_sparsities(scan_frame(curves), sizes, 0.7) == {"conv0": 0.0, "conv1": 0.9, "conv2": 0.0}
    # a smaller budget takes the rest from the next least sensitive layer (conv2)
    assert guided_sparsities(scan_frame(curves), sizes, 0.5) == {"conv0": 0.0, "conv1": 0.9, "conv2": 0.6}


def test_guided_meets_the_budget_and_is_predicted_no_worse_than_uniform():
    grid = SCAN_SPARSITIES
    generator = torch.Generator().manual_seed(0)
    for trial in range(5):
        curves = {}
        for layer in SIZES:  # decreasing curves of varied shape with a little noise
            power = float(torch.rand(1, generator=generator)) * 4 + 0.5
            scale = float(torch.rand(1, generator=generator)) * 0.8
            noise = 0.01 * torch.randn(len(grid), generator=generator)
            curves[layer] = [0.9 - scale * s**power + float(e) * (s > 0) for s, e in zip(grid, noise)]
        scan = scan_frame(curves)
        for budget in (0.9, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1):
            guided = guided_sparsities(scan, SIZES, budget)
            assert all(any(abs(s - g) < 1e-9 for g in grid) for s in guided.values())
            assert _kept_fraction(SIZES, guided) <= budget + 1e-9, (trial, budget)
            uniform = dict.fromkeys(SIZES, round(1 - budget, 9))
            assert _additive(curves, grid, guided) >= _additive(curves, grid, uniform) - 1e-12, (trial, budget)
            assert predicted_accuracy(scan, guided) == pytest.approx(_additive(curves, grid, guided))


def test_guided_beats_uniform_when_layers_differ():
    grid = SCAN_SPARSITIES
    curves = {name: [0.9 - (0.8 if i % 2 else 0.05) * s for s in grid] for i, name in enumerate(SIZES)}
    guided = guided_sparsities(scan_frame(curves), SIZES, 0.5)
    uniform = dict.fromkeys(SIZES, 0.5)
    assert _additive(curves, grid, guided) > _additive(curves, grid, uniform) + 0.05


def test_guided_small_budgets_use_the_extrapolated_grid_or_name_the_smallest_reachable_one():
    grid = SCAN_SPARSITIES
    curves = {name: [0.9 - 0.5 * s for s in grid] for name in SIZES}  # 0.45 at 0.9, slope -0.5
    curves["conv0"] = [0.9 - 0.8 / 0.9 * s for s in grid]  # 0.1 at 0.9: the scan's lowest accuracy
    scan = scan_frame(curves)
    guided = guided_sparsities(scan, SIZES, 0.05)
    assert _kept_fraction(SIZES, guided) <= 0.05 + 1e-9
    assert EXTRAPOLATED_SPARSITIES == (0.95, 0.98)
    assert set(guided.values()) <= {*grid, *EXTRAPOLATED_SPARSITIES}
    assert max(guided.values()) > 0.9
    # extrapolated: the last measured segment's slope, never below the scan's lowest accuracy
    assert predicted_accuracy(scan, {"conv5": 0.98}) == pytest.approx(0.9 - 0.5 * 0.98)
    assert predicted_accuracy(scan, {"conv0": 0.98}) == pytest.approx(0.1)
    # the measured grid suffices for 10%: nothing beyond it is used
    assert max(guided_sparsities(scan, SIZES, 0.1).values()) <= 0.9
    with pytest.raises(ValueError, match=r"smallest reachable budget .* 0\.0200"):
        guided_sparsities(scan, SIZES, 0.01)


def test_guided_rejects_bad_scans():
    curves = {"conv0": [0.9] * 10, "conv1": [0.9] * 10}
    sizes = {"conv0": 10, "conv1": 10}
    with pytest.raises(ValueError, match="sparsity 0"):
        guided_sparsities(scan_frame(curves, grid=[s + 0.05 for s in SCAN_SPARSITIES]), sizes, 0.5)
    with pytest.raises(ValueError, match="same layers"):
        guided_sparsities(scan_frame(curves), {"conv0": 10}, 0.5)
    two = pd.concat([scan_frame(curves), scan_frame(curves, strategy="kernel")])
    with pytest.raises(ValueError, match="one strategy"):
        guided_sparsities(two, sizes, 0.5)
    with pytest.raises(ValueError, match="conv_fraction_kept"):
        guided_sparsities(scan_frame(curves), sizes, 0.0)
    with pytest.raises(ValueError, match=r"layer_sizes\['conv1'\].*0"):
        guided_sparsities(scan_frame(curves), {"conv0": 10, "conv1": 0}, 0.5)
    with pytest.raises(ValueError, match="lacks column"):
        guided_sparsities(scan_frame(curves).drop(columns="accuracy"), sizes, 0.5)
    with pytest.raises(ValueError, match="repeated sparsities for conv0"):
        guided_sparsities(pd.concat([scan_frame(curves), scan_frame({"conv0": [0.9]}, grid=[0.5])]), sizes, 0.5)
    with pytest.raises(ValueError, match="not on the scan's grid"):
        predicted_accuracy(scan_frame(curves), {"conv0": 0.55})
    with pytest.raises(KeyError, match="'conv7' is not in the scan"):
        predicted_accuracy(scan_frame(curves), {"conv7": 0.5})


def _convs(*weights):
    """A stack of 1x1 conv layers (in_channels 1) whose filters hold ``weights``, one list per layer."""
    layers = []
    for w in weights:
        conv = nn.Conv2d(1, len(w), 1, bias=False)
        conv.weight.data = torch.tensor(w, dtype=torch.float32).view(-1, 1, 1, 1)
        layers.append(conv)
    return nn.Sequential(*layers)


def test_global_magnitude_is_torch_global_unstructured():
    """The oracle: torch.nn.utils.prune.global_unstructured (L1 over all conv weights at once) removes the
    same weights as each layer pruned at global_sparsities by its own magnitudes."""
    torch.manual_seed(0)
    model = VGG16(width=0.125)
    sparsities = global_sparsities(model, 0.3, "fine-grained")
    assert len(set(sparsities.values())) > 3  # not uniform: the layers' magnitudes differ
    ours = prune_model(copy.deepcopy(model), sparsities, "fine-grained")
    theirs = copy.deepcopy(model)
    convs = list(conv_layers(theirs).values())
    removed = sum(round(s * c.weight.numel()) for s, c in zip(sparsities.values(), convs))
    prune.global_unstructured([(c, "weight") for c in convs], pruning_method=prune.L1Unstructured, amount=removed)
    for (name, mine), other in zip(layer_masks(ours).items(), convs):
        assert torch.equal(mine, other.weight_mask.bool()), name
    total = sum(c.weight.numel() for c in convs)
    assert total - removed <= 0.3 * total < total - removed + 1  # the budget, to one weight


def test_lamp_scores_by_hand_and_layer_collapse():
    """Layer A holds 1, 2, 3 and layer B 10, 20 (one weight per filter). LAMP: A's squares 1, 4, 9 over the
    squares at least as large (14, 13, 9) score 0.07, 0.31, 1; B's 100, 400 over 500, 400 score 0.2, 1. Keeping 3
    of 5, LAMP removes A's 1 and B's 10; plain magnitude removes A's 1 and 2."""
    model = _convs([1.0, 2.0, 3.0], [10.0, 20.0])
    assert global_sparsities(model, 0.6, "filter", lamp=True) == {"conv0": 1 / 3, "conv1": 1 / 2}
    assert global_sparsities(model, 0.6, "filter") == {"conv0": 2 / 3, "conv1": 0.0}
    # plain magnitude would take all of a weak layer; its strongest unit stays, and the rest comes from B
    weak = _convs([0.01, 0.02, 0.03], [10.0, 20.0, 30.0])
    assert global_sparsities(weak, 0.5, "fine-grained") == {"conv0": 2 / 3, "conv1": 1 / 3}
    with pytest.raises(ValueError, match="smallest reachable budget is 0.3333"):
        global_sparsities(weak, 0.2, "fine-grained")  # one unit per layer: 2 of 6 weights at least
    # which layers needed the guard: the plain ranking takes all of A (0.01, 0.02, 0.03 before B's 10)
    assert collapsing_layers(weak, 0.5, "fine-grained") == ["conv0"]
    assert collapsing_layers(weak, 0.5, "fine-grained", lamp=True) == []  # A's and B's scores are alike
    assert collapsing_layers(model, 0.6, "filter") == []
    table = collapses(weak, [0.8, 0.5], ["fine-grained"])
    assert table.set_index(["allocation", "budget"])["emptied"].to_dict() == {
        ("global", 0.8): "-", ("global", 0.5): "conv0", ("LAMP", 0.8): "-", ("LAMP", 0.5): "-"}
    kept = kept_fractions(weak, 0.5, "fine-grained", allocations=("uniform", "global", "LAMP"))
    assert kept.columns.tolist() == ["strategy", "allocation", "budget", "layer", "kept", "guarded"]
    assert kept.set_index(["allocation", "layer"])["guarded"].to_dict() == {
        ("uniform", "conv0"): False, ("uniform", "conv1"): False, ("global", "conv0"): True,
        ("global", "conv1"): False, ("LAMP", "conv0"): False, ("LAMP", "conv1"): False}
    assert kept.set_index(["allocation", "layer"]).at[("global", "conv0"), "kept"] == pytest.approx(1 / 3)


def test_allocate_names_each_allocation_and_what_it_needs():
    model = VGG16(width=0.125)
    assert allocate("uniform", model, 0.5, "kernel") == uniform_sparsities(model, 0.5, "kernel")
    assert allocate("LAMP", model, 0.5, "kernel") == global_sparsities(model, 0.5, "kernel", lamp=True)
    with pytest.raises(ValueError, match="unknown allocation 'best'; valid: uniform, guided, global, LAMP"):
        allocate("best", model, 0.5, "kernel")
    with pytest.raises(ValueError, match="needs the sensitivity scan of 'kernel'"):
        allocate("guided", model, 0.5, "kernel")


@pytest.mark.parametrize("strategy", ["kernel", "filter"])
@pytest.mark.parametrize("lamp", [False, True])
def test_global_allocation_of_kernels_and_filters_meets_the_budget(strategy, lamp):
    torch.manual_seed(1)
    model = VGG16(width=0.125)
    for budget in (0.5, 0.1):
        sparsities = global_sparsities(model, budget, strategy, lamp=lamp)
        kept = conv_weights_kept_pct(prune_model(copy.deepcopy(model), sparsities, strategy))
        convs = conv_layers(model).values()
        unit = max(c.weight.numel() // unit_scores(c.weight, strategy).numel() for c in convs)
        total = sum(c.weight.numel() for c in convs)
        assert 100 * (budget - unit / total) < kept <= 100 * budget + 1e-6  # under the budget by less than a unit
        assert all(s < 1 for s in sparsities.values())
