"""The seed report's VGG-style CNN for 32x32 CIFAR-10 images.

Four blocks of three ``Conv2d(3x3, stride 1, padding 1, bias) -> BatchNorm2d -> ReLU`` followed
by ``MaxPool2d(2)``, with 64/128/256/512 channels, then a classifier
``Linear(2048, 256) -> ReLU -> Dropout(0.5) -> Linear(256, 128) -> ... -> Linear(64, 10)``.
At ``width=1`` this is exactly the original model: 8,391,882 parameters.

Layers are named as in the original: ``features.conv0`` ... ``features.conv11`` (with ``bn<i>``,
``relu<i>`` and ``pool<b>`` beside them), so the conv layers can be addressed by the names the
report uses. ``width`` scales the conv channels only (the classifier's hidden sizes stay
256/128/64); the CPU profiles use it to make the study affordable on two cores. ``head_init``
chooses the classifier's initialisation (see ``HEAD_INITS``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

BLOCK_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)
CONVS_PER_BLOCK = 3
HIDDEN_SIZES: tuple[int, ...] = (256, 128, 64)
NUM_CONV_LAYERS = len(BLOCK_CHANNELS) * CONVS_PER_BLOCK
CONV_NAMES: tuple[str, ...] = tuple(f"conv{i}" for i in range(NUM_CONV_LAYERS))
# "normal": the seed's N(0, 0.01) for every Linear layer. Its four stacked small layers make the
# logits ~1e-4 at the start, which a long Adam run (the paper recipe) overcomes but a short CPU
# schedule does not; "kaiming": He-normal (fan_in) for the Linear layers, used by the CPU profiles.
HEAD_INITS: tuple[str, ...] = ("normal", "kaiming")


def scaled_channels(width: float) -> tuple[int, ...]:
    """Output channels of each block for a width multiplier (at least one channel)."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width!r}")
    return tuple(max(1, round(c * width)) for c in BLOCK_CHANNELS)


class VGG16(nn.Module):
    """The seed's 12-conv VGG for 3x32x32 inputs; see the module docstring."""

    def __init__(
        self, width: float = 1.0, num_classes: int = 10, dropout: float = 0.5, head_init: str = "normal"
    ) -> None:
        super().__init__()
        if head_init not in HEAD_INITS:
            raise ValueError(f"unknown head_init {head_init!r}; valid: {', '.join(HEAD_INITS)}")
        self.width = width
        self.head_init = head_init
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels, index = 3, 0
        for block, out_channels in enumerate(scaled_channels(width)):
            for _ in range(CONVS_PER_BLOCK):
                layers[f"conv{index}"] = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
                layers[f"bn{index}"] = nn.BatchNorm2d(out_channels)
                layers[f"relu{index}"] = nn.ReLU(inplace=True)
                in_channels, index = out_channels, index + 1
            layers[f"pool{block}"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)

        spatial = 32 // 2 ** len(BLOCK_CHANNELS)
        head: OrderedDict[str, nn.Module] = OrderedDict()
        in_features = in_channels * spatial * spatial
        for i, hidden in enumerate(HIDDEN_SIZES):
            head[f"fc{i}"] = nn.Linear(in_features, hidden)
            head[f"relu{i}"] = nn.ReLU(inplace=True)
            head[f"dropout{i}"] = nn.Dropout(dropout)
            in_features = hidden
        head[f"fc{len(HIDDEN_SIZES)}"] = nn.Linear(in_features, num_classes)
        self.classifier = nn.Sequential(head)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear) and self.head_init == "normal":
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))

    def forward_from(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Run the network from conv layer ``layer`` (inclusive) given the tensor that enters it."""
        start = feature_index(self, layer)
        return self.classifier(torch.flatten(self.features[start:](x), 1))

    def features_before(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """The tensor entering conv layer ``layer``: the network's prefix applied to ``x``."""
        return self.features[: feature_index(self, layer)](x)


def feature_index(model: VGG16, layer: str) -> int:
    """Position of conv layer ``layer`` inside ``model.features``; KeyError names valid layers."""
    names = list(model.features._modules)
    if layer not in CONV_NAMES or layer not in names:
        raise KeyError(f"unknown layer {layer!r}; valid layers: {', '.join(CONV_NAMES)}")
    return names.index(layer)


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """The conv layers of ``model`` in forward order, keyed ``conv0`` ... ``conv11``."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return {f"conv{i}": conv for i, conv in enumerate(convs)}


def batchnorm_after(model: VGG16) -> dict[str, nn.BatchNorm2d]:
    """The BatchNorm2d that follows each conv layer, keyed like :func:`conv_layers`."""
    return {name: model.features._modules[name.replace("conv", "bn")] for name in CONV_NAMES}


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (dense count: every element of every parameter)."""
    return sum(p.numel() for p in model.parameters())


def multiply_adds_of(forward) -> int:
    """Multiply-adds that ``forward()`` performs (conv and linear), from ``torch.utils.flop_counter``.

    ``FlopCounterMode`` reports FLOPs as 2 x multiply-adds for matmul and convolution.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        forward()
    return counter.get_total_flops() // 2


def count_multiply_adds(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Multiply-adds of one forward pass of ``model`` (:func:`multiply_adds_of`), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    macs = multiply_adds_of(lambda: model(torch.zeros(input_size, device=device)))
    model.train(was_training)
    return macs
