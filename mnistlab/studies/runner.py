"""Run a study: every variant x seed through `run_experiment`, locally or as Ray tasks.

Records go to <root>/<variant>/s<seed>/ (a normal run folder, see runs.py), with
<root> = $MNISTLAB_RUNS/studies/<study> (or <study>-quick with --quick), unless `out` is given.
A run whose folder already has a result.json is skipped, so a study interrupted by Ctrl-C
continues where it stopped; an interrupted run with a checkpoint resumes from its last epoch.
A complete run recorded with a different config (the study file changed) is an error, never
silently mixed into the table. Each run is claimed (runs.claim) while it trains, so two
commands on one study folder share the work instead of training the same run twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab import checkpoint, runs, threads
from mnistlab.config import RunConfig, run_config_from_dict
from mnistlab.data import MNIST, load_mnist
from mnistlab.errors import ConfigError, RunError
from mnistlab.experiment import run_experiment
from mnistlab.studies import Study, Variant, validate
from mnistlab.train import Callback

EXECUTORS = ("local", "ray")


@dataclass
class RunEvent:
    """What the runner tells its caller (the CLI prints it; nothing here prints)."""

    kind: str  # "skip" | "busy" (another process is training it) | "start" | "done" | "evaluated"
    variant: str
    seed: int
    index: int  # 1-based position in the plan
    total: int
    run_dir: Path
    result: dict[str, Any] | None = None
    holder: str | None = None  # for "busy": "HOST PID" of the process training it


def study_root(study: Study, quick: bool = False, out: str | Path | None = None) -> Path:
    if out is not None:
        return Path(out)
    return runs.runs_root() / "studies" / (f"{study.name}-quick" if quick else study.name)


def run_dir_for(root: Path, variant: str, seed: int) -> Path:
    return root / variant / f"s{seed}"


def _same_config(run_dir: Path, cfg: RunConfig) -> bool:
    recorded = json.loads((run_dir / runs.CONFIG).read_text())
    return run_config_from_dict(recorded).to_dict() == cfg.to_dict()


def _skipped_as_complete(rd: Path, cfg: RunConfig, skip: RunEvent, on_event: Callable[[RunEvent], None]) -> bool:
    """True (and `skip` reported with its result) when `rd` already holds this run, complete."""
    if not runs.is_complete(rd):
        return False
    if not _same_config(rd, cfg):
        raise RunError(
            f"{rd} holds a complete run with a different config (the study changed?): remove it or pass another --out"
        )
    skip.result = runs.read_json(rd / runs.RESULT)
    on_event(skip)
    return True


def callbacks_for(study: Study, variant: Variant, run_dir: Path) -> list[Callback]:
    """Per-run extras the report needs: within-epoch curves, and 3.2's activation histograms."""
    from mnistlab.studies.steps import StepCurve

    cbs: list[Callback] = [StepCurve(run_dir)]
    if "activations" in study.figures and study.activations.get("variant") == variant.name:
        from mnistlab.viz.activations import ActivationRecorder  # the one recorder (show activations reads it)

        cbs.append(
            ActivationRecorder(
                run_dir,
                probe_size=int(study.activations.get("samples", 1000)),
                split="train",  # seed 3.2 histograms the training images
                max_layers=int(study.activations.get("layers", 6)),
            )
        )
    return cbs


def run_study(
    study: Study,
    *,
    seeds: int = 3,
    quick: bool = False,
    executor: str = "local",
    address: str | None = None,
    out: str | Path | None = None,
    mnist: MNIST | None = None,
    data_dir: str | None = None,
    device: str | None = None,
    on_event: Callable[[RunEvent], None] = lambda e: None,
    ray_cpus: int = 2,
) -> Path:
    """Train what is missing of `study` and return its root folder (see module docstring)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if address and executor != "ray":
        raise ConfigError("--address needs --executor ray")
    plan = validate(study, seeds, quick)  # every key and value checked before anything trains
    threads.ensure()  # the CLI has chosen already; a library caller gets the same default
    root = study_root(study, quick, out)
    todo: list[tuple[int, Variant, int, RunConfig, Path]] = []
    for i, (v, s, cfg) in enumerate(plan, start=1):
        rd = run_dir_for(root, v.name, s)
        if not _skipped_as_complete(rd, cfg, RunEvent("skip", v.name, s, i, len(plan), rd), on_event):
            todo.append((i, v, s, cfg, rd))
    if executor == "ray":
        from mnistlab.studies import ray_executor  # imports Ray: only on request

        ray_executor.run_all(study, todo, len(plan), address, data_dir, device, on_event, ray_cpus)
        evaluate_all(study, plan, root, quick, device, on_event)
        return root
    mnist = mnist or load_mnist(data_dir)
    for i, v, s, cfg, rd in todo:
        holder = runs.claim(rd)
        if holder is not None:
            on_event(RunEvent("busy", v.name, s, i, len(plan), rd, holder=holder))
            continue
        try:
            # another command may have finished it since the plan was made
            if _skipped_as_complete(rd, cfg, RunEvent("skip", v.name, s, i, len(plan), rd), on_event):
                continue
            on_event(RunEvent("start", v.name, s, i, len(plan), rd))
            result = run_one(cfg, rd, mnist, device, callbacks_for(study, v, rd))
            on_event(RunEvent("done", v.name, s, i, len(plan), rd, result))
        finally:
            runs.release(rd)
    evaluate_all(study, plan, root, quick, device, on_event)
    return root


def evaluate_all(
    study: Study,
    plan: list[tuple[Variant, int, RunConfig]],
    root: Path,
    quick: bool,
    device: str | None,
    on_event: Callable[[RunEvent], None],
) -> None:
    """The study's `evaluate` tests on every complete run that lacks them (trained now or before)."""
    from mnistlab.studies.evaluations import evaluate_run, pending

    for i, (v, s, _) in enumerate(plan, start=1):
        rd = run_dir_for(root, v.name, s)
        if pending(study.evaluate, rd):
            result = evaluate_run(study.evaluate, rd, quick, device)
            on_event(RunEvent("evaluated", v.name, s, i, len(plan), rd, result))


def run_one(
    cfg: RunConfig, run_dir: Path, mnist: MNIST, device: str | None, callbacks: list[Callback]
) -> dict[str, Any]:
    """One run into `run_dir`, resuming from its checkpoint when an earlier attempt was cut off."""
    resume = None
    ckpt_path = run_dir / checkpoint.CHECKPOINT
    if ckpt_path.is_file() and (run_dir / runs.CONFIG).is_file() and _same_config(run_dir, cfg):
        try:
            resume = checkpoint.load(ckpt_path)
        except Exception:  # a checkpoint cut off mid-write: start the run again
            resume = None
    run_dir.mkdir(parents=True, exist_ok=True)
    outcome = run_experiment(cfg, run_dir=run_dir, mnist=mnist, device=device, callbacks=callbacks, resume=resume)
    return outcome.result


def data_dir_env() -> str | None:
    return os.environ.get("MNISTLAB_DATA")
