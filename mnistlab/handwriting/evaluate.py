"""Measure a model on real digit images: a labelled folder, scikit-learn's UCI digits, test pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mnistlab.data import MNIST
from mnistlab.errors import DataError, MnistlabError
from mnistlab.handwriting.images import expand_paths
from mnistlab.handwriting.pages import load_truth, score_page
from mnistlab.handwriting.reader import Lines, read_images
from mnistlab.predictor import Predictor

_PREFIX = re.compile(r"^([0-9])(?:[^0-9]|$)")


def label_of(path: Path, root: Path) -> int | None:
    """The digit a file shows: its sub-folder's name (0..9) or its file name's first digit."""
    rel = path.relative_to(root)
    for part in rel.parts[:-1]:
        if part in {str(d) for d in range(10)}:
            return int(part)
    m = _PREFIX.match(path.name)
    return int(m.group(1)) if m else None


def summarize(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class accuracy and the confusion matrix; a prediction of -1 ("no digit
    found") counts as a miss and stays out of the matrix."""
    conf = np.zeros((10, 10), int)
    read = y_pred >= 0
    np.add.at(conf, (y_true[read], y_pred[read]), 1)
    count = np.bincount(y_true, minlength=10)
    per_class = [float(conf[c, c] / count[c]) if count[c] else None for c in range(10)]
    return {
        "n": int(len(y_true)),
        "acc": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "per_class": per_class,
        "confusion": conf.tolist(),
    }


