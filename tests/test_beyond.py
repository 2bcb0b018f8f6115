"""Budget allocation, iterative pruning counts, and the resumable sweeps of notebook 06."""

import copy

import pandas as pd
import pytest
import torch

from pruning_utils import beyond
from pruning_utils.beyond import (
    CRITERIA_COLUMNS,
    FRONTIER_COLUMNS,
    ITERATIVE_COLUMNS,
    PointCache,
    RecoverySettings,
    geometric_schedule,
    guided_sparsities,
    predicted_accuracy,
    prune_iteratively,
    prune_to,
    split_epochs,
    uniform_sparsities,
)
from pruning_utils.config import SCAN_SPARSITIES, Recipe
from pruning_utils.model import CONV_NAMES, VGG16, conv_layers
from pruning_utils.pruners import STRATEGIES, layer_masks, prune_model
from pruning_utils.runs import open_run, save_model

UNIT_SIZE = {"fine-grained": lambda w: 1, "kernel": lambda w: w[0, 0].numel(), "filter": lambda w: w[0].numel()}


def _units(weight, strategy):
    return weight.numel() // UNIT_SIZE[strategy](weight)


def _removed_units(model, strategy):
    """Per layer, the number of units whose weights are all masked (independent of beyond)."""
    out = {}
    for name, mask in layer_masks(model).items():
        gone = ~mask
        units = {"fine-grained": gone, "kernel": gone.flatten(2).all(-1), "filter": gone.flatten(1).all(-1)}
        out[name] = int(units[strategy].sum())
    return out


def _scan(curves, grid=SCAN_SPARSITIES, strategy="filter"):
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


SIZES = {name: conv.weight.numel() for name, conv in conv_layers(VGG16(width=0.125)).items()}


# --- allocation ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_uniform_sparsities_hit_the_budget_up_to_rounding(strategy):
    model = VGG16(width=0.125)
    for budget in (0.8, 0.5, 0.3, 0.05):
        sparsities = uniform_sparsities(model, budget, strategy)
        assert set(sparsities) == set(CONV_NAMES) and len(set(sparsities.values())) == 1
        assert sparsities["conv0"] == pytest.approx(1 - budget, abs=1e-12)
        pruned = prune_model(copy.deepcopy(model), sparsities, strategy)
        masks = layer_masks(pruned)
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        slack = sum(UNIT_SIZE[strategy](m) / 2 for m in masks.values())  # half a unit per layer
        assert abs(kept - budget * total) <= slack, (budget, kept / total)


def test_uniform_sparsities_reject_bad_budgets():
    for bad in (0, 0.0, -0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="conv_fraction_kept"):
            uniform_sparsities(VGG16(width=0.125), bad, "filter")
    with pytest.raises(ValueError, match="strategy"):
        uniform_sparsities(VGG16(width=0.125), 0.5, "channel")
    assert set(uniform_sparsities(VGG16(width=0.125), 1.0, "filter").values()) == {0.0}


def test_guided_puts_the_sparsity_in_the_insensitive_layer():
    grid = SCAN_SPARSITIES
    curves = {"conv0": [0.9 - s for s in grid], "conv1": [0.9] * len(grid), "conv2": [0.9 - s / 2 for s in grid]}
    sizes = {"conv0": 1000, "conv1": 1000, "conv2": 1000}
    # removing 0.9 of conv1 keeps exactly 70% at no predicted cost
    assert guided_sparsities(_scan(curves), sizes, 0.7) == {"conv0": 0.0, "conv1": 0.9, "conv2": 0.0}
    # a smaller budget takes the rest from the next least sensitive layer (conv2)
    assert guided_sparsities(_scan(curves), sizes, 0.5) == {"conv0": 0.0, "conv1": 0.9, "conv2": 0.6}


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
        scan = _scan(curves)
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
    guided = guided_sparsities(_scan(curves), SIZES, 0.5)
    uniform = dict.fromkeys(SIZES, 0.5)
    assert _additive(curves, grid, guided) > _additive(curves, grid, uniform) + 0.05


