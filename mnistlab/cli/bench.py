"""`mnistlab bench` (time to 99 %, accuracy over seeds, inference speed) and `mnistlab ensemble`."""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mnistlab import bench as benchlib
from mnistlab import runs
from mnistlab import threads as mthreads
from mnistlab.cli._common import DataDir, Device, DeviceOrCuda, JsonObject, SetOverrides, err, out, print_json
from mnistlab.cli.core import load_data
from mnistlab.config import parse_assignments
from mnistlab.ensemble import evaluate_ensemble
from mnistlab.ensemble import markdown_report as ensemble_report
from mnistlab.errors import ConfigError
from mnistlab.recipes import DEFAULT_RECIPE, get_recipe
from mnistlab.train import pick_device

DEFAULT_BENCH = "fast,ref-pytorch,ref-keras,best"


def _names(csv: str) -> list[str]:
    return [r.strip() for r in csv.split(",") if r.strip()]


def bench(
    recipes: Annotated[str, typer.Option(help="Comma-separated recipes to run (ref-pytorch gives the ratios).")] = (
        DEFAULT_BENCH
    ),
    seeds: Annotated[int, typer.Option(help="Seeds per recipe (0, 1, ... N-1).")] = 5,
    ref_seeds: Annotated[
        int, typer.Option("--ref-seeds", help="Seeds for the slow ref-* recipes (0 = as --seeds); shown in the output.")
    ] = 0,
    target: Annotated[float, typer.Option(help="Test accuracy whose time-to is measured.")] = 0.99,
    checks: Annotated[int, typer.Option("--checks-per-epoch", help="Test-accuracy probes per epoch.")] = 10,
    stop_at_target: Annotated[
        str,
        typer.Option(
            "--stop-at-target",
            help="Comma-separated recipes whose runs stop once they reach the target (e.g. ref-pytorch, to keep "
            "it affordable); their accuracy is then the accuracy at that point, as the output says.",
        ),
    ] = "",
    quick: Annotated[bool, typer.Option("--quick", help="Tiny slices, one epoch: seconds (for tests).")] = False,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (0 = mnistlab's choice: `mnistlab --threads`, else the free cores).")
    ] = 0,
    json_out: JsonObject = False,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", help="Markdown report to write (default docs/benchmarks.md; none with --quick)."),
    ] = None,
    data_dir: DataDir = None,
    device: DeviceOrCuda = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Config override KEY=VALUE for every recipe (repeatable), e.g. train.compile=eager."
        ),
    ] = None,
) -> None:
    """Per recipe: time to 99 % test accuracy, ratio vs ref-pytorch, accuracy mean ± std; inference speed."""
    names, stop_names = _names(recipes), _names(stop_at_target)
    if not names:
        raise ConfigError("--recipes is empty")
    for name in names + stop_names:
        get_recipe(name)  # an unknown name fails now, not after an hour of the others
    if seeds < 1 or checks < 1 or not 0 < target <= 1:
        raise ConfigError(f"bad --seeds {seeds}, --checks-per-epoch {checks} or --target {target}")
    if threads < 0 or ref_seeds < 0:
        raise ConfigError(f"bad --threads {threads} or --ref-seeds {ref_seeds}")
    overrides = parse_assignments(set_)
    for name in names:
        benchlib.resolve_run_config(name, overrides)  # a bad --set fails now too
    if threads:
        mthreads.ensure(threads)
    dev = pick_device(device)
    mnist = load_data(data_dir)
    if out_path is None and not quick:
        out_path = Path("docs/benchmarks.md")

    def on_seed(name: str, r: benchlib.SeedResult) -> None:
        if not json_out:
            t = (
                "not reached"
                if r.time_to_target_s is None
                else f"{r.time_to_target_s:.2f}s ({r.cpu_to_target_s:.2f}s CPU)"
            )
            load = "" if r.load_start is None else f", load {r.load_start:.2f} -> {r.load_end:.2f}"
            err.print(
                f"{name} seed {r.seed}: test acc {r.test_acc:.4f}, time to {target:.3f}: {t}, "
                f"{r.train_seconds:.1f}s training ({r.train_cpu_seconds:.1f}s CPU), {r.wall_seconds:.1f}s wall{load}"
            )

    report = benchlib.run_bench(
        names, mnist, seeds=seeds, ref_seeds=ref_seeds, target=target, checks_per_epoch=checks,
        stop_at_target=stop_names, quick=quick, device=dev, out_path=out_path, on_seed=on_seed, overrides=overrides,
        command="mnistlab " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "mnistlab bench",
    )  # fmt: skip
    if json_out:
        print_json(report)
        return
    out.print(benchlib.machine_line(report["machine"]))
    table = Table(*benchlib.TABLE_HEADER, title=f"time to {100 * target:.1f} % test accuracy")
    for row in benchlib.table_rows(report["recipes"], target):
        table.add_row(*row)
    out.print(table)
    out.print(benchlib.peak_line(report["peak"]))
    for w in report["warnings"]:
        err.print(f"warning: {w}")
    if stop_names:
        out.print(
            f"--stop-at-target {','.join(stop_names)}: those runs stopped at the target; "
            "their accuracy is the accuracy at that point, not after the full recipe"
        )
    inference = report["inference"]
    out.print(
        f"inference ({inference['recipe']}): {inference['images_per_s']:,.0f} images/s at batch "
        f"{inference['batch']}, single image p50 {inference['latency_ms_p50']:.2f} ms, "
        f"p95 {inference['latency_ms_p95']:.2f} ms"
    )
    if out_path is not None:
        out.print(f"report written to {out_path}")


