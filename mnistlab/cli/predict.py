"""Reading people's handwriting: predict, evaluate-images, evaluate-uci, make-pages, score-pages.

The handwriting package (PIL, SciPy: a third of a second) is imported inside the commands, so
the other commands start without it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mnistlab import runs
from mnistlab.cli._common import DataDir, JsonObject, err, out, print_json
from mnistlab.cli.core import load_data
from mnistlab.predictor import Predictor
from mnistlab.train import pick_device

RunOption = dict(
    help="A run folder or name to read with (default: your newest `robust` run, else the cached one, trained on first use)."
)
ReaderRun = Annotated[str | None, typer.Option("--run", **RunOption)]
LinesOption = Annotated[
    str | None,
    typer.Option(
        "--lines",
        help="A line-reader run (`mnistlab train line-reader`) that also reads the touching digits of a page, "
        "or `none` for the classifier alone (default: your newest line-reader run, else none).",
    ),
]


def load_lines(lines: str | None):  # noqa: ANN201 - a LineReader or None (imported late)
    """The line reader pages are read with: `--lines RUN`, `none`, else the newest line-reader run."""
    from mnistlab.handwriting.lines import LineReader
    from mnistlab.handwriting.model import trained_line_reader_run

    if lines is not None and lines.lower() == "none":
        return None
    if lines is not None:
        return LineReader.load(lines)
    found = trained_line_reader_run()
    return LineReader.load(found) if found is not None else None


def load_reader(run: str | None, data_dir: str | None = None) -> Predictor:
    """The Predictor to read with: `--run`, else the default reader (trained once, with a bar)."""
    from mnistlab.handwriting.model import default_predictor, default_reader_dir

    if run:
        return Predictor.load(run, pick_device())
    if runs.is_complete(default_reader_dir()):
        return default_predictor()
    err.print(f"no default model yet: training the `robust` recipe once, cached in {default_reader_dir()}")
    progress = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = progress.add_task("train", total=None)
    progress.start()

    def cb(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    try:
        return default_predictor(progress=cb, data_dir=data_dir)
    finally:
        progress.stop()


def predict(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders of them.")],
    run: ReaderRun = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per file (JSON Lines).")] = False,
    single: Annotated[
        bool | None,
        typer.Option(
            "--single/--page",
            help="Read each image as ONE digit (a crop, a box, a canvas: no page rules) or as a page of lines "
            "(default: decided by the image's shape).",
        ),
    ] = None,
    explain: Annotated[
        Path | None,
        typer.Option("--explain", help="Draw the steps to this PNG (with several files: OUT-<n>.png)."),
    ] = None,
    lines: LinesOption = None,
    data_dir: DataDir = None,
) -> None:
    """Read the digits in photos, scans or canvas drawings: one line (or JSON object) per file."""
    from mnistlab.handwriting.explain import explain_figure
    from mnistlab.handwriting.images import expand_paths
    from mnistlab.handwriting.reader import NO_DIGIT, read_images

    predictor = load_reader(run, data_dir)
    if run is None:
        err.print(f"reading with {predictor.path}")
    line_reader = load_lines(lines) if single is not True else None
    if line_reader is not None and lines is None:
        err.print(f"touching digits on pages read with {line_reader.path}")
    files = expand_paths(list(paths))
    failed = 0
    with _progress(len(files), "reading") as step:
        for i, r in enumerate(read_images(files, predictor, single=single, lines=line_reader)):
            step()
            if isinstance(r, Exception):
                failed += 1
                if json_out:
                    print_json({"file": str(files[i]), "error": str(r)})
                else:
                    err.print(f"mnistlab: error: {r}")
                continue
            if json_out:
                print_json(r.to_json())
            elif not r.found:
                out.print(f"{r.file}: {NO_DIGIT}")
            else:
                flag = f"  ({len(r.low_confidence)} low-confidence digit(s))" if r.low_confidence else ""
                out.print(f"{r.file}: {r.text.replace(chr(10), ' / ')}{flag}")
            if explain is not None:
                target = explain if len(files) == 1 else explain.with_name(f"{explain.stem}-{i}{explain.suffix}")
                explain_figure(files[i], r, target)
                err.print(f"explained {r.file} in {target}")
    if failed:
        err.print(f"{failed} of {len(files)} file(s) failed")
        raise typer.Exit(1)


@contextlib.contextmanager
def _progress(total: int, what: str) -> Iterator[Callable[[], None]]:
    """A bar on stderr for more than one file, drawn only on a terminal (stdout stays clean)."""
    if total < 2 or not err.is_terminal:
        yield lambda: None
        return
    bar = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True
    )
    task = bar.add_task(what, total=total)
    with bar:
        yield lambda: bar.advance(task)


def evaluate_images(
    folder: Annotated[
        Path, typer.Argument(help="Folder of single-digit images, labelled by sub-folder 0..9 or name prefix.")
    ],
    run: ReaderRun = None,
    gallery: Annotated[Path, typer.Option(help="Where to draw the misses.")] = Path("misses.png"),
    json_out: JsonObject = False,
) -> None:
    """Accuracy on your own labelled digit images: per class, confusion matrix, gallery of misses."""
    from mnistlab.handwriting import evaluate as hw_evaluate

    summary, misses = hw_evaluate.evaluate_images(folder, load_reader(run))
    _report(summary, misses, gallery, json_out, str(folder))


def evaluate_uci(
    run: ReaderRun = None,
    upscale: Annotated[
        int, typer.Option(help="Scale the 8x8 digits up this many times (bicubic), like a small scan.")
    ] = 4,
    gallery: Annotated[Path | None, typer.Option(help="Draw the misses to this PNG.")] = None,
    json_out: JsonObject = False,
) -> None:
    """Accuracy on scikit-learn's UCI digits (1,797 digits by 43 people), through the reading pipeline."""
    from mnistlab.handwriting import evaluate as hw_evaluate

    summary, misses = hw_evaluate.evaluate_uci(load_reader(run), upscale)
    _report(summary, misses, gallery, json_out, f"UCI digits x{upscale}")


