"""Notebook 06's experiments: the pure sweeps (frontier, criteria, iterative), resumable point caches,
and the drivers that run them on a run directory."""

import re
import shutil

import pandas as pd
import pytest
import torch

from pruning_utils import experiments, frontier, recovery, steps
from pruning_utils.artifacts import ArtifactError
from pruning_utils.allocation import global_sparsities
from pruning_utils.config import SCAN_SPARSITIES, Recipe
from pruning_utils.counting import conv_weights_kept_pct
from pruning_utils.criteria import STRATEGIES
from pruning_utils.masks import copy_model
from pruning_utils.experiments import CRITERIA_COLUMNS, ITERATIVE_COLUMNS, PointCache, criteria_points, iterative_points, run_points
from pruning_utils.frontier import FRONTIER_COLUMNS, frontier_points
from pruning_utils import latency as latency_module
from pruning_utils.latency import LATENCY_COLUMNS
from pruning_utils.masks import prune_model
from pruning_utils.compact import compact
from pruning_utils.model import CONV_NAMES, VGG16, conv_layers, count_multiply_adds
from pruning_utils.recovery import RecoverySettings, prune_and_recover
from pruning_utils.runs import NotComputed, open_run

SETTINGS = RecoverySettings(Recipe(epochs=1, optimizer="adamw", lr=1e-3), batch_size=100, recalibration_batches=2,
                            eval_batch_size=200, precision="fp32")
BASE = {"dense": "tiny-dense", "data": "synthetic-600"}
TINY_RUN = {"epochs": 3, "synthetic_sizes": (600, 200, 200)}
# one filter's share of the conv weights, per layer, in % (width 0.125): guided budgets are met up to this
CONVS = list(conv_layers(VGG16(width=0.125)).values())
HALF_FILTER_PER_LAYER_PCT = 100 * sum(c.weight[0].numel() / 2 for c in CONVS) / sum(c.weight.numel() for c in CONVS)


def scan_frame(curves, grid=SCAN_SPARSITIES, strategy="filter"):
    """A sensitivity scan DataFrame from ``{layer: [accuracy at each grid sparsity]}``."""
    rows = [(strategy, layer, s, a) for layer, accs in curves.items() for s, a in zip(grid, accs)]
    return pd.DataFrame(rows, columns=["strategy", "layer", "sparsity", "accuracy"])


# early layers sensitive, late layers not: guided allocation differs from uniform
CURVES = {name: [0.5 - (0.4 if i < 6 else 0.05) * s for s in SCAN_SPARSITIES] for i, name in enumerate(CONV_NAMES)}