def test_guided_small_budgets_use_the_extrapolated_grid_or_name_the_smallest_reachable_one():
    grid = SCAN_SPARSITIES
    curves = {name: [0.9 - 0.5 * s for s in grid] for name in SIZES}  # 0.45 at 0.9, slope -0.5
    curves["conv0"] = [0.9 - 0.8 / 0.9 * s for s in grid]  # 0.1 at 0.9: the scan's lowest accuracy
    scan = _scan(curves)
    guided = guided_sparsities(scan, SIZES, 0.05)
    assert _kept_fraction(SIZES, guided) <= 0.05 + 1e-9
    assert set(guided.values()) <= {*grid, *beyond.EXTRAPOLATED_SPARSITIES}
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
        guided_sparsities(_scan(curves, grid=[s + 0.05 for s in SCAN_SPARSITIES]), sizes, 0.5)
    with pytest.raises(ValueError, match="same layers"):
        guided_sparsities(_scan(curves), {"conv0": 10}, 0.5)
    two = pd.concat([_scan(curves), _scan(curves, strategy="kernel")])
    with pytest.raises(ValueError, match="one strategy"):
        guided_sparsities(two, sizes, 0.5)
    with pytest.raises(ValueError, match="conv_fraction_kept"):
        guided_sparsities(_scan(curves), sizes, 0.0)
    with pytest.raises(ValueError, match="not on the scan's grid"):
        predicted_accuracy(_scan(curves), {"conv0": 0.55})


# --- iterative pruning ----------------------------------------------------------------------


def test_geometric_schedule_and_epoch_split():
    steps = geometric_schedule({"conv0": 0.875, "conv1": 0.0}, 3)
    assert [round(s["conv0"], 12) for s in steps] == [0.5, 0.75, 0.875]  # kept 1/2, 1/4, 1/8
    assert steps[-1] == {"conv0": 0.875, "conv1": 0.0}
    assert geometric_schedule({"conv0": 0.3}, 1) == [{"conv0": 0.3}]
    assert split_epochs(3, 3) == [1, 1, 1] and split_epochs(1, 2) == [0, 1] and split_epochs(5, 3) == [1, 2, 2]
    assert split_epochs(0, 2) == [0, 0]
    with pytest.raises(ValueError, match="rounds"):
        geometric_schedule({"conv0": 0.5}, 0)
    with pytest.raises(ValueError, match="total_finetune_epochs"):
        split_epochs(-1, 2)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_prune_to_removes_exact_cumulative_counts(trained_tiny, strategy):
    model = copy.deepcopy(trained_tiny)
    first, second = dict.fromkeys(CONV_NAMES, 0.3), dict.fromkeys(CONV_NAMES, 0.65)
    prune_to(model, first, strategy)
    after_first = {k: m.clone() for k, m in layer_masks(model).items()}
    with torch.no_grad():  # training moves the surviving weights between rounds
        for conv in conv_layers(model).values():
            conv.weight_orig.mul_(1 + 0.5 * torch.rand_like(conv.weight_orig))
    prune_to(model, second, strategy)
    weights = {k: c.weight_orig for k, c in conv_layers(model).items()}
    expected = {k: round(0.65 * _units(w, strategy)) for k, w in weights.items()}
    assert _removed_units(model, strategy) == expected
    for name, mask in layer_masks(model).items():
        assert not (mask & ~after_first[name]).any()  # nothing removed comes back
    if strategy == "filter":
        alive = layer_masks(model)["conv3"].flatten(1).any(1)
        assert torch.equal(model.features.conv3.bias_mask.bool(), alive)
        assert torch.equal(model.features.bn3.weight_mask.bool(), alive)
    with pytest.raises(ValueError, match="already removed"):
        prune_to(model, first, strategy)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_prune_to_in_steps_without_training_equals_one_shot(trained_tiny, strategy):
    target = {name: [0.2, 0.5, 0.8][i % 3] for i, name in enumerate(CONV_NAMES)}
    stepped = copy.deepcopy(trained_tiny)
    for step in geometric_schedule(target, 3):
        prune_to(stepped, step, strategy)
    one_shot = prune_model(copy.deepcopy(trained_tiny), target, strategy)
    for name, mask in layer_masks(one_shot).items():
        assert torch.equal(layer_masks(stepped)[name], mask), name


