"""`mnistlab study list | run NAME | report NAME`: the seed experiments as reproducible studies."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer
from rich.table import Table

from mnistlab.cli._common import DataDirOption, err, out, print_json
from mnistlab.studies import list_studies, load_study, validate


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    study_app = typer.Typer(help="Every seed experiment as a reproducible study (mean ± std over seeds, report).")
    app.add_typer(study_app, name="study")

    @study_app.command("list")
    def list_cmd(json_out: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
        """The available studies, their seed experiments and variants."""
        rows = []
        for name in list_studies():
            s = load_study(name)
            validate(s)  # a broken study file shows up here, not after an hour of training
            rows.append(
                {
                    "name": name,
                    "seed_doc": s.seed_doc,
                    "seed": s.seed_doc,
                    "title": s.title,
                    "variants": s.variant_names(),
                }
            )
        if json_out:
            print_json(rows)
            return
        table = Table("study", "seed", "title", "variants")
        for r in rows:
            table.add_row(r["name"], r["seed_doc"], r["title"], f"{len(r['variants'])}: {', '.join(r['variants'])}")
        out.print(table)

    @study_app.command("run")
    def run_cmd(
        name: str = typer.Argument(..., help="Study name (see `mnistlab study list`) or a study .toml file."),
        seeds: int = typer.Option(3, help="Seeds per variant (0, 1, ..., N-1)."),
        quick: bool = typer.Option(False, "--quick", help="Tiny slices and one epoch (tests, CI, a smoke check)."),
        executor: str = typer.Option("local", help="local (this process) or ray (one Ray task per run)."),
        address: str = typer.Option(None, help="Ray cluster address (with --executor ray; default: a local Ray)."),
        out_dir: Path = typer.Option(
            None, "--out", help="Study folder (default: $MNISTLAB_RUNS/studies/NAME, or NAME-quick)."
        ),
        variant: list[str] = typer.Option(None, "--variant", help="Run only these variants (repeatable)."),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        device: str = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
        json_out: bool = typer.Option(False, "--json", help="Print the results as one JSON object."),
    ) -> None:
        """Train every variant x seed (skipping complete runs), then write the results table."""
        from dataclasses import replace

        from mnistlab.cli.core import load_data
        from mnistlab.studies.report import results_json, table_rows, write_results
        from mnistlab.studies.runner import RunEvent, run_study, study_root

        study = load_study(name)
        if variant:
            study = replace(study, variants=tuple(study.variant(v) for v in variant))
        validate(study, seeds, quick)  # before loading data or starting Ray

        def show(e: RunEvent) -> None:
            tag = f"[{e.index}/{e.total}] {e.variant} s{e.seed}"
            if e.kind == "skip":
                err.print(f"{tag}: complete, skipped ({e.run_dir})")
            elif e.kind == "busy":
                err.print(f"{tag}: being trained by {e.holder}, skipped; run again once it is done")
            elif e.kind == "start":
                err.print(f"{tag}: training ...")
            else:
                r = e.result or {}
                err.print(f"{tag}: test acc {r.get('test_acc', float('nan')):.4f} in {r.get('wall_seconds', 0):.1f}s")

        signal.signal(signal.SIGTERM, _raise_interrupt)
        mnist = load_data(data_dir) if executor == "local" else None
        try:
            root = run_study(
                study, seeds=seeds, quick=quick, executor=executor, address=address, out=out_dir,
                mnist=mnist, data_dir=data_dir, device=device, on_event=show,
            )  # fmt: skip
        except KeyboardInterrupt:
            root = study_root(study, quick, out_dir)
            err.print(f"interrupted: completed runs are kept under {root}; run the same command again to continue")
            raise typer.Exit(130) from None
        rows = write_results(study, root)
        if json_out:
            print_json(results_json(study, rows))
            return
        header, cells = table_rows(rows)
        table = Table(*header, title=f"{study.name}: {study.title}" + (" (quick)" if quick else ""))
        for c in cells:
            table.add_row(*c)
        out.print(table)
        out.print(f"results: {root / 'results.md'}; report: mnistlab study report {name}{' --quick' if quick else ''}")

    @study_app.command("seeds")
    def seeds_cmd(
        out_path: Path = typer.Option(
            None, "--out", help="Write the page here (e.g. docs/seeds.md); default: print it."
        ),
        reports: Path = typer.Option(
            None, "--reports", help="Folder of the study reports to quote (default: docs/studies of this checkout)."
        ),
    ) -> None:
        """The seed experiments: what each asked and reported, the command that reruns it, our result."""
        from mnistlab import seeds

        if out_path is None:
            s = seeds.load_seeds()
            seeds.check(s)
            sys.stdout.write(seeds.render(s, reports))  # as is: rich would wrap the lines
            return
        out.print(f"written to {seeds.write(out_path, reports)}")

    @study_app.command("report")
    def report_cmd(
        name: str = typer.Argument(..., help="Study name or a study .toml file."),
        quick: bool = typer.Option(False, "--quick", help="Report the --quick runs."),
        out_dir: Path = typer.Option(None, "--out", help="The study folder given to `study run --out`."),
        dest: Path = typer.Option(
            None, "--dest", help="Where to write NAME.md, NAME.html and figures (default: the study folder)."
        ),
        html: bool = typer.Option(True, help="Also write an HTML page."),
    ) -> None:
        """Write a Markdown (and HTML) report with the results table and figures."""
        from mnistlab.studies.report import write_report
        from mnistlab.studies.runner import study_root

        study = load_study(name)
        root = study_root(study, quick, out_dir)
        path = write_report(study, root, dest or root, quick=quick, html_too=html)
        out.print(f"report written to {path}")
