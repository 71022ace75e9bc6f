"""Find the ink and the digits in a grey image.

Steps: polarity (is the ink darker or lighter than the paper?), local background removal (a
low-percentile filter on a coarse grid follows lighting gradients and shadows), a threshold set
by the ink's own contrast and the noise level, connected components, merging the pieces of one
broken digit, splitting digits that touch, and grouping digits into lines read left to right.
All sizes are relative to the image or to the digits found, so a 28x28 canvas, an 8x8 scan
scaled up and a 12-megapixel photo go through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

WORK_SIDE = 1600  # larger images are processed at this longer side (boxes are scaled back)
MIN_CONTRAST = 0.06  # ink must differ from the local paper by at least this (pixels in [0, 1])


@dataclass
class InkMap:
    """The image as ink strength: 0 = paper, ~1 = the ink's typical darkness, background removed."""

    ink: np.ndarray  # float32 (h, w) at working resolution
    mask: np.ndarray  # bool (h, w): pixels above the threshold
    scale: float  # working / original resolution
    dark_ink: bool  # True when the ink is darker than the paper
    noise: float  # robust std of the paper, in ink units


@dataclass
class Blob:
    """One digit candidate: a box at working resolution and the component labels it owns."""

    x0: int
    y0: int
    x1: int  # exclusive
    y1: int
    labels: list[int] = field(default_factory=list)
    cut: tuple[int, int] | None = None  # columns [a, b) of the box kept after a split
    line: int = 0
    # A blob wide enough to be touching digits carries the ways to cut it (each a list of pieces,
    # left to right); the reader keeps the cut the model is most confident in, when that beats
    # the whole.
    splits: list[list[Blob]] = field(default_factory=list)
    # What the line reader read in this blob (reader.py; None: not asked): the number of digits
    # decides whole or split, and its cut is one of `splits`.
    line_read: list[int] | None = None

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


