"""Data variants on whole tensors: scaling, sub-sampling (seed 0.4), inversion (seed 4.1), channels."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from mnistlab.config import DataConfig


def to_float(images: torch.Tensor, scale: bool) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, 1, H, W), in [0, 1] when `scale` else in [0, 255]."""
    x = images.unsqueeze(1).float()
    return x / 255.0 if scale else x


def subsample(x: torch.Tensor, mode: str, keep: float = 0.5, seed: int = 0, upsample: bool = False) -> torch.Tensor:
    """Seed 0.4's three ways of throwing pixels away.

    random: a fixed random mask (drawn once from `seed`, the same for every image, train and
            test) keeps `keep` of the pixels and blacks out the rest; the image stays 28x28.
    half:   keep every other row and column (strided, no low-pass: aliasing) -> 14x14.
    down4:  2x2 average pooling, 4x fewer pixels, anti-aliased -> 14x14.
    top / left: half of the image thrown away, the bottom rows / the right columns blacked out
            (the image stays 28x28, so the models are unchanged): a reading of the seed's
            "discard half" (抛弃一半) tested against its numbers (docs/studies.md).
    `upsample` resizes the result back to the original size (bilinear), so that models built
    for 28x28 apply unchanged: one of the mitigations the seed asks for.
    """
    size = x.shape[-1]
    if mode == "none":
        return x
    if mode == "random":
        # plain ints: under tracing the sizes are traced values, which would miss the cache
        shape = (int(x.shape[-2]), int(x.shape[-1]))
        out = x * random_mask(shape, float(keep), int(seed)).to(x.device, x.dtype)
    elif mode == "half":
        out = x[..., ::2, ::2]
    elif mode == "down4":
        out = F.avg_pool2d(x, 2)
    elif mode in ("top", "left"):
        out = x.clone()
        if mode == "top":
            out[..., x.shape[-2] // 2 :, :] = 0
        else:
            out[..., :, x.shape[-1] // 2 :] = 0
    else:
        raise ValueError(f"unknown subsample mode {mode!r}")
    if upsample and out.shape[-1] != size:
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
    return out


@functools.lru_cache(maxsize=32)
def random_mask(shape: tuple[int, int], keep: float, seed: int) -> torch.Tensor:
    """Seed 0.4's fixed random mask: 1 keeps a pixel, 0 blacks it out (float32, on the CPU).

    Cached so that it is drawn once: a graph traced or exported after the first call (ONNX,
    TorchScript) holds the mask as a constant, not a random draw made again at every call
    (the ONNX exporter cannot translate a torch.Generator at all). Callers must not modify it.
    """
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < keep).float()


def crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """The central `size` x `size` pixels (data.crop); None: `x` unchanged."""
    if size is None:
        return x
    side = int(x.shape[-1])
    if not 1 <= size <= side:
        raise ValueError(f"bad data.crop={size} for {side}x{side} digits")
    o = (side - size) // 2
    return x[..., o : o + size, o : o + size]


def output_size(cfg: DataConfig, size: int = 28) -> int:
    """The side of the images a model sees under `cfg` (a model's input_size must match it)."""
    if cfg.crop is not None:
        size = cfg.crop
    if cfg.subsample in ("half", "down4") and not cfg.upsample:
        return size // 2
    return size


def invert(x: torch.Tensor, scale: bool) -> torch.Tensor:
    """White-on-black <-> black-on-white."""
    return (1.0 if scale else 255.0) - x


def with_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat the grey channel (a view: no memory is used until a batch is indexed)."""
    return x if channels == 1 else x.expand(-1, channels, -1, -1)
