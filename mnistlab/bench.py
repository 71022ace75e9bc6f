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
    """Evaluates `split` at regular points; records the training seconds (wall and CPU) and the
    training images seen when `target` is first met.

    The clocks are read only at the probe points: on a CUDA device the probe synchronises there
    first (the steps are queued asynchronously; no step of the trainer syncs), so the queued work
    is counted as training and the probe's own evaluation is not. CPU seconds are this process's
    (all its threads): they hold up on a shared machine where wall seconds do not.
    """

    def __init__(self, split: Split, target: float, checks_per_epoch: int = 10, stop_at_target: bool = False):
        self.split, self.target = split, target
        self.checks_per_epoch, self.stop_at_target = checks_per_epoch, stop_at_target
        self.checks: list[dict[str, float]] = []  # {"train_seconds", "cpu_seconds", "epoch", "images", "acc"}
        self.time_to_target: float | None = None
        self.cpu_to_target: float | None = None
        self.images_to_target: int | None = None
        self.eval_seconds = 0.0
        self._clock = 0.0  # training seconds so far, by this probe's own count
        self._cpu = 0.0  # training CPU seconds so far
        self._mark = 0.0
        self._cpu_mark = 0.0

    @staticmethod
    def _images(state: TrainState) -> int:
        return state.step * state.config.train.batch_size

    def _sync(self, state: TrainState) -> None:
        if state.device.type == "cuda":
            torch.cuda.synchronize(state.device)

    def on_train_begin(self, state: TrainState) -> None:
        self._clock = state.train_seconds  # non-zero when resuming
        self._cpu_mark, self._mark = time.process_time(), time.perf_counter()  # wall last (see train.py)

    def _check(self, state: TrainState) -> None:
        t0 = time.perf_counter()
        acc = evaluate(state.eval_model, self.split)["acc"]
        images = self._images(state)
        epoch = state.step / state.steps_per_epoch
        self.checks.append(
            {"train_seconds": self._clock, "cpu_seconds": self._cpu, "epoch": epoch, "images": images, "acc": acc}
        )
        if self.time_to_target is None and acc >= self.target:
            self.time_to_target, self.cpu_to_target, self.images_to_target = self._clock, self._cpu, images
            if self.stop_at_target:
                state.stop = True
        self.eval_seconds += time.perf_counter() - t0

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        spe = state.steps_per_epoch
        every = max(1, -(-spe // self.checks_per_epoch))
        in_epoch = (state.step - 1) % spe + 1
        # no probes once the target is met; the epoch's last probe happens at epoch end
        due = self.time_to_target is None and in_epoch % every == 0 and in_epoch != spe
        if not (due or in_epoch == spe or self._ends_here(state)):
            return
        self._sync(state)
        now, cpu = time.perf_counter(), time.process_time()  # wall first
        self._clock += now - self._mark
        self._cpu += cpu - self._cpu_mark
        if due:
            self._check(state)
        self._cpu_mark, self._mark = time.process_time(), time.perf_counter()  # wall last (see train.py)

    @staticmethod
    def _ends_here(state: TrainState) -> bool:
        from mnistlab.train import schedule_steps

        tc = state.config.train
        return tc.schedule_epochs is not None and state.step >= schedule_steps(tc, state.steps_per_epoch)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        # the trainer's own (synchronised) count is authoritative for wall time; CPU time was
        # read at the epoch's last step, so validation and the epoch's bookkeeping are not in it
        self._clock = state.train_seconds
        if self.time_to_target is None and (not self.checks or self.checks[-1]["images"] != self._images(state)):
            self._check(state)  # (not twice at one step: a probe point where the schedule ended)
        self._cpu_mark, self._mark = time.process_time(), time.perf_counter()  # wall last (see train.py)


@dataclass
class SeedResult:
    seed: int
    test_acc: float
    time_to_target_s: float | None  # training wall seconds at the first probe >= target
    train_seconds: float
    probe_eval_seconds: float
    wall_seconds: float  # the whole run: data prep, training, probes, final test
    epochs: float  # epochs trained (a fraction under train.schedule_epochs or a stop at the target)
    stopped_at_target: bool
    cpu_to_target_s: float | None = None  # training CPU seconds (this process, all threads) at the target
    images_to_target: int | None = None  # training images seen (steps x batch size) at the target
    train_cpu_seconds: float = 0.0  # training CPU seconds of the whole run
    cpu_seconds: float = 0.0  # the whole run's CPU seconds (data prep, probes and final test included)
    load_start: float | None = None  # 1-minute load average when the run started ...
    load_end: float | None = None  # ... and when it ended
    order: int = 0  # position in the bench's interleaved order (0 = first run)
    warmup_seconds: float = 0.0  # train.compile's warm-up (compile, CUDA-graph capture): not in the times above
    checks: list[dict[str, float]] = field(default_factory=list)

    @property
    def cpu_share(self) -> float | None:
        """Training CPU seconds / (training wall seconds x torch threads): ~1 when the run had its
        cores to itself, lower when other jobs took them."""
        threads_ = max(1, torch.get_num_threads())
        return self.train_cpu_seconds / (self.train_seconds * threads_) if self.train_seconds > 0 else None


def _mean(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.fmean(got) if got else None


@dataclass
class RecipeResult:
    name: str
    description: str
    seeds: list[SeedResult]
    recipe: str = ""  # the recipe a variant label stands for ("" = name)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    flops_per_image: float | None = None  # training FLOPs (forward + backward) per training image
    peak_flops: float | None = None  # the machine's peak for this recipe's precision, FLOP/s
    bf16: bool = False
    on_cpu: bool = True  # the floor gap uses CPU seconds per thread on a CPU, wall seconds on a GPU

    def summary(self) -> dict[str, Any]:
        accs = [s.test_acc for s in self.seeds]
        reached = [s for s in self.seeds if s.time_to_target_s is not None]
        images = _mean([s.images_to_target for s in reached])
        floor = None
        if images is not None and self.flops_per_image and self.peak_flops:
            floor = self.flops_per_image * images / self.peak_flops
        time_to = _mean([s.time_to_target_s for s in reached])
        cpu_to = _mean([s.cpu_to_target_s for s in reached])
        return {
            "name": self.name,
            "recipe": self.recipe or self.name,
            "overrides": dict(self.overrides),
            "description": self.description,
            "seeds": len(self.seeds),
            "test_acc_mean": statistics.fmean(accs),
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "test_acc_min": min(accs),
            # means over the seeds that reached the target; `reached` says how many did
            "time_to_99_s": time_to,
            "time_to_99_s_std": statistics.stdev([s.time_to_target_s for s in reached]) if len(reached) > 1 else 0.0,
            "cpu_to_99_s": cpu_to,
            "images_to_99": images,
            "reached": len(reached),
            "flops_per_image": self.flops_per_image,
            "bf16": self.bf16,
            "floor_s": floor,  # FLOPs per image x images to target / peak: no machine can beat it
            # measured / floor, from CPU seconds per thread: the time the run would have taken on
            # cores of its own (wall seconds on a shared machine would inflate the gap)
            "floor_gap": self._gap(time_to, cpu_to, floor),
            "train_seconds_mean": statistics.fmean(s.train_seconds for s in self.seeds),
            "train_cpu_seconds_mean": statistics.fmean(s.train_cpu_seconds for s in self.seeds),
            "cpu_share_mean": _mean([s.cpu_share for s in self.seeds]),
            "probe_eval_seconds_mean": statistics.fmean(s.probe_eval_seconds for s in self.seeds),
            "wall_seconds_mean": statistics.fmean(s.wall_seconds for s in self.seeds),
            "epochs_mean": statistics.fmean(s.epochs for s in self.seeds),
            "warmup_seconds_mean": statistics.fmean(s.warmup_seconds for s in self.seeds),
            "stopped_at_target": sum(s.stopped_at_target for s in self.seeds),
            "per_seed": [dataclasses.asdict(s) | {"cpu_share": s.cpu_share} for s in self.seeds],
        }

    def _gap(self, time_to: float | None, cpu_to: float | None, floor: float | None) -> float | None:
        measured = cpu_to / max(1, torch.get_num_threads()) if self.on_cpu and cpu_to else time_to
        return measured / floor if measured and floor else None


def run_seed(
    name: str,
    mnist: MNIST,
    seed: int,
    *,
    target: float = 0.99,
    overrides: Mapping[str, Any] | None = None,
    checks_per_epoch: int = 10,
    stop_at_target: bool = False,
    device: torch.device | None = None,
) -> SeedResult:
    """One training run of recipe `name` (+ `overrides`) with a TimeToAccuracy probe on the test set."""
    cfg = resolve_run_config(name, overrides, seed)
    load0 = _load()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    # the probe needs the test split, which run_experiment builds; a callback gets it from the state
    probe = _LazyProbe(target, checks_per_epoch, stop_at_target)
    outcome = run_experiment(cfg, record=False, mnist=mnist, device=device, callbacks=[probe])
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    p = probe.inner
    return SeedResult(
        seed=seed,
        test_acc=outcome.result["test_acc"],
        time_to_target_s=p.time_to_target,
        train_seconds=outcome.train.train_seconds,
        probe_eval_seconds=p.eval_seconds,
        wall_seconds=wall,
        epochs=probe.epochs_trained,
        stopped_at_target=outcome.train.stopped_early and p.time_to_target is not None,
        cpu_to_target_s=p.cpu_to_target,
        images_to_target=p.images_to_target,
        train_cpu_seconds=p._cpu,
        cpu_seconds=cpu,
        load_start=load0,
        load_end=_load(),
        warmup_seconds=outcome.train.warmup_seconds,
        checks=p.checks,
    )


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
    """Train recipe `name` once per seed, one seed after the other (run_bench interleaves recipes)."""
    results = []
    for seed in seeds:
        r = run_seed(
            name, mnist, seed, target=target, overrides=overrides, checks_per_epoch=checks_per_epoch,
            stop_at_target=stop_at_target, device=device,
        )  # fmt: skip
        results.append(r)
        if on_seed is not None:
            on_seed(name, r)
    return RecipeResult(name, get_recipe(name).description, results, overrides=dict(overrides or {}))


class _LazyProbe(Callback):
    """A TimeToAccuracy on the run's own test split (known only once training begins)."""

    def __init__(self, target: float, checks_per_epoch: int, stop_at_target: bool):
        self.args = (target, checks_per_epoch, stop_at_target)
        self.inner: TimeToAccuracy = TimeToAccuracy(Split(torch.zeros(0), torch.zeros(0)), *self.args)
        self.epochs_trained = 0.0

    def on_train_begin(self, state: TrainState) -> None:
        self.inner = TimeToAccuracy(state.splits.test, *self.args)
        self.inner.on_train_begin(state)

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        self.inner.on_batch_end(state, loss)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self.inner.on_epoch_end(state, metrics)

    def on_train_end(self, state: TrainState) -> None:
        self.epochs_trained = state.step / max(1, state.steps_per_epoch)


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # not on every platform
        return None


# --- the FLOP floor -----------------------------------------------------------------------------

# fp32 FLOPs per cycle per core by the widest vector unit, assuming two FMA units per core (an FMA
# is 2 FLOPs): AVX-512 16 lanes x 2 x 2, AVX2+FMA 8 x 2 x 2, AVX 8 x 2 (no FMA), SSE 4 x 2.
_FP32_PER_CYCLE = (("avx512f", 64), ("fma", 32), ("avx", 16))
# bf16: AMX's tile unit (1024 FLOPs per cycle per core), AVX512-BF16's dot product (2 x fp32's)
_BF16_PER_CYCLE = (("amx_bf16", 1024), ("avx512_bf16", 128))


def cpu_flags_and_ghz() -> tuple[set[str], float | None]:
    """The CPU's feature flags and clock (GHz, the highest `cpu MHz` in /proc/cpuinfo; None where
    there is no /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set(), None
    flags: set[str] = set()
    mhz: list[float] = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "cpu MHz":
            try:
                mhz.append(float(value))
            except ValueError:
                pass
    return flags, max(mhz) / 1000 if mhz else None


def peak_flops(device: torch.device, threads_: int | None = None) -> dict[str, Any]:
    """The machine's peak FLOP/s, fp32 and bf16, for `threads_` cores (default: torch's threads).

    CPU: cores x clock x FLOPs per cycle from the feature flags (see _FP32_PER_CYCLE): a paper
    peak, which no real kernel reaches. CUDA: measured, the best of a few 4096^3 matmuls
    (fp32 as torch's matmul precision setting has it, and bf16), warm-up excluded.
    """
    if device.type == "cuda":
        return _measured_gpu_peak(device)
    flags, ghz = cpu_flags_and_ghz()
    cores = min(threads_ or torch.get_num_threads(), os.cpu_count() or 1)
    fp32 = next((n for f, n in _FP32_PER_CYCLE if f in flags), 8)
    bf16 = next((n for f, n in _BF16_PER_CYCLE if f in flags), fp32)
    if ghz is None:
        return {"fp32": None, "bf16": None, "how": "unknown (no /proc/cpuinfo)"}
    return {
        "fp32": cores * ghz * 1e9 * fp32,
        "bf16": cores * ghz * 1e9 * bf16,
        "how": f"{cores} cores x {ghz:.2f} GHz x {fp32} fp32 / {bf16} bf16 FLOPs per cycle (from the CPU flags)",
    }


def _measured_gpu_peak(device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {"how": "measured: best of 10 4096x4096 matmuls per dtype, warm-up excluded"}
    n = 4096
    for key, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize(device)
        best = float("inf")
        for _ in range(10):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1000)
        out[key] = 2 * n**3 / best
    return out


def train_flops_per_image(name: str, overrides: Mapping[str, Any] | None = None, batch: int = 16) -> float:
    """FLOPs of one training step (forward + backward) per image, counted by torch's
    FlopCounterMode (convolutions and matmuls; BN, ReLU, pooling and the optimizer are left out,
    so the floor built from it is a lower bound)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = resolve_run_config(name, overrides)
    torch.manual_seed(0)
    model = create_model(cfg.model, cfg.model_config)
    x = torch.rand(batch, *model.input_shape)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long)).backward()
    return counter.get_total_flops() / batch


# --- the interleaved benchmark ------------------------------------------------------------------


def interleaved_order(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """(entry, seed) in the order the bench runs them: round r runs seed r of every entry that has
    more than r seeds (A0 B0 A1 B1 ...), so a change of the machine's load falls on all of them
    alike instead of on whichever recipe ran at that time."""
    rounds = max(counts.values(), default=0)
    return [(name, r) for r in range(rounds) for name, n in counts.items() if r < n]


def load_warnings(results: Sequence[RecipeResult], cores: int | None = None) -> list[str]:
    """What makes this bench's wall times suspect: the load average moving during it, or runs
    that got much less CPU than their threads could use (other jobs took the cores)."""
    cores = cores or os.cpu_count() or 1
    warnings = []
    runs_ = [(r.name, s) for r in results for s in r.seeds]
    loads = [v for _, s in runs_ for v in (s.load_start, s.load_end) if v is not None]
    if loads and max(loads) - min(loads) > max(0.5, 0.25 * cores):
        warnings.append(
            f"the 1-minute load average moved between {min(loads):.2f} and {max(loads):.2f} during this bench "
            f"({cores} cores): wall-time ratios are suspect; the CPU-second ratios hold up better"
        )
    starved = [f"{n} seed {s.seed} ({100 * s.cpu_share:.0f} %)" for n, s in runs_ if s.cpu_share and s.cpu_share < 0.8]
    if starved:
        warnings.append(
            "runs that got less than 80 % of their threads' CPU time (other jobs competed): " + ", ".join(starved)
        )
    return warnings


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
    variants: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
    inference: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`mnistlab bench`: inference speed of the default recipe, then every recipe of `names` over
    `seeds` seeds (`ref_seeds` for the slow ref-* ones, 0 = as `seeds`), interleaved (see
    interleaved_order), with the ratios to ref-pytorch, CPU seconds, load averages and the FLOP
    floor. `variants` maps a name of `names` to (recipe, overrides), for lever trials
    (docs/scripts/fast_levers.py). Returns the report (what markdown_report renders); with
    `out_path`, writes it there after every run, so a long benchmark cut short keeps what it
    measured. `overrides` apply to every recipe (`mnistlab bench --set`)."""
    device = device or torch.device("cpu")
    variants = dict(variants or {})
    common = dict(overrides or {})
    started = datetime.now(UTC)
    speed = None
    if inference:
        speed = inference_speed(DEFAULT_RECIPE, repeats=3 if quick else 5, single=20 if quick else 200, device=device)
    peak = peak_flops(device)
    summaries: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "command": command, "date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(device),
        "target": target, "checks_per_epoch": checks_per_epoch, "stop_at_target": list(stop_at_target),
        "quick": quick, "recipes": summaries, "inference": speed, "peak": peak, "warnings": [], "order": [],
    }  # fmt: skip
    quick_overrides = dict(QUICK_OVERRIDES) if quick else {}
    results: dict[str, RecipeResult] = {}
    counts = {}
    for name in names:
        recipe, extra = variants.get(name, (name, {}))
        extra = {**extra, **common}
        overrides = {**extra, **quick_overrides}
        cfg = resolve_run_config(recipe, overrides)
        bf16 = autocast_bf16(cfg.train.precision, device)
        results[name] = RecipeResult(
            name, get_recipe(recipe).description, [], recipe=recipe, overrides=extra,
            flops_per_image=train_flops_per_image(recipe, overrides), peak_flops=peak["bf16" if bf16 else "fp32"],
            bf16=bf16, on_cpu=device.type == "cpu",
        )  # fmt: skip
        counts[name] = ref_seeds if ref_seeds and recipe.startswith("ref-") else seeds
    for i, (name, seed) in enumerate(interleaved_order(counts)):
        res = results[name]
        r = run_seed(
            res.recipe, mnist, seed, target=target, overrides={**res.overrides, **quick_overrides},
            checks_per_epoch=checks_per_epoch, stop_at_target=name in stop_at_target, device=device,
        )  # fmt: skip
        r.order = i
        res.seeds.append(r)
        report["order"].append(f"{name}:{seed}")
        if on_seed is not None:
            on_seed(name, r)
        summaries[:] = [x.summary() for x in results.values() if x.seeds]
        add_ratios(summaries)
        report["warnings"] = load_warnings([x for x in results.values() if x.seeds])
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            report["machine"] = machine_info(device)
            out_path.write_text(markdown_report(report))
            report["written_to"] = str(out_path)
    return report


def add_ratios(summaries: list[dict[str, Any]]) -> None:
    """ratio_vs_ref_pytorch = ref-pytorch's time to target / this recipe's (> 1: faster than it);
    cpu_ratio_vs_ref_pytorch the same in training CPU seconds."""
    ref = next((s for s in summaries if s["name"] == REFERENCE), None)
    for key, out_key in (("time_to_99_s", "ratio_vs_ref_pytorch"), ("cpu_to_99_s", "cpu_ratio_vs_ref_pytorch")):
        ref_t = ref[key] if ref else None
        for s in summaries:
            t = s[key]
            s[out_key] = ref_t / t if ref_t and t else None


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
        t = _fmt(s["time_to_99_s"], ".2f")
        if s["time_to_99_s"] is not None and s["reached"] > 1:
            t += f" ± {s['time_to_99_s_std']:.2f}"
        floor = _fmt(s["floor_s"], ".3g", "-")
        if s["floor_s"] is not None:
            floor += " bf16" if s["bf16"] else " fp32"
        if s["floor_gap"]:
            floor += f" ({s['floor_gap']:.0f}x)"
        rows.append(
            [
                s["name"],
                t + (f" ({reached} seeds)" if s["reached"] != s["seeds"] else ""),
                _fmt(s["cpu_to_99_s"], ".2f", "-"),
                _fmt(s["images_to_99"], ",.0f", "-"),
                floor,
                _fmt(s["ratio_vs_ref_pytorch"], ".1f", "-") + ("x" if s["ratio_vs_ref_pytorch"] else ""),
                _fmt(s["cpu_ratio_vs_ref_pytorch"], ".1f", "-") + ("x" if s["cpu_ratio_vs_ref_pytorch"] else ""),
                f"{100 * s['test_acc_mean']:.2f} ± {100 * s['test_acc_std']:.2f} (min {100 * s['test_acc_min']:.2f})"
                + stopped,
                str(s["seeds"]),
                f"{s['epochs_mean']:.2f}",
                f"{s['train_seconds_mean']:.1f} / {s['train_cpu_seconds_mean']:.1f}",
                _fmt(s["cpu_share_mean"], ".2f", "-"),
                f"{s['wall_seconds_mean']:.1f}",
            ]
        )
    return rows


TABLE_HEADER = [
    "recipe",
    "time to target (s, mean ± std)",
    "CPU s to target",
    "images to target",
    "FLOP floor s (CPU s per thread / floor)",
    "speed-up vs ref-pytorch (wall)",
    "speed-up vs ref-pytorch (CPU)",
    "test acc % (mean ± std)",
    "seeds",
    "epochs",
    "train s wall / CPU",
    "CPU share",
    "run wall s",
]


def peak_line(peak: Mapping[str, Any]) -> str:
    if not peak.get("fp32"):
        return f"peak: {peak.get('how', 'unknown')}"
    return f"peak {peak['fp32'] / 1e9:,.0f} GFLOP/s fp32, {peak['bf16'] / 1e9:,.0f} GFLOP/s bf16 ({peak['how']})"


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
        f"- {peak_line(report.get('peak', {}))}",
        f"- target: {100 * target:.1f} % test accuracy, checked {report['checks_per_epoch']} times per epoch; "
        "time to target counts training steps only (probe evaluations are excluded and listed apart); "
        "CPU seconds are the process's, all threads, over the same training steps",
        "- FLOP floor: training FLOPs per image (forward + backward, counted by torch's FlopCounterMode) x "
        "images seen when the target was met / the peak above for the recipe's precision: the time no kernel "
        "could beat on this machine",
        "- order: the recipes' runs are interleaved (" + " ".join(report.get("order", [])) + "), so a change of "
        "load falls on all of them; CPU share = training CPU s / (training wall s x torch threads)",
    ]
    if report["stop_at_target"]:
        lines.append(
            f"- **--stop-at-target {','.join(report['stop_at_target'])}**: these recipes' runs stopped once they "
            "reached the target, so their test accuracy is the accuracy at that point, not after the recipe's "
            "full schedule"
        )
    warm = [s for s in report["recipes"] if s.get("warmup_seconds_mean")]
    if warm:
        lines.append(
            "- torch.compile warm-up (compilation, CUDA-graph capture) ran before training and is excluded from the "
            "times: " + ", ".join(f"`{s['name']}` {s['warmup_seconds_mean']:.1f} s" for s in warm)
        )
    if report["quick"]:
        lines.append("- **--quick**: tiny data slices and one epoch; these numbers say nothing about the recipes")
    for w in report.get("warnings", []):
        lines.append(f"- **warning**: {w}")
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
    lines += [
        "",
        "Per run (test accuracy %, time to target s, CPU s to target, training s, load average at start -> end, "
        "CPU share):",
        "",
    ]
    for s in report["recipes"]:
        over = ", ".join(f"{k}={v}" for k, v in s.get("overrides", {}).items())
        what = f"recipe `{s['recipe']}` with {over}" if over else s["description"]
        per = "; ".join(
            f"seed {p['seed']} (run {p['order'] + 1}): {100 * p['test_acc']:.2f} / "
            f"{_fmt(p['time_to_target_s'], '.2f', '-')} / {_fmt(p['cpu_to_target_s'], '.2f', '-')} / "
            f"{p['train_seconds']:.1f} / load {_fmt(p['load_start'], '.2f', '?')} -> {_fmt(p['load_end'], '.2f', '?')}"
            f" / {_fmt(p['cpu_share'], '.2f', '-')}"
            for p in s["per_seed"]
        )
        lines.append(f"- `{s['name']}` ({what}): {per}")
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
