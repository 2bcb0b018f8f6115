"""Decoding a source into uint8 tensors, checking its layout and every image on the way.

Each decoder returns ``{"train_x", "train_y", "test_x", "test_y", "image_format"}``: images uint8
``[N, 3, 32, 32]``, labels int64 ``[N]`` (the index in CLASSES), and a readable format
(``"official batches"``, ``"PNG"``, ``"JPEG"``, ``"JPEG+PNG"``...). Image folders and archives list
their images by class in CLASSES order, then by sorted path; the official batches keep
torchvision's order. Anything off (class folders, image size or mode, undecodable bytes, a
corrupt archive) raises DataSourceError naming the file.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from .sources import (
    ARCHIVE_SUFFIXES,
    SPLIT_DIRS,
    DataSourceError,
    SourceKind,
    folder_files,
    torchvision_cifar,
)
from .splits import CLASSES


def decode_source(kind: SourceKind, location: Path, download: bool) -> dict:
    """Decode the source ``(kind, location)`` from :func:`resolve_source` (see the module doc)."""
    if kind == "archive":
        return decode_archive(location)
    if kind == "folder":
        return decode_folder(location)
    if kind == "batches":
        return decode_batches(location, download)
    raise ValueError(f"kind must be 'archive', 'folder' or 'batches', got {kind!r}")


def decode_batches(root: Path, download: bool) -> dict:
    """The official batches under ``root/cifar-10-batches-py``, read by torchvision."""
    out: dict = {"image_format": "official batches"}
    for split in SPLIT_DIRS:
        dataset = torchvision_cifar(root, train=split == "train", download=download)
        if tuple(dataset.classes) != CLASSES:
            raise DataSourceError(
                f"batches.meta lists classes {dataset.classes}, expected {list(CLASSES)}"
            )
        out[f"{split}_x"] = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        out[f"{split}_y"] = torch.tensor(dataset.targets, dtype=torch.int64)
    return out


def decode_folder(root: Path) -> dict:
    """An image-folder tree ``root/{train,test}/<class>/*``; hidden files and folders are skipped."""
    class_dirs = {
        split: {p.name for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith(".")}
        for split in SPLIT_DIRS
        if (root / split).is_dir()
    }
    members = [(name, path.read_bytes) for name, path in folder_files(root)]
    return _decode_members(members, class_dirs, where=str(root))


def decode_archive(path: Path) -> dict:
    """Read the archive in one stream; ``train/``, ``test/`` at the top or in one wrapping folder.

    Hidden entries (a path part starting with a dot, or ``__MACOSX``) are skipped.
    """
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./").strip("/")
                if not name or _hidden(name):
                    continue
                if member.isdir():
                    dirs.add(name)
                elif member.isfile():
                    files[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataSourceError(
            f"cannot read archive {path} (corrupt or truncated?): {type(exc).__name__}: {exc}"
        ) from exc

    tops = {name.split("/")[0] for name in [*files, *dirs]}
    prefix = ""
    if len(tops) == 1 and not tops & set(SPLIT_DIRS):
        prefix = f"{tops.pop()}/"  # one wrapping folder
    dirs = {name.removeprefix(prefix) for name in dirs}
    files = {name.removeprefix(prefix): data for name, data in files.items()}
    class_dirs: dict[str, set[str]] = {}
    for name in [*files, *dirs]:
        parts = name.split("/")
        if parts[0] in SPLIT_DIRS:
            class_dirs.setdefault(parts[0], set())
            if len(parts) >= 3 or (len(parts) == 2 and name in dirs):
                class_dirs[parts[0]].add(parts[1])
    members = [
        (name, lambda data=data: data)
        for name, data in files.items()
        if name.split("/")[0] in SPLIT_DIRS
    ]
    return _decode_members(members, class_dirs, where=str(path))


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def _decode_members(
    members: list[tuple[str, Callable[[], bytes]]], class_dirs: dict[str, set[str]], where: str
) -> dict:
    """Decode ``(split/class/image, read_bytes)`` pairs into uint8 tensors.

    ``class_dirs`` maps each split folder present to its class folders, which must be exactly
    CLASSES. Labels follow CLASSES order; images within a class follow their sorted names.
    """
    for split in SPLIT_DIRS:
        if split not in class_dirs:
            wrapping = " (at the top or in one wrapping folder)" if where.endswith(ARCHIVE_SUFFIXES) else ""
            raise DataSourceError(
                f"{where} has no {split}/ folder: expected train/<class>/* and test/<class>/*{wrapping}"
            )
        missing = sorted(set(CLASSES) - class_dirs[split])
        extra = sorted(class_dirs[split] - set(CLASSES))
        if missing or extra:
            raise DataSourceError(
                f"{where}: {split}/ class folders must be exactly {list(CLASSES)}; "
                f"missing {missing}, unexpected {extra}"
            )
    pixels: dict[tuple[str, str], list[tuple[str, bytes]]] = {
        (split, cls): [] for split in SPLIT_DIRS for cls in CLASSES
    }
    formats: set[str] = set()
    for name, read in sorted(members, key=lambda member: member[0]):
        parts = name.split("/")
        if len(parts) != 3:
            raise DataSourceError(
                f"{where}: unexpected entry {name!r}; expected <split>/<class>/<image>"
            )
        image_bytes, image_format = _decode_image(f"{where}: {name}", read())
        pixels[parts[0], parts[1]].append((name, image_bytes))
        formats.add(image_format)

    out: dict = {"image_format": "+".join(sorted(formats))}
    for split in SPLIT_DIRS:
        buffer, labels = bytearray(), []
        for label, cls in enumerate(CLASSES):
            images = pixels[split, cls]
            if not images:
                raise DataSourceError(f"{where}: {split}/{cls}/ holds no images")
            buffer += b"".join(image_bytes for _, image_bytes in images)
            labels += [label] * len(images)
        hwc = torch.frombuffer(buffer, dtype=torch.uint8).view(len(labels), 32, 32, 3)
        out[f"{split}_x"] = hwc.permute(0, 3, 1, 2).contiguous()
        out[f"{split}_y"] = torch.tensor(labels, dtype=torch.int64)
    return out


def _decode_image(name: str, data: bytes) -> tuple[bytes, str]:
    """Raw HWC RGB bytes and the format of one 32x32 RGB image; anything else is an error."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            mode, size, image_format = image.mode, image.size, image.format
            if mode == "RGB" and size == (32, 32):
                return image.tobytes(), image_format
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataSourceError(f"cannot decode image {name}: {type(exc).__name__}: {exc}") from exc
    raise DataSourceError(
        f"image {name} is mode {mode!r} size {size}; expected mode 'RGB' size (32, 32)"
    )