def _forbid_work(monkeypatch):
    """Make every way of computing a point (or anything upstream) fail loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("a cached point was recomputed")

    for module, name in ((experiments, "prune_and_recover"), (experiments, "prune_iteratively"),
                         (experiments, "latency_table"), (recovery, "prune_model"), (recovery, "train"),
                         (recovery, "recalibrate_batchnorm"), (steps, "train"), (steps, "scan_sensitivity"),
                         (steps, "recover")):
        monkeypatch.setattr(module, name, refuse)


def _frame(rows, columns):
    return pd.DataFrame(rows).reindex(columns=columns)


# --- point caches -------------------------------------------------------------------------------


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
    assert not [p.name for p in tmp_path.iterdir() if "tmp" in p.name]  # atomic writes left no temp file


def test_an_unreadable_point_cache_is_named_with_the_way_out(tmp_path):
    (tmp_path / "points.csv").write_text("x,y\n1,2\n")  # no point column
    with pytest.raises(ArtifactError, match=f"{tmp_path / 'points.csv'}.*force=True"):
        PointCache(tmp_path / "points.csv")


def test_run_points_skips_cached_points_and_keeps_each_finished_one(tmp_path):
    done = []

    def work(name, fail=False):
        def compute():
            if fail:
                raise KeyboardInterrupt
            done.append(name)
            return [{"value": len(name)}, {"value": -len(name)}]
        return compute

    points = [(f"key-{n}", n, {"name": n}, work(n)) for n in ("a", "bb", "ccc")]
    interrupted = points[:2] + [("key-ccc", "ccc", {"name": "ccc"}, work("ccc", fail=True))]
    with pytest.raises(KeyboardInterrupt):
        run_points(interrupted, PointCache(tmp_path / "p.csv"), progress=False, desc="test")
    assert done == ["a", "bb"] and len(pd.read_csv(tmp_path / "p.csv")) == 4  # finished points were kept
    rows = run_points(points, PointCache(tmp_path / "p.csv"), progress=False, desc="test")
    assert done == ["a", "bb", "ccc"]  # only the unfinished point ran
    assert rows == [{"name": n, "value": v} for n in ("a", "bb", "ccc") for v in (len(n), -len(n))]
    assert run_points(points, None, progress=False, desc="test") == rows and done[3:] == ["a", "bb", "ccc"]


def test_a_point_cached_step_records_what_its_points_took(tmp_path, monkeypatch):
    from pruning_utils.artifacts import UNRECORDED, recorded_steps

    run = open_run("smoke", tmp_path / "r", figures_dir=tmp_path / "f", progress=False, synthetic_sizes=(40, 20, 20))
    PointCache(run.path("points/frontier.csv")).put("k1", [{"budget": 0.1}])  # cached before points had a time
    clock = iter([100.0, 103.0, 200.0, 205.0])  # k2's work takes 3 s, k3's 5 s
    monkeypatch.setattr(experiments, "perf_counter", lambda: next(clock))
    points = [(k, k, {"strategy": "filter"}, lambda b=b: [{"budget": b}])
              for k, b in (("k1", 0.1), ("k2", 0.2), ("k2", 0.2), ("k3", 0.3))]  # k2 twice: one result, one time
    table = experiments.experiment_table(run, "frontier", points, FRONTIER_COLUMNS, force=None)
    assert table["budget"].tolist() == [0.1, 0.2, 0.2, 0.3] and list(table.columns) == FRONTIER_COLUMNS
    cache = PointCache(run.path("points/frontier.csv"))
    assert cache.get("k2") == [{"strategy": "filter", "budget": 0.2}]  # the time stays out of the rows
    assert cache.timing("k1") is None and cache.timing("k3") == (5.0, run.machine())
    step = recorded_steps(run.run_dir).set_index("step").loc["frontier"]
    assert step["seconds"] == 8.0 and step["lower_bound"] and step["machines"] == (run.machine(), UNRECORDED)
    PointCache(run.path("points/frontier.csv")).put("k1", [{"budget": 0.1}], 2.0, "elsewhere")  # now every point has a time
    experiments.experiment_table(run, "frontier", points, FRONTIER_COLUMNS, force=None)  # reused: the record stays
    experiments.experiment_table(run, "frontier", points[:2], FRONTIER_COLUMNS, force=None)  # other points, new record
    step = recorded_steps(run.run_dir).set_index("step").loc["frontier"]
    assert step["seconds"] == 5.0 and not step["lower_bound"] and set(step["machines"]) == {"elsewhere", run.machine()}


def test_a_point_table_follows_its_fixed_columns_where_the_points_are_reused(tmp_path):
    """A point keeps its key when only its label moves (a narrow network's matched width stays while
    the pruned model it is matched to moves); the table must show the new label, without rerunning it."""
    run = open_run("smoke", tmp_path / "r", figures_dir=tmp_path / "f", progress=False, synthetic_sizes=(40, 20, 20))
    calls = []

    def points(target):
        return [("k1", "k1", {"strategy": "kernel", "budget": target},
                 lambda: calls.append(1) or [{"acc_finetuned": 50.0}])]

    first = experiments.experiment_table(run, "frontier", points(0.2), FRONTIER_COLUMNS, force=None)
    moved = experiments.experiment_table(run, "frontier", points(0.25), FRONTIER_COLUMNS, force=None)
    assert first["budget"].tolist() == [0.2] and moved["budget"].tolist() == [0.25]
    assert moved["acc_finetuned"].tolist() == [50.0] and calls == [1]  # the point ran once


# --- the pure sweeps ----------------------------------------------------------------------------


def test_frontier_points_rows_keys_and_resume(trained_tiny, synthetic, tmp_path, monkeypatch):
    scans = {"filter": scan_frame(CURVES)}
    points = frontier_points(trained_tiny, synthetic, BASE, (0.5,), ("filter",), SETTINGS, scans=scans)
    assert [fixed for _, _, fixed, _ in points] == [
        {"strategy": "filter", "allocation": "uniform", "budget": 0.5},
        {"strategy": "filter", "allocation": "guided", "budget": 0.5}]
    keys = [key for key, *_ in points]
    assert len(set(keys)) == 2
    # a key is everything the point depends on: same inputs, same keys; another setting, other keys
    assert [k for k, *_ in frontier_points(trained_tiny, synthetic, BASE, (0.5,), ("filter",), SETTINGS,
                                           scans=scans)] == keys
    for other in (frontier_points(trained_tiny, synthetic, {**BASE, "dense": "other"}, (0.5,), ("filter",), SETTINGS,
                                  scans=scans),
                  frontier_points(trained_tiny, synthetic, BASE, (0.5,), ("filter",), SETTINGS.with_epochs(2),
                                  scans=scans)):
        assert not set(k for k, *_ in other) & set(keys)

    rows = run_points(points, PointCache(tmp_path / "frontier.csv"), progress=False, desc="frontier")
    frame = _frame(rows, FRONTIER_COLUMNS)
    assert not frame.isna().any().any()
    assert frame.at[0, "conv_weights_kept_pct"] == 50  # even filter counts: exact
    assert frame.at[1, "conv_weights_kept_pct"] <= 50 + HALF_FILTER_PER_LAYER_PCT  # grid sparsities, whole filters
    accuracies = frame[["acc_pruned", "acc_recalibrated", "acc_finetuned"]]
    assert ((accuracies >= 0) & (accuracies <= 100)).all().all() and (frame["finetune_epochs"] == 1).all()
    # the uniform point is prune_and_recover at the uniform sparsities
    uniform = prune_and_recover(trained_tiny, synthetic, dict.fromkeys(CONV_NAMES, 0.5), "filter", SETTINGS)
    measured = [c for c in FRONTIER_COLUMNS if c in uniform]
    assert len(measured) == 5
    assert {k: frame.at[0, k] for k in measured} == pytest.approx({k: uniform[k] for k in measured})

    _forbid_work(monkeypatch)
    again = run_points(points, PointCache(tmp_path / "frontier.csv"), progress=False, desc="frontier")
    pd.testing.assert_frame_equal(_frame(again, FRONTIER_COLUMNS), frame, check_dtype=False)
    with pytest.raises(AssertionError, match="recomputed"):  # refresh (force) recomputes
        run_points(points, PointCache(tmp_path / "frontier.csv", refresh=True), progress=False, desc="frontier")


def test_frontier_points_of_global_allocations_are_one_ranking_over_the_layers(trained_tiny, synthetic, tmp_path):
    """global and LAMP points prune at allocation.global_sparsities of the dense model: no scan needed."""
    points = frontier_points(trained_tiny, synthetic, BASE, (0.3,), ("fine-grained", "filter"), SETTINGS,
                             ("global", "LAMP"))
    assert [fixed["allocation"] for _, _, fixed, _ in points] == ["global", "LAMP"] * 2 and len({p[0] for p in points}) == 4
    rows = run_points(points[3:], PointCache(tmp_path / "frontier.csv"), progress=False, desc="frontier")  # filter, LAMP
    expected = prune_and_recover(trained_tiny, synthetic, global_sparsities(trained_tiny, 0.3, "filter", lamp=True),
                                 "filter", SETTINGS)
    assert rows[0]["conv_weights_kept_pct"] == expected["conv_weights_kept_pct"] <= 30
    assert rows[0]["acc_finetuned"] == pytest.approx(expected["acc_finetuned"])


def test_frontier_points_reject_bad_choices_before_any_work(trained_tiny, synthetic, monkeypatch):
    _forbid_work(monkeypatch)
    scans = {"filter": scan_frame(CURVES)}

    def points(**kwargs):
        args = {"budgets": (0.5,), "strategies": ("filter",), "allocations": ("uniform", "guided"), "scans": scans,
                **kwargs}
        return frontier_points(trained_tiny, synthetic, BASE, args["budgets"], args["strategies"], SETTINGS,
                               args["allocations"], args["scans"])

    with pytest.raises(ValueError, match=r"allocations .*'best'"):
        points(allocations=("best",))
    with pytest.raises(ValueError, match=r"strategies .*'channel'"):
        points(strategies=("channel",))
    with pytest.raises(ValueError, match="conv_fraction_kept .*1.5"):
        points(budgets=(0.5, 1.5))
    with pytest.raises(ValueError, match="sensitivity scan of 'kernel'"):
        points(strategies=("filter", "kernel"))
    assert len(points(allocations=("uniform",), scans=None)) == 1  # uniform needs no scan


@pytest.mark.parametrize("allocation", ["uniform", "guided"])
def test_frontier_points_are_prunable_or_refused_before_any_work(trained_tiny, synthetic, monkeypatch, allocation):
    """frontier_points promises "all allocations are computed before any training, so a bad budget fails
    fast". Pruning now refuses a sparsity that removes every unit of a layer, so every point the sweep
    builds must be prunable, or building the points must fail (naming the layer). At width 0.125
    conv0 ... conv2 have 8 filters: keeping 5% uniformly is sparsity 0.95, which would remove all 8, and
    guided allocation on a scan where the early layers look insensitive picks extrapolated 0.95 / 0.98
    for 8- and 16-filter layers."""
    _forbid_work(monkeypatch)
    pruned = []

    def prune_only(dense, data, sparsities, strategy, settings, **kwargs):  # prunes, does not train
        prune_model(copy_model(dense), sparsities, strategy)
        pruned.append(dict(sparsities))
        return {}

    monkeypatch.setattr(experiments, "prune_and_recover", prune_only)
    flat_early = {name: [0.5 - (0.05 if i < 3 else 0.4) * s for s in SCAN_SPARSITIES]
                  for i, name in enumerate(CONV_NAMES)}
    try:
        points = frontier_points(trained_tiny, synthetic, BASE, (0.5, 0.05), ("filter",), SETTINGS, (allocation,),
                                 {"filter": scan_frame(flat_early)})
    except ValueError as error:  # refused up front: fine, if it names the layer
        assert re.search(r"conv\d+", str(error)), error
        return
    for _, _, _, work in points:
        work()  # raises ValueError from prune_model where a point cannot be pruned
    assert len(pruned) == 2


def test_criteria_points_seeds_and_columns(trained_tiny, synthetic, tmp_path):
    sparsities = {"filter": dict.fromkeys(CONV_NAMES, 0.5), "fine-grained": dict.fromkeys(CONV_NAMES, 0.5)}
    settings = SETTINGS.with_epochs(0)
    points = criteria_points(trained_tiny, synthetic, BASE, sparsities, settings, norms=(2, "random"),
                             random_seeds=2)
    assert [list(fixed.values()) for _, _, fixed, _ in points] == [
        ["filter", "L2", 0], ["filter", "random", 0], ["filter", "random", 1],
        ["fine-grained", "L2", 0], ["fine-grained", "random", 0], ["fine-grained", "random", 1]]
    assert len({key for key, *_ in points}) == 6
    frame = _frame(run_points(points, PointCache(tmp_path / "criteria.csv"), False, "criteria"), CRITERIA_COLUMNS)
    assert not frame.isna().any().any()
    assert (frame["acc_finetuned"] == frame["acc_recalibrated"]).all()  # 0 epochs: nothing to fine-tune
    # the same sparsities for every criterion: the same fraction of conv weights kept
    assert (frame.groupby("strategy")["conv_weights_kept_pct"].nunique() == 1).all()
    assert frame.loc[frame["strategy"] == "filter", "conv_weights_kept_pct"].iloc[0] == 50
    # random selection is seeded: the point of seed 1 is the one of a generator seeded 1
    seeded = prune_and_recover(trained_tiny, synthetic, sparsities["filter"], "filter", settings, norm="random",
                               generator=torch.Generator().manual_seed(1))
    assert frame.at[2, "acc_pruned"] == pytest.approx(seeded["acc_pruned"])


def test_criteria_points_reject_bad_choices(trained_tiny, synthetic):
    sparsities = {"filter": dict.fromkeys(CONV_NAMES, 0.5)}
    with pytest.raises(ValueError, match=r"norms .*'hessian'"):
        criteria_points(trained_tiny, synthetic, BASE, sparsities, SETTINGS, norms=("hessian",))
    with pytest.raises(ValueError, match="Taylor criterion needs the importance"):
        criteria_points(trained_tiny, synthetic, BASE, sparsities, SETTINGS, norms=("taylor",))
    with pytest.raises(ValueError, match="random_seeds .*0"):
        criteria_points(trained_tiny, synthetic, BASE, sparsities, SETTINGS, random_seeds=0)
    with pytest.raises(ValueError, match=r"strategies .*'channel'"):
        criteria_points(trained_tiny, synthetic, BASE, {"channel": sparsities["filter"]}, SETTINGS)
    with pytest.raises(ValueError, match="conv4: .*1.2"):
        criteria_points(trained_tiny, synthetic, BASE, {"filter": {"conv4": 1.2}}, SETTINGS)
    assert len(criteria_points(trained_tiny, synthetic, BASE, sparsities, SETTINGS, norms=(2,), random_seeds=0)) == 1


def test_iterative_points_rows_per_round(trained_tiny, synthetic, tmp_path):
    sparsities = dict.fromkeys(CONV_NAMES, 0.6)
    points = iterative_points(trained_tiny, synthetic, BASE, sparsities, "filter", SETTINGS, rounds=(1, 2))
    assert [fixed for _, _, fixed, _ in points] == [{"strategy": "filter", "rounds": 1},
                                                     {"strategy": "filter", "rounds": 2}]
    frame = _frame(run_points(points, PointCache(tmp_path / "iterative.csv"), False, "iterative"), ITERATIVE_COLUMNS)
    assert frame[["rounds", "round", "finetune_epochs"]].values.tolist() == [[1, 1, 1], [2, 1, 0], [2, 2, 1]]
    final = frame.groupby("rounds")["conv_weights_kept_pct"].last()
    assert final[1] == pytest.approx(final[2])
    assert frame.at[1, "conv_weights_kept_pct"] > frame.at[2, "conv_weights_kept_pct"]
    with pytest.raises(ValueError, match="rounds .*0"):
        iterative_points(trained_tiny, synthetic, BASE, sparsities, "filter", SETTINGS, rounds=(0,))
    with pytest.raises(ValueError, match="'channel'"):
        iterative_points(trained_tiny, synthetic, BASE, sparsities, "channel", SETTINGS)


def test_stratified_sample_takes_each_class_evenly():
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 7)[torch.randperm(14, generator=torch.Generator().manual_seed(0))]
    sample = experiments.stratified_sample(labels, per_class=3, seed=0)
    assert sample.tolist() == sorted(sample.tolist()) and len(set(sample.tolist())) == len(sample)
    assert torch.bincount(labels[sample]).tolist() == [3, 2, 3]  # class 1 has only 2
    assert torch.equal(sample, experiments.stratified_sample(labels, per_class=3, seed=0))
    assert any(not torch.equal(sample, experiments.stratified_sample(labels, 3, seed=s)) for s in range(1, 5))


# --- the drivers on a run -----------------------------------------------------------------------


def _open(run_dir):
    return open_run("smoke", run_dir, figures_dir=run_dir.parent / "figures", progress=False, **TINY_RUN)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny smoke run with its dense model, three scans and Table 1; tests work on copies."""
    run_dir = tmp_path_factory.mktemp("experiments") / "run"
    steps.chosen_sparsities(_open(run_dir))
    return run_dir