def to_working(grey: np.ndarray) -> tuple[np.ndarray, float]:
    h, w = grey.shape
    scale = min(1.0, WORK_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = np.asarray(Image.fromarray(grey, mode="F").resize(size, Image.Resampling.BOX), dtype=np.float32)
    # Tiny inputs (an 8x8 scan, a 28x28 canvas) are enlarged so that filters have room to work.
    if max(grey.shape) < 96:
        up = 96 / max(grey.shape)
        size = (max(1, round(grey.shape[1] * up)), max(1, round(grey.shape[0] * up)))
        grey = np.asarray(Image.fromarray(grey, mode="F").resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
        grey = np.clip(grey, 0, 1)
        scale *= up
    return grey, scale


def _bilinear_up(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with corners on corners: the same numbers as scipy's
    ndimage.zoom(order=1) to ~1e-6, at a tenth of the time (this runs twice per request)."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=True)[0, 0].numpy()


def _coarse_background(x: np.ndarray, percentile: float) -> np.ndarray:
    """A smooth estimate of the paper under `x` (ink bright): a low percentile over windows
    of ~1/5 of the image on a grid of at most 64 cells per side, then bilinear back up."""
    h, w = x.shape
    f = max(1, int(np.ceil(max(h, w) / 64)))
    hs, ws = -(-h // f), -(-w // f)
    pad = np.pad(x, ((0, hs * f - h), (0, ws * f - w)), mode="edge")
    # Per-cell low percentile (ink rarely fills a whole cell), then a spatial low percentile.
    cells = np.percentile(pad.reshape(hs, f, ws, f).transpose(0, 2, 1, 3).reshape(hs, ws, -1), 30, axis=2)
    k = max(3, int(round(max(hs, ws) / 5)) | 1)
    bg = ndimage.percentile_filter(cells, percentile, size=k, mode="nearest")
    bg = ndimage.uniform_filter(bg, size=max(3, k // 2), mode="nearest")
    return _bilinear_up(bg, (h, w))


def detect_dark_ink(grey: np.ndarray) -> bool:
    """True when the ink is darker than the paper.

    Paper is most of the image: after removing smooth shading (a wide blur), the ink is the
    heavier of the two tails of the residual. The border votes too: on a canvas or a crop the
    frame is paper.
    """
    # The wide blur runs on a copy of at most 128 px a side (a sigma of 1/8 of the image at full
    # size would cost seconds), then comes back up bilinearly.
    f = max(1, int(np.ceil(max(grey.shape) / 128)))
    small = grey[::f, ::f]
    smooth = ndimage.gaussian_filter(small, max(small.shape) / 8, mode="nearest")
    resid = grey - _bilinear_up(smooth, grey.shape)
    flat = np.sort(resid.ravel())
    k = max(1, flat.size // 100)
    dark_tail = -flat[:k].mean()  # how much darker than its surroundings the darkest 1 % is
    light_tail = flat[-k:].mean()
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    border_vote = float(np.median(border)) - float(np.median(grey))  # > 0: border lighter = paper light
    score = dark_tail - light_tail + 0.5 * border_vote
    return bool(score >= 0)


def _component_stroke_width(mask: np.ndarray) -> float:
    """The pen's width in pixels: 2 x area / boundary of each of the ink's components, their
    median weighted by area, no component weighing more than the 90th percentile of areas.

    Weighted by area because a page under a shadow's noisy edge has hundreds of 2-px specks of
    20-90 px against forty digits of 1,000 px: the plain median of components was the specks'
    width (2.7 px for 10-px strokes, make-pages --seed 32 page-007), the paper estimate's opening
    was then narrower than a stroke and hollowed every bold digit into fragments. The cap keeps
    a few large blobs (a shadow's edge, the table beside the page) from setting it alone."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return 0.0
    idx = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones(mask.shape, np.int32), labels, idx)
    boundary = ndimage.sum_labels(mask & ~ndimage.binary_erosion(mask), labels, idx)
    ok = area >= 20
    if not ok.any():
        return 2.0
    width = 2 * area[ok] / np.maximum(1, boundary[ok])
    weight = np.minimum(area[ok], np.percentile(area[ok], 90))
    order = np.argsort(width)
    cum = np.cumsum(weight[order])
    return float(width[order][np.searchsorted(cum, cum[-1] / 2)])


def ink_map(grey: np.ndarray) -> InkMap:
    """Polarity, background removal and threshold: the ink strength and mask at working size.

    The paper is estimated twice: first smoothly (a low percentile on a coarse grid), which
    gives a rough mask and so the pen's width; then by a grey opening wider than the pen, which
    removes the strokes but keeps sharp-edged shading (a hard shadow, the table at the page's
    corner) that a smooth estimate would turn into ink.
    """
    work, scale = to_working(grey)
    # A margin of paper (the border's median) around the image: a tight crop or a small scan
    # where the digit fills the frame then has paper around it, as a page does.
    h0, w0 = work.shape
    pad = max(8, round(0.25 * max(h0, w0))) if max(h0, w0) <= 200 else 0  # small inputs only
    border = np.concatenate([work[0], work[-1], work[:, 0], work[:, -1]])
    work = np.pad(work, pad, mode="constant", constant_values=float(np.median(border)))
    dark = detect_dark_ink(work)
    x = 1.0 - work if dark else work.copy()  # ink bright from here on
    rough = x - _coarse_background(x, 20)
    noise0 = _noise(rough)
    rough_mask = rough > max(0.5 * float(np.percentile(rough, 99.5)), 4 * noise0, MIN_CONTRAST)
    pen = _component_stroke_width(rough_mask)
    size = int(np.clip(round(3 * pen + 3), 5, max(5, max(x.shape) // 3)))
    opened = ndimage.maximum_filter(ndimage.minimum_filter(x, size), size)
    bg = np.maximum(ndimage.uniform_filter(opened, max(3, size // 3)), _coarse_background(x, 5) - 2 * noise0)
    bg = np.minimum(bg, opened) if size > 5 else bg
    resid = x - bg
    noise = _noise(resid)
    resid = np.clip(resid, 0, None)
    strong = resid[resid > max(4 * noise, MIN_CONTRAST)]
    resid = resid[pad : pad + h0, pad : pad + w0]
    strong = strong if strong.size < 8 else resid[resid > max(4 * noise, MIN_CONTRAST)]
    if strong.size < 8:
        return InkMap(np.zeros_like(resid), np.zeros(resid.shape, bool), scale, dark, noise)
    level = float(np.percentile(strong, 90))  # the ink's typical strength (stroke cores)
    thresh = max(0.35 * level, 4 * noise, MIN_CONTRAST)
    ink = np.clip(resid / level, 0, 1).astype(np.float32)
    mask = resid > thresh
    return InkMap(ink, mask, scale, dark, noise / level)


WEAK_INK = 0.06  # ink units (1 = the ink's typical strength): the floor of grow_mask's weak threshold


def grow_mask(im: InkMap, mask: np.ndarray) -> np.ndarray:
    """Hysteresis (as Canny's edges): `mask` plus the faint ink connected to it, i.e. pixels above
    max(WEAK_INK, 3 x the paper's noise) in the components that touch `mask`. The threshold that
    finds digits (about a third of the ink's strength) drops the faint ends of strokes a light
    pencil or a small, blurred scan leaves; cropping to it cut a 9's loop down to a 1 (UCI digits:
    94.6 % -> 96.7 % read correctly with the growth, docs/handwriting.md)."""
    weak = im.ink > max(WEAK_INK, 3 * im.noise)
    labels, _ = ndimage.label(weak | mask, structure=np.ones((3, 3)))
    keep = np.unique(labels[mask])
    grown = np.isin(labels, keep[keep > 0])
    # The anti-aliased rim one pixel around every stroke is not a faint stroke: leaving it out
    # keeps a clean digit's box (and so its size in 28x28) where MNIST would put it.
    rim = ndimage.binary_dilation(mask, structure=np.ones((3, 3)))
    return mask | (grown & ~rim)


def _noise(resid: np.ndarray) -> float:
    """Robust std of the paper: the spread of the residual's lower half (ink is the upper tail)."""
    med = float(np.median(resid))
    lower = resid[resid <= med]
    return float(1.4826 * np.median(med - lower)) * 1.2 if lower.size else 0.0


def find_digits(im: InkMap) -> tuple[list[Blob], np.ndarray]:
    """Components -> digit candidates (pieces merged, touching digits split), in reading order.

    Returns the blobs and the label image (blob.labels index into it).
    """
    labels, n = ndimage.label(im.mask, structure=np.ones((3, 3)))
    if n == 0:
        return [], labels
    slices = ndimage.find_objects(labels)
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    h, w = im.mask.shape
    blobs = []
    for i, sl in enumerate(slices, 1):
        b = Blob(sl[1].start, sl[0].start, sl[1].stop, sl[0].stop, [i])
        blobs.append((b, float(areas[i - 1])))
    # Size filter relative to the typical component: specks and dust go, digits stay, and blobs
    # far bigger than the text (shadow edges, the table beside the page) go too.
    candidates = [(max(b.h, b.w), a) for b, a in blobs if a >= 8 and max(b.h, b.w) >= 0.01 * max(h, w)]
    # Not slivers under 2 px wide on average: a photo's paper edge broken into dozens of dashes
    # otherwise sets the typical size, and every digit is then "far bigger than the text"
    # (make-pages --seed 12, page-008, read as nothing). Unless slivers are all there is.
    strokes = [side for side, a in candidates if a >= 2 * side]
    sides = np.array(strokes if len(strokes) >= 3 else [side for side, _ in candidates])
    if sides.size == 0:
        return [], labels
    ref = float(np.median(sides))
    keep, small = [], []
    for b, area in blobs:
        side = max(b.h, b.w)
        if area < 8 or (len(sides) >= 3 and side > 3 * ref):
            continue
        at_border = b.x0 == 0 or b.y0 == 0 or b.x1 == w or b.y1 == h
        if at_border and min(b.h, b.w) < 0.2 * ref:  # the page's edge, not a digit
            continue
        margin = 0.04 * max(h, w)
        near_border = b.x0 < margin or b.y0 < margin or b.x1 > w - margin or b.y1 > h - margin
        if near_border and max(b.h, b.w) > 5 * min(b.h, b.w):  # a paper edge in a photo
            continue
        if b.w > 4 * b.h and b.h < 0.2 * ref and b.w > 0.6 * ref:  # a rule or an edge, too long for a dash
            continue
        if side >= 0.6 * ref:
            keep.append(b)
        elif side >= 0.08 * ref:
            small.append(b)
    if not keep:
        return [], labels
    keep = _merge_pieces(keep, small, ref)
    heights = np.array([b.h for b in keep], dtype=float)
    typical_h = float(np.median(heights))
    # Not a digit: lines much taller/longer than the text (a ruled line, the page edge).
    keep = [b for b in keep if not (b.w > 12 * typical_h and b.h < 0.5 * b.w / 4)]
    keep = _split_touching(keep, labels, typical_h)
    return _order_lines(keep), labels


def _x_overlap(a: Blob, b: Blob) -> float:
    inter = min(a.x1, b.x1) - max(a.x0, b.x0)
    return inter / max(1, min(a.w, b.w))


def _merge(a: Blob, b: Blob) -> Blob:
    return Blob(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1), a.labels + b.labels)


def _merge_pieces(blobs: list[Blob], small: list[Blob], ref: float) -> list[Blob]:
    """Pieces of one digit (a 5's flag, a broken 4, a 7's bar) overlap in x and are close in y:
    merge them (`_merge_overlapping`). Small pieces join the nearest digit; alone, a small piece
    is a digit only if it is not dust (40 % of the typical size)."""
    tallest = max(b.h for b in blobs)
    typical_h = float(np.median([b.h for b in blobs if b.h >= 0.5 * tallest]))
    # Flat pieces (a 5's flag, a 7's bar) are pieces, not digits, however wide.
    small = small + [b for b in blobs if b.h < 0.45 * typical_h]
    blobs = [b for b in blobs if b.h >= 0.45 * typical_h]
    blobs = _merge_overlapping(blobs, typical_h)
    alone = []
    for s in sorted(small, key=lambda s: -s.w * s.h):
        best, best_d = None, None
        for b in blobs:
            dx = max(b.x0 - s.x1, s.x0 - b.x1, 0)
            dy = max(b.y0 - s.y1, s.y0 - b.y1, 0)
            d = float(np.hypot(dx, dy))
            if d <= 0.25 * ref and _merge(b, s).w <= 1.1 * max(typical_h, b.h) and (best_d is None or d < best_d):
                best, best_d = b, d
        if best is not None:
            blobs[blobs.index(best)] = _merge(best, s)
        elif s.h >= 0.4 * ref:  # alone, only a piece tall enough to be a digit (not a dash, not an edge)
            blobs.append(s)
        else:
            alone.append(s)
    # Short pieces near no digit are one when they overlap and together are tall enough: a small
    # 5 whose flag and bowl are apart is two pieces, each too short to stand alone and too far
    # from its neighbours to join them. Not specks (under 30 % of the typical size): two dots
    # one above the other are no digit.
    alone = _merge_overlapping([s for s in alone if max(s.h, s.w) >= 0.3 * ref], typical_h)
    blobs += [s for s in alone if s.h >= 0.4 * ref]
    return blobs


STACKED = 0.4  # x the shorter piece's height: pieces overlapping less in y are one above the other


def _merge_overlapping(blobs: list[Blob], typical_h: float) -> list[Blob]:
    """Merge boxes that overlap in x by 30 % of the narrower one and are close in y while the
    union stays digit-shaped: no wider than the typical height, or 1.25 of it for pieces one
    above the other (a wide 5's bowl under its flag and stem). Neighbours on a line overlap in
    y by most of their height, so the wider allowance does not join them."""
    blobs = list(blobs)
    changed = True
    while changed:
        changed = False
        blobs.sort(key=lambda b: b.x0)
        for i in range(len(blobs)):
            for j in range(i + 1, len(blobs)):
                a, b = blobs[i], blobs[j]
                if b.x0 > a.x1:
                    break
                gap = max(a.y0, b.y0) - min(a.y1, b.y1)  # < 0: they overlap in y by -gap
                stacked = -gap <= STACKED * min(a.h, b.h)
                merged = _merge(a, b)
                if (
                    _x_overlap(a, b) >= 0.3
                    and gap < 0.35 * typical_h
                    and merged.h <= 1.5 * typical_h
                    and merged.w <= (1.25 if stacked else 1.0) * max(typical_h, merged.h)
                ):
                    blobs[i] = merged
                    del blobs[j]
                    changed = True
                    break
            if changed:
                break
    return blobs


SPLIT_MIN_WIDTH = 0.9  # x height: narrower blobs are one digit (a 1 touching a 6 is ~0.95 x as wide as high)


def _split_touching(blobs: list[Blob], labels: np.ndarray, typical_h: float) -> list[Blob]:
    """A component wider than a digit may be several digits touching: propose cuts at the
    columns with the least ink (`blob.splits`). Two kinds: k equal-width digits (k from the
    width), and two digits of any widths (a 1 beside a 6 meets it far from the middle)."""
    for b in blobs:
        ref_h = max(b.h, 0.8 * typical_h)
        if b.w < SPLIT_MIN_WIDTH * ref_h:
            continue
        region = np.isin(labels[b.y0 : b.y1, b.x0 : b.x1], b.labels)
        cols = ndimage.uniform_filter1d(region.sum(0).astype(float), size=max(1, b.w // 30))
        proposals: list[list[int]] = []
        if b.w >= 1.2 * ref_h:  # one wide digit (a 5's flag, a 2's tail) is up to ~1.2 x its height
            k = max(2, int(round(b.w / (0.75 * ref_h))))
            cuts = [0]
            for j in range(1, k):
                ideal = j * b.w / k
                lo, hi = int(ideal - 0.3 * b.w / k), int(ideal + 0.3 * b.w / k) + 1
                lo, hi = max(lo, cuts[-1] + 1), min(hi, b.w - 1)
                cuts.append(lo + int(np.argmin(cols[lo:hi])) if hi > lo else int(ideal))
            proposals.append([*cuts, b.w])
        for cut in _emptiest_columns(cols, int(0.15 * b.w), int(0.85 * b.w), min_gap=max(2, b.w // 8)):
            proposals.append([0, cut, b.w])
        seen = set()
        for cuts in proposals:
            pieces = _pieces(b, region, cuts, ref_h)
            key = tuple(p.cut for p in pieces)
            if len(pieces) >= 2 and key not in seen:
                seen.add(key)
                b.splits.append(pieces)
    return blobs


def _emptiest_columns(cols: np.ndarray, lo: int, hi: int, min_gap: int, n: int = 3) -> list[int]:
    """Up to n columns in [lo, hi) with the least ink, at least min_gap apart (local minima)."""
    chosen: list[int] = []
    for c in lo + np.argsort(cols[lo:hi], kind="stable"):
        if all(abs(int(c) - o) >= min_gap for o in chosen):
            chosen.append(int(c))
            if len(chosen) == n:
                break
    return chosen


def _pieces(b: Blob, region: np.ndarray, cuts: list[int], ref_h: float) -> list[Blob]:
    """The pieces between consecutive cuts; [] if any would be too thin (under a tenth of the
    digit height `ref_h`, 2 px at least) or too short (under 0.35 of it) for a digit."""
    min_w, min_h = max(2, int(0.1 * ref_h)), 0.35 * ref_h
    pieces = []
    for a, c in zip(cuts, cuts[1:], strict=False):
        rows = np.flatnonzero(region[:, a:c].any(1))
        if c - a < min_w or rows.size == 0 or rows[-1] + 1 - rows[0] < min_h:
            return []
        pieces.append(Blob(b.x0 + a, b.y0 + int(rows[0]), b.x0 + c, b.y0 + int(rows[-1]) + 1, b.labels, (a, c)))
    return pieces


def _order_lines(blobs: list[Blob]) -> list[Blob]:
    """Group into lines by chaining left to right (tolerates a slightly rotated page), then sort
    lines top to bottom and digits left to right."""
    lines: list[list[Blob]] = []
    for b in sorted(blobs, key=lambda b: b.cx):
        best, best_d = None, None
        for line in lines:
            last = line[-1]
            d = abs(b.cy - last.cy)
            if d < 0.6 * max(last.h, b.h) and (best_d is None or d < best_d):
                best, best_d = line, d
        if best is None:
            lines.append([b])
        else:
            best.append(b)
    lines = _join_split_lines(lines, float(np.median([b.h for b in blobs])))
    lines.sort(key=lambda line: float(np.mean([b.cy for b in line])))
    ordered = []
    for i, line in enumerate(lines):
        for b in line:
            b.line = i
            for pieces in b.splits:
                for piece in pieces:
                    piece.line = i
            ordered.append(b)
    return ordered


SAME_LINE = 0.35  # x the typical digit height: neighbours whose centres are closer in y share a line


def _join_split_lines(lines: list[list[Blob]], typical_h: float) -> list[list[Blob]]:
    """Join a line that chaining broke off its neighbour: a digit in two pieces (a 5's flag
    above, its bowl below) starts a line of its own, and the digits after it follow whichever
    piece is nearer, so one written line is read as two. A line joins another when each of its
    digits has a digit of the other within 1.5 heights in x, and those neighbours' centres are,
    as a median, within SAME_LINE heights in y: real lines are a line pitch apart (> 1 height).
    Compared locally, not by the lines' mean heights, so a rotated page's lines stay apart."""
    reach = 1.5 * typical_h
    joined = True
    while joined:
        joined = False
        lines.sort(key=len)
        for a in lines:
            for b in lines:
                if b is a:
                    continue
                gaps = []
                for x in a:
                    near = [abs(x.cy - y.cy) for y in b if abs(x.cx - y.cx) <= reach]
                    if not near:
                        break
                    gaps.append(min(near))
                if len(gaps) == len(a) and float(np.median(gaps)) < SAME_LINE * typical_h:
                    b.extend(a)
                    b.sort(key=lambda blob: blob.cx)
                    lines.remove(a)
                    joined = True
                    break
            if joined:
                break
    return lines


def cuts_between_peaks(b: Blob, region: np.ndarray, peaks: list[float], ref_h: float) -> list[Blob]:
    """The line reader's cut of a component (`region`: its own pixels in its box) into one piece
    per digit it read: between the columns where two neighbours' CTC outputs peak, at the column
    with the least ink in the middle 60 % of the way. [] when a piece would be no digit."""
    cols = ndimage.uniform_filter1d(region.sum(0).astype(float), size=max(1, b.w // 30))
    cuts = [0]
    for p, q in zip(peaks, peaks[1:], strict=False):
        lo, hi = int(p + 0.2 * (q - p)), int(np.ceil(p + 0.8 * (q - p))) + 1
        lo, hi = max(lo, cuts[-1] + 1), min(hi, b.w - 1)
        if hi <= lo:
            return []
        cuts.append(lo + int(np.argmin(cols[lo:hi])))
    return _pieces(b, region, [*cuts, b.w], ref_h)


PAIR_CUTS = 9  # columns tried across a component the line reader read as two digits


def pair_cuts(b: Blob, region: np.ndarray, ref_h: float) -> list[list[Blob]]:
    """Cuts of a component the line reader read as two digits, at PAIR_CUTS columns evenly spread
    over the middle 60 % of its width, for the reader to choose from. Neither the column with
    the least ink nor the CTC peaks place it well: through a 0's hole a column meets two thin
    strokes, where a 4 touches the 0's side it meets the whole side, and CTC fires near a digit's
    left edge, not its centre (make-pages --seed 34, page-016: `04` read `64`, the 0's right half
    given to the 4)."""
    out = []
    for c in np.linspace(0.2 * b.w, 0.8 * b.w, PAIR_CUTS):
        pieces = _pieces(b, region, [0, int(round(c)), b.w], ref_h)
        if len(pieces) == 2:
            out.append(pieces)
    return out
