"""The study's notebooks run as one smoke study (a module fixture), then reused: artifacts and their
records, a changed setting, force, a stored-only report, the rendered report and single-notebook runs,
at the smoke profile (generated data) cut down to SMALL. The notebooks' mechanics that need no study
(parameters, bad input, a killed or busy report, nbval) are tested in test_notebook_runner.py."""

import json
import re
import shutil

import nbformat
import papermill
import pytest

from pruning_utils import experiments, frontier
from pruning_utils.artifacts import REGISTRY, spec_for
from pruning_utils.criteria import STRATEGIES
from pruning_utils.report import MULTI_SEED_NOTEBOOKS, NOTEBOOKS, render_html, run_notebooks
from pruning_utils.runs import open_run
from pruning_utils.staleness import CURRENT, stale_results

STUDY = tuple(name for name in NOTEBOOKS if name not in MULTI_SEED_NOTEBOOKS)


# The smoke profile cut down: these tests check the notebooks' mechanics (parameters, reuse, force, read-only,
# rendering); nbval runs the notebooks at the smoke profile itself. Larger than test_pipeline's TINY because
# notebook 01 asserts the dense model is well above chance (400 images and 2 epochs left it at 10%).
SMALL = {"synthetic_sizes": [800, 200, 200], "epochs": 3, "finetune_epochs": 1, "recalibration_batches": 2}


def _records(run_dir):
    return {p.name.removesuffix(".json"): json.loads(p.read_text()) for p in (run_dir / "provenance").glob("*.json")}


def _report(run_dir, notebooks=STUDY, overrides=None, **extra):
    return run_notebooks(run_dir, {"profile": "smoke", "run_dir": str(run_dir),
                                   "overrides": {**SMALL, **(overrides or {})}, **extra}, notebooks,
                         log=lambda m: None, stream=False)


