"""The architectures of the seed documents (docs/seeds.md), rebuilt layer for layer; how each seed
trained them is its recipe in recipes.py.

Keras conventions kept for faithful reproduction: glorot_uniform weights and zero biases,
'valid' convolutions unless stated, BatchNormalization with momentum 0.99 / epsilon 1e-3, and
a softmax output, which here is folded into the loss (models return logits).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mnistlab.models._layers import (
    ACTIVATIONS,
    INITS,
    Net,
    activation,
    check_choice,
    conv_out,
    init_weights,
    keras_batchnorm,
)
from mnistlab.models._registry import register_model


def _check_common(activation_name: str, init: str, in_channels: int, input_size: int) -> None:
    check_choice(activation_name, ACTIVATIONS, "activation")
    check_choice(init, INITS, "init")
    if in_channels < 1 or input_size < 4:
        raise ValueError(f"bad input shape: {in_channels} channels of {input_size}x{input_size}")


# --------------------------------------------------------------------------------------------
# Fully connected: dnn (0.1), mlp (1.2), deep-dnn (3.1)


@dataclass(frozen=True)
class MLPConfig:
    hidden: int = 32  # units per hidden layer
    depth: int = 1  # number of hidden layers
    activation: str = "relu"
    dropout: float = 0.0  # after every hidden layer
    batch_norm: bool = False  # Dense -> BN -> activation, as seed 3.1
    init: str = "glorot_uniform"
    init_std: float = 0.05  # for init="normal"
    # Seed 0.6 asks for pooling in the DNN: a pool x pool max-pooling of the image before the
    # flatten (Keras MaxPooling2D on the 28x28 input), 1 = none. 2 -> 14x14 = 196 inputs.
    pool: int = 1
    # The output layer's init; None = `init`, as every layer before it. Keras initialises a Dense
    # layer without `kernel_initializer` by glorot_uniform: seed 3.1 names lecun_normal for its
    # hidden layers only, so its Dense10 output is glorot_uniform.
    out_init: str | None = None
    in_channels: int = 1
    input_size: int = 28

    def __post_init__(self) -> None:
        _check_common(self.activation, self.init, self.in_channels, self.input_size)
        if self.out_init is not None:
            check_choice(self.out_init, INITS, "out_init")
        if self.pool < 1 or self.input_size // self.pool < 1:
            raise ValueError(f"bad MLP pool={self.pool} for a {self.input_size}x{self.input_size} input")
        if self.hidden < 1 or self.depth < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"bad MLP shape: hidden={self.hidden} depth={self.depth} dropout={self.dropout}")


def build_mlp(cfg: MLPConfig) -> nn.Module:
    layers: list[tuple[str, nn.Module]] = []
    side = cfg.input_size
    if cfg.pool > 1:
        layers.append(("pool", nn.MaxPool2d(cfg.pool)))
        side //= cfg.pool
    layers.append(("flatten", nn.Flatten()))
    width = cfg.in_channels * side**2
    for i in range(1, cfg.depth + 1):
        layers.append((f"fc{i}", nn.Linear(width, cfg.hidden)))
        if cfg.batch_norm:
            layers.append((f"bn{i}", keras_batchnorm(cfg.hidden, 1)))
        layers.append((f"act{i}", activation(cfg.activation)))
        if cfg.dropout:
            layers.append((f"drop{i}", nn.Dropout(cfg.dropout)))
        width = cfg.hidden
    layers.append(("out", nn.Linear(width, 10)))
    net = Net(layers, (cfg.in_channels, cfg.input_size, cfg.input_size))
    init_weights(net, cfg.init, cfg.init_std)
    if cfg.out_init is not None:
        init_weights(net.out, cfg.out_init, cfg.init_std)
    return net


# Seed 000 does not name the DNN's optimizer; the Keras Sequential tutorial it copies compiles
# with rmsprop, which gives the reported ~0.94 after one epoch at batch 32.
register_model(
    "dnn",
    MLPConfig(),
    seed_doc="0.1",
    description="Dense32 relu -> Dense10",
)(build_mlp)

register_model(
    "mlp",
    MLPConfig(hidden=512, depth=2, dropout=0.2),
    seed_doc="1.2",
    description="Dense512 relu, Dropout .2, x2 -> Dense10",
)(build_mlp)

register_model(
    "deep-dnn",
    MLPConfig(hidden=100, depth=50, activation="selu", batch_norm=True, init="lecun_normal"),
    seed_doc="3.1",
    description="50 x [Dense100 lecun_normal -> BN -> selu] -> Dense10",
)(build_mlp)


# --------------------------------------------------------------------------------------------
# The Keras mnist_cnn example: cnn (0.2)


@dataclass(frozen=True)
class CNNConfig:
    filters1: int = 32
    filters2: int = 64
    kernel1: int = 3
    kernel2: int = 3
    dense: int = 128
    dropout1: float = 0.25  # after the pooling
    dropout2: float = 0.5  # after the dense layer
    activation: str = "relu"
    batch_norm: bool = False  # after each convolution's activation
    padding: str = "valid"
    init: str = "glorot_uniform"
    init_std: float = 0.05
    in_channels: int = 1
    input_size: int = 28

    def __post_init__(self) -> None:
        _check_common(self.activation, self.init, self.in_channels, self.input_size)
        check_choice(self.padding, ("valid", "same"), "padding")
        side = conv_out(conv_out(self.input_size, self.kernel1, self.padding), self.kernel2, self.padding)
        if side < 2:
            raise ValueError(
                f"kernels {self.kernel1}x{self.kernel1} and {self.kernel2}x{self.kernel2} with "
                f"'{self.padding}' padding leave nothing of a {self.input_size}x{self.input_size} input"
            )


def build_cnn(cfg: CNNConfig) -> nn.Module:
    side = conv_out(conv_out(cfg.input_size, cfg.kernel1, cfg.padding), cfg.kernel2, cfg.padding) // 2
    layers: list[tuple[str, nn.Module]] = [
        ("conv1", nn.Conv2d(cfg.in_channels, cfg.filters1, cfg.kernel1, padding=cfg.padding)),
        ("act1", activation(cfg.activation)),
    ]
    if cfg.batch_norm:
        layers.append(("bn1", keras_batchnorm(cfg.filters1, 2)))
    layers += [
        ("conv2", nn.Conv2d(cfg.filters1, cfg.filters2, cfg.kernel2, padding=cfg.padding)),
        ("act2", activation(cfg.activation)),
    ]
    if cfg.batch_norm:
        layers.append(("bn2", keras_batchnorm(cfg.filters2, 2)))
    layers += [
        ("pool", nn.MaxPool2d(2)),
        ("drop1", nn.Dropout(cfg.dropout1)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(cfg.filters2 * side * side, cfg.dense)),
        ("act3", activation(cfg.activation)),
        ("drop2", nn.Dropout(cfg.dropout2)),
        ("out", nn.Linear(cfg.dense, 10)),
    ]
    net = Net(layers, (cfg.in_channels, cfg.input_size, cfg.input_size))
    init_weights(net, cfg.init, cfg.init_std)
    return net


# keras-team/keras examples/mnist_cnn.py (which seed 000 copies) trains with Adadelta(), whose
# Keras 2 default lr is 1.0, batch 128.
register_model(
    "cnn",
    CNNConfig(),
    seed_doc="0.2",
    description="Conv32 -> Conv64 -> MaxPool -> Dropout .25 -> Dense128 -> Dropout .5 -> Dense10",
)(build_cnn)


# --------------------------------------------------------------------------------------------
# Deep CNN with batch norm: cnn-bn (2.2)


@dataclass(frozen=True)
class CNNBNConfig:
    filters: int = 64  # every convolution
    kernels: tuple[int, ...] = (5, 5, 5, 3, 3)  # conv1..conv5
    dense: int = 256
    dropout: float = 0.25  # every Dropout layer
    activation: str = "relu"
    # The seed's text allows 'valid' padding, but with it the 5th convolution would see a 2x2
    # map and fail; 'same' is the only reading under which the described network builds.
    padding: str = "same"
    init: str = "glorot_uniform"
    init_std: float = 0.05
    in_channels: int = 1
    input_size: int = 28

    def __post_init__(self) -> None:
        _check_common(self.activation, self.init, self.in_channels, self.input_size)
        check_choice(self.padding, ("valid", "same"), "padding")
        if len(self.kernels) != 5:
            raise ValueError(f"cnn-bn has 5 convolutions: give 5 kernel sizes, not {len(self.kernels)}")
        if _cnn_bn_side(self) < 1:
            raise ValueError(f"kernels {self.kernels} with '{self.padding}' padding do not fit the input")


def _cnn_bn_side(cfg: CNNBNConfig) -> int:
    s = cfg.input_size
    k = cfg.kernels
    s = conv_out(conv_out(s, k[0], cfg.padding), k[1], cfg.padding) // 2
    s = conv_out(conv_out(s, k[2], cfg.padding), k[3], cfg.padding) // 2
    return conv_out(s, k[4], cfg.padding)


def build_cnn_bn(cfg: CNNBNConfig) -> nn.Module:
    layers: list[tuple[str, nn.Module]] = []
    cin = cfg.in_channels
    for i, k in enumerate(cfg.kernels, start=1):
        # Keras Conv2D(activation='relu') then BatchNormalization: conv -> relu -> BN.
        layers += [
            (f"conv{i}", nn.Conv2d(cin, cfg.filters, k, padding=cfg.padding)),
            (f"act{i}", activation(cfg.activation)),
            (f"bn{i}", keras_batchnorm(cfg.filters, 2)),
        ]
        cin = cfg.filters
        if i in (2, 4):
            layers += [(f"pool{i // 2}", nn.MaxPool2d(2)), (f"drop{i // 2}", nn.Dropout(cfg.dropout))]
    side = _cnn_bn_side(cfg)
    layers += [
        ("drop3", nn.Dropout(cfg.dropout)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(cfg.filters * side * side, cfg.dense)),
        ("act6", activation(cfg.activation)),
        ("drop4", nn.Dropout(cfg.dropout)),
        ("out", nn.Linear(cfg.dense, 10)),
    ]
    net = Net(layers, (cfg.in_channels, cfg.input_size, cfg.input_size))
    init_weights(net, cfg.init, cfg.init_std)
    return net


# The seed derives from the Kaggle kernel "Introduction to CNN Keras" (same dropout, optimizer
# and ReduceLROnPlateau settings), which trains at batch 86; the seed itself names no batch size.
register_model(
    "cnn-bn",
    CNNBNConfig(),
    seed_doc="2.2",
    description="[Conv64 BN Conv64 BN Pool Drop] x2 -> Conv BN Drop -> Dense256 -> Dense10",
)(build_cnn_bn)


# --------------------------------------------------------------------------------------------
# Seed 004's conv stacks: cnn-small (4.2) and cnn-robust (4.4)


@dataclass(frozen=True)
class ConvStackConfig:
    filters: tuple[int, ...] = (8, 16, 32)  # one 'valid' conv each; a 2x2 max-pool between them
    kernel: int = 3
    conv_dropout: tuple[float, ...] = (0.0, 0.0, 0.0)  # after each conv, before its pool
    dense: int = 0  # hidden Dense units before the output (0 = none, as seed 4.2 ends up)
    dense_dropout: float = 0.0
    activation: str = "relu"
    init: str = "glorot_uniform"
    init_std: float = 0.05
    in_channels: int = 3  # seed 004 feeds 28x28x3
    input_size: int = 28

    def __post_init__(self) -> None:
        _check_common(self.activation, self.init, self.in_channels, self.input_size)
        if len(self.conv_dropout) != len(self.filters):
            raise ValueError(f"conv_dropout needs one rate per conv ({len(self.filters)}), got {self.conv_dropout}")
        if _stack_side(self) < 1:
            raise ValueError(f"{len(self.filters)} convs of {self.kernel}x{self.kernel} do not fit the input")


def _stack_side(cfg: ConvStackConfig) -> int:
    s = cfg.input_size
    for i in range(len(cfg.filters)):
        s = s - cfg.kernel + 1
        if i < len(cfg.filters) - 1:
            s //= 2
    return s


def build_conv_stack(cfg: ConvStackConfig) -> nn.Module:
    layers: list[tuple[str, nn.Module]] = []
    cin = cfg.in_channels
    n = len(cfg.filters)
    for i, (f, p) in enumerate(zip(cfg.filters, cfg.conv_dropout, strict=True), start=1):
        layers += [(f"conv{i}", nn.Conv2d(cin, f, cfg.kernel)), (f"act{i}", activation(cfg.activation))]
        if p:
            layers.append((f"drop{i}", nn.Dropout(p)))
        if i < n:
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
        cin = f
    layers.append(("flatten", nn.Flatten()))
    width = cin * _stack_side(cfg) ** 2
    if cfg.dense:
        layers += [("fc1", nn.Linear(width, cfg.dense)), (f"act{n + 1}", activation(cfg.activation))]
        if cfg.dense_dropout:
            layers.append((f"drop{n + 1}", nn.Dropout(cfg.dense_dropout)))
        width = cfg.dense
    layers.append(("out", nn.Linear(width, 10)))
    net = Net(layers, (cfg.in_channels, cfg.input_size, cfg.input_size))
    init_weights(net, cfg.init, cfg.init_std)
    return net


register_model(
    "cnn-small",
    ConvStackConfig(),
    seed_doc="4.2",
    description="Conv8 Pool Conv16 Pool Conv32 -> Dense10, 28x28x3 input",
)(build_conv_stack)

register_model(
    "cnn-robust",
    ConvStackConfig(filters=(32, 64, 64), conv_dropout=(0.15, 0.18, 0.20), dense=128, dense_dropout=0.15),
    seed_doc="4.4",
    description="Conv32 Drop Pool Conv64 Drop Pool Conv64 Drop -> Dense128 Drop -> Dense10",
)(build_conv_stack)
