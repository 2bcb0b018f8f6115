"""The benchmarks obtain the trained model through the run: never random weights.

No wall-clock limit: a loaded 2-core machine runs these several times slower than an idle one. The
work is kept small instead: 20 images, one sampled layer for the sampled configurations, one full run
of the scan benchmark beside one refused at once (its matmul peak takes seconds, not minutes:
:func:`pruning_utils.latency.matmul_peak`).
"""

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _scan(tmp_path, *extra):
    command = [sys.executable, "benchmarks/sensitivity_scan.py", "--profile", "smoke", "--run-dir",
               str(tmp_path / "run"), "--images", "20", "--sample-every", "12", "--record",
               str(tmp_path / "record.json"), *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def test_scan_benchmark_refuses_or_trains_through_the_run_when_no_model_exists(tmp_path):
    from pruning_utils.runs import open_run
    from pruning_utils.steps import dense_model

    refused = _scan(tmp_path, "--no-train")
    assert refused.returncode != 0 and "has no current dense model (missing dense.pt)" in refused.stderr
    assert not (tmp_path / "record.json").exists()
    trained = _scan(tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "training it first" in trained.stdout and "dense: computing" in trained.stdout
    assert "trained (run run, dense key" in trained.stdout and "random" not in trained.stdout
    last = trained.stdout.strip().splitlines()[-1]
    assert last.startswith("speedup: ") and last.endswith("identical: True")
    # what it trained is the run's current dense model, which notebook 01 (and --no-train) reuse: a run that only
    # reads stored results (NotComputed otherwise) finds it under the key the benchmark printed
    _, key = dense_model(open_run("smoke", tmp_path / "run", progress=False, compute=False))
    assert f"dense key {key})" in trained.stdout


def test_training_time_breakdown_finds_each_group_of_operations():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_throughput
    from pruning_utils.model import VGG16

    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (16,))
    seconds = train_throughput.time_breakdown(VGG16(width=0.0625), x, y, batch_size=8, steps=2, precision="fp32")
    assert set(seconds) == {*train_throughput.OP_GROUPS, "other", "total"}
    assert all(v >= 0 for v in seconds.values())
    assert seconds["convolutions"] > 0 and seconds["BatchNorm"] > 0 and seconds["max-pool"] > 0
    assert seconds["convolutions"] > seconds["max-pool"]  # 12 convolutions (forward, backward) against 4 pools
