"""The benchmarks obtain the trained model through the run: never random weights."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _scan(tmp_path, *extra):
    command = [sys.executable, "benchmarks/sensitivity_scan.py", "--profile", "smoke", "--run-dir",
               str(tmp_path / "run"), "--images", "100", "--record", str(tmp_path / "record.json"), *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_scan_benchmark_refuses_or_trains_through_the_run_when_no_model_exists(tmp_path):
    refused = _scan(tmp_path, "--no-train")
    assert refused.returncode != 0 and "has no current dense model (missing dense.pt)" in refused.stderr
    assert not (tmp_path / "record.json").exists()
    trained = _scan(tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "training it first" in trained.stdout and "dense: computing" in trained.stdout
    assert "trained (run run, dense key" in trained.stdout and "random" not in trained.stdout
    assert trained.stdout.strip().splitlines()[-1] == "speedup: " + trained.stdout.split("speedup: ")[-1].strip()
    assert trained.stdout.strip().endswith("identical: True")
    again = _scan(tmp_path, "--no-train")  # now the run has its model
    assert again.returncode == 0 and "dense: reused" in again.stdout