def _step_logs(executed):
    """The step table each executed notebook ends with, as text."""
    return "\n".join(o.get("data", {}).get("text/plain", "") for p in executed
                     for c in nbformat.read(p, 4).cells if "run.step_log()" in c.source for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The six notebooks executed through the report runner at the smoke profile cut down to SMALL, into a
    temporary run."""
    run_dir = tmp_path_factory.mktemp("smoke-run")
    executed = _report(run_dir)
    return run_dir, executed, _records(run_dir)


def test_the_study_writes_every_registered_artifact_with_its_record(smoke_run):
    run_dir, executed, records = smoke_run
    names = {p.name for p in run_dir.iterdir() if p.is_file()}
    for spec in REGISTRY:
        if spec.notebook in MULTI_SEED_NOTEBOOKS:  # one seed: not run (nbval and test_across_seeds run them)
            continue
        filled = spec.pattern.format(strategy="filter", image=0)
        assert filled in names, filled
        assert records[filled]["step"] == spec.step and records[filled]["profile"] == "smoke"
    assert json.loads((run_dir / "run.json").read_text()) == {"profile": "smoke", "seed": 0}
    for path in executed:
        nb = nbformat.read(path, 4)
        assert nb.metadata["papermill"]["end_time"] and not nb.metadata["papermill"]["exception"]
        assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    assert not list((run_dir / "notebooks").glob(".*partial*"))


def test_a_changed_finetuning_setting_recomputes_what_depends_on_it_and_says_what_was_reused(smoke_run, tmp_path):
    """Notebook 03 with another fine-tuning rate recomputes its pruned models and Table 2 and reuses the rest;
    notebook 06's results, which fine-tune too, are then not current under the new setting (so a report
    recomputes them), asked with the same keys the steps use."""
    run_dir, _, before = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    changed_setting = {**SMALL, "finetune_lr": 0.002}
    executed = _report(copy, ("03_prune_finetune",), overrides={"finetune_lr": 0.002})
    after = _records(copy)
    changed = {name for name in after if after[name]["key"] != before[name]["key"]}
    depends = {"results.csv"} | {f"{k}_{s}.{e}" for s in STRATEGIES for k, e in (
        ("pruned", "pt"), ("finetuned", "pt"), ("finetune_history", "csv"), ("table2", "json"))}
    assert changed == depends
    for name in set(after) - depends:  # the scans, Table 1, the filter-output comparison, the dense model, 04-06
        assert after[name]["created"] == before[name]["created"], name
    assert after["results.csv"]["inputs"] != before["results.csv"]["inputs"]
    logs = _step_logs(executed)
    assert "sensitivity (filter)    reused" in logs and "table2  computed" in logs
    later = {**{name: getattr(experiments, name) for name in ("compaction_check", "latency", "criteria", "iterative")},
             "frontier": frontier.frontier}
    new = stale_results(open_run("smoke", copy, compute=False, progress=False, **changed_setting), later)
    assert all(why != CURRENT and "inputs changed" in why for why in new.values()), new


def test_force_rewrites_every_artifact_of_the_notebooks_run_and_no_other(smoke_run, tmp_path):
    """FORCE=1 recomputes every step the notebooks run call, under the same keys, and leaves the others' results
    alone. Two notebooks, not the six (each forced notebook takes its steps through the same parameter): the
    dense model and its head check, and the statistics and histograms drawn from the seven models."""
    run_dir, _, before = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    forced = ("01_train", "04_weight_dists")
    _report(copy, notebooks=forced, force=True)
    after = _records(copy)
    assert set(after) == set(before)
    theirs = {name for name in after if spec_for(name).notebook in forced}
    assert theirs >= {"dense.pt", "head_check.csv", "weight_stats.csv", "weight_histograms.json"}
    assert all(after[name]["created"] != before[name]["created"] for name in theirs)
    assert all(after[name]["created"] == before[name]["created"] for name in set(after) - theirs)
    assert all(after[name]["key"] == before[name]["key"] for name in after)  # same inputs, recomputed


def test_a_notebook_is_run_again_when_a_later_one_changes_what_it_showed(smoke_run, tmp_path):
    """A model that is not committed is made again by notebook 04 when a result drawn from it is not current; if
    it comes out different from its record (another CPU), results.csv is dropped and remade, so notebook 03, which
    showed the old Table 2, runs again."""
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run[0], run_dir)
    messages = []

    def report(notebooks):
        messages.clear()
        return run_notebooks(run_dir, {"profile": "smoke", "run_dir": str(run_dir), "overrides": SMALL},
                             notebooks, log=messages.append, stream=False)

    report(("03_prune_finetune", "04_weight_dists"))  # nothing changed: each notebook once
    assert [m for m in messages if m.endswith("running ...")] == [
        "[1/2] 03_prune_finetune: running ...", "[2/2] 04_weight_dists: running ..."]
    record_path = run_dir / "provenance" / "finetuned_kernel.pt.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "sha256": "0" * 64}))  # as if made on another CPU
    (run_dir / "finetuned_kernel.pt").unlink()  # as in a clone
    (run_dir / "provenance" / "weight_histograms.json.json").unlink()  # a result of 04 not current: it reads the models
    executed = report(("03_prune_finetune", "04_weight_dists"))
    again = [m for m in messages if m.startswith("[again")]
    assert len(again) == 3 and again[0].startswith("[again 1/1] 03_prune_finetune: ") and "finetuned_kernel.pt" in again[0]
    assert executed[0].stat().st_mtime_ns > executed[1].stat().st_mtime_ns  # 03 rendered after 04
    assert "table2  computed" in _step_logs(executed[:1])  # its second run made results.csv again and shows it
    assert json.loads(record_path.read_text())["sha256"] == record["sha256"]


def test_a_stored_only_report_computes_nothing(smoke_run, tmp_path):
    """`make report STORED=1`: every notebook reads the run's current results and writes none; a section whose
    results are not current says so; one drawn from models that are absent but whose results are current is shown
    (a clone); on a run without results the first notebook fails, naming the missing step."""
    run_dir = tmp_path / "run"  # a copy: the shared run's executed notebooks stay those of the computing report
    shutil.copytree(smoke_run[0], run_dir, ignore=shutil.ignore_patterns("notebooks", ".lock"))

    def artifacts():
        return {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()
                and not {"notebooks", "figures"} & set(p.relative_to(run_dir).parts) and not p.name.startswith(".")}

    (run_dir / "frontier.csv").unlink()  # a section of notebook 06 that is not current: said, and the rest shown
    (run_dir / "finetuned_kernel.pt").unlink()  # a model of notebooks 04-06 (not in a clone): not needed
    before = artifacts()
    executed = _report(run_dir, compute=False)
    logs = _step_logs(executed)
    assert "reused" in logs and "not computed" in logs and "computed" not in logs.replace("not computed", "")
    assert artifacts() == before  # nothing rewritten, nothing added (neither file made again)
    text = {path.stem: json.dumps(nbformat.read(path, 4).cells) for path in executed}
    assert list(text) == list(STUDY) and not any("Traceback" in t for t in text.values())
    assert not any("Not computed yet" in text[name] for name in STUDY[:5])  # 04-05 drawn from their stored results
    assert "frontier: 0 of" in text["06_beyond"] and "missing frontier.csv" in text["06_beyond"]
    assert text["06_beyond"].count("Not computed yet") == 1  # the frontier; speed, criteria, iterative shown
    assert re.search(r"latency +reused", logs) and re.search(r"compaction_check +reused", logs)
    with pytest.raises(papermill.PapermillExecutionError, match="NotComputed") as failure:
        _report(tmp_path / "empty", notebooks=("01_train",), compute=False)
    assert "dense: missing" in str(failure.value)


def test_rendered_report_embeds_every_figure_and_has_no_error(smoke_run, tmp_path):
    run_dir, executed, _ = smoke_run
    html = render_html(executed, tmp_path / "report.html", "smoke").read_text()
    figures = sum(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
                  for p in executed for c in nbformat.read(p, 4).cells for o in c.get("outputs", []))
    assert figures >= 20 and figures == len(list((run_dir / "figures").glob("*.png")))  # each saved figure shown once
    assert html.count("data:image/png;base64,") >= figures  # every figure embedded ...
    assert not re.search(r'<img[^>]+src="(?!data:)', html)  # ... and none linked to a file
    assert "Traceback" not in html and "jp-RenderedText" in html
    assert "Contents:" in html and 'href="#1.-The-dense-model"' in html
    assert "steps.train_dense" not in html  # code hidden
    appendix = re.search(r"<h1[^>]*>Appendix: logs and settings<", html).start()  # logs, settings only after it
    assert html.index("dense epoch 1/") > appendix and html.index('"name": "smoke"') > appendix
    assert html.index("1. The dense model<") < appendix


def test_sensitivity_notebook_for_one_strategy_writes_only_its_scan(smoke_run, tmp_path, execute_notebook):
    run_dir, _, _ = smoke_run
    fresh = tmp_path / "run"
    (fresh / "provenance").mkdir(parents=True)
    for name in ("dense.pt", "dense_metrics.json", "dense_history.csv", "layers.csv"):
        shutil.copy(run_dir / name, fresh / name)
        shutil.copy(run_dir / "provenance" / f"{name}.json", fresh / "provenance" / f"{name}.json")
    shutil.copy(run_dir / "run.json", fresh / "run.json")
    def artifacts():  # every file of the run but its figures
        return {p.name for p in fresh.rglob("*") if p.relative_to(fresh).parts[0] != "figures"}

    before = artifacts()
    out = execute_notebook("02_sensitivity", tmp_path / "out.ipynb", strategy="filter", profile="smoke", run_dir=str(fresh),
                   overrides=SMALL)
    assert artifacts() - before - {".lock"} == {"sensitivity_filter.csv", "sensitivity_filter.csv.json"}
    assert "dense: reused" in json.dumps([c.get("outputs") for c in out.cells])  # the committed model, not retrained


def test_threshold_parameter_works_on_a_run_made_with_the_default(smoke_run, tmp_path, execute_notebook):
    run_dir, _, before = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    execute_notebook("03_prune_finetune", tmp_path / "out.ipynb", profile="smoke", run_dir=str(copy), threshold=0.6,
             overrides=SMALL)
    after = _records(copy)
    assert after["sparsities.csv"]["inputs"]["threshold"] == 0.6
    assert after["sensitivity_kernel.csv"]["created"] == before["sensitivity_kernel.csv"]["created"]
