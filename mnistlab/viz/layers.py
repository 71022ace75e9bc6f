"""Addressing a model's layers by name: their outputs on an input, feature maps, the penultimate
representation. Public API used by the web page: `layer_names`, `feature_maps`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mnistlab.errors import ConfigError

# Output modules that are activation functions (seed 0.3 shows "layer 2 (activation)").
ACTIVATION_TYPES = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Identity)


def layer_names(model: nn.Module) -> list[str]:
    """The names of the model's top-level layers, in forward order (conv1, act1, pool, ...)."""
    return [name for name, _ in model.named_children()]


def get_layer(model: nn.Module, layer: str) -> nn.Module:
    """The layer called `layer`; a ConfigError listing the valid names otherwise."""
    layers = dict(model.named_children())
    if layer not in layers:
        raise ConfigError(f"unknown layer {layer!r}; valid layers: {', '.join(layers)}")
    return layers[layer]


def default_map_layer(model: nn.Module) -> str:
    """The layer whose maps seed 0.3 shows as "layer 1": the activation right after the first
    convolution (Keras' Conv2D(activation='relu') outputs after its ReLU; here conv and ReLU are
    two layers, conv1 and act1). The first convolution itself when no activation follows it."""
    names = layer_names(model)
    modules = dict(model.named_children())
    for i, name in enumerate(names):
        if isinstance(modules[name], nn.Conv2d):
            nxt = names[i + 1] if i + 1 < len(names) else None
            return nxt if nxt is not None and isinstance(modules[nxt], ACTIVATION_TYPES) else name
    raise ConfigError(f"the model has no convolution, so no feature maps; layers: {', '.join(names)}")


def describe_layer(model: nn.Module, layer: str) -> str:
    """Which tensor `layer` outputs, in words: "act1 = ReLU(conv1)", "conv1 (Conv2d, before its activation)"."""
    names = layer_names(model)
    module = get_layer(model, layer)
    i = names.index(layer)
    prev = names[i - 1] if i else "input"
    if isinstance(module, ACTIVATION_TYPES):
        return f"{layer} = {type(module).__name__}({prev})"
    nxt = names[i + 1] if i + 1 < len(names) else None
    if isinstance(module, nn.Conv2d) and nxt is not None and isinstance(get_layer(model, nxt), ACTIVATION_TYPES):
        return f"{layer} (Conv2d output before its activation {nxt})"
    return f"{layer} ({type(module).__name__})"


def activation_layers(model: nn.Module) -> list[str]:
    """Names of the layers that are activation functions (act1, act2, ...)."""
    return [name for name, m in model.named_children() if isinstance(m, ACTIVATION_TYPES)]


@torch.no_grad()
def layer_outputs(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Run `x` through `model` (eval mode: dropout off) and return the outputs of `layers`.

    The name "input" stands for the input itself. Hooks are removed afterwards, even on errors.
    """
    for name in layers:
        if name != "input":
            get_layer(model, name)
    outputs: dict[str, torch.Tensor] = {}
    if "input" in layers:
        outputs["input"] = x.detach()
    handles = []
    for name, module in model.named_children():
        if name in layers:
            handles.append(module.register_forward_hook(lambda _m, _i, o, name=name: outputs.__setitem__(name, o)))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {name: outputs[name].detach() for name in layers}


def feature_maps(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output maps (C_out, h, w) of layer `layer` for one image `x` of shape (1, C, H, W).

    Works for any layer whose output is a stack of maps (conv, activation, pooling, batch norm,
    dropout before the flatten). Raises ConfigError for an unknown layer (listing the valid
    ones) and for a layer whose output is a vector (after the flatten), naming the map layers.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ConfigError(f"feature_maps takes one image shaped (1, C, H, W), not {tuple(x.shape)}")
    device = next(model.parameters()).device
    out = layer_outputs(model, x.to(device), [layer])[layer]
    if out.dim() != 4:
        spatial = [n for n in layer_names(model) if layer_outputs(model, x.to(device), [n])[n].dim() == 4]
        raise ConfigError(
            f"layer {layer!r} outputs a vector of {out[0].numel()} values, not maps; "
            f"layers with maps: {', '.join(spatial) or 'none'}"
        )
    return out[0].cpu()


def penultimate(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The representation the output layer reads (the input of the last layer), (N, features)."""
    last = layer_names(model)[-1]
    device = next(model.parameters()).device
    feats: list[torch.Tensor] = []

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        feats.append(inputs[0].detach().flatten(1).cpu())

    handle = get_layer(model, last).register_forward_pre_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i : i + batch_size].to(device))
    finally:
        model.train(was_training)
        handle.remove()
    return torch.cat(feats)
