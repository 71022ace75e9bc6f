"""A Keras-like layer table: name, type, output shape, params (BN moving stats counted)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mnistlab.models._registry import keras_param_count


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int


def summarize(model: nn.Module) -> list[LayerRow]:
    """One row per top-level layer, shapes found by running one blank image through the model."""
    rows: list[LayerRow] = []
    hooks = []

    def hook_for(name: str, module: nn.Module):
        def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
            rows.append(LayerRow(name, type(module).__name__, tuple(out.shape[1:]), keras_param_count(module)[0]))

        return hook

    for name, module in model.named_children():
        hooks.append(module.register_forward_hook(hook_for(name, module)))
    was_training = model.training
    model.eval()  # BN in train mode cannot take a batch of one
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *model.input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows
