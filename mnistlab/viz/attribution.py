"""Beyond the seeds: which pixels a decision depends on (gradient saliency), and how the
penultimate layer arranges the test set (a 2-D PCA projection coloured by class)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import nn

from mnistlab.errors import ConfigError
from mnistlab.viz._plot import new_figure


@dataclass(frozen=True)
class Saliency:
    gradient: torch.Tensor  # (H, W): |d logit_target / d pixel|, max over channels
    grad_x_input: torch.Tensor  # (H, W): gradient x input, summed over channels (signed)
    target: int  # the class explained
    probs: torch.Tensor  # (10,) softmax of the model on the image


def saliency(model: nn.Module, x: torch.Tensor, target: int | None = None) -> Saliency:
    """Gradient of the target class's logit (default: the predicted class) with respect to the
    input pixels of one image `x` (1, C, H, W); eval mode, the model's weights are untouched."""
    if target is not None and not 0 <= target <= 9:
        raise ConfigError(f"target class must be 0..9, not {target}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = x.detach().to(device).requires_grad_(True)
        logits = model(x)
        cls = int(logits.argmax(1)) if target is None else target
        (grad,) = torch.autograd.grad(logits[0, cls], x)
    finally:
        model.train(was_training)
    g = grad[0].cpu()
    return Saliency(g.abs().amax(0), (g * x[0].detach().cpu()).sum(0), cls, logits[0].detach().softmax(0).cpu())


def saliency_figure(image: torch.Tensor, s: Saliency, title: str = "") -> Figure:
    """Three panels: the digit, |gradient| (where a change moves the logit most) and
    gradient x input (which inked pixels push the decision up, red, or down, blue)."""
    fig = new_figure(12, 4.4)
    a, b, c = fig.subplots(1, 3)
    a.imshow(image.numpy(), cmap="gray")
    top = s.probs.topk(3)
    a.set_title(
        "input; p: " + ", ".join(f"{int(i)}={float(p):.2f}" for p, i in zip(top.values, top.indices, strict=True))
    )
    im = b.imshow(s.gradient.numpy(), cmap="hot")
    b.set_title(f"|∂ logit[{s.target}] / ∂ pixel|")
    fig.colorbar(im, ax=b, shrink=0.8)
    lim = float(s.grad_x_input.abs().max()) or 1.0
    im = c.imshow(s.grad_x_input.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
    c.contour(image.numpy(), levels=[0.5 * float(image.max())], colors="black", linewidths=0.6)
    c.set_title(f"gradient × input for class {s.target}")
    fig.colorbar(im, ax=c, shrink=0.8)
    for ax in (a, b, c):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"saliency of class {s.target}")
    return fig


def pca_2d(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F) -> the (N, 2) projection on the first two principal components, and the share of
    variance each explains."""
    f = features.double()
    f = f - f.mean(0)
    _, sv, v = torch.linalg.svd(f, full_matrices=False)
    var = sv**2
    return (f @ v[:2].T).float(), (var[:2] / var.sum().clamp_min(1e-30)).float()


def embedding_figure(points: torch.Tensor, labels: torch.Tensor, explained: torch.Tensor, title: str = "") -> Figure:
    """Scatter of the 2-D points coloured by true class, each class's centre marked by its digit."""
    fig = new_figure(9, 8)
    ax = fig.subplots()
    for digit in range(10):
        p = points[labels == digit]
        ax.scatter(p[:, 0], p[:, 1], s=5, alpha=0.5, color=f"C{digit}", label=str(digit))
        if len(p):
            cx, cy = p.mean(0).tolist()
            ax.text(cx, cy, str(digit), fontsize=18, weight="bold", ha="center", va="center", color=f"C{digit}",
                    bbox={"boxstyle": "circle", "fc": "white", "ec": f"C{digit}", "alpha": 0.85})  # fmt: skip
    ax.set_xlabel(f"principal component 1 ({float(explained[0]):.0%} of the variance)")
    ax.set_ylabel(f"principal component 2 ({float(explained[1]):.0%} of the variance)")
    ax.legend(title="true digit", markerscale=3, fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    ax.set_title(title or "penultimate layer, PCA to 2-D")
    return fig
