"""Figures of the data itself: one digit with its pixel values (seed 1.1), a sample grid per
class and the class distribution of train and test (seed 2.1)."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from mnistlab.viz._plot import image_panels, new_figure


def digit_figure(image: torch.Tensor, title: str) -> Figure:
    """One (H, W) digit, grey, with every pixel's value written on it (uint8 0..255 values).

    A float image in [0, 1] is shown as 0..255 (what the MNIST files hold)."""
    img = image.detach().float().cpu()
    if img.max() <= 1.0:
        img = img * 255.0
    values = img.round().to(torch.int64)
    h, w = values.shape
    fig = new_figure(10, 10)
    ax = fig.subplots()
    ax.imshow(values.numpy(), cmap="gray", vmin=0, vmax=255)
    size = 6.5 * 28 / max(h, w)  # points: three digits still fit in a cell
    for r in range(h):
        for c in range(w):
            v = int(values[r, c])
            ax.text(c, r, str(v), ha="center", va="center", fontsize=size, color="black" if v > 127 else "white")
    ax.set_xticks(range(0, w, 4))
    ax.set_yticks(range(0, h, 4))
    ax.set_xlabel("column (pixel)")
    ax.set_ylabel("row (pixel)")
    ax.set_title(title)
    return fig


def samples_figure(images: torch.Tensor, labels: torch.Tensor, per_class: int = 10) -> Figure:
    """The first `per_class` digits of every class, one row per class (10 x per_class panels)."""
    fig = new_figure(per_class * 0.9 + 0.6, 10 * 0.9 + 0.6)
    axes = image_panels(fig, 10 * per_class, per_class)
    for digit in range(10):
        idx = torch.nonzero(labels == digit).flatten()[:per_class]
        for j in range(per_class):
            ax = axes[digit * per_class + j]
            if j < len(idx):
                ax.imshow(images[idx[j]].numpy(), cmap="gray", vmin=0, vmax=255)
            if j == 0:
                ax.set_ylabel(str(digit), rotation=0, fontsize=14, labelpad=12, va="center")
    fig.suptitle(f"MNIST training digits: the first {per_class} of each class (rows: label)")
    return fig


def data_variant_samples(mnist, data_cfg, seed: int, per_class: int, what: str) -> Figure:  # noqa: ANN001
    """The training images a model trains on under `data_cfg` (dataset.prepare_splits: sub-sampled,
    inverted, unscaled, repeated channels, as built for training), `per_class` per class.

    With data.invert=add the training set is MNIST followed by its inverted copy: each row then
    takes its digits from both halves. Several channels are identical copies: channel 0 is drawn.
    The grey scale runs from 0 to the largest value the model can see (1, or 255 unscaled)."""
    from mnistlab.dataset import prepare_splits

    split = prepare_splits(mnist, data_cfg, seed).train
    x, y = split.x, split.y
    vmax = 1.0 if data_cfg.scale else 255.0
    _, c, h, w = x.shape
    fig = new_figure(per_class * 0.9 + 0.6, 10 * 0.9 + 1.0)
    axes = image_panels(fig, 10 * per_class, per_class)
    for digit in range(10):
        idx = torch.nonzero(y == digit).flatten()
        if data_cfg.invert == "add":  # half from MNIST, half from the inverted copy
            half = len(y) // 2
            a, b = idx[idx < half], idx[idx >= half]
            k = (per_class + 1) // 2
            idx = torch.cat([a[:k], b[: per_class - k]])
        idx = idx[:per_class]
        for j in range(per_class):
            ax = axes[digit * per_class + j]
            if j < len(idx):
                ax.imshow(x[idx[j], 0].float().numpy(), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            if j == 0:
                ax.set_ylabel(str(digit), rotation=0, fontsize=14, labelpad=12, va="center")
    chans = f", {c} identical channels (channel 0 shown)" if c > 1 else ""
    fig.suptitle(
        f"training images with {what}: {h}x{w} pixels{chans}, values 0..{vmax:g}\n(rows: label; what the model is trained on)",
        fontsize=10,
    )
    return fig


def classes_figure(train_labels: torch.Tensor, test_labels: torch.Tensor) -> Figure:
    """Counts per class, train and test side by side, each count written on its bar."""
    fig = new_figure(10, 4.5)
    axes = fig.subplots(1, 2)
    for ax, labels, name, colour in (
        (axes[0], train_labels, "train", "tab:blue"),
        (axes[1], test_labels, "test", "tab:orange"),
    ):
        counts = torch.bincount(labels, minlength=10)
        bars = ax.bar(range(10), counts.numpy(), color=colour)
        ax.bar_label(bars, [str(int(c)) for c in counts], fontsize=7)
        ax.set_xticks(range(10))
        ax.set_xlabel("digit")
        ax.set_ylabel("images")
        ax.set_title(f"{name}: {len(labels):,} images ({int(counts.min())} to {int(counts.max())} per class)")
        ax.set_ylim(0, counts.max().item() * 1.12)
    fig.suptitle("MNIST class distribution")
    return fig
