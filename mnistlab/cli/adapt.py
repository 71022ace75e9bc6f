"""Teaching a run one person's handwriting: adapt, adapt-study, template."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mnistlab import runs
from mnistlab.cli._common import DataDir, JsonObject, err, out, print_json
from mnistlab.cli.core import load_data
from mnistlab.cli.predict import ReaderRun, load_reader
from mnistlab.config import AdaptConfig
from mnistlab.errors import ConfigError, DataError

Mode = Annotated[
    str,
    typer.Option(
        help="What to train: all-bn (every weight and the BN statistics; the default), all (every weight, BN "
        "statistics frozen), head (the last layer), bn (the BN layers), stats (only the BN statistics, no weight)."
    ),
]
Steps = Annotated[int, typer.Option(help="Optimizer steps (0 = none: only --proto adapts).")]
Lr = Annotated[float, typer.Option("--lr", help="Adam learning rate.")]
Replay = Annotated[float, typer.Option(help="MNIST digits per step, as a multiple of the writer's (0 = no replay).")]
Proto = Annotated[
    float,
    typer.Option(
        help="Weight of the prototype head (your digits' mean features per class) blended into the logits "
        "after the steps (0 = off)."
    ),
]
Augment = Annotated[
    bool,
    typer.Option(
        "--augment/--no-augment",
        help="Augment your digits and the MNIST replay with the base run's own augmentation (default: off).",
    ),
]


def adapt_config(
    mode: str,
    steps: int,
    lr: float,
    replay: float,
    shots: int = 0,
    proto: float = 0.0,
    augment: bool = AdaptConfig.augment,
) -> AdaptConfig:
    modes = ("all", "head", "bn", "all-bn", "stats")
    if mode not in modes:
        raise ConfigError(f"bad --mode {mode!r}: choose one of {', '.join(modes)}")
    try:
        return AdaptConfig(
            mode=mode,  # type: ignore[arg-type]
            steps=steps,
            lr=lr,
            replay=replay,
            shots=shots,
            proto=proto,
            augment=augment,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


@contextlib.contextmanager
def _bar(what: str) -> Iterator:
    """A (done, total) callback drawing a bar on stderr (on a terminal only)."""
    if not err.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    )
    task = bar.add_task(what, total=None)
    bar.start()
    try:
        yield lambda done, total: bar.update(task, completed=done, total=total)
    finally:
        bar.stop()


def adapt(
    folder: Annotated[
        Path | None,
        typer.Argument(help="Labelled single-digit images: sub-folders 0..9, or names starting with the digit."),
    ] = None,
    run: ReaderRun = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="The new run's folder, or a name under the runs root.")
    ] = None,
    sheet: Annotated[
        list[Path] | None, typer.Option("--sheet", help="A photo of a filled `mnistlab template` sheet (repeatable).")
    ] = None,
    columns: Annotated[
        int, typer.Option(help="Boxes per digit on the --sheet (as `mnistlab template --columns`).")
    ] = 8,
    shots: Annotated[
        int, typer.Option(help="Use at most K images per digit (the first K in sorted file order; 0 = all).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Random seed (batches, augmentation).")] = 0,
    mode: Mode = AdaptConfig.mode,
    steps: Steps = AdaptConfig.steps,
    lr: Lr = AdaptConfig.lr,
    replay: Replay = AdaptConfig.replay,
    proto: Proto = AdaptConfig.proto,
    augment: Augment = AdaptConfig.augment,
    json_out: JsonObject = False,
    data_dir: DataDir = None,
) -> None:
    """Teach a run your handwriting from a few labelled digits; writes a new run record."""
    from mnistlab.handwriting.adapt import Digits, adapt_run, first_shots, load_digits_folder, subset

    if folder is None and not sheet:
        raise DataError("give a folder of labelled digits, or --sheet PHOTO of a filled template")
    cfg = adapt_config(mode, steps, lr, replay, shots, proto, augment)
    parts: list[Digits] = []
    if folder is not None:
        parts.append(load_digits_folder(folder, shots))
    for photo in sheet or []:
        from mnistlab.handwriting.template import read_sheet

        parts.append(read_sheet(photo, columns))
    digits = _concat(parts)
    if sheet and shots:
        import torch

        digits = subset(digits, torch.tensor(first_shots(digits.y.tolist(), shots), dtype=torch.int64))
        digits.errors = [e for p in parts for e in p.errors]
    for e in digits.errors:
        err.print(f"mnistlab: skipped: {e}")
    digits.check_classes(str(folder) if folder is not None else "the sheet")
    target = _out_dir(out_dir)
    base = load_reader(run, data_dir)
    mnist = load_data(data_dir)
    err.print(f"adapting {base.name} to {len(digits)} digits ({', '.join(map(str, digits.counts()))} of 0..9)")
    with _bar("adapting") as progress:
        result = adapt_run(base, digits, target, cfg, mnist, seed, progress)
    if json_out:
        print_json(result)
        return
    out.print(
        f"MNIST test accuracy {result['base_test_acc']:.4f} -> {result['test_acc']:.4f} "
        f"({-100 * result['forgetting']:+.2f} points); your {result['digits']} digits read "
        f"{result['digits_acc_before']:.3f} -> {result['digits_acc_after']:.3f}"
    )
    out.print(
        f"adapted in {result['train_seconds']:.1f} s ({result['adapt_cpu_seconds']:.1f} s CPU); "
        f"run record: {target}  (read with: mnistlab predict --run {target} ...)"
    )


def _concat(parts: list) -> object:
    import torch

    from mnistlab.handwriting.adapt import Digits

    if len(parts) == 1:
        return parts[0]
    return Digits(
        torch.cat([p.x for p in parts]),
        torch.cat([p.y for p in parts]),
        [n for p in parts for n in p.names],
        [e for p in parts for e in p.errors],
        [s for p in parts for s in p.skipped],
    )


def _out_dir(out_dir: Path | None) -> Path:
    if out_dir is None:
        return runs.new_run_dir("adapted", 0)
    if len(out_dir.parts) == 1 and not out_dir.exists():
        return runs.runs_root() / runs.check_name(str(out_dir))
    return out_dir


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"bad {option} {text!r}: expected numbers like 1,2") from None
    if not values:
        raise ConfigError(f"{option} needs at least one value")
    return values


def adapt_study(
    run: ReaderRun = None,
    modes: Annotated[
        str, typer.Option(help="Comma-separated modes to compare (all, head, bn, all-bn, stats).")
    ] = AdaptConfig.mode,
    shots: Annotated[str, typer.Option(help="Comma-separated K (digits per class).")] = "1,5,10,20",
    seeds: Annotated[int, typer.Option(help="Seeds (0..N-1).")] = 3,
    sets: Annotated[
        str,
        typer.Option(
            help="Comma-separated sets: uci (scikit-learn's UCI digits, half/half), and the synthetic writers "
            "writer (slant, thick pen), thin (thin pen, small, wide), continental (flagged 1, barred 7)."
        ),
    ] = "uci,writer,thin,continental",
    steps: Annotated[str, typer.Option(help="Comma-separated optimizer steps to compare.")] = str(AdaptConfig.steps),
    lr: Annotated[str, typer.Option("--lr", help="Comma-separated Adam learning rates.")] = f"{AdaptConfig.lr:g}",
    replay: Annotated[
        str, typer.Option(help="Comma-separated MNIST replay ratios (MNIST digits per step / the writer's).")
    ] = f"{AdaptConfig.replay:g}",
    proto: Annotated[
        str, typer.Option(help="Comma-separated prototype-head weights (0 = off).")
    ] = f"{AdaptConfig.proto:g}",
    augment: Augment = AdaptConfig.augment,
    mnist_test_limit: Annotated[
        int, typer.Option(help="MNIST test digits to measure forgetting on (0 = all 10,000).")
    ] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON line per adapted model, then the summary.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Measure adaptation: K shots per class, seeds, accuracy before/after and MNIST after.

    Every comma-separated list multiplies: each combination of mode, steps, lr, replay and proto
    is one method (a row per set and K)."""
    import itertools

    from mnistlab.handwriting.adapt import adapt_study as study
    from mnistlab.handwriting.adapt import summarize_study

    shots, steps, lr, replay, proto = (str(v) for v in (shots, steps, lr, replay, proto))  # also from Python
    try:
        ks = [int(k) for k in shots.split(",") if k.strip()]
        step_list = [int(v) for v in steps.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"bad --shots {shots!r} or --steps {steps!r}: expected integers like 1,5,10,20") from None
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    if seeds < 1 or not ks or min(ks) < 1 or not mode_list or not step_list:
        raise ConfigError("--seeds and every --shots value must be at least 1; --modes and --steps need a value")
    variants = [
        adapt_config(m, st, r, rp, 0, pr, augment)
        for m, st, r, rp, pr in itertools.product(
            mode_list, step_list, _floats(lr, "--lr"), _floats(replay, "--replay"), _floats(proto, "--proto")
        )
    ]
    base = load_reader(run, data_dir)
    mnist = load_data(data_dir)
    err.print(f"base run: {base.name}")

    def show(row: dict) -> None:
        if json_out:
            print_json(row)
        else:
            err.print(
                f"{row['set']} {row['method']} K={row['shots']} seed {row['seed']}: {row['before']:.4f} -> "
                f"{row['after']:.4f}, MNIST {row['mnist_after']:.4f} ({row['adapt_wall_s']:.1f} s)"
            )

    set_list = [s.strip() for s in sets.split(",") if s.strip()]
    rows = study(base, mnist, variants, ks, range(seeds), set_list, mnist_test_limit, show)
    summary = summarize_study(rows)
    if json_out:
        print_json({"summary": summary})
        return
    out.print(
        f"base run {base.name}, MNIST test accuracy {100 * rows[0]['mnist_before']:.2f} %; mean ± std over {seeds} seeds"
    )
    out.print()  # a blank line: the table below is a Markdown table of its own
    out.print(
        "| set | method | K | before % | after % | gain (points) | MNIST after % | MNIST loss (points) "
        "| adapt s (CPU s) |"
    )
    out.print("|---|---|---|---|---|---|---|---|---|")
    for s in summary:
        f = lambda v: f"{v[0]:.2f} ± {v[1]:.2f}"  # noqa: E731
        out.print(
            f"| {s['set']} | {s['method']} | {s['shots']} | {f(s['before'])} | {f(s['after'])} | {f(s['gain'])} "
            f"| {f(s['mnist_after'])} | {f(s['mnist_loss'])} | {s['wall_s']:.1f} ({s['cpu_s']:.1f}) |"
        )


