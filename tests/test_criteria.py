"""Pruning criteria (weight in, keep-mask out) against independent oracles, exact counts and bad input."""

import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from pruning_utils.criteria import (
    ALIASES,
    CRITERIA,
    STRATEGIES,
    check_sparsities,
    check_sparsity,
    check_strategy,
    expand_to_weight,
    get_criterion,
    keep_highest,
    make_mask,
    removed_units,
    unit_scores,
    units_removed,
)

SHAPES = [(1, 1, 3, 3), (4, 3, 3, 3), (8, 5, 3, 3), (16, 16, 3, 3), (7, 2, 5, 5), (32, 8, 1, 1)]
SPARSITIES = [0.0, 0.05, 0.1, 0.33, 0.5, 0.7, 0.9, 0.99]
UNITS = {"fine-grained": lambda shape: math.prod(shape), "kernel": lambda shape: shape[0] * shape[1],
         "filter": lambda shape: shape[0]}


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
    checked = refused = 0
    for shape, sparsity in itertools.product(SHAPES, SPARSITIES):
        weight = torch.randn(shape, generator=generator)
        n_units = UNITS[strategy](shape)
        if round(sparsity * n_units) >= n_units:  # would remove every unit: refused (the oracle empties it)
            with pytest.raises(ValueError, match=f"sparsity {sparsity}"):
                make_mask(weight, sparsity, strategy)
            assert not _oracle(weight, sparsity, strategy).any()
            refused += 1
            continue
        mask = make_mask(weight, sparsity, strategy)
        assert mask.dtype == torch.bool and mask.shape == weight.shape
        assert torch.equal(mask, _oracle(weight, sparsity, strategy)), (shape, sparsity)
        checked += 1
    # refusals are the exception: few units at high sparsity (e.g. a single filter at 0.7)
    assert checked + refused == len(SHAPES) * len(SPARSITIES)
    assert refused == {"fine-grained": 1, "kernel": 6, "filter": 9}[strategy]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_exact_removal_counts(strategy):
    weight = torch.randn(24, 10, 3, 3)
    units = {"fine-grained": weight.numel(), "kernel": 24 * 10, "filter": 24}[strategy]
    unit_size = weight.numel() // units
    for sparsity in [i / 20 for i in range(20)]:
        removed = (~make_mask(weight, sparsity, strategy)).sum().item()
        assert removed == round(sparsity * units) * unit_size, sparsity
        assert units_removed(sparsity, units) == round(sparsity * units)


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
    g1, g2, g3 = (torch.Generator().manual_seed(s) for s in (1, 1, 2))
    w = torch.randn(64, 8, 3, 3)
    r1 = make_mask(w, 0.5, "filter", norm="random", generator=g1)
    assert torch.equal(r1, make_mask(w, 0.5, "filter", norm="random", generator=g2))
    assert not torch.equal(r1, make_mask(w, 0.5, "filter", norm="random", generator=g3))
    assert (~r1).flatten(1).all(1).sum() == 32


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_bad_sparsity_raises(sparsity):
    with pytest.raises(ValueError, match="sparsity"):
        make_mask(torch.randn(4, 4, 3, 3), sparsity, "filter")
    with pytest.raises(ValueError, match="sparsity"):
        check_sparsity(sparsity)


@pytest.mark.parametrize("strategy,shape,sparsity", [
    ("filter", (16, 4, 3, 3), 0.97),  # round(15.52) = 16 of 16 filters
    ("filter", (8, 4, 3, 3), 0.95),  # round(7.6) = 8 of 8
    ("kernel", (2, 2, 3, 3), 0.9),  # round(3.6) = 4 of 4 kernels
    ("fine-grained", (1, 1, 3, 3), 0.95),  # round(8.55) = 9 of 9 weights
])
def test_a_sparsity_that_removes_every_unit_is_refused(strategy, shape, sparsity):
    n_units = UNITS[strategy](shape)
    with pytest.raises(ValueError, match=rf"sparsity {sparsity} removes all {n_units} units"):
        units_removed(sparsity, n_units)
    with pytest.raises(ValueError, match=rf"sparsity {sparsity} removes all {n_units} units"):
        make_mask(torch.randn(shape), sparsity, strategy)
    # the largest sparsity that keeps one unit is accepted and keeps exactly one
    largest = (n_units - 1) / n_units
    assert units_removed(largest, n_units) == n_units - 1
    kept = make_mask(torch.randn(shape), largest, strategy)
    assert int(kept.sum()) == math.prod(shape) // n_units


def test_units_removed_rounds_half_to_even_and_allows_empty_weights():
    assert units_removed(0.5, 5) == 2 and units_removed(0.3, 5) == 2 and units_removed(0.7, 5) == 4  # 2.5 -> 2
    assert units_removed(0.0, 0) == 0 and units_removed(0.0, 1) == 0 and units_removed(0.49, 1) == 0
    with pytest.raises(ValueError, match="sparsity 0.6 removes all 1 units"):
        units_removed(0.6, 1)


def test_unknown_strategy_and_criterion_list_valid_ones():
    with pytest.raises(ValueError, match="'channel'.*fine-grained, kernel, filter"):
        make_mask(torch.randn(4, 4, 3, 3), 0.5, "channel")
    with pytest.raises(ValueError, match="'channel'.*fine-grained, kernel, filter"):
        check_strategy("channel")
    with pytest.raises(ValueError, match=r"criterion 'hessian'.*L2, L1, random, Taylor \(or 2, 1, 'taylor'\)"):
        make_mask(torch.randn(4, 4, 3, 3), 0.5, "filter", norm="hessian")
    with pytest.raises(ValueError, match="'Taylor' needs a per-weight importance"):
        make_mask(torch.randn(4, 4, 3, 3), 0.5, "filter", norm="taylor")
    for bad in (3, True, None, "l2"):  # True == 1 is not the alias of L1
        with pytest.raises(ValueError, match=f"unknown criterion {bad!r}"):
            get_criterion(bad)
    for strategy in STRATEGIES:
        check_strategy(strategy)


