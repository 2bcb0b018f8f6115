"""The seed's VGG: exact parameter count, multiply-adds, layer names, width multiplier; model files."""

import pytest
import torch
from torch import nn

from pruning_utils.artifacts import ArtifactError
from pruning_utils.masks import masked_parameters, prune_model
from pruning_utils.model import (
    CONV_NAMES,
    VGG16,
    batchnorm_after,
    conv_layers,
    count_multiply_adds,
    count_parameters,
    feature_index,
)
from pruning_utils.model_files import load_model, save_atomic, save_model


def test_full_width_matches_the_original_parameter_count():
    assert count_parameters(VGG16()) == 8_391_882


def test_full_width_multiply_adds_from_flop_counter_and_by_hand():
    model = VGG16()
    # torch.utils.flop_counter counts conv and linear only.
    assert count_multiply_adds(model) == 360_948_352
    # The same number by hand: conv (k*k*C_in*C_out*H*W) plus linear (in*out).
    by_hand = 0
    size = 32
    for i, conv in enumerate(conv_layers(model).values()):
        by_hand += conv.weight.numel() * size * size
        if i % 3 == 2:
            size //= 2
    by_hand += sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert by_hand == 360_948_352
    # torchinfo's 361.32M for the original additionally counts BatchNorm affine and biases;
    # both are "about 361M".
    assert abs(count_multiply_adds(model) / 1e6 - 361.32) < 0.5


def test_architecture_blocks_and_head():
    model = VGG16()
    convs = conv_layers(model)
    assert list(convs) == list(CONV_NAMES) == [f"conv{i}" for i in range(12)]
    assert [c.out_channels for c in convs.values()] == [64] * 3 + [128] * 3 + [256] * 3 + [512] * 3
    for conv in convs.values():
        assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
        assert conv.bias is not None
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(2048, 256), (256, 128), (128, 64), (64, 10)]
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.modules()) == 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_init_is_kaiming_fan_out_for_conv_and_small_normal_for_linear():
    torch.manual_seed(0)
    model = VGG16()
    conv = conv_layers(model)["conv10"]
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)
    fc = model.classifier.fc0
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_width_multiplier_scales_conv_channels():
    model = VGG16(width=0.25)
    assert [c.out_channels for c in conv_layers(model).values()] == [16] * 3 + [32] * 3 + [64] * 3 + [128] * 3
    assert model.classifier.fc0.in_features == 128 * 2 * 2
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="width"):
        VGG16(width=0)
    with pytest.raises(ValueError, match="'xavier'"):
        VGG16(width=0.25, head_init="xavier")


def test_batchnorm_after_and_feature_index():
    model = VGG16(width=0.125)
    bns = batchnorm_after(model)
    assert list(bns) == list(CONV_NAMES) and bns["conv7"] is model.features.bn7
    names = list(model.features._modules)
    assert all(names[feature_index(model, name) + 1] == name.replace("conv", "bn") for name in CONV_NAMES)
    with pytest.raises(KeyError, match="'bn3'"):
        feature_index(model, "bn3")


def test_forward_from_and_features_before_compose_to_forward():
    torch.manual_seed(0)
    model = VGG16(width=0.125).eval()
    x = torch.rand(4, 3, 32, 32)
    for layer in ("conv0", "conv5", "conv11"):
        assert torch.equal(model.forward_from(model.features_before(x, layer), layer), model(x))
    with pytest.raises(KeyError, match="conv0"):
        model.forward_from(x, "conv12")


# --- model files ---------------------------------------------------------------------------------


def test_saved_pruned_model_round_trips_with_its_masks(tmp_path):
    torch.manual_seed(0)
    model = VGG16(width=0.125, dropout=0.0, head_init="kaiming")
    prune_model(model, {"conv2": 0.5, "conv9": 0.7}, "filter")
    prune_model(model, {"conv4": 0.6}, "fine-grained")
    save_model(model, tmp_path / "m.pt", stage="pruned", key="abc")
    assert not [p.name for p in tmp_path.iterdir() if p.name != "m.pt"]  # atomic: no temp file left
    loaded, meta = load_model(tmp_path / "m.pt", expect_width=0.125)
    assert meta == {"stage": "pruned", "key": "abc"}
    assert not loaded.training and loaded.head_init == "kaiming" and loaded.width == 0.125
    assert sorted(masked_parameters(loaded)) == sorted(masked_parameters(model))
    assert torch.equal(loaded.features.conv2.weight, model.features.conv2.weight)  # effective weight refreshed
    assert torch.equal(loaded.features.conv4.weight_mask, model.features.conv4.weight_mask)
    assert hasattr(loaded.features.bn2, "bias_mask")  # BatchNorm masks of removed filters kept
    x = torch.rand(3, 3, 32, 32)
    model.eval()
    assert torch.equal(loaded(x), model(x))


def test_unreadable_or_foreign_model_files_are_named(tmp_path):
    path = tmp_path / "m.pt"
    save_model(VGG16(width=0.125), path)
    with pytest.raises(ArtifactError, match=f"model file {path} holds a width-0.125 model, .*width 0.25"):
        load_model(path, expect_width=0.25)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=f"model file {path} cannot be read"):
        load_model(path)
    save_atomic({"weights": 1}, path)  # a torch file, but not a saved model
    with pytest.raises(ArtifactError, match=f"model file {path} cannot be read"):
        load_model(path)
    saved = {"state": VGG16(width=0.25).state_dict(), "width": 0.125, "dropout": 0.5, "head_init": "normal",
             "masked": [], "meta": {}}
    save_atomic(saved, path)  # the weights of another width under a width-0.125 label
    with pytest.raises(ArtifactError, match=f"model file {path} does not fit"):
        load_model(path)
    with pytest.raises(ArtifactError, match=f"model file {tmp_path / 'missing.pt'} cannot be read"):
        load_model(tmp_path / "missing.pt")
