"""Training: determinism, exact resume, checkpoints that know which training they belong to."""

import pytest
import torch

from pruning_utils.config import Recipe
from pruning_utils.evaluation import evaluate
from pruning_utils.model import VGG16
from pruning_utils.training import CheckpointError, load_checkpoint, train

RECIPE = Recipe(epochs=3, optimizer="sgd", lr=0.05, schedule="onecycle", weight_decay=5e-4)
HISTORY_COLUMNS = ["epoch", "lr", "loss", "train_acc", "val_acc", "seconds", "images_per_s"]


def _train(synthetic, recipe=RECIPE, seed=7, **kwargs):
    torch.manual_seed(123)  # model init
    model = VGG16(width=0.125, dropout=0.0, head_init="kaiming")
    history = train(model, synthetic.train_x[:300], synthetic.train_y[:300], recipe, batch_size=50,
                    precision="fp32", device="cpu", progress=False, seed=seed, **kwargs)
    return model, history


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Killed(Exception):
    pass


def _kill_after_first_epoch(epoch, record):
    if epoch == 1:
        raise Killed


def test_two_seeded_trainings_give_identical_weights(synthetic):
    (a, ha), (b, hb) = _train(synthetic), _train(synthetic)
    assert _same_weights(a, b)
    assert ha["loss"].tolist() == hb["loss"].tolist()
    assert list(ha.columns) == HISTORY_COLUMNS
    assert len(ha) == 3 and ha["epoch"].tolist() == [1, 2, 3]
    assert ha["val_acc"].isna().all()  # no validation split given


def test_different_seed_gives_different_weights(synthetic):
    a, _ = _train(synthetic)
    b, _ = _train(synthetic, seed=8)
    assert not _same_weights(a, b)


def test_validation_accuracy_is_recorded_per_epoch(synthetic):
    model, history = _train(synthetic, recipe=Recipe(epochs=1, optimizer="adamw", lr=3e-3),
                            val=(synthetic.val_x, synthetic.val_y), eval_batch_size=64)
    assert history.at[0, "val_acc"] == evaluate(model, synthetic.val_x, synthetic.val_y, precision="fp32")


def test_killed_and_resumed_run_equals_uninterrupted_run(synthetic, tmp_path):
    identity = {"seed": 7, "recipe": "sgd onecycle"}
    reference, ref_history = _train(synthetic, checkpoint=tmp_path / "ref.pt", identity=identity)
    with pytest.raises(Killed):
        _train(synthetic, checkpoint=tmp_path / "run.pt", identity=identity, on_epoch_end=_kill_after_first_epoch)
    state = torch.load(tmp_path / "run.pt", weights_only=False)
    assert state["epoch"] == 1 and state["identity"] == identity
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temp file
    resumed, history = _train(synthetic, checkpoint=tmp_path / "run.pt", identity=identity)  # fresh model, resumes
    assert _same_weights(reference, resumed)
    assert history["loss"].tolist() == ref_history["loss"].tolist()
    # a finished run resumes to itself without training
    again, _ = _train(synthetic, checkpoint=tmp_path / "run.pt", identity=identity)
    assert _same_weights(reference, again)


def test_a_checkpoint_of_another_training_is_refused_naming_file_and_field(synthetic, tmp_path):
    path = tmp_path / "ckpt.pt"
    one_epoch = Recipe(epochs=1, optimizer="adamw", lr=1e-3)
    _train(synthetic, recipe=one_epoch, checkpoint=path, identity={"seed": 1})
    with pytest.raises(CheckpointError) as error:
        _train(synthetic, recipe=one_epoch, checkpoint=path, identity={"seed": 0})
    message = str(error.value)
    assert str(path) in message and "seed" in message and "checkpoint 1, this run 0" in message
    assert torch.load(path, weights_only=False)["identity"] == {"seed": 1}  # the refused file is left alone
    # resume=False starts from scratch and overwrites it
    _train(synthetic, recipe=one_epoch, checkpoint=path, identity={"seed": 0}, resume=False)
    assert torch.load(path, weights_only=False)["identity"] == {"seed": 0}


