"""Weights and activations as distributions: what the histograms of notebooks 04 and 05 are made of."""

from __future__ import annotations

import pandas as pd
import torch

from .data import to_float
from .model import CONV_NAMES, VGG16


@torch.no_grad()
def conv_activations(model: VGG16, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Post-ReLU activation of each conv layer for one uint8 image [3, 32, 32], eval mode, fp32."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        model.features._modules[name.replace("conv", "relu")].register_forward_hook(
            lambda m, i, o, name=name: captured.__setitem__(name, o.detach().float().cpu().clone())
        )
        for name in CONV_NAMES
    ]
    model.eval()
    try:
        device = next(model.parameters()).device
        model(to_float(image.unsqueeze(0)).to(device))
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def distribution_stats(per_model: dict[str, dict[str, torch.Tensor]]) -> pd.DataFrame:
    """Per model: non-zero values over all layers (``non_zero`` of ``total``), their mean |value|
    (``mean_abs``) and standard deviation (``std``), rounded to 4 decimals."""
    rows = []
    for name, tensors in per_model.items():
        values = torch.cat([t.flatten().float() for t in tensors.values()])
        nz = values[values != 0]
        rows.append({"model": name, "non_zero": int(nz.numel()), "total": int(values.numel()),
                     "mean_abs": round(float(nz.abs().mean()), 4) if nz.numel() else 0.0,
                     "std": round(float(nz.std()), 4) if nz.numel() > 1 else 0.0})
    return pd.DataFrame(rows)
