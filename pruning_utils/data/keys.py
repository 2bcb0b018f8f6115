"""Content keys: the sha256 that names a source's cache file, computed from bytes, never names.

* ``archive``: sha256 of the archive file's bytes.
* ``folder``: sha256 over the visible files under ``train/`` and ``test/`` in sorted order, each
  as (8-byte little-endian length, relative path ``split/class/name``) then (length, bytes).
* ``batches``: the same over the seven official files in :data:`BATCH_FILES` order, named by
  their file names.

Renaming or moving a source keeps its key; changing one bit of one image changes it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .sources import (
    BATCH_FILES,
    BATCHES_DIR,
    SourceKind,
    folder_files,
    not_found_error,
    torchvision_cifar,
)


def source_key(kind: SourceKind, location: Path, download: bool) -> str:
    """The hex sha256 of the source ``(kind, location)`` from :func:`resolve_source`.

    For ``batches`` with files missing and ``download`` true, torchvision downloads them first;
    still-missing files raise DataSourceError.
    """
    if kind == "archive":
        return sha256_file(location)
    if kind == "folder":
        return _hash_named_files(folder_files(location))
    if kind == "batches":
        return _sha256_batches(location, download)
    raise ValueError(f"kind must be 'archive', 'folder' or 'batches', got {kind!r}")


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_named_files(files: list[tuple[str, Path]]) -> str:
    """sha256 over (length-prefixed relative path, length-prefixed bytes) in the given order."""
    digest = hashlib.sha256()
    for name, path in files:
        data = path.read_bytes()
        for part in (name.encode(), data):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
    return digest.hexdigest()


def _sha256_batches(root: Path, download: bool) -> str:
    batch_dir = root / BATCHES_DIR
    missing = [name for name in BATCH_FILES if not (batch_dir / name).is_file()]
    if missing and download:
        torchvision_cifar(root, train=True, download=True)
        missing = [name for name in BATCH_FILES if not (batch_dir / name).is_file()]
    if missing:
        raise not_found_error(f"{batch_dir} lacks {', '.join(missing)} (download={download})")
    return _hash_named_files([(name, batch_dir / name) for name in BATCH_FILES])
