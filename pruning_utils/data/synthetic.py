"""A generated 10-class stand-in for CIFAR-10 (same shapes and dtypes) for tests and smoke runs.

Class k is a Gabor patch (an oriented sinusoidal grating under a wide Gaussian window) with
orientation ``_SYN_ANGLES[k % 5]``, spatial frequency ``_SYN_FREQS[k // 5]`` (cycles per pixel) and
colour ``_SYN_TINTS[k]``, which also tints the background a little. Phase, position, window
width, contrast and background brightness vary per image, plus Gaussian pixel noise.
Measured (seed 0, 2000 training and 500 test images, fp32 on CPU): a width-0.125 VGG with the
smoke recipe (kaiming head, no dropout, 3 epochs of one-cycle AdamW, lr 3e-3) reaches test
accuracy 1.00; magnitude-pruning 50% / 80% of every conv layer's weights (no fine-tuning) gives
0.21 / 0.10, and 90% of conv1 alone 0.13 while 90% of conv11 alone keeps 1.00.
"""

from __future__ import annotations

import hashlib
import math

import torch

from .splits import CLASSES, CifarSplits

_SYNTHETIC_VERSION = 1  # bump when the generator changes (it is part of the synthetic key)
_SYN_ANGLES = tuple(math.pi * i / 5 for i in range(5))
_SYN_FREQS = (0.09, 0.2)
_SYN_TINTS = (
    (1.0, 0.3, 0.3), (0.3, 1.0, 0.3), (0.3, 0.3, 1.0), (1.0, 1.0, 0.3), (1.0, 0.3, 1.0),
    (0.3, 1.0, 1.0), (1.0, 0.65, 0.3), (0.65, 0.3, 1.0), (1.0, 1.0, 1.0), (0.3, 0.65, 0.65),
)


def make_synthetic_splits(
    n_train: int = 2000, n_val: int = 500, n_test: int = 500, seed: int = 0
) -> CifarSplits:
    """A generated 10-class set of 3x32x32 uint8 images (see the module docstring).

    Deterministic in ``seed``; each split draws from its own generator, so sizes do not change
    the other splits. Labels are balanced: each class appears ``n // 10`` or ``n // 10 + 1`` times.
    """
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be an int >= 0, got {n!r}")
    tensors = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        tensors[f"{split}_x"], tensors[f"{split}_y"] = _synthetic_images(n, _derived_seed(seed, split))
    key = hashlib.sha256(
        f"synthetic v{_SYNTHETIC_VERSION} seed={seed} sizes={n_train},{n_val},{n_test}".encode()
    ).hexdigest()
    source = f"synthetic (generated, seed {seed})"
    return CifarSplits(**tensors, classes=CLASSES, source=source, source_key=key)


def _derived_seed(seed: int, split: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{split}".encode()).digest()[:8], "little")


def _synthetic_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % len(CLASSES))[torch.randperm(n, generator=g)]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, 1, 1, generator=g)

    angle = torch.tensor(_SYN_ANGLES)[labels % 5].view(n, 1, 1) + uniform(-0.1, 0.1)
    freq = torch.tensor(_SYN_FREQS)[labels // 5].view(n, 1, 1) * uniform(0.9, 1.1)
    phase, sigma = uniform(0, 2 * math.pi), uniform(14.0, 20.0)  # window width in pixels
    cy, cx = 15.5 + uniform(-3, 3), 15.5 + uniform(-3, 3)  # window centre
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    along = (x - cx) * torch.cos(angle) + (y - cy) * torch.sin(angle)
    window = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    pattern = torch.cos(2 * math.pi * freq * along + phase) * window  # [n, 32, 32] in [-1, 1]

    tint = torch.tensor(_SYN_TINTS)[labels].view(n, 3, 1, 1)
    contrast = uniform(100, 127).view(n, 1, 1, 1)
    background = uniform(60, 110).view(n, 1, 1, 1) + 30 * tint
    noise = 6.0 * torch.randn(n, 3, 32, 32, generator=g)
    images = background + contrast * tint * pattern[:, None] + noise
    return images.round().clamp(0, 255).to(torch.uint8), labels
