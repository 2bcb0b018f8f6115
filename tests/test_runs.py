"""Run directories: parameter checks, the run's identity, the lock."""

import json
import time

import pytest
import torch

from pruning_utils.artifacts import ArtifactError
from pruning_utils.runs import RunBusyError, open_run, run_lock


def test_open_run_records_its_identity_and_loads_the_data(tmp_path):
    run = open_run("smoke", tmp_path / "run", seed=0, figures_dir=tmp_path / "figs")
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == {"profile": "smoke", "seed": 0}
    assert run.data.describe()["source"].startswith("synthetic") and run.precision == "fp32"
    assert (tmp_path / "figs").is_dir()
    assert "train 1,000 / validation 300 / test 300" in run.summary()
    assert run.store.context["torch"] == torch.__version__ and run.store.context["cpu"]


def test_bad_parameters_fail_before_any_file_is_written(tmp_path):
    with pytest.raises(ValueError, match="valid profiles: paper, cpu, smoke"):
        open_run("fast", tmp_path / "a")
    with pytest.raises(ValueError, match="seed"):
        open_run("smoke", tmp_path / "b", seed=-1)
    with pytest.raises(ValueError, match="unknown profile setting 'widht'"):
        open_run("smoke", tmp_path / "c", widht=2)
    with pytest.raises(ValueError, match="width must be"):
        open_run("smoke", tmp_path / "d", width=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        open_run("smoke", tmp_path / "e", batch_size=0)
    with pytest.raises(ValueError, match="force"):
        open_run("smoke", tmp_path / "f", force="yes")
    assert not any(tmp_path.iterdir())


def test_a_run_directory_keeps_its_profile_and_seed(tmp_path):
    open_run("smoke", tmp_path / "run", seed=0, figures_dir=tmp_path / "f")
    open_run("smoke", tmp_path / "run", seed=0, figures_dir=tmp_path / "f", finetune_epochs=3)  # settings: keyed
    with pytest.raises(ValueError, match="holds the run"):
        open_run("smoke", tmp_path / "run", seed=1, figures_dir=tmp_path / "f")
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == {"profile": "smoke", "seed": 0}  # unchanged


def test_a_damaged_run_record_is_named_with_the_way_out(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text('{"profile": "smo')
    with pytest.raises(ArtifactError, match=r"run\.json cannot be read.*delete it"):
        open_run("smoke", tmp_path / "run", figures_dir=tmp_path / "f")


def test_the_lock_refuses_a_second_process_and_is_reentrant(tmp_path, lock_holder):
    holder = lock_holder(tmp_path)
    with pytest.raises(RunBusyError, match=rf"{tmp_path} is in use by another process \(pid {holder.pid}"):
        with run_lock(tmp_path):
            pass
    holder.kill()
    holder.wait()
    deadline = time.time() + 10
    while True:  # released with the process
        try:
            with run_lock(tmp_path), run_lock(tmp_path):  # re-entrant within one process
                break
        except RunBusyError:
            assert time.time() < deadline
            time.sleep(0.1)


def test_code_version_of_a_copied_tree_is_the_stated_commit(monkeypatch):
    from pruning_utils.runs import code_version

    monkeypatch.setenv("PRUNING_CODE_VERSION", "abc1234")
    assert code_version() == "abc1234-copy"  # a copy's own .git may name another commit: the launcher's word wins
    monkeypatch.delenv("PRUNING_CODE_VERSION")
    assert code_version() != "abc1234-copy"


def test_a_run_directory_that_cannot_be_written_is_refused_with_the_way_out(tmp_path):
    """A finished run made read-only: the lock, the first thing a computing step takes, names the directory and
    the way out instead of ending in a raw OSError. Skipped where the OS lets this user write there anyway (root
    ignores a directory's mode); the next test needs no permissions."""
    from pruning_utils.runs import RunDirectoryError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("")  # left by the run that made it, and still writable itself
    run_dir.chmod(0o555)
    try:
        try:
            (run_dir / "probe").write_text("")
        except PermissionError:
            pass
        else:
            pytest.skip("this user can write into a read-only directory (root): the OS does not refuse")
        with pytest.raises(RunDirectoryError, match=rf"run directory {run_dir} cannot be written \(Permission denied\)"
                                                    rf".*chmod -R u\+w {run_dir}.*another run directory"):
            with run_lock(run_dir):
                pass
    finally:
        run_dir.chmod(0o755)


def test_a_run_directory_that_cannot_be_made_is_refused_with_the_way_out(tmp_path):
    from pruning_utils.runs import RunDirectoryError

    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirectoryError, match=r"file/run cannot be written \(.*\).*another run directory"):
        with run_lock(tmp_path / "file" / "run"):
            pass


def test_a_kernel_in_another_checkout_is_refused_before_any_work(tmp_path, monkeypatch):
    """Two checkouts sharing one virtualenv: a kernel started in the other checkout's notebooks/ imports the
    package the virtualenv's editable install points at (this one), which would write its results into this
    checkout's data/runs. open_run refuses, naming both and the way out."""
    from pruning_utils.runs import CheckoutMismatchError, check_checkout, project_root, resolve_path

    other = tmp_path / "other"
    (other / "pruning_utils").mkdir(parents=True)
    (other / "notebooks").mkdir()
    (other / "pyproject.toml").write_text("")
    monkeypatch.chdir(other / "notebooks")
    package = project_root() / "pruning_utils"
    with pytest.raises(CheckoutMismatchError, match=rf"checkout {other}, but Python imports pruning_utils from "
                                                    rf"{package}.*PYTHONPATH={other}"):
        open_run("smoke", "runs-of-another-checkout")
    assert not resolve_path("runs-of-another-checkout").exists()
    check_checkout(project_root() / "notebooks")  # this checkout's own kernels
    check_checkout(tmp_path)  # outside any checkout: nothing to check


def test_a_bf16_run_refuses_to_compute_where_bf16_is_emulated_and_says_what_it_costs(tmp_path, monkeypatch):
    from pruning_utils import cpu_probe

    run = open_run("smoke", tmp_path / "run", figures_dir=tmp_path / "f", precision="bf16")
    assert run.precision == "bf16"

    def compute(key):
        run.save_json("dense_metrics.json", {"made": key})

    monkeypatch.delenv(cpu_probe.SLOW_PRECISION_ENV_VAR, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    with pytest.raises(cpu_probe.SlowPrecisionError) as refused:
        run.step("dense", ["dense_metrics.json"], {"a": 1}, compute)
    message = str(refused.value)
    for words in ("dense (missing", "computes in bf16", "GMAC/s in bf16", "x slower", "PRUNING_RUN_DIR=",
                  "PRUNING_SLOW_PRECISION=1", run.store.context["cpu"]):
        assert words in message
    assert not run.path("dense_metrics.json").exists()
    monkeypatch.setenv(cpu_probe.SLOW_PRECISION_ENV_VAR, "1")  # the user's choice: compute anyway
    key = run.step("dense", ["dense_metrics.json"], {"a": 1}, compute)
    assert run.load_json("dense_metrics.json") == {"made": key}
    monkeypatch.delenv(cpu_probe.SLOW_PRECISION_ENV_VAR)
    assert run.step("dense", ["dense_metrics.json"], {"a": 1}, compute) == key  # reusing is never refused
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # a CPU with native bf16
    run.step("dense", ["dense_metrics.json"], {"a": 2}, compute)
    fp32 = open_run("smoke", tmp_path / "fp32", figures_dir=tmp_path / "f")  # the smoke profile computes in fp32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    fp32.step("dense", ["dense_metrics.json"], {"a": 1}, lambda key: fp32.save_json("dense_metrics.json", {}) and None)
    assert fp32.load_json("dense_metrics.json") == {}
