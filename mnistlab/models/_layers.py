"""Building blocks shared by the model families: activations, Keras-style init, named stacks."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish", "none")
INITS = (
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
    "normal", "pytorch",
)  # fmt: skip


def activation(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "elu": nn.ELU,
        "selu": nn.SELU,
        "gelu": nn.GELU,
        "swish": nn.SiLU,  # Keras' swish: x * sigmoid(x) (seed 003 lists it; tf >= 2.2)
        "none": nn.Identity,
    }[name]()


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def check_input(in_channels: int, input_size: int, need: int) -> None:
    if in_channels < 1 or input_size < need:
        raise ValueError(f"bad input shape: {in_channels} channels of {input_size}x{input_size} (need >= {need})")


def keras_batchnorm(num_features: int, dims: int) -> nn.Module:
    # Keras' defaults: momentum 0.99 (PyTorch counts the other way: 0.01) and epsilon 1e-3.
    cls = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    return cls(num_features, eps=1e-3, momentum=0.01)


def init_weights(model: nn.Module, scheme: str, std: float = 0.05) -> None:
    """Initialise every Linear/Conv2d weight by `scheme` and zero its bias, as Keras does.

    The Keras *_normal variance-scaling initialisers draw from a normal truncated at 2 std,
    with the std divided by 0.8796 so the truncated draw keeps the intended variance.
    "normal" is a plain N(0, std) (Keras' RandomNormal); "pytorch" keeps PyTorch's own init.
    """
    if scheme == "pytorch":
        return
    for m in model.modules():
        if not isinstance(m, nn.Linear | nn.Conv2d):
            continue
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
        with torch.no_grad():
            if scheme == "normal":
                m.weight.normal_(0.0, std)
            else:
                family, dist = scheme.split("_")
                scale, n = {"glorot": (1.0, (fan_in + fan_out) / 2), "he": (2.0, fan_in), "lecun": (1.0, fan_in)}[
                    family
                ]
                if dist == "uniform":
                    limit = math.sqrt(3.0 * scale / n)
                    m.weight.uniform_(-limit, limit)
                else:
                    s = math.sqrt(scale / n) / 0.87962566103423978
                    nn.init.trunc_normal_(m.weight, 0.0, s, -2 * s, 2 * s)
            if m.bias is not None:
                m.bias.zero_()


class Net(nn.Sequential):
    """A Sequential with named layers (hooks and figures address them by name) and an input shape."""

    def __init__(self, layers: list[tuple[str, nn.Module]], input_shape: tuple[int, int, int]):
        super().__init__(OrderedDict(layers))
        self.input_shape = input_shape  # (channels, height, width) of one image


def conv_out(size: int, kernel: int, padding: str) -> int:
    return size if padding == "same" else size - kernel + 1
