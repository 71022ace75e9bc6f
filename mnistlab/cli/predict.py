"""Reading people's handwriting: predict, evaluate-images, evaluate-uci, make-pages, score-pages."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from mnistlab.cli._common import DataDirOption, err, out, print_json

RunOption = dict(help="A run folder or name to read with (default: the cached `robust` model, trained on first use).")


def load_reader_model(run: str | None, data_dir: str | None = None) -> nn.Module:
    from mnistlab import runs
    from mnistlab.handwriting import default_model
    from mnistlab.handwriting.model import default_model_dir
    from mnistlab.train import pick_device

    if run:
        return runs.load_run(run, pick_device()).model.eval()
    if not runs.is_complete(default_model_dir()):
        err.print(f"no default model yet: training the `robust` recipe once, cached in {default_model_dir()}")
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
            return default_model(progress=cb, data_dir=data_dir)
        finally:
            progress.stop()
    return default_model()


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict_cmd(
        paths: list[Path] = typer.Argument(..., help="Image files or folders of them."),
        run: str = typer.Option(None, "--run", **RunOption),
        json_out: bool = typer.Option(False, "--json", help="One JSON object per file (JSON Lines)."),
        explain: Path = typer.Option(
            None, "--explain", help="Draw the steps to this PNG (with several files: OUT-<n>.png)."
        ),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
    ) -> None:
        """Read the digits in photos, scans or canvas drawings: one line (or JSON object) per file."""
        from mnistlab.handwriting.explain import explain_figure
        from mnistlab.handwriting.images import expand_paths
        from mnistlab.handwriting.reader import NO_DIGIT, read_images

        model = load_reader_model(run, data_dir)
        files = expand_paths(list(paths))
        failed = 0
        for i, r in enumerate(read_images(files, model)):
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

    @app.command("evaluate-images")
    def evaluate_images_cmd(
        folder: Path = typer.Argument(
            ..., help="Folder of single-digit images, labelled by sub-folder 0..9 or name prefix."
        ),
        run: str = typer.Option(None, "--run", **RunOption),
        gallery: Path = typer.Option(Path("misses.png"), help="Where to draw the misses."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Accuracy on your own labelled digit images: per class, confusion matrix, gallery of misses."""
        from mnistlab.handwriting.evaluate import evaluate_images

        model = load_reader_model(run)
        summary, misses = evaluate_images(folder, model)
        _report(summary, misses, gallery, json_out, str(folder))

    @app.command("evaluate-uci")
    def evaluate_uci_cmd(
        run: str = typer.Option(None, "--run", **RunOption),
        upscale: int = typer.Option(4, help="Scale the 8x8 digits up this many times (bicubic), like a small scan."),
        gallery: Path = typer.Option(None, help="Draw the misses to this PNG."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Accuracy on scikit-learn's UCI digits (1,797 digits by 43 people), through the reading pipeline."""
        from mnistlab.handwriting.evaluate import evaluate_uci

        model = load_reader_model(run)
        summary, misses = evaluate_uci(model, upscale)
        _report(summary, misses, gallery, json_out, f"UCI digits x{upscale}")

    @app.command("make-pages")
    def make_pages_cmd(
        out_dir: Path = typer.Argument(..., help="Folder to write pages and truth.json into."),
        n: int = typer.Option(20, "--n", help="Number of pages."),
        seed: int = typer.Option(0, help="Random seed (pages are a pure function of it)."),
        size: str = typer.Option(
            None, "--size", help="Enlarge each page to WIDTHxHEIGHT, e.g. 4000x3000 (a big photo)."
        ),
        fmt: str = typer.Option("jpg", "--format", help="jpg or png."),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
    ) -> None:
        """Make realistic test pages from MNIST TEST digits (dark ink on paper, camera effects) with ground truth."""
        from mnistlab.cli.core import load_data
        from mnistlab.errors import ConfigError
        from mnistlab.handwriting.pages import make_pages

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
        truth = make_pages(load_data(data_dir), out_dir, n, seed, size=wh, fmt=fmt)
        digits = sum(len(x) for t in truth for x in t["lines"])
        out.print(f"wrote {len(truth)} pages ({digits} digits) and truth.json to {out_dir}")

    @app.command("score-pages")
    def score_pages_cmd(
        folder: Path = typer.Argument(..., help="A folder made by make-pages."),
        run: str = typer.Option(None, "--run", **RunOption),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
        verbose: bool = typer.Option(False, "-v", help="Show every page's truth and reading."),
    ) -> None:
        """Read make-pages pages and score them: digit accuracy and lines read exactly."""
        from mnistlab.handwriting.evaluate import score_pages

        model = load_reader_model(run)

        def show(p: dict) -> None:
            if verbose and p["digit_errors"]:
                err.print(f"{p['file']}: {p['digit_errors']} error(s)\n  truth {p['truth']!r}\n  read  {p['read']!r}")

        s = score_pages(folder, model, show)
        if json_out:
            print_json(s)
            return
        out.print(
            f"{s['pages']} pages: digit accuracy {s['digit_acc']:.4f} ({s['digits'] - s['digit_errors']}/{s['digits']}), "
            f"lines read exactly {s['line_acc']:.4f} ({s['lines_exact']}/{s['lines']}), failed files {s['failed']}"
        )


def _report(summary: dict, misses: list, gallery: Path | None, json_out: bool, title: str) -> None:
    from rich.table import Table

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
