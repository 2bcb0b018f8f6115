"""Evaluation: devices and precision, eval-mode accuracy, the original's train-mode accuracy,
BatchNorm recalibration, and copying pruned models."""

import copy

import pytest
import torch

from pruning_utils.data import to_float
from pruning_utils.evaluation import (
    autocast,
    evaluate,
    pick_device,
    predict,
    prepare_batch,
    recalibrate_batchnorm,
    resolve_precision,
    train_mode_accuracy,
)
from pruning_utils.masks import copy_model, prune_model
from pruning_utils.model import VGG16

CPU = torch.device("cpu")


def test_pick_device(monkeypatch):
    assert pick_device("cpu") == CPU and pick_device(CPU) == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda") and pick_device("cpu") == CPU  # asked for: kept
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == CPU


def test_precision_resolution_and_bad_values(monkeypatch):
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    for native, expected in ((True, "bf16"), (False, "fp32")):  # auto: bf16 only where the CPU has it
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        assert resolve_precision("auto", CPU) == expected
    for native, expected in ((True, "bf16"), (False, "fp16")):  # on a GPU, fp16 where bf16 is missing
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda native=native: native)
        assert resolve_precision("auto", torch.device("cuda")) == expected
    with pytest.raises(ValueError, match="'fp8'"):
        resolve_precision("fp8", CPU)
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", CPU)


def test_autocast_contexts():
    a, b = torch.rand(4, 4), torch.rand(4, 4)
    with autocast(CPU, "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast(CPU, "bf16"):  # works on any CPU (emulated where the CPU lacks bf16)
        assert (a @ b).dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32


def test_prepare_batch_scales_uint8_and_keeps_floats():
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    batch = prepare_batch(x, CPU)
    assert batch.dtype == torch.float32 and torch.equal(batch, x.float() / 255)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert prepare_batch(x, CPU, channels_last=False).is_contiguous()
    floats = torch.rand(2, 3, 32, 32)
    assert torch.equal(prepare_batch(floats, CPU), floats)


def test_predict_is_the_eval_mode_argmax_and_restores_mode(trained_tiny, synthetic):
    model = copy.deepcopy(trained_tiny).train()
    x = synthetic.test_x[:50]
    preds = predict(model, x, batch_size=16)
    assert model.training
    with torch.no_grad():
        expected = model.eval()(to_float(x)).argmax(1)
    assert torch.equal(preds, expected)
    assert predict(model, x[:0]).shape == (0,)


def test_evaluate_runs_in_eval_mode_and_restores_mode(trained_tiny, synthetic):
    model = trained_tiny
    model.train()
    a = evaluate(model, synthetic.test_x, synthetic.test_y, precision="fp32", batch_size=37)
    assert model.training  # restored
    b = evaluate(model, synthetic.test_x, synthetic.test_y, precision="fp32", batch_size=200)
    assert a == b  # eval mode: no dropout, no batch statistics, so batch size does not matter
    assert a > 0.3  # chance is 0.1
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, synthetic.test_x[:0], synthetic.test_y[:0])


class _FirstPixelClassifier(torch.nn.Module):
    """Predicts the class written in each image's first pixel (its uint8 value), whatever else it holds."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # evaluation reads the device from the parameters

    def forward(self, x):
        return torch.nn.functional.one_hot((x[:, 0, 0, 0] * 255).round().long(), 10).float()


def test_evaluate_is_the_fraction_of_images_predicted_right():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    y = torch.tensor([3, 1, 4, 0, 5, 9, 0, 0])  # 5 of 8 right
    assert evaluate(_FirstPixelClassifier(), x, y, batch_size=3) == 5 / 8


def test_train_mode_accuracy_uses_batch_statistics_on_a_copy(trained_tiny, synthetic):
    model = copy.deepcopy(trained_tiny).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    x, y = synthetic.test_x, synthetic.test_y
    # one batch: the order does not matter, so the oracle is a train-mode forward of the whole set
    acc = train_mode_accuracy(model, x, y, batch_size=len(x), seed=0, precision="fp32")
    probe = copy.deepcopy(model).train()
    with torch.no_grad():
        oracle = (probe(prepare_batch(x, CPU)).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(oracle, abs=1.01 / len(x))  # summation order may flip a near tie, no more
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is restored
    assert not model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # smaller batches: seeded, so repeatable
    small = train_mode_accuracy(model, x, y, batch_size=50, seed=3, precision="fp32")
    assert small == train_mode_accuracy(model, x, y, batch_size=50, seed=3, precision="fp32")
    assert 0.0 <= small <= 1.0


def test_batchnorm_recalibration_updates_only_running_statistics(trained_tiny, synthetic):
    model = VGG16(width=0.125, dropout=0.0)
    model.load_state_dict(trained_tiny.state_dict())
    prune_model(model, {"conv1": 0.8, "conv4": 0.8}, "filter")
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate_batchnorm(model, synthetic.train_x, num_batches=4, batch_size=50, precision="fp32")
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not model.training  # the mode it had before
    assert all(not m.training for m in model.modules())
    # seeded: the same batches give the same statistics
    twin = copy_model(model)
    recalibrate_batchnorm(model, synthetic.train_x, num_batches=4, batch_size=50, seed=5, precision="fp32")
    recalibrate_batchnorm(twin, synthetic.train_x, num_batches=4, batch_size=50, seed=5, precision="fp32")
    assert torch.equal(model.features.bn5.running_mean, twin.features.bn5.running_mean)


def test_batchnorm_recalibration_is_the_plain_average_over_batches(synthetic):
    bn = torch.nn.BatchNorm2d(3, momentum=0.3)
    model = torch.nn.Sequential(bn).eval()
    seen = []
    bn.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
    recalibrate_batchnorm(model, synthetic.train_x[:60], num_batches=3, batch_size=20, seed=0, precision="fp32")
    assert len(seen) == 3 and all(batch.shape == (20, 3, 32, 32) for batch in seen)
    assert not torch.equal(seen[0], to_float(synthetic.train_x[:20]))  # augmented training batches
    means = torch.stack([b.mean(dim=(0, 2, 3)) for b in seen])
    variances = torch.stack([b.transpose(0, 1).flatten(1).var(dim=1) for b in seen])  # unbiased, as BatchNorm
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, variances.mean(0))
    assert bn.momentum == 0.3 and not bn.training  # restored


def test_copy_model_copies_a_freshly_pruned_model(trained_tiny):
    masked = prune_model(copy.deepcopy(trained_tiny), {"conv0": 0.5}, "filter")
    with pytest.raises(RuntimeError):  # what copy_model works around
        copy.deepcopy(masked)
    twin = copy_model(masked)
    assert torch.equal(twin.features.conv0.weight_mask, masked.features.conv0.weight_mask)
    assert twin.features.conv0.weight_orig is not masked.features.conv0.weight_orig
    assert not masked.features.conv0.weight.is_leaf  # the original's attribute is left as it was
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(twin.eval()(x), masked.eval()(x))
