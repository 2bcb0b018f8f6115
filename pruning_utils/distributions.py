"""Weights and activations as distributions: what the histograms of notebooks 04 and 05 are made of."""

from __future__ import annotations

import numpy as np
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


def histograms(per_model: dict[str, dict[str, torch.Tensor]], bins: int = 60) -> list[dict]:
    """Per model and layer, the histogram of the non-zero values, ``bins`` equal bins from the smallest
    to the largest as ``numpy.histogram`` draws them: records ``{"model", "layer", "non_zero", "lo",
    "hi", "counts"}`` in the order given (``lo``/``hi`` None for a layer with no non-zero value). What
    the figures of notebooks 04 and 05 are drawn from (:func:`by_model`, :func:`histogram_edges`), so
    they need no model once these are stored."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    records = []
    for name, tensors in per_model.items():
        for layer, tensor in tensors.items():
            values = tensor.detach().flatten().double().cpu().numpy()
            values = values[values != 0]
            record = {"model": name, "layer": layer, "non_zero": int(len(values)), "lo": None, "hi": None,
                      "counts": []}
            if len(values):
                counts, edges = np.histogram(values, bins=bins)
                record |= {"lo": float(edges[0]), "hi": float(edges[-1]), "counts": counts.astype(int).tolist()}
            records.append(record)
    return records


def by_model(records: list[dict]) -> dict[str, dict[str, dict]]:
    """:func:`histograms`' records as model -> layer -> histogram, in their order."""
    out: dict[str, dict[str, dict]] = {}
    for record in records:
        out.setdefault(record["model"], {})[record["layer"]] = record
    return out


def histogram_edges(hist: dict) -> np.ndarray:
    """The bin edges of one layer's histogram from :func:`histograms` (empty for an empty layer)."""
    if hist["lo"] is None:
        return np.array([])
    return np.linspace(hist["lo"], hist["hi"], len(hist["counts"]) + 1)