@pytest.fixture
def run(prepared, tmp_path):
    shutil.copytree(prepared, tmp_path / "run")
    return _open(tmp_path / "run")


def test_frontier_driver_columns_reuse_resume_and_force(run, monkeypatch):
    frame = frontier.frontier(run, budgets=(0.5,), strategies=("filter",), finetune_epochs=1)
    assert list(frame.columns) == FRONTIER_COLUMNS
    assert frame[["strategy", "allocation", "budget"]].values.tolist() == [
        ["filter", "uniform", 0.5], ["filter", "guided", 0.5]]
    assert frame.at[0, "conv_weights_kept_pct"] == pytest.approx(50)  # even filter counts: exact
    assert frame.at[1, "conv_weights_kept_pct"] <= 50 + HALF_FILTER_PER_LAYER_PCT  # grid sparsities, whole filters
    accuracies = frame[["acc_pruned", "acc_recalibrated", "acc_finetuned"]]
    assert ((accuracies >= 0) & (accuracies <= 100)).all().all()
    assert (frame["finetune_epochs"] == 1).all()
    assert run.path("frontier.csv").exists() and run.path("points/frontier.csv").exists()
    # the uniform point: the run's dense model and recovery settings, pruned at 0.5 everywhere
    dense, _ = steps.dense_model(run)
    expected = prune_and_recover(dense, run.data, dict.fromkeys(CONV_NAMES, 0.5), "filter",
                                 steps.recovery_settings(run, 1))
    assert {k: frame.at[0, k] for k in ("acc_pruned", "acc_recalibrated", "acc_finetuned")} == pytest.approx(
        {k: expected[k] for k in ("acc_pruned", "acc_recalibrated", "acc_finetuned")})

    # effective sizes: the uniform point's compacted model, counted (a removed filter takes the next
    # layer's input channels with it, so half the filters leave about a quarter of the weights)
    sized = frontier.frontier_sizes(frame, dense, {"filter": steps.sensitivity(run, "filter")})
    compacted = compact(prune_model(copy_model(dense), dict.fromkeys(CONV_NAMES, 0.5), "filter"))
    dense_conv = sum(c.weight.numel() for c in conv_layers(dense).values())
    assert sized.at[0, "conv_weights_effective_pct"] == pytest.approx(
        100 * sum(c.weight.numel() for c in conv_layers(compacted).values()) / dense_conv)
    assert 20 < sized.at[0, "conv_weights_effective_pct"] < 30
    assert sized.at[0, "multiply_adds_effective_pct"] == pytest.approx(
        100 * count_multiply_adds(compacted) / count_multiply_adds(dense))
    assert (sized["conv_weights_effective_pct"] <= sized["conv_weights_kept_pct"] + 1e-9).all()
    pd.testing.assert_frame_equal(sized[frame.columns], frame)  # the table itself unchanged

    _forbid_work(monkeypatch)
    again = frontier.frontier(run, budgets=(0.5,), strategies=("filter",), finetune_epochs=1)
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)
    reopened = _open(run.run_dir)  # a new session: reused from the artifact's record
    pd.testing.assert_frame_equal(frontier.frontier(reopened, budgets=(0.5,), strategies=("filter",),
                                                       finetune_epochs=1), frame, check_dtype=False)
    run.path("frontier.csv").unlink()  # the table is lost, the finished points are not
    pd.testing.assert_frame_equal(frontier.frontier(_open(run.run_dir), budgets=(0.5,), strategies=("filter",),
                                                       finetune_epochs=1), frame, check_dtype=False)
    with pytest.raises(AssertionError, match="recomputed"):  # other settings are other points
        frontier.frontier(run, budgets=(0.5,), strategies=("filter",), finetune_epochs=2)
    with pytest.raises(AssertionError, match="recomputed"):
        frontier.frontier(run, budgets=(0.5,), strategies=("filter",), finetune_epochs=1, force=True)


