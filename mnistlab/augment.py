"""Batched random augmentation on (N, C, H, W) tensors, on whatever device the batch lives."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mnistlab.config import AugmentConfig


def is_active(cfg: AugmentConfig) -> bool:
    return any((cfg.rotate, cfg.zoom, cfg.shift, cfg.shear)) or any(
        (cfg.elastic, cfg.thickness, cfg.pixelate, cfg.blur, cfg.noise, cfg.contrast, cfg.invert)
    )


PAIRS_LOSS_WEIGHT = 0.5  # weight of the touching pairs' loss (Hendrycks et al.'s lambda for vision)


def touching_pairs(x: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """n images of two random digits of `x` (N, 1, 28, 28; ink bright) set side by side with
    their ink overlapping by 1-4 columns, cropped to the ink and fitted into 20x20 keeping the
    aspect, centred in 28x28: what the reader hands the model for two touching digits."""
    out = torch.zeros(n, 1, 28, 28, dtype=x.dtype, device=x.device)
    pick = torch.randint(len(x), (n, 2), generator=g)
    overlap = torch.randint(1, 5, (n,), generator=g)
    for k in range(n):
        a, b = x[pick[k, 0], 0], x[pick[k, 1], 0]
        ca, cb = (a > 0.3).any(0).nonzero().flatten(), (b > 0.3).any(0).nonzero().flatten()
        if not len(ca) or not len(cb):
            continue
        shift = max(0, int(ca[-1]) + 1 - int(overlap[k]) - int(cb[0]))  # b's column j lands at j + shift
        canvas = torch.zeros(28, 28 + shift, dtype=x.dtype, device=x.device)
        canvas[:, :28] = a
        canvas[:, shift:] = torch.maximum(canvas[:, shift:], b)
        rows, cols = (canvas > 0.3).any(1).nonzero().flatten(), (canvas > 0.3).any(0).nonzero().flatten()
        crop = canvas[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
        h, w = crop.shape
        scale = 20 / max(h, w)
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = F.interpolate(crop[None, None], size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (28 - sh) // 2, (28 - sw) // 2
        out[k, 0, top : top + sh, left : left + sw] = small[0, 0]
    return out


def _uniform(n: int, half_width: float, g: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=g) * 2 - 1) * half_width


def random_affine(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Rotate (±deg), zoom (1±z per axis, as Keras), shift (±fraction of the side), shear (±deg).

    One affine_grid + grid_sample for the whole batch. The random numbers come from the CPU
    generator `g` so a run is reproducible whatever the device. Border padding repeats the edge
    pixels, which are background in MNIST whichever the polarity.
    """
    # theta maps output coordinates to input coordinates (see _affine_theta).
    theta = _affine_theta(x.shape[0], cfg, g).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """The single entry point. Geometry first, then stroke, blur, contrast, noise, polarity.

    The handwriting terms (elastic ... invert) assume pixels in [0, 1] (data.scale=true).
    """
    if cfg.elastic:
        x = random_warp(x, cfg, g)
    elif cfg.rotate or cfg.zoom or cfg.shift or cfg.shear:
        x = random_affine(x, cfg, g)
    if cfg.thickness:
        x = random_thickness(x, cfg.thickness, g)
    if cfg.pixelate:
        x = random_pixelate(x, cfg.pixelate, g)
    if cfg.blur:
        x = random_blur(x, cfg.blur, g)
    if cfg.contrast:
        x = random_contrast(x, cfg.contrast, g)
    if cfg.noise:
        x = random_noise(x, cfg.noise, g)
    if cfg.invert:
        x = random_invert(x, cfg.invert, g)
    return x


# ---------------------------------------------------------------------------------------------
# Handwriting variation (issue 7): what separates a person's digits from MNIST's.


