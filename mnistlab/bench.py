"""`mnistlab bench`: time to a target test accuracy per recipe, accuracy over seeds, inference speed.

Time to target is measured by `TimeToAccuracy`, a Callback that evaluates the test set every
1/`checks_per_epoch` of an epoch. Callback time is excluded from the trainer's `train_seconds`;
within an epoch the probe keeps its own clock (the time between its calls, which is training
time only) and re-synchronises with the trainer's count at every epoch end. The test set is used
for the probe because that is what "time to 99 % test accuracy" means in the published figures
we compare with; no recipe here tunes on the probe, it only stops (with `stop_at_target`).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from mnistlab import runs, threads
from mnistlab.data import MNIST
from mnistlab.dataset import Split
from mnistlab.experiment import run_experiment
from mnistlab.models import create_model
from mnistlab.recipes import DEFAULT_RECIPE, get_recipe, resolve_run_config
from mnistlab.train import Callback, TrainState, autocast_bf16, evaluate, make_optimizer

REFERENCE = "ref-pytorch"  # ratios are against this recipe
# --quick: tiny slices and one epoch, so the whole command runs in seconds (for tests).
QUICK_OVERRIDES = {"data.train_limit": 512, "data.test_limit": 200, "train.epochs": 1}


class TimeToAccuracy(Callback):
    """Evaluates `split` at regular points; records the training seconds when `target` is first met."""

    def __init__(self, split: Split, target: float, checks_per_epoch: int = 10, stop_at_target: bool = False):
        self.split, self.target = split, target
        self.checks_per_epoch, self.stop_at_target = checks_per_epoch, stop_at_target
        self.checks: list[dict[str, float]] = []  # {"train_seconds", "epoch", "acc"}
        self.time_to_target: float | None = None
        self.eval_seconds = 0.0
        self._clock = 0.0  # training seconds so far, by this probe's own count
        self._mark = 0.0

    def on_train_begin(self, state: TrainState) -> None:
        self._clock = state.train_seconds  # non-zero when resuming
        self._mark = time.perf_counter()

    def _check(self, state: TrainState, epoch_progress: float) -> None:
        t0 = time.perf_counter()
        acc = evaluate(state.model, self.split)["acc"]
        self.checks.append({"train_seconds": self._clock, "epoch": epoch_progress, "acc": acc})
        if self.time_to_target is None and acc >= self.target:
            self.time_to_target = self._clock
            if self.stop_at_target:
                state.stop = True
        self.eval_seconds += time.perf_counter() - t0

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        now = time.perf_counter()
        self._clock += now - self._mark
        spe = state.steps_per_epoch
        every = max(1, -(-spe // self.checks_per_epoch))
        in_epoch = (state.step - 1) % spe + 1
        # no probes once the target is met; the epoch's last probe happens at epoch end
        if self.time_to_target is None and in_epoch % every == 0 and in_epoch != spe:
            self._check(state, state.epoch - 1 + in_epoch / spe)
        self._mark = time.perf_counter()

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self._clock = state.train_seconds  # the trainer's own count is authoritative
        if self.time_to_target is None:
            self._check(state, float(state.epoch))
        self._mark = time.perf_counter()


@dataclass
class SeedResult:
    seed: int
    test_acc: float
    time_to_target_s: float | None
    train_seconds: float
    probe_eval_seconds: float
    wall_seconds: float  # the whole run: data prep, training, probes, final test
    epochs: int
    stopped_at_target: bool
    checks: list[dict[str, float]] = field(default_factory=list)


@dataclass
class RecipeResult:
    name: str
    description: str
    seeds: list[SeedResult]

    def summary(self) -> dict[str, Any]:
        accs = [s.test_acc for s in self.seeds]
        reached = [s.time_to_target_s for s in self.seeds if s.time_to_target_s is not None]
        return {
            "name": self.name,
            "description": self.description,
            "seeds": len(self.seeds),
            "test_acc_mean": statistics.fmean(accs),
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            # mean over the seeds that reached the target; `reached` says how many did
            "time_to_99_s": statistics.fmean(reached) if reached else None,
            "reached": len(reached),
            "train_seconds_mean": statistics.fmean(s.train_seconds for s in self.seeds),
            "probe_eval_seconds_mean": statistics.fmean(s.probe_eval_seconds for s in self.seeds),
            "wall_seconds_mean": statistics.fmean(s.wall_seconds for s in self.seeds),
            "epochs_mean": statistics.fmean(s.epochs for s in self.seeds),
            "stopped_at_target": sum(s.stopped_at_target for s in self.seeds),
            "per_seed": [dataclasses.asdict(s) | {"checks": s.checks} for s in self.seeds],
        }


def bench_recipe(
    name: str,
    mnist: MNIST,
    seeds: Sequence[int],
    *,
    target: float = 0.99,
    overrides: Mapping[str, Any] | None = None,
    checks_per_epoch: int = 10,
    stop_at_target: bool = False,
    device: torch.device | None = None,
    on_seed: Any = None,
) -> RecipeResult:
    """Train recipe `name` once per seed with a TimeToAccuracy probe on the test set."""
    results = []
    for seed in seeds:
        cfg = resolve_run_config(name, overrides, seed)
        wall0 = time.perf_counter()
        # the probe needs the test split, which run_experiment builds; a callback gets it from the state
        probe = _LazyProbe(target, checks_per_epoch, stop_at_target)
        outcome = run_experiment(cfg, record=False, mnist=mnist, device=device, callbacks=[probe])
        wall = time.perf_counter() - wall0
        p = probe.inner
        r = SeedResult(
            seed=seed,
            test_acc=outcome.result["test_acc"],
            time_to_target_s=p.time_to_target,
            train_seconds=outcome.train.train_seconds,
            probe_eval_seconds=p.eval_seconds,
            wall_seconds=wall,
            epochs=len(outcome.train.history),
            stopped_at_target=outcome.train.stopped_early and p.time_to_target is not None,
            checks=p.checks,
        )
        results.append(r)
        if on_seed is not None:
            on_seed(name, r)
    return RecipeResult(name, get_recipe(name).description, results)


class _LazyProbe(Callback):
    """A TimeToAccuracy on the run's own test split (known only once training begins)."""

    def __init__(self, target: float, checks_per_epoch: int, stop_at_target: bool):
        self.args = (target, checks_per_epoch, stop_at_target)
        self.inner: TimeToAccuracy = TimeToAccuracy(Split(torch.zeros(0), torch.zeros(0)), *self.args)

    def on_train_begin(self, state: TrainState) -> None:
        self.inner = TimeToAccuracy(state.splits.test, *self.args)
        self.inner.on_train_begin(state)

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        self.inner.on_batch_end(state, loss)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self.inner.on_epoch_end(state, metrics)