def test_the_taylor_criterion_does_not_follow_the_evaluation_batch(run, tmp_path, monkeypatch):
    """The evaluation batch is a speed setting (a CPU probe may choose it per machine); the Taylor
    sum of |w * dL/dw| over batches depends on how the split is cut, so it has its own fixed batch."""
    importances = []
    real = experiments.taylor_importance

    def recorded(*args, **kwargs):
        importances.append(real(*args, **kwargs))
        return importances[-1]

    monkeypatch.setattr(experiments, "taylor_importance", recorded)
    other = open_run("smoke", tmp_path / "other", figures_dir=tmp_path / "figures", progress=False,
                     **TINY_RUN, eval_batch_size=50)  # 4 batches of the 200 validation images instead of 1
    assert other.profile.eval_batch_size == 50 and run.profile.eval_batch_size == 500
    tables = [experiments.criteria(r, norms=("taylor",), random_seeds=0, finetune_epochs=0) for r in (run, other)]
    assert run.profile.importance_batch_size == other.profile.importance_batch_size == 1000
    for name, importance in importances[0].items():
        assert torch.equal(importance, importances[1][name]), name
    pd.testing.assert_frame_equal(tables[0].drop(columns=["acc_recalibrated", "acc_finetuned"]),
                                  tables[1].drop(columns=["acc_recalibrated", "acc_finetuned"]))


