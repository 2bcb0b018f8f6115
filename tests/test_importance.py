"""The Taylor criterion: importance against a hand-computed oracle, its aggregation per unit, and
its use through prune_model."""

import pytest
import torch
import torch.nn.functional as F

from pruning_utils.criteria import make_mask, unit_scores
from pruning_utils.importance import taylor_importance
from pruning_utils.masks import prune_model
from pruning_utils.model import CONV_NAMES, VGG16, conv_layers


def test_taylor_importance_is_the_sum_over_batches_of_w_times_grad(synthetic):
    torch.manual_seed(0)
    model = VGG16(width=0.125).eval()
    x, y = synthetic.val_x[:60], synthetic.val_y[:60]
    got = taylor_importance(model, x, y, batch_size=25)
    expected = {name: torch.zeros_like(conv.weight) for name, conv in conv_layers(model).items()}
    for start in range(0, 60, 25):  # the oracle: plain autograd, batch by batch
        model.zero_grad()
        inputs = x[start:start + 25].float() / 255
        F.cross_entropy(model(inputs), y[start:start + 25]).backward()
        for name, conv in conv_layers(model).items():
            expected[name] += (conv.weight * conv.weight.grad).abs().detach()
    model.zero_grad()
    assert set(got) == set(CONV_NAMES)
    for name in CONV_NAMES:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-7)
    assert model.training is False and all(c.weight.grad is None or not c.weight.grad.any()
                                           for c in conv_layers(model).values())


def test_taylor_scores_sum_importance_per_unit_and_need_it():
    w = torch.randn(4, 3, 3, 3)
    imp = torch.rand(4, 3, 3, 3)
    torch.testing.assert_close(unit_scores(w, "filter", "taylor", importance=imp), imp.sum(dim=(1, 2, 3)))
    torch.testing.assert_close(unit_scores(w, "kernel", "taylor", importance=imp), imp.sum(dim=(2, 3)))
    torch.testing.assert_close(unit_scores(w, "fine-grained", "taylor", importance=imp), imp)
    with pytest.raises(ValueError, match="importance"):
        unit_scores(w, "filter", "taylor")
    with pytest.raises(ValueError, match="importance"):
        unit_scores(w, "filter", 2, importance=imp)
    with pytest.raises(ValueError, match="shape"):
        unit_scores(w, "filter", "taylor", importance=imp[:2])
    # the filters with the least importance go, whatever their norm
    imp = torch.tensor([5.0, 0.1, 3.0, 0.2]).view(4, 1, 1, 1).expand(4, 3, 3, 3)
    mask = make_mask(torch.ones(4, 3, 3, 3), 0.5, "filter", norm="taylor", importance=imp)
    assert mask.flatten(1).all(1).tolist() == [True, False, True, False]


def test_prune_model_with_taylor_importance(synthetic):
    torch.manual_seed(0)
    model = VGG16(width=0.125)
    importance = taylor_importance(model, synthetic.val_x[:50], synthetic.val_y[:50], batch_size=50)
    prune_model(model, {"conv3": 0.5}, "filter", norm="taylor", importance=importance)
    kept = conv_layers(model)["conv3"].weight_mask.flatten(1).all(1)
    scores = importance["conv3"].flatten(1).sum(1)
    assert int(kept.sum()) == 8 and scores[kept].min() >= scores[~kept].max()
