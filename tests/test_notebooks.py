"""The study's notebooks: papermill parameters, bad input, artifacts, the rendered report, and
the nbval regression mechanism. Runs the notebooks once at the smoke profile (generated data)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from pruning_utils.report import NOTEBOOKS, available_notebooks, render_html, run_notebooks

ROOT = Path(__file__).resolve().parents[1]
STUDY = ("01_train", "02_sensitivity", "03_prune_finetune", "04_weight_dists", "05_activations")


def _execute(name, out, **params):
    return papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                                      cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The five notebooks executed at the smoke profile into a temporary run directory."""
    run_dir = tmp_path_factory.mktemp("smoke-run")
    executed = run_notebooks(run_dir, {"profile": "smoke", "run_dir": str(run_dir)}, STUDY, log=lambda m: None)
    return run_dir, executed


def test_every_notebook_has_one_parameters_cell_with_the_common_parameters():
    for name in available_notebooks():
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        params = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
        assert {"profile", "run_dir", "seed", "data_source", "force"} <= set(params), name
    assert available_notebooks()[:5] == STUDY and set(available_notebooks()) <= set(NOTEBOOKS)


def test_committed_notebooks_carry_no_outputs():
    for name in available_notebooks():
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), name


def test_nbval_references_run_the_same_code_as_the_notebooks():
    """tests/nbval holds papermill-executed copies; their code must be the notebooks' code."""
    for name in STUDY:
        source = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        ref = nbformat.read(ROOT / "tests" / "nbval" / f"{name}.ipynb", as_version=4)
        ref_code = [c.source for c in ref.cells if c.cell_type == "code"
                    and "injected-parameters" not in c.metadata.get("tags", [])]
        assert ref_code == [c.source for c in source.cells if c.cell_type == "code"], (
            f"tests/nbval/{name}.ipynb is stale: run `make nbval-refs`")
        assert ref.metadata["papermill"]["parameters"]["profile"] == "smoke"


def test_the_study_writes_every_artifact(smoke_run):
    run_dir, executed = smoke_run
    names = {p.name for p in run_dir.iterdir()}
    expected = {"run.json", "dense.pt", "dense_history.csv", "dense_metrics.json", "layers.csv", "sparsities.csv",
                "results.csv", "filter_outputs.csv", "weight_stats.csv", "activation_stats_0.csv"}
    expected |= {f"{kind}_{s}.{ext}" for s in ("fine-grained", "kernel", "filter")
                 for kind, ext in (("sensitivity", "csv"), ("pruned", "pt"), ("finetuned", "pt"))}
    assert expected <= names
    record = json.loads((run_dir / "run.json").read_text())
    assert record["profile"]["name"] == "smoke" and "synthetic" in record["data"]["source"]
    for path in executed:
        assert not any(o.get("output_type") == "error" for c in nbformat.read(path, 4).cells
                       for o in c.get("outputs", []))


def test_rendered_report_embeds_every_figure_and_has_no_error(smoke_run, tmp_path):
    run_dir, executed = smoke_run
    html = render_html(executed, tmp_path / "report.html", "smoke").read_text()
    figures = sum(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
                  for p in executed for c in nbformat.read(p, 4).cells for o in c.get("outputs", []))
    assert figures >= 20
    assert html.count("data:image/png;base64,") >= figures  # every figure embedded ...
    assert not re.search(r'<img[^>]+src="(?!data:)', html)  # ... and none linked to a file
    assert "Traceback" not in html and "jp-RenderedText" in html
    assert "Contents:" in html and 'href="#1.-The-dense-model"' in html
    assert "study.train_dense" not in html  # code hidden


def test_sensitivity_notebook_for_one_strategy_writes_only_its_scan(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    fresh = tmp_path / "run"
    fresh.mkdir()
    for name in ("run.json", "dense.pt", "dense_metrics.json", "dense_history.csv", "layers.csv"):
        (fresh / name).write_bytes((run_dir / name).read_bytes())
    before = {p.name for p in fresh.iterdir()}
    _execute("02_sensitivity", tmp_path / "out.ipynb", strategy="filter", profile="smoke", run_dir=str(fresh))
    assert {p.name for p in fresh.iterdir()} - before == {"sensitivity_filter.csv"}


def test_bad_parameter_fails_before_any_work(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="valid: fine-grained"):
        _execute("02_sensitivity", tmp_path / "out.ipynb", strategy="channel", profile="smoke",
                 run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(papermill.PapermillExecutionError, match="unknown profile 'fast'"):
        _execute("01_train", tmp_path / "out.ipynb", profile="fast", run_dir=str(tmp_path / "run"))


def test_missing_artifact_names_the_notebook_to_run_first(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="run notebooks/01_train.ipynb first"):
        _execute("02_sensitivity", tmp_path / "out.ipynb", profile="smoke", run_dir=str(tmp_path / "run"))
    with pytest.raises(papermill.PapermillExecutionError, match="run notebooks/02_sensitivity.ipynb first"):
        _execute("03_prune_finetune", tmp_path / "out.ipynb", profile="smoke", run_dir=str(tmp_path / "run"))


def test_report_runner_refuses_unknown_parameters():
    from pruning_utils.report import check_parameters

    with pytest.raises(ValueError, match="no parameter"):
        check_parameters(ROOT / "notebooks" / "02_sensitivity.ipynb", {"stratgy": "filter"})


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
