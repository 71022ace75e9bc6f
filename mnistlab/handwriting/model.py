"""The default model for reading handwriting: which run it is, and training it on first use.

The recipe is `robust` (recipes.py: why that augmentation). The default reader is the newest
complete `robust` run under the runs root (so `mnistlab train robust` makes it the default),
else the one in the user cache, which `predict` and `serve` train there on first use (~80 s on
2 CPU cores). Both are ordinary run records that `predict --run`, `eval` and `serve` read.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from mnistlab import runs
from mnistlab.experiment import run_experiment
from mnistlab.predictor import Predictor
from mnistlab.recipes import LINE_READER_RECIPE, READER_RECIPE, resolve_run_config
from mnistlab.train import Callback, TrainState, pick_device

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
    """The cache folder of the default reader (trained there on first use)."""
    return models_cache_dir() / READER_RECIPE


def is_reader_run(path: Path) -> bool:
    """A complete run of the reader recipe (records before the recipe was recorded: by name), not
    one adapted to a writer."""
    if not runs.is_complete(path):
        return False
    try:
        config = runs.read_json(path / runs.CONFIG)
        recipe = config.get("recipe") or ""
    except (runs.RunError, AttributeError):
        return False
    if config.get("adapted_from"):  # adapted to one writer (handwriting/adapt.py): never the default
        return False
    return recipe == READER_RECIPE or (not recipe and path.name.startswith(f"{READER_RECIPE}-"))


def trained_reader_run(root: Path | None = None) -> Path | None:
    """The newest complete `robust` run under the runs root, if there is one."""
    found = [p for p in runs.iter_runs(root) if is_reader_run(p)]
    return max(found, key=lambda p: (p / runs.RESULT).stat().st_mtime) if found else None


def default_reader_dir() -> Path:
    """The run the default reader reads with: a `robust` run you trained, else the cached one
    (which may not exist yet: `default_predictor` trains it)."""
    return trained_reader_run() or default_model_dir()


def is_line_reader_run(path: Path) -> bool:
    """A complete run of the line-reader recipe."""
    if not runs.is_complete(path):
        return False
    try:
        return runs.read_json(path / runs.CONFIG).get("recipe") == LINE_READER_RECIPE
    except (runs.RunError, AttributeError):
        return False


def trained_line_reader_run(root: Path | None = None) -> Path | None:
    """The newest complete `line-reader` run under the runs root (`mnistlab train line-reader`)."""
    found = [p for p in runs.iter_runs(root) if is_line_reader_run(p)]
    return max(found, key=lambda p: (p / runs.RESULT).stat().st_mtime) if found else None


def default_predictor(
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    data_dir: str | Path | None = None,
) -> Predictor:
    """The default reader as a Predictor; trains the cached one first when there is none.
    An incomplete cache folder (training interrupted) is trained again from scratch."""
    dev = device if isinstance(device, torch.device) else pick_device(device)
    path = default_reader_dir()
    if not runs.is_complete(path):
        train_default_model(path, dev, progress, data_dir)
    return Predictor.load(path, dev)


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
    if path.exists():
        shutil.rmtree(path)  # an interrupted earlier attempt
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = resolve_run_config(READER_RECIPE)
    callbacks = [StepProgress(progress)] if progress else []
    run_experiment(cfg, run_dir=path, data_dir=data_dir, device=device, callbacks=callbacks)
    return path
