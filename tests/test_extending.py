"""Adding a pruning criterion is one registered function: a toy criterion (L-infinity, the largest
|w| of a unit) gets masks that match an independent oracle at every granularity, and joins the
study's comparison (the criteria experiment, its summary table and figure) with no other edit.
Bad registrations are refused with the value and the rule."""

import itertools
import shutil

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from pruning_utils import experiments, plots, recovery, steps, tables
from pruning_utils.config import Recipe
from pruning_utils.criteria import (
    CRITERIA,
    STRATEGIES,
    make_mask,
    register,
    unit_rows,
    unit_scores,
    unregister,
)
from pruning_utils.model import VGG16
from pruning_utils.runs import open_run

matplotlib.use("Agg")
TINY_RUN = {"epochs": 1, "synthetic_sizes": (300, 100, 100), "scan_sparsities": (0.0, 0.5, 0.8),
            "recalibration_batches": 1}  # a study in seconds
BUILT_IN = ["L2", "L1", "random", "Taylor"]


@pytest.fixture
def linf():
    """Registers ``Linf`` for one test, then removes it, so no other test sees it."""

    @register("Linf")
    def linf_score(weight, strategy, context):  # the largest |w| of each unit
        return unit_rows(weight, strategy).abs().amax(-1)

    yield "Linf"
    unregister("Linf")


def _linf_oracle(weight: torch.Tensor, sparsity: float, strategy: str) -> torch.Tensor:
    """The keep-mask torch.nn.utils.prune computes with the infinity norm (|w| for single weights)."""
    holder = nn.Module()
    if strategy == "fine-grained":
        holder.weight = nn.Parameter(weight.clone())
        prune.l1_unstructured(holder, "weight", amount=sparsity)
        return holder.weight_mask.bool()
    rows = weight.reshape(weight.shape[0] * weight.shape[1], -1) if strategy == "kernel" else weight
    holder.weight = nn.Parameter(rows.clone())
    prune.ln_structured(holder, "weight", amount=sparsity, n=float("inf"), dim=0)
    return holder.weight_mask.reshape(weight.shape).bool()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_registered_criterion_masks_match_an_oracle(linf, strategy):
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for shape, sparsity in itertools.product([(4, 3, 3, 3), (16, 8, 3, 3), (7, 2, 5, 5)], [0.1, 0.25, 0.5, 0.8]):
        weight = torch.randn(shape, generator=generator)
        mask = make_mask(weight, sparsity, strategy, norm=linf)
        assert torch.equal(mask, _linf_oracle(weight, sparsity, strategy)), (shape, sparsity)
        checked += 1
    assert checked == 12
    # and it is not L2 in disguise: a filter with one large weight beats one of many medium weights
    weight = torch.full((2, 1, 3, 3), 0.5)
    weight[0] = 0.0
    weight[0, 0, 0, 0] = 1.0  # Linf 1 > 0.5, L2 1 < 1.5
    assert make_mask(weight, 0.5, "filter", norm="Linf")[0].all()
    assert not make_mask(weight, 0.5, "filter", norm="L2")[0].any()


def _open(run_dir):
    return open_run("smoke", run_dir, figures_dir=run_dir.parent / "figures", progress=False, **TINY_RUN)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """A tiny smoke run whose criteria comparison was computed before ``Linf`` existed (0 epochs of
    fine-tuning, one random seed); tests work on copies."""
    assert "Linf" not in CRITERIA
    run_dir = tmp_path_factory.mktemp("extending") / "run"
    table = experiments.criteria(_open(run_dir), random_seeds=1, finetune_epochs=0)
    return run_dir, table


def test_a_registered_criterion_joins_the_study_without_other_edits(compared, linf, tmp_path, monkeypatch):
    prepared, before = compared
    assert list(before["criterion"].unique()) == BUILT_IN
    shutil.copytree(prepared, tmp_path / "run")
    run = _open(tmp_path / "run")
    pruned_with = []
    real = recovery.prune_model

    def recorded(*args, **kwargs):
        pruned_with.append(kwargs.get("norm"))
        return real(*args, **kwargs)

    monkeypatch.setattr(recovery, "prune_model", recorded)
    after = experiments.criteria(run, random_seeds=1, finetune_epochs=0)  # the study's call, unchanged
    assert pruned_with == ["Linf"] * len(STRATEGIES)  # only the new points are computed, the others reused
    assert list(after["criterion"].unique()) == [*BUILT_IN, "Linf"]
    pd.testing.assert_frame_equal(after[after["criterion"] != "Linf"].reset_index(drop=True), before)
    new = after[after["criterion"] == "Linf"]
    assert new["strategy"].tolist() == list(STRATEGIES) and (new["seed"] == 0).all()
    # pruned at the same sparsities as every other criterion
    assert (after.groupby("strategy")["conv_weights_kept_pct"].nunique() == 1).all()
    # the row is what pruning the dense model with the Linf masks gives
    dense, _ = steps.dense_model(run)
    direct = recovery.prune_and_recover(dense, run.data, steps.strategy_sparsities(run, "filter"), "filter",
                                        steps.recovery_settings(run, 0), norm="Linf")
    assert new.loc[new["strategy"] == "filter", "acc_pruned"].item() == pytest.approx(direct["acc_pruned"])

    summary = tables.criteria_summary(after)
    assert [c for s, c in summary.index if s == "filter"] == [*BUILT_IN, "Linf"]
    assert summary.loc[("kernel", "Linf"), ("acc_pruned", "mean")] == pytest.approx(
        new.loc[new["strategy"] == "kernel", "acc_pruned"].item(), abs=0.05)
    fig = plots.criteria(after)
    try:
        legend = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
        assert legend == [*BUILT_IN, "Linf"]
    finally:
        plt.close(fig)


