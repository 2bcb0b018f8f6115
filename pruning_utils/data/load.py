"""The entry points: resolve the source, key it, read or build its cache, split off validation.

:func:`load_cifar10` runs :func:`resolve_source` -> :func:`source_key` -> :func:`read_cache`
(else :func:`decode_source` then :func:`write_cache`) -> :func:`split_validation`;
:func:`load_splits` also accepts ``"synthetic"`` for :func:`make_synthetic_splits`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .cache import read_cache, write_cache
from .decode import decode_source
from .keys import source_key
from .sources import SOURCE_ENV_VAR, resolve_source
from .splits import CifarSplits, split_validation
from .synthetic import make_synthetic_splits


def load_splits(
    source: str | os.PathLike | None,
    *,
    cache_dir: str | os.PathLike = "data/cache",
    val_size: int = 5000,
    seed: int = 0,
    synthetic_sizes: tuple[int, int, int] = (2000, 500, 500),
) -> CifarSplits:
    """``"synthetic"`` (argument, else env var) gives generated data; anything else CIFAR-10.

    Synthetic data is ``make_synthetic_splits(*synthetic_sizes, seed=seed)`` and touches no
    cache; everything else is ``load_cifar10(source, cache_dir=..., val_size=..., seed=...)``.
    """
    chosen = source if source is not None else os.environ.get(SOURCE_ENV_VAR) or None
    if chosen is not None and str(chosen) == "synthetic":
        return make_synthetic_splits(*synthetic_sizes, seed=seed)
    return load_cifar10(chosen, cache_dir=cache_dir, val_size=val_size, seed=seed)


def load_cifar10(
    source: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike = "data/cache",
    val_size: int = 5000,
    seed: int = 0,
    download: bool = True,
) -> CifarSplits:
    """CIFAR-10 from ``source``, else ``$PRUNING_DATA_SOURCE``, else ``<data>/cifar-10-batches-py``.

    ``<data>`` is the parent of ``cache_dir`` (``data/`` by default). The source is decoded once
    into ``cache_dir``; the validation split (``val_size`` images, ``val_size / 10`` per class,
    picked with ``seed``) is taken from the training images, which keep the rest.
    ``download`` lets torchvision fetch the official batches, only into ``<data>`` (for the
    literal ``"torchvision"``) or into an existing directory; a path that does not exist is
    an error. Raises DataSourceError when no data is found or the data is malformed.
    """
    cache_path = Path(cache_dir)
    kind, location = resolve_source(source, cache_path.parent, download)
    key = source_key(kind, location, download)
    cached = read_cache(cache_path, key)
    if cached is None:
        cached = write_cache(cache_path, key, decode_source(kind, location, download))

    if kind == "batches":
        label = f"CIFAR-10, official batches (torchvision, sha256 {key[:8]}...)"
    else:
        name = location.name + ("/" if kind == "folder" else "")
        label = f"CIFAR-10, {cached['image_format']} copy ({name}, sha256 {key[:8]}...)"
    return split_validation(cached, val_size=val_size, seed=seed, source=label, source_key=key)