def test_an_interrupted_criteria_sweep_resumes_at_the_next_point(run, monkeypatch):
    calls = []
    real = recovery.prune_model

    def flaky(*args, **kwargs):
        calls.append(kwargs.get("norm"))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(recovery, "prune_model", flaky)
    with pytest.raises(KeyboardInterrupt):
        experiments.criteria(run, norms=(2, 1, "random"), random_seeds=1, finetune_epochs=0)
    assert len(pd.read_csv(run.path("points/criteria.csv"))) == 1  # the finished point was kept
    assert not run.path("criteria.csv").exists()
    frame = experiments.criteria(run, norms=(2, 1, "random"), random_seeds=1, finetune_epochs=0)
    assert calls == [2, 1] + [1, "random"] + [2, 1, "random"] * 2  # L2 of the first strategy not redone
    assert list(frame.columns) == CRITERIA_COLUMNS
    assert frame[["strategy", "criterion"]].values.tolist() == [
        [s, c] for s in STRATEGIES for c in ("L2", "L1", "random")]
    assert (frame["seed"] == 0).all() and (frame["finetune_epochs"] == 0).all()
    assert (frame["acc_finetuned"] == frame["acc_recalibrated"]).all()
    # each strategy at its Table 1 sparsities, whatever the criterion
    table1 = steps.chosen_sparsities(run)
    dense, _ = steps.dense_model(run)
    for strategy in STRATEGIES:
        kept = frame.loc[frame["strategy"] == strategy, "conv_weights_kept_pct"]
        pruned = prune_model(copy_model(dense), steps.sparsity_dict(table1, strategy), strategy)
        assert kept.tolist() == pytest.approx([conv_weights_kept_pct(pruned)] * 3), strategy

    _forbid_work(monkeypatch)
    again = experiments.criteria(run, norms=(2, 1, "random"), random_seeds=1, finetune_epochs=0)
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)


