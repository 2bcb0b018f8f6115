"""pruning_utils.data: every source layout, the cache, the validation split, errors, augmentation.

Fixtures are written by the tests into ``tmp_path``: 10 classes x 6 training + 3 test images.
One integration test reads the real archive ``../shared/datasets/cifar10-jpeg.tar.gz`` when present.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import tarfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pruning_utils.data.load
from pruning_utils.data import (
    CLASSES,
    SOURCE_ENV_VAR,
    DataSourceError,
    augment_batch,
    load_cifar10,
    load_splits,
    make_synthetic_splits,
    to_float,
)

N_TRAIN, N_TEST = 6, 3  # images per class in the fixtures
REAL_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _no_env_source(monkeypatch):
    monkeypatch.delenv(SOURCE_ENV_VAR, raising=False)


# ---------------------------------------------------------------------------------------------
# Fixture writers
# ---------------------------------------------------------------------------------------------


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """uint8 [n, 3, 32, 32]: a random colour plus gentle gradients (JPEG keeps these closely)."""
    g = torch.Generator().manual_seed(seed)
    base = 40 + 150 * torch.rand(n, 3, 1, 1, generator=g)
    ramp = torch.linspace(-1, 1, 32)
    slope = 30 * (torch.rand(n, 3, 2, generator=g) - 0.5)
    img = base + slope[..., 0, None, None] * ramp[:, None] + slope[..., 1, None, None] * ramp[None, :]
    return img.round().clamp(1, 255).to(torch.uint8)


def write_tree(root: Path, ext: str = "png", seed: int = 0) -> dict[str, torch.Tensor]:
    """``root/{train,test}/<class>/NNNN.<ext>``; returns the pixels and labels in load order."""
    expected = {}
    for split, per_class in (("train", N_TRAIN), ("test", N_TEST)):
        x = smooth_images(per_class * len(CLASSES), seed + (split == "test"))
        for i, image in enumerate(x):
            path = root / split / CLASSES[i // per_class] / f"{i % per_class:04d}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(image, path)
        expected[f"{split}_x"] = x
        expected[f"{split}_y"] = torch.arange(len(CLASSES)).repeat_interleave(per_class)
    return expected


def save_image(image: torch.Tensor, path: Path) -> None:
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    pil.save(path, quality=95, subsampling=0) if path.suffix == ".jpg" else pil.save(path)


def write_archive(tree: Path, archive: Path, wrapper: str | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(tree / split, arcname=f"{wrapper}/{split}" if wrapper else split)
    return archive


def write_batches(root: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """The official layout ``root/cifar-10-batches-py/`` with random pixels and shuffled labels.

    The official files were pickled by Python 2, so their keys unpickle (latin1) as str; the
    fixture uses str keys ("data", "labels") because torchvision reads ``entry["data"]``.
    """
    g = torch.Generator().manual_seed(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    expected = {}
    for split, per_class in (("train", N_TRAIN), ("test", N_TEST)):
        n = per_class * len(CLASSES)
        x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        y = (torch.arange(n) % len(CLASSES))[torch.randperm(n, generator=g)]
        expected[f"{split}_x"], expected[f"{split}_y"] = x, y
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        for name, index in zip(names, torch.arange(n).chunk(len(names))):
            entry = {"batch_label": name, "data": x[index].reshape(len(index), 3072).numpy(),
                     "labels": y[index].tolist(), "filenames": [f"{i}.png" for i in index.tolist()]}
            (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CLASSES)}))
    return expected


@pytest.fixture
def trust_batches(monkeypatch):
    """torchvision checks the md5 of the official files (data batches in ``_check_integrity``,
    batches.meta in ``_load_meta``), which a written fixture cannot match. Both call the module's
    ``check_integrity``, so patching it (rather than ``CIFAR10._check_integrity``, which would
    leave ``_load_meta`` failing) accepts the fixture; everything else is torchvision's own code."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)


def assert_same_data(splits, expected, exact: bool = True) -> None:
    """With val_size=0, the train and test splits must equal ``expected``."""
    for split in ("train", "test"):
        x, y = getattr(splits, f"{split}_x"), getattr(splits, f"{split}_y")
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert torch.equal(y, expected[f"{split}_y"])
        if exact:
            assert torch.equal(x, expected[f"{split}_x"])
        else:
            diff = (x.int() - expected[f"{split}_x"].int()).abs()
            assert diff.float().mean() < 1.5 and diff.max() <= 12, (diff.float().mean(), diff.max())


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------


