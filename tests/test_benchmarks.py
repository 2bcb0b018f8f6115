"""The benchmarks obtain the trained model through the run: never random weights."""

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_training_time_breakdown_accounts_for_the_whole_step():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    import train_throughput
    from pruning_utils.model import VGG16

    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (16,))
    seconds = train_throughput.time_breakdown(VGG16(width=0.0625), x, y, batch_size=8, steps=2, precision="fp32")
    assert set(seconds) == {*train_throughput.OP_GROUPS, "other", "total"}
    assert all(v >= 0 for v in seconds.values())
    assert seconds["total"] == pytest.approx(sum(v for k, v in seconds.items() if k != "total"))
    assert seconds["convolutions"] > 0 and seconds["BatchNorm"] > 0 and seconds["max-pool"] > 0
    assert seconds["convolutions"] > seconds["max-pool"]  # 12 convolutions (forward, backward) against 4 pools
