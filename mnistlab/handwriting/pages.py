"""Realistic test pages made of MNIST TEST digits, with ground truth, and how to score reading them.

A page: paper of some colour, lines of digits written as dark ink (each MNIST digit is an ink
coverage map, scaled to a random height, spaced irregularly, sometimes touching), then what a
phone camera adds: uneven lighting, a soft shadow, a colour cast, slight rotation and
perspective, sensor noise and JPEG compression. Pages use only the test set, so a model trained
on the training set never saw them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from mnistlab.data import MNIST
from mnistlab.errors import DataError

TRUTH = "truth.json"


@dataclass(frozen=True)
class PageSpec:
    width: int = 1200
    height: int = 900
    min_lines: int = 3
    max_lines: int = 6
    min_digits: int = 3
    max_digits: int = 9
    touch_prob: float = 0.08  # chance that a digit touches the previous one


def _paper_color(rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice(["white", "cream", "grey", "blue", "pink", "green"], p=[0.4, 0.2, 0.15, 0.1, 0.08, 0.07])
    base = {
        "white": (245, 245, 242),
        "cream": (243, 234, 205),
        "grey": (205, 205, 200),
        "blue": (205, 222, 240),
        "pink": (245, 215, 220),
        "green": (215, 238, 210),
    }[str(kind)]
    return np.array(base, np.float32) / 255 + rng.uniform(-0.03, 0.03, 3).astype(np.float32)


def _ink_color(rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice(["black", "blue", "pencil", "red"], p=[0.45, 0.35, 0.12, 0.08])
    base = {"black": (25, 25, 30), "blue": (25, 40, 120), "pencil": (90, 90, 95), "red": (130, 25, 30)}[str(kind)]
    return np.array(base, np.float32) / 255


def _lighting(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A multiplicative light field: a linear gradient, a vignette and sometimes a soft shadow."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    lin = (np.cos(ang) * xx / w + np.sin(ang) * yy / h) * rng.uniform(0.0, 0.35)
    light = 1.0 - (lin - lin.min())
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    r2 = ((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2
    light *= 1.0 - rng.uniform(0.0, 0.35) * r2
    if rng.random() < 0.6:  # the shadow of a phone or a hand: a soft-edged half-plane
        a = rng.uniform(0, 2 * np.pi)
        d = np.cos(a) * (xx - rng.uniform(0, w)) + np.sin(a) * (yy - rng.uniform(0, h))
        soft = rng.uniform(10, 80)
        shadow = 1 / (1 + np.exp(-d / soft))
        light *= 1.0 - rng.uniform(0.2, 0.45) * shadow
    return light


def make_page(
    mnist: MNIST, rng: np.random.Generator, spec: PageSpec = PageSpec()
) -> tuple[Image.Image, list[str], list[dict[str, Any]]]:
    """One page: (RGB image, lines of text, digit boxes before the camera distortions)."""
    w, h = spec.width, spec.height
    n_test = len(mnist.test_labels)
    alpha = np.zeros((h, w), np.float32)
    n_lines = int(rng.integers(spec.min_lines, spec.max_lines + 1))
    line_pitch = (h - 120) / n_lines
    digit_h = float(min(rng.uniform(45, 85), 0.62 * line_pitch))
    lines: list[str] = []
    boxes: list[dict[str, Any]] = []
    for li in range(n_lines):
        y_base = 60 + li * line_pitch + rng.uniform(0, max(1.0, line_pitch - 1.35 * digit_h))
        x = rng.uniform(40, 160)
        text = ""
        for _ in range(int(rng.integers(spec.min_digits, spec.max_digits + 1))):
            idx = int(rng.integers(n_test))
            img = mnist.test_images[idx].numpy().astype(np.float32) / 255
            s = digit_h / 20 * rng.uniform(0.9, 1.1)  # MNIST digits are 20 px tall in 28
            side = max(8, int(round(28 * s)))
            big = np.asarray(Image.fromarray(img, mode="F").resize((side, side), Image.Resampling.BICUBIC))
            big = np.clip(big, 0, 1)
            cols = np.flatnonzero(big.max(0) > 0.2)
            if cols.size == 0:
                continue
            big = big[:, cols[0] : cols[-1] + 1]
            bw = big.shape[1]
            if x + bw > w - 40:
                break
            y = int(y_base + rng.normal(0, 0.04 * digit_h))
            xi = int(x)
            y = min(max(0, y), h - side)
            alpha[y : y + side, xi : xi + bw] = np.maximum(alpha[y : y + side, xi : xi + bw], big)
            rows = np.flatnonzero(big.max(1) > 0.2)
            boxes.append(
                {
                    "digit": int(mnist.test_labels[idx]),
                    "line": li,
                    "box": [xi, y + int(rows[0]), bw, int(rows[-1] - rows[0] + 1)],
                    "test_index": idx,
                }
            )
            text += str(int(mnist.test_labels[idx]))
            # Gap to the next digit: usually 0.15-0.7 digit heights, sometimes touching.
            gap = (
                -rng.uniform(0.0, 0.08) * digit_h
                if rng.random() < spec.touch_prob
                else rng.uniform(0.15, 0.7) * digit_h
            )
            x += bw + gap
        if text:
            lines.append(text)
    paper, ink = _paper_color(rng), _ink_color(rng)
    strength = rng.uniform(0.75, 1.0)  # pen pressure / pencil greyness
    a = alpha[..., None] * strength
    rgb = paper[None, None, :] * (1 - a) + ink[None, None, :] * a
    rgb *= _lighting(h, w, rng)[..., None]
    rgb *= (1 + rng.uniform(-0.06, 0.06, 3)).astype(np.float32)  # white balance / colour cast
    rgb += rng.normal(0, rng.uniform(0.005, 0.03), rgb.shape).astype(np.float32)
    page = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    fill = tuple(int(v) for v in (np.clip(paper * 0.9, 0, 1) * 255))
    page = page.rotate(float(rng.uniform(-3, 3)), Image.Resampling.BICUBIC, fillcolor=fill)
    # Slight perspective: the corners move by up to 3 % of the side.
    d = [float(v) for v in rng.uniform(-0.03, 0.03, 8) * np.array([w, h] * 4)]
    quad = (d[0], d[1], d[2], h + d[3], w + d[4], h + d[5], w + d[6], d[7])
    page = page.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC, fillcolor=fill)
    if rng.random() < 0.5:
        page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))  # focus
    return page, lines, boxes


def make_pages(
    mnist: MNIST,
    out: Path,
    n: int = 20,
    seed: int = 0,
    spec: PageSpec = PageSpec(),
    size: tuple[int, int] | None = None,
    fmt: str = "jpg",
) -> list[dict[str, Any]]:
    """Write `n` pages (JPEG, or PNG with fmt="png") and truth.json (file -> lines, digits) into `out`.

    `size` (width, height) enlarges each page bicubically before it is saved, boxes with it: the
    same pages as a big phone photo, to check that reading does not depend on the resolution."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = []
    for i in range(n):
        page, lines, boxes = make_page(mnist, rng, spec)
        quality = int(rng.integers(55, 92))  # drawn for PNG too: the same seed, the same pages
        if size is not None:
            sx, sy = size[0] / page.width, size[1] / page.height
            page = page.resize(size, Image.Resampling.BICUBIC)
            for b in boxes:
                x, y, w, h = b["box"]
                b["box"] = [round(x * sx), round(y * sy), round(w * sx), round(h * sy)]
        buf = io.BytesIO()
        if fmt == "png":
            page.save(buf, "PNG")
        else:
            page.save(buf, "JPEG", quality=quality)
        name = f"page-{i:03d}.{fmt}"
        (out / name).write_bytes(buf.getvalue())
        truth.append({"file": name, "lines": lines, "text": "\n".join(lines), "digits": boxes})
    (out / TRUTH).write_text(json.dumps({"seed": seed, "pages": truth}, indent=1))
    return truth


def load_truth(folder: Path) -> list[dict[str, Any]]:
    path = folder / TRUTH
    try:
        return json.loads(path.read_text())["pages"]
    except FileNotFoundError:
        raise DataError(f"{path}: missing (make pages with `mnistlab make-pages {folder}`)") from None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences (strings of digits, lists of labels)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def score_page(truth_lines: list[str], read_text: str) -> dict[str, int]:
    """Digits right = truth digits minus the edit distance of each line (insertions, deletions
    and substitutions all count as errors); lines right = lines read exactly. Lines are paired
    in order; missing or extra lines count in full."""
    read_lines = [s for s in read_text.split("\n") if s] if read_text else []
    digits = sum(len(t) for t in truth_lines)
    errors = 0
    exact = 0
    for i in range(max(len(truth_lines), len(read_lines))):
        t = truth_lines[i] if i < len(truth_lines) else ""
        r = read_lines[i] if i < len(read_lines) else ""
        errors += edit_distance(t, r)
        exact += int(bool(t) and t == r)
    return {"digits": digits, "digit_errors": errors, "lines": len(truth_lines), "lines_exact": exact}
