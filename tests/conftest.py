"""Shared fixtures: a small generated data set, a briefly trained tiny model, a notebook runner and a
process holding a run's lock."""

import subprocess
import sys
from pathlib import Path

import papermill
import pytest
import torch

from pruning_utils.config import get_profile
from pruning_utils.data import make_synthetic_splits
from pruning_utils.model import VGG16
from pruning_utils.training import train


# `make unit` runs two workers (pytest-xdist), each taking one test file at a time (a file's module fixtures, e.g.
# test_notebooks.py's smoke study, are computed once) in collection order (--no-loadscope-reorder; xdist would
# otherwise start with the files that hold the most tests). The longest files go first, so that the short ones fill
# in beside them instead of leaving one worker idle at the end. (--dist loadgroup would do it per test, but with
# pytest 9.2 it silently stops grouping: pytest-dev/pytest-xdist#1386.)
LONGEST_FIRST = ("test_nbval.py", "test_notebooks.py", "test_across_seeds.py", "test_deployment.py", "test_benchmarks.py",
                 "test_notebook_runner.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def synthetic():
    return make_synthetic_splits(n_train=600, n_val=200, n_test=200, seed=0)


@pytest.fixture(scope="session")
def trained_tiny(synthetic):
    """A width-0.125 VGG trained with the smoke recipe for 3 epochs on generated images (fp32, CPU)."""
    smoke = get_profile("smoke", epochs=3)
    torch.manual_seed(0)
    model = VGG16(width=smoke.width, dropout=smoke.dropout, head_init=smoke.head_init)
    train(model, synthetic.train_x, synthetic.train_y, smoke.train, batch_size=smoke.batch_size,
          precision="fp32", device="cpu", progress=False, seed=0)
    return model.eval()


@pytest.fixture
def lock_holder():
    """Start a process that holds a run directory's lock until the test ends; returns it once locked."""
    holders = []

    def hold(run_dir):
        holder = subprocess.Popen(
            [sys.executable, "-c", "import time\nfrom pruning_utils.runs import run_lock\n"
             f"with run_lock({str(run_dir)!r}):\n    print('locked', flush=True)\n    time.sleep(120)"],
            stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "locked"
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


@pytest.fixture
def execute_notebook():
    """Runs ``notebooks/<name>.ipynb`` through papermill into ``out`` with parameters, as a user would."""
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"

    def execute(name, out, **params):
        return papermill.execute_notebook(str(notebooks / f"{name}.ipynb"), str(out), parameters=params,
                                          cwd=str(notebooks), kernel_name="python3", progress_bar=False)

    return execute