def test_iterative_driver_columns_and_reuse(run, monkeypatch):
    frame = experiments.iterative(run, rounds=(1, 2), total_finetune_epochs=1)
    assert list(frame.columns) == ITERATIVE_COLUMNS
    assert frame[["strategy", "rounds", "round", "finetune_epochs"]].values.tolist() == [
        [s, *r] for s in STRATEGIES for r in ([1, 1, 1], [2, 1, 0], [2, 2, 1])]
    final = frame.groupby(["strategy", "rounds"])["conv_weights_kept_pct"].last().unstack()
    assert final[1].tolist() == pytest.approx(final[2].tolist())
    _forbid_work(monkeypatch)
    again = experiments.iterative(run, rounds=(1, 2), total_finetune_epochs=1)
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)


def test_sweep_drivers_reject_bad_choices(run, monkeypatch):
    _forbid_work(monkeypatch)
    with pytest.raises(ValueError, match=r"allocations .*'best'"):
        frontier.frontier(run, budgets=(0.5,), strategies=("filter",), allocations=("best",))
    with pytest.raises(ValueError, match="'channel'"):
        frontier.frontier(run, budgets=(0.5,), strategies=("channel",))
    with pytest.raises(ValueError, match="conv_fraction_kept .*1.5"):
        frontier.frontier(run, budgets=(1.5,), strategies=("filter",))
    with pytest.raises(ValueError, match=r"finetune.epochs .*-1"):
        frontier.frontier(run, budgets=(0.5,), strategies=("filter",), finetune_epochs=-1)
    with pytest.raises(ValueError, match=r"norms .*'hessian'"):
        experiments.criteria(run, norms=("hessian",))
    with pytest.raises(ValueError, match="rounds .*0"):
        experiments.iterative(run, rounds=(0,))
    assert not run.path("frontier.csv").exists() and not run.path("criteria.csv").exists()


