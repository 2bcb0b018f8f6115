"""The study's notebooks: papermill parameters, bad input, artifacts, the rendered report, and
the nbval regression mechanism, at the smoke profile (generated data) cut down to SMALL."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from pruning_utils.artifacts import REGISTRY
from pruning_utils.criteria import STRATEGIES
from pruning_utils.report import (MULTI_SEED_NOTEBOOKS, NOTEBOOKS, available_notebooks, parse_settings, render_html,
                                  run_notebooks)

ROOT = Path(__file__).resolve().parents[1]
STUDY = ("01_train", "02_sensitivity", "03_prune_finetune", "04_weight_dists", "05_activations", "06_beyond")


# The smoke profile cut down: these tests check the notebooks' mechanics (parameters, reuse, force, read-only,
# rendering); nbval runs the notebooks at the smoke profile itself. Larger than test_pipeline's TINY because
# notebook 01 asserts the dense model is well above chance (400 images and 2 epochs left it at 10%).
SMALL = {"synthetic_sizes": [800, 200, 200], "epochs": 3, "finetune_epochs": 1, "recalibration_batches": 2}


def _execute(name, out, **params):
    return papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                                      cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)


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


def test_every_notebook_has_one_parameters_cell_with_the_common_parameters():
    for name in available_notebooks():
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        params = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
        assert {"profile", "run_dir", "seed", "data_source", "force", "compute", "overrides"} <= set(params), name
    assert available_notebooks() == STUDY + MULTI_SEED_NOTEBOOKS == NOTEBOOKS


def test_committed_notebooks_carry_no_outputs():
    for name in available_notebooks():
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), name


def test_nbval_references_run_the_same_code_as_the_notebooks():
    """tests/nbval holds papermill-executed copies; their code must be the notebooks' code."""
    for name in NOTEBOOKS:
        source = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        ref = nbformat.read(ROOT / "tests" / "nbval" / f"{name}.ipynb", as_version=4)
        ref_code = [c.source for c in ref.cells if c.cell_type == "code"
                    and "injected-parameters" not in c.metadata.get("tags", [])]
        assert ref_code == [c.source for c in source.cells if c.cell_type == "code"], (
            f"tests/nbval/{name}.ipynb is stale: run `make nbval-refs`")
        assert ref.metadata["papermill"]["parameters"]["profile"] == "smoke"


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
    run_dir, _, before = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    executed = _report(copy, ("02_sensitivity", "03_prune_finetune", "06_beyond"), overrides={"finetune_lr": 0.002})
    after = _records(copy)
    changed = {name for name in after if after[name]["key"] != before[name]["key"]}
    depends = {"results.csv", "latency.csv", "frontier.csv", "criteria.csv", "iterative.csv"} | {
        f"{k}_{s}.{e}" for s in STRATEGIES for k, e in (
                   ("pruned", "pt"), ("finetuned", "pt"), ("finetune_history", "csv"), ("table2", "json"))}
    assert changed == depends
    for name in set(after) - depends:  # the scans, Table 1, the filter-output comparison, the dense model, 04-05
        assert after[name]["created"] == before[name]["created"], name
    assert after["results.csv"]["inputs"] != before["results.csv"]["inputs"]
    logs = _step_logs(executed)
    assert "sensitivity (filter)    reused" in logs and "table2  computed" in logs


def test_force_rewrites_every_artifact(smoke_run, tmp_path):
    run_dir, _, before = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    _report(copy, force=True)
    after = _records(copy)
    assert set(after) == set(before)
    assert all(after[name]["created"] != before[name]["created"] for name in after)
    assert all(after[name]["key"] == before[name]["key"] for name in after)  # same inputs, recomputed