def test_the_study_compares_the_four_criteria_and_old_spellings_name_them():
    assert list(CRITERIA) == ["L2", "L1", "random", "Taylor"]  # the committed run's order: its keys follow it
    assert {name: sorted(c.needs) for name, c in CRITERIA.items()} == {
        "L2": [], "L1": [], "random": ["generator"], "Taylor": ["importance"]}
    for alias, name in ALIASES.items():
        assert get_criterion(alias) is get_criterion(name) is CRITERIA[name]
    weight, imp = torch.randn(8, 4, 3, 3), torch.rand(8, 4, 3, 3)
    for strategy in STRATEGIES:
        assert torch.equal(make_mask(weight, 0.5, strategy, norm=2), make_mask(weight, 0.5, strategy, norm="L2"))
        assert torch.equal(make_mask(weight, 0.5, strategy, norm=1), make_mask(weight, 0.5, strategy, norm="L1"))
        assert torch.equal(make_mask(weight, 0.5, strategy, norm="taylor", importance=imp),
                           make_mask(weight, 0.5, strategy, norm="Taylor", importance=imp))


def test_check_sparsities_names_the_layer_and_the_value():
    check_sparsities({"conv0": 0.0, "conv11": 0.9})
    with pytest.raises(KeyError, match="'conv12'.*conv0, conv1"):
        check_sparsities({"conv12": 0.5})
    with pytest.raises(ValueError, match="conv3: .*1.0"):
        check_sparsities({"conv0": 0.5, "conv3": 1.0})


def test_non_4d_weight_for_structured_pruning_raises():
    for strategy in ("kernel", "filter"):
        with pytest.raises(ValueError, match="4-D"):
            make_mask(torch.randn(10, 20), 0.5, strategy)
    assert make_mask(torch.randn(10, 20), 0.5, "fine-grained").sum() == 100


def test_unit_scores_shapes_and_values():
    w = torch.randn(6, 4, 3, 3)
    assert torch.equal(unit_scores(w, "fine-grained"), w.abs())
    assert unit_scores(w, "kernel").shape == (6, 4)
    assert torch.allclose(unit_scores(w, "kernel"), w.flatten(2).norm(dim=2))
    assert torch.allclose(unit_scores(w, "kernel", norm=1), w.flatten(2).abs().sum(dim=2))
    assert unit_scores(w, "filter").shape == (6,)
    assert torch.allclose(unit_scores(w, "filter"), w.flatten(1).norm(dim=1))
    assert torch.allclose(unit_scores(w, "filter", norm=1), w.flatten(1).abs().sum(dim=1))


def test_keep_highest_expand_and_removed_units():
    scores = torch.tensor([3.0, -math.inf, 1.0, 1.0, 5.0])
    assert keep_highest(scores, 0.4).tolist() == [True, False, False, True, True]  # -inf first, then tie by index
    grid = torch.tensor([[2.0, 1.0], [4.0, 3.0]])
    assert keep_highest(grid, 0.5).tolist() == [[False, False], [True, True]]
    with pytest.raises(ValueError, match="sparsity 0.95 removes all 5 units"):
        keep_highest(scores, 0.95)
    weight = torch.randn(3, 2, 3, 3)
    unit = torch.tensor([[True, False], [False, False], [True, True]])
    full = expand_to_weight(unit, weight)
    assert full.shape == weight.shape and torch.equal(full.all(dim=(2, 3)), unit) and torch.equal(
        full.any(dim=(2, 3)), unit)
    assert torch.equal(removed_units(full, "kernel"), ~unit)
    assert torch.equal(removed_units(full, "filter"), torch.tensor([False, True, False]))
    assert torch.equal(removed_units(full, "fine-grained"), ~full)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_make_mask_with_current_keeps_removed_units_and_counts_them(strategy):
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(20, 6, 3, 3, generator=generator)
    n_units = UNITS[strategy](weight.shape)
    first = make_mask(weight, 0.3, strategy)
    grown = weight * (1 + 2 * torch.rand(weight.shape, generator=generator))  # surviving weights move
    second = make_mask(grown, 0.6, strategy, current=first)
    assert not (second & ~first).any()  # nothing removed comes back
    assert int(removed_units(second, strategy).sum()) == round(0.6 * n_units)
    # the units removed on top are the weakest survivors of the moved weights
    scores = unit_scores(grown * first, strategy).flatten()
    gone_now = (removed_units(second, strategy) & ~removed_units(first, strategy)).flatten()
    alive = ~removed_units(second, strategy).flatten()
    assert scores[gone_now].max() <= scores[alive].min()
    # the same total again changes nothing; a smaller total is refused
    assert torch.equal(make_mask(grown, 0.6, strategy, current=second), second)
    with pytest.raises(ValueError, match="already removed.*sparsity 0.3.*can only grow"):
        make_mask(grown, 0.3, strategy, current=second)
    with pytest.raises(ValueError, match="sparsity 0.9999 removes all"):
        make_mask(grown, 0.9999, strategy, current=second)