def test_speed_models_and_latency_driver(run, monkeypatch):
    # a threshold under chance level: Table 1 prunes filters whatever the tiny model's scan looks
    # like (at the default threshold it can keep every filter, e.g. with one OpenMP thread)
    def reopen():
        return open_run("smoke", run.run_dir, figures_dir=run.run_dir.parent / "figures", progress=False,
                        **TINY_RUN, threshold=0.05)

    run = reopen()
    models, keys = experiments.speed_models(run)
    assert list(models) == list(keys) == ["dense", "fine-grained (masked)", "kernel (masked)", "filter (masked)",
                                          "filter (compacted)"]
    assert keys["filter (compacted)"] == keys["filter (masked)"] + ":compacted"
    assert experiments.speed_model_keys(run) == keys  # the same keys without reading a model file
    masked, compacted = models["filter (masked)"], models["filter (compacted)"]
    assert sum(c.out_channels for c in conv_layers(compacted).values()) < sum(
        c.out_channels for c in conv_layers(masked).values())
    check = experiments.compaction_check(run, per_class=5)
    assert check["images"] == 50 and check["classes"] == 10 and check["same_predictions"]
    assert check["max_abs_logit_difference"] < 1e-4
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="per_class must be a positive integer"):
            experiments.compaction_check(run, per_class=bad)
    table = experiments.latency(run)
    assert list(table.columns) == LATENCY_COLUMNS
    assert table[["model", "batch_size"]].values.tolist() == [[m, b] for m in models for b in (1, 256)]
    _forbid_work(monkeypatch)
    monkeypatch.setattr(experiments, "speed_models", None)  # stored: no model is read
    pd.testing.assert_frame_equal(experiments.latency(reopen()), table)
    assert experiments.compaction_check(reopen(), per_class=5) == check
    # on another machine: a report that computes measures the table there; a read-only one shows the
    # stored table as measured where it was (and says so), and still fails when its models changed
    monkeypatch.setattr(latency_module, "cpu_model", lambda: "Another CPU (family 1 model 2; avx2)")
    readonly = open_run("smoke", run.run_dir, figures_dir=run.run_dir.parent / "figures", **TINY_RUN,
                        threshold=0.05, compute=False)
    pd.testing.assert_frame_equal(experiments.latency(readonly), table)
    assert readonly.events[-1]["status"] == "reused"
    with pytest.raises(NotComputed):
        experiments.latency(open_run("smoke", run.run_dir, figures_dir=run.run_dir.parent / "figures", **TINY_RUN,
                                     threshold=0.05, compute=False, latency_repeats=4))
    # a run made in bf16, on a CPU that emulates bf16 (precision_is_fast is False): its models would retrain at
    # a crawl, so it shows the stored table; where it can compute, it measures
    monkeypatch.setattr(experiments, "precision_is_fast", lambda precision, device: False)
    pd.testing.assert_frame_equal(experiments.latency(reopen()), table)
    monkeypatch.setattr(experiments, "precision_is_fast", lambda precision, device: True)
    with pytest.raises(TypeError):  # speed_models (None here) is needed
        experiments.latency(reopen())