def test_an_unreadable_checkpoint_is_refused_naming_the_file(synthetic, tmp_path):
    path = tmp_path / "ckpt.pt"
    _train(synthetic, recipe=Recipe(epochs=1, optimizer="adamw", lr=1e-3), checkpoint=path, identity={"seed": 7})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match=f"checkpoint {path} cannot be read"):
        _train(synthetic, checkpoint=path, identity={"seed": 7})
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"checkpoint {path} cannot be read"):
        load_checkpoint(path, {"seed": 7}, torch.device("cpu"))
    torch.save({"epoch": 1}, path)  # written before checkpoints carried an identity
    with pytest.raises(CheckpointError, match=f"checkpoint {path} cannot be read"):
        load_checkpoint(path, {"seed": 7}, torch.device("cpu"))


def test_load_checkpoint_compares_identities_as_json(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"identity": {"recipe": {"epochs": 2, "lrs": [0.1, 0.01]}, "width": 0.25}, "epoch": 1}, path)
    state = load_checkpoint(path, {"recipe": {"epochs": 2, "lrs": (0.1, 0.01)}, "width": 0.25}, torch.device("cpu"))
    assert state["epoch"] == 1  # tuples and lists are the same identity once stored
    with pytest.raises(CheckpointError, match="width: checkpoint 0.25, this run 0.5"):
        load_checkpoint(path, {"recipe": {"epochs": 2, "lrs": (0.1, 0.01)}, "width": 0.5}, torch.device("cpu"))
    with pytest.raises(CheckpointError, match="another training"):
        load_checkpoint(path, {}, torch.device("cpu"))


def test_training_learns_the_generated_data(trained_tiny, synthetic):
    acc = evaluate(trained_tiny, synthetic.test_x, synthetic.test_y, precision="fp32")
    assert acc > 0.3  # chance is 0.1


def test_masks_stay_enforced_while_training(synthetic):
    from pruning_utils.masks import layer_masks, prune_model

    torch.manual_seed(0)
    model = VGG16(width=0.125, dropout=0.0, head_init="kaiming")
    prune_model(model, {"conv1": 0.5, "conv6": 0.7}, "filter")
    masks = {k: m.clone() for k, m in layer_masks(model).items()}
    train(model, synthetic.train_x[:100], synthetic.train_y[:100], Recipe(epochs=1, optimizer="adamw", lr=1e-2),
          batch_size=50, precision="fp32", device="cpu", progress=False)
    model(torch.zeros(1, 3, 32, 32))
    for name in ("conv1", "conv6"):
        conv = getattr(model.features, name)
        assert torch.equal(layer_masks(model)[name], masks[name])
        assert torch.all(conv.weight[~masks[name]] == 0)
        assert torch.all(conv.bias[~masks[name].flatten(1).any(1)] == 0)


def test_rewinding_replays_the_end_of_the_schedule_and_distillation_trains(synthetic):
    import torch

    from pruning_utils.config import Recipe
    from pruning_utils.model import VGG16
    from pruning_utils.training import train

    recipe = Recipe(epochs=4, optimizer="sgd", lr=0.1, schedule="onecycle")
    x, y = synthetic.train_x[:200], synthetic.train_y[:200]
    full = train(VGG16(width=0.125), x, y, recipe, batch_size=50, precision="fp32", progress=False)
    tail = train(VGG16(width=0.125), x, y, recipe, batch_size=50, precision="fp32", progress=False, first_epoch=2)
    assert tail["epoch"].tolist() == [3, 4]
    assert tail["lr"].tolist() == pytest.approx(full["lr"].tolist()[2:])  # the same schedule, its last two epochs
    with pytest.raises(ValueError, match="first_epoch"):
        train(VGG16(width=0.125), x, y, recipe, batch_size=50, progress=False, first_epoch=4)
    torch.manual_seed(0)
    teacher = VGG16(width=0.125)
    distilled = train(VGG16(width=0.125), x, y, Recipe(epochs=1, optimizer="adamw", lr=1e-3), batch_size=50,
                      precision="fp32", progress=False, teacher=teacher)
    plain = train(VGG16(width=0.125), x, y, Recipe(epochs=1, optimizer="adamw", lr=1e-3), batch_size=50,
                  precision="fp32", progress=False)
    assert distilled["loss"].iloc[0] != plain["loss"].iloc[0]  # the teacher changes the objective
    assert teacher.training is False