def labelled_files(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    """The labelled image files under `folder` (sub-folders 0..9, or names starting with the
    digit), sorted: (files, their labels, the image files without a label). `evaluate-images`
    and `adapt` read folders with it."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files, labels, skipped = [], [], []
    for f in expand_paths([folder]):
        y = label_of(f, folder)
        if y is None:
            skipped.append(str(f))
        else:
            files.append(f)
            labels.append(y)
    return files, labels, skipped


def evaluate_images(folder: Path, predictor: Predictor) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Labelled single-digit images -> (summary, misses with their crops), read through the
    single-digit path as `predict --single` reads them. Files without a label or that fail to
    load are reported in summary["skipped"] / summary["errors"]."""
    files, labels, skipped = labelled_files(folder)
    names, y_true, crops, rows, errors = [], [], [], [], []
    for f, y, r in zip(files, labels, read_images(files, predictor, single=True), strict=True):
        if isinstance(r, MnistlabError):
            errors.append(str(r))
            continue
        names.append(str(f))
        y_true.append(y)
        crops.append(r.digits[0].crop.numpy() if r.digits else np.zeros((28, 28), np.float32))
        rows.append(r.digits[0].probs if r.digits else [0.1] * 10)  # no ink: counted as a miss below
    if not names:
        raise DataError(f"{folder}: no labelled images (use sub-folders 0..9 or names like 3_foo.png)")
    probs = torch.tensor(rows)
    pred = probs.argmax(1).numpy()
    found = np.array([c.max() > 0 for c in crops])
    pred = np.where(found, pred, -1)  # "no digit found" is never right
    y = np.array(y_true)
    summary = summarize(y, pred) | {"errors": errors, "skipped": skipped, "folder": str(folder)}
    summary["no_digit"] = int((~found).sum())
    return summary, _misses(names, y, pred, probs, crops)


def _misses(
    names: list[str], y: np.ndarray, pred: np.ndarray, probs: torch.Tensor, crops: list
) -> list[dict[str, Any]]:
    """One entry per misread digit, for the report and the gallery of misses."""
    return [
        {
            "file": names[i],
            "label": int(y[i]),
            "pred": int(pred[i]),
            "confidence": float(probs[i].max()),
            "crop": crops[i],
        }
        for i in np.flatnonzero(pred != y)
    ]


def uci_images(upscale: int = 4) -> tuple[list[Image.Image], np.ndarray]:
    """scikit-learn's bundled UCI digits (1,797 digits by 43 writers, 8x8, 0..16) as a user
    would hand them in: dark ink on white paper, scaled up `upscale` times (bicubic) like a
    small scan."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = []
    for a in d.images:
        grey = (255 - a * (255 / 16)).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(grey, "L")
        imgs.append(img.resize((8 * upscale, 8 * upscale), Image.Resampling.BICUBIC))
    return imgs, d.target.astype(int)


def evaluate_uci(
    predictor: Predictor, upscale: int = 4, limit: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """scikit-learn's UCI digits read through the single-digit path (`predict --single`); the
    first `limit` of them only, when given (a quick check)."""
    imgs, y = uci_images(upscale)
    if limit is not None:
        imgs, y = imgs[:limit], y[:limit]
    names = [f"uci-{i}" for i in range(len(y))]
    readings = list(read_images(imgs, predictor, single=True, names=names))
    crops = [r.digits[0].crop.numpy() if r.digits else np.zeros((28, 28), np.float32) for r in readings]
    probs = torch.tensor([r.digits[0].probs if r.digits else [0.1] * 10 for r in readings])
    found = np.array([bool(r.digits) for r in readings])
    pred = np.where(found, probs.argmax(1).numpy(), -1)
    summary = summarize(y, pred) | {"upscale": upscale, "no_digit": int((~found).sum())}
    return summary, _misses(names, y, pred, probs, crops)


def score_pages(
    folder: Path,
    predictor: Predictor,
    on_page: Callable[[dict[str, Any]], None] | None = None,
    lines: Lines = None,
) -> dict[str, Any]:
    """Read every page in a make-pages folder (with the line reader `lines`, if given) and compare
    with truth.json."""
    truth = load_truth(folder)
    totals = {"pages": 0, "digits": 0, "digit_errors": 0, "lines": 0, "lines_exact": 0, "failed": 0}
    files = [folder / t["file"] for t in truth]
    for t, r in zip(truth, read_images(files, predictor, lines=lines), strict=True):
        if isinstance(r, Exception):
            s = {"digits": sum(len(x) for x in t["lines"]), "lines": len(t["lines"]), "lines_exact": 0}
            s["digit_errors"] = s["digits"]
            totals["failed"] += 1
            text = None
        else:
            s = score_page(t["lines"], r.text)
            text = r.text
        totals["pages"] += 1
        for k in ("digits", "digit_errors", "lines", "lines_exact"):
            totals[k] += s[k]
        if on_page:
            on_page({"file": t["file"], "truth": t["text"], "read": text, **s})
    totals["digit_acc"] = 1 - totals["digit_errors"] / max(1, totals["digits"])
    totals["line_acc"] = totals["lines_exact"] / max(1, totals["lines"])
    return totals


def misses_gallery(misses: list[dict[str, Any]], out: Path, title: str, limit: int = 60) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = misses[:limit]
    cols = 10
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3 + 0.5), dpi=80, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, m in zip(axes.ravel(), shown, strict=False):
        ax.imshow(m["crop"], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{m['label']}→{m['pred']} ({m['confidence']:.2f})", fontsize=7)
    fig.suptitle(f"{title}: {len(misses)} misses (true→read, confidence), 28x28 crops", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its worker processes so far (the reader's pool: their
    usage is only counted once they have exited, so the pool is drained and kept warm separately)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime + _pool_cpu()


def _pool_cpu() -> float:
    """User + system seconds of the live worker processes of the reader's pools (Linux /proc)."""
    import os

    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for child in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def reading_speed(
    predictor: Predictor, mnist: MNIST, n_digits: int = 1000, n_pages: int = 5, lines: Lines = None
) -> dict[str, Any]:
    """How fast `predict` reads, after start-up: `n_digits` single-digit PNG files (MNIST test
    digits drawn dark on white, 140x140, as the canvas sends them) and `n_pages` make-pages JPEGs,
    each written to a temporary folder and read from disk as `predict FOLDER` does. Wall and CPU
    seconds; the model is loaded before the clock starts."""
    import io
    import tempfile
    import time

    from mnistlab.handwriting.pages import make_pages

    with tempfile.TemporaryDirectory(prefix="mnistlab-speed-") as tmp:
        folder = Path(tmp) / "digits"
        folder.mkdir()
        for i in range(n_digits):
            ink = Image.fromarray(255 - mnist.test_images[i % len(mnist.test_images)].numpy())
            buf = io.BytesIO()
            ink.resize((140, 140), Image.Resampling.BILINEAR).save(buf, format="PNG")
            (folder / f"{int(mnist.test_labels[i % len(mnist.test_labels)])}_{i:05d}.png").write_bytes(buf.getvalue())
        files = expand_paths([folder])
        list(read_images(files[:64], predictor, lines=lines))  # start-up: lazy initialisation, the worker processes
        t0, c0 = time.perf_counter(), _cpu_seconds()
        readings = list(read_images(files, predictor, lines=lines))
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        right = sum(not isinstance(r, Exception) and r.text == f.name[0] for r, f in zip(readings, files, strict=True))
        pages_dir = Path(tmp) / "pages"
        make_pages(mnist, pages_dir, n=n_pages, seed=0)
        page_files = sorted(pages_dir.glob("*.jpg"))
        list(read_images(page_files[:1], predictor, lines=lines))  # the line reader's first call
        p0, pc0 = time.perf_counter(), _cpu_seconds()
        list(read_images(page_files, predictor, lines=lines))
        page_wall, page_cpu = time.perf_counter() - p0, _cpu_seconds() - pc0
    return {
        "digits": n_digits,
        "digits_per_s": n_digits / wall,
        "digit_wall_s": wall,
        "digit_cpu_s": cpu,
        "digits_right": right,
        "pages": n_pages,
        "page_wall_s": page_wall / n_pages,
        "page_cpu_s": page_cpu / n_pages,
    }
