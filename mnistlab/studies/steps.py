"""Within-epoch learning curves: the seed recipes of 0.1-0.7 train ONE epoch, where per-epoch
curves are a single point. Every run of a study records the running loss and accuracy (means
over the epoch so far, as Keras' progress bar shows them) about 50 times per epoch into
<run>/steps.json, so the report can draw them against images seen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mnistlab import runs
from mnistlab.train import Callback, TrainState

STEPS = "steps.json"
POINTS_PER_EPOCH = 50


class StepCurve(Callback):
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.points: list[dict[str, Any]] = []
        self.every = 1

    def on_train_begin(self, state: TrainState) -> None:
        self.every = max(1, state.steps_per_epoch // POINTS_PER_EPOCH)
        path = self.run_dir / STEPS
        if state.epoch and path.is_file():  # resumed: keep the points of the completed epochs
            self.points = [p for p in runs.read_json(path) if p["epoch"] <= state.epoch]

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        in_epoch = (state.step - 1) % state.steps_per_epoch + 1
        if state.running is None or (in_epoch % self.every and in_epoch != state.steps_per_epoch):
            return
        loss_sum, correct, seen = state.running
        self.points.append(
            {
                "step": state.step,
                "epoch": state.epoch,
                "images": (state.epoch - 1) * len(state.splits.train) + seen,
                "loss": float(loss_sum) / seen,  # a sync point on GPUs: only ~50 per epoch
                "acc": float(correct) / seen,
            }
        )

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        runs.atomic_write_json(self.run_dir / STEPS, self.points)
