"""The train/validation/test container and the stratified, seeded validation split.

The validation split is carved from the training images at load time: ``val_size / 10`` images
per class, each class's picks drawn with ``torch.randperm`` from one ``torch.Generator`` seeded
with ``seed`` (classes in CLASSES order); the training split keeps the rest, in their order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
IMAGE_SHAPE: tuple[int, int, int] = (3, 32, 32)


@dataclass(frozen=True, eq=False)
class CifarSplits:
    """Train/validation/test images (uint8 ``[N, 3, 32, 32]``) and labels (int64 ``[N]``)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: str  # human-readable: where the images came from
    source_key: str  # sha256 of the source's content (the cache key)

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            _check_images(split, getattr(self, f"{split}_x"), getattr(self, f"{split}_y"))

    def describe(self) -> dict[str, str | int]:
        """Provenance and split sizes, for logs and saved artifacts."""
        return {
            "source": self.source,
            "source_key": self.source_key,
            "train": len(self.train_y),
            "val": len(self.val_y),
            "test": len(self.test_y),
        }


def _check_images(split: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"{split}_x must be uint8 [N, 3, 32, 32], got {x.dtype} {list(x.shape)}")
    if y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise ValueError(
            f"{split}_y must be int64 [{x.shape[0]}] to match {split}_x, got {y.dtype} {list(y.shape)}"
        )


def split_validation(
    decoded: dict, *, val_size: int, seed: int, source: str, source_key: str
) -> CifarSplits:
    """Move ``val_size / 10`` random training images per class (seeded) into the validation split.

    ``decoded`` holds ``train_x``, ``train_y``, ``test_x``, ``test_y`` (a decoded or cached source);
    the test split is passed through. Raises ValueError for a ``val_size`` that is not an int
    ``>= 0``, not a multiple of 10, or would leave a class without training images.
    """
    train_x, train_y = decoded["train_x"], decoded["train_y"]
    val_index = _val_indices(train_y, val_size, seed)
    keep = torch.ones(len(train_y), dtype=torch.bool)
    keep[val_index] = False
    return CifarSplits(
        train_x=train_x[keep], train_y=train_y[keep],
        val_x=train_x[val_index], val_y=train_y[val_index],
        test_x=decoded["test_x"], test_y=decoded["test_y"],
        classes=CLASSES, source=source, source_key=source_key,
    )


def _val_indices(labels: torch.Tensor, val_size: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``val_size / num_classes`` images per class, drawn with ``seed``."""
    num_classes = len(CLASSES)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 0:
        raise ValueError(f"val_size must be an int >= 0, got {val_size!r}")
    if val_size % num_classes:
        raise ValueError(
            f"val_size must be a multiple of {num_classes} (stratified by class), got {val_size}"
        )
    per_class = val_size // num_classes
    counts = torch.bincount(labels, minlength=num_classes)
    if per_class and per_class >= int(counts.min()):
        raise ValueError(
            f"val_size={val_size} takes {per_class} images per class, but the smallest class has "
            f"{int(counts.min())} training images; it must keep at least one"
        )
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values
