"""Batched random augmentation on (N, C, H, W) tensors, on whatever device the batch lives."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mnistlab.config import AugmentConfig


def is_active(cfg: AugmentConfig) -> bool:
    return any((cfg.rotate, cfg.zoom, cfg.shift, cfg.shear))


def _uniform(n: int, half_width: float, g: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=g) * 2 - 1) * half_width


def random_affine(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Rotate (±deg), zoom (1±z per axis, as Keras), shift (±fraction of the side), shear (±deg).

    One affine_grid + grid_sample for the whole batch. The random numbers come from the CPU
    generator `g` so a run is reproducible whatever the device. Border padding repeats the edge
    pixels, which are background in MNIST whichever the polarity.
    """
    n = x.shape[0]
    angle = _uniform(n, math.radians(cfg.rotate), g)
    shear = _uniform(n, math.radians(cfg.shear), g)
    zx = 1 + _uniform(n, cfg.zoom, g)
    zy = 1 + _uniform(n, cfg.zoom, g)
    tx = _uniform(n, 2 * cfg.shift, g)  # normalised coordinates span 2 per side
    ty = _uniform(n, 2 * cfg.shift, g)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # theta maps output coordinates to input coordinates: rotation @ shear @ zoom, plus shift.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * zx
    theta[:, 0, 1] = (-sin + cos * torch.tan(shear)) * zy
    theta[:, 1, 0] = sin * zx
    theta[:, 1, 1] = (cos + sin * torch.tan(shear)) * zy
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    if cfg.rotate or cfg.zoom or cfg.shift or cfg.shear:
        x = random_affine(x, cfg, g)
    return x