def test_png_folder_round_trips_exactly(tmp_path):
    expected = write_tree(tmp_path / "tree", "png")
    splits = load_cifar10(tmp_path / "tree", cache_dir=tmp_path / "cache", val_size=0)
    assert_same_data(splits, expected)
    assert splits.classes == CLASSES
    assert splits.source.startswith("CIFAR-10, PNG copy (tree/")
    assert splits.val_x.shape == (0, 3, 32, 32) and splits.val_y.shape == (0,)


def test_jpeg_folder_round_trips_within_jpeg_error(tmp_path):
    expected = write_tree(tmp_path / "tree", "jpg")
    splits = load_cifar10(str(tmp_path / "tree"), cache_dir=tmp_path / "cache", val_size=0)
    assert_same_data(splits, expected, exact=False)
    assert "JPEG copy" in splits.source


@pytest.mark.parametrize("name, wrapper", [("plain.tar.gz", None), ("wrapped.tgz", "cifar10")])
def test_archive_round_trips_with_or_without_wrapping_folder(tmp_path, name, wrapper):
    expected = write_tree(tmp_path / "tree", "png")
    archive = write_archive(tmp_path / "tree", tmp_path / name, wrapper)
    splits = load_cifar10(archive, cache_dir=tmp_path / "cache", val_size=0)
    assert_same_data(splits, expected)
    key = hashlib.sha256(archive.read_bytes()).hexdigest()  # an archive's key is its bytes' sha256
    assert splits.source == f"CIFAR-10, PNG copy ({name}, sha256 {key[:8]}...)"
    assert splits.source_key == key


def test_official_batches_round_trip_exactly(tmp_path, trust_batches):
    expected = write_batches(tmp_path / "batches")
    for source in (tmp_path / "batches", tmp_path / "batches" / "cifar-10-batches-py"):
        splits = load_cifar10(source, cache_dir=tmp_path / "cache", val_size=0, download=False)
        assert_same_data(splits, expected)
        assert splits.source.startswith("CIFAR-10, official batches (torchvision")


def test_torchvision_literal_and_auto_detect_use_the_parent_of_cache_dir(tmp_path, trust_batches):
    expected = write_batches(tmp_path / "data")
    for source in ("torchvision", None):
        splits = load_cifar10(source, cache_dir=tmp_path / "data" / "cache", val_size=0, download=False)
        assert_same_data(splits, expected)


def test_env_var_is_used_and_the_argument_beats_it(tmp_path, monkeypatch):
    png = write_tree(tmp_path / "png", "png", seed=0)
    other = write_tree(tmp_path / "other", "png", seed=5)
    monkeypatch.setenv(SOURCE_ENV_VAR, str(tmp_path / "png"))
    from_env = load_cifar10(cache_dir=tmp_path / "cache", val_size=0)
    assert_same_data(from_env, png)
    from_argument = load_cifar10(tmp_path / "other", cache_dir=tmp_path / "cache", val_size=0)
    assert_same_data(from_argument, other)
    assert from_argument.source_key != from_env.source_key


