"""Figures of the attack experiments (`mnistlab attack ...`, seeds 0.8 and 0.9): the test digits a
model rates most likely to be one digit, a targeted attack's examples, accuracy under attack.

Digits are canonical ((1, 28, 28) in [0, 1], white ink on black, what a Predictor reads) and are
drawn as ink on paper (grey reversed), as the seeds showed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.figure import Figure

from mnistlab.attacks import AttackResult
from mnistlab.viz._plot import new_figure


def _ink(x: torch.Tensor) -> Any:
    """(C, H, W) -> (H, W) numpy for imshow (channels averaged: repeated grey channels stay grey)."""
    return x.detach().cpu().float().mean(0).numpy()


def most_likely_figure(images: torch.Tensor, rows: Sequence[dict[str, Any]], digit: int, title: str) -> Figure:
    """A grid of the images (N, C, H, W) that `rows` (attacks.most_likely: index, label, prob per
    image, same order) describe, each titled with its test index, label and p(digit)."""
    cols = max(1, min(len(rows), 5))
    nrows = max(1, -(-len(rows) // cols))
    fig = new_figure(2 * cols, 2.3 * nrows + 0.4)
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, r in zip(axes.flat, images, rows, strict=False):
        ax.imshow(_ink(image), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"#{r['index']} (label {r['label']})\np({digit})={r['prob']:.6f}", fontsize=8)
    fig.suptitle(title)
    return fig


def targeted_figure(
    res: AttackResult, x: torch.Tensor, idx: torch.Tensor, source: int, target: int, title: str, examples: int = 3
) -> Figure:
    """For up to `examples` attacked images (successful ones first): the original, the
    perturbation (red +, blue -), the adversarial and the probabilities before and after."""
    ok = res.success.nonzero().flatten()
    show = (ok if len(ok) else torch.arange(len(res.success)))[:examples]
    fig = new_figure(11, 2.6 * len(show))
    axes = fig.subplots(len(show), 4, squeeze=False)
    digits = torch.arange(10)
    for row, i in zip(axes, show.tolist(), strict=False):
        adv, orig = _ink(res.x_adv[i]), _ink(x[i])
        delta = adv - orig
        row[0].imshow(orig, cmap="gray_r", vmin=0, vmax=1)
        row[0].set_title(f"test #{int(idx[i])}: p({source})={res.probs_before[i, source]:.3f}", fontsize=8)
        lim = float(abs(delta).max()) or 1.0
        row[1].imshow(delta, cmap="seismic", vmin=-lim, vmax=lim)
        row[1].set_title(f"perturbation (red +, blue -): L2 {res.l2[i]:.2f}, L∞ {res.linf[i]:.3f}", fontsize=8)
        row[2].imshow(adv, cmap="gray_r", vmin=0, vmax=1)
        row[2].set_title(f"adversarial: p({target})={res.probs_after[i, target]:.3f}", fontsize=8)
        for ax in row[:3]:
            ax.set_xticks([])
            ax.set_yticks([])
        row[3].bar(digits - 0.2, res.probs_before[i], 0.4, label="before")
        row[3].bar(digits + 0.2, res.probs_after[i], 0.4, label="after")
        row[3].set_xticks(range(10))
        row[3].set_xlabel("digit")
        row[3].set_ylabel("probability")
        row[3].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def robustness_figure(rows: Sequence[dict[str, float]], norm: str, title: str) -> Figure:
    """Accuracy under attack against the budget (attacks.robustness_curve's rows)."""
    fig = new_figure(5, 3.5)
    ax = fig.subplots()
    ax.plot([r["eps"] for r in rows], [r["accuracy"] for r in rows], "o-")
    ax.set_xlabel(f"ε ({'L∞' if norm == 'linf' else 'L2'})")
    ax.set_ylabel("accuracy under attack")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    return fig
