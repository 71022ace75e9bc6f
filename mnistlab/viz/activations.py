"""Histograms of what each layer outputs (seed 3.2): computed now on a trained model, or recorded
after every epoch while training by `ActivationRecorder` into the run's `activations.json`.

`ActivationRecorder` is the one recorder: `mnistlab train --record-activations` and the studies
(deep-init's 3.2 grid) both use it, and `show activations` and `study report` both draw its file
with `activation_grid_figure`. The file holds histogram counts and bin edges (never raw tensors),
a few kB per epoch:

    {"version": 1, "probe": {"split": "train" | "val", "n": N}, "bins": B, "layers": [...],
     "epochs": [{"epoch": e, "histograms": {layer: {counts, edges, mean, std, zero_frac, n}}}]}

Files of the studies' former recorder ({"layers", "edges": {layer: [...]}, "epochs": [{"epoch",
"counts": {layer: [...]}}]}, fixed bins, no statistics) are still read: `read_activations`
converts them, with mean and std estimated from the bins and the share of zeros unknown (None).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from mnistlab.errors import RunError
from mnistlab.runs import atomic_write_json
from mnistlab.train import Callback, TrainState
from mnistlab.viz._plot import new_figure
from mnistlab.viz.layers import activation_layers, layer_outputs

ACTIVATIONS_FILE = "activations.json"
BINS = 40
PROBE_SIZE = 1000  # images the histograms are taken over (the same ones every epoch)
DEFAULT_FIGURE_LAYERS = 6  # the input and the first 5 hidden layers, as seed 3.2


def histogram(values: torch.Tensor, bins: int = BINS) -> dict[str, Any]:
    """Counts and edges of `values` over their own range, plus mean, std and the share of exact zeros
    (dead ReLUs). JSON-ready."""
    v = values.detach().flatten().float().cpu()
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12:  # a constant output: one visible bin around it
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = torch.histogram(v, bins=bins, range=(lo, hi))
    return {
        "counts": [int(c) for c in counts],
        "edges": [round(float(e), 6) for e in edges],
        "mean": float(v.mean()),
        "std": float(v.std()) if v.numel() > 1 else 0.0,
        "zero_frac": float((v == 0).float().mean()),
        "n": int(v.numel()),
    }


def default_layers(model: nn.Module) -> list[str]:
    """The input and every activation layer; all layers when the model has no activation layers."""
    acts = activation_layers(model)
    return ["input", *(acts or [n for n, _ in model.named_children()])]


def layer_histograms(model: nn.Module, x: torch.Tensor, layers: Sequence[str], bins: int = BINS) -> dict[str, Any]:
    """{layer: histogram} of the outputs of `layers` on the images `x` (eval mode)."""
    device = next(model.parameters()).device
    outputs = layer_outputs(model, x.to(device), layers)
    return {name: histogram(outputs[name], bins) for name in layers}


class ActivationRecorder(Callback):
    """After every epoch, histograms of each recorded layer's outputs on a fixed probe batch,
    written to `run_dir/activations.json`. The probe is the first `probe_size` images of
    `split`: "train" (seed 3.2 histograms the training images), "val", or None = the validation
    images when the run has them, else the training images. `max_layers` keeps the first layers
    of the default list (the input and every activation layer; 6 = seed 3.2's input + 5 hidden).
    On `--resume` the epochs already recorded are kept."""

    def __init__(
        self,
        run_dir: Path,
        layers: Sequence[str] | None = None,
        probe_size: int = PROBE_SIZE,
        split: str | None = None,
        max_layers: int | None = None,
    ):
        if split not in (None, "train", "val"):
            raise ValueError(f"split must be 'train', 'val' or None, not {split!r}")
        self.path = Path(run_dir) / ACTIVATIONS_FILE
        self.layers = list(layers) if layers else None
        self.probe_size = probe_size
        self.split = split
        self.max_layers = max_layers
        self.record: dict[str, Any] = {}
        self.probe: torch.Tensor | None = None

    def on_train_begin(self, state: TrainState) -> None:
        use_val = state.splits.val is not None and self.split != "train"
        if self.split == "val" and state.splits.val is None:
            raise RunError("activation histograms on validation images need data.val_split > 0")
        split_name = "val" if use_val else "train"
        split = state.splits.val if use_val else state.splits.train
        self.probe = split.x[: self.probe_size].to(state.device)
        layers = self.layers or default_layers(state.model)[: self.max_layers]
        self.record = {
            "version": 1,
            "probe": {"split": split_name, "n": len(self.probe)},
            "bins": BINS,
            "layers": layers,
            "epochs": [],
        }
        if state.epoch > 0 and self.path.is_file():  # resuming: keep what the first part recorded
            old = read_activations(self.path.parent)
            self.record["epochs"] = [e for e in old["epochs"] if e["epoch"] <= state.epoch]

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        assert self.probe is not None
        hists = layer_histograms(state.model, self.probe, self.record["layers"])
        self.record["epochs"].append({"epoch": metrics["epoch"], "histograms": hists})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, self.record)
        except OSError as e:
            raise RunError(f"cannot write {self.path}: {e.strerror}") from None


def _stats_from_bins(counts: list[int], edges: list[float]) -> dict[str, Any]:
    """A histogram entry rebuilt from counts and edges only: mean/std from the bin centres."""
    c = torch.tensor(counts, dtype=torch.float64)
    e = torch.tensor(edges, dtype=torch.float64)
    centres = (e[:-1] + e[1:]) / 2
    n = float(c.sum())
    mean = float((c * centres).sum() / n) if n else 0.0
    var = float((c * (centres - mean) ** 2).sum() / max(n - 1, 1)) if n else 0.0
    return {"counts": counts, "edges": edges, "mean": mean, "std": var**0.5, "zero_frac": None, "n": int(n)}


def _from_study_format(old: dict[str, Any]) -> dict[str, Any]:
    """The studies' former file (fixed bins per layer, counts only) as a version-1 record."""
    edges = old["edges"]
    layers = list(old["layers"])
    epochs = [
        {"epoch": e["epoch"], "histograms": {k: _stats_from_bins(e["counts"][k], edges[k]) for k in layers}}
        for e in old["epochs"]
    ]
    return {
        "version": 1,
        "probe": {"split": "train", "n": None},  # the former recorder took training images; how many is not stored
        "bins": len(next(iter(edges.values()))) - 1 if edges else BINS,
        "layers": layers,
        "epochs": epochs,
        "converted_from": "study recorder (mean/std estimated from the bins)",
    }


def read_activations(run_dir: Path) -> dict[str, Any]:
    """The run's activations.json as a version-1 record (the studies' former format converted);
    RunError, one line, when it is missing or unreadable."""
    path = Path(run_dir) / ACTIVATIONS_FILE
    if not path.is_file():
        raise RunError(f"{run_dir} has no {ACTIVATIONS_FILE}: train it with `mnistlab train ... --record-activations`")
    try:
        record = json.loads(path.read_text())
        if "version" not in record and "edges" in record:
            record = _from_study_format(record)
        record["layers"], record["probe"]  # noqa: B018 - the keys the figure needs
        for e in record["epochs"]:
            for layer in record["layers"]:
                e["histograms"][layer]["counts"], e["histograms"][layer]["edges"]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError, IndexError, StopIteration) as e:
        raise RunError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    return record


