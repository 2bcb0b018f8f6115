"""The committed cpu run (``data/runs/cpu``) is current: its records match their files, and the
user's command ``papermill 02_sensitivity.ipynb out.ipynb -p strategy filter`` runs on it right
after cloning without training (the dense model is committed and its key matches the code)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pruning_utils.artifacts import Store, spec_for, step_key
from pruning_utils.runs import SHARED_ARCHIVE, open_run, resolve_path
from pruning_utils.steps import DENSE_FILES, dense_inputs

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "data" / "runs" / "cpu"
needs_archive = pytest.mark.skipif(not resolve_path(SHARED_ARCHIVE).is_file(),
                                   reason=f"the CIFAR-10 JPEG copy {SHARED_ARCHIVE} is not beside this checkout")


def test_every_committed_artifact_matches_its_record():
    tracked = subprocess.run(["git", "ls-files", "data/runs/cpu"], capture_output=True, text=True, cwd=ROOT)
    paths = [Path(p) for p in tracked.stdout.split()]
    run_dirs = {Path("data/runs/cpu")} | {p.parent for p in paths if p.parent.name.startswith("seed-")}
    for run_dir in sorted(run_dirs):  # the study's run and every other seed's run inside it
        store = Store(ROOT / run_dir, {})
        records = store.records()
        artifacts = {p.name for p in paths if p.parent == run_dir} - {"run.json", "report.html", "study.json"}
        assert "dense.pt" in artifacts and "sensitivity_filter.csv" in artifacts, run_dir
        for name in artifacts:
            spec_for(name)  # registered
            assert store.status([name], records[name]["key"], records[name]["inputs"]) == "fresh", (run_dir, name)


@needs_archive
def test_the_committed_dense_model_is_current_for_this_code():
    run = open_run("cpu", COMMITTED, progress=False)
    inputs = dense_inputs(run)
    assert run.store.status(DENSE_FILES, step_key("dense", inputs), inputs) == "fresh"


@needs_archive
def test_the_users_sensitivity_command_runs_without_training(tmp_path):
    run_dir = tmp_path / "cpu"
    shutil.copytree(COMMITTED, run_dir, ignore=shutil.ignore_patterns("notebooks", "report.html", ".lock"))
    env = {k: v for k, v in os.environ.items() if k != "PRUNING_DATA_SOURCE"}  # as in a fresh shell
    result = subprocess.run([sys.executable, "-m", "papermill", "02_sensitivity.ipynb", str(tmp_path / "out.ipynb"),
                             "-p", "strategy", "filter", "-p", "run_dir", str(run_dir), "-k", "python3"],
                            cwd=ROOT / "notebooks", env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.dumps(json.loads((tmp_path / "out.ipynb").read_text())["cells"])
    assert "dense: reused" in out and "dense: computing" not in out
    before = {p.name: p.read_bytes() for p in (COMMITTED).iterdir() if p.is_file()}
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}
    assert {n for n in after if after[n] != before.get(n)} <= {"sensitivity_filter.csv"}


@needs_archive
def test_the_committed_main_run_has_a_current_table2():
    """Seed 0's Table 2 was recomputed under the emptied-filter rule, so this code reuses all its rows."""
    from pruning_utils.staleness import CURRENT, stale_table2

    stale = stale_table2(COMMITTED)
    assert set(stale.values()) == {CURRENT}, stale
