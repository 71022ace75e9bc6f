"""Measure a model on real digit images: a labelled folder, scikit-learn's UCI digits, test pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mnistlab.errors import DataError, MnistlabError
from mnistlab.handwriting.images import ImageSource, expand_paths, load_grey
from mnistlab.handwriting.normalize import _digit_mask, normalize_digit
from mnistlab.handwriting.reader import classify, read_images
from mnistlab.handwriting.segment import WORK_SIDE, ink_map

_PREFIX = re.compile(r"^([0-9])(?:[^0-9]|$)")


def single_digit_crop(source: ImageSource | np.ndarray, name: str = "image") -> np.ndarray:
    """An image holding ONE digit -> its 28x28 crop (all ink found is that digit)."""
    if isinstance(source, np.ndarray):
        grey = np.clip(np.asarray(source, np.float32), 0, 1)
    else:
        grey = load_grey(source, name, max_side=WORK_SIDE)
    im = ink_map(grey)
    return normalize_digit(im.ink, _digit_mask(im))


def label_of(path: Path, root: Path) -> int | None:
    """The digit a file shows: its sub-folder's name (0..9) or its file name's first digit."""
    rel = path.relative_to(root)
    for part in rel.parts[:-1]:
        if part in {str(d) for d in range(10)}:
            return int(part)
    m = _PREFIX.match(path.name)
    return int(m.group(1)) if m else None


def summarize(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    conf = np.zeros((10, 10), int)
    np.add.at(conf, (y_true, y_pred), 1)
    per_class = [float(conf[c, c] / conf[c].sum()) if conf[c].sum() else None for c in range(10)]
    return {
        "n": int(len(y_true)),
        "acc": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "per_class": per_class,
        "confusion": conf.tolist(),
    }


def evaluate_images(folder: Path, model: nn.Module) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Labelled single-digit images -> (summary, misses with their crops). Files without a label
    or that fail to load are reported in summary["skipped"] / summary["errors"]."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = expand_paths([folder])
    crops, labels, names, errors, skipped = [], [], [], [], []
    for f in files:
        y = label_of(f, folder)
        if y is None:
            skipped.append(str(f))
            continue
        try:
            crops.append(single_digit_crop(f, str(f)))
        except MnistlabError as e:
            errors.append(str(e))
            continue
        labels.append(y)
        names.append(str(f))
    if not crops:
        raise DataError(f"{folder}: no labelled images (use sub-folders 0..9 or names like 3_foo.png)")
    x = torch.from_numpy(np.stack(crops))
    probs = classify(model, x)
    pred = probs.argmax(1).numpy()
    y = np.array(labels)
    summary = summarize(y, pred) | {"errors": errors, "skipped": skipped, "folder": str(folder)}
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


def evaluate_uci(model: nn.Module, upscale: int = 4) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    imgs, y = uci_images(upscale)
    crops = [single_digit_crop(img, f"uci-{i}") for i, img in enumerate(imgs)]
    probs = classify(model, torch.from_numpy(np.stack(crops)))
    pred = probs.argmax(1).numpy()
    summary = summarize(y, pred) | {"upscale": upscale}
    return summary, _misses([f"uci-{i}" for i in range(len(y))], y, pred, probs, crops)


def score_pages(
    folder: Path, model: nn.Module, on_page: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Read every page in a make-pages folder and compare with truth.json."""
    from mnistlab.handwriting.pages import load_truth, score_page

    truth = load_truth(folder)
    totals = {"pages": 0, "digits": 0, "digit_errors": 0, "lines": 0, "lines_exact": 0, "failed": 0}
    files = [folder / t["file"] for t in truth]
    for t, r in zip(truth, read_images(files, model), strict=True):
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
