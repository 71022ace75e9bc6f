"""Core commands: data, models, summary, train, eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from mnistlab import data as mdata
from mnistlab.cli._common import (
    DataDir,
    Device,
    DeviceOrCuda,
    JsonObject,
    ProgressBar,
    SetOverrides,
    err,
    out,
    print_json,
    sigterm_as_interrupt,
)
from mnistlab.config import parse_assignments
from mnistlab.dataset import canonical_test
from mnistlab.errors import ConfigError, RunError
from mnistlab.experiment import TrainingInterrupted, plan_training, train_run
from mnistlab.models import create_model, get_spec, keras_param_count, list_models, summarize
from mnistlab.predictor import Predictor
from mnistlab.recipes import DEFAULT_RECIPE, get_recipe, list_recipes, resolve_run_config
from mnistlab.train import evaluate, pick_device


def download_progress():
    """A progress callback for data.load_mnist that draws a download bar on stderr."""
    bars: dict[str, Any] = {}
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err
    )

    def cb(name: str, done: int, total: int | None) -> None:
        if not bars:
            progress.start()
        if name not in bars:
            bars[name] = progress.add_task(f"download {name}", total=total)
        progress.update(bars[name], completed=done)
        if total and done >= total:
            progress.refresh()

    return cb, progress


def load_data(data_dir: str | None, download: bool = True) -> mdata.MNIST:
    cb, progress = download_progress()
    try:
        return mdata.load_mnist(data_dir, download_missing=download, progress=cb)
    finally:
        progress.stop()


def data(
    data_dir: DataDir = None,
    download: Annotated[bool, typer.Option(help="Download from public mirrors when the files are missing.")] = True,
    json_out: JsonObject = False,
) -> None:
    """Find (or download) and verify MNIST; print class distribution, pixel stats, NaN check."""
    info = mdata.describe(load_data(data_dir, download))
    if json_out:
        print_json(info)
        return
    out.print(f"MNIST from {info['source']} (checksums verified)")
    table = Table("split", "images", "shape", *[str(d) for d in range(10)], "mean", "std", "NaN")
    for part in ("train", "test"):
        p = info[part]
        table.add_row(
            part, str(p["count"]), "x".join(map(str, p["shape"])), *map(str, p["class_counts"]),
            f"{p['mean_scaled']:.4f}", f"{p['std_scaled']:.4f}", "yes" if p["has_nan"] else "no",
        )  # fmt: skip
    out.print(table)
    out.print("pixel values are uint8 0..255; mean/std shown after /255 scaling")


def model_rows() -> list[dict[str, Any]]:
    """One row per registered model, with its Keras-style parameter counts (the `models --json` list)."""
    rows = []
    for name in list_models(task=None):  # the line reader too
        spec = get_spec(name)
        total, trainable = keras_param_count(create_model(name))
        rows.append(
            {"name": name, "params": total, "trainable": trainable, "seed_doc": spec.seed_doc,
             "seed": spec.seed_doc,  # the old name of seed_doc, kept for JSON readers
             "description": spec.description}
        )  # fmt: skip
    return rows


def recipe_rows() -> list[dict[str, Any]]:
    """One row per recipe, counting the parameters of the model as `mnistlab train NAME` builds it."""
    rows = []
    for name in list_recipes(task=None):
        cfg = resolve_run_config(name)
        total, trainable = keras_param_count(create_model(cfg.model, cfg.model_config))
        r = get_recipe(name)
        rows.append(
            {"name": name, "model": r.model, "params": total, "trainable": trainable, "seed_doc": r.seed_doc,
             "description": r.description}
        )  # fmt: skip
    return rows


def models(json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """List the registered models and the recipes, with Keras-style parameter counts."""
    rows = model_rows()
    if json_out:
        print_json(rows)
        return
    table = Table("model", "params", "trainable", "seed", "layers", title="models")
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", f"{r['trainable']:,}", r["seed_doc"] or "-", r["description"])
    out.print(table)
    table = Table("recipe", "model", "params", "seed", "what `mnistlab train NAME` does", title="recipes")
    for r in recipe_rows():
        table.add_row(r["name"], r["model"], f"{r['params']:,}", r["seed_doc"] or "-", r["description"])
    out.print(table)


def summary(
    model: Annotated[str, typer.Argument(help="Model or recipe name.")],
    set_: SetOverrides = None,
) -> None:
    """A Keras-like layer table: layer, output shape, params."""
    cfg = resolve_run_config(model, parse_assignments(set_))
    net = create_model(cfg.model, cfg.model_config)
    table = Table("layer", "type", "output shape", "params", title=f"{model}: {cfg.model_config}")
    for row in summarize(net):
        table.add_row(row.name, row.kind, "(None, " + ", ".join(map(str, row.output_shape)) + ")", f"{row.params:,}")
    out.print(table)
    total, trainable = keras_param_count(net)
    out.print(f"Total params: {total:,}")
    out.print(f"Trainable params: {trainable:,}")
    out.print(f"Non-trainable params: {total - trainable:,}")


def train(
    name: Annotated[str, typer.Argument(help="Model or recipe name (see `mnistlab models`).")] = DEFAULT_RECIPE,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the recipe's).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size.")] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="sgd, momentum, nesterov, rmsprop, adam, adamw, adadelta.")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: Keras' for the optimizer).")] = None,
    schedule: Annotated[str | None, typer.Option(help="constant, step, plateau, onecycle, cosine.")] = None,
    val_split: Annotated[
        float | None, typer.Option("--val-split", help="Validation fraction (the LAST part, as Keras).")
    ] = None,
    monitor: Annotated[
        str | None, typer.Option(help="Keep and restore the best epoch by val_loss, val_acc, loss or acc.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same run on CPU.")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any config field KEY=VALUE (repeatable), e.g. hidden=2048."),
    ] = None,
    data_dir: DataDir = None,
    device: DeviceOrCuda = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Where to write the run record (default: runs/NAME-TIME-sSEED).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one final JSON line.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    resume: Annotated[
        str | None, typer.Option(help="Continue an interrupted run (its folder) from its last epoch.")
    ] = None,
    adversarial: Annotated[
        str | None, typer.Option(help="Adversarial training: pgd, fgsm-rs or n-fgsm (train.adversarial).")
    ] = None,
    adv_eps: Annotated[
        float | None, typer.Option("--eps", help="L∞ budget of --adversarial, pixels in [0, 1] (train.adv_eps).")
    ] = None,
    record_activations: Annotated[
        bool,
        typer.Option(
            "--record-activations", help="Store per-epoch histograms of each layer's outputs (show activations)."
        ),
    ] = False,
) -> None:
    """Train a model (default: the default recipe), test it, and save the run record."""
    flags = {
        "train.epochs": epochs, "train.batch_size": batch_size, "train.optimizer": optimizer, "train.lr": lr,
        "train.schedule": schedule, "data.val_split": val_split, "train.monitor": monitor,
        "train.adversarial": adversarial, "train.adv_eps": adv_eps,
    }  # fmt: skip
    overrides = {k: v for k, v in flags.items() if v is not None} | parse_assignments(set_)
    plan = plan_training(name, overrides, seed, run_dir=run_dir, resume=resume)
    mnist = load_data(data_dir)
    plan = plan.folder()  # the activation recorder below writes into it
    assert plan.run_dir is not None
    progress = ProgressBar(quiet=quiet or json_out)
    callbacks: list[Any] = [progress]
    if record_activations or (plan.resume is not None and (plan.run_dir / "activations.json").is_file()):
        from mnistlab.viz.activations import ActivationRecorder  # late: matplotlib only when asked

        callbacks.append(ActivationRecorder(plan.run_dir))
    sigterm_as_interrupt()
    if get_spec(plan.config.model).task == "line":  # the line reader trains on synthetic strips
        _train_line_reader(plan, mnist, device, progress, json_out)
        return
    try:
        r = train_run(plan, mnist=mnist, device=device, callbacks=callbacks).result
    except TrainingInterrupted as e:
        progress.on_train_end(None)  # type: ignore[arg-type]
        err.print(f"interrupted: {e}")
        raise typer.Exit(130) from None
    if json_out:
        print_json({k: v for k, v in r.items() if k != "confusion"})
        return
    out.print(
        f"{plan.name}: test accuracy {r['test_acc']:.4f}, test loss {r['test_loss']:.4f} "
        f"({r['epochs']} epoch(s), {r['train_seconds']:.1f}s training, {r['params']:,} params, {r['device']})"
    )
    for k, v in r["extra_tests"].items():
        out.print(f"  {k}: accuracy {v['acc']:.4f}, loss {v['loss']:.4f}")
    if r["best_epoch"]:
        out.print(f"  restored the best epoch by {plan.config.train.monitor}: {r['best_epoch']}")
    out.print(f"run saved to {plan.run_dir}")


def _train_line_reader(
    plan: Any, mnist: mdata.MNIST, device: str | None, progress: ProgressBar, json_out: bool
) -> None:
    """`mnistlab train line-reader`: handwriting.lines trains it (an app: the core knows no strips)."""
    from mnistlab.handwriting.lines import train_line_reader

    if plan.resume is not None:
        raise ConfigError("a line-reader run cannot be resumed: train it again (it takes minutes)")
    try:
        r = train_line_reader(plan.config, plan.run_dir, mnist, pick_device(device), [progress])
    except KeyboardInterrupt:
        progress.on_train_end(None)  # type: ignore[arg-type]
        err.print(f"interrupted: {plan.run_dir} is incomplete; train it again")
        raise typer.Exit(130) from None
    if json_out:
        print_json(r)
        return
    out.print(
        f"{plan.name}: held-out strips read exactly {r['test_acc']:.4f}, digits {r['test_digit_acc']:.4f}, "
        f"digit count {r['test_count_acc']:.4f} ({r['epochs']} epoch(s), {r['train_seconds']:.1f}s training, "
        f"{r['params']:,} params, {r['device']})"
    )
    out.print(f"run saved to {plan.run_dir}")


def eval_(
    run: Annotated[str, typer.Argument(help="Run folder (or its name under runs/).")],
    data_dir: DataDir = None,
    device: Device = None,
    json_out: JsonObject = False,
) -> None:
    """Rebuild a run's model from its record and re-evaluate it on the test set."""
    p = Predictor.load(run, pick_device(device))
    test = evaluate(p.net, canonical_test(load_data(data_dir), p.config.data))
    recorded = (p.result or {}).get("test_acc")
    payload = {"run": str(p.path), "test_acc": test["acc"], "test_loss": test["loss"], "recorded_test_acc": recorded}
    if json_out:
        print_json(payload)
        return
    out.print(f"{p.path}: test accuracy {test['acc']:.4f}, test loss {test['loss']:.4f}")
    if recorded is None:
        err.print("note: the run is incomplete (no result.json); evaluated its last completed epoch")
    elif abs(recorded - test["acc"]) > 1e-9:
        raise RunError(f"re-evaluation gives {test['acc']:.4f} but the record says {recorded:.4f}")
    else:
        out.print("matches the recorded result")


def register(app: typer.Typer) -> None:
    app.command("data")(data)
    app.command("models")(models)
    app.command("summary")(summary)
    app.command("train")(train)
    app.command("eval")(eval_)
