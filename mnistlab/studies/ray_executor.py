"""`--executor ray`: each run of a study is one Ray task (extra `mnistlab[ray]`).

Imported only when asked for, so the default executor never imports Ray. Without `address` a
local Ray starts with `num_cpus` CPUs (one task per CPU); with it, the runs go to that cluster.
A task gets the resolved config as a plain dict and returns the run's result, history and
config, so the driver can complete the record when the workers do not share its file system
(then the record lacks weights.safetensors: they stay on the worker).
Each task pins torch to the driver's thread count: floating-point sums depend on how work is
split across threads, and the same seed must give the same numbers as a local run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnistlab import runs
from mnistlab.errors import ConfigError

try:
    import ray
except ImportError:  # pragma: no cover - depends on the install
    raise ConfigError("--executor ray needs Ray: pip install 'mnistlab[ray]'") from None


def _train_task(
    study_path: str | None, study_name: str, variant: str, cfg_dict: dict[str, Any], run_dir: str,
    data_dir: str | None, device: str | None, threads: int,
) -> dict[str, Any]:  # fmt: skip
    from mnistlab import threads as mthreads
    from mnistlab.config import run_config_from_dict
    from mnistlab.data import load_mnist
    from mnistlab.studies import load_study
    from mnistlab.studies.runner import callbacks_for, run_one

    mthreads.apply(mthreads.ThreadChoice(threads, "the Ray driver's count"))
    study = load_study(study_path if study_path else study_name)
    cfg = run_config_from_dict(cfg_dict)
    rd = Path(run_dir)
    result = run_one(cfg, rd, load_mnist(data_dir), device, callbacks_for(study, study.variant(variant), rd))
    return {"result": result, "history": runs.read_history(rd), "config": cfg_dict}


def run_all(
    study: Any, todo: list, total: int, address: str | None, data_dir: str | None, device: str | None,
    on_event: Callable[[Any], None], num_cpus: int = 2,
) -> None:  # fmt: skip
    import torch

    from mnistlab.studies.runner import RunEvent, data_dir_env

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_train_task)
        # A packaged study is found by name on the worker; a study file by its path (local Ray).
        packaged = (
            study.path is not None
            and study.path.parent.name == "studies"
            and study.path.parent.parent.name == "mnistlab"
        )
        study_path = None if packaged else str(study.path)
        data = data_dir or (None if address else data_dir_env())
        pending = {}
        for i, v, s, cfg, rd in todo:
            on_event(RunEvent("start", v.name, s, i, total, rd))
            ref = task.remote(
                study_path, study.name, v.name, cfg.to_dict(), str(rd), data, device, torch.get_num_threads()
            )
            pending[ref] = (i, v, s, rd)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            i, v, s, rd = pending.pop(done[0])
            payload = ray.get(done[0])
            if not runs.is_complete(rd):  # the worker wrote elsewhere: keep what came back
                rd.mkdir(parents=True, exist_ok=True)
                runs.atomic_write_json(rd / runs.CONFIG, payload["config"])
                lines = "".join(json.dumps(m, sort_keys=True) + "\n" for m in payload["history"])
                runs.atomic_write_bytes(rd / runs.METRICS, lines.encode())
                runs.atomic_write_json(rd / runs.RESULT, payload["result"])
            on_event(RunEvent("done", v.name, s, i, total, rd, payload["result"]))
    finally:
        if started_here:
            ray.shutdown()
