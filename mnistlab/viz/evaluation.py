"""How a run did: learning curves (seed 2.6), the confusion matrix with its most-confused pairs
(seed 2.6 found (4,9) and (0,6)), and the misclassified test digits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from mnistlab.dataset import Split
from mnistlab.viz._plot import image_panels, new_figure
from mnistlab.viz.inputs import display_image


def curves_figure(runs: Sequence[tuple[str, list[dict[str, Any]]]], title: str = "") -> Figure:
    """Loss and accuracy per epoch for each (label, history): training solid, validation dashed,
    one colour per run."""
    fig = new_figure(12, 4.8)
    ax_loss, ax_acc = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for (label, history), colour in zip(runs, colours, strict=True):
        epochs = [m["epoch"] for m in history]
        for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
            ax.plot(epochs, [m[key] for m in history], "-o", color=colour, ms=3, label=f"{label} train")
            if all(f"val_{key}" in m for m in history):
                ax.plot(
                    epochs, [m[f"val_{key}"] for m in history], "--s", color=colour, ms=3, label=f"{label} validation"
                )
    for ax, name in ((ax_loss, "loss (cross-entropy)"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_acc.legend(fontsize=8, loc="lower right")
    fig.suptitle(title or "training curves (solid: training, dashed: validation)")
    return fig


@dataclass(frozen=True)
class Confusion:
    true: int
    predicted: int
    count: int


def most_confused(confusion: torch.Tensor, k: int = 5) -> list[Confusion]:
    """The `k` largest off-diagonal cells (true -> predicted), largest first; zero cells left out."""
    off = confusion.clone().long()
    off.fill_diagonal_(0)
    counts, flat = off.flatten().sort(descending=True, stable=True)
    return [Confusion(int(i) // 10, int(i) % 10, int(c)) for c, i in zip(counts[:k], flat[:k], strict=True) if c > 0]


def confusion_figure(confusion: torch.Tensor, title: str = "", k: int = 5) -> Figure:
    """Heat map of the 10x10 matrix (rows: true, columns: predicted) with every count written,
    on a log-like colour scale for the errors, and the k most-confused pairs listed beside it."""
    cm = confusion.long()
    fig = new_figure(11, 8)
    ax, side = fig.subplots(1, 2, width_ratios=[4, 1.3])
    # Colour by share of the true class, so errors (small) are visible next to the diagonal (large).
    share = cm.double() / cm.sum(1, keepdim=True).clamp_min(1)
    im = ax.imshow(share.numpy() ** 0.3, cmap="Blues", vmin=0, vmax=1)
    for r in range(10):
        for c in range(10):
            v = int(cm[r, c])
            ax.text(c, r, str(v), ha="center", va="center", fontsize=9, color="white" if share[r, c] > 0.4 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    total, right = int(cm.sum()), int(cm.diag().sum())
    ax.set_title(f"{total:,} test digits, {right:,} right ({right / max(1, total):.2%}), {total - right} wrong")
    cbar = fig.colorbar(im, ax=ax, shrink=0.7)
    ticks = [0, 0.001, 0.01, 0.1, 0.5, 1]
    cbar.set_ticks([t**0.3 for t in ticks], labels=[f"{t:g}" for t in ticks])
    cbar.set_label("share of the true class (power scale)")
    side.axis("off")
    lines = [f"{p.true} → {p.predicted}: {p.count}" for p in most_confused(cm, k)] or ["no errors"]
    side.text(
        0, 1, "most confused\n(true → predicted)\n\n" + "\n".join(lines), va="top", fontsize=11, family="monospace"
    )
    fig.suptitle(title or "confusion matrix")
    return fig


@dataclass(frozen=True)
class Mistake:
    index: int  # into the split
    true: int
    predicted: int
    confidence: float  # softmax probability of the prediction


@torch.no_grad()
def misclassified(model: nn.Module, split: Split, batch_size: int = 1000) -> list[Mistake]:
    """Every wrongly classified digit of `split`, most confident mistakes first."""
    model.eval()
    device = next(model.parameters()).device
    probs = torch.cat(
        [model(split.x[i : i + batch_size].to(device)).softmax(1).cpu() for i in range(0, len(split), batch_size)]
    )
    conf, pred = probs.max(1)
    wrong = torch.nonzero(pred != split.y).flatten()
    wrong = wrong[conf[wrong].argsort(descending=True, stable=True)]
    return [Mistake(int(i), int(split.y[i]), int(pred[i]), float(conf[i])) for i in wrong]


def errors_figure(split: Split, mistakes: Sequence[Mistake], n: int = 36, title: str = "") -> Figure:
    """Up to `n` mistakes as a gallery: each digit titled "true → predicted (confidence)"."""
    shown = list(mistakes[:n])
    cols = min(9, max(1, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig = new_figure(1.5 * cols + 0.4, 1.7 * rows + 0.7)
    if not shown:
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified digits", ha="center", va="center", fontsize=14)
    for ax, m in zip(image_panels(fig, len(shown), cols), shown, strict=False):
        ax.imshow(display_image(split.x[m.index]).numpy(), cmap="gray")
        ax.set_title(f"{m.true} → {m.predicted} ({m.confidence:.2f})", fontsize=9, color="tab:red")
        ax.set_xlabel(f"#{m.index}", fontsize=7)
    fig.suptitle(title or f"misclassified test digits: true → predicted (confidence), {len(shown)} of {len(mistakes)}")
    return fig
