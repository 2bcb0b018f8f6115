"""Batch-level training transforms on uint8 image tensors.

:func:`augment_batch` is the seed's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip(0.5)``
applied to a whole uint8 batch, and :func:`to_float` the seed's ``ToTensor`` (``x / 255``, no
normalisation).
"""

from __future__ import annotations

import torch

CROP_PADDING = 4  # pixels of zero padding around each image before the random 32x32 crop


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (``x / 255``, as torchvision's ToTensor)."""
    if x.dtype != torch.uint8:
        raise ValueError(f"to_float expects uint8 images, got dtype {x.dtype}")
    return x.to(torch.float32).div_(255.0)


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``RandomCrop(32, padding=4)`` (zero padding) then ``RandomHorizontalFlip(0.5)``, per image.

    ``x`` is uint8 ``[B, C, H, W]``; each image gets its own crop offset ``(i, j)`` drawn
    uniformly from ``{0..8}^2`` in the zero-padded ``[H+8, W+8]`` image and its own flip
    (probability 0.5). All draws come from ``generator``. Returns float32 ``[B, C, H, W]`` in [0, 1].
    """
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"augment_batch expects uint8 [B, C, H, W], got {x.dtype} {list(x.shape)}")
    b, _, h, w = x.shape
    pad = CROP_PADDING
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator, device=generator.device)
    flips = torch.rand(b, generator=generator, device=generator.device) < 0.5
    offsets, flips = offsets.to(x.device), flips.to(x.device)

    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # [B, H]
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + offsets[:, 1:]  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return to_float(padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]])
