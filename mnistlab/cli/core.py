"""Core commands: data, models, summary, train, eval."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from mnistlab import checkpoint, runs
from mnistlab import data as mdata
from mnistlab.cli._common import DataDirOption, ProgressBar, err, out, print_json
from mnistlab.config import parse_assignments
from mnistlab.dataset import prepare_splits
from mnistlab.errors import ConfigError, RunError
from mnistlab.experiment import run_experiment
from mnistlab.models import create_model, get_spec, keras_param_count, list_models, summarize
from mnistlab.recipes import DEFAULT_RECIPE, get_recipe, list_recipes, resolve_run_config
from mnistlab.train import evaluate, pick_device


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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


def register(app: typer.Typer) -> None:
    @app.command("data")
    def data_cmd(
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        download: bool = typer.Option(True, help="Download from public mirrors when the files are missing."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
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

    @app.command("models")
    def models_cmd(json_out: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
        """List the registered models and the recipes, with Keras-style parameter counts."""
        rows = []
        for name in list_models():
            spec = get_spec(name)
            total, trainable = keras_param_count(create_model(name))
            rows.append(
                {
                    "name": name,
                    "params": total,
                    "trainable": trainable,
                    "seed_doc": spec.seed_doc,
                    "seed": spec.seed_doc,  # the old name of seed_doc, kept for JSON readers
                    "description": spec.description,
                }
            )
        recipes = []
        for name in list_recipes():
            cfg = resolve_run_config(name)  # the model as `mnistlab train NAME` builds it
            total, trainable = keras_param_count(create_model(cfg.model, cfg.model_config))
            r = get_recipe(name)
            recipes.append(
                {"name": name, "model": r.model, "params": total, "trainable": trainable, "seed_doc": r.seed_doc,
                 "description": r.description}
            )  # fmt: skip
        if json_out:
            print_json(rows)
            return
        table = Table("model", "params", "trainable", "seed", "layers", title="models")
        for r in rows:
            table.add_row(r["name"], f"{r['params']:,}", f"{r['trainable']:,}", r["seed_doc"] or "-", r["description"])
        out.print(table)
        table = Table("recipe", "model", "params", "seed", "what `mnistlab train NAME` does", title="recipes")
        for r in recipes:
            table.add_row(r["name"], r["model"], f"{r['params']:,}", r["seed_doc"] or "-", r["description"])
        out.print(table)

    @app.command("summary")
    def summary_cmd(
        model: str = typer.Argument(..., help="Model or recipe name."),
        set_: list[str] = typer.Option(None, "--set", help="Config override KEY=VALUE (repeatable)."),
    ) -> None:
        """A Keras-like layer table: layer, output shape, params."""
        cfg = resolve_run_config(model, parse_assignments(set_))
        net = create_model(cfg.model, cfg.model_config)
        table = Table("layer", "type", "output shape", "params", title=f"{model}: {cfg.model_config}")
        for row in summarize(net):
            table.add_row(
                row.name, row.kind, "(None, " + ", ".join(map(str, row.output_shape)) + ")", f"{row.params:,}"
            )
        out.print(table)
        total, trainable = keras_param_count(net)
        out.print(f"Total params: {total:,}")
        out.print(f"Trainable params: {trainable:,}")
        out.print(f"Non-trainable params: {total - trainable:,}")

    @app.command("train")
    def train_cmd(
        name: str = typer.Argument(DEFAULT_RECIPE, help="Model or recipe name (see `mnistlab models`)."),
        epochs: int = typer.Option(None, help="Epochs (default: the recipe's)."),
        batch_size: int = typer.Option(None, "--batch-size", help="Batch size."),
        optimizer: str = typer.Option(None, help="sgd, momentum, nesterov, rmsprop, adam, adamw, adadelta."),
        lr: float = typer.Option(None, help="Learning rate (default: Keras' for the optimizer)."),
        schedule: str = typer.Option(None, help="constant, step, plateau, onecycle, cosine."),
        val_split: float = typer.Option(None, "--val-split", help="Validation fraction (the LAST part, as Keras)."),
        monitor: str = typer.Option(None, help="Keep and restore the best epoch by val_loss, val_acc, loss or acc."),
        seed: int = typer.Option(0, help="Random seed: the same seed gives the same run on CPU."),
        set_: list[str] = typer.Option(
            None, "--set", help="Any config field KEY=VALUE (repeatable), e.g. hidden=2048."
        ),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        device: str = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
        run_dir: Path = typer.Option(
            None, "--run-dir", help="Where to write the run record (default: runs/NAME-TIME-sSEED)."
        ),
        json_out: bool = typer.Option(False, "--json", help="Print one final JSON line."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
        resume: str = typer.Option(None, help="Continue an interrupted run (its folder) from its last epoch."),
        adversarial: str = typer.Option(None, help="Adversarial training: pgd, fgsm-rs or n-fgsm (train.adversarial)."),
        adv_eps: float = typer.Option(
            None, "--eps", help="L∞ budget of --adversarial, pixels in [0, 1] (train.adv_eps)."
        ),
        record_activations: bool = typer.Option(
            False, "--record-activations", help="Store per-epoch histograms of each layer's outputs (show activations)."
        ),
    ) -> None:
        """Train a model (default: the default recipe), test it, and save the run record."""
        flags = {
            "train.epochs": epochs, "train.batch_size": batch_size, "train.optimizer": optimizer, "train.lr": lr,
            "train.schedule": schedule, "data.val_split": val_split, "train.monitor": monitor,
            "train.adversarial": adversarial, "train.adv_eps": adv_eps,
        }  # fmt: skip
        overrides = {k: v for k, v in flags.items() if v is not None}
        overrides.update(parse_assignments(set_))
        ckpt = None
        if resume:
            if overrides or run_dir is not None:
                raise ConfigError("--resume continues a run with its own recorded config; drop the other options")
            run_dir = runs.resolve_run(resume)
            if runs.is_complete(run_dir):
                raise RunError(f"{run_dir} is already complete (it has a result.json)")
            cfg = runs.load_run_config(run_dir)
            ckpt = checkpoint.load(run_dir / checkpoint.CHECKPOINT)
            name = cfg.model
        else:
            cfg = resolve_run_config(name, overrides, seed)
        mnist = load_data(data_dir)
        if run_dir is None:
            run_dir = runs.new_run_dir(name, cfg.seed)
        progress = ProgressBar(quiet=quiet or json_out)
        # SIGTERM (a scheduler, `kill`) stops training like Ctrl-C: the last epoch's record stays.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        callbacks: list[Any] = [progress]
        if record_activations or (ckpt is not None and (run_dir / "activations.json").is_file()):
            from mnistlab.viz.activations import ActivationRecorder  # late: matplotlib only when asked

            callbacks.append(ActivationRecorder(run_dir))
        try:
            outcome = run_experiment(cfg, run_dir=run_dir, device=device, callbacks=callbacks, mnist=mnist, resume=ckpt)
        except KeyboardInterrupt:
            progress.on_train_end(None)  # type: ignore[arg-type]
            done = len(runs.read_history(run_dir))
            err.print(
                f"interrupted: {run_dir} holds {done} completed epoch(s); "
                f"continue with: mnistlab train --resume {run_dir}"
            )
            raise typer.Exit(130) from None
        r = outcome.result
        if json_out:
            print_json({k: v for k, v in r.items() if k != "confusion"})
            return
        out.print(
            f"{name}: test accuracy {r['test_acc']:.4f}, test loss {r['test_loss']:.4f} "
            f"({r['epochs']} epoch(s), {r['train_seconds']:.1f}s training, {r['params']:,} params, {r['device']})"
        )
        for k, v in r["extra_tests"].items():
            out.print(f"  {k}: accuracy {v['acc']:.4f}, loss {v['loss']:.4f}")
        if r["best_epoch"]:
            out.print(f"  restored the best epoch by {cfg.train.monitor}: {r['best_epoch']}")
        out.print(f"run saved to {run_dir}")

    @app.command("eval")
    def eval_cmd(
        run: str = typer.Argument(..., help="Run folder (or its name under runs/)."),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        device: str = typer.Option(None, help="cpu or cuda."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Rebuild a run's model from its record and re-evaluate it on the test set."""
        dev = pick_device(device)
        loaded = runs.load_run(run, dev)
        splits = prepare_splits(load_data(data_dir), loaded.config.data, loaded.config.seed)
        test = evaluate(loaded.model, splits.test)
        recorded = (loaded.result or {}).get("test_acc")
        payload = {
            "run": str(loaded.path),
            "test_acc": test["acc"],
            "test_loss": test["loss"],
            "recorded_test_acc": recorded,
        }
        if json_out:
            print_json(payload)
            return
        out.print(f"{loaded.path}: test accuracy {test['acc']:.4f}, test loss {test['loss']:.4f}")
        if recorded is None:
            err.print("note: the run is incomplete (no result.json); evaluated its last completed epoch")
        elif abs(recorded - test["acc"]) > 1e-9:
            raise RunError(f"re-evaluation gives {test['acc']:.4f} but the record says {recorded:.4f}")
        else:
            out.print("matches the recorded result")