def make_pages(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write pages and truth.json into.")],
    n: Annotated[int, typer.Option("--n", help="Number of pages.")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed (pages are a pure function of it).")] = 0,
    size: Annotated[
        str | None, typer.Option("--size", help="Enlarge each page to WIDTHxHEIGHT, e.g. 4000x3000 (a big photo).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="jpg or png.")] = "jpg",
    data_dir: DataDir = None,
) -> None:
    """Make realistic test pages from MNIST TEST digits (dark ink on paper, camera effects) with ground truth."""
    from mnistlab.errors import ConfigError
    from mnistlab.handwriting import pages

    wh = None
    if size is not None:
        try:
            wh = tuple(int(v) for v in size.lower().split("x"))
        except ValueError:
            wh = ()
        if len(wh) != 2 or not all(28 <= v <= 6000 for v in wh):
            raise ConfigError(f"bad --size {size!r}: use WIDTHxHEIGHT, each 28..6000, e.g. 4000x3000")
    if fmt not in ("jpg", "png"):
        raise ConfigError(f"bad --format {fmt!r}: use jpg or png")
    truth = pages.make_pages(load_data(data_dir), out_dir, n, seed, size=wh, fmt=fmt)
    digits = sum(len(x) for t in truth for x in t["lines"])
    out.print(f"wrote {len(truth)} pages ({digits} digits) and truth.json to {out_dir}")


def score_pages(
    folder: Annotated[Path, typer.Argument(help="A folder made by make-pages.")],
    run: ReaderRun = None,
    lines: LinesOption = None,
    json_out: JsonObject = False,
    verbose: Annotated[bool, typer.Option("-v", help="Show every page's truth and reading.")] = False,
) -> None:
    """Read make-pages pages and score them: digit accuracy and lines read exactly."""
    from mnistlab.handwriting import evaluate as hw_evaluate

    def show(p: dict) -> None:
        if verbose and p["digit_errors"]:
            err.print(f"{p['file']}: {p['digit_errors']} error(s)\n  truth {p['truth']!r}\n  read  {p['read']!r}")

    s = hw_evaluate.score_pages(folder, load_reader(run), show, lines=load_lines(lines))
    if json_out:
        print_json(s)
        return
    out.print(
        f"{s['pages']} pages: digit accuracy {s['digit_acc']:.4f} ({s['digits'] - s['digit_errors']}/{s['digits']}), "
        f"lines read exactly {s['line_acc']:.4f} ({s['lines_exact']}/{s['lines']}), failed files {s['failed']}"
    )


def bench_reader(
    run: ReaderRun = None,
    digits: Annotated[int, typer.Option("--digits", help="Single-digit PNG files to read.")] = 1000,
    pages: Annotated[int, typer.Option("--pages", help="make-pages pages to read.")] = 5,
    lines: LinesOption = None,
    data_dir: DataDir = None,
    json_out: JsonObject = False,
) -> None:
    """How fast `predict` reads after start-up: single-digit files per second, seconds per page."""
    import torch

    from mnistlab.errors import ConfigError
    from mnistlab.handwriting import evaluate as hw_evaluate

    if digits < 8 or pages < 1:
        raise ConfigError("--digits must be >= 8 and --pages >= 1")
    r = hw_evaluate.reading_speed(
        load_reader(run, data_dir), load_data(data_dir), digits, pages, lines=load_lines(lines)
    )
    r |= {
        "threads": torch.get_num_threads(),
        "cpu": runs.cpu_model(),
        "load_avg_1min": runs.environment()["load_avg_1min"],
    }
    if json_out:
        print_json(r)
        return
    out.print(
        f"{r['digits']} single-digit files: {r['digits_per_s']:.0f} per second ({r['digit_wall_s']:.2f} s wall, "
        f"{r['digit_cpu_s']:.2f} s CPU; {r['digits_right']} read right); a page: {r['page_wall_s']:.2f} s wall, "
        f"{r['page_cpu_s']:.2f} s CPU ({r['pages']} pages)"
    )
    out.print(f"{r['threads']} torch thread(s), {r['cpu']}, load average {r['load_avg_1min']}")


def _report(summary: dict, misses: list, gallery: Path | None, json_out: bool, title: str) -> None:
    """Print an evaluate-* summary (and draw its misses to `gallery`)."""
    from mnistlab.handwriting.evaluate import misses_gallery

    if gallery is not None and misses:
        misses_gallery(misses, gallery, title)
        summary["gallery"] = str(gallery)
    if json_out:
        print_json(summary)
        return
    for e in summary.get("errors", []):
        err.print(f"mnistlab: error: {e}")
    if summary.get("skipped"):
        err.print(f"{len(summary['skipped'])} file(s) skipped: no label in folder or file name")
    out.print(f"{title}: accuracy {summary['acc']:.4f} ({summary['n']} digits, {len(misses)} misses)")
    table = Table("true \\ read", *[str(d) for d in range(10)], "acc", title="confusion matrix")
    for c in range(10):
        acc = summary["per_class"][c]
        table.add_row(str(c), *[str(v) for v in summary["confusion"][c]], "-" if acc is None else f"{acc:.3f}")
    out.print(table)
    if gallery is not None and misses:
        out.print(f"misses drawn in {gallery}")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
    app.command("evaluate-images")(evaluate_images)
    app.command("evaluate-uci")(evaluate_uci)
    app.command("make-pages")(make_pages)
    app.command("score-pages")(score_pages)
    app.command("bench-reader")(bench_reader)