def test_a_stored_only_report_computes_nothing(smoke_run, tmp_path):
    """`make report STORED=1`: every notebook reads the run's current results and writes none; a section whose
    results are not current says so (notebooks 04-06, the models included); on a run without results the first
    notebook fails, naming the missing step."""
    run_dir = tmp_path / "run"  # a copy: the shared run's executed notebooks stay those of the computing report
    shutil.copytree(smoke_run[0], run_dir, ignore=shutil.ignore_patterns("notebooks", ".lock"))

    def artifacts():
        return {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()
                and not {"notebooks", "figures"} & set(p.relative_to(run_dir).parts) and not p.name.startswith(".")}

    before = artifacts()
    logs = _step_logs(_report(run_dir, compute=False))
    assert "reused" in logs and "computed" not in logs
    assert artifacts() == before  # nothing rewritten, nothing added
    (run_dir / "frontier.csv").unlink()  # a section of notebook 06 that is not current: said, and the rest shown
    executed = _report(run_dir, notebooks=("06_beyond",), compute=False)
    text = json.dumps(nbformat.read(executed[0], 4).cells)
    assert "Not computed yet for seed 0" in text and "frontier: 0 of" in text and "missing frontier.csv" in text
    assert text.count("Not computed yet") == 1 and "Traceback" not in text  # criteria, iterative: shown
    (run_dir / "finetuned_kernel.pt").unlink()  # the models of notebooks 04-06 (never committed): said, no failure
    for executed in _report(run_dir, notebooks=("04_weight_dists", "05_activations", "06_beyond"), compute=False):
        text = json.dumps(nbformat.read(executed, 4).cells)
        assert "Not computed yet for seed 0" in text and "finetuned_kernel.pt" in text and "Traceback" not in text
    with pytest.raises(papermill.PapermillExecutionError, match="NotComputed") as failure:
        _report(tmp_path / "empty", notebooks=("01_train",), compute=False)
    assert "dense: missing" in str(failure.value)


def test_a_report_killed_during_training_finishes_when_started_again(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "pruning_utils.report", "--profile", "smoke", "--run-dir", str(run_dir),
               "--notebooks", "01_train"]
    report = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True, cwd=ROOT)
    for line in report.stdout:
        if "dense epoch 2/" in line:  # mid-training: a checkpoint exists, no artifact yet
            os.killpg(report.pid, signal.SIGKILL)
            break
    report.wait()
    assert not (run_dir / "notebooks" / "01_train.ipynb").exists() and not (run_dir / "dense.pt").exists()
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "dense: computing (missing dense.pt)" in again.stdout and "dense epoch 4/4" in again.stdout
    assert (run_dir / "dense.pt").exists() and (run_dir / "notebooks" / "01_train.ipynb").exists()


