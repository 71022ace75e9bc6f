"""Read digits from an image with a Predictor: the public API the CLI and the web page call.

reading = read_image("page.jpg", Predictor.load(run))
reading.text          # "0412\n7781"
reading.digits[0]     # Digit(digit=0, confidence=0.998, box=[x, y, w, h], line=0, probs, crop)
reading.to_json()     # {"file", "text", "digits": [...], "width", "height", ...}
"""

from __future__ import annotations

import atexit
import collections
import functools
import itertools
import multiprocessing
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistlab.errors import MnistlabError
from mnistlab.handwriting.images import GreyImage, ImageSource, load_image
from mnistlab.handwriting.lines import LineReader, to_strip
from mnistlab.handwriting.normalize import SingleDigit, normalize_digit, single_digit
from mnistlab.handwriting.segment import WORK_SIDE, Blob, InkMap, cuts_between_peaks, find_digits, ink_map, pair_cuts
from mnistlab.predictor import Predictor

LOW_CONFIDENCE = 0.7  # below this a digit is flagged (shown with "?")
NO_DIGIT = "no digit found"


@dataclass
class Digit:
    digit: int
    confidence: float
    box: list[int]  # [x, y, w, h] in the original image's pixels
    line: int
    probs: list[float]  # 10 softmax probabilities
    crop: torch.Tensor  # (28, 28) float in [0, 1], white on black: what the model saw

    @property
    def low_confidence(self) -> bool:
        return self.confidence < LOW_CONFIDENCE

    def to_json(self) -> dict[str, Any]:
        return {
            "digit": self.digit,
            "confidence": round(self.confidence, 4),
            "box": self.box,
            "line": self.line,
            "low_confidence": self.low_confidence,
            "probs": [round(p, 4) for p in self.probs],
        }


@dataclass
class Reading:
    file: str
    width: int
    height: int
    digits: list[Digit] = field(default_factory=list)
    dark_ink: bool = True
    ink: InkMap | None = field(default=None, repr=False)  # kept for --explain

    @property
    def text(self) -> str:
        """The digits read, lines separated by newlines ("" when none were found)."""
        lines: dict[int, str] = {}
        for d in self.digits:
            lines[d.line] = lines.get(d.line, "") + str(d.digit)
        return "\n".join(lines[k] for k in sorted(lines))

    @property
    def found(self) -> bool:
        return bool(self.digits)

    @property
    def low_confidence(self) -> list[Digit]:
        return [d for d in self.digits if d.low_confidence]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "text": self.text,
            "found": self.found,
            "message": None if self.found else NO_DIGIT,
            "width": self.width,
            "height": self.height,
            "ink": "dark" if self.dark_ink else "light",
            "low_confidence": len(self.low_confidence),
            "digits": [d.to_json() for d in self.digits],
        }


@dataclass
class _Pending:
    """An image segmented and normalised, waiting for the model (so many files share batches).

    Page path: `crops` holds one crop per blob, then the crops of the proposed pieces of wide
    blobs. Single-digit path: `singles` holds the digit read with the likelier polarity and, when
    the image could not tell, the other one; `crops` theirs, in that order."""

    reading: Reading
    blobs: list[Blob]
    crops: np.ndarray  # (n, 28, 28)
    singles: list[SingleDigit] = field(default_factory=list)


def _crop_blob(im: InkMap, labels: np.ndarray, b: Blob) -> np.ndarray:
    own = np.isin(labels[b.y0 : b.y1, b.x0 : b.x1], b.labels)
    if b.cut is not None:  # a digit cut from touching neighbours: only its own columns
        keep = np.zeros_like(own)
        a, c = b.cut
        # The cut is relative to the pre-split box; the box now starts at column a.
        keep[:, : c - a] = True
        own &= keep
    ink = im.ink[b.y0 : b.y1, b.x0 : b.x1] * own
    return normalize_digit(ink, own & im.mask[b.y0 : b.y1, b.x0 : b.x1])


