"""`predict --explain`: one picture of every step, so a user can see why a digit was misread."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from mnistlab.handwriting.images import ImageSource, load_grey
from mnistlab.handwriting.reader import LOW_CONFIDENCE, Reading
from mnistlab.handwriting.segment import WORK_SIDE

MAX_CROPS = 40


def explain_figure(source: ImageSource, reading: Reading, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    # Shown at the reader's working size, stretched over the image's own frame (the boxes' units).
    grey = load_grey(source, reading.file, max_side=WORK_SIDE)
    frame = (0, reading.width, reading.height, 0)
    digits = reading.digits[:MAX_CROPS]
    n_crops = max(1, len(digits))
    crop_cols = min(10, n_crops)
    crop_rows = -(-n_crops // crop_cols)
    fig = plt.figure(figsize=(12, 4.2 + 1.45 * crop_rows), dpi=80)
    grid = fig.add_gridspec(1 + crop_rows, crop_cols * 3, height_ratios=[3.2] + [1.2] * crop_rows)
    span = crop_cols  # the top row: three panels of equal width
    ax_in = fig.add_subplot(grid[0, :span])
    ax_mask = fig.add_subplot(grid[0, span : 2 * span])
    ax_box = fig.add_subplot(grid[0, 2 * span :])
    ax_in.imshow(grey, cmap="gray", vmin=0, vmax=1, extent=frame)
    ax_in.set_title(f"input {reading.width}x{reading.height} (grey)")
    if reading.ink is not None:
        ax_mask.imshow(reading.ink.mask, cmap="gray")
        ink = "dark" if reading.dark_ink else "light"
        ax_mask.set_title(f"ink mask ({ink} ink, paper removed)", fontsize=10)
    ax_box.imshow(grey, cmap="gray", vmin=0, vmax=1, extent=frame)
    for d in reading.digits:
        x, y, w, h = d.box
        color = "orange" if d.low_confidence else "lime"
        ax_box.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color, linewidth=1.5))
        ax_box.text(x, y - 2, str(d.digit), color=color, fontsize=11, fontweight="bold", va="bottom")
    text = reading.text.replace("\n", " / ") if reading.found else "no digit found"
    # Long readings wrap at 34 characters a line (one panel is a third of the figure's 12 inches):
    # one line of 60 ran over the mask panel's title.
    ax_box.set_title(textwrap.fill(f"read: {text}"[:100], 34), fontsize=10)
    for ax in (ax_in, ax_mask, ax_box):
        ax.set_xticks([])
        ax.set_yticks([])
    for i, d in enumerate(digits):
        ax = fig.add_subplot(grid[1 + i // crop_cols, 3 * (i % crop_cols) : 3 * (i % crop_cols) + 3])
        ax.imshow(d.crop.numpy(), cmap="gray", vmin=0, vmax=1)
        top = np.argsort(d.probs)[::-1][:3]
        label = " ".join(f"{k}:{d.probs[k]:.2f}" for k in top)
        ax.set_title(label, fontsize=7, color="darkorange" if d.confidence < LOW_CONFIDENCE else "black")
        ax.set_xticks([])
        ax.set_yticks([])
    if not digits:
        ax = fig.add_subplot(grid[1, :])
        ax.text(0.5, 0.5, "no digit found", ha="center", va="center", fontsize=14)
        ax.axis("off")
    fig.suptitle(f"{Path(reading.file).name}: 28x28 crops the model saw, top-3 probabilities", fontsize=10, y=0.995)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
