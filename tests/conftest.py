"""Shared fixtures: a small generated data set and a briefly trained tiny model."""

import subprocess
import sys

import pytest
import torch

from pruning_utils.config import get_profile
from pruning_utils.data import make_synthetic_splits
from pruning_utils.model import VGG16
from pruning_utils.training import train


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