LINE_MIN_WIDTH = 0.8  # x its height: a component at least this wide is read by the line reader too
# Below this CTC peak probability (its least sure digit), the line reader is not asked: on the
# tuning pages (make-pages --seed 0) 0.8 and 0.9 read the same, 0.95 as the classifier alone, and
# with no floor it splits single wide digits.
LINE_MIN_CONFIDENCE = 0.9

# A line reader given as a run folder (what crosses to the worker processes): loaded once a process.
Lines = LineReader | str | Path | None


@functools.cache
def _load_lines(path: str) -> LineReader:
    return LineReader.load(path)


def _read_wide(im: InkMap, labels: np.ndarray, blobs: list[Blob], lines: LineReader) -> None:
    """Components wider than LINE_MIN_WIDTH heights, read by the line reader: how many digits
    (`blob.line_read`) and, for two or more, its cut between their CTC peaks as one more split;
    for two, also the cuts of `segment.pair_cuts`."""
    wide = [b for b in blobs if b.w >= LINE_MIN_WIDTH * b.h]
    if not wide:
        return
    typical_h = float(np.median([b.h for b in blobs]))
    owns = [np.isin(labels[b.y0 : b.y1, b.x0 : b.x1], b.labels) for b in wide]
    strips = [to_strip(im.ink[b.y0 : b.y1, b.x0 : b.x1] * own, lines.height) for b, own in zip(wide, owns, strict=True)]
    for b, own, strip, (digits, cols, confs) in zip(wide, owns, strips, lines.read(strips), strict=True):
        if not digits or min(confs) < LINE_MIN_CONFIDENCE:  # unsure: the classifier alone decides
            continue
        b.line_read = digits
        if len(digits) < 2:
            continue
        sx = b.w / strip.shape[1]
        peaks, ref_h = [c * sx for c in cols], max(b.h, 0.8 * typical_h)
        pieces = cuts_between_peaks(b, own, peaks, ref_h)
        more = [pieces] if len(pieces) == len(digits) else []
        if len(digits) == 2:
            more += pair_cuts(b, own, ref_h)
        known = {tuple(p.cut for p in ps) for ps in b.splits}
        for ps in more:
            key = tuple(p.cut for p in ps)
            if key not in known:
                known.add(key)
                for piece in ps:
                    piece.line = b.line
                b.splits.append(ps)


def segment_image(
    source: ImageSource | np.ndarray, name: str = "image", single: bool | None = None, lines: Lines = None
) -> _Pending:
    """Find the digits of one image: with the single-digit path when `single`, or when `single` is
    None and the image is one digit's shape (`SingleDigit.looks_like_one_digit`); else the page
    path (lines of digits, touching digits split; with `lines`, a line-reader run, the components
    wider than one digit are also read by it: see `_finish`)."""
    if isinstance(source, np.ndarray):
        grey = np.clip(np.asarray(source, np.float32), 0, 1)
        loaded = GreyImage(grey, grey.shape[1], grey.shape[0])
    else:  # decoded at the digit finder's working size: a big photo never exists as floats
        loaded = load_image(source, name, max_side=WORK_SIDE)
    w, h = loaded.width, loaded.height
    one = single_digit(loaded.grey)
    auto_single = single is None and one.looks_like_one_digit()
    # The page path's (ink map, blobs, labels) when a big image's shape alone would pick the
    # single-digit path: computed once, used to decide and, for a page, to read it.
    page = _find_page_digits(loaded) if auto_single and max(w, h) >= PAGE_CHECK_SIDE else None
    if single or (auto_single and not (page and _holds_lines(page[1]))):
        singles = [one] if one.found else []
        if singles and not one.sure_of_polarity:  # the frame could not tell: the model will
            other = single_digit(loaded.grey, dark_ink=not one.ink.dark_ink)
            singles += [other] if other.found else []
        for s in singles:
            s.ink.scale *= loaded.scale  # working pixels per pixel of the image itself
        crops = np.stack([s.crop for s in singles]) if singles else np.zeros((0, 28, 28), np.float32)
        return _Pending(Reading(name, w, h, dark_ink=one.ink.dark_ink, ink=one.ink), [], crops, singles)
    im, blobs, labels = page or _find_page_digits(loaded)
    if lines is not None and blobs:
        _read_wide(im, labels, blobs, lines if isinstance(lines, LineReader) else _load_lines(str(lines)))
    every = blobs + [piece for b in blobs for pieces in b.splits for piece in pieces]
    crops = np.stack([_crop_blob(im, labels, b) for b in every]) if every else np.zeros((0, 28, 28), np.float32)
    return _Pending(Reading(name, w, h, dark_ink=im.dark_ink, ink=im), blobs, crops)