def test_load_splits_dispatches_synthetic_from_argument_or_env_var(tmp_path, monkeypatch):
    direct = make_synthetic_splits(50, 20, 10, seed=3)
    via_argument = load_splits("synthetic", seed=3, synthetic_sizes=(50, 20, 10))
    monkeypatch.setenv(SOURCE_ENV_VAR, "synthetic")
    via_env = load_splits(None, seed=3, synthetic_sizes=(50, 20, 10), cache_dir=tmp_path / "cache")
    for splits in (via_argument, via_env):
        assert torch.equal(splits.train_x, direct.train_x) and splits.source == direct.source
    assert not (tmp_path / "cache").exists()
    write_tree(tmp_path / "tree", "png")
    real = load_splits(tmp_path / "tree", cache_dir=tmp_path / "cache", val_size=10)
    assert real.describe()["train"] == 50 and real.describe()["val"] == 10


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    write_tree(tmp_path / "tree", "png")
    archive = write_archive(tmp_path / "tree", tmp_path / "a.tar.gz")
    first = load_cifar10(archive, cache_dir=tmp_path / "cache", val_size=20)
    assert cache_files(tmp_path / "cache") == [f"cifar10-{first.source_key[:16]}.pt"]

    def no_decoding(*args):
        raise AssertionError("decoder called although the cache holds this source")

    # load_cifar10 decodes only through decode_source; images only through PIL
    monkeypatch.setattr(pruning_utils.data.load, "decode_source", no_decoding)
    monkeypatch.setattr(Image, "open", no_decoding)
    again = load_cifar10(archive, cache_dir=tmp_path / "cache", val_size=20)
    for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, field), getattr(again, field))
    assert again.describe() == first.describe()
    # The key is the content: the same bytes under another name are a cache hit too.
    renamed = archive.rename(tmp_path / "renamed.tgz")
    assert load_cifar10(renamed, cache_dir=tmp_path / "cache", val_size=0).source_key == first.source_key


def test_cache_key_changes_with_content_and_no_temp_files_remain(tmp_path):
    expected = write_tree(tmp_path / "tree", "png")
    first = load_cifar10(tmp_path / "tree", cache_dir=tmp_path / "cache", val_size=0)
    changed = expected["train_x"][0].clone()
    changed[0, 0, 0] ^= 1  # one bit of one pixel
    save_image(changed, tmp_path / "tree" / "train" / "airplane" / "0000.png")
    second = load_cifar10(tmp_path / "tree", cache_dir=tmp_path / "cache", val_size=0)
    assert second.source_key != first.source_key
    assert torch.equal(second.train_x[0], changed)
    assert cache_files(tmp_path / "cache") == sorted(
        f"cifar10-{s.source_key[:16]}.pt" for s in (first, second)
    )


