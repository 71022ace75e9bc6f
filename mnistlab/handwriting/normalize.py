"""MNIST normalisation of one digit: what an MNIST model expects to see.

MNIST (LeCun et al.): each digit's bounding box fitted into 20x20 preserving the aspect ratio,
anti-aliased (grey edges), then placed in 28x28 so that its centre of mass is the centre. White
ink on black. On top of that we match the stroke width: a fine pen on a big page shrinks to a
hairline in 20x20 and a marker to a blob; the median MNIST stroke is ~2.6 px wide in 28x28
(2 x area / boundary of the pixels > 0.5, measured on the test set).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from mnistlab.handwriting.images import ImageSource, load_grey

FIT = 20  # the digit's longer side in the 28x28 frame
SIZE = 28
MNIST_STROKE = 2.6  # pixels in the 28x28 frame


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary shape: 2 x area / boundary pixels (a band of width t and
    length L has area tL and 2L boundary pixels)."""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    boundary = int((mask & ~ndimage.binary_erosion(mask)).sum())
    return 2.0 * area / max(1, boundary)


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius + radius  # a round-ish disk


def match_stroke(ink: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
    """Thicken or thin `ink` (source pixels) so that after resizing by `scale` the strokes are
    about MNIST's width."""
    sw = stroke_width(mask)
    if sw == 0:
        return ink
    target = MNIST_STROKE / scale  # wanted width in source pixels
    if sw < 0.8 * target:
        r = int(round((target - sw) / 2))
        if r >= 1:
            return ndimage.grey_dilation(ink, footprint=_disk(r))
    elif sw > 1.5 * target:
        # Never thin a stroke below ~2 source pixels: the digit must survive.
        r = int(min(round((sw - target) / 2), max(0, (sw - 2) // 2)))
        if r >= 1:
            thin = ndimage.grey_erosion(ink, footprint=_disk(r))
            if (thin > 0.5).sum() >= 0.25 * (ink > 0.5).sum():
                return thin
    return ink


def _resize(a: np.ndarray, w: int, h: int) -> np.ndarray:
    img = Image.fromarray(a.astype(np.float32), mode="F")
    # PIL's resampling widens its kernel when shrinking: anti-aliased, like MNIST's grey edges.
    return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def normalize_digit(ink: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """A digit's ink strength (white on black, any size, tight or loose crop) -> 28x28 float32
    in [0, 1], MNIST-normalised. `mask` is the digit's binary shape (default: ink > 0.5)."""
    mask = ink > 0.5 if mask is None else mask
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return np.zeros((SIZE, SIZE), np.float32)
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    pad = 3  # keep the anti-aliased rim and room to thicken
    ink = np.pad(ink[r0:r1, c0:c1], pad)
    mask = np.pad(mask[r0:r1, c0:c1], pad)
    h, w = r1 - r0, c1 - c0
    scale = FIT / max(h, w)
    ink = match_stroke(ink, mask, scale)
    big = _resize(ink, max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    big = np.clip(big, 0, None)
    if big.max() <= 0:
        return np.zeros((SIZE, SIZE), np.float32)
    big = np.clip(big / big.max(), 0, 1)
    # Trim to the fitted box (the padding may hold a faint rim) but never beyond 28.
    bh, bw = big.shape
    if bh > SIZE or bw > SIZE:
        t, lft = (bh - SIZE) // 2 if bh > SIZE else 0, (bw - SIZE) // 2 if bw > SIZE else 0
        big = big[t : t + min(bh, SIZE), lft : lft + min(bw, SIZE)]
        bh, bw = big.shape
    cy, cx = ndimage.center_of_mass(big)
    out = np.zeros((SIZE, SIZE), np.float32)
    top = int(np.clip(round(14 - cy), 0, SIZE - bh))
    left = int(np.clip(round(14 - cx), 0, SIZE - bw))
    out[top : top + bh, left : left + bw] = big
    return out


def preprocess_digit(img: ImageSource | np.ndarray) -> torch.Tensor:
    """A single-digit canvas or crop (any polarity, size, format) -> (1, 28, 28) float tensor in
    [0, 1], white on black, what an MNIST model expects. All ink found is taken as one digit.
    An image without ink gives an all-zero tensor (test `.max() == 0` for "no digit found").
    """
    from mnistlab.handwriting.segment import WORK_SIDE, ink_map

    if isinstance(img, np.ndarray):
        grey = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    else:
        grey = load_grey(img, max_side=WORK_SIDE)
    im = ink_map(grey)
    return torch.from_numpy(normalize_digit(im.ink, _digit_mask(im))).unsqueeze(0)


def _digit_mask(im) -> np.ndarray:  # noqa: ANN001 - an InkMap
    """All the ink of a single-digit image, less dust: components of at least 2 % of the
    largest one's area (a detached flag or bar belongs to the digit)."""
    labels, n = ndimage.label(im.mask, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros_like(im.mask)
    areas = ndimage.sum_labels(np.ones(labels.shape, np.int32), labels, np.arange(1, n + 1))
    keep = np.flatnonzero(areas >= max(8, 0.02 * areas.max())) + 1
    from mnistlab.handwriting.segment import grow_mask  # late, as ink_map above

    return grow_mask(im, np.isin(labels, keep))