def bench_steps(
    recipe: Annotated[str, typer.Argument(help="Recipe (or model) whose training step is timed.")] = DEFAULT_RECIPE,
    set_: SetOverrides = None,
    steps: Annotated[int, typer.Option(help="Timed steps (after 3 warm-up steps).")] = 20,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model first.")] = False,
    profile: Annotated[bool, typer.Option("--profile", help="Also print torch.profiler's top operators.")] = False,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (0 = mnistlab's choice: `mnistlab --threads`, else the free cores).")
    ] = 0,
    json_out: JsonObject = False,
) -> None:
    """Time one training step of a recipe on random data (ms/step, epoch estimate, profile)."""
    if steps < 1 or threads < 0:
        raise ConfigError(f"bad --steps {steps} or --threads {threads}")
    if threads:
        mthreads.ensure(threads)
    r = benchlib.step_time(recipe, parse_assignments(set_), steps=steps, compile_model=compile_model, profile=profile)
    if json_out:
        print_json(r)
        return
    out.print(
        f"{recipe} ({r['model']}, batch {r['batch_size']}, {r['threads']} threads"
        f"{', compiled' if r['compiled'] else ''}): {r['step_ms_median']:.1f} ms/step median, "
        f"{r['step_ms_min']:.1f} fastest; one 60k epoch ~{r['epoch_seconds_estimate']:.1f}s; "
        f"warm-up (3 steps{', compile included' if r['compiled'] else ''}) {r['warmup_seconds']:.1f}s"
    )
    if profile:
        out.print(r["profile"])