def run_bench(
    names: Sequence[str],
    mnist: MNIST,
    *,
    seeds: int = 5,
    ref_seeds: int = 0,
    target: float = 0.99,
    checks_per_epoch: int = 10,
    stop_at_target: Sequence[str] = (),
    quick: bool = False,
    device: torch.device | None = None,
    out_path: Path | None = None,
    command: str = "mnistlab bench",
    on_seed: Callable[[str, SeedResult], None] | None = None,
) -> dict[str, Any]:
    """`mnistlab bench`: inference speed of the default recipe, then every recipe of `names` over
    `seeds` seeds (`ref_seeds` for the slow ref-* ones, 0 = as `seeds`), with the ratios to
    ref-pytorch. Returns the report (what markdown_report renders); with `out_path`, writes it
    there after every recipe, so a long benchmark cut short keeps what it measured."""
    device = device or torch.device("cpu")
    started = datetime.now(UTC)
    inference = inference_speed(DEFAULT_RECIPE, repeats=3 if quick else 5, single=20 if quick else 200, device=device)
    summaries: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "command": command, "date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(device),
        "target": target, "checks_per_epoch": checks_per_epoch, "stop_at_target": list(stop_at_target),
        "quick": quick, "recipes": summaries, "inference": inference,
    }  # fmt: skip
    overrides = dict(QUICK_OVERRIDES) if quick else {}
    for name in names:
        n_seeds = ref_seeds if ref_seeds and name.startswith("ref-") else seeds
        res = bench_recipe(
            name, mnist, range(n_seeds), target=target, overrides=overrides, checks_per_epoch=checks_per_epoch,
            stop_at_target=name in stop_at_target, device=device, on_seed=on_seed,
        )  # fmt: skip
        summaries.append(res.summary())
        add_ratios(summaries)
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            report["machine"] = machine_info(device)
            out_path.write_text(markdown_report(report))
            report["written_to"] = str(out_path)
    return report