def activation_grid_figure(
    rows: Sequence[tuple[str, dict[str, Any]]], layers: Sequence[str], title: str = ""
) -> Figure:
    """A grid of histograms: one row per entry of `rows` ((label, {layer: histogram}), e.g. one per
    epoch), one column per layer. Bars show the share of values per bin; every panel's title
    gives its mean, std and share of zeros. Columns share their x range so epochs compare."""
    n_rows, n_cols = len(rows), len(layers)
    fig = new_figure(2.1 * n_cols + 0.8, 1.25 * n_rows + 1.0)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for j, layer in enumerate(layers):
        lo = min(h[layer]["edges"][0] for _, h in rows)
        hi = max(h[layer]["edges"][-1] for _, h in rows)
        for i, (label, hists) in enumerate(rows):
            h = hists[layer]
            counts = torch.tensor(h["counts"], dtype=torch.float64)
            edges = torch.tensor(h["edges"], dtype=torch.float64)
            share = counts / counts.sum().clamp_min(1)
            ax = axes[i, j]
            ax.stairs(share.numpy(), edges.numpy(), fill=True, color="tab:blue")
            ax.set_xlim(lo, hi)
            ax.tick_params(labelsize=6)
            zeros = "" if h.get("zero_frac") is None else f" zeros {h['zero_frac']:.0%}"
            ax.set_title(f"μ {h['mean']:.2f} σ {h['std']:.2f}{zeros}", fontsize=7)
            if i == 0:
                ax.annotate(layer, (0.5, 1.35), xycoords="axes fraction", ha="center", fontsize=10, weight="bold")
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
            if i == n_rows - 1:
                ax.set_xlabel("output value", fontsize=7)
    fig.suptitle(title or "layer output histograms (share of values per bin)")
    return fig
