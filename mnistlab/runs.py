"""Run records on disk: one folder per run, written atomically, read back without any pickle.

<run>/config.json          the resolved RunConfig (+ versions), written before training
<run>/metrics.jsonl        one JSON line per completed epoch, rewritten after each epoch
<run>/weights.safetensors  the weights after the last completed epoch; at the end, the final
                           (best-restored) weights
<run>/checkpoint.safetensors  everything needed to resume after the last completed epoch
                           (see checkpoint.py); removed once the run is complete
<run>/result.json          final test metrics, confusion matrix, timings; written LAST, so its
                           presence means the run is complete
<run>/.lock                "HOST PID" of the process training a study run right now (see claim)
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mnistlab import checkpoint, threads
from mnistlab.config import RunConfig, run_config_from_dict
from mnistlab.errors import ConfigError, MnistlabError, RunError
from mnistlab.models import create_model
from mnistlab.train import Callback, TrainState

CONFIG, METRICS, WEIGHTS, RESULT = "config.json", "metrics.jsonl", "weights.safetensors", "result.json"
ENV_RUNS = "MNISTLAB_RUNS"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def runs_root() -> Path:
    return Path(os.environ.get(ENV_RUNS) or "runs")


def check_name(name: str, what: str = "run name") -> str:
    """Names that become folder names: letters, digits, '.', '_', '-' only; never a path."""
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise ConfigError(f"bad {what} {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_weights(model: nn.Module, path: Path, model_name: str) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "mnistlab", "model": model_name})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file (never a pickle); RunError on anything else."""
    if not path.is_file():
        raise RunError(f"{path}: no weights file")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunError(f"{path}: not a valid safetensors weights file ({str(e).splitlines()[0][:200]})") from None


def apply_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Load `weights` into `model` strictly; a clear RunError when they belong to another network."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{'…' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}{'…' if len(unexpected) > 4 else ''}")
        for k in wrong[:3]:
            parts.append(f"{k} is {tuple(weights[k].shape)}, model wants {tuple(own[k].shape)}")
        name = getattr(model, "model_name", type(model).__name__)
        raise RunError(f"{source}: the weights do not fit model {name!r} with this config ({'; '.join(parts)})")
    model.load_state_dict(weights, strict=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    try:
        load = round(os.getloadavg()[0], 2)  # other jobs on the machine slow a run down: say how busy it was
    except OSError:
        load = None
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        # The vector kernels torch runs (AVX512, AVX2, ...): they round differently, and a chaotic
        # training (the 50-layer BN network of seed 3.1) ends elsewhere on another kernel set.
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "load_avg_1min": load,
        **threads.current(),  # torch_threads and how they were chosen (they change wall times several-fold)
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def new_run_dir(name: str, seed: int, root: Path | None = None) -> Path:
    root = root or runs_root()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{check_name(name, 'model name')}-{stamp}-s{seed}"
    for i in range(1000):
        path = root / (base if i == 0 else f"{base}-{i}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise RunError(f"cannot create run folder {path}: {e.strerror}") from None
    raise RunError(f"cannot create a run folder under {root}")  # pragma: no cover


class RunRecorder(Callback):
    """Writes config.json at the start; a checkpoint, metrics.jsonl and weights after every epoch.

    The checkpoint is written first and is the source of truth for `--resume`: if an interrupt
    lands between the three writes, metrics.jsonl and weights may lag one epoch, never lead.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_begin(self, state: TrainState) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                self.run_dir / CONFIG,
                {**state.config.to_dict(), "environment": environment(), "device": str(state.device)},
            )
        except OSError as e:
            raise RunError(f"cannot write the run record in {self.run_dir}: {e.strerror}") from None

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        try:
            checkpoint.save(checkpoint.capture(state), self.run_dir / checkpoint.CHECKPOINT)
            lines = "".join(json.dumps(m, sort_keys=True) + "\n" for m in state.history)
            atomic_write_bytes(self.run_dir / METRICS, lines.encode())
            save_weights(state.model, self.run_dir / WEIGHTS, state.config.model)
        except OSError as e:
            raise RunError(f"cannot write the run record in {self.run_dir}: {e.strerror}") from None


def write_result(run_dir: Path, model: nn.Module, model_name: str, result: dict[str, Any]) -> None:
    try:
        save_weights(model, run_dir / WEIGHTS, model_name)
        atomic_write_json(run_dir / RESULT, result)
        (run_dir / checkpoint.CHECKPOINT).unlink(missing_ok=True)  # complete: nothing to resume
    except OSError as e:
        raise RunError(f"cannot write the run record in {run_dir}: {e.strerror}") from None


def resolve_run(ref: str | Path) -> Path:
    """A run folder given as a path, or as a name under the runs root."""
    path = Path(ref)
    if path.is_dir():
        return path
    if isinstance(ref, str) and _SAFE_NAME.match(ref) and (runs_root() / ref).is_dir():
        return runs_root() / ref
    raise RunError(f"no run {str(ref)!r} (not a folder, nor a run under {runs_root()}/)")


def is_complete(run_dir: Path) -> bool:
    return (run_dir / RESULT).is_file()


LOCK = ".lock"


def _live_lock_holder(lock: Path) -> str | None:
    """The "HOST PID" in `lock` if that process may still be training, else None (stale). A lock
    from another host is trusted (its process cannot be checked from here); an unreadable one, or
    one naming a process of this host that no longer exists (kill -9, a crash), is stale."""
    try:
        holder = lock.read_text().strip()
        host, pid = holder.split()
        pid_n = int(pid)
    except (OSError, ValueError):
        return None
    if host != socket.gethostname():
        return holder
    try:
        os.kill(pid_n, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return None
    except PermissionError:  # exists, owned by someone else
        pass
    return holder


def claim(run_dir: Path) -> str | None:
    """Claim `run_dir` for this process before training into it; None on success, else who holds it.

    Two `study run` commands on one study folder (split with --variant, or the same command
    started twice) would otherwise train the same run at once and interleave its files. The
    lock is created with O_EXCL, so only one process can win; a stale one is taken over.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _live_lock_holder(lock)
            if holder is not None:
                return holder
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{socket.gethostname()} {os.getpid()}")
        return None
    return "another process"  # lost the race for a stale lock twice


def release(run_dir: Path) -> None:
    (run_dir / LOCK).unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: unreadable ({e})") from None


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError as e:
        raise RunError(f"{path}: unreadable ({e})") from None


@dataclass
class LoadedRun:
    path: Path
    config: RunConfig
    model: nn.Module
    history: list[dict[str, Any]]
    result: dict[str, Any] | None  # None while the run is incomplete


def load_run_config(path: Path) -> RunConfig:
    """The RunConfig recorded in a run folder."""
    try:
        return run_config_from_dict(read_json(path / CONFIG))
    except RunError:
        raise
    except MnistlabError as e:
        raise RunError(f"{path / CONFIG}: {e}") from None


def load_run(ref: str | Path, device: torch.device | str = "cpu") -> LoadedRun:
    """Rebuild a run's model through the registry from its config and load its weights."""
    path = resolve_run(ref)
    cfg = load_run_config(path)
    model = create_model(cfg.model, cfg.model_config)
    apply_weights(model, load_weights(path / WEIGHTS), path / WEIGHTS)
    model.to(device).eval()
    result = read_json(path / RESULT) if is_complete(path) else None
    return LoadedRun(path, cfg, model, read_history(path), result)


def iter_runs(root: Path | None = None) -> Iterator[Path]:
    root = root or runs_root()
    if root.is_dir():
        yield from sorted(p for p in root.iterdir() if (p / CONFIG).is_file())
