"""`mnistlab study list | run NAME | report NAME`: the seed experiments as reproducible studies."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mnistlab.cli._common import DataDir, DeviceOrCuda, err, out, print_json, sigterm_as_interrupt
from mnistlab.cli.core import load_data
from mnistlab.studies import list_studies, load_study, validate
from mnistlab.studies.report import results_json, table_rows, write_report, write_results
from mnistlab.studies.runner import RunEvent, run_study, study_root

StudyName = Annotated[str, typer.Argument(help="Study name or a study .toml file.")]


def list_(json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """The available studies, their seed experiments and variants."""
    rows = []
    for name in list_studies():
        s = load_study(name)
        validate(s)  # a broken study file shows up here, not after an hour of training
        rows.append(
            {"name": name, "seed_doc": s.seed_doc, "seed": s.seed_doc, "title": s.title, "variants": s.variant_names()}
        )
    if json_out:
        print_json(rows)
        return
    table = Table("study", "seed", "title", "variants")
    for r in rows:
        table.add_row(r["name"], r["seed_doc"], r["title"], f"{len(r['variants'])}: {', '.join(r['variants'])}")
    out.print(table)


def _print_event(e: RunEvent) -> None:
    tag = f"[{e.index}/{e.total}] {e.variant} s{e.seed}"
    if e.kind == "skip":
        err.print(f"{tag}: complete, skipped ({e.run_dir})")
    elif e.kind == "busy":
        err.print(f"{tag}: being trained by {e.holder}, skipped; run again once it is done")
    elif e.kind == "start":
        err.print(f"{tag}: training ...")
    elif e.kind == "evaluated":
        extra = (e.result or {}).get("extra_tests") or {}
        err.print(f"{tag}: " + ", ".join(f"{k} acc {v['acc']:.4f}" for k, v in extra.items()))
    else:
        r = e.result or {}
        err.print(f"{tag}: test acc {r.get('test_acc', float('nan')):.4f} in {r.get('wall_seconds', 0):.1f}s")


def run(
    name: Annotated[str, typer.Argument(help="Study name (see `mnistlab study list`) or a study .toml file.")],
    seeds: Annotated[int, typer.Option(help="Seeds per variant (0, 1, ..., N-1).")] = 3,
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny slices and one epoch (tests, CI, a smoke check).")
    ] = False,
    executor: Annotated[str, typer.Option(help="local (this process) or ray (one Ray task per run).")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (with --executor ray; default: a local Ray).")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Study folder (default: $MNISTLAB_RUNS/studies/NAME, or NAME-quick).")
    ] = None,
    variant: Annotated[
        list[str] | None, typer.Option("--variant", help="Run only these variants (repeatable).")
    ] = None,
    data_dir: DataDir = None,
    device: DeviceOrCuda = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as one JSON object.")] = False,
) -> None:
    """Train every variant x seed (skipping complete runs), then write the results table."""
    study = load_study(name)
    if variant:
        study = replace(study, variants=tuple(study.variant(v) for v in variant))
    validate(study, seeds, quick)  # before loading data or starting Ray
    sigterm_as_interrupt()
    mnist = load_data(data_dir) if executor == "local" else None
    try:
        root = run_study(
            study, seeds=seeds, quick=quick, executor=executor, address=address, out=out_dir,
            mnist=mnist, data_dir=data_dir, device=device, on_event=_print_event,
        )  # fmt: skip
    except KeyboardInterrupt:
        root = study_root(study, quick, out_dir)
        err.print(f"interrupted: completed runs are kept under {root}; run the same command again to continue")
        raise typer.Exit(130) from None
    rows = write_results(study, root, quick)
    if json_out:
        print_json(results_json(study, rows))
        return
    header, cells = table_rows(rows, quick)
    table = Table(*header, title=f"{study.name}: {study.title}" + (" (quick)" if quick else ""))
    for c in cells:
        table.add_row(*c)
    out.print(table)
    out.print(f"results: {root / 'results.md'}; report: mnistlab study report {name}{' --quick' if quick else ''}")


def report(
    name: StudyName,
    quick: Annotated[bool, typer.Option("--quick", help="Report the --quick runs.")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="The study folder given to `study run --out`.")] = None,
    dest: Annotated[
        Path | None,
        typer.Option("--dest", help="Where to write NAME.md, NAME.html and figures (default: the study folder)."),
    ] = None,
    html: Annotated[bool, typer.Option(help="Also write an HTML page.")] = True,
) -> None:
    """Write a Markdown (and HTML) report with the results table and figures."""
    study = load_study(name)
    root = study_root(study, quick, out_dir)
    path = write_report(study, root, dest or root, quick=quick, html_too=html)
    out.print(f"report written to {path}")


def seeds(
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write the page here (e.g. docs/seeds.md); default: print it.")
    ] = None,
    reports: Annotated[
        Path | None,
        typer.Option(
            "--reports", help="Folder of the study reports to quote (default: docs/studies of this checkout)."
        ),
    ] = None,
) -> None:
    """The seed experiments: what each asked and reported, the command that reruns it, our result."""
    from mnistlab import seeds as seedslib

    if out_path is None:
        s = seedslib.load_seeds()
        seedslib.check(s)
        sys.stdout.write(seedslib.render(s, reports))  # as is: rich would wrap the lines
        return
    out.print(f"written to {seedslib.write(out_path, reports)}")


def register(app: typer.Typer) -> None:
    study_app = typer.Typer(help="Every seed experiment as a reproducible study (mean ± std over seeds, report).")
    app.add_typer(study_app, name="study")
    study_app.command("list")(list_)
    study_app.command("run")(run)
    study_app.command("seeds")(seeds)
    study_app.command("report")(report)
