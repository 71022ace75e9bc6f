"""Architectures of the benchmark recipes (see recipes_bench.py): the two reference examples
rebuilt layer for layer, a small fast CNN and a larger accurate one.

Model names differ from the recipe names ("ref-pytorch" trains "pt-example-net") because models
and recipes share one namespace. All models take [0, 1] pixels; a recipe that needs the
pytorch/examples normalisation gets it as a layer, so `predict` and the web page feed the same
input to every model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mnistlab.models._layers import INITS, Net, check_choice, check_input, init_weights
from mnistlab.models._registry import register_model


class Normalize(nn.Module):
    """(x - mean) / std with fixed constants (pytorch/examples' transforms.Normalize)."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


# --------------------------------------------------------------------------------------------
# pytorch/examples mnist/main.py: Conv32 -> Conv64 -> MaxPool -> Dropout .25 -> FC128 -> Dropout .5


@dataclass(frozen=True)
class PTExampleConfig:
    mean: float = 0.1307  # the examples' transforms.Normalize((0.1307,), (0.3081,))
    std: float = 0.3081
    init: str = "pytorch"  # the example keeps PyTorch's default init
    in_channels: int = 1
    input_size: int = 28

    def __post_init__(self) -> None:
        check_choice(self.init, INITS, "init")
        check_input(self.in_channels, self.input_size, 6)
        if self.std <= 0:
            raise ValueError(f"bad std={self.std}")


@register_model(
    "pt-example-net",
    PTExampleConfig(),
    description="pytorch/examples mnist: Norm -> Conv32 -> Conv64 -> MaxPool -> Drop .25 -> FC128 -> Drop .5 -> FC10",
)
def build_pt_example(cfg: PTExampleConfig) -> nn.Module:
    side = (cfg.input_size - 4) // 2
    net = Net(
        [
            ("norm", Normalize(cfg.mean, cfg.std)),
            ("conv1", nn.Conv2d(cfg.in_channels, 32, 3)),
            ("act1", nn.ReLU()),
            ("conv2", nn.Conv2d(32, 64, 3)),
            ("act2", nn.ReLU()),
            ("pool", nn.MaxPool2d(2)),
            ("drop1", nn.Dropout(0.25)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(64 * side * side, 128)),
            ("act3", nn.ReLU()),
            ("drop2", nn.Dropout(0.5)),
            ("out", nn.Linear(128, 10)),
        ],
        (cfg.in_channels, cfg.input_size, cfg.input_size),
    )
    init_weights(net, cfg.init)
    return net


# --------------------------------------------------------------------------------------------
# keras-io examples/vision/mnist_convnet.py: Conv32 -> Pool -> Conv64 -> Pool -> Dropout .5 -> Dense10


@dataclass(frozen=True)
class KerasConvnetConfig:
    init: str = "glorot_uniform"  # Keras' default
    in_channels: int = 1
    input_size: int = 28

    def __post_init__(self) -> None:
        check_choice(self.init, INITS, "init")
        check_input(self.in_channels, self.input_size, 10)


@register_model(
    "keras-convnet",
    KerasConvnetConfig(),
    description="keras-io mnist_convnet: Conv32 -> Pool -> Conv64 -> Pool -> Flatten -> Drop .5 -> Dense10",
)
def build_keras_convnet(cfg: KerasConvnetConfig) -> nn.Module:
    side = ((cfg.input_size - 2) // 2 - 2) // 2
    net = Net(
        [
            ("conv1", nn.Conv2d(cfg.in_channels, 32, 3)),
            ("act1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(32, 64, 3)),
            ("act2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("drop", nn.Dropout(0.5)),
            ("out", nn.Linear(64 * side * side, 10)),
        ],
        (cfg.in_channels, cfg.input_size, cfg.input_size),
    )
    init_weights(net, cfg.init)
    return net


# --------------------------------------------------------------------------------------------
# fastnet: the `fast` recipe's small CNN. conv-BN-ReLU-pool blocks; BN lets a large batch and a
# high one-cycle learning rate converge in about one epoch.


@dataclass(frozen=True)
class FastNetConfig:
    widths: tuple[int, ...] = (16, 32, 64)  # one conv-pool-BN-ReLU block per entry
    kernel: int = 3
    # "pool": the first block is conv -> pool like the others; "stride2": its conv is a 4x4
    # stride-2 convolution instead (28 -> 14 directly), so no 28x28 activation is ever written,
    # pooled or back-propagated through: on a CPU, where this net is memory-bound, that is most
    # of the first block's cost (measured in docs/bench.md).
    stem: str = "pool"
    # Blocks (1-based, from 2 on) whose 3x3 convolution has stride 2 instead of being followed by a
    # 2x2 max-pool: the convolution then computes a quarter of the outputs (the second block of the
    # stride-2 stem at 14x14 is half of the net's FLOPs). (): every block pools, as before.
    strided: tuple[int, ...] = ()
    # NHWC weights make every activation NHWC, which oneDNN's CPU kernels run faster (measured
    # in docs/bench.md); a 1-channel input is the same in either layout.
    channels_last: bool = True
    in_channels: int = 1
    input_size: int = 28

    def __post_init__(self) -> None:
        check_input(self.in_channels, self.input_size, 2 ** len(self.widths))
        if not self.widths or min(self.widths) < 1 or self.kernel % 2 == 0:
            raise ValueError(f"bad fastnet shape: widths={self.widths} kernel={self.kernel} (odd kernels only)")
        check_choice(self.stem, ("pool", "stride2"), "stem")
        if any(not 2 <= b <= len(self.widths) for b in self.strided):
            raise ValueError(f"bad fastnet strided={self.strided}: block numbers 2..{len(self.widths)}")


@register_model(
    "fastnet",
    FastNetConfig(),
    description="[Conv3 -> MaxPool -> BN -> ReLU] x len(widths) -> Dense10; stem=stride2: first conv 4x4/2 (fast recipe)",
)
def build_fastnet(cfg: FastNetConfig) -> nn.Module:
    layers: list[tuple[str, nn.Module]] = []
    c, side = cfg.in_channels, cfg.input_size
    for i, w in enumerate(cfg.widths, 1):
        if i == 1 and cfg.stem == "stride2":  # kernel 4, stride 2, padding 1: exactly half the side
            layers.append((f"conv{i}", nn.Conv2d(c, w, 4, stride=2, padding=1, bias=False)))
        elif i in cfg.strided:  # stride 2, padding k//2: the side becomes ceil(side / 2)
            layers.append((f"conv{i}", nn.Conv2d(c, w, cfg.kernel, stride=2, padding=cfg.kernel // 2, bias=False)))
        else:
            layers += [
                (f"conv{i}", nn.Conv2d(c, w, cfg.kernel, padding=cfg.kernel // 2, bias=False)),
                # Pooling first: BN and ReLU then touch a quarter of the values. On a CPU this net
                # is memory-bound (pool, BN and ReLU outweigh the convolutions in the profile).
                (f"pool{i}", nn.MaxPool2d(2)),
            ]
        layers += [(f"bn{i}", nn.BatchNorm2d(w)), (f"act{i}", nn.ReLU())]
        c, side = w, (side + 1) // 2 if i in cfg.strided else side // 2
    layers += [("flatten", nn.Flatten()), ("out", nn.Linear(c * side * side, 10))]
    net = Net(layers, (cfg.in_channels, cfg.input_size, cfg.input_size))
    return net.to(memory_format=torch.channels_last) if cfg.channels_last else net


# --------------------------------------------------------------------------------------------
# bestnet: the `best` recipe's CNN. Three VGG-like stages of two 3x3 conv-BN-ReLU, max-pooled,
# then global average pooling; with augmentation this family is known to reach ~99.7 %.


@dataclass(frozen=True)
class BestNetConfig:
    widths: tuple[int, ...] = (32, 64, 128)  # channels per stage; each stage ends in a 2x2 max-pool
    dropout: float = 0.3  # before the classifier
    in_channels: int = 1
    input_size: int = 28

    def __post_init__(self) -> None:
        check_input(self.in_channels, self.input_size, 2 ** len(self.widths))
        if not self.widths or min(self.widths) < 1 or not 0 <= self.dropout < 1:
            raise ValueError(f"bad bestnet shape: widths={self.widths} dropout={self.dropout}")


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


@register_model(
    "bestnet",
    BestNetConfig(),
    description="[Conv3-BN-ReLU x2 -> MaxPool] x 3 (32, 64, 128) -> GlobalAvgPool -> Dropout -> Dense10",
)
def build_bestnet(cfg: BestNetConfig) -> nn.Module:
    layers: list[tuple[str, nn.Module]] = []
    c = cfg.in_channels
    for i, w in enumerate(cfg.widths, 1):
        layers += [(f"block{i}a", nn.Sequential(*_conv_bn(c, w))), (f"block{i}b", nn.Sequential(*_conv_bn(w, w)))]
        layers.append((f"pool{i}", nn.MaxPool2d(2)))
        c = w
    layers += [
        ("gap", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("drop", nn.Dropout(cfg.dropout)),
        ("out", nn.Linear(c, 10)),
    ]
    return Net(layers, (cfg.in_channels, cfg.input_size, cfg.input_size))
