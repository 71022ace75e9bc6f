"""Inside a network: the output maps of a layer (seed 0.3) and the learned filters."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from torch import nn

from mnistlab.errors import ConfigError
from mnistlab.viz._plot import grid, image_panels, new_figure
from mnistlab.viz.layers import get_layer, layer_names


def feature_maps_figure(image: torch.Tensor, maps: torch.Tensor, layer: str, n: int = 9, title: str = "") -> Figure:
    """The input digit (H, W) and the first `n` maps of `maps` (C, h, w), each with its own
    colour scale (a map's pattern matters, not its level) and its value range in the title."""
    n = max(1, min(n, len(maps)))
    rows, cols = grid(n)
    fig = new_figure(1.8 * cols + 2.4, 1.9 * rows + 0.6)
    left, right = fig.subfigures(1, 2, width_ratios=[1.2, cols])
    ax = left.subplots()
    ax.imshow(image.numpy(), cmap="gray")
    ax.set_title("input")
    ax.set_xticks([])
    ax.set_yticks([])
    for i, ax in enumerate(image_panels(right, n, cols)):
        m = maps[i]
        ax.imshow(m.numpy(), cmap="viridis")
        ax.set_title(f"#{i} [{float(m.min()):.2g}, {float(m.max()):.2g}]", fontsize=8)
    right.suptitle(f"{layer}: {n} of {len(maps)} maps, {maps.shape[1]}x{maps.shape[2]}", fontsize=10)
    fig.suptitle(title or f"feature maps of {layer}")
    return fig


def filters_of(model: nn.Module, layer: str) -> tuple[torch.Tensor, str]:
    """Layer weights as images (K, kh, kw) and what they are.

    Conv2d: each output filter's kernel (averaged over input channels when there are several).
    A Linear layer that reads the flattened input image: each unit's weights as an image (the
    template the unit matches). Anything else: ConfigError naming the layers that have filters.
    """
    module = get_layer(model, layer)
    c, h, w = model.input_shape
    if isinstance(module, nn.Conv2d):
        weight = module.weight.detach().cpu()
        if weight.shape[1] == 1:
            return weight[:, 0], f"{weight.shape[2]}x{weight.shape[3]} kernels"
        return weight.mean(1), f"kernels averaged over {weight.shape[1]} input channels"
    if isinstance(module, nn.Linear) and module.in_features == c * h * w:
        weight = module.weight.detach().cpu().view(-1, c, h, w)
        return weight.mean(1), "input weights of each unit, as an image"
    usable = [
        n
        for n in layer_names(model)
        if isinstance(m := get_layer(model, n), nn.Conv2d) or (isinstance(m, nn.Linear) and m.in_features == c * h * w)
    ]
    raise ConfigError(f"layer {layer!r} has no filters to show; layers with filters: {', '.join(usable) or 'none'}")


def filters_figure(model: nn.Module, layer: str, n: int = 32, title: str = "") -> Figure:
    """The first `n` filters of `layer`, on a symmetric blue-red scale shared by all (0 = white)."""
    weights, what = filters_of(model, layer)
    n = max(1, min(n, len(weights)))
    rows, cols = grid(n)
    fig = new_figure(1.3 * cols + 1.2, 1.35 * rows + 0.8)
    axes = image_panels(fig, n, cols)
    limit = float(weights[:n].abs().max()) or 1.0
    im = None
    for i, ax in enumerate(axes):
        im = ax.imshow(weights[i].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"#{i}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="weight")
    fig.suptitle(title or f"{layer}: {n} of {len(weights)} filters ({what})")
    return fig