def ensemble(
    runs_: Annotated[list[str], typer.Argument(metavar="RUN...", help="Two or more run folders (or names).")],
    data_dir: DataDir = None,
    device: Device = None,
    json_out: JsonObject = False,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Also write a markdown report (members, curve, CPU time) here.")
    ] = None,
) -> None:
    """Test accuracy of the average of several runs' softmax outputs."""
    dev = pick_device(device)
    res = evaluate_ensemble(runs_, load_data(data_dir), dev)
    if out_path is not None:
        command = "mnistlab ensemble " + shlex.join([*runs_, "--out", str(out_path)])
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        md = ensemble_report(res, command, benchlib.machine_line(benchlib.machine_info(dev)), date)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(md)
    if json_out:
        print_json({"runs": [str(p) for p in res.runs], "member_acc": res.member_acc, "ensemble_acc": res.acc,
                    "n": res.n, "members": res.members, "train_seconds": res.train_seconds,
                    "train_cpu_seconds": res.train_cpu_seconds, "curve": res.curve,
                    "leave_one_out": res.leave_one_out})  # fmt: skip
        return
    for m in res.members:
        what = [m["recipe"], f"model {m['model']}", f"seed {m['seed']}"]
        if m["crop"] is not None:
            what.append(f"crop {m['crop']}")
        if m["augment"]:
            what.append("augment " + ",".join(f"{k}={v}" for k, v in m["augment"].items()))
        cost = "" if m["train_seconds"] is None else f", {m['train_seconds']:.0f}s training"
        if m["train_cpu_seconds"] is not None:
            cost += f" ({m['train_cpu_seconds']:.0f}s CPU)"
        out.print(f"{m['run']}: {'; '.join(what)}: test accuracy {m['test_acc']:.4f}{cost}")
    cpu = res.train_cpu_seconds
    total = f"; members trained {res.train_seconds:.0f}s" + (f" ({cpu:.0f}s CPU)" if cpu is not None else "")
    out.print("members 1..k:", " ".join(f"{a:.4f}" for a in res.curve))
    out.print(f"ensemble of {len(res.runs)} (mean softmax): test accuracy {res.acc:.4f} on {res.n} images{total}")


def bench_threads(
    threads_list: Annotated[str, typer.Option("--thread-counts", help="Comma-separated torch thread counts.")] = "1,2",
    recipe: Annotated[str, typer.Option(help="Recipe trained for one epoch in each trial.")] = "dnn",
    train_limit: Annotated[int, typer.Option("--train-limit", help="Training images per trial.")] = 12000,
    repeats: Annotated[int, typer.Option(help="Rounds of every (threads, competitor) pair, interleaved.")] = 1,
    data_dir: DataDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list of trials.")] = False,
) -> None:
    """One epoch with each thread count, alone and beside a competing training (threads.py's default)."""
    counts = [mthreads.parse_threads(c.strip(), "--thread-counts") for c in threads_list.split(",") if c.strip()]
    get_recipe(recipe)
    if not counts or repeats < 1 or train_limit < 1:
        raise ConfigError(f"bad --thread-counts {threads_list!r}, --repeats {repeats} or --train-limit {train_limit}")

    def show(t: dict) -> None:
        if not json_out:
            err.print(
                f"{t['threads']} thread(s), {'beside a competing training' if t['competitor'] else 'alone'}: "
                f"{t['train_seconds']:.1f}s training (process {t['process_wall_seconds']:.1f}s wall, "
                f"{t['process_cpu_seconds']:.1f}s CPU), test acc {t['test_acc']:.4f}, "
                f"load {t['load_avg_1min_at_start'] or float('nan'):.2f} at start"
            )

    trials = mthreads.measure(counts, recipe, train_limit, repeats, data_dir, on_trial=show)
    if json_out:
        print_json(trials)
        return
    table = Table("threads", "competitor", "training s", "process wall s", "process CPU s", "test acc", "load at start")
    for t in trials:
        table.add_row(
            str(t["threads"]), "yes" if t["competitor"] else "no", f"{t['train_seconds']:.2f}",
            f"{t['process_wall_seconds']:.1f}", f"{t['process_cpu_seconds']:.1f}", f"{t['test_acc']:.4f}",
            f"{t['load_avg_1min_at_start'] or float('nan'):.2f}",
        )  # fmt: skip
    out.print(
        f"{recipe}, 1 epoch on {train_limit:,} images; {mthreads.usable_cores()} usable cores; {runs.cpu_model()}"
    )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
    app.command("bench-steps")(bench_steps)
    app.command("bench-threads")(bench_threads)
    app.command("ensemble")(ensemble)