def template(
    out_file: Annotated[Path, typer.Argument(help="The sheet to write: .pdf (A4) or .png.")],
    columns: Annotated[int, typer.Option(help="Boxes per digit.")] = 8,
    example: Annotated[
        Path | None,
        typer.Option(
            "--example",
            help="Also write a photo (JPEG) of the sheet filled with MNIST test digits, to try `adapt --sheet` on.",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Draw the printable sheet: a row of boxes per digit and four corner marks."""
    from mnistlab.handwriting.template import fill_sheet, photograph, write_sheet

    write_sheet(out_file, columns)
    out.print(
        f"wrote {out_file}: print it, write each row's digit in its boxes, photograph it, then: "
        f"mnistlab adapt --sheet PHOTO --columns {columns}"
    )
    if example is not None:
        mnist = load_data(data_dir)
        labels = mnist.test_labels.numpy()
        rows = [[mnist.test_images[i].numpy() for i in (labels == d).nonzero()[0][:columns]] for d in range(10)]
        try:
            photograph(fill_sheet(rows, columns)).save(example, "JPEG", quality=85)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot write {example}: {e}") from None
        out.print(f"wrote {example}: the sheet filled with MNIST test digits, as a phone photo")


def register(app: typer.Typer) -> None:
    app.command("adapt")(adapt)
    app.command("adapt-study")(adapt_study)
    app.command("template")(template)
