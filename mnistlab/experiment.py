"""One run end to end: data -> splits -> model -> train -> test -> record."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistlab import runs
from mnistlab.checkpoint import Checkpoint
from mnistlab.config import RunConfig
from mnistlab.data import MNIST, load_mnist
from mnistlab.dataset import Splits, prepare_splits
from mnistlab.errors import ConfigError
from mnistlab.models import create_model, keras_param_count
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
        test = evaluate(model, splits.test)
        extra = {name: evaluate(model, split) for name, split in splits.extra_tests.items()}
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
