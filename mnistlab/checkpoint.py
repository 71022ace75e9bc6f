"""Resumable training state in ONE safetensors file, so an interrupt never leaves a mixed record.

The tensors are the model weights ("model.*"), the optimizer's per-parameter state
("opt.<param index>.<name>"), the best epoch's weights when a monitor is set ("best.*") and the
random generators' states ("rng.*"). Everything else (epoch, step, history, the optimizer's
hyper-parameters, the scheduler's state, the best-epoch bookkeeping) is JSON in the file's
metadata. Nothing is pickled. Restoring it reproduces an uninterrupted run bit for bit on CPU.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mnistlab.errors import RunError

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class Checkpoint:
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def capture(state: Any) -> Checkpoint:
    """Snapshot a TrainState at the end of an epoch (after the scheduler and monitor updates)."""
    generators, scheduler = state.generators, state.scheduler
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.model.state_dict().items()}
    opt = state.optimizer.state_dict()
    for idx, per_param in opt["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{name}"] = value.detach().cpu().contiguous()
    scalars = {
        str(idx): {n: v for n, v in per_param.items() if not isinstance(v, torch.Tensor)}
        for idx, per_param in opt["state"].items()
    }
    if state.best_state is not None:
        tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in state.best_state.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    for name, gen in generators.items():
        tensors[f"rng.{name}"] = gen.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda{i}"] = s
    meta = {
        "epoch": state.epoch,
        "step": state.step,
        "train_seconds": state.train_seconds,
        "train_cpu_seconds": state.train_cpu_seconds,
        "history": state.history,
        "param_groups": opt["param_groups"],
        "opt_scalars": scalars,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "since_best": state.since_best,
    }
    return Checkpoint(tensors, meta)


def restore(state: Any, ckpt: Checkpoint) -> None:
    """Put a TrainState (and its generators and scheduler) back where `capture` found it."""
    generators, scheduler = state.generators, state.scheduler
    device = state.device
    state.model.load_state_dict({k: v.to(device) for k, v in _prefixed(ckpt.tensors, "model.").items()})
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in _prefixed(ckpt.tensors, "opt.").items():
        idx, name = key.split(".", 1)
        per_param.setdefault(int(idx), {})[name] = value.to(device) if name != "step" else value
    for idx, scalars in ckpt.meta["opt_scalars"].items():
        per_param.setdefault(int(idx), {}).update(scalars)
    state.optimizer.load_state_dict({"state": per_param, "param_groups": ckpt.meta["param_groups"]})
    if scheduler is not None and ckpt.meta["scheduler"] is not None:
        scheduler.load_state_dict(ckpt.meta["scheduler"])
    best = _prefixed(ckpt.tensors, "best.")
    state.best_state = {k: v.to(device) for k, v in best.items()} if best else None
    state.best_value, state.best_epoch = ckpt.meta["best_value"], ckpt.meta["best_epoch"]
    state.since_best = ckpt.meta["since_best"]
    state.epoch, state.step = ckpt.meta["epoch"], ckpt.meta["step"]
    state.train_seconds = ckpt.meta["train_seconds"]
    state.train_cpu_seconds = ckpt.meta.get("train_cpu_seconds", 0.0)  # absent before issue 25
    state.history = list(ckpt.meta["history"])
    torch.set_rng_state(ckpt.tensors["rng.torch"])
    for name, gen in generators.items():
        gen.set_state(ckpt.tensors[f"rng.{name}"])
    cuda_states = [ckpt.tensors[k] for k in sorted(ckpt.tensors) if k.startswith("rng.cuda")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)


def save(ckpt: Checkpoint, path: Path) -> None:
    """Atomic: write a temporary file beside `path`, then rename over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(ckpt.tensors, tmp, metadata={"format": "mnistlab-checkpoint", "state": json.dumps(ckpt.meta)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Checkpoint:
    if not path.is_file():
        raise RunError(f"{path}: no checkpoint to resume from (the run finished no epoch)")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["state"])
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as e:
        raise RunError(f"{path}: not a valid mnistlab checkpoint ({str(e).splitlines()[0][:200]})") from None
    return Checkpoint(tensors, meta)
