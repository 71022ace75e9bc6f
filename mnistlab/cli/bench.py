"""`mnistlab bench` (time to 99 %, accuracy over seeds, inference speed) and `mnistlab ensemble`."""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from mnistlab import bench, runs
from mnistlab import threads as mthreads
from mnistlab.cli._common import DataDirOption, err, out, print_json
from mnistlab.cli.core import load_data
from mnistlab.config import parse_assignments
from mnistlab.ensemble import evaluate_ensemble
from mnistlab.errors import ConfigError
from mnistlab.recipes import DEFAULT_RECIPE, get_recipe
from mnistlab.train import pick_device

DEFAULT_BENCH = "fast,ref-pytorch,ref-keras,best"


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench_cmd(
        recipes: str = typer.Option(
            DEFAULT_BENCH, help="Comma-separated recipes to run (ref-pytorch gives the ratios)."
        ),
        seeds: int = typer.Option(5, help="Seeds per recipe (0, 1, ... N-1)."),
        ref_seeds: int = typer.Option(
            0, "--ref-seeds", help="Seeds for the slow ref-* recipes (0 = as --seeds); shown in the output."
        ),
        target: float = typer.Option(0.99, help="Test accuracy whose time-to is measured."),
        checks: int = typer.Option(10, "--checks-per-epoch", help="Test-accuracy probes per epoch."),
        stop_at_target: str = typer.Option(
            "",
            "--stop-at-target",
            help="Comma-separated recipes whose runs stop once they reach the target (e.g. ref-pytorch, to keep "
            "it affordable); their accuracy is then the accuracy at that point, as the output says.",
        ),
        quick: bool = typer.Option(False, "--quick", help="Tiny slices, one epoch: seconds (for tests)."),
        threads: int = typer.Option(
            0, help="torch CPU threads (0 = mnistlab's choice: `mnistlab --threads`, else the free cores)."
        ),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
        out_path: Path = typer.Option(
            None, "--out", help="Markdown report to write (default docs/benchmarks.md; none with --quick)."
        ),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        device: str = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    ) -> None:
        """Per recipe: time to 99 % test accuracy, ratio vs ref-pytorch, accuracy mean ± std; inference speed."""
        names = [r.strip() for r in recipes.split(",") if r.strip()]
        if not names:
            raise ConfigError("--recipes is empty")
        stop_names = [r.strip() for r in stop_at_target.split(",") if r.strip()]
        for name in names + stop_names:
            get_recipe(name)  # an unknown name fails now, not after an hour of the others
        if seeds < 1 or checks < 1 or not 0 < target <= 1:
            raise ConfigError(f"bad --seeds {seeds}, --checks-per-epoch {checks} or --target {target}")
        if threads < 0 or ref_seeds < 0:
            raise ConfigError(f"bad --threads {threads} or --ref-seeds {ref_seeds}")
        if threads:
            mthreads.ensure(threads)
        dev = pick_device(device)
        mnist = load_data(data_dir)
        overrides = dict(bench.QUICK_OVERRIDES) if quick else {}
        started = datetime.now(UTC)

        def on_seed(name: str, r: bench.SeedResult) -> None:
            if not json_out:
                t = "not reached" if r.time_to_target_s is None else f"{r.time_to_target_s:.2f}s"
                err.print(
                    f"{name} seed {r.seed}: test acc {r.test_acc:.4f}, time to {target:.3f}: {t}, "
                    f"{r.train_seconds:.1f}s training, {r.wall_seconds:.1f}s wall"
                )

        if out_path is None and not quick:
            out_path = Path("docs/benchmarks.md")
        inference = bench.inference_speed(
            DEFAULT_RECIPE, repeats=3 if quick else 5, single=20 if quick else 200, device=dev
        )
        summaries: list[dict] = []
        report = {
            "command": "mnistlab " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "mnistlab bench",
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "machine": bench.machine_info(dev),
            "target": target,
            "checks_per_epoch": checks,
            "stop_at_target": stop_names,
            "quick": quick,
            "recipes": summaries,
            "inference": inference,
        }
        for name in names:
            n_seeds = ref_seeds if ref_seeds and name.startswith("ref-") else seeds
            res = bench.bench_recipe(
                name, mnist, range(n_seeds), target=target, overrides=overrides, checks_per_epoch=checks,
                stop_at_target=name in stop_names, device=dev, on_seed=on_seed,
            )  # fmt: skip
            summaries.append(res.summary())
            bench.add_ratios(summaries)
            if out_path is not None:  # after every recipe: a long benchmark cut short keeps what it measured
                out_path.parent.mkdir(parents=True, exist_ok=True)
                report["machine"] = bench.machine_info(dev)
                out_path.write_text(bench.markdown_report(report))
                report["written_to"] = str(out_path)
        if json_out:
            print_json(report)
            return
        out.print(bench.machine_line(report["machine"]))
        table = Table(*bench.TABLE_HEADER, title=f"time to {100 * target:.1f} % test accuracy")
        for row in bench.table_rows(summaries, target):
            table.add_row(*row)
        out.print(table)
        if stop_names:
            out.print(
                f"--stop-at-target {','.join(stop_names)}: those runs stopped at the target; "
                "their accuracy is the accuracy at that point, not after the full recipe"
            )
        out.print(
            f"inference ({inference['recipe']}): {inference['images_per_s']:,.0f} images/s at batch "
            f"{inference['batch']}, single image p50 {inference['latency_ms_p50']:.2f} ms, "
            f"p95 {inference['latency_ms_p95']:.2f} ms"
        )
        if out_path is not None:
            out.print(f"report written to {out_path}")

    @app.command("bench-steps")
    def bench_steps_cmd(
        recipe: str = typer.Argument(DEFAULT_RECIPE, help="Recipe (or model) whose training step is timed."),
        set_: list[str] = typer.Option(None, "--set", help="Config override KEY=VALUE (repeatable)."),
        steps: int = typer.Option(20, help="Timed steps (after 3 warm-up steps)."),
        compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model first."),
        profile: bool = typer.Option(False, "--profile", help="Also print torch.profiler's top operators."),
        threads: int = typer.Option(
            0, help="torch CPU threads (0 = mnistlab's choice: `mnistlab --threads`, else the free cores)."
        ),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Time one training step of a recipe on random data (ms/step, epoch estimate, profile)."""
        if steps < 1 or threads < 0:
            raise ConfigError(f"bad --steps {steps} or --threads {threads}")
        if threads:
            mthreads.ensure(threads)
        r = bench.step_time(recipe, parse_assignments(set_), steps=steps, compile_model=compile_model, profile=profile)
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

    @app.command("bench-threads")
    def bench_threads_cmd(
        threads_list: str = typer.Option("1,2", "--thread-counts", help="Comma-separated torch thread counts."),
        recipe: str = typer.Option("dnn", help="Recipe trained for one epoch in each trial."),
        train_limit: int = typer.Option(12000, "--train-limit", help="Training images per trial."),
        repeats: int = typer.Option(1, help="Rounds of every (threads, competitor) pair, interleaved."),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON list of trials."),
    ) -> None:
        """One epoch with each thread count, alone and beside a competing training (threads.py's default)."""
        counts = [mthreads.parse_threads(c.strip(), "--thread-counts") for c in threads_list.split(",") if c.strip()]
        get_recipe(recipe)
        if not counts or repeats < 1 or train_limit < 1:
            raise ConfigError(
                f"bad --thread-counts {threads_list!r}, --repeats {repeats} or --train-limit {train_limit}"
            )

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
        table = Table(
            "threads", "competitor", "training s", "process wall s", "process CPU s", "test acc", "load at start"
        )
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

    @app.command("ensemble")
    def ensemble_cmd(
        runs_: list[str] = typer.Argument(..., metavar="RUN...", help="Two or more run folders (or names)."),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        device: str = typer.Option(None, help="cpu or cuda."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Test accuracy of the average of several runs' softmax outputs."""
        res = evaluate_ensemble(runs_, load_data(data_dir), pick_device(device))
        if json_out:
            print_json(
                {
                    "runs": [str(p) for p in res.runs],
                    "member_acc": res.member_acc,
                    "ensemble_acc": res.acc,
                    "n": res.n,
                }
            )
            return
        for path, acc in zip(res.runs, res.member_acc, strict=True):
            out.print(f"{path}: test accuracy {acc:.4f}")
        out.print(f"ensemble of {len(res.runs)} (mean softmax): test accuracy {res.acc:.4f} on {res.n} images")