# From this longer side (pixels of the image) on, an image that looks like one digit is also
# segmented as a page before the single-digit path takes it: a photo of a page whose hard-edged
# shadow the single-digit path's one threshold takes for one big blob of ink (make-pages --seed 11,
# page-015, was read as "4"). Smaller images (crops, scans of one digit, the 280-px web canvas) are
# not: the check would cost a page segmentation each.
PAGE_CHECK_SIDE = 300


def _find_page_digits(loaded: GreyImage) -> tuple[InkMap, list[Blob], np.ndarray]:
    """The page path's segmentation: ink map (its scale in working pixels per pixel of the image
    itself, so boxes are in its frame), digit blobs and the label image."""
    im = ink_map(loaded.grey)
    im.scale *= loaded.scale
    blobs, labels = find_digits(im)
    return im, blobs, labels


def _holds_lines(blobs: list[Blob]) -> bool:
    """Did the page path find at least two lines of at least two digits each? No single digit
    does, a page does, whatever its lighting (the page path removes the background locally)."""
    per_line = collections.Counter(b.line for b in blobs)
    return sum(n >= 2 for n in per_line.values()) >= 2


def _box(b: Blob, scale: float, w: int, h: int) -> list[int]:
    x0, y0 = int(b.x0 / scale), int(b.y0 / scale)
    x1, y1 = min(w, int(np.ceil(b.x1 / scale))), min(h, int(np.ceil(b.y1 / scale)))
    return [x0, y0, max(1, x1 - x0), max(1, y1 - y0)]


SPLIT_MARGIN = 0.2  # the pieces must beat the whole by this much mean log-probability ...
NARROW_SPLIT_MARGIN = 0.5  # ... by more when the blob is no wider than one wide digit (< 1.2 x its height)
SPLIT_MIN_CONFIDENCE = 0.5  # and each piece must look like a digit on its own


def _finish_single(p: _Pending, probs: torch.Tensor) -> Reading:
    """The single digit, in the polarity the model is more confident of when the image was unsure."""
    r = p.reading
    k = int(probs.max(1).values.argmax())
    one, pr = p.singles[k], probs[k]
    conf, digit = pr.max(0)
    x0, y0, x1, y1 = one.box
    scale = one.ink.scale
    box = Blob(x0, y0, x1, y1)
    r.dark_ink, r.ink = one.ink.dark_ink, one.ink
    r.digits.append(
        Digit(int(digit), float(conf), _box(box, scale, r.width, r.height), 0, pr.tolist(), torch.from_numpy(one.crop))
    )
    return r