def test_failed_cache_write_leaves_no_file(tmp_path, monkeypatch):
    write_tree(tmp_path / "tree", "png")

    def failing_save(obj, f):
        Path(f).write_bytes(b"half a file")  # torch.save is given the temporary file's path
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        load_cifar10(tmp_path / "tree", cache_dir=tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


def test_damaged_cache_file_is_rebuilt(tmp_path):
    expected = write_tree(tmp_path / "tree", "png")
    first = load_cifar10(tmp_path / "tree", cache_dir=tmp_path / "cache", val_size=0)
    cache_file = tmp_path / "cache" / f"cifar10-{first.source_key[:16]}.pt"
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable cache file"):
        again = load_cifar10(tmp_path / "tree", cache_dir=tmp_path / "cache", val_size=0)
    assert_same_data(again, expected)
    assert torch.load(cache_file, weights_only=True)["source_key"] == first.source_key


# ---------------------------------------------------------------------------------------------
# Validation split
# ---------------------------------------------------------------------------------------------


def rows(x: torch.Tensor) -> list[bytes]:
    return [image.numpy().tobytes() for image in x]


def test_val_split_is_stratified_disjoint_and_complete(tmp_path):
    expected = write_tree(tmp_path / "tree", "png")
    splits = load_cifar10(tmp_path / "tree", cache_dir=tmp_path / "cache", val_size=20, seed=0)
    assert splits.describe() | {"source": None, "source_key": None} == {
        "source": None, "source_key": None, "train": 40, "val": 20, "test": 30}
    assert torch.bincount(splits.val_y, minlength=10).tolist() == [2] * 10
    assert torch.bincount(splits.train_y, minlength=10).tolist() == [4] * 10
    train_rows, val_rows = rows(splits.train_x), rows(splits.val_x)
    assert not set(train_rows) & set(val_rows)
    assert sorted(train_rows + val_rows) == sorted(rows(expected["train_x"]))
    # each image keeps its label
    label_of = dict(zip(rows(expected["train_x"]), expected["train_y"].tolist()))
    assert [label_of[r] for r in val_rows] == splits.val_y.tolist()
    assert [label_of[r] for r in train_rows] == splits.train_y.tolist()


def test_val_split_follows_the_seed(tmp_path):
    write_tree(tmp_path / "tree", "png")

    def val(seed):
        splits = load_cifar10(tmp_path / "tree", cache_dir=tmp_path / "cache", val_size=20, seed=seed)
        return splits.val_x

    assert torch.equal(val(0), val(0))
    assert not torch.equal(val(0), val(1))


@pytest.mark.parametrize("val_size, message", [
    (15, "multiple of 10"), (60, "at least one"), (-10, ">= 0"), (20.0, "int"), (True, "int"),
])
def test_bad_val_size_is_refused(tmp_path, val_size, message):
    write_tree(tmp_path / "tree", "png")
    with pytest.raises(ValueError, match=message):
        load_cifar10(tmp_path / "tree", cache_dir=tmp_path / "cache", val_size=val_size)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

HOW_TO = ("cifar-10-batches-py", "torchvision", "train/<class>", ".tar.gz", SOURCE_ENV_VAR)


def test_nothing_found_names_the_three_ways_and_the_env_var(tmp_path):
    (tmp_path / "empty").mkdir()
    attempts = [
        dict(source=None),
        dict(source=tmp_path / "missing.tar.gz"),
        dict(source=tmp_path / "empty", download=False),
        dict(source="torchvision", download=False),
    ]
    for kwargs in attempts:
        with pytest.raises(DataSourceError) as info:
            load_cifar10(cache_dir=tmp_path / "data" / "cache", **kwargs)
        for needle in HOW_TO:
            assert needle in str(info.value), (kwargs, needle)
    assert cache_files(tmp_path / "data" / "cache") == []


@pytest.fixture
def offline(monkeypatch) -> list[Path]:
    """torchvision's download fails as it does without network; the list collects its roots."""
    import torchvision

    attempts = []

    def download(self):
        attempts.append(Path(self.root))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", download)
    return attempts


def test_failed_download_is_a_data_source_error(tmp_path, offline):
    """download=True fetches into an existing directory or, for 'torchvision', the cache's parent."""
    (tmp_path / "empty").mkdir()
    for source in (tmp_path / "empty", "torchvision"):
        with pytest.raises(DataSourceError, match="no network") as info:
            load_cifar10(source, cache_dir=tmp_path / "data" / "cache", download=True)
        assert all(needle in str(info.value) for needle in HOW_TO)
    assert offline == [tmp_path / "empty", tmp_path / "data"]


@pytest.mark.parametrize("via", ["argument", "string", "env var"])
@pytest.mark.parametrize("download", [True, False])
def test_mistyped_directory_is_refused_without_download_or_creation(tmp_path, monkeypatch, offline,
                                                                     via, download):
    missing = tmp_path / "dta" / "cifar10"  # the user meant data/cifar10
    source = {"argument": missing, "string": str(missing), "env var": None}[via]
    if via == "env var":
        monkeypatch.setenv(SOURCE_ENV_VAR, str(missing))
    with pytest.raises(DataSourceError, match="does not exist") as info:
        load_cifar10(source, cache_dir=tmp_path / "data" / "cache", download=download)
    assert str(missing) in str(info.value)
    assert all(needle in str(info.value) for needle in HOW_TO)
    assert offline == []
    assert not (tmp_path / "dta").exists()
    assert cache_files(tmp_path / "data") == []


def _valid_archive_bytes(tmp_path: Path) -> bytes:
    write_tree(tmp_path / "tree", "png")
    return write_archive(tmp_path / "tree", tmp_path / "valid.tar.gz").read_bytes()


@pytest.mark.parametrize("damage", ["random bytes", "first half", "gzip of garbage"])
def test_unreadable_archive_is_a_data_source_error(tmp_path, damage):
    if damage == "random bytes":
        content = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                dtype=torch.uint8).numpy().tobytes()
    elif damage == "first half":
        valid = _valid_archive_bytes(tmp_path)
        content = valid[: len(valid) // 2]
    else:
        content = gzip.compress(b"not a tar file" * 100)
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(DataSourceError, match="broken.tar.gz"):
        load_cifar10(archive, cache_dir=tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


def _remove_class(tree: Path) -> None:
    for path in (tree / "train" / "cat").iterdir():
        path.unlink()
    (tree / "train" / "cat").rmdir()


def _add_class(tree: Path) -> None:
    (tree / "test" / "unicorn").mkdir()
    save_image(smooth_images(1, 9)[0], tree / "test" / "unicorn" / "0000.png")


def _narrow_image(tree: Path) -> None:
    Image.new("RGB", (31, 32), (10, 20, 30)).save(tree / "train" / "dog" / "0003.png")


def _grey_image(tree: Path) -> None:
    Image.new("L", (32, 32), 128).save(tree / "test" / "ship" / "0001.png")


def _not_an_image(tree: Path) -> None:
    (tree / "train" / "frog" / "0002.png").write_bytes(b"these bytes are no PNG")


DEFECTS = {
    "missing class folder": (_remove_class, r"missing \['cat'\]"),
    "extra class folder": (_add_class, r"unexpected \['unicorn'\]"),
    "31x32 image": (_narrow_image, r"train/dog/0003.png is mode 'RGB' size \(31, 32\)"),
    "grayscale image": (_grey_image, r"test/ship/0001.png is mode 'L'"),
    "undecodable image": (_not_an_image, r"cannot decode image .*train/frog/0002.png"),
}


@pytest.mark.parametrize("layout", ["folder", "archive"])
@pytest.mark.parametrize("defect", DEFECTS)
def test_malformed_tree_is_refused_and_nothing_is_cached(tmp_path, layout, defect):
    make_defect, message = DEFECTS[defect]
    write_tree(tmp_path / "tree", "png")
    make_defect(tmp_path / "tree")
    source = tmp_path / "tree"
    if layout == "archive":
        source = write_archive(tmp_path / "tree", tmp_path / "t.tgz")
    with pytest.raises(DataSourceError, match=message):
        load_cifar10(source, cache_dir=tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


def test_missing_split_folder_and_unsupported_file_are_refused(tmp_path):
    write_tree(tmp_path / "tree", "png")
    for path in sorted((tmp_path / "tree" / "test").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (tmp_path / "tree" / "test").rmdir()
    with pytest.raises(DataSourceError, match="no test/ folder"):
        load_cifar10(tmp_path / "tree", cache_dir=tmp_path / "cache")
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(DataSourceError, match=r"unsupported source file .*data.zip"):
        load_cifar10(tmp_path / "data.zip", cache_dir=tmp_path / "cache")
    with pytest.raises(DataSourceError, match="load_splits"):
        load_cifar10("synthetic", cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------
# to_float and augment_batch
# ---------------------------------------------------------------------------------------------


def test_to_float_scales_to_unit_range_and_refuses_floats():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.equal(to_float(x), torch.tensor([0.0, 0.2, 1.0]))
    with pytest.raises(ValueError, match="float32"):
        to_float(x.float())


def reference_candidates(image: torch.Tensor) -> torch.Tensor:
    """All 2 x 81 outputs of RandomCrop(32, padding=4) + optional flip, written per image."""
    padded = torch.zeros(3, 40, 40, dtype=torch.uint8)
    padded[:, 4:36, 4:36] = image
    crops = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
    return torch.stack(crops + [c.flip(-1) for c in crops])  # index = flip * 81 + i * 9 + j


def test_augment_batch_outputs_are_crops_and_flips_drawn_from_the_generator():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (300, 3, 32, 32), generator=g, dtype=torch.uint8)
    out = augment_batch(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1

    drawn = []
    for image, result in zip(x, out):
        candidates = to_float(reference_candidates(image))
        matches = (candidates == result).flatten(1).all(1).nonzero().flatten().tolist()
        assert len(matches) == 1, "output is not one of the 162 crops/flips"
        drawn.append(matches[0])
    flips = [d // 81 for d in drawn]
    rows_, cols_ = {d % 81 // 9 for d in drawn}, {d % 9 for d in drawn}
    assert rows_ == set(range(9)) and cols_ == set(range(9))
    assert 0.35 < sum(flips) / len(flips) < 0.65

    same = augment_batch(x, torch.Generator().manual_seed(1))
    other = augment_batch(x, torch.Generator().manual_seed(2))
    assert torch.equal(out, same) and not torch.equal(out, other)


def test_augment_batch_refuses_wrong_input():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(torch.zeros(2, 3, 32, 32), g)
    with pytest.raises(ValueError, match=r"\[3, 32, 32\]"):
        augment_batch(torch.zeros(3, 32, 32, dtype=torch.uint8), g)


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------


def test_synthetic_splits_are_deterministic_balanced_and_well_formed():
    a = make_synthetic_splits(200, 100, 50, seed=0)
    b = make_synthetic_splits(200, 100, 50, seed=0)
    c = make_synthetic_splits(200, 100, 50, seed=1)
    for split, n in (("train", 200), ("val", 100), ("test", 50)):
        x, y = getattr(a, f"{split}_x"), getattr(a, f"{split}_y")
        assert x.shape == (n, 3, 32, 32) and x.dtype == torch.uint8
        assert y.shape == (n,) and y.dtype == torch.int64
        assert torch.bincount(y, minlength=10).tolist() == [n // 10] * 10
        assert torch.equal(x, getattr(b, f"{split}_x")) and torch.equal(y, getattr(b, f"{split}_y"))
        assert not torch.equal(x, getattr(c, f"{split}_x"))
    assert not torch.equal(a.train_x[:50], a.test_x)  # splits are different draws
    assert int(a.train_x.min()) < 30 and int(a.train_x.max()) > 225  # uses the pixel range
    assert a.source == "synthetic (generated, seed 0)" and a.source_key != c.source_key
    assert a.describe() == {
        "source": a.source, "source_key": a.source_key, "train": 200, "val": 100, "test": 50}
    # one split's size does not change the others
    assert torch.equal(make_synthetic_splits(30, 100, 50, seed=0).val_x, a.val_x)


def test_synthetic_classes_differ_in_orientation_and_colour():
    s = make_synthetic_splits(2000, 0, 0, seed=0)
    x = to_float(s.train_x)
    # gratings of different orientation put their gradient energy along different axes
    dx = (x[..., 1:] - x[..., :-1]).pow(2).mean((1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean((1, 2, 3))
    ratio = torch.stack([(dx / dy)[s.train_y == k].median() for k in range(10)])
    assert ratio.max() / ratio.min() > 5
    # each class has its own colour: no two class-mean colours coincide
    colour = torch.stack([x[s.train_y == k].mean((0, 2, 3)) for k in range(10)])
    assert torch.cdist(colour, colour).add(torch.eye(10)).min() > 0.02


def test_synthetic_refuses_bad_sizes():
    with pytest.raises(ValueError, match="n_val must be an int >= 0, got -1"):
        make_synthetic_splits(10, -1, 10)


# ---------------------------------------------------------------------------------------------
# The real archive
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_cifar10_jpeg_archive(tmp_path):
    if not REAL_ARCHIVE.is_file():
        pytest.skip(f"real CIFAR-10 archive not found at {REAL_ARCHIVE}")
    start = time.perf_counter()
    splits = load_cifar10(REAL_ARCHIVE, cache_dir=tmp_path / "cache", val_size=5000)
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    again = load_cifar10(REAL_ARCHIVE, cache_dir=tmp_path / "cache", val_size=5000)
    reload_s = time.perf_counter() - start
    print(f"\nreal archive: first load (hash + decode + cache write) {decode_s:.1f} s, "
          f"cached reload {reload_s:.2f} s")

    assert splits.describe() | {"source": None} == {
        "source": None, "source_key": "0493b9c94c62a5e8a6b98a28016b4eebed4fa9aac8154143eead5d26fc94fabb",
        "train": 45000, "val": 5000, "test": 10000}
    assert "JPEG copy" in splits.source and "cifar10-jpeg.tar.gz" in splits.source
    assert splits.classes == CLASSES
    assert torch.bincount(splits.val_y).tolist() == [500] * 10
    assert torch.bincount(splits.train_y).tolist() == [4500] * 10
    assert torch.bincount(splits.test_y).tolist() == [1000] * 10
    assert torch.equal(again.val_x, splits.val_x) and torch.equal(again.train_y, splits.train_y)

    # train/airplane/0000.jpg is training image 0: first in train or in val, decoded by PIL alike
    with tarfile.open(REAL_ARCHIVE, "r:gz") as tar:
        first = Image.open(tar.extractfile("train/airplane/0000.jpg"))
        pixels = torch.from_numpy(np.array(first.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(pixels, splits.train_x[0]) or torch.equal(pixels, splits.val_x[0])
