"""The deployment benchmark's models and runtimes compute the same function; its quick mode runs.

Correctness only: no timing is asserted (timings depend on the machine and its load).
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pruning_utils.compact import compact
from pruning_utils.latency import native_bf16
from pruning_utils.masks import masked_parameters
from pruning_utils.model import count_multiply_adds

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("deployment_benchmark", ROOT / "benchmarks" / "deployment.py")
deployment = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = deployment  # its dataclass looks its module up while the module loads
_spec.loader.exec_module(deployment)

WIDTH = 0.125


@pytest.fixture(scope="module")
def filter_models():
    """Dense width-0.125 model, its Table-1 filter-pruned copy (masks attached) and the compacted model."""
    dense = deployment.dense_model(WIDTH, seed=0)
    masked = deployment.prune_table1(dense, "filter")
    return dense, masked, compact(masked).eval()


def _inputs(n=8, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_table1_sparsities_and_unknown_strategy():
    filters = deployment.table1_sparsities("filter")
    assert list(filters) == [f"conv{i}" for i in range(12)] and filters["conv11"] == 0.9
    with pytest.raises(ValueError, match="'channel'"):
        deployment.table1_sparsities("channel")


def test_batchnorm_statistics_are_calibrated_not_trivial(filter_models):
    dense, _, _ = filter_models
    bn = dense.features.bn0
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert bn.momentum == 0.1 and not dense.training


def test_compacted_model_has_fewer_multiply_adds_and_computes_the_masked_function(filter_models):
    dense, masked, compacted = filter_models
    assert masked_parameters(masked) and not masked_parameters(compacted)
    assert count_multiply_adds(compacted) < count_multiply_adds(masked) == count_multiply_adds(dense)
    x = _inputs()
    with torch.no_grad():
        expected, got = masked.eval()(x), compacted.eval()(x)
    assert expected.abs().max() > 0.1  # logits of a meaningful size, so the tolerance means something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_onnx_export_of_compacted_model_matches_eager_in_onnxruntime(filter_models):
    pytest.importorskip("onnxscript", reason="the deploy extra: pip install -e '.[deploy]'")
    pytest.importorskip("onnxruntime", reason="the deploy extra: pip install -e '.[deploy]'")
    _, _, compacted = filter_models
    session = deployment.ort_session(deployment.export_onnx(compacted), threads=1)
    for batch in (1, 5):  # the export's batch dimension is dynamic
        x = _inputs(batch, seed=batch)
        with torch.no_grad():
            expected = compacted(x)
        got = deployment.make_runner("ort-fp32", compacted, x, onnx_session=session)()
        assert got.shape == (batch, 10)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_runners_refuse_unknown_runtime_and_missing_session(filter_models):
    _, _, compacted = filter_models
    with pytest.raises(ValueError, match="'tensorrt'"):
        deployment.make_runner("tensorrt", compacted, _inputs(1))
    with pytest.raises(ValueError, match="onnx_session"):
        deployment.make_runner("ort-fp32", compacted, _inputs(1))


def test_verdict_text_calls_a_masked_model_within_spread_no_gain():
    assert deployment.verdict_text("fine-grained-masked", 1.1, "within spread").startswith("no gain")


@pytest.mark.slow
def test_quick_mode_runs_end_to_end(tmp_path):
    pytest.importorskip("onnxruntime", reason="the deploy extra: pip install -e '.[deploy]'")
    record = tmp_path / "deployment.json"
    # One thread: `make unit` runs two test workers on 2 cores, and a 2-thread pool beside the other worker spins
    done = subprocess.run([sys.executable, "benchmarks/deployment.py", "--quick", "--threads", "1", "--record",
                           str(record)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("compacted speedup / MAC ratio (width 0.25, batch 8): ")
    assert lines[-2].startswith("best runtime (width 0.25, batch 8): ")
    data = json.loads(record.read_text())
    assert data["threads"] == 1 and data["torch"] == torch.__version__ and data["cpu"]
    runtimes = deployment.default_runtimes(native_bf16())  # the bf16 ones only where this CPU computes bf16
    assert data["settings"]["runtimes"] == runtimes and ("bf16 runtimes left out" in lines[0]) != native_bf16()
    assert len(data["results"]) == 2 * len(deployment.MODELS) * len(runtimes)
    eager = [r for r in data["results"] if r["runtime"] == "eager-fp32"]
    assert all(r["failure"] is None and len(r["rounds_ms"]) == 2 for r in eager)
    for r in data["results"]:  # every runtime that ran computes the eager fp32 logits (bf16 loosely)
        if r["failure"] is None and r["runtime"] != "eager-fp32":
            assert r["max_abs_diff_vs_eager_fp32"] < (0.5 if r["runtime"].endswith("bf16") else 1e-3), r
    compile_rows = [r for r in data["results"] if r["runtime"].startswith("compile-")]
    assert all(r["failure"] is None or r["failure"] in done.stdout for r in compile_rows)
    summary = data["summary"]
    assert summary["mac_ratio"] > 1 and summary["best_runtime"] in lines[-2]
    low, high = summary["speedup_over_mac_ratio_spread"]
    assert low <= summary["speedup_over_mac_ratio"] <= high and f"between {low:.2f} and {high:.2f}" in lines[-2]


def test_default_runtimes_leave_bf16_out_where_it_is_emulated():
    assert deployment.default_runtimes(True) == list(deployment.RUNTIMES)
    assert deployment.default_runtimes(False) == ["eager-fp32", "compile-fp32", "ort-fp32"]


def test_compiled_bf16_runner_with_frozen_batchnorm_matches_eager(filter_models):
    _, _, compacted = filter_models
    x = _inputs(3, seed=3)
    with torch.no_grad():
        expected = compacted(x)
    got = deployment.make_runner("compile-cl-bf16", compacted, x)()
    assert got.shape == (3, 10) and got.dtype in (torch.float32, torch.bfloat16)
    torch.testing.assert_close(got.float(), expected, atol=0.1 * expected.abs().max().item(), rtol=0)
    assert all(p.dtype == torch.float32 for p in compacted.parameters())  # the model itself is left alone