def test_a_second_report_into_a_busy_run_directory_is_refused(tmp_path, lock_holder):
    lock_holder(tmp_path)
    result = subprocess.run([sys.executable, "-m", "pruning_utils.report", "--profile", "smoke", "--run-dir",
                             str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and "is in use by another process" in result.stderr
    assert not (tmp_path / "notebooks").exists() or not any((tmp_path / "notebooks").iterdir())


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


def test_the_appendix_nests_each_notebooks_logs_under_its_title(tmp_path):
    """In the appendix, each notebook is one level-2 heading named after its section, and its own headings
    sit one level below it, so the appendix's outline nests the way the report's does."""
    paths = []
    for stem, title in (("01_a", "1. First"), ("02_b", "2. Second")):
        nb = nbformat.v4.new_notebook()
        log = nbformat.v4.new_code_cell("print('x')", outputs=[nbformat.v4.new_output("stream", text=f"{stem} log\n")])
        steps = nbformat.v4.new_markdown_cell("## Steps of this notebook\n\ntext", metadata={"tags": ["appendix"]})
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n## A part"), log, steps]
        paths.append(tmp_path / f"{stem}.ipynb")
        nbformat.write(nb, paths[-1])
    html = render_html(paths, tmp_path / "report.html", "t").read_text()
    appendix = re.search(r"<h1[^>]*>Appendix: logs and settings<", html).start()  # the heading, not the TOC's link
    for stem, title in (("01_a", "1. First"), ("02_b", "2. Second")):
        assert re.search(rf"<h2[^>]*>{stem}: {re.escape(title)}<", html[appendix:])
        assert html.index(f"{stem} log") > appendix
    assert len(re.findall(r"<h3[^>]*>Steps of this notebook<", html[appendix:])) == 2
    assert not re.search(r"<h2[^>]*>Steps of this notebook<", html)
    assert re.search(r"<h2[^>]*>A part<", html[:appendix])  # the sections themselves keep their levels


def test_sensitivity_notebook_for_one_strategy_writes_only_its_scan(smoke_run, tmp_path):
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
    out = _execute("02_sensitivity", tmp_path / "out.ipynb", strategy="filter", profile="smoke", run_dir=str(fresh),
                   overrides=SMALL)
    assert artifacts() - before - {".lock"} == {"sensitivity_filter.csv", "sensitivity_filter.csv.json"}
    assert "dense: reused" in json.dumps([c.get("outputs") for c in out.cells])  # the committed model, not retrained


def test_bad_parameter_fails_before_any_work(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="valid: fine-grained"):
        _execute("02_sensitivity", tmp_path / "out.ipynb", strategy="channel", profile="smoke",
                 run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(papermill.PapermillExecutionError, match="unknown profile 'fast'"):
        _execute("01_train", tmp_path / "out.ipynb", profile="fast", run_dir=str(tmp_path / "run"))
    with pytest.raises(papermill.PapermillExecutionError, match="unknown profile setting 'finetune_epoch'"):
        _execute("01_train", tmp_path / "out.ipynb", profile="smoke", run_dir=str(tmp_path / "run"),
                 overrides={"finetune_epoch": 2})
    assert not (tmp_path / "run").exists()


def test_threshold_parameter_works_on_a_run_made_with_the_default(smoke_run, tmp_path):
    run_dir, _, before = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    _execute("03_prune_finetune", tmp_path / "out.ipynb", profile="smoke", run_dir=str(copy), threshold=0.6,
             overrides=SMALL)
    after = _records(copy)
    assert after["sparsities.csv"]["inputs"]["threshold"] == 0.6
    assert after["sensitivity_kernel.csv"]["created"] == before["sensitivity_kernel.csv"]["created"]


def test_report_runner_refuses_unknown_parameters_and_reads_settings():
    from pruning_utils.report import check_parameters

    with pytest.raises(ValueError, match="no parameter"):
        check_parameters(ROOT / "notebooks" / "02_sensitivity.ipynb", {"stratgy": "filter"})
    assert parse_settings(["finetune_epochs=2", "threshold=0.6", "precision=fp32"]) == {
        "finetune_epochs": 2, "threshold": 0.6, "precision": "fp32"}
    with pytest.raises(ValueError, match="SETTING=VALUE"):
        parse_settings(["finetune_epochs"])


def _nbval(path):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", str(path)],
                          capture_output=True, text=True, cwd=path.parent)


def test_nbval_fails_when_a_checked_output_changes(tmp_path):
    """The regression mechanism itself: a stored output that no longer matches fails the run."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(
        "# NBVAL_CHECK_OUTPUT\nfrom pruning_utils.model import VGG16, count_parameters\nprint(count_parameters(VGG16()))")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="8391882\n")]
    cell.execution_count = 1  # nbval refuses stored outputs of a cell that never ran
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    good = tmp_path / "good.ipynb"
    nbformat.write(nb, good)
    assert _nbval(good).returncode == 0
    cell.outputs[0]["text"] = "8391883\n"
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, bad)
    result = _nbval(bad)
    assert result.returncode != 0 and "8391883" in result.stdout


def _sanitized(text):
    from nbval.plugin import get_sanitize_patterns

    for regex, replace in get_sanitize_patterns((ROOT / "tests" / "nbval" / "sanitize.cfg").read_text()):
        text = re.sub(regex, replace, text)
    return text


def test_the_nbval_sanitizer_drops_the_numbers_and_keeps_the_tables_structure():
    """The checked cells are compared after tests/nbval/sanitize.cfg: the numbers of the smoke study depend on
    the CPU's kernels (these two tables are the dense summaries an Intel Xeon and an AMD EPYC computed), the rows,
    labels and missing values do not."""
    intel = ("                                                 dense\n"
             "test accuracy, eval mode (%)                      99.7\n"
             "validation accuracy (%)                          100.0\n"
             "parameters                                     231,002\n")
    amd = ("                                                 dense\n"
           "test accuracy, eval mode (%)                      99.3\n"
           "validation accuracy (%)                           99.7\n"
           "parameters                                     231,002\n")
    assert _sanitized(intel) == _sanitized(amd)
    assert _sanitized(amd) != _sanitized(amd.replace("99.3", " NaN"))  # a value gone missing
    assert _sanitized(amd) != _sanitized(amd.replace("validation", "test"))  # another row
    assert _sanitized(amd) != _sanitized(amd + "multiply-adds (M) 5.93\n")  # a row more
    assert _sanitized("conv11    0.5  -1.2e-05") == "conv11NN"  # names keep their digits
    assert _sanitized("<td>99.7</td>") == _sanitized("<td>100.0</td>")  # the HTML of tables too
