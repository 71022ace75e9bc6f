"""How many torch CPU threads a run uses, chosen once per process.

PyTorch's default is one intra-op thread per physical core. On a machine where another process
is busy, those threads wait for each other at every operator's barrier and a run collapses: on
a 2-core machine shared with other jobs, a 1-epoch `dnn` on 12,000 images trained in 0.3 s with
1 thread and 1.9-3.4 s with 2, and beside a competing training 0.64 s against 13-17 s (README,
"Threads": `mnistlab bench-threads`).
So the default here is the number of cores nobody else is using:

    threads = clamp(round(usable cores - 1-minute load average), 1, torch's own default)

`usable cores` is `os.sched_getaffinity` (what a container or `taskset` leaves us, which
`os.cpu_count` ignores). The load average lags (it is a 1-minute mean), so a job started after
this process still slows it down; 1 thread is never the collapse case, only a loss of speed.
`--threads N` (the `mnistlab` option) or `$MNISTLAB_THREADS` override the choice.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mnistlab.errors import ConfigError

ENV = "MNISTLAB_THREADS"
# torch's default before anyone changed it (it follows OMP_NUM_THREADS when that is set).
_TORCH_DEFAULT = torch.get_num_threads()


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str  # how it was chosen, for run records and bench lines


_applied: ThreadChoice | None = None


def torch_default() -> int:
    return _TORCH_DEFAULT


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def parse_threads(value: str | int, source: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(f"bad {source} {value!r}: use a whole number of threads, 1 or more")
    return n


def choose(
    requested: int | None = None,
    env: Mapping[str, str] | None = None,
    cores: int | None = None,
    load: float | None = None,
    torch_default: int | None = None,
) -> ThreadChoice:
    """The thread count for this process: `requested`, else $MNISTLAB_THREADS, else the cores
    the load average says are free (never more than torch's own default, never fewer than 1)."""
    env = os.environ if env is None else env
    if requested is not None:
        return ThreadChoice(parse_threads(requested, "--threads"), "--threads")
    if env.get(ENV):
        return ThreadChoice(parse_threads(env[ENV], ENV), ENV)
    cores = usable_cores() if cores is None else cores
    load = load_average() if load is None else load
    ceiling = min(cores, _TORCH_DEFAULT if torch_default is None else torch_default)
    if load is None:
        return ThreadChoice(ceiling, f"{cores} usable cores, load average unknown")
    free = math.floor(cores - load + 0.5)  # round half up: load 0.5 on 2 cores still leaves 2 free
    n = max(1, min(ceiling, free))
    return ThreadChoice(n, f"{cores} usable cores, load average {load:.2f}")


def apply(choice: ThreadChoice) -> ThreadChoice:
    global _applied
    torch.set_num_threads(choice.threads)
    _applied = choice
    return choice


def ensure(requested: int | None = None) -> ThreadChoice:
    """Apply `choose(requested)` unless this process has already chosen (and nothing is requested)."""
    if _applied is not None and requested is None:
        return _applied
    return apply(choose(requested))


def current() -> dict[str, object]:
    """What run records and bench lines say about threads."""
    n = torch.get_num_threads()
    if _applied is not None and _applied.threads == n:
        return {"torch_threads": n, "threads_chosen_by": _applied.reason}
    return {"torch_threads": n, "threads_chosen_by": "set outside mnistlab.threads (torch default or caller)"}


def describe() -> str:
    c = current()
    return f"{c['torch_threads']} torch thread(s) ({c['threads_chosen_by']})"


# ---------------------------------------------------------------------------------------------
# The measurement behind the default: `mnistlab bench-threads`


def _train_cmd(
    threads: int, recipe: str, train_limit: int, epochs: int, run_dir: Path, data_dir: str | None
) -> list[str]:
    cmd = [sys.executable, "-m", "mnistlab", "--threads", str(threads), "train", recipe, "--epochs", str(epochs)]
    cmd += ["--set", f"data.train_limit={train_limit}", "--set", "data.test_limit=2000", "--quiet", "--json"]
    cmd += ["--run-dir", str(run_dir)]
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def measure(
    thread_counts: Sequence[int] = (1, 2),
    recipe: str = "dnn",
    train_limit: int = 12000,
    repeats: int = 1,
    data_dir: str | None = None,
    timeout_s: float = 900,
    on_trial: Callable[[dict[str, Any]], None] = lambda t: None,
) -> list[dict[str, Any]]:
    """One-epoch runs of `recipe` on `train_limit` images with each thread count, alone and with a
    competing 1-thread training started beside it, each in a fresh process. Per trial: training
    seconds (from the run's result), CPU seconds of the whole process (start-up included) and the
    load average when it started. Trials are interleaved so that a change in the machine's load
    hits every condition alike."""
    import resource  # Unix only; nothing else here needs it

    trials = []
    with tempfile.TemporaryDirectory(prefix="mnistlab-threads-") as tmp:
        root = Path(tmp)
        for rep in range(repeats):
            for busy in (False, True):
                competitor = None
                if busy:
                    comp_dir = root / f"competitor-{rep}"
                    competitor = subprocess.Popen(
                        _train_cmd(1, recipe, train_limit, 10_000, comp_dir, data_dir),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    # wait until it trains (its first record is written once data and model are ready)
                    t0 = time.monotonic()
                    while not (comp_dir / "config.json").is_file() and time.monotonic() - t0 < 120:
                        if competitor.poll() is not None:
                            raise RuntimeError("the competing training exited before the measurement")
                        time.sleep(0.2)
                    time.sleep(2.0)
                try:
                    for n in thread_counts:
                        run_dir = root / f"t{n}-{'busy' if busy else 'alone'}-{rep}"
                        load = load_average()
                        before = resource.getrusage(resource.RUSAGE_CHILDREN)
                        t0 = time.perf_counter()
                        proc = subprocess.run(
                            _train_cmd(n, recipe, train_limit, 1, run_dir, data_dir),
                            capture_output=True,
                            text=True,
                            timeout=timeout_s,
                        )
                        wall = time.perf_counter() - t0
                        after = resource.getrusage(resource.RUSAGE_CHILDREN)
                        if proc.returncode != 0:
                            raise RuntimeError(f"training failed: {proc.stderr.strip().splitlines()[-1:]}")
                        result = json.loads(proc.stdout.strip().splitlines()[-1])
                        trial = {
                            "threads": n,
                            "competitor": busy,
                            "repeat": rep,
                            "train_seconds": result["train_seconds"],
                            "process_wall_seconds": wall,
                            "process_cpu_seconds": (after.ru_utime - before.ru_utime)
                            + (after.ru_stime - before.ru_stime),
                            "test_acc": result["test_acc"],
                            "load_avg_1min_at_start": load,
                        }
                        trials.append(trial)
                        on_trial(trial)
                finally:
                    if competitor is not None:
                        competitor.terminate()
                        competitor.wait(timeout=60)
    return trials