def _finish(p: _Pending, probs: torch.Tensor) -> Reading:
    """Pick whole-or-split for wide blobs, then make the Digits. A blob the line reader read
    (`blob.line_read`) is whole when it read one digit, and cut into as many pieces as it read
    digits when a proposed cut (its own, between its CTC peaks, or segment.py's) has that many:
    the one whose pieces the classifier is surest of (mean log-probability). Otherwise, and
    without a line reader, the classifier's confidence in the pieces against the whole decides."""
    if p.singles:
        return _finish_single(p, probs)
    r = p.reading
    scale = r.ink.scale if r.ink is not None else 1.0
    n = len(p.blobs)
    next_piece = n
    chosen: list[tuple[Blob, int]] = []  # (blob, crop index)
    for i, b in enumerate(p.blobs):
        best: tuple[float, list[tuple[Blob, int]]] | None = None  # (mean log-prob, pieces)
        fits: list[tuple[float, list[tuple[Blob, int]]]] = []  # the cuts into as many digits as the line reader read
        k = len(b.line_read) if b.line_read else 0
        for pieces in b.splits:
            idx = list(range(next_piece, next_piece + len(pieces)))
            next_piece += len(pieces)
            conf = probs[idx].max(1).values
            score = float(torch.log(conf).mean())
            if len(pieces) == k:
                fits.append((score, list(zip(pieces, idx, strict=True))))
            if float(conf.min()) >= SPLIT_MIN_CONFIDENCE and (best is None or score > best[0]):
                best = (score, list(zip(pieces, idx, strict=True)))
        if k == 1:  # the line reader read one digit: the whole blob
            chosen.append((b, i))
            continue
        if fits:  # as many pieces as it read digits: the cut the classifier is surest of ...
            # ... of those where it reads the digits the line reader read, when there are any: the
            # classifier alone is sure of a 0's left half as a 6 (0.93), the two models together not.
            agree = [f for f in fits if [int(probs[j].argmax()) for _, j in f[1]] == b.line_read]
            chosen += max(agree or fits, key=lambda f: f[0])[1]
            continue
        if best is None or (n == 1 and b.w < 1.6 * b.h):  # a lone digit (a canvas, a crop): wide, not two
            chosen.append((b, i))
            continue
        whole = float(torch.log(probs[i].max()))
        # Wider than 1.6 heights is rarely one digit: then the split wins unless the whole is
        # clearly more convincing.
        if b.w >= 1.6 * b.h:
            margin = -SPLIT_MARGIN / 2
        else:
            margin = SPLIT_MARGIN if b.w >= 1.2 * b.h else NARROW_SPLIT_MARGIN
        chosen += best[1] if best[0] > whole + margin else [(b, i)]
    if r.ink is not None:
        chosen = _drop_edge_marks(chosen, probs, r.ink.mask.shape)
    for b, i in chosen:
        pr = probs[i]
        conf, digit = pr.max(0)
        r.digits.append(
            Digit(
                int(digit),
                float(conf),
                _box(b, scale, r.width, r.height),
                b.line,
                pr.tolist(),
                torch.from_numpy(p.crops[i]),
            )
        )
    return r


EDGE_MARGIN = 0.04  # x the frame's longer side: segment.find_digits's band for the paper's edge


def _drop_edge_marks(
    chosen: list[tuple[Blob, int]], probs: torch.Tensor, shape: tuple[int, int]
) -> list[tuple[Blob, int]]:
    """A page's lone mark at the frame's edge is not a line of one digit when the model is not
    sure of it, or when it lies outside the block of text (more than a digit's height beyond
    every line of two digits or more): it is what is left of the paper's edge or corner (an L the
    edge rules let through, which reads as a sure 7) after the digits' lines were found. Only
    when the page has a line of two digits or more, so an image of one digit (or of marks the
    page path could not join, a stretched 1 cut in pieces) still answers."""
    h, w = shape
    margin = EDGE_MARGIN * max(h, w)
    per_line = collections.Counter(b.line for b, _ in chosen)
    text = [b for b, _ in chosen if per_line[b.line] >= 2]
    if not text:
        return chosen
    reach = float(np.median([b.h for b in text]))
    x0, y0 = min(b.x0 for b in text) - reach, min(b.y0 for b in text) - reach
    x1, y1 = max(b.x1 for b in text) + reach, max(b.y1 for b in text) + reach

    def edge_mark(b: Blob, i: int) -> bool:
        at_edge = b.x0 < margin or b.y0 < margin or b.x1 > w - margin or b.y1 > h - margin
        if per_line[b.line] != 1 or not at_edge:
            return False
        outside = b.x1 < x0 or b.x0 > x1 or b.y1 < y0 or b.y0 > y1
        return outside or float(probs[i].max()) < LOW_CONFIDENCE

    kept = [(b, i) for b, i in chosen if not edge_mark(b, i)]
    renumber = {old: new for new, old in enumerate(sorted({b.line for b, _ in kept}))}
    for b, _ in kept:  # lines stay numbered 0, 1, ... in the JSON
        b.line = renumber[b.line]
    return kept


