"""Saving and loading models with their pruning masks, atomically, with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from .artifacts import ArtifactError
from .data.cache import save_atomic  # noqa: F401 (models are saved with it)
from .masks import masked_parameters
from .model import VGG16


def save_model(model: VGG16, path: str | os.PathLike, **meta) -> Path:
    """Save weights, pruning masks, the architecture settings and ``meta``; :func:`load_model` restores them."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    dropout = next((m.p for m in model.modules() if isinstance(m, nn.Dropout)), 0.0)
    save_atomic({"state": state, "width": model.width, "dropout": dropout, "head_init": model.head_init,
                 "masked": masked_parameters(model), "meta": meta}, path)
    return path


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu",
               expect_width: float | None = None) -> tuple[VGG16, dict]:
    """A model saved by :func:`save_model`, with its masks re-attached, in eval mode, and its ``meta``.

    Raises :class:`ArtifactError` naming the file when it cannot be read, is not such a model,
    or (with ``expect_width``) was built at another width.
    """
    path = Path(path)
    advice = "delete it, or rerun with force=True (FORCE=1), to recompute it"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        width, dropout, masked = saved["width"], saved["dropout"], saved["masked"]
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ArtifactError(f"model file {path} cannot be read ({type(error).__name__}: {error}); {advice}") from error
    if expect_width is not None and width != expect_width:
        raise ArtifactError(f"model file {path} holds a width-{width} model, this run expects width {expect_width}; "
                            f"{advice}")
    model = VGG16(width=width, dropout=dropout, head_init=saved.get("head_init", "normal"))
    modules = dict(model.named_modules())
    try:
        for module_name, param in masked:
            prune.identity(modules[module_name], param)
        model.load_state_dict(saved["state"])
    except (KeyError, RuntimeError) as error:
        raise ArtifactError(f"model file {path} does not fit the model it names ({error}); {advice}") from error
    for module_name, param in masked:  # refresh `weight` = weight_orig * weight_mask
        module = modules[module_name]
        setattr(module, param, getattr(module, f"{param}_orig") * getattr(module, f"{param}_mask"))
    return model.to(device).eval(), saved["meta"]