def add_ratios(summaries: list[dict[str, Any]]) -> None:
    """ratio_vs_ref_pytorch = ref-pytorch's time to target / this recipe's (> 1: faster than it)."""
    ref = next((s for s in summaries if s["name"] == REFERENCE), None)
    ref_t = ref["time_to_99_s"] if ref else None
    for s in summaries:
        t = s["time_to_99_s"]
        s["ratio_vs_ref_pytorch"] = ref_t / t if ref_t and t else None


@torch.inference_mode()
def inference_speed(
    recipe: str, *, batch: int = 1000, repeats: int = 5, single: int = 200, device: torch.device | None = None
) -> dict[str, Any]:
    """Images/s at `batch` (best of `repeats`) and single-image latency p50/p95 of recipe's model.

    Weights do not change the speed of these dense nets, so a freshly initialised model is timed.
    """
    device = device or torch.device("cpu")
    cfg = resolve_run_config(recipe)
    model = create_model(cfg.model, cfg.model_config).to(device).eval()
    shape = tuple(model.input_shape)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    x = torch.rand(batch, *shape, device=device)
    for _ in range(2):
        model(x)  # warm-up: oneDNN picks and caches its kernels on the first calls
    sync()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        sync()
        rates.append(batch / (time.perf_counter() - t0))
    one = torch.rand(1, *shape, device=device)
    for _ in range(10):
        model(one)
    lat = []
    for _ in range(single):
        t0 = time.perf_counter()
        model(one)
        sync()
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    return {
        "recipe": recipe,
        "model": cfg.model,
        "batch": batch,
        "repeats": repeats,
        "images_per_s": max(rates),
        "images_per_s_median": statistics.median(rates),
        "latency_ms_p50": lat[len(lat) // 2],
        "latency_ms_p95": lat[min(len(lat) - 1, int(len(lat) * 0.95))],
    }


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": runs.cpu_model(),
        "cores": os.cpu_count(),
        **threads.current(),  # torch_threads and how they were chosen
        "torch": torch.__version__,
        "device": str(device),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["load_avg_1min"] = os.getloadavg()[0]  # other jobs on the machine make timings noisy
    except OSError:
        pass
    return info


def machine_line(info: Mapping[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    load = f", load average {info['load_avg_1min']:.2f}" if "load_avg_1min" in info else ""
    chosen = f", chosen by {info['threads_chosen_by']}" if "threads_chosen_by" in info else ""
    return (
        f"CPU {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads{chosen}), "
        f"torch {info['torch']}, device {info['device']}{gpu}{load}"
    )


def _fmt(v: float | None, spec: str, none: str = "not reached") -> str:
    return none if v is None else format(v, spec)


def table_rows(summaries: list[dict[str, Any]], target: float) -> list[list[str]]:
    """Rows for the table printed by the CLI and written to the markdown report."""
    rows = []
    for s in summaries:
        reached = f"{s['reached']}/{s['seeds']}"
        stopped = " (stopped at target)" if s["stopped_at_target"] else ""
        rows.append(
            [
                s["name"],
                _fmt(s["time_to_99_s"], ".2f") + (f" ({reached} seeds)" if s["reached"] != s["seeds"] else ""),
                _fmt(s["ratio_vs_ref_pytorch"], ".1f", "-") + ("x" if s["ratio_vs_ref_pytorch"] else ""),
                f"{100 * s['test_acc_mean']:.2f} ± {100 * s['test_acc_std']:.2f}{stopped}",
                str(s["seeds"]),
                f"{s['epochs_mean']:.2f}",
                f"{s['train_seconds_mean']:.1f}",
                f"{s['probe_eval_seconds_mean']:.1f}",
                f"{s['wall_seconds_mean']:.1f}",
            ]
        )
    return rows


TABLE_HEADER = [
    "recipe",
    "time to target (s)",
    "speed-up vs ref-pytorch",
    "test acc % (mean ± std)",
    "seeds",
    "epochs",
    "train s",
    "probe eval s",
    "wall s",
]


def markdown_report(report: Mapping[str, Any]) -> str:
    """docs/benchmarks.md: every number comes from `report`, the output of one bench run."""
    target = report["target"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `mnistlab bench`; do not edit by hand. Re-run the command below to refresh it.",
        "",
        f"- command: `{report['command']}`",
        f"- date: {report['date']}",
        f"- machine: {machine_line(report['machine'])}",
        f"- target: {100 * target:.1f} % test accuracy, checked {report['checks_per_epoch']} times per epoch; "
        "time to target counts training steps only (probe evaluations are excluded and listed apart)",
    ]
    if report["stop_at_target"]:
        lines.append(
            f"- **--stop-at-target {','.join(report['stop_at_target'])}**: these recipes' runs stopped once they "
            "reached the target, so their test accuracy is the accuracy at that point, not after the recipe's "
            "full schedule"
        )
    if report["quick"]:
        lines.append("- **--quick**: tiny data slices and one epoch; these numbers say nothing about the recipes")
    lines += ["", "| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(report["recipes"], target)]
    inf = report.get("inference")
    if inf:
        lines += [
            "",
            f"Inference, default recipe `{inf['recipe']}` (model `{inf['model']}`): "
            f"{inf['images_per_s']:,.0f} images/s at batch {inf['batch']} (best of {inf['repeats']}; median "
            f"{inf['images_per_s_median']:,.0f}), single-image latency p50 {inf['latency_ms_p50']:.2f} ms, "
            f"p95 {inf['latency_ms_p95']:.2f} ms.",
        ]
    lines += ["", "Per seed (test accuracy %, time to target s, training s):", ""]
    for s in report["recipes"]:
        per = ", ".join(
            f"seed {p['seed']}: {100 * p['test_acc']:.2f} / {_fmt(p['time_to_target_s'], '.2f', '-')} / "
            f"{p['train_seconds']:.1f}"
            for p in s["per_seed"]
        )
        lines.append(f"- `{s['name']}` ({s['description']}): {per}")
    return "\n".join(lines) + "\n"


def step_time(
    recipe: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    steps: int = 20,
    warmup: int = 3,
    compile_model: bool = False,
    profile: bool = False,
) -> dict[str, Any]:
    """Seconds per training step of `recipe` (its model, optimizer and batch size) on random data.

    A microbenchmark for deciding *why* a recipe is slow: with `profile`, the torch.profiler table
    of the top operators by self CPU time is returned too. With `compile_model`, the compile time
    (the first `warmup` steps) is reported separately.
    """
    cfg = resolve_run_config(recipe, overrides)
    torch.manual_seed(0)
    model = create_model(cfg.model, cfg.model_config)
    opt = make_optimizer(model.parameters(), cfg.train)
    run = torch.compile(model) if compile_model else model
    x = torch.rand(cfg.train.batch_size, *model.input_shape)
    y = torch.randint(0, 10, (cfg.train.batch_size,))

    bf16 = autocast_bf16(cfg.train.precision, "cpu")

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(run(x), y, label_smoothing=cfg.train.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    result: dict[str, Any] = {
        "recipe": recipe,
        "model": cfg.model,
        "batch_size": cfg.train.batch_size,
        "threads": torch.get_num_threads(),
        "compiled": compile_model,
        "bf16": bf16,
        "warmup_seconds": warmup_s,
        "step_ms_median": 1000 * median,
        "step_ms_min": 1000 * min(times),
        "epoch_seconds_estimate": median * 60000 / cfg.train.batch_size,
    }
    if profile:
        from torch.profiler import profile as torch_profile

        with torch_profile() as prof:
            for _ in range(5):
                step()
        result["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return result