def test_iterative_final_masks_remove_as_many_units_as_one_shot(trained_tiny, synthetic):
    settings = RecoverySettings(Recipe(epochs=1, optimizer="adamw", lr=1e-3), batch_size=100,
                                recalibration_batches=2, eval_batch_size=200, precision="fp32")
    sparsities = dict.fromkeys(CONV_NAMES, 0.6)
    one, rows_one = prune_iteratively(trained_tiny, synthetic, sparsities, "filter", 1, 2, settings)
    two, rows_two = prune_iteratively(trained_tiny, synthetic, sparsities, "filter", 2, 2, settings)
    assert _removed_units(one, "filter") == _removed_units(two, "filter")
    assert _removed_units(two, "filter") == {k: round(0.6 * c.out_channels) for k, c in conv_layers(two).items()}
    assert [r["finetune_epochs"] for r in rows_one] == [2] and [r["finetune_epochs"] for r in rows_two] == [1, 1]
    assert rows_two[0]["conv_params_kept_pct"] > rows_two[1]["conv_params_kept_pct"]
    assert rows_two[1]["conv_params_kept_pct"] == pytest.approx(rows_one[0]["conv_params_kept_pct"])
    assert not hasattr(trained_tiny.features.conv0, "weight_mask")  # the dense model is untouched


# --- resumable sweeps on a run --------------------------------------------------------------


@pytest.fixture
def run(tmp_path, trained_tiny):
    run = open_run(profile="smoke", run_dir=tmp_path / "run", figures_dir=tmp_path / "figures",
                   synthetic_sizes=(600, 200, 200))
    save_model(trained_tiny, run.path("dense.pt"))
    grid = SCAN_SPARSITIES
    curves = {name: [0.5 - (0.4 if i < 6 else 0.05) * s for s in grid] for i, name in enumerate(CONV_NAMES)}
    for strategy in STRATEGIES:
        run.save_csv(f"sensitivity_{strategy}.csv", _scan(curves, strategy=strategy))
    return run


def _forbid_work(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a cached point was recomputed")

    for name in ("train", "prune_model", "recalibrate_batchnorm", "prune_to"):
        monkeypatch.setattr(beyond, name, refuse)


def test_frontier_columns_and_resume(run, monkeypatch):
    frame = beyond.frontier(run, budgets=(0.5,), strategies=("filter",), finetune_epochs=1, progress=False)
    assert list(frame.columns) == FRONTIER_COLUMNS
    assert frame[["strategy", "allocation", "budget"]].values.tolist() == [
        ["filter", "uniform", 0.5], ["filter", "guided", 0.5]]
    convs = conv_layers(VGG16(width=0.125)).values()
    half_filter_per_layer = 100 * sum(c.weight[0].numel() / 2 for c in convs) / sum(c.weight.numel() for c in convs)
    assert frame.at[0, "conv_params_kept_pct"] == pytest.approx(50)  # even filter counts: exact
    assert frame.at[1, "conv_params_kept_pct"] <= 50 + half_filter_per_layer  # grid sparsities, rounded to filters
    accuracies = frame[["acc_pruned", "acc_recalibrated", "acc_finetuned"]]
    assert ((accuracies >= 0) & (accuracies <= 100)).all().all()
    assert (frame["finetune_epochs"] == 1).all()
    assert run.path("frontier.csv").exists()

    _forbid_work(monkeypatch)
    again = beyond.frontier(run, budgets=(0.5,), strategies=("filter",), finetune_epochs=1, progress=False)
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)
    with pytest.raises(AssertionError, match="recomputed"):  # other settings are other points
        beyond.frontier(run, budgets=(0.5,), strategies=("filter",), finetune_epochs=2, progress=False)
    with pytest.raises(AssertionError, match="recomputed"):
        beyond.frontier(run, budgets=(0.5,), strategies=("filter",), finetune_epochs=1, force=True, progress=False)


def test_an_interrupted_sweep_resumes_at_the_next_point(run, monkeypatch):
    calls = []
    real = beyond.prune_model

    def flaky(*args, **kwargs):
        calls.append(kwargs.get("norm"))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(beyond, "prune_model", flaky)
    sparsities = {"filter": dict.fromkeys(CONV_NAMES, 0.5)}
    with pytest.raises(KeyboardInterrupt):
        beyond.criteria(run, sparsities, norms=(2, 1, "random"), random_seeds=1, finetune_epochs=0, progress=False)
    assert len(pd.read_csv(run.path("criteria.csv"))) == 1  # the finished point was kept
    frame = beyond.criteria(run, sparsities, norms=(2, 1, "random"), random_seeds=1, finetune_epochs=0,
                            progress=False)
    assert calls == [2, 1, 1, "random"]  # L2 not redone
    assert frame["criterion"].tolist() == ["L2", "L1", "random"]


