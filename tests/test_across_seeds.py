"""Several seeds of one study (notebook 07): seed runs inside the study's run, mean and spread,
the plateau rule of the recovery curves, width matching of narrow dense networks, the report's
seed list, and the steps of notebook 07 on a tiny run of two seeds."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from pruning_utils import across_seeds, frontier, narrow, recovery_study, report, steps, tables
from pruning_utils.across_seeds import check_seeds, format_mean_sd, mean_spread, paired_difference, t_two_sided_p
from pruning_utils.model import VGG16, count_multiply_adds
from pruning_utils.narrow import conv_weight_count, narrow_widths
from pruning_utils.recovery_study import plateau_epoch
from pruning_utils.runs import NotComputed, open_run
from pruning_utils.sensitivity import scan_sensitivity

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


# Student's t, 97.5% quantiles from printed tables: the two-sided p there is 0.05.
T_975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 10: 2.228139, 30: 2.042272}


def test_student_t_against_printed_tables_and_closed_forms():
    for df, t in T_975.items():
        assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=1e-6), df
    assert t_two_sided_p(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| >= 1) = 1/2
    assert t_two_sided_p(-3.0, 2) == pytest.approx(1 - 3 / math.sqrt(11))  # df 2: 1 - |t| / sqrt(2 + t^2)
    assert t_two_sided_p(0.0, 7) == 1.0
    with pytest.raises(ValueError, match="positive integer"):
        t_two_sided_p(1.0, 0)


def test_paired_difference_by_hand():
    """Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.464 on 2 df, p = 1 - t / sqrt(2 + t^2)."""
    d = paired_difference([81.0, 82.0, 83.0], [80.0, 80.0, 80.0])
    t = 2 * math.sqrt(3)
    assert (d["n"], d["mean"], d["sd"]) == (3, 2.0, 1.0) and d["t"] == pytest.approx(t)
    assert d["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t)) and d["p"] == pytest.approx(0.0742, abs=1e-4)
    # paired, not pooled: a small steady gain over noisy seeds is clear on the differences
    steady = paired_difference([82.71, 81.38, 83.33], [82.10, 80.71, 82.62])  # +0.61, +0.67, +0.71
    assert steady["p"] < 0.01 and abs(steady["mean"] - 0.663) < 1e-3
    assert paired_difference([1.0, 2.0], [0.0, 1.0])["p"] == 0.0  # every seed the same difference
    assert paired_difference([1.0, 2.0], [1.0, 2.0])["p"] == 1.0
    one = paired_difference([80.0], [79.0])
    assert one["mean"] == 1.0 and all(math.isnan(one[k]) for k in ("sd", "t", "p"))
    with pytest.raises(ValueError, match="one length"):
        paired_difference([1.0, 2.0], [1.0])


def test_format_mean_sd():
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


def _curves(values_by_seed: dict[int, list[float]], strategy: str) -> pd.DataFrame:
    rows = [{"seed": seed, "strategy": strategy, "epoch": e, "val_acc": v, "test_acc": v - 0.5}
            for seed, values in values_by_seed.items() for e, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_curve_readout_reads_gains_plateaus_and_instability():
    flat = [50.0] + [min(e, 8) * 2.0 + 60 for e in range(1, 21)]  # rises to 76 at epoch 8, then flat
    steady = [50.0] + [60 + 0.5 * e for e in range(1, 21)]  # +2.5 points per 5 epochs: never levels off
    jumpy = [50.0] + [70.0 if e != 12 else 40.0 for e in range(1, 21)]  # one 30-point fall at epoch 12
    frame = pd.concat([_curves({0: flat, 1: flat}, "fine-grained"),
                       _curves({0: steady, 1: [v + 1 for v in steady]}, "kernel"), _curves({0: jumpy}, "filter")])
    r = recovery_study.curve_readout(frame, finetune_epochs=10)
    assert list(r.index) == ["fine-grained", "kernel", "filter"] and list(r["seeds"]) == [2, 2, 1]
    assert r.at["fine-grained", "plateau_mean_curve"] == plateau_epoch(pd.Series(flat[1:], index=range(1, 21)))
    assert r.at["kernel", "plateau_mean_curve"] is None and r.at["kernel", "plateau_seeds"] == [None, None]
    assert r.at["kernel", "test_at_finetune"] == pytest.approx(60 + 5 + 0.5 - 0.5)  # mean of 65 and 66, minus 0.5
    assert r.at["kernel", "test_at_end"] == pytest.approx(70.0) and r.at["kernel", "end_epoch"] == 20
    assert r.at["kernel", "test_at_end_sd"] == pytest.approx(math.sqrt(0.5))
    assert r.at["filter", "max_drop"] == pytest.approx(30.0) and r.at["filter", "unstable"]
    assert not r["unstable"][["fine-grained", "kernel"]].any()


def test_batchnorm_readout_tells_stale_statistics_from_bad_weights():
    def check(strategy, eval_mode, recalibrated, seed=1):
        return pd.DataFrame({"strategy": strategy, "seed": seed, "epoch": range(1, len(eval_mode) + 1), "val_acc": eval_mode,
                             "val_acc_recalibrated": recalibrated, "val_acc_batch_stats": [v - 1 for v in recalibrated]})

    frame = pd.concat([check("kernel", [70, 40, 72, 30, 74], [71, 70, 72, 71, 74]),  # falls undone by re-estimation
                       check("filter", [70, 50, 71], [71, 52, 72]),  # the re-estimated model falls too
                       check("fine-grained", [70, 72, 68], [71, 73, 70]),  # a 4-point dip is not a fall
                       check("kernel", [70, 71, 72], [70, 71, 72], seed=2)])  # each seed is read apart
    both = recovery_study.batchnorm_readout(frame)
    assert both.at[("kernel", 2), "cause"] == "stable" and both.at[("kernel", 1), "cause"] == "running statistics"
    assert both.at[("kernel", 2), "fall_eval"] == 0.0  # a curve that only rises falls by 0, not by -1
    assert both.at[("kernel", 1), "plateau_recalibrated"] is None  # 5 epochs: too short to show one
    long = check("fine-grained", [60 + min(e, 6) for e in range(20)], [60 + min(e, 6) for e in range(20)])
    assert recovery_study.batchnorm_readout(long).iloc[0]["plateau_recalibrated"] == plateau_epoch(
        pd.Series([60.0 + min(e, 6) for e in range(20)], index=range(1, 21)))
    r = both.drop(index=("kernel", 2)).droplevel("seed")
    assert list(r["cause"]) == ["running statistics", "weights", "stable"]
    assert r.at["kernel", "fall_eval"] == 42 and r.at["kernel", "fall_recalibrated"] == 1
    assert r.at["kernel", "fall_batch_stats"] == 1 and r.at["kernel", "falls"] == 2
    assert r.at["kernel", "recovered_at_falls"] == pytest.approx(((70 - 40) + (71 - 30)) / 2)
    assert r.at["filter", "fall_recalibrated"] == 19 and r.at["fine-grained", "falls"] == 0
    assert math.isnan(r.at["fine-grained", "recovered_at_falls"])
    curves = pd.concat([_curves({1: [0.0, 70, 40, 72, 30, 74]}, "kernel"),  # the same training as the check
                        _curves({2: [0.0, 70, 71, 73]}, "kernel")])  # another machine's numbers
    assert recovery_study.batchnorm_readout(frame, curves)["same_as_curve"].loc["kernel"].tolist() == [True, False]
    assert "same_as_curve" not in both
    emptied = {("kernel", 1): {"conv0": (11, 16), "conv8": (2, 64)}, ("kernel", 2): {}}
    listed = recovery_study.batchnorm_readout(frame, emptied=emptied)["emptied_filters"]
    assert listed[("kernel", 1)] == "conv0 11/16, conv8 2/64" and listed[("kernel", 2)] == "none"
    assert pd.isna(listed[("filter", 1)])  # not asked: nothing said


def test_methods_across_seeds_against_a_hand_computed_table():
    dense = pd.DataFrame({"seed": [0, 1], "test_accuracy": [0.84, 0.86]})
    rows = [(seed, strategy, method, acc) for seed, shift in ((0, 0.0), (1, 1.0))
            for strategy, base in (("fine-grained", 83.0), ("filter", 80.0))
            for method, gain in (("constant rate", -2.0), ("one-cycle (Table 2)", 0.0), ("LR rewinding", 1.5),
                                 ("distillation", 0.1 - 0.2 * seed))  # distillation: +0.1 on seed 0, -0.1 on 1
            for acc in [base + gain + shift]]
    methods = pd.DataFrame(rows, columns=["seed", "strategy", "method", "acc_finetuned"]).assign(epochs=20)
    table = tables.methods_across_seeds(methods, dense, {"fine-grained": 1.0, "filter": 1.5})
    r = table.loc[("fine-grained", "LR rewinding")]
    assert r["after recovery (%)"] == "85.0 ± 0.7" and r["vs one-cycle (Table 2) (points)"] == 1.5
    # +1.5 on both seeds: the spreads (0.71 each) overlap, the per-seed differences do not vary
    assert r["difference (points)"] == "1.5 ± 0.0" and r["p"] == 0.0 and r[tables.PAIRED]
    assert r["drop from dense (points)"] == "0.0 ± 0.7" and r["met (mean)"]  # dense 84/86, recovered 84.5/85.5
    distilled = table.loc[("fine-grained", "distillation")]  # +0.1 and -0.1: no difference
    assert distilled["difference (points)"] == "0.0 ± 0.1" and distilled["p"] == 1.0 and not distilled[tables.PAIRED]
    assert table.loc[("fine-grained", "one-cycle (Table 2)"), "difference (points)"] == ""  # the reference itself
    assert not table.loc[("filter", "LR rewinding"), "met (mean)"]  # drop 3.5 against 1.5
    shown = tables.readable(table)  # for a reader: yes/no, the frame itself keeps its truth values
    assert shown.loc[("fine-grained", "LR rewinding"), ["met (mean)", tables.PAIRED]].tolist() == ["yes", "yes"]
    assert shown.loc[("filter", "LR rewinding"), "met (mean)"] == "no" and table["met (mean)"].dtype == bool
    assert shown.drop(columns=["met (mean)", tables.PAIRED]).equals(table.drop(columns=["met (mean)", tables.PAIRED]))
    one = tables.methods_across_seeds(methods[methods["seed"] == 0], dense, {"fine-grained": 1.0, "filter": 1.5})
    assert one.loc[("fine-grained", "LR rewinding"), "drop from dense (points)"] == "-0.5"  # dense 84.0, LR rew. 84.5
    met = one.loc["fine-grained", "met (mean)"]  # seed 0: dense 84.0, constant rate 81.0, the others >= 83.0
    assert met[met].index.tolist() == ["one-cycle (Table 2)", "LR rewinding", "distillation"]
    assert not one[tables.PAIRED].any() and one["seeds"].eq(1).all()  # one seed: no test, never called beyond chance


def test_narrow_table_names_the_widths_the_seeds_matched():
    from pruning_utils import tables

    narrow = pd.DataFrame({"seed": [0, 1, 0, 1], "strategy": ["kernel"] * 4,
                           "matched": ["conv weights", "conv weights", "multiply-adds", "multiply-adds"],
                           "width": [0.0937, 0.0967, 0.117, 0.117], "test_acc": [79.0, 80.0, 81.0, 82.0]})
    results = pd.DataFrame({"seed": [0, 1, 2], "strategy": ["kernel"] * 3, "acc_finetuned": [81.0, 82.0, 90.0]})
    table = tables.narrow_table(narrow, results)
    assert table.at[("kernel", "conv weights"), "narrow width"] == "0.094-0.097"  # no width of its own: the range
    assert table.at[("kernel", "multiply-adds"), "narrow width"] == "0.117"
    assert table.at[("kernel", "conv weights"), "pruned - narrow (points)"] == 2.0  # seed 2 has no narrow network
    assert table.at[("kernel", "conv weights"), "narrow dense (%)"] == "79.5 ± 0.7"
    # paired by seed: +2.0 on seeds 0 and 1 (seed 2 has no narrow network); 0.0 at equal multiply-adds
    assert table.at[("kernel", "conv weights"), "difference (points)"] == "2.0 ± 0.0"
    assert table.at[("kernel", "conv weights"), tables.PAIRED]
    assert table.at[("kernel", "multiply-adds"), "p"] == 1.0 and not table.at[("kernel", "multiply-adds"), tables.PAIRED]


def test_narrow_widths_match_the_pruned_counts():
    dense = VGG16(width=0.25)
    sizes = pd.DataFrame({"strategy": ["fine-grained", "filter"],
                          "conv_weights": [0.10 * conv_weight_count(dense), 0.30 * conv_weight_count(dense)],
                          "multiply_adds": [0.20 * count_multiply_adds(dense), 0.25 * count_multiply_adds(dense)]})
    widths = narrow_widths(0.25, sizes)
    assert len(widths) == 4 and set(widths["matched"]) == {"conv weights", "multiply-adds"}
    for _, row in widths.iterrows():
        model = VGG16(width=row["width"])
        if row["matched"] == "conv weights":
            got, target = conv_weight_count(model), row["target_conv_weights"]
        else:
            got, target = count_multiply_adds(model), row["target_multiply_adds"]
        assert abs(got / target - 1) < 0.15, (row.to_dict(), got)
        # no candidate width comes nearer (channel counts move in steps, so the match is the nearest)
        step = VGG16(width=row["width"] + 0.25 / 256)
        nearer = conv_weight_count(step) if row["matched"] == "conv weights" else count_multiply_adds(step)
        assert abs(got - target) <= abs(nearer - target), row.to_dict()
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

    nets = narrow.narrow_dense(run)
    assert len(nets) == 6 and nets["epochs"].eq(TINY["epochs"] + TINY["finetune_epochs"]).all()
    assert (nets.groupby("width")["test_acc"].nunique() == 1).all()  # one training per width, shared
    # the targets are the pruned models' effective sizes: for filter pruning its compacted model's
    # counts, below the masked count; for fine-grained pruning (no filter emptied here) the masked count
    from pruning_utils.compact import compact

    table2 = steps.table2(run).set_index("strategy")
    dense_conv = conv_weight_count(VGG16(width=run.profile.width))
    compacted = compact(steps.pruned_model(run, "filter"))
    targets = nets.drop_duplicates("strategy").set_index("strategy")
    assert targets.at["filter", "target_conv_weights"] == conv_weight_count(compacted)
    assert targets.at["filter", "target_multiply_adds"] == count_multiply_adds(compacted)
    assert targets.at["filter", "target_conv_weights"] <= dense_conv * table2.at["filter", "conv_weights_kept_pct"] / 100
    assert targets.at["fine-grained", "target_conv_weights"] == pytest.approx(
        dense_conv * table2.at["fine-grained", "conv_weights_kept_pct"] / 100)
    assert (nets["conv_weights"] <= dense_conv).all()

    seconds = across_seeds.step_seconds(runs)
    assert {"dense", "recovery_curve", "original_budgets", "narrow_dense"} <= set(seconds["step"])
    assert (seconds.groupby(["seed", "step", "key"]).size() == 1).all()

    # A read-only study (compute=False, `make report STORED=1`): stored, current steps are read,
    # a missing one leaves its seed out with the reason, and nothing is computed or written.
    read_only = open_run("smoke", tmp_path / "study", figures_dir=tmp_path / "figures", progress=False,
                         compute=False, **TINY)
    read_runs = across_seeds.seed_runs(read_only, [0, 1])
    assert [r.compute for r in read_runs] == [False, False]
    pd.testing.assert_frame_equal(across_seeds.per_seed(read_runs, recovery_study.original_budgets), budgets)
    stored_narrow = across_seeds.per_seed(read_runs, narrow.narrow_dense)
    assert stored_narrow["seed"].unique().tolist() == [0] and len(stored_narrow) == 6
    assert list(stored_narrow.attrs["missing"]) == [1]  # seed 1 lacks even its scans (the first missing step is named)
    assert "sensitivity" in stored_narrow.attrs["missing"][1] and "missing" in stored_narrow.attrs["missing"][1]
    assert not (tmp_path / "study" / "seed-1" / "narrow_dense.csv").exists()
    note = across_seeds.missing_note(stored_narrow, [0, 1])
    assert "seed 1" in note and "Shown: seeds 0" in note
    assert across_seeds.missing_note(budgets, [0, 1]) == ""
    with pytest.raises(NotComputed, match="recovery_curve"):
        recovery_study.recovery_curve(read_only, "kernel")  # only filter's curve was computed
    stale = open_run("smoke", tmp_path / "study", figures_dir=tmp_path / "figures", progress=False,
                     compute=False, **{**TINY, "finetune_epochs": 2})
    with pytest.raises(NotComputed, match="inputs changed: recovery.recipe.epochs"):
        steps.table2(stale)  # stored under other settings: not current, not shown
    nothing = across_seeds.per_seed(across_seeds.seed_runs(stale, [0, 1]), narrow.narrow_dense)
    assert nothing.empty and sorted(nothing.attrs["missing"]) == [0, 1]
    assert "Shown: nothing" in across_seeds.missing_note(nothing, [0, 1])

    # narrow against pruned on the seeds that have both
    results = across_seeds.per_seed(runs, steps.table2)
    from pruning_utils import tables
    comparison = tables.narrow_table(stored_narrow, results)
    assert comparison["seeds"].eq(1).all() and len(comparison) == 6
    assert not comparison[tables.PAIRED].any()  # one seed: no test, never called beyond chance
    seed0 = results[results["seed"] == 0].set_index("strategy")["acc_finetuned"]
    for (strategy, _), row in comparison.iterrows():
        assert row["pruned, fine-tuned (%)"] == f"{seed0[strategy]:.1f}"  # one seed: no sd, seed 0's value


def test_read_only_runs_refuse_force(tmp_path):
    with pytest.raises(ValueError, match="choose one"):
        open_run("smoke", tmp_path / "r", progress=False, force=True, compute=False)
    with pytest.raises(ValueError, match="compute must be"):
        open_run("smoke", tmp_path / "r", progress=False, compute="no")
    with pytest.raises(SystemExit):
        report.main(["--profile", "smoke", "--run-dir", str(tmp_path / "r"), "--force", "--stored"])


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
    # the trained methods are the points trained_method_points names (computable apart, e.g. on a GPU)
    cached = pd.read_csv(run.path("points/recovery_methods.csv"), dtype={"point": str}).set_index("point")
    for s in steps.STRATEGIES:
        trained = recovery_study.trained_method_points(run, s)
        assert [p[2]["method"] for p in trained] == ["LR rewinding", "distillation"]
        for key, _, fixed, _ in trained:
            assert cached.at[key, "acc_finetuned"] == m[(s, fixed["method"])]
    # the BatchNorm check retrains the kernel curve step for step: its eval-mode column is the curve's
    check = recovery_study.curve_batchnorm_check(run, "kernel")
    assert list(check.columns) == recovery_study.BATCHNORM_CHECK_COLUMNS and check["epoch"].tolist() == [1, 2, 3]
    assert check["val_acc"].tolist() == curves["kernel"]["val_acc"].iloc[1:].tolist()
    assert check[["val_acc_recalibrated", "val_acc_batch_stats", "train_acc"]].stack().between(0, 100).all()
    assert not run.path("checkpoints").exists() or not list(run.path("checkpoints").glob("curve_batchnorm_*"))
    together = recovery_study.recovery_curves(run)
    assert together.columns[0] == "strategy" and list(together["strategy"].unique()) == list(steps.STRATEGIES)
    with pytest.raises(ValueError, match="recovery methods"):
        recovery_study.recovery_methods(open_run("smoke", tmp_path / "long", progress=False,
                                                 figures_dir=tmp_path / "f2", **{**TINY, "finetune_epochs": 5}))


def test_frontier_exceptions_against_a_hand_made_frontier():
    front = pd.DataFrame({"strategy": ["kernel"] * 4 + ["filter"] * 2, "allocation": "guided",
                          "budget": [0.4, 0.2, 0.1, 0.05, 0.2, 0.1], "acc_finetuned": [80, 75, 77.5, 60, 70, 70.3]})
    found = frontier.frontier_exceptions(front, spread=0.5)
    assert found[["strategy", "larger budget", "smaller budget"]].values.tolist() == [["kernel", 0.2, 0.1]]
    assert found["gain (points)"].tolist() == [2.5]
    assert frontier.frontier_exceptions(front, spread=3.0).empty
    nan_spread = frontier.frontier_exceptions(front, spread=float("nan"))  # one seed: any gain counts
    assert len(nan_spread) == 2 and set(nan_spread["strategy"]) == {"kernel", "filter"}


@pytest.mark.parametrize("bad", [(0.9, 0.95), (0.98, 0.95), (), (0.95, 1.0)])
def test_deep_scan_sparsities_must_lie_beyond_the_grid(bad):
    from pruning_utils.config import get_profile

    with pytest.raises(ValueError, match="deep_scan_sparsities"):
        get_profile("smoke", deep_scan_sparsities=bad)


def test_recovered_frontier_uses_measured_deep_sparsities(tmp_path):
    run = open_run("smoke", tmp_path / "study", figures_dir=tmp_path / "figures", progress=False, **TINY)
    deep = frontier.deep_scan(run, "kernel")
    assert sorted(deep["sparsity"].unique()) == [0.0, *run.profile.deep_scan_sparsities] and len(deep) == 12 * 2
    scan = steps.sensitivity(run, "kernel")
    dense_rows = deep[deep["sparsity"] == 0].set_index("layer")["accuracy"]
    assert (dense_rows == scan[scan["sparsity"] == 0].set_index("layer")["accuracy"]).all()  # same dense model
    extended = frontier.extended_scan(run, "kernel")
    assert len(extended) == len(scan) + 12 and extended.groupby("layer")["sparsity"].max().eq(0.95).all()
    # the same point as the ordinary scan's machinery measures it (an independent call)
    dense, _ = steps.dense_model(run)
    one = scan_sensitivity(dense, run.data.val_x, run.data.val_y, "kernel", sparsities=[0.95], layers=["conv5"],
                           batch_size=run.profile.eval_batch_size, precision=run.precision, progress=False)
    assert deep.query("layer == 'conv5' and sparsity == 0.95")["accuracy"].item() == one["accuracy"].item()
    # filter: conv0 of the smoke model has 8 filters, and 0.95 would remove all 8: not scanned there
    filters = frontier.deep_scan(run, "filter").set_index(["layer", "sparsity"])
    assert ("conv0", 0.95) not in filters.index and ("conv0", 0.0) in filters.index and ("conv11", 0.95) in filters.index

    front = frontier.recovered_frontier(run)
    assert len(front) == 3 * len(run.profile.recovered_budgets) and set(front["allocation"]) == {"guided"}
    assert (front["conv_weights_kept_pct"] <= 100 * front["budget"] + 1.0).all()  # budgets met
    assert front["finetune_epochs"].eq(run.profile.finetune.epochs).all()  # Table 2's recovery, not the short one
    with pytest.raises(ValueError, match="strategy"):
        frontier.deep_scan(run, "all")


def test_narrow_figure_draws_seeds_and_their_mean_with_sd():
    import matplotlib
    matplotlib.use("Agg")
    from pruning_utils import plots

    pruned = pd.DataFrame({"strategy": ["filter"] * 3, "conv_weights": [100.0, 110.0, 120.0],
                           "multiply_adds": [1e6, 1.1e6, 1.2e6], "acc_finetuned": [80.0, 81.0, 82.0]})
    narrow = pd.DataFrame({"strategy": ["filter"] * 2, "matched": ["conv weights", "multiply-adds"],
                           "conv_weights": [105.0, 130.0], "multiply_adds": [1.0e6, 1.1e6], "test_acc": [79.0, 83.0]})
    fig = plots.narrow_vs_pruned(pruned, narrow)
    left = fig.axes[0]
    bars = [c for c in left.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 1  # the three pruned seeds: one mean with sd; the single narrow seed: a point only
    mean_x, mean_y = bars[0].lines[0].get_data()
    assert mean_x[0] == pytest.approx(110.0) and mean_y[0] == pytest.approx(81.0)
    labels = left.get_legend_handles_labels()[1]
    assert "filter, pruned (mean ± sd, 3 seeds)" in labels and "narrow dense, conv weights of filter" in labels
    matplotlib.pyplot.close(fig)


def test_strip_plot_figures_redraw_identically_and_leave_numpy_random_alone():
    import io

    import matplotlib.pyplot as plt

    from pruning_utils import plots

    frame = pd.DataFrame([{"strategy": s, "seed": seed, "a": 70.0 + seed + i, "b": 80.0 - seed}
                          for i, s in enumerate(steps.STRATEGIES) for seed in range(3)])

    def png() -> bytes:
        fig = plots.seed_bars(frame, {"a": "after pruning", "b": "after fine-tuning"}, "test", reference=85.0)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=40)
        plt.close(fig)
        return buffer.getvalue()

    np.random.seed(1)
    first = png()
    after_first = np.random.random()
    np.random.seed(2)  # another global state: the jitter must not depend on it
    assert png() == first
    np.random.seed(1)
    png()
    assert np.random.random() == after_first  # the caller's random stream is untouched


def test_a_changed_masking_rule_makes_exactly_its_results_not_current(tmp_path, monkeypatch):
    from pruning_utils import staleness

    run = open_run("smoke", tmp_path / "study", figures_dir=tmp_path / "figures", progress=False, **TINY)
    steps.table2(run)
    steps.chosen_sparsities(run)
    real = steps.mask_inputs  # a new masking rule for kernel pruning, as the emptied-filter rule was
    monkeypatch.setattr(steps, "mask_inputs", lambda s: {**real(s), "rule": 2} if s == "kernel" else real(s))
    read_only = open_run("smoke", tmp_path / "study", figures_dir=tmp_path / "figures", progress=False,
                         compute=False, **TINY)
    currency = {run.run_dir: staleness.stale_results(read_only, staleness.TABLE1_COLUMNS | staleness.TABLE2_ROWS)}
    assert [k for k, why in currency[run.run_dir].items() if why != staleness.CURRENT] == ["Table 1 kernel",
                                                                                         "Table 2 kernel"]
