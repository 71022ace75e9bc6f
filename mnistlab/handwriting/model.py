"""The `robust` recipe and the default model for reading handwriting, trained on first use.

MNIST digits are clean, centred, one pen, one writer population. A person's digits are not: the
recipe trains a small BN CNN (fastnet) under augmentation that covers what differs (slant,
size, wobble, pen width, blur, faint ink, sensor noise). Polarity inversion is implemented in
augment.py but left off here: the reading pipeline always hands the model white-on-black
crops, and spending capacity on both polarities costs accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mnistlab.recipes import register_recipe
from mnistlab.train import Callback, TrainState

ROBUST = "robust"

ROBUST_OVERRIDES = {
    "model.widths": "16,32,64",
    "train.epochs": 2,
    "train.batch_size": 128,
    "train.optimizer": "adam",
    "train.lr": 0.006,
    "train.schedule": "onecycle",
    "train.warmup": 0.2,
    "train.label_smoothing": 0.05,
    "augment.rotate": 15,
    "augment.zoom": 0.15,
    "augment.shift": 0.08,
    "augment.shear": 15,
    "augment.elastic": 1.5,
    "augment.thickness": 0.5,
    "augment.blur": 1.0,
    "augment.noise": 0.08,
    "augment.contrast": 0.4,
}

register_recipe(
    ROBUST,
    "fastnet",
    ROBUST_OVERRIDES,
    "fastnet 16-32-64 under handwriting augmentation (affine, elastic, pen width, blur, noise, "
    "contrast): the default model of `mnistlab predict`",
)

ENV_CACHE = "MNISTLAB_CACHE"

# Called with (done_steps, total_steps) while the default model trains.
Progress = Callable[[int, int], None]


def models_cache_dir() -> Path:
    """$MNISTLAB_CACHE/models, else $XDG_CACHE_HOME/mnistlab/models (~/.cache/mnistlab/models)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser() / "models"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mnistlab" / "models"


def default_model_dir() -> Path:
    return models_cache_dir() / ROBUST


def default_model(
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    data_dir: str | Path | None = None,
) -> nn.Module:
    """The default reading model (eval mode): the cached `robust` run, trained now if absent.

    The cache folder is an ordinary run record (config.json, metrics.jsonl, weights, result.json),
    so `mnistlab predict --run ~/.cache/mnistlab/models/robust` and `mnistlab eval` read it too.
    An incomplete folder (training interrupted) is trained again from scratch.
    """
    from mnistlab import runs
    from mnistlab.train import pick_device

    dev = device if isinstance(device, torch.device) else pick_device(device)
    path = default_model_dir()
    if not runs.is_complete(path):
        train_default_model(path, dev, progress, data_dir)
    return runs.load_run(path, dev).model.eval()


class StepProgress(Callback):
    """Adapts a (done, total) callback to the trainer's Callback protocol."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.total = 0

    def on_train_begin(self, state: TrainState) -> None:
        self.total = state.steps_per_epoch * state.config.train.epochs
        self.progress(0, self.total)

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        if state.step % 10 == 0:
            self.progress(state.step, self.total)

    def on_train_end(self, state: TrainState) -> None:
        self.progress(self.total, self.total)


def train_default_model(
    path: Path,
    device: torch.device,
    progress: Progress | None = None,
    data_dir: str | Path | None = None,
) -> Path:
    import shutil

    from mnistlab.experiment import run_experiment
    from mnistlab.recipes import resolve_run_config

    if path.exists():
        shutil.rmtree(path)  # an interrupted earlier attempt
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = resolve_run_config(ROBUST)
    callbacks = [StepProgress(progress)] if progress else []
    run_experiment(cfg, run_dir=path, data_dir=data_dir, device=device, callbacks=callbacks)
    return path
