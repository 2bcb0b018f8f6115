"""Faults that once gave silent wrong results (issue 32, item 5), each ending now in a recompute or a clear
error: a dense model retrained under its key with other bytes, an edited point cache, a damaged training
checkpoint or data cache; and the migration of a run written before records named what they read."""

import csv
import io
import json
import re
import shutil
import struct
import zipfile

import pytest
import torch

from pruning_utils import frontier, recovery, steps, training
from pruning_utils.artifacts import ArtifactError, migrate, read_cells
from pruning_utils.data.cache import read_cache, write_cache
from pruning_utils.runs import NotComputed, open_run
from pruning_utils.training import CheckpointError

TINY = {"synthetic_sizes": (400, 100, 100), "epochs": 2, "finetune_epochs": 1, "recalibration_batches": 2}


def _open(run_dir, **overrides):
    return open_run("smoke", run_dir, figures_dir=run_dir / "figures", progress=False, **{**TINY, **overrides})


def _frontier(run):
    """A one-point frontier (no fine-tuning): a point cache, ``points/frontier.csv``, and its table."""
    return frontier.frontier(run, budgets=[0.5], strategies=["filter"], allocations=["uniform"], finetune_epochs=0)


def _status(run):
    return {e["step"]: e["status"] for e in run.events}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A dense model, its filter scan, one Table 2 row and a one-point frontier; tests work on copies."""
    run_dir = tmp_path_factory.mktemp("faults") / "run"
    run = _open(run_dir)
    steps.prune_finetune(run, "filter")
    _frontier(run)
    return run_dir


@pytest.fixture
def run_dir(base_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    return copy


def _nudged(real):
    """``real`` training as another machine (or thread count) might run it: its weights off by a rounding."""
    def elsewhere(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).add_(1e-4)
        return out
    return elsewhere


def test_a_dense_model_retrained_with_other_bytes_under_its_key_recomputes_what_read_the_old_one(run_dir, monkeypatch):
    points = []
    real_row = frontier.point_row
    monkeypatch.setattr(frontier, "point_row", lambda *a, **k: points.append(1) or real_row(*a, **k))
    (run_dir / "provenance" / "dense.pt.json").unlink()  # retrained on the same machine: the same bytes, all reused
    run = _open(run_dir)
    steps.prune_finetune(run, "filter")
    _frontier(run)
    assert _status(run) == {"dense": "computed", "sensitivity (filter)": "reused", "prune_finetune (filter)": "reused",
                            "frontier": "reused"}
    (run_dir / "provenance" / "dense.pt.json").unlink()
    monkeypatch.setattr(steps, "train", _nudged(steps.train))  # retrained elsewhere: other bytes, the same key
    run = _open(run_dir)
    steps.prune_finetune(run, "filter")
    front = _frontier(run)
    computed = {e["step"]: e["why"] for e in run.events if e["status"] == "computed"}
    assert computed == {"dense": "missing dense.pt", **{step: "computed from another dense.pt" for step in (
        "sensitivity (filter)", "prune_finetune (filter)", "frontier")}}
    assert points == [1]  # the frontier's point too
    monkeypatch.undo()
    again = _open(run_dir)
    steps.prune_finetune(again, "filter")
    assert _frontier(again).equals(front) and set(_status(again).values()) == {"reused"}


def _killed_after_one_epoch(real_train):
    def one_epoch(*args, on_epoch_end=None, **kwargs):
        def stop(epoch, record):
            raise KeyboardInterrupt
        return real_train(*args, on_epoch_end=stop, **kwargs)
    return one_epoch


def test_a_finetuning_checkpoint_of_the_old_dense_model_is_not_resumed(run_dir, monkeypatch):
    monkeypatch.setattr(recovery, "train", _killed_after_one_epoch(recovery.train))  # 2 epochs, killed after 1
    with pytest.raises(KeyboardInterrupt):
        steps.prune_finetune(_open(run_dir, finetune_epochs=2), "filter")
    monkeypatch.undo()
    (stale,) = (run_dir / "checkpoints").glob("finetune_filter-*.ckpt")
    (run_dir / "provenance" / "dense.pt.json").unlink()
    monkeypatch.setattr(steps, "train", _nudged(steps.train))  # the dense model retrained elsewhere
    resumed = []
    monkeypatch.setattr(training, "load_checkpoint", lambda *a, **k: resumed.append(a[0]))
    run = _open(run_dir, finetune_epochs=2)
    steps.prune_finetune(run, "filter")
    assert _status(run)["prune_finetune (filter)"] == "computed" and resumed == [] and not stale.exists()


def test_an_edited_point_cache_is_refused_naming_the_file_and_the_way_out(run_dir):
    path = run_dir / "points" / "frontier.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    true_value = rows[0]["acc_recalibrated"]
    rows[0]["acc_recalibrated"] = "99.9"  # one value edited (or damaged) ...
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (run_dir / "frontier.csv").unlink()  # ... and the table made again from the points
    message = rf"point cache {re.escape(str(path))}: the rows of point {rows[0]['point']} were changed .*force=True"
    with pytest.raises(ArtifactError, match=message):
        _frontier(_open(run_dir))
    table = _frontier(_open(run_dir, force=True))  # the way out: the point is recomputed
    assert float(table["acc_recalibrated"].iloc[0]) == float(true_value)
    assert _frontier(_open(run_dir)).equals(table)


def _flip_a_byte(path):
    """Flip one bit in the middle of the largest tensor of the ``torch.save`` file ``path``."""
    with zipfile.ZipFile(path) as archive:
        entry = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[entry.header_offset + 26:entry.header_offset + 30])
    data[entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2] ^= 0x01
    path.write_bytes(data)


def test_a_damaged_checkpoint_is_refused_naming_it_and_the_way_out(base_run, tmp_path, monkeypatch):
    monkeypatch.setattr(steps, "train", _killed_after_one_epoch(steps.train))
    with pytest.raises(KeyboardInterrupt):
        steps.train_dense(_open(tmp_path / "run"))
    monkeypatch.undo()
    (checkpoint,) = (tmp_path / "run" / "checkpoints").glob("dense-*.ckpt")
    _flip_a_byte(checkpoint)
    torch.load(checkpoint, weights_only=False)  # torch.load alone would resume from it
    message = rf"checkpoint {re.escape(str(checkpoint))} cannot be read .*fails its CRC32 check.*force=True"
    with pytest.raises(CheckpointError, match=message):
        steps.train_dense(_open(tmp_path / "run"))
    steps.train_dense(_open(tmp_path / "run", force=True))  # the way out: trained from scratch
    assert (tmp_path / "run" / "dense.pt").read_bytes() == (base_run / "dense.pt").read_bytes()


def test_a_damaged_data_cache_is_rebuilt(tmp_path):
    decoded = {"train_x": torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8), "train_y": torch.arange(20) % 10}
    write_cache(tmp_path, "ab" * 32, decoded)
    assert torch.equal(read_cache(tmp_path, "ab" * 32)["train_x"], decoded["train_x"])
    _flip_a_byte(tmp_path / f"cifar10-{'ab' * 8}.pt")
    with pytest.warns(UserWarning, match="fails its CRC32 check"):
        assert read_cache(tmp_path, "ab" * 32) is None  # so it is decoded again and rewritten


def test_a_run_written_before_records_named_what_they_read_migrates_to_what_this_code_writes(run_dir, monkeypatch):
    before = {p: p.read_bytes() for p in [*(run_dir / "provenance").glob("*.json"), run_dir / "points" / "frontier.csv"]}
    for path in (run_dir / "provenance").glob("*.json"):  # as the committed runs were written
        record = json.loads(path.read_text())
        del record["read"]
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    points = run_dir / "points" / "frontier.csv"
    points.write_text(read_cells(points.read_text()).drop(columns=["_read", "_sha256"]).to_csv(index=False))
    with pytest.raises(NotComputed, match="names no content read .*--migrate"):
        steps.prune_finetune(_open(run_dir, compute=False), "filter")
    assert sorted(migrate(run_dir)) == sorted(before) and migrate(run_dir) == []  # once
    assert {p: p.read_bytes() for p in before} == before
    monkeypatch.setattr(frontier, "point_row", lambda *a, **k: pytest.fail("a point was computed again"))
    run = _open(run_dir)
    steps.prune_finetune(run, "filter")
    _frontier(run)
    assert set(_status(run).values()) == {"reused"}
