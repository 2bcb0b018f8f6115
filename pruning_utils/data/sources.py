"""Where CIFAR-10 comes from: the three source layouts, resolving a source, and its errors.

A source is one of (see :data:`HOW_TO_PROVIDE`):

* ``batches``: a root directory that holds the official python batches ``cifar-10-batches-py/``,
  read (and, when allowed, downloaded) by torchvision;
* ``folder``: an image-folder tree ``<dir>/train/<class>/*`` and ``<dir>/test/<class>/*``;
* ``archive``: a ``.tar.gz`` / ``.tgz`` archive of such a tree.

:func:`resolve_source` turns the user's ``source`` (argument, else ``$PRUNING_DATA_SOURCE``, else
``<data>/cifar-10-batches-py``) into one ``(kind, location)`` without reading any image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torchvision

SOURCE_ENV_VAR = "PRUNING_DATA_SOURCE"
BATCHES_DIR = "cifar-10-batches-py"  # the official batches' folder, inside a ``batches`` root
BATCH_FILES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6)) + (
    "test_batch", "batches.meta",
)
SPLIT_DIRS: tuple[str, ...] = ("train", "test")  # the top folders of an image-folder tree
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz")

SourceKind = Literal["archive", "folder", "batches"]


class DataSourceError(ValueError):
    """The data source is missing, malformed or not one of the supported layouts."""


HOW_TO_PROVIDE = (
    "Provide CIFAR-10 in one of three ways, as the `source` argument or in the "
    f"{SOURCE_ENV_VAR} environment variable: "
    f"(1) official python batches: a directory that holds `{BATCHES_DIR}/` (torchvision "
    "downloads it there when online with download=True; the literal 'torchvision' means the "
    "parent of cache_dir, `data/` by default); "
    "(2) an image-folder directory with `train/<class>/*.png|*.jpg` and `test/<class>/*`; "
    "(3) a `.tar.gz` or `.tgz` archive of such a tree. "
    "For generated stand-in data use load_splits('synthetic')."
)


def not_found_error(detail: str) -> DataSourceError:
    """``DataSourceError("No CIFAR-10 data found: <detail>. <HOW_TO_PROVIDE>")``."""
    return DataSourceError(f"No CIFAR-10 data found: {detail}. {HOW_TO_PROVIDE}")


def resolve_source(
    source: str | os.PathLike | None, data_root: Path, download: bool
) -> tuple[SourceKind, Path]:
    """(kind, location): an ``archive`` file, an image ``folder``, or a ``batches`` root directory.

    ``source`` None falls back to ``$PRUNING_DATA_SOURCE``, then to ``data_root`` when it holds
    ``cifar-10-batches-py/``. The literal ``"torchvision"`` is the ``batches`` root ``data_root``
    (created by torchvision's download if needed). A path must exist, except an archive name,
    which is refused with its own message when the file is absent. An existing directory is, in
    order: the ``cifar-10-batches-py`` folder itself (its parent is the root), a ``folder`` when it
    holds ``train/`` or ``test/``, a ``batches`` root when it holds ``cifar-10-batches-py/`` or
    ``download`` is true (torchvision downloads into it). Anything else raises DataSourceError;
    nothing is created on disk here.
    """
    if source is None:
        source = os.environ.get(SOURCE_ENV_VAR) or None
    if source is None:
        if (data_root / BATCHES_DIR).is_dir():
            return "batches", data_root
        raise not_found_error(
            f"no source given, {SOURCE_ENV_VAR} is not set and {data_root / BATCHES_DIR} "
            "does not exist"
        )
    if str(source) == "synthetic":
        raise DataSourceError("'synthetic' is not CIFAR-10: use load_splits or make_synthetic_splits")
    if str(source) == "torchvision":
        return "batches", data_root

    path = Path(source).expanduser()
    if path.name.endswith(ARCHIVE_SUFFIXES):
        if not path.is_file():
            raise not_found_error(f"archive {path} does not exist")
        return "archive", path
    if not path.exists():  # a mistyped directory: never download into (and so create) it
        raise not_found_error(
            f"{path} does not exist (a directory to download the batches into must exist already)"
        )
    if not path.is_dir():
        raise DataSourceError(
            f"unsupported source file {path}: expected a directory or a "
            f"{' / '.join(ARCHIVE_SUFFIXES)} archive"
        )
    if path.name == BATCHES_DIR:
        return "batches", path.parent
    if (path / "train").is_dir() or (path / "test").is_dir():
        return "folder", path
    if (path / BATCHES_DIR).is_dir() or download:
        return "batches", path
    raise not_found_error(f"{path} holds neither {BATCHES_DIR}/ nor train/ and test/ folders")


def folder_files(root: Path) -> list[tuple[str, Path]]:
    """Sorted ``(split/class/name, path)`` of the visible files under ``train/`` and ``test/``.

    A file is hidden when any part of its path below ``root`` starts with a dot.
    """
    files = []
    for split in SPLIT_DIRS:
        for path in sorted((root / split).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not any(p.startswith(".") for p in rel.parts):
                files.append((rel.as_posix(), path))
    return files


def torchvision_cifar(root: Path, *, train: bool, download: bool) -> torchvision.datasets.CIFAR10:
    """torchvision's CIFAR10 over ``root/cifar-10-batches-py`` (downloaded there if ``download``).

    Any failure (no network, md5 mismatch, missing files) becomes a DataSourceError.
    """
    import torchvision

    try:
        return torchvision.datasets.CIFAR10(str(root), train=train, download=download)
    except Exception as exc:  # download errors (URLError, OSError) and md5 failures (RuntimeError)
        raise not_found_error(f"torchvision could not read {root / BATCHES_DIR}: {exc}") from exc
