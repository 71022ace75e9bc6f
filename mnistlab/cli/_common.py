"""Helpers shared by the command modules: consoles, progress bars, JSON output, the options
several commands take (as `Annotated` types: `data_dir: DataDir = None`)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mnistlab.train import Callback, TrainState

# Rich wraps at 80 columns when not on a terminal; logs and pipes read better unwrapped.
out = Console(highlight=False)  # results, on stdout
if not out.is_terminal:
    out = Console(highlight=False, width=160)
err = Console(stderr=True, highlight=False)  # progress and notes, on stderr
if not err.is_terminal:
    err = Console(stderr=True, highlight=False, width=160)

DataDirOption = dict(help="Folder holding the MNIST IDX files (default: $MNISTLAB_DATA, then the cache).")
DataDir = Annotated[str | None, typer.Option("--data-dir", **DataDirOption)]
Device = Annotated[str | None, typer.Option(help="cpu or cuda.")]
DeviceOrCuda = Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")]
SetOverrides = Annotated[list[str] | None, typer.Option("--set", help="Config override KEY=VALUE (repeatable).")]
JsonObject = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """From now on SIGTERM (a scheduler, `kill`) stops this process like Ctrl-C does, so a
    long command keeps what it recorded and says how to continue."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def figure_path(path: Path | None, name: str, run_dir: Path | None = None) -> Path:
    """Where a command writes figure NAME: `path` when given, else RUN/figures/NAME, or, for a
    figure of no run, figures/NAME under the runs root: never the current folder (a user's
    checkout filled with PNGs otherwise)."""
    from mnistlab import runs

    return path or (run_dir if run_dir is not None else runs.runs_root()) / "figures" / name


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def fmt_metrics(m: dict[str, Any]) -> str:
    parts = [f"loss {m['loss']:.4f}", f"acc {m['acc']:.4f}"]
    if "val_loss" in m:
        parts += [f"val_loss {m['val_loss']:.4f}", f"val_acc {m['val_acc']:.4f}"]
    parts += [f"lr {m['lr']:.3g}", f"{m['seconds']:.1f}s"]
    return " - ".join(parts)


class ProgressBar(Callback):
    """A rich progress bar with running loss and accuracy; Keras-like epoch lines on stderr.

    The bar only draws on a terminal; epoch lines are printed unless `quiet`.
    """

    def __init__(self, quiet: bool = False, every: int = 20):
        self.quiet = quiet
        self.every = every  # batches between bar refreshes (.item() is a sync point on GPUs)
        self.live = err.is_terminal and not quiet
        self.progress: Progress | None = None
        self.task = None

    def on_train_begin(self, state: TrainState) -> None:
        if self.live:
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self.progress.start()

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        if self.progress is None:
            return
        in_epoch = (state.step - 1) % state.steps_per_epoch + 1
        if self.task is None or in_epoch == 1:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(
                "train",
                total=state.steps_per_epoch,
                epoch=state.epoch,
                epochs=state.config.train.epochs,
                loss=0.0,
                acc=0.0,
            )
        if (in_epoch % self.every == 0 or in_epoch == state.steps_per_epoch) and state.running is not None:
            loss_sum, correct, seen = state.running  # running means over the epoch, as Keras shows
            self.progress.update(self.task, completed=in_epoch, loss=float(loss_sum) / seen, acc=float(correct) / seen)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        if not self.quiet:
            err.print(f"epoch {metrics['epoch']}/{state.config.train.epochs} - {fmt_metrics(metrics)}")

    def on_train_end(self, state: TrainState) -> None:
        if self.progress is not None:
            self.progress.stop()