def test_criteria_columns_seeds_and_resume(run, monkeypatch):
    sparsities = {"filter": dict.fromkeys(CONV_NAMES, 0.5), "fine-grained": dict.fromkeys(CONV_NAMES, 0.5)}
    frame = beyond.criteria(run, sparsities, norms=(2, "random"), random_seeds=2, finetune_epochs=0, progress=False)
    assert list(frame.columns) == CRITERIA_COLUMNS
    assert frame[["strategy", "criterion", "seed"]].values.tolist() == [
        ["filter", "L2", 0], ["filter", "random", 0], ["filter", "random", 1],
        ["fine-grained", "L2", 0], ["fine-grained", "random", 0], ["fine-grained", "random", 1]]
    assert (frame["acc_finetuned"] == frame["acc_recalibrated"]).all()  # 0 epochs: nothing to fine-tune
    assert frame["conv_params_kept_pct"].round(6).nunique() <= 2  # same sparsities for every criterion
    _forbid_work(monkeypatch)
    again = beyond.criteria(run, sparsities, norms=(2, "random"), random_seeds=2, finetune_epochs=0, progress=False)
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)
    with pytest.raises(ValueError, match="norms"):
        beyond.criteria(run, sparsities, norms=("taylor",), progress=False)


def test_random_criterion_masks_depend_on_the_seed_only(trained_tiny):
    sparsities = dict.fromkeys(CONV_NAMES, 0.5)

    def masks(seed):
        generator = torch.Generator().manual_seed(seed)
        return layer_masks(prune_model(copy.deepcopy(trained_tiny), sparsities, "filter", norm="random",
                                       generator=generator))

    a, b, c = masks(0), masks(0), masks(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_iterative_columns_and_resume(run, monkeypatch):
    sparsities = dict.fromkeys(CONV_NAMES, 0.6)
    frame = beyond.iterative(run, sparsities, "filter", rounds=(1, 2), total_finetune_epochs=1, progress=False)
    assert list(frame.columns) == ITERATIVE_COLUMNS
    assert frame[["rounds", "round", "finetune_epochs"]].values.tolist() == [[1, 1, 1], [2, 1, 0], [2, 2, 1]]
    final = frame.groupby("rounds")["conv_params_kept_pct"].last()
    assert final[1] == pytest.approx(final[2])
    _forbid_work(monkeypatch)
    again = beyond.iterative(run, sparsities, "filter", rounds=(1, 2), total_finetune_epochs=1, progress=False)
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)


def test_point_cache_replaces_rows_and_survives_reopening(tmp_path):
    cache = PointCache(tmp_path / "points.csv")
    assert cache.get("a") is None
    cache.put("a", [{"x": 1}, {"x": 2}])
    cache.put("b", [{"x": 3}])
    cache.put("a", [{"x": 4}])
    reopened = PointCache(tmp_path / "points.csv")
    assert reopened.get("a") == [{"x": 4}] and reopened.get("b") == [{"x": 3}]
    assert PointCache(tmp_path / "points.csv", refresh=True).get("a") is None
    digits = PointCache(tmp_path / "digits.csv")
    digits.put("0123", [{"x": 1}])
    assert PointCache(tmp_path / "digits.csv").get("0123") == [{"x": 1}]  # ids stay strings


def test_sweeps_reject_bad_choices(run):
    with pytest.raises(ValueError, match="allocations"):
        beyond.frontier(run, budgets=(0.5,), strategies=("filter",), allocations=("best",), progress=False)
    with pytest.raises(ValueError, match="strategies"):
        beyond.frontier(run, budgets=(0.5,), strategies=("channel",), progress=False)
    with pytest.raises(ValueError, match="conv_fraction_kept"):
        beyond.frontier(run, budgets=(1.5,), strategies=("filter",), progress=False)
    with pytest.raises(ValueError, match="finetune_epochs"):
        beyond.frontier(run, budgets=(0.5,), strategies=("filter",), finetune_epochs=-1, progress=False)
    with pytest.raises(FileNotFoundError, match="02_sensitivity"):
        run.path("sensitivity_kernel.csv").unlink()
        beyond.frontier(run, budgets=(0.5,), strategies=("kernel",), progress=False)
