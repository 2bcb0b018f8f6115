"""Training: determinism, exact resume, eval-mode evaluation, BatchNorm recalibration."""

import pytest
import torch

from pruning_utils.config import Recipe
from pruning_utils.model import VGG16
from pruning_utils.pruners import prune_model
from pruning_utils.train import evaluate, recalibrate_batchnorm, resolve_precision, train

RECIPE = Recipe(epochs=3, optimizer="sgd", lr=0.05, schedule="onecycle", weight_decay=5e-4)


def _train(synthetic, recipe=RECIPE, **kwargs):
    torch.manual_seed(123)  # model init
    model = VGG16(width=0.125, dropout=0.0, head_init="kaiming")
    history = train(model, synthetic.train_x[:300], synthetic.train_y[:300], recipe, batch_size=50,
                    precision="fp32", device="cpu", progress=False, seed=7, **kwargs)
    return model, history


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_two_seeded_trainings_give_identical_weights(synthetic):
    (a, ha), (b, hb) = _train(synthetic), _train(synthetic)
    assert _same_weights(a, b)
    assert ha["loss"].tolist() == hb["loss"].tolist()
    assert list(ha.columns) == ["epoch", "lr", "loss", "train_acc", "val_acc", "seconds", "images_per_s"]
    assert len(ha) == 3


def test_different_seed_gives_different_weights(synthetic):
    a, _ = _train(synthetic)
    torch.manual_seed(123)
    b = VGG16(width=0.125, dropout=0.0, head_init="kaiming")
    train(b, synthetic.train_x[:300], synthetic.train_y[:300], RECIPE, batch_size=50, precision="fp32",
          device="cpu", progress=False, seed=8)
    assert not _same_weights(a, b)


def test_killed_and_resumed_run_equals_uninterrupted_run(synthetic, tmp_path):
    reference, ref_history = _train(synthetic, checkpoint=tmp_path / "ref.pt")

    class Killed(Exception):
        pass

    def kill_after_first_epoch(epoch, record):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        _train(synthetic, checkpoint=tmp_path / "run.pt", on_epoch_end=kill_after_first_epoch)
    assert torch.load(tmp_path / "run.pt", weights_only=False)["epoch"] == 1
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temp file
    resumed, history = _train(synthetic, checkpoint=tmp_path / "run.pt")  # fresh model, resumes
    assert _same_weights(reference, resumed)
    assert history["loss"].tolist() == ref_history["loss"].tolist()
    # a finished run resumes to itself without training
    again, _ = _train(synthetic, checkpoint=tmp_path / "run.pt")
    assert _same_weights(reference, again)


def test_training_learns_the_generated_data(trained_tiny, synthetic):
    acc = evaluate(trained_tiny, synthetic.test_x, synthetic.test_y, precision="fp32")
    assert acc > 0.3  # chance is 0.1


def test_evaluate_runs_in_eval_mode_and_restores_mode(trained_tiny, synthetic):
    model = trained_tiny
    model.train()
    a = evaluate(model, synthetic.test_x, synthetic.test_y, precision="fp32", batch_size=37)
    assert model.training  # restored
    b = evaluate(model, synthetic.test_x, synthetic.test_y, precision="fp32", batch_size=200)
    assert a == b  # eval mode: no dropout, no batch statistics, so batch size does not matter
    model.eval()
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, synthetic.test_x[:0], synthetic.test_y[:0])


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


def test_precision_resolution_and_bad_values():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", cpu)
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", cpu)
