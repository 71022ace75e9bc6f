"""Which digit a figure shows: an index into MNIST, or an image file (`INDEX|FILE`) read as a
canonical digit (a Predictor turns it into what the run's model takes)."""

from __future__ import annotations

from pathlib import Path

import torch

from mnistlab.errors import DataError, ImageError
from mnistlab.handwriting import preprocess_digit


def is_index(ref: str) -> bool:
    return ref.strip().isdigit()


def pick_index(images: torch.Tensor, ref: str, what: str) -> int:
    """`ref` as an index into `images`; a DataError naming the valid range otherwise."""
    i = int(ref)
    if not 0 <= i < len(images):
        raise DataError(f"index {i} is out of range: {what} has {len(images)} images (0..{len(images) - 1})")
    return i


def load_digit_image(path: str | Path) -> torch.Tensor:
    """An image file of one digit -> (1, 28, 28) float in [0, 1], white on black, MNIST-like.

    Goes through the one image loader and the handwriting pipeline (`mnistlab.handwriting`:
    format allow-list and caps, crop, 20x20 fit, centre of mass, stroke width). Raises ImageError.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    x = preprocess_digit(path)
    if float(x.max()) == 0.0:
        raise ImageError(f"{path}: no digit found (no ink on the page)")
    return x.float()


def display_image(x: torch.Tensor) -> torch.Tensor:
    """A model input (C, H, W) -> (H, W) for imshow (the first channel; seed-4 inputs repeat it)."""
    return x[0].detach().cpu()
