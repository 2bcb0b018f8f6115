"""The content-keyed tensor cache: one ``<cache_dir>/cifar10-<key16>.pt`` per decoded source.

``key16`` is the first 16 hex digits of the source's sha256 (see :mod:`.keys`). A file holds the
decoded tensors plus ``format`` (this module's cache format), the full ``source_key`` and
``classes``; it is trusted only when its bytes pass the CRC32 checks that ``torch.save`` writes
(:func:`check_crc`) and both ``format`` and ``source_key`` match, and is written atomically, so an
interrupted write never leaves a partial file under the cache name.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import torch

from .splits import CLASSES


_CACHE_FORMAT = 1  # bump when the cached content or the decoding changes


def write_atomic(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it over ``path``: an interrupted
    write never leaves a partial file under ``path``'s name (on an error the temporary file is removed
    and the error propagates)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_atomic(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (:func:`write_atomic`)."""
    write_atomic(Path(path), lambda tmp: torch.save(obj, tmp))


def cache_file(cache_dir: Path, key: str) -> Path:
    """``cache_dir / f"cifar10-{key[:16]}.pt"``: where the decode of the source ``key`` lives."""
    return cache_dir / f"cifar10-{key[:16]}.pt"


def check_crc(path: Path) -> None:
    """ValueError naming the first entry of the ``torch.save`` file ``path`` (a zip archive) whose bytes
    fail the CRC32 written beside them: ``torch.load`` does not check it, so a flipped bit in a tensor
    would load as another value."""
    with zipfile.ZipFile(path) as archive:
        damaged = archive.testzip()
    if damaged is not None:
        raise ValueError(f"{damaged} fails its CRC32 check: the file is damaged")


def read_cache(cache_dir: Path, key: str) -> dict | None:
    """The cached decode for ``key``, or None when absent, unreadable or damaged (then it is rebuilt).

    An unreadable or damaged file warns (UserWarning, attributed to the caller of the caller); a file
    from another cache format or for another key with the same 16-digit prefix is ignored silently.
    """
    path = cache_file(cache_dir, key)
    if not path.is_file():
        return None
    try:
        check_crc(path)
        cached = torch.load(path, weights_only=True)
    except Exception as exc:  # a damaged cache file is rebuilt, never trusted
        warnings.warn(f"ignoring unreadable cache file {path}: {exc}", stacklevel=3)
        return None
    if not isinstance(cached, dict) or (cached.get("format"), cached.get("source_key")) != (
        _CACHE_FORMAT, key
    ):
        return None  # written by another version of this module
    return cached


def write_cache(cache_dir: Path, key: str, decoded: dict) -> dict:
    """Save ``decoded`` with its key, atomically (:func:`save_atomic`; ``cache_dir`` is created if
    needed) and return the record as saved."""
    record = {**decoded, "format": _CACHE_FORMAT, "source_key": key, "classes": list(CLASSES)}
    save_atomic(record, cache_file(cache_dir, key))
    return record