def _affine_theta(n: int, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) matrices mapping output to input coordinates: rotation @ shear @ zoom, plus a
    shift (normalised coordinates span 2 per side). Draw order: angle, shear, zx, zy, tx, ty."""
    angle = _uniform(n, math.radians(cfg.rotate), g)
    shear = _uniform(n, math.radians(cfg.shear), g)
    zx = 1 + _uniform(n, cfg.zoom, g)
    zy = 1 + _uniform(n, cfg.zoom, g)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * zx
    theta[:, 0, 1] = (-sin + cos * torch.tan(shear)) * zy
    theta[:, 1, 0] = sin * zx
    theta[:, 1, 1] = (cos + sin * torch.tan(shear)) * zy
    theta[:, 0, 2] = _uniform(n, 2 * cfg.shift, g)
    theta[:, 1, 2] = _uniform(n, 2 * cfg.shift, g)
    return theta


def random_warp(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """The affine terms plus an elastic distortion, in ONE grid_sample.

    The elastic field is random noise on a coarse 4x4 grid, upsampled bicubically (smooth, like
    the wobble of a hand), scaled so its largest displacement is about `cfg.elastic` pixels.
    """
    n, _, h, w = x.shape
    theta = _affine_theta(n, cfg, g).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    coarse = torch.rand(n, 2, 4, 4, generator=g) * 2 - 1
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    amp = torch.rand(n, 1, 1, 1, generator=g) * cfg.elastic
    field = field * amp * torch.tensor([2.0 / w, 2.0 / h]).view(1, 2, 1, 1)  # pixels -> grid units
    grid = grid + field.permute(0, 2, 3, 1).to(x.device, x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _per_sample(n: int, p: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=g) < p).view(n, 1, 1, 1).to(device)


def random_thickness(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """With probability p a sample's strokes are thickened (3x3 max-pool) or thinned (min-pool),
    half each: pens from a fine liner to a marker."""
    n = x.shape[0]
    change = _per_sample(n, p, g, x.device)
    thicken = _per_sample(n, 0.5, g, x.device)
    dilated = F.max_pool2d(x, 3, 1, 1)
    eroded = -F.max_pool2d(-x, 3, 1, 1)
    # Thinning a pen stroke to nothing would erase the digit: erode only half-way (blend).
    changed = torch.where(thicken, dilated, 0.5 * (x + eroded))
    return torch.where(change, changed, x)


# Sides a pixelated sample passes through: a 28x28 MNIST digit (20 px tall) shrinks to 6-11 px,
# what a digit is in an 8x8 scan or a thumbnail crop, before the reader enlarges it again.
PIXELATE_SIDES = (8, 9, 10, 11, 12, 13, 14, 16)


def random_pixelate(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """With probability p a sample goes down to a side from PIXELATE_SIDES (area average) and
    back up bilinearly: the blocky, soft strokes of an enlarged low-resolution scan. One resize
    pair per side drawn, not per sample."""
    n, _, h, w = x.shape
    change = torch.rand(n, generator=g) < p
    side = torch.randint(len(PIXELATE_SIDES), (n,), generator=g)
    out = x.clone()
    for k, s in enumerate(PIXELATE_SIDES):
        idx = torch.nonzero(change & (side == k)).flatten().to(x.device)
        if len(idx):
            small = F.interpolate(x[idx], size=(s, s), mode="area")
            out[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out


def random_blur(x: torch.Tensor, max_sigma: float, g: torch.Generator) -> torch.Tensor:
    """Gaussian blur with a per-sample sigma in U(0, max_sigma): one grouped separable conv."""
    n, c, h, w = x.shape
    radius = max(1, math.ceil(2 * max_sigma))
    sigma = (torch.rand(n, generator=g) * max_sigma).clamp_min(1e-3).repeat_interleave(c)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1)) ** 2)
    k = (k / k.sum(1, keepdim=True)).to(x.device, x.dtype)  # (n*c, 2r+1)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(n * c, 1, -1, 1), groups=n * c)
    return y.reshape(n, c, h, w)


def random_contrast(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    """Faint ink on grey paper: ink peak scaled by a = 1 - U(0, c), background lifted by U(0, (1-a)/2)."""
    n = x.shape[0]
    a = (1 - torch.rand(n, generator=g) * c).view(n, 1, 1, 1)
    b = torch.rand(n, 1, 1, 1, generator=g) * (1 - a) / 2
    return x * a.to(x.device, x.dtype) + b.to(x.device, x.dtype)


def random_noise(x: torch.Tensor, max_std: float, g: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise, per-sample std in U(0, max_std), clipped to [0, 1]."""
    n = x.shape[0]
    std = (torch.rand(n, generator=g) * max_std).view(n, 1, 1, 1)
    noise = torch.randn(x.shape, generator=g) * std
    return (x + noise.to(x.device, x.dtype)).clamp(0, 1)


def random_invert(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """White-on-black <-> black-on-white for a fraction p of the batch."""
    return torch.where(_per_sample(x.shape[0], p, g, x.device), 1 - x, x)
