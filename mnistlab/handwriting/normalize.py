"""MNIST normalisation of one digit: what an MNIST model expects to see.

MNIST (LeCun et al.): each digit's bounding box fitted into 20x20 preserving the aspect ratio,
anti-aliased (grey edges), then placed in 28x28 so that its centre of mass is the centre. White
ink on black. On top of that we match the stroke width: a fine pen on a big page shrinks to a
hairline in 20x20 and a marker to a blob; the median MNIST stroke is ~2.6 px wide in 28x28
(2 x area / boundary of the pixels > 0.5, measured on the test set).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from mnistlab.handwriting.images import ImageSource, load_grey
from mnistlab.handwriting.segment import MIN_CONTRAST, InkMap, grow_mask

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


# --------------------------------------------------------------------------------------------
# The single-digit path: an image that holds one digit (a canvas, a crop, a form box, a scan of
# one digit). No page rules: nothing is dropped for touching the frame or being thin, all the
# ink is the digit.

SINGLE_MAX_SIDE = 160  # px: the single-digit path works at most at this longer side (20x20 is the goal)
SINGLE_MIN_SIDE = 64  # px: smaller inputs (a 16x16 crop, an 8x8 scan) are enlarged to this first
POLARITY_MARGIN = 0.15  # |polarity score| below this is a guess (the reader then asks the model)


@dataclass
class SingleDigit:
    """One digit found in a single-digit image, at working resolution."""

    crop: np.ndarray  # (28, 28) float32 in [0, 1], white on black: the canonical digit
    ink: InkMap  # ink strength and mask at working resolution (for --explain)
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the digit's ink, working pixels (x1, y1 exclusive)
    polarity: float  # > 0: dark ink on light paper; its size says how clear the evidence was
    uniform_paper: bool = True  # one paper level (a canvas, a crop, a scan), not a shaded photo

    @property
    def found(self) -> bool:
        return bool(self.crop.max() > 0)

    @property
    def sure_of_polarity(self) -> bool:
        return abs(self.polarity) >= POLARITY_MARGIN

    def looks_like_one_digit(self) -> bool:
        """Is the ink one digit's shape filling a good part of the frame (a canvas, a crop, a box),
        rather than a line, a page, or a small digit somewhere in a photo? Uniform paper, ink on
        no more than 80 % of the frame, one band of ink rows (two at most), no wider than a wide
        digit, at least 30 % of the frame's height. (A photo of one digit with shading goes to
        the page path, whose background removal is made for it.)"""
        if not self.found or not self.uniform_paper:
            return False
        if self.ink.mask.mean() > MAX_INK_SHARE:  # the "paper" is a margin round a grey page
            return False
        x0, y0, x1, y1 = self.box
        h, w = self.ink.mask.shape
        if (x1 - x0) > 1.3 * (y1 - y0) or (y1 - y0) < 0.3 * h:
            return False
        rows = self.ink.mask[y0:y1].sum(1)
        gap = max(2, int(0.12 * (y1 - y0)))  # a 5's detached flag or an i-dot-like gap is allowed
        empty = rows == 0
        run = longest = 0
        for e in empty:
            run = run + 1 if e else 0
            longest = max(longest, run)
        return longest <= gap and _ink_bands(rows) <= MAX_DIGIT_BANDS


# Ink over more than this share of the frame is not pen strokes: a page photographed with a white
# margin round it, whose grey paper the frame's histogram takes for ink. Tight MNIST crops, 16-64
# px, stretched or not, both polarities, reach 0.64 (0.52 at the 90th percentile).
MAX_INK_SHARE = 0.8
MAX_DIGIT_BANDS = 2  # bands of ink rows, each >= 10 % of the ink, that one digit can have


def _ink_bands(rows: np.ndarray, min_gap: int = 2, min_share: float = 0.1) -> int:
    """How many bands of ink rows (`rows`: ink pixels per row) hold at least `min_share` of the
    ink each, where bands are parted by `min_gap` or more empty rows. One digit has one, two at
    most (a 5's flag, a stroke broken by a faint pen); a page of lines has one a line, however
    close the lines are (a dense page's line gaps are a small share of its ink's height, so the
    longest-gap rule alone takes a whole page of six lines for one digit)."""
    total = float(rows.sum())
    if total <= 0:
        return 0
    bands, ink, run = 0, 0.0, min_gap
    for r in rows:
        if r == 0:
            run += 1
            continue
        if run >= min_gap and ink > 0:  # a band ended before this gap
            bands += int(ink >= min_share * total)
            ink = 0.0
        run = 0
        ink += float(r)
    return bands + int(ink >= min_share * total)


def _otsu(values: np.ndarray, bins: int = 64) -> float:
    """The threshold that best splits `values` (in [0, 1]) into two classes (Otsu 1979)."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centers)
    total = m0[-1]
    between = (total * w0 - m0) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(edges[1:][int(np.argmax(between[:-1]))]) if bins > 1 else 0.5


def polarity_score(grey: np.ndarray, threshold: float) -> float:
    """> 0 when the ink is darker than the paper. Two votes: the frame's border is mostly paper,
    even for a digit that touches all four sides (it meets each side along a short arc); and ink
    is the smaller of the two classes. A small prior for dark ink (a pen on paper) breaks ties."""
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    dark_border = float((border < threshold).mean())
    dark_share = float((grey < threshold).mean())
    return (0.5 - dark_border) * 2 + (0.5 - dark_share) + 0.05


def _resample(a: np.ndarray, w: int, h: int, resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((w, h), resample), dtype=np.float32)


def single_digit(grey: np.ndarray, dark_ink: bool | None = None) -> SingleDigit:
    """A grey image (H, W) in [0, 1] holding one digit -> that digit, MNIST-normalised.

    Paper vs ink from the border and the histogram (`polarity_score`; `dark_ink` forces it), the
    paper's shading removed by a smooth estimate made from paper pixels only (so it holds when the
    ink fills most of the frame), ink strength scaled by the ink's own level, every component but
    dust kept, faint stroke ends kept by hysteresis (`grow_mask`). An image without ink gives an
    all-zero crop (`found` is False).

    mnistlab/web/standalone/normalize.js ports this whole path (and what it calls) for the static
    page, to float precision (the same bits on x86-64 Linux): change one, change the other
    (tests/test_export_web.py compares them).
    """
    h0, w0 = grey.shape
    scale = min(1.0, SINGLE_MAX_SIDE / max(h0, w0))
    if max(h0, w0) < SINGLE_MIN_SIDE:
        scale = SINGLE_MIN_SIDE / max(h0, w0)
    if scale != 1.0:
        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
        grey = np.clip(_resample(grey, max(1, round(w0 * scale)), max(1, round(h0 * scale)), resample), 0, 1)
    threshold = _otsu(grey)
    polarity = polarity_score(grey, threshold)
    dark = polarity >= 0 if dark_ink is None else dark_ink
    x = 1.0 - grey if dark else grey  # ink bright from here on
    paper = x <= (1.0 - threshold if dark else threshold)
    empty = InkMap(np.zeros_like(x), np.zeros(x.shape, bool), scale, dark, 0.0)
    if paper.all() or not paper.any():
        return SingleDigit(np.zeros((SIZE, SIZE), np.float32), empty, (0, 0, 0, 0), polarity)
    # Is the paper one level? Judged away from the strokes' anti-aliased rims; a tight crop with
    # hardly any paper away from the ink has no room for shading and counts as uniform.
    far = ndimage.binary_erosion(paper, iterations=2)
    uniform = far.sum() < 0.05 * far.size
    if not uniform:
        lo, hi = np.percentile(x[far], [10, 90])
        uniform = (hi - lo) < 0.25 * (float(np.median(x[~paper])) - float(np.median(x[far])))
    # Uniform paper (a canvas, a crop, a scan) is one level; shaded paper (a photo) is followed.
    bg = float(np.median(x[paper])) if uniform else _paper_estimate(x, paper)
    resid = np.clip(x - bg, 0, None)
    level = float(np.percentile(resid[~paper], 90))
    noise = _robust_std(resid[paper])
    if level < max(MIN_CONTRAST, 6 * noise):  # no ink clearly above the paper: a blank image
        return SingleDigit(np.zeros((SIZE, SIZE), np.float32), empty, (0, 0, 0, 0), polarity)
    ink = np.clip(resid / level, 0, 1).astype(np.float32)
    strong = ink > max(0.35, 4 * noise / level)
    im = InkMap(ink, strong, scale, dark, noise / level)
    mask = digit_mask(im)
    if not mask.any() or _edge_sharpness(ink, mask) < MIN_EDGE:  # a shadow or a lighting ramp, not pen strokes
        return SingleDigit(np.zeros((SIZE, SIZE), np.float32), empty, (0, 0, 0, 0), polarity)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return SingleDigit(normalize_digit(ink, mask), im, box, polarity, bool(uniform))


def digit_mask(im: InkMap) -> np.ndarray:
    """All the ink of a single-digit image, less dust (components under 8 px or 2 % of the largest:
    a detached flag or bar belongs to the digit), plus the faint ink connected to it (grow_mask)."""
    labels, n = ndimage.label(im.mask, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros_like(im.mask)
    areas = ndimage.sum_labels(np.ones(labels.shape, np.int32), labels, np.arange(1, n + 1))
    keep = np.flatnonzero(areas >= max(8, 0.02 * areas.max())) + 1
    return grow_mask(im, np.isin(labels, keep))


MIN_EDGE = 0.05  # ink units per working pixel: the slowest edge a pen stroke has (a blurry 8x8 scan: ~0.2)


def _edge_sharpness(ink: np.ndarray, mask: np.ndarray) -> float:
    """How steeply the ink rises at the mask's edge (median gradient there, ink units per pixel).
    Pen strokes rise over a few pixels; the threshold crossing of a smooth shadow or gradient
    over the whole frame rises over a hundred. A strip one working pixel across (a 300x1 image)
    holds no pen strokes, and np.gradient cannot take it: 0."""
    if min(ink.shape) < 2:
        return 0.0
    edge = mask & ~ndimage.binary_erosion(mask)
    if not edge.any():
        return 0.0
    gy, gx = np.gradient(ndimage.gaussian_filter(ink, 1.0))
    return float(np.median(np.hypot(gy, gx)[edge]))


def _paper_estimate(x: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """A smooth picture of the paper under `x` from its paper pixels only (normalised convolution
    on a coarse grid, then bilinear back up): shading and gradients go, the ink does not bias it."""
    h, w = x.shape
    side = 24  # cells on the longer side: the shading of one digit's frame is smooth at that scale
    f = max(h, w) / side
    gh, gw = max(1, round(h / f)), max(1, round(w / f))
    num = _resample(x * paper, gw, gh, Image.Resampling.BOX)
    den = _resample(paper.astype(np.float32), gw, gh, Image.Resampling.BOX)
    sigma = 3.0
    num, den = ndimage.gaussian_filter(num, sigma, mode="nearest"), ndimage.gaussian_filter(den, sigma, mode="nearest")
    fallback = float(np.median(x[paper]))
    coarse = np.where(den > 1e-3, num / np.maximum(den, 1e-3), fallback)
    return _resample(coarse, w, h, Image.Resampling.BILINEAR)


def _robust_std(v: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the paper's noise, ignoring specks."""
    if v.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def preprocess_digit(img: ImageSource | np.ndarray, dark_ink: bool | None = None) -> torch.Tensor:
    """A single-digit canvas or crop (any polarity, size, format) -> (1, 28, 28) float tensor in
    [0, 1], white on black: the canonical digit a Predictor reads (the single-digit path,
    `single_digit`). An image without ink gives an all-zero tensor (`.max() == 0`: no digit).
    """
    if isinstance(img, np.ndarray):
        grey = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    else:  # decoded at reduced size: the single-digit path works at SINGLE_MAX_SIDE px at most
        grey = load_grey(img, max_side=4 * SINGLE_MAX_SIDE)
    return torch.from_numpy(single_digit(grey, dark_ink).crop).unsqueeze(0)
