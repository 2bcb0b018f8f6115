"""First-order Taylor importance of conv weights (Molchanov et al. 2017, 2019).

Removing a weight ``w`` changes the loss by about ``-w * dL/dw`` (first-order Taylor expansion
around the trained weights). :func:`taylor_importance` accumulates ``|w * dL/dw|`` per weight over
the batches of a split (the gradient of each batch's mean cross-entropy, eval mode so BatchNorm
uses its running statistics); the ``Taylor`` criterion of :mod:`pruning_utils.criteria` (given it
as ``context.importance``) sums it over each pruning unit. Unlike a norm, it asks how much the
loss depends on the weights, not how large they are.

The sum of absolute values over batches depends on how the split is cut into batches, so the batch
is part of the criterion: :func:`pruning_utils.experiments.criteria` passes the profile's
``importance_batch_size``, never the evaluation batch, which a CPU probe may choose per machine
(:mod:`pruning_utils.cpu_probe`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .evaluation import autocast, prepare_batch
from .masks import effective_weight
from .model import conv_layers


def taylor_importance(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 1000,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """Per conv layer, ``sum over batches of |w * dL/dw|`` (shape of the weight, fp32, on the CPU).

    ``model`` is left as it was (its gradients are cleared, its mode restored)."""
    if len(x) == 0:
        raise ValueError("cannot estimate importance on an empty split")
    convs = conv_layers(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    weights = {name: effective_weight(conv) for name, conv in convs.items()}
    total = {name: torch.zeros_like(w, dtype=torch.float32, device="cpu") for name, w in weights.items()}
    params = {name: conv.weight_orig if hasattr(conv, "weight_orig") else conv.weight for name, conv in convs.items()}
    try:
        for start in range(0, len(x), batch_size):
            inputs = prepare_batch(x[start : start + batch_size], device)
            targets = y[start : start + batch_size].to(device)
            with autocast(device, precision):
                loss = F.cross_entropy(model(inputs), targets)
            grads = torch.autograd.grad(loss, list(params.values()))
            for (name, w), g in zip(weights.items(), grads):
                total[name] += (w.detach().float() * g.float()).abs().cpu()
    finally:
        model.train(was_training)
    return total