def read_image(
    source: ImageSource | np.ndarray,
    predictor: Predictor,
    name: str | None = None,
    single: bool | None = None,
    lines: Lines = None,
) -> Reading:
    """Read the digits in one image (bytes, a path, a PIL image, or a grey array in [0, 1]).

    `single=True` reads it as one digit (no page rules), False as a page, None decides by its
    shape. `lines` (a LineReader or its run folder) also reads the components of a page that are
    wider than one digit (touching digits): how many digits, and where to cut. Raises ImageError for a file that is not a readable image. A blank image gives a
    Reading with no digits (`reading.found` is False): never a guess.
    """
    name = name or (str(source) if isinstance(source, str | Path) else "image")
    pending = segment_image(source, name, single, lines)
    return _finish(pending, predictor.probs(torch.from_numpy(pending.crops)))


def read_images(
    sources: Iterable[ImageSource],
    predictor: Predictor,
    batch_digits: int = 2048,
    single: bool | None = None,
    names: Iterable[str] | None = None,
    workers: int | None = None,
    lines: Lines = None,
) -> Iterator[Reading | Exception]:
    """Read many images (paths, bytes or PIL images), batching the digits of several through the
    model. Yields, in order, a Reading or the MnistlabError that image raised (the others are
    still read). `single` and `lines` as in `read_image`; `names` label the readings (default: the paths).

    Finding the digits is plain Python and NumPy per image, so many images are split over
    `workers` processes (default: the torch threads mnistlab chose, i.e. the free cores; 1 on a
    busy machine); the model reads their digits here, in batches."""
    queue: list[_Pending | Exception] = []
    pending_digits = 0

    def flush() -> Iterator[Reading | Exception]:
        ready = [q for q in queue if isinstance(q, _Pending)]
        crops = [q.crops for q in ready]
        probs = predictor.probs(torch.from_numpy(np.concatenate(crops))) if crops else torch.zeros(0, 10)
        i = 0
        for q in queue:
            if isinstance(q, Exception):
                yield q
            else:
                yield _finish(q, probs[i : i + len(q.crops)])
                i += len(q.crops)
        queue.clear()

    labels = iter(names) if names is not None else None
    jobs = (
        (
            src,
            next(labels) if labels is not None else (str(src) if isinstance(src, str | Path) else "image"),
            single,
            lines,
        )
        for src in sources
    )
    for p in _segment_all(jobs, torch.get_num_threads() if workers is None else workers):
        queue.append(p)
        pending_digits += len(p.crops) if isinstance(p, _Pending) else 0
        if pending_digits >= batch_digits or len(queue) >= 256:
            yield from flush()
            pending_digits = 0
    yield from flush()


PARALLEL_FROM = 32  # images: fewer are read in this process (starting a worker costs ~1 s)


Job = tuple[ImageSource, str, bool | None, Lines]


def _segment_one(job: Job) -> _Pending | MnistlabError:
    try:
        return segment_image(*job)
    except MnistlabError as e:
        return e


def _for_worker(job: Job) -> Job:
    """A job as it crosses to a worker process: a line reader by its run folder (loaded there once)."""
    lines = job[3]
    return (*job[:3], str(lines.path)) if isinstance(lines, LineReader) and lines.path is not None else job


def _segment_all(jobs: Iterator[Job], workers: int) -> Iterator[_Pending | Exception]:
    """segment_image over `jobs`, in order: here, or in `workers` processes once there are at least
    PARALLEL_FROM images. Windows of 64 images per worker bound what waits in memory."""
    window = list(itertools.islice(jobs, PARALLEL_FROM))
    if workers <= 1 or len(window) < PARALLEL_FROM:
        yield from map(_segment_one, itertools.chain(window, jobs))
        return
    pool = _pool(workers)
    while window:
        yield from pool.map(_segment_one, map(_for_worker, window), chunksize=8)
        window = list(itertools.islice(jobs, 64 * workers))


@functools.cache
def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool per process and size, started on first use and kept (a folder after a folder
    pays the start-up once); shut down at exit. spawn, not fork: the parent holds torch's thread
    pools, which a forked child must not inherit."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    atexit.register(pool.shutdown, cancel_futures=True)
    return pool
