"""The one artifact rule: every result keyed by its inputs, reused only on a matching key, recomputed
when anything it depends on changed, and faults (kills, damaged or foreign files) that end cleanly."""

import json
import shutil

import pandas as pd
import pytest
import torch

from pruning_utils import experiments, staleness, steps
from pruning_utils.artifacts import REGISTRY, ArtifactError, spec_for
from pruning_utils.runs import open_run
from pruning_utils.training import CheckpointError

TINY = {"synthetic_sizes": (400, 100, 100), "epochs": 2, "finetune_epochs": 1, "recalibration_batches": 2}


def _open(run_dir, **overrides):
    return open_run("smoke", run_dir, figures_dir=run_dir / "figures", progress=False, **{**TINY, **overrides})


def _status(run):
    """{step label: computed | reused} of this session (the last event of each step)."""
    return {e["step"]: e["status"] for e in run.events}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """Table 2 computed once at a tiny setting; tests work on copies of its directory."""
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    run = _open(run_dir)
    steps.table2(run)
    steps.chosen_sparsities(run)  # Table 1 (the rows of Table 2 read their own scans, not it)
    assert set(_status(run).values()) == {"computed"}
    return run_dir


@pytest.fixture
def run_dir(base_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    return copy


def _bytes(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}


def test_an_unchanged_rerun_reuses_everything_and_changes_no_file(run_dir):
    before = _bytes(run_dir)
    run = _open(run_dir)
    steps.table2(run)
    assert set(_status(run).values()) == {"reused"}
    assert _bytes(run_dir) == before


def test_a_changed_finetuning_recipe_recomputes_table2_and_reuses_the_scans(run_dir):
    run = _open(run_dir, finetune_epochs=2)
    results = steps.table2(run)
    status = _status(run)
    assert status["dense"] == "reused" and "table1" not in status  # each row reads its own scan
    assert all(status[f"sensitivity ({s})"] == "reused" for s in steps.STRATEGIES)
    assert all(status[f"prune_finetune ({s})"] == "computed" for s in steps.STRATEGIES)
    assert status["table2"] == "computed" and (results["finetune_epochs"] == 2).all()
    why = {e["step"]: e["why"] for e in run.events}
    assert "recovery.recipe.epochs" in why["prune_finetune (filter)"]


def test_a_changed_dense_model_recomputes_everything_downstream(run_dir):
    run = _open(run_dir, epochs=1)
    steps.table2(run)
    assert set(_status(run).values()) == {"computed"}
    assert "train.epochs" in run.events[0]["why"]


CHANGES = {  # overrides, the strategy whose masking rule changes, what the stale rows' reason names
    "none": ({}, None, ""),
    "recipe": ({"finetune_epochs": 2}, None, "recovery.recipe.epochs"),
    "rule": ({}, "kernel", "sensitivity (kernel): inputs changed: rule"),
    "dense": ({"epochs": 1}, None, "dense: inputs changed: train.epochs"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_what_a_read_only_run_calls_stale_is_what_the_pipeline_recomputes(run_dir, tmp_path, monkeypatch, change):
    overrides, rule_of, reason = CHANGES[change]
    if rule_of:  # a new masking rule for one strategy enters its keys (as the emptied-filter rule did)
        real = steps.mask_inputs
        monkeypatch.setattr(steps, "mask_inputs", lambda s: {**real(s), "rule": 2} if s == rule_of else real(s))
    bare = tmp_path / "bare"  # committed as the GPU runs are: records and tables, no model file
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("*.pt"))
    before = _bytes(bare)
    read_only = _open(bare, compute=False, **overrides)
    read_only.store.records_suffice = True
    stale = staleness.stale_results(read_only, staleness.TABLE2_ROWS)
    assert _bytes(bare) == before  # a read-only run writes nothing
    run = _open(run_dir, **overrides)
    steps.table2(run)
    computed = {s for s in steps.STRATEGIES if _status(run)[f"prune_finetune ({s})"] == "computed"}
    assert len(computed) == {"none": 0, "recipe": 3, "rule": 1, "dense": 3}[change]
    assert {name.removeprefix("Table 2 ") for name, why in stale.items() if why != staleness.CURRENT} == computed
    assert all(reason in stale[f"Table 2 {s}"] for s in computed)
    with pytest.raises(ValueError, match="read-only"):
        staleness.stale_results(run, staleness.TABLE2_ROWS)


def test_a_stale_latency_reads_the_same_on_every_machine():
    """Which CPU reads the run does not enter what the README says of it (a latency is its CPU's)."""
    here = staleness._without_machine_inputs("latency", "inputs changed: cpu, models.kernel (masked), threads")
    assert here == "latency: inputs changed: models.kernel (masked)"
    assert staleness._without_machine_inputs("latency", "inputs changed: cpu, threads") == staleness.CURRENT
    assert staleness._without_machine_inputs("latency", "missing latency.csv") == "latency: missing latency.csv"


def test_a_threshold_works_on_an_existing_run_and_keys_table1(run_dir):
    run = _open(run_dir, threshold=0.6)
    table = steps.chosen_sparsities(run)
    status = _status(run)
    assert status["table1"] == "computed" and status["dense"] == "reused"
    assert "threshold" in {e["step"]: e["why"] for e in run.events}["table1"]
    record = json.loads((run_dir / "provenance" / "sparsities.csv.json").read_text())
    assert record["inputs"]["threshold"] == 0.6 and len(table) == 12
    again = _open(run_dir, threshold=0.6)
    steps.chosen_sparsities(again)
    assert _status(again)["table1"] == "reused"
    back = _open(run_dir)
    steps.chosen_sparsities(back)
    assert _status(back)["table1"] == "computed"  # the default threshold is another key


def test_force_recomputes_the_steps_called_but_not_their_upstream(run_dir):
    run = _open(run_dir, force=True)
    steps.table2(run)
    status = _status(run)
    assert status["dense"] == "reused" and all(status[f"sensitivity ({s})"] == "reused" for s in steps.STRATEGIES)
    assert all(status[f"prune_finetune ({s})"] == "computed" for s in steps.STRATEGIES)
    assert status["table2"] == "computed"


def test_each_artifact_carries_its_provenance(run_dir):
    record = json.loads((run_dir / "provenance" / "results.csv.json").read_text())
    assert record["step"] == "table2" and set(record["inputs"]["rows"]) == set(steps.STRATEGIES)
    assert {"code_version", "data", "profile", "seed", "precision", "cpu", "torch", "key", "sha256"} <= set(record)
    dense = json.loads((run_dir / "provenance" / "dense.pt.json").read_text())
    assert dense["inputs"]["train"]["epochs"] == 2 and dense["inputs"]["data"]["source_key"]
    for path in run_dir.iterdir():
        if path.is_file() and path.name not in ("run.json", ".lock"):
            assert spec_for(path.name).step == json.loads(
                (run_dir / "provenance" / f"{path.name}.json").read_text())["step"], path.name


def test_a_damaged_artifact_is_named_with_the_way_out(run_dir):
    path = run_dir / "results.csv"
    path.write_text(path.read_text().replace("filter", "fi1ter"))
    with pytest.raises(ArtifactError, match=r"results\.csv is damaged.*force=True"):
        steps.table2(_open(run_dir))
    steps.table2(_open(run_dir, force=True))  # the way out works
    assert "filter" in path.read_text()
    (run_dir / "provenance" / "dense.pt.json").write_text("{")
    with pytest.raises(ArtifactError, match=r"dense\.pt\.json .*cannot be read"):
        steps.train_dense(_open(run_dir))


def test_a_step_killed_halfway_leaves_nothing_that_counts_as_done(run_dir, monkeypatch):
    real = steps.recover

    def killed(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt  # after the models are written, before the row

    monkeypatch.setattr(steps, "recover", killed)
    with pytest.raises(KeyboardInterrupt):
        steps.prune_finetune(_open(run_dir, finetune_epochs=2), "kernel")
    assert not (run_dir / "provenance" / "pruned_kernel.pt.json").exists()
    monkeypatch.undo()
    run = _open(run_dir, finetune_epochs=2)
    steps.prune_finetune(run, "kernel")
    assert run.events[-1]["status"] == "computed" and run.events[-1]["why"].startswith("missing")


def _nudged(real):
    """``real`` (a training function whose first argument is the model) as another CPU might run it:
    the same training, its weights off by a rounding-sized amount."""
    def run_elsewhere(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).add_(1e-4)
        return out
    return run_elsewhere


def _without_models(run_dir, strategy="filter"):
    """What a clone holds: the records and tables, not the pruned and fine-tuned model files (of one
    strategy here, to keep the test short)."""
    for stage in ("pruned", "finetuned"):
        (run_dir / f"{stage}_{strategy}.pt").unlink()


def test_a_clone_reads_table2_from_its_rows_without_the_model_files(run_dir, monkeypatch):
    _without_models(run_dir)
    before = _bytes(run_dir)
    monkeypatch.setattr(steps, "recover", None)  # nothing may train
    run = _open(run_dir)
    results = steps.table2(run)
    assert steps.prune_finetune(run, "filter") == run.load_json("table2_filter.json")
    assert set(_status(run).values()) == {"reused"}
    assert _bytes(run_dir) == before
    assert results["strategy"].tolist() == list(steps.STRATEGIES)


def test_a_row_whose_record_has_another_key_is_recomputed_even_where_its_models_are_not_read(run_dir):
    _without_models(run_dir)
    record = run_dir / "provenance" / "finetuned_filter.pt.json"
    record.write_text(record.read_text().replace(json.loads(record.read_text())["key"], "0" * 16))
    run = _open(run_dir)
    steps.table2(run)
    assert _status(run)["prune_finetune (filter)"] == "computed"
    assert (run_dir / "finetuned_filter.pt").exists()


def test_a_row_file_that_is_absent_is_recomputed_even_where_every_record_is_there(run_dir):
    (run_dir / "table2_kernel.json").unlink()
    run = _open(run_dir)
    steps.prune_finetune(run, "kernel")
    assert _status(run)["prune_finetune (kernel)"] == "computed"


def test_a_clone_retrains_the_models_the_same_and_keeps_what_was_computed_from_them(run_dir):
    _without_models(run_dir)
    before = _bytes(run_dir)
    run = _open(run_dir)
    steps.seven_models(run)  # the weight and activation figures read the models themselves
    steps.table2(run)
    status = _status(run)
    assert status["prune_finetune (filter)"] == "computed" and status["prune_finetune (kernel)"] == "reused"
    assert status["table2"] == "reused"  # retrained on this machine, the models are byte-identical
    assert not any("computed from another" in e["why"] for e in run.events)
    after = _bytes(run_dir)
    assert all(after[name] == data for name, data in before.items() if name == "run.json" or not spec_for(name).timed)


def test_a_model_that_comes_out_different_recomputes_what_read_it(run_dir, monkeypatch):
    run = _open(run_dir)
    steps.weight_distributions(run)
    _without_models(run_dir)
    pruned = json.loads((run_dir / "provenance" / "pruned_filter.pt.json").read_text())["sha256"]
    monkeypatch.setattr(steps, "recover", _nudged(steps.recover))
    run = _open(run_dir)
    steps.seven_models(run)
    results = steps.table2(run)
    steps.weight_distributions(run)
    computed = {e["step"]: e["why"] for e in run.events if e["status"] == "computed"}
    assert computed == {"prune_finetune (filter)": "missing pruned_filter.pt",  # the kernel and fine-grained: reused
                        **{s: "computed from another finetuned_filter.pt"  # they read the old model
                           for s in ("table2", "weight_stats", "weight_histograms")}}
    assert json.loads((run_dir / "provenance" / "pruned_filter.pt.json").read_text())["sha256"] == pruned  # exact
    assert results.equals(pd.DataFrame([run.load_json(f"table2_{s}.json") for s in steps.STRATEGIES]))


def test_a_clone_shows_notebooks_04_to_06_from_stored_results_without_reading_or_training_a_model(run_dir, monkeypatch):
    run = _open(run_dir)
    weights, activations = steps.weight_distributions(run), steps.activation_distributions(run, 3)
    check, speed = experiments.compaction_check(run, per_class=2), experiments.latency(run)
    for strategy in steps.STRATEGIES:
        _without_models(run_dir, strategy)
    before = _bytes(run_dir)
    monkeypatch.setattr(steps, "recover", None)  # nothing may train
    monkeypatch.setattr(steps, "load_model", None)  # nor read a model file, the dense model's included
    run = _open(run_dir)
    for got, stored in ((steps.weight_distributions(run), weights), (steps.activation_distributions(run, 3), activations)):
        assert got[0].equals(stored[0]) and got[1] == stored[1]
    assert experiments.compaction_check(run, per_class=2) == check
    pd.testing.assert_frame_equal(experiments.latency(run), speed)
    assert set(_status(run).values()) == {"reused"}
    assert _bytes(run_dir) == before


def test_a_histogram_not_current_in_a_clone_remakes_the_models_and_comes_out_the_same(run_dir):
    run = _open(run_dir)
    stats, hists = steps.weight_distributions(run)
    _without_models(run_dir)
    (run_dir / "provenance" / "weight_histograms.json.json").unlink()
    run = _open(run_dir)
    again = steps.weight_distributions(run)
    assert again[1] == hists and again[0].equals(stats)
    status = _status(run)
    assert status["prune_finetune (filter)"] == "computed" and status["prune_finetune (kernel)"] == "reused"
    assert status["weight_histograms"] == "computed" and status["weight_stats"] == "reused"
    assert (run_dir / "finetuned_filter.pt").exists()


def test_a_recomputation_killed_halfway_still_recomputes_what_read_the_old_content(run_dir, monkeypatch):
    _without_models(run_dir)
    real = steps.recover

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(steps, "recover", killed)
    with pytest.raises(KeyboardInterrupt):
        steps.seven_models(_open(run_dir))
    assert not (run_dir / "provenance" / "finetuned_filter.pt.json").exists()  # not done
    monkeypatch.setattr(steps, "recover", _nudged(real))
    run = _open(run_dir)
    steps.table2(run)
    assert {e["step"]: e["why"] for e in run.events if e["status"] == "computed"} == {
        "prune_finetune (filter)": "missing pruned_filter.pt",
        "table2": "computed from another finetuned_filter.pt"}  # its record names the content it read


def test_a_dense_model_that_comes_out_different_recomputes_every_result(run_dir, monkeypatch):
    (run_dir / "dense.pt").unlink()
    monkeypatch.setattr(steps, "train", _nudged(steps.train))
    run = _open(run_dir)
    steps.table2(run)
    computed = {e["step"]: e["why"] for e in run.events if e["status"] == "computed"}
    assert computed.pop("dense") == "missing dense.pt" and computed.pop("table2").startswith("computed from another")
    assert computed == {f"{step} ({s})": "computed from another dense.pt" for step in ("sensitivity", "prune_finetune")
                        for s in steps.STRATEGIES}


def test_a_checkpoint_of_another_seed_is_refused_naming_it(tmp_path, monkeypatch):
    """Interrupt two trainings (seeds 1 and 0) after one epoch, then put seed 1's checkpoint where
    seed 0 resumes from: the resume is refused, naming the file and the seed."""
    real_train = steps.train

    def one_epoch(*args, on_epoch_end=None, **kwargs):
        def stop(epoch, record):
            raise KeyboardInterrupt
        return real_train(*args, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(steps, "train", one_epoch)
    for seed in (1, 0):
        with pytest.raises(KeyboardInterrupt):
            steps.train_dense(open_run("smoke", tmp_path / f"s{seed}", seed=seed, figures_dir=tmp_path / "f",
                                       progress=False, **TINY))
    monkeypatch.undo()
    (theirs,), (ours,) = ((tmp_path / f"s{s}" / "checkpoints").glob("dense-*.ckpt") for s in (1, 0))
    shutil.copy(theirs, ours)
    with pytest.raises(CheckpointError, match=rf"{ours}.*seed: checkpoint 1, this run 0"):
        steps.train_dense(open_run("smoke", tmp_path / "s0", seed=0, figures_dir=tmp_path / "f", progress=False,
                                   **TINY))


def test_the_registry_names_every_artifact_once():
    patterns = [spec.pattern for spec in REGISTRY]
    assert len(patterns) == len(set(patterns))
    assert spec_for("sensitivity_kernel.csv").notebook == "02_sensitivity"
    assert spec_for("activation_stats_3.csv").step == "activation_stats"
    with pytest.raises(KeyError, match="not a registered artifact"):
        spec_for("notes.txt")


def test_compaction_check_uses_every_class(run_dir):
    run = _open(run_dir)
    labels = run.data.test_y
    sample = experiments.stratified_sample(labels, per_class=3, seed=0)
    assert torch.equal(torch.bincount(labels[sample], minlength=10), torch.full((10,), 3))
    assert pd.Series(sample.tolist()).is_monotonic_increasing


def test_the_head_check_trains_both_heads_from_one_seed_and_is_keyed(run_dir):
    run = _open(run_dir)
    check = steps.head_check(run, epochs=1)
    assert list(check["head"]) == ["original", "this profile"] and (check["epoch"] == 1).all()
    assert check.set_index("head").loc["original", "dropout"] == 0.5
    assert check["val_acc"].between(0, 100).all()
    again = _open(run_dir)
    assert steps.head_check(again, epochs=1).equals(check) and _status(again) == {"head_check": "reused"}
    steps.head_check(again, epochs=2)
    assert _status(again) == {"head_check": "computed"}  # the epochs enter the key
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        steps.head_check(again, epochs=0)


def test_the_head_check_refuses_a_profile_with_the_original_head(tmp_path):
    run = _open(tmp_path / "run", dropout=0.5, head_init="normal")
    assert not steps.head_differs(run)
    with pytest.raises(ValueError, match="keeps the original's head"):
        steps.head_check(run)
