"""One run end to end: data -> splits -> model -> train -> test -> record."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistlab import checkpoint, runs
from mnistlab.checkpoint import Checkpoint
from mnistlab.config import RunConfig
from mnistlab.data import MNIST, load_mnist
from mnistlab.dataset import Splits, prepare_splits
from mnistlab.errors import ConfigError, RunError
from mnistlab.models import create_model, get_spec, keras_param_count
from mnistlab.recipes import resolve_run_config
from mnistlab.train import (
    Callback,
    TrainResult,
    autocast_bf16,
    evaluate,
    flush_denormal,
    pick_device,
    seed_everything,
    train,
)


@dataclass
class Outcome:
    config: RunConfig
    model: nn.Module
    splits: Splits
    train: TrainResult
    result: dict[str, Any]  # what result.json holds
    run_dir: Path | None


def build_model(cfg: RunConfig, splits: Splits, device: torch.device) -> nn.Module:
    seed_everything(cfg.seed)
    model = create_model(cfg.model, cfg.model_config).to(device)
    want = tuple(model.input_shape)
    got = tuple(splits.train.x.shape[1:])
    if want != got:
        raise ConfigError(
            f"model {cfg.model!r} takes {want[0]}x{want[1]}x{want[2]} images but the data gives "
            f"{got[0]}x{got[1]}x{got[2]}: set model.input_size / model.in_channels to match"
        )
    return model


def run_experiment(
    cfg: RunConfig,
    *,
    run_dir: Path | None = None,
    record: bool = True,
    data_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    callbacks: Sequence[Callback] = (),
    mnist: MNIST | None = None,
    resume: Checkpoint | None = None,
) -> Outcome:
    """Train `cfg` and test it. With `record`, leaves a complete run folder (see runs.py).

    `resume` continues an interrupted run (its checkpoint; `run_dir` must be that run's folder).
    """
    if get_spec(cfg.model).task != "digit":  # the line reader trains on strips: handwriting.lines
        raise ConfigError(
            f"model {cfg.model!r} is a line reader, not a digit classifier: train it with `mnistlab train`"
        )
    device = device if isinstance(device, torch.device) else pick_device(device)
    mnist = mnist or load_mnist(data_dir)
    splits = prepare_splits(mnist, cfg.data, cfg.seed)
    model = build_model(cfg, splits, device)
    if record and run_dir is None:
        run_dir = runs.new_run_dir(cfg.model, cfg.seed)
    cbs = list(callbacks)
    if record:
        cbs.append(runs.RunRecorder(run_dir))
    with flush_denormal(cfg.train.flush_denormal):
        tr = train(cfg, model, splits, device, cbs, resume=resume)
        t0 = time.perf_counter()
        pc = cfg.train.prob_clip
        test = evaluate(model, splits.test, prob_clip=pc)
        extra = {name: evaluate(model, split, prob_clip=pc) for name, split in splits.extra_tests.items()}
        eval_seconds = time.perf_counter() - t0
    total, trainable = keras_param_count(model)
    last = tr.history[-1] if tr.history else {}
    result: dict[str, Any] = {
        "model": cfg.model,
        "seed": cfg.seed,
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "test_n": test["n"],
        "confusion": test["confusion"],
        "train_acc": last.get("acc"),  # running mean over the last epoch, as Keras prints it
        "train_loss": last.get("loss"),
        "val_acc": last.get("val_acc"),
        "val_loss": last.get("val_loss"),
        "epochs": len(tr.history),
        "best_epoch": tr.best_epoch,
        "stopped_early": tr.stopped_early,
        "train_seconds": tr.train_seconds,
        "train_cpu_seconds": tr.train_cpu_seconds,  # process CPU, all threads: holds up on a shared machine
        "wall_seconds": tr.wall_seconds,
        "eval_seconds": eval_seconds,
        "params": total,
        "trainable": trainable,
        "device": str(device),
        "bf16": autocast_bf16(cfg.train.precision, device),  # what train.precision meant here
        "extra_tests": {k: {"acc": v["acc"], "loss": v["loss"]} for k, v in extra.items()},
        "run_dir": str(run_dir) if record else None,
    }
    if record:
        runs.write_result(run_dir, model, cfg.model, result)
    return Outcome(cfg, model, splits, tr, result, run_dir if record else None)


# --------------------------------------------------------------------------------------------
# `mnistlab train`: a new run or the rest of an interrupted one, stopped cleanly by Ctrl-C


@dataclass(frozen=True)
class TrainPlan:
    """A run to train: a new one, or (`resume`) the rest of an interrupted one."""

    name: str  # the recipe or model the run folder is named after
    config: RunConfig
    run_dir: Path | None = None  # None: a new folder under the runs root (see `folder`)
    resume: Checkpoint | None = None

    def folder(self) -> TrainPlan:
        """This plan with its run folder made: the one given, else a new runs/NAME-TIME-sSEED."""
        if self.run_dir is not None:
            return self
        return dataclasses.replace(self, run_dir=runs.new_run_dir(self.name, self.config.seed))


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM turned into one) stopped training; the run folder keeps every completed
    epoch. A KeyboardInterrupt, so code that only knows those still stops."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.epochs_done = len(runs.read_history(run_dir))
        super().__init__(
            f"{run_dir} holds {self.epochs_done} completed epoch(s); continue with: mnistlab train --resume {run_dir}"
        )


def plan_training(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    *,
    run_dir: Path | None = None,
    resume: str | Path | None = None,
) -> TrainPlan:
    """The run `mnistlab train` is asked for: `name` (a recipe or model) with `overrides` and
    `seed`, into `run_dir` (default: a new folder, made by `TrainPlan.folder`); or, with `resume`
    (a run folder or name), the rest of that interrupted run under its own recorded config, so
    nothing else may be given (a ConfigError) and a complete run is a RunError. Makes no folder."""
    if resume is None:
        return TrainPlan(name, resolve_run_config(name, overrides, seed), run_dir)
    if overrides or run_dir is not None:
        raise ConfigError("--resume continues a run with its own recorded config; drop the other options")
    folder = runs.resolve_run(resume)
    if runs.is_complete(folder):
        raise RunError(f"{folder} is already complete (it has a result.json)")
    cfg = runs.load_run_config(folder)
    return TrainPlan(cfg.model, cfg, folder, checkpoint.load(folder / checkpoint.CHECKPOINT))


def train_run(
    plan: TrainPlan,
    *,
    mnist: MNIST | None = None,
    data_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    callbacks: Sequence[Callback] = (),
) -> Outcome:
    """Train `plan` into its run folder and record it (run_experiment). An interrupt during
    training becomes a TrainingInterrupted naming the folder, what it holds and how to go on."""
    plan = plan.folder()
    assert plan.run_dir is not None
    try:
        return run_experiment(
            plan.config, run_dir=plan.run_dir, data_dir=data_dir, device=device, callbacks=callbacks,
            mnist=mnist, resume=plan.resume,
        )  # fmt: skip
    except KeyboardInterrupt:
        raise TrainingInterrupted(plan.run_dir) from None
