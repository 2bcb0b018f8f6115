"""Several seeds of one study (notebook 07): seed runs inside the study's run, mean and spread,
the plateau rule of the recovery curves, width matching of narrow dense networks, the report's
seed list, and the steps of notebook 07 on a tiny run of two seeds."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pruning_utils import across_seeds, recovery_study, report, steps
from pruning_utils.across_seeds import check_seeds, exceeds_spread, format_mean_sd, mean_spread
from pruning_utils.model import VGG16, count_multiply_adds
from pruning_utils.recovery_study import conv_weight_count, narrow_widths, plateau_epoch
from pruning_utils.runs import open_run

ROOT = Path(__file__).resolve().parents[1]
TINY = {"synthetic_sizes": (400, 100, 100), "epochs": 2, "finetune_epochs": 1, "recalibration_batches": 2,
        "curve_epochs": 3}


@pytest.mark.parametrize("bad", [[], "0 1", [0, 0], [-1], [0, 1.5], [True], 3])
def test_check_seeds_refuses_bad_lists(bad):
    with pytest.raises(ValueError, match="seeds"):
        check_seeds(bad)


def test_mean_spread_matches_numpy():
    frame = pd.DataFrame({"strategy": ["a", "a", "a", "b", "b"], "acc": [80.0, 82.0, 81.0, 70.0, 74.0]})
    stats = mean_spread(frame, "strategy", ["acc"])
    assert stats.at["a", ("acc", "mean")] == pytest.approx(81.0)
    assert stats.at["a", ("acc", "sd")] == pytest.approx(np.std([80, 82, 81], ddof=1))
    assert (stats.at["b", ("acc", "min")], stats.at["b", ("acc", "max")]) == (70.0, 74.0)
    assert stats.at["b", ("n", "")] == 2


def test_exceeds_spread_and_format():
    assert exceeds_spread(80.0, 0.4, 78.0, 0.5)
    assert not exceeds_spread(80.0, 1.0, 78.5, 0.6)  # 1.5 apart, spreads sum to 1.6
    assert not exceeds_spread(80.0, math.nan, 70.0, 0.1)  # one seed: never called real
    assert format_mean_sd(80.123, 0.456) == "80.1 ± 0.5"
    assert format_mean_sd(80.123, math.nan, 2) == "80.12"


def test_plateau_rule():
    epochs = range(1, 21)
    rising_then_flat = pd.Series([min(e, 8) * 2.0 for e in epochs], index=epochs)
    # 3-epoch average: 15.33 at epoch 8 (14, 16, 16), 16 from epoch 9 on: the first 5-epoch gain < 0.2 is at 9
    assert plateau_epoch(rising_then_flat) == 9
    steady = pd.Series([0.1 * e for e in epochs], index=epochs)  # +0.5 points per 5 epochs: never levels off
    assert plateau_epoch(steady) is None
    assert plateau_epoch(pd.Series([50.0, 50.0, 50.0], index=[1, 2, 3])) is None  # too short to show 5 more epochs
    noisy = pd.Series([60 + 20 * (1 - math.exp(-e / 3)) + (0.3 if e % 2 else -0.3) for e in epochs], index=epochs)
    e = plateau_epoch(noisy)  # saturating at 80 with +-0.3 alternating noise: levels off, not at the first wobble
    assert e is not None and 5 <= e <= 15
    with pytest.raises(ValueError):
        plateau_epoch(steady, window=0)


def test_narrow_widths_match_the_pruned_counts():
    results = pd.DataFrame({"strategy": ["fine-grained", "filter"], "conv_weights_kept_pct": [10.0, 30.0],
                            "multiply_adds_kept_pct": [20.0, 25.0]})

    class FakeRun:  # narrow_widths reads only the profile's width
        class profile:
            width = 0.25

    widths = narrow_widths(FakeRun, results)
    dense = VGG16(width=0.25)
    for _, row in widths.iterrows():
        model = VGG16(width=row["width"])
        if row["matched"] == "conv weights":
            got, target = conv_weight_count(model), row["target_conv_weights"]
        else:
            got, target = count_multiply_adds(model), row["target_multiply_adds"]
        assert abs(got / target - 1) < 0.15, (row.to_dict(), got)
        assert row["width"] < 0.25
    assert widths.at[0, "target_conv_weights"] == pytest.approx(conv_weight_count(dense) * 0.10)


def test_report_seeds(tmp_path):
    assert report.parse_seeds("0 1, 2") == [0, 1, 2]
    with pytest.raises(ValueError):
        report.parse_seeds("0 x")
    assert report.study_seeds(tmp_path, 0, None) == [0]
    assert report.study_seeds(tmp_path, 0, "0 1 2") == [0, 1, 2]
    assert json.loads((tmp_path / "study.json").read_text()) == {"seeds": [0, 1, 2]}
    assert report.study_seeds(tmp_path, 0, None) == [0]  # one seed stays the default
    with pytest.raises(ValueError, match="must include"):
        report.study_seeds(tmp_path, 3, "0 1")


def test_seed_runs_and_notebook_07_steps(tmp_path):
    run = open_run("smoke", tmp_path / "study", figures_dir=tmp_path / "figures", progress=False, **TINY)
    runs = across_seeds.seed_runs(run, [0, 1])
    assert runs[0] is run and runs[1].run_dir == tmp_path / "study" / "seed-1" and runs[1].seed == 1
    assert runs[1].profile == run.profile  # the same overrides
    assert json.loads((tmp_path / "study" / "seed-1" / "run.json").read_text())["seed"] == 1
    dense = [steps.train_dense(r)[2]["test_accuracy"] for r in runs]
    assert dense[0] != dense[1]  # another seed, another model

    curve = recovery_study.recovery_curve(run, "filter")
    assert curve["epoch"].tolist() == [0, 1, 2, 3] and curve["test_acc"].between(0, 100).all()
    assert math.isnan(curve.at[0, "val_acc"]) and curve["val_acc"].iloc[1:].between(0, 100).all()
    reopened = open_run("smoke", tmp_path / "study", figures_dir=tmp_path / "figures", progress=False, **TINY)
    pd.testing.assert_frame_equal(curve, recovery_study.recovery_curve(reopened, "filter"))
    assert reopened.events[-1] == {**reopened.events[-1], "step": "recovery_curve (filter)", "status": "reused"}

    budgets = across_seeds.per_seed(runs, recovery_study.original_budgets)
    assert budgets["seed"].tolist() == [0, 0, 0, 1, 1, 1]
    assert budgets.groupby("strategy")["conv_weights_kept_pct"].nunique().eq(1).all()  # same sparsities per seed

    narrow = recovery_study.narrow_dense(run)
    assert len(narrow) == 6 and narrow["epochs"].eq(TINY["epochs"] + TINY["finetune_epochs"]).all()
    assert (narrow.groupby("width")["test_acc"].nunique() == 1).all()  # one training per width, shared
    table2 = steps.table2(run).set_index("strategy")
    for _, row in narrow[narrow["matched"] == "conv weights"].iterrows():
        assert row["conv_weights"] <= conv_weight_count(VGG16(width=run.profile.width))
        assert row["target_conv_weights"] == pytest.approx(
            conv_weight_count(VGG16(width=run.profile.width)) * table2.at[row["strategy"], "conv_weights_kept_pct"] / 100)

    seconds = across_seeds.step_seconds(runs)
    assert {"dense", "recovery_curve", "original_budgets", "narrow_dense"} <= set(seconds["step"])
    assert (seconds.groupby(["seed", "step", "key"]).size() == 1).all()


def test_readme_blocks_are_filled_even_when_empty(tmp_path):
    from pruning_utils.summary import update_readme

    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- generated:seeds -->\n<!-- /generated:seeds -->\nb\n<!-- generated:table1 -->\nSTALE-CONTENT\n"
                      "<!-- /generated:table1 -->\n")
    update_readme(ROOT / "data" / "runs" / "cpu", readme)
    text = readme.read_text()
    assert "what each seed's run holds" in text and "STALE-CONTENT" not in text and "| conv0 |" in text
    assert text.startswith("a\n") and "\nb\n" in text


def test_recovery_methods_on_a_tiny_run(tmp_path):
    run = open_run("smoke", tmp_path / "study", figures_dir=tmp_path / "figures", progress=False, **TINY)
    methods = recovery_study.recovery_methods(run)
    assert len(methods) == 12 and set(methods["method"]) == set(recovery_study.METHODS)
    m = methods.set_index(["strategy", "method"])["acc_finetuned"]
    curves = {s: recovery_study.recovery_curve(run, s).set_index("epoch") for s in steps.STRATEGIES}
    table2 = steps.table2(run).set_index("strategy")
    epochs = run.profile.finetune.epochs
    for s in steps.STRATEGIES:
        assert m[(s, "constant rate")] == curves[s].at[epochs, "test_acc"]
        assert m[(s, "one-cycle (Table 2)")] == table2.at[s, "acc_finetuned"]
    assert methods["epochs"].eq(epochs).all()
    with pytest.raises(ValueError, match="recovery methods"):
        recovery_study.recovery_methods(open_run("smoke", tmp_path / "long", progress=False,
                                                 figures_dir=tmp_path / "f2", **{**TINY, "finetune_epochs": 5}))
