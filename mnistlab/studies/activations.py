"""Seed 3.2's activation histograms: after every epoch, a histogram of the input and of the
outputs of the first hidden layers, on a fixed sample of training images.

Written to <run>/activations.json: {"layers": [...], "edges": {layer: [...]}, "epochs":
[{"epoch": e, "counts": {layer: [...]}}]}. (A small study-local callback: `mnistlab/viz/` had
no per-epoch activation callback when the studies were written.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistlab import runs
from mnistlab.train import Callback, TrainState

BINS = 60


def hidden_outputs(model: nn.Module, x: torch.Tensor, layers: int) -> dict[str, torch.Tensor]:
    """The input and the outputs of the first `layers - 1` activation layers (act1, act2, ...)."""
    outs: dict[str, torch.Tensor] = {"input": x.flatten()}
    h = x
    for name, module in model.named_children():
        h = module(h)
        if name.startswith("act"):
            outs[name] = h.flatten()
            if len(outs) >= layers:
                break
    return outs


class ActivationHistograms(Callback):
    def __init__(self, run_dir: Path, layers: int = 6, samples: int = 1000):
        self.run_dir = run_dir
        self.layers = layers
        self.samples = samples
        self.data: dict[str, Any] = {"layers": [], "edges": {}, "epochs": []}

    def on_train_begin(self, state: TrainState) -> None:
        path = self.run_dir / "activations.json"
        if state.epoch and path.is_file():  # resumed: keep the epochs already recorded
            self.data = json.loads(path.read_text())
            self.data["epochs"] = [e for e in self.data["epochs"] if e["epoch"] <= state.epoch]

    @torch.no_grad()
    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        x = state.splits.train.x[: self.samples].to(state.device)
        was_training = state.model.training
        state.model.eval()
        outs = hidden_outputs(state.model, x, self.layers)
        state.model.train(was_training)
        counts = {}
        for name, v in outs.items():
            v = v.float().cpu()
            if name not in self.data["edges"]:  # fixed bins per layer, from the first epoch
                lo, hi = float(v.min()), float(v.max())
                if hi - lo < 1e-6:
                    lo, hi = lo - 1.0, hi + 1.0
                pad = 0.25 * (hi - lo)
                self.data["edges"][name] = torch.linspace(lo - pad, hi + pad, BINS + 1).tolist()
            edges = torch.tensor(self.data["edges"][name])
            clipped = v.clamp(float(edges[0]), float(edges[-1]))
            counts[name] = torch.histogram(clipped, edges).hist.int().tolist()
        self.data["layers"] = list(outs)
        self.data["epochs"].append({"epoch": metrics["epoch"], "counts": counts})
        self.run_dir.mkdir(parents=True, exist_ok=True)
        runs.atomic_write_json(self.run_dir / "activations.json", self.data)
