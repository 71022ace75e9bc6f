"""Figure plumbing: a pyplot-free Figure, grids of image panels, PNG saving."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display anywhere: servers, CI, subprocesses

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mnistlab.errors import MnistlabError  # noqa: E402

DPI = 120  # every saved figure: small panel text stays legible


def new_figure(width: float, height: float) -> Figure:
    """A Figure of width x height inches, rendered by Agg when saved."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def grid(n: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding n panels."""
    cols = cols or math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def image_panels(fig: Figure, n: int, cols: int | None = None) -> list[Axes]:
    """n axes for images in a grid, without ticks; the grid's unused cells are removed."""
    rows, cols = grid(n, cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.remove()
    for ax in axes[:n]:
        ax.set_xticks([])
        ax.set_yticks([])
    return list(axes[:n])


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` (folders created). Raises MnistlabError when it cannot."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise MnistlabError(f"{path}: figures are written as PNG; give a path ending in .png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=DPI)
    except OSError as e:
        raise MnistlabError(f"cannot write {path}: {e.strerror or e}") from None
    return path