def test_a_criterion_gets_the_context_it_declares(synthetic):
    """``needs`` drives the study: a generator means one point per seed; importance means the Taylor
    importance is passed and its inputs enter the key."""
    seen = []

    @register("noisy-L1", needs=("generator",))
    def noisy(weight, strategy, context):
        seen.append(context)
        return unit_rows(weight, strategy).abs().sum(-1) + torch.rand(unit_rows(weight, strategy).shape[:-1],
                                                                     generator=context.generator)

    @register("Taylor-max", needs=("importance",))
    def taylor_max(weight, strategy, context):
        return unit_rows(context.importance, strategy).amax(-1)

    try:
        sparsities = {"filter": dict.fromkeys(["conv0", "conv5"], 0.5)}
        base = {"dense": "tiny", "data": "synthetic"}
        settings = recovery.RecoverySettings(Recipe(epochs=0, optimizer="adamw", lr=1e-3), batch_size=100,
                                             recalibration_batches=1)
        tiny = VGG16(width=0.125)
        points = experiments.criteria_points(tiny, synthetic, base, sparsities, settings,
                                             norms=("noisy-L1", "Taylor-max", "L2"), random_seeds=2,
                                             importance={"conv0": None}, importance_inputs={"made": "from"})
        assert [list(p[2].values()) for p in points] == [
            ["filter", "noisy-L1", 0], ["filter", "noisy-L1", 1], ["filter", "Taylor-max", 0], ["filter", "L2", 0]]
        assert points[2][3].keywords["importance"] == {"conv0": None} and points[3][3].keywords["importance"] is None
        assert [p[3].keywords["generator"].initial_seed() for p in points[:2]] == [0, 1]
        assert points[3][3].keywords["generator"] is None
        other = experiments.criteria_points(tiny, synthetic, base, sparsities, settings,
                                            norms=("noisy-L1", "Taylor-max", "L2"), random_seeds=2,
                                            importance={"conv0": None}, importance_inputs={"made": "elsewhere"})
        assert [a[0] == b[0] for a, b in zip(points, other)] == [True, True, False, True]  # only Taylor-max's key
        with pytest.raises(ValueError, match="Taylor-max criterion needs the importance"):
            experiments.criteria_points(tiny, synthetic, base, sparsities, settings, norms=("Taylor-max",))
        w, imp = torch.randn(8, 4, 3, 3), torch.rand(8, 4, 3, 3)
        g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        assert torch.equal(make_mask(w, 0.5, "kernel", norm="noisy-L1", generator=g1),
                           make_mask(w, 0.5, "kernel", norm="noisy-L1", generator=g2))
        assert seen[0].generator is g1 and seen[0].importance is None
        assert torch.equal(unit_scores(w, "kernel", "Taylor-max", importance=imp), imp.flatten(2).amax(-1))
        with pytest.raises(ValueError, match="'Taylor-max' needs a per-weight importance"):
            make_mask(w, 0.5, "kernel", norm="Taylor-max")
        with pytest.raises(ValueError, match="'noisy-L1' takes no importance; only Taylor, Taylor-max do"):
            make_mask(w, 0.5, "kernel", norm="noisy-L1", importance=imp)
    finally:
        unregister("noisy-L1")
        unregister("Taylor-max")
    assert list(CRITERIA) == BUILT_IN


def _score(weight, strategy, context):
    return unit_rows(weight, strategy).sum(-1)


@pytest.mark.parametrize("name,needs,score,message", [
    ("L2", (), _score, "criterion 'L2' is already registered; taken: L2, L1, random, Taylor"),
    ("taylor", (), _score, "criterion 'taylor' is already registered"),  # an alias of Taylor
    (2, (), _score, "name must be a non-empty string, got 2"),
    ("  ", (), _score, "name must be a non-empty string, got '  '"),
    ("fpgm", ("activations",), _score, r"'fpgm': needs must be a tuple drawn from \('generator', 'importance'\), "
                                       r"got \('activations',\)"),
    ("fpgm", "generator", _score, "needs must be a tuple drawn from .*got 'generator'"),
    ("fpgm", (), 0.5, r"'fpgm': 0.5 must be a function score\(weight, strategy, context\)"),
    ("fpgm", (), lambda weight: weight.abs(), r"'fpgm': .* must be a function score\(weight, strategy, context\)"),
])
def test_a_bad_registration_is_refused_and_changes_nothing(name, needs, score, message):
    with pytest.raises(ValueError, match=message):
        register(name, needs=needs)(score)
    assert list(CRITERIA) == BUILT_IN and CRITERIA["L2"].score is not score


def test_unregistering_an_unknown_criterion_names_the_registered_ones():
    with pytest.raises(KeyError, match="no criterion 'fpgm' to unregister; registered: L2, L1, random, Taylor"):
        unregister("fpgm")


@pytest.mark.parametrize("returned,message", [
    (lambda w: w.abs(), r"'bad' returned shape \(8, 4, 3, 3\) for filter pruning .* must return one score per "
                        r"unit, shape \(8,\)"),
    (lambda w: w.flatten(1).abs().sum(1).tolist(), r"'bad' returned 'list' for filter pruning"),
    (lambda w: torch.full((8,), float("nan")), "'bad' returned NaN scores for filter pruning"),
])
def test_a_criterion_returning_other_than_one_number_per_unit_is_refused(returned, message):
    register("bad")(lambda weight, strategy, context: returned(weight))
    try:
        with pytest.raises(ValueError, match=message):
            make_mask(torch.randn(8, 4, 3, 3), 0.5, "filter", norm="bad")
    finally:
        unregister("bad")
