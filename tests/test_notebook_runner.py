"""The notebooks and their report runner without a computed study: the parameters cells, bad
parameters, a report killed mid-training or started into a busy run, the report's appendix, and
the nbval regression mechanism itself."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from pruning_utils.report import (MULTI_SEED_NOTEBOOKS, NOTEBOOKS, available_notebooks, changed_after,
                                  check_parameters, parse_settings, render_html, shown_results)

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_has_one_parameters_cell_with_the_common_parameters():
    for name in available_notebooks():
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        params = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
        assert {"profile", "run_dir", "seed", "data_source", "force", "compute", "overrides"} <= set(params), name
    study = ("01_train", "02_sensitivity", "03_prune_finetune", "04_weight_dists", "05_activations", "06_beyond")
    assert available_notebooks() == study + MULTI_SEED_NOTEBOOKS == NOTEBOOKS


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


def test_shown_results_change_only_with_a_key_an_untimed_content_or_a_lost_record(tmp_path):
    """What makes the report run a notebook again: a result it could show that changed after it ran."""
    records = tmp_path / "provenance"
    records.mkdir()

    def write(artifact, key="k1", sha="a" * 64):
        (records / f"{artifact}.json").write_text(json.dumps({"artifact": artifact, "key": key, "sha256": sha}))

    for artifact in ("finetuned_kernel.pt", "finetune_history_kernel.csv", "results.csv", "latency.csv"):
        write(artifact)
    shown = shown_results(tmp_path, "03_prune_finetune")
    assert set(shown) == {"finetuned_kernel.pt.json", "finetune_history_kernel.csv.json", "results.csv.json"}
    assert set(shown_results(tmp_path, "06_beyond")) == set(shown) | {"latency.csv.json"}
    write("finetune_history_kernel.csv", sha="b" * 64)  # timed: its bytes differ on every run
    write("latency.csv", key="k2")  # made by a later notebook: not shown by 03
    (records / "dense.pt.json.old").write_text("{}")  # kept aside by a recomputation: not a record
    write("dense.pt")  # a new record: nothing that was shown changed
    assert changed_after(shown, shown_results(tmp_path, "03_prune_finetune")) == []
    write("finetuned_kernel.pt", sha="c" * 64)  # came out different
    write("finetune_history_kernel.csv", key="k2")
    (records / "results.csv.json").unlink()  # dropped
    assert changed_after(shown, shown_results(tmp_path, "03_prune_finetune")) == [
        "finetune_history_kernel.csv.json", "finetuned_kernel.pt.json", "results.csv.json"]
    (records / "finetuned_kernel.pt.json").write_text("{not json")
    assert shown_results(tmp_path, "03_prune_finetune")["finetuned_kernel.pt.json"][0] == "unreadable or unknown"


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
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "dense: computing (missing dense.pt)" in again.stdout and "dense epoch 4/4" in again.stdout
    assert (run_dir / "dense.pt").exists() and (run_dir / "notebooks" / "01_train.ipynb").exists()


def test_a_second_report_into_a_busy_run_directory_is_refused(tmp_path, lock_holder):
    lock_holder(tmp_path)
    result = subprocess.run([sys.executable, "-m", "pruning_utils.report", "--profile", "smoke", "--run-dir",
                             str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "is in use by another process" in result.stderr
    assert not (tmp_path / "notebooks").exists() or not any((tmp_path / "notebooks").iterdir())


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


def test_bad_parameter_fails_before_any_work(tmp_path, execute_notebook):
    with pytest.raises(papermill.PapermillExecutionError, match="valid: fine-grained"):
        execute_notebook("02_sensitivity", tmp_path / "out.ipynb", strategy="channel", profile="smoke",
                 run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(papermill.PapermillExecutionError, match="unknown profile 'fast'"):
        execute_notebook("01_train", tmp_path / "out.ipynb", profile="fast", run_dir=str(tmp_path / "run"))
    with pytest.raises(papermill.PapermillExecutionError, match="unknown profile setting 'finetune_epoch'"):
        execute_notebook("01_train", tmp_path / "out.ipynb", profile="smoke", run_dir=str(tmp_path / "run"),
                 overrides={"finetune_epoch": 2})
    with pytest.raises(papermill.PapermillExecutionError, match=r"allocations .*'best'"):
        execute_notebook("06_beyond", tmp_path / "out.ipynb", profile="smoke", run_dir=str(tmp_path / "run"),
                         allocations=["uniform", "best"])
    assert not (tmp_path / "run").exists()


def test_report_runner_refuses_unknown_parameters_and_reads_settings():
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


def _checkout_copy(tmp_path):
    """Another checkout of the project: this package and a one-cell notebook 01_train that records which
    pruning_utils its kernel imports."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(ROOT / "pruning_utils", other / "pruning_utils", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", other)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("import pathlib, pruning_utils\n"
                                          "pathlib.Path('imported.txt').write_text(pruning_utils.__file__)")]
    (other / "notebooks").mkdir()
    nbformat.write(nb, other / "notebooks" / "01_train.ipynb")
    return other


def test_the_reports_kernels_import_the_package_of_the_checkout_it_runs_in(tmp_path):
    """Two checkouts sharing one virtualenv, whose editable install points at this one: a report started in the
    other checkout imports the other's package (its working directory comes first on sys.path), and so must its
    notebooks' kernels, which start in notebooks/ where only the virtualenv's install would find a package."""
    other = _checkout_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = ("from pathlib import Path\nimport pruning_utils\nfrom pruning_utils.report import run_notebooks\n"
              "print(pruning_utils.__file__)\nrun_notebooks(Path('run').resolve(), {}, ('01_train',), stream=False)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=other, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0] == str(other / "pruning_utils" / "__init__.py")  # the report's own package
    assert (other / "notebooks" / "imported.txt").read_text() == str(other / "pruning_utils" / "__init__.py")
    assert (other / "run" / "notebooks" / "01_train.ipynb").exists() and not (ROOT / "run").exists()


def test_a_report_that_imports_another_checkouts_package_is_refused(tmp_path):
    """Started from the other checkout's notebooks/, python -m finds only the virtualenv's package (this one)."""
    other = _checkout_copy(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pruning_utils.report", "--profile", "smoke", "--run-dir",
                           str(tmp_path / "run")], capture_output=True, text=True, cwd=other / "notebooks", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: this is the checkout {other}, but Python imports pruning_utils from {ROOT / 'pruning_utils'}" in (
        done.stderr)
    assert not (tmp_path / "run").exists()


def test_a_report_into_a_run_directory_that_cannot_be_written_is_refused_with_the_way_out(tmp_path):
    (tmp_path / "file").write_text("")
    run_dir = tmp_path / "file" / "run"
    done = subprocess.run([sys.executable, "-m", "pruning_utils.report", "--profile", "smoke", "--run-dir",
                           str(run_dir), "--seeds", "0 1"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: run directory {run_dir} cannot be written" in done.stderr and "another run directory" in done.stderr
