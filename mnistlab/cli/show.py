"""`mnistlab show ...`: figures of the data, the networks and the runs, one PNG per command.

The drawing lives in mnistlab.viz; this module only resolves arguments (a run, a layer, a digit
given as INDEX or FILE), calls it, saves the figure and says where.
"""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from mnistlab import data as mdata
from mnistlab import runs
from mnistlab.cli._common import DataDirOption, out
from mnistlab.cli.core import load_data as load_data_with_bar
from mnistlab.dataset import Splits, prepare_splits
from mnistlab.errors import ConfigError
from mnistlab.train import pick_device

ImageHelp = "A test-set digit by INDEX (of the run's test set), or an image FILE of one digit."


def _save(fig, path: Path | None, default: str) -> None:  # noqa: ANN001 - a matplotlib Figure
    from mnistlab.viz import save_figure

    written = save_figure(fig, path or Path(default))
    out.print(f"wrote {written}")


def load_data(data_dir: str | None) -> mdata.MNIST:
    """MNIST, with a download bar only when it must be downloaded (the bar's console would
    otherwise add an empty line to a one-line error)."""
    if mdata.locate(data_dir) is not None:
        return mdata.load_mnist(data_dir)
    return load_data_with_bar(data_dir)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)


def _load(run: str, device: str | None) -> runs.LoadedRun:
    return runs.load_run(run, pick_device(device))


def _splits(loaded: runs.LoadedRun, data_dir: str | None) -> Splits:
    return prepare_splits(load_data(data_dir), loaded.config.data, loaded.config.seed)


def _run_image(loaded: runs.LoadedRun, ref: str, data_dir: str | None) -> tuple[torch.Tensor, str]:
    """(1, C, H, W) model input for INDEX|FILE, and a caption."""
    from mnistlab.predictor import Predictor
    from mnistlab.viz.inputs import is_index, load_digit_image, pick_index

    if is_index(ref):
        test = _splits(loaded, data_dir).test
        i = pick_index(test.y, ref, "the run's test set")
        return test.x[i : i + 1], f"test digit #{i} (label {int(test.y[i])})"
    predictor = Predictor(loaded.model, loaded.config, loaded.path, loaded.result)
    return predictor.prepare(load_digit_image(ref).unsqueeze(0)).to(predictor.device), Path(ref).name


def register(app: typer.Typer) -> None:
    show = typer.Typer(help="Figures: digits, data, feature maps, filters, activations, curves, errors (PNG).")
    app.add_typer(show, name="show")
    OutOption = typer.Option(None, "--out", "-o", help="PNG to write (default: a descriptive name here).")
    DataOpt = typer.Option(None, "--data-dir", **DataDirOption)
    DeviceOpt = typer.Option(None, help="cpu or cuda (default: cuda when present).")

    @show.command("digit")
    def digit_cmd(
        image: str = typer.Argument(..., help="A training digit by INDEX (--test: test digit), or an image FILE."),
        test: bool = typer.Option(False, "--test", help="INDEX counts in the test set."),
        out_path: Path = OutOption,
        data_dir: str = DataOpt,
    ) -> None:
        """One digit with every pixel value written on it (seed 1.1)."""
        from mnistlab.viz.data_figs import digit_figure
        from mnistlab.viz.inputs import is_index, load_digit_image, pick_index

        if is_index(image):
            mnist = load_data(data_dir)
            images, labels = (
                (mnist.test_images, mnist.test_labels) if test else (mnist.train_images, mnist.train_labels)
            )
            part = "test" if test else "training"
            i = pick_index(images, image, f"the MNIST {part} set")
            fig = digit_figure(images[i], f"MNIST {part} digit #{i}, label {int(labels[i])} (pixel values 0..255)")
            default = f"digit-{part}-{i}.png"
        else:
            img = load_digit_image(image)[0]
            fig = digit_figure(img, f"{Path(image).name} as a 28x28 MNIST-style digit (pixel values 0..255)")
            default = f"digit-{_slug(Path(image).stem)}.png"
        _save(fig, out_path, default)

    @show.command("samples")
    def samples_cmd(
        per_class: int = typer.Option(10, "--n", help="Digits per class (columns)."),
        out_path: Path = OutOption,
        data_dir: str = DataOpt,
    ) -> None:
        """A grid of training digits, one row per class (seed 2.1)."""
        from mnistlab.viz.data_figs import samples_figure

        if not 1 <= per_class <= 50:
            raise ConfigError(f"--n must be 1..50, not {per_class}")
        mnist = load_data(data_dir)
        _save(samples_figure(mnist.train_images, mnist.train_labels, per_class), out_path, "samples.png")

    @show.command("classes")
    def classes_cmd(out_path: Path = OutOption, data_dir: str = DataOpt) -> None:
        """Class distribution of the training and test sets (seed 2.1)."""
        from mnistlab.viz.data_figs import classes_figure

        mnist = load_data(data_dir)
        _save(classes_figure(mnist.train_labels, mnist.test_labels), out_path, "classes.png")

    @show.command("feature-maps")
    def feature_maps_cmd(
        run: str = typer.Argument(..., help="Run folder (or its name under runs/)."),
        layer: str = typer.Option(..., "--layer", help="Layer name (see `mnistlab summary MODEL`), e.g. conv1, act1."),
        image: str = typer.Option("0", "--image", help=ImageHelp),
        n: int = typer.Option(9, "--n", help="How many maps to show."),
        out_path: Path = OutOption,
        data_dir: str = DataOpt,
        device: str = DeviceOpt,
    ) -> None:
        """The output maps of a layer (conv or activation) for one digit (seed 0.3)."""
        from mnistlab.viz.inputs import display_image
        from mnistlab.viz.layers import feature_maps
        from mnistlab.viz.network import feature_maps_figure

        if n < 1:
            raise ConfigError(f"--n must be at least 1, not {n}")
        loaded = _load(run, device)
        from mnistlab.viz.layers import get_layer

        get_layer(loaded.model, layer)  # an unknown layer fails before any data is loaded
        x, caption = _run_image(loaded, image, data_dir)
        maps = feature_maps(loaded.model, x, layer)
        fig = feature_maps_figure(display_image(x[0]), maps, layer, n, f"{loaded.path.name}: {layer} on {caption}")
        _save(fig, out_path, f"feature-maps-{_slug(loaded.path.name)}-{layer}.png")

    @show.command("filters")
    def filters_cmd(
        run: str = typer.Argument(..., help="Run folder (or its name under runs/)."),
        layer: str = typer.Option(..., "--layer", help="A conv layer (or a dense layer reading the image)."),
        n: int = typer.Option(32, "--n", help="How many filters to show."),
        out_path: Path = OutOption,
        device: str = DeviceOpt,
    ) -> None:
        """The learned filters (kernels) of a layer."""
        from mnistlab.viz.network import filters_figure

        if n < 1:
            raise ConfigError(f"--n must be at least 1, not {n}")
        loaded = _load(run, device)
        fig = filters_figure(loaded.model, layer, n)
        _save(fig, out_path, f"filters-{_slug(loaded.path.name)}-{layer}.png")

    @show.command("activations")
    def activations_cmd(
        run: str = typer.Argument(..., help="Run folder (or its name under runs/)."),
        layers: str = typer.Option(
            None, "--layers", help="Comma-separated layers (default: input + the first 5 activation layers)."
        ),
        out_path: Path = OutOption,
        data_dir: str = DataOpt,
        device: str = DeviceOpt,
    ) -> None:
        """Histograms of each layer's outputs: epochs x layers when the run was trained with
        --record-activations (seed 3.2), else of the trained model on the test set."""
        from mnistlab.viz import activations as act

        loaded = _load(run, device)
        recorded = (loaded.path / act.ACTIVATIONS_FILE).is_file()
        if recorded:
            record = act.read_activations(loaded.path)
            available = record["layers"]
        else:
            available = act.default_layers(loaded.model)
        if layers:
            chosen = [s.strip() for s in layers.split(",") if s.strip()]
            unknown = [s for s in chosen if s not in available]
            if unknown:
                raise ConfigError(f"unknown or unrecorded layer {unknown[0]!r}; valid layers: {', '.join(available)}")
        else:
            chosen = available[: act.DEFAULT_FIGURE_LAYERS]
        if recorded:
            rows = [(f"epoch {e['epoch']}", e["histograms"]) for e in record["epochs"]]
            probe = record["probe"]
            title = f"{loaded.path.name}: layer outputs after each epoch ({probe['n']} {probe['split']} images)"
        else:
            test = _splits(loaded, data_dir).test
            probe_x = test.x[: act.PROBE_SIZE]
            rows = [("trained", act.layer_histograms(loaded.model, probe_x, chosen))]
            title = f"{loaded.path.name}: layer outputs of the trained model ({len(probe_x)} test images)"
        _save(act.activation_grid_figure(rows, chosen, title), out_path, f"activations-{_slug(loaded.path.name)}.png")

    @show.command("curves")
    def curves_cmd(
        run: list[str] = typer.Argument(..., help="One or more run folders (or names under runs/)."),
        out_path: Path = OutOption,
    ) -> None:
        """Training and validation loss and accuracy per epoch, several runs overlaid (seed 2.6)."""
        from mnistlab.errors import RunError
        from mnistlab.viz.evaluation import curves_figure

        series = []
        for ref in run:
            path = runs.resolve_run(ref)
            history = runs.read_history(path)
            if not history:
                raise RunError(f"{path} has no completed epoch (metrics.jsonl is empty or missing)")
            series.append((path.name, history))
        name = _slug(series[0][0]) if len(series) == 1 else f"{len(series)}-runs"
        _save(curves_figure(series), out_path, f"curves-{name}.png")

    @show.command("confusion")
    def confusion_cmd(
        run: str = typer.Argument(..., help="A completed run folder (or its name under runs/)."),
        top: int = typer.Option(5, "--top", help="How many most-confused pairs to list."),
        out_path: Path = OutOption,
    ) -> None:
        """Confusion-matrix heat map with counts; lists the most-confused pairs (seed 2.6)."""
        from mnistlab.errors import RunError
        from mnistlab.viz.evaluation import confusion_figure, most_confused

        path = runs.resolve_run(run)
        if not runs.is_complete(path):
            raise RunError(f"{path} is incomplete (no result.json): finish it with `mnistlab train --resume {path}`")
        cm = torch.tensor(runs.read_json(path / runs.RESULT)["confusion"])
        _save(confusion_figure(cm, f"{path.name}: confusion matrix on the test set", top), out_path,
              f"confusion-{_slug(path.name)}.png")  # fmt: skip
        for p in most_confused(cm, top):
            out.print(f"  true {p.true} predicted as {p.predicted}: {p.count}")

    @show.command("errors")
    def errors_cmd(
        run: str = typer.Argument(..., help="Run folder (or its name under runs/)."),
        n: int = typer.Option(36, "--n", help="How many mistakes to show (most confident first)."),
        out_path: Path = OutOption,
        data_dir: str = DataOpt,
        device: str = DeviceOpt,
    ) -> None:
        """Gallery of misclassified test digits: true label, prediction, confidence."""
        from mnistlab.viz.evaluation import errors_figure, misclassified

        if n < 1:
            raise ConfigError(f"--n must be at least 1, not {n}")
        loaded = _load(run, device)
        test = _splits(loaded, data_dir).test
        mistakes = misclassified(loaded.model, test)
        title = f"{loaded.path.name}: {len(mistakes)} of {len(test)} test digits misclassified (most confident first)"
        _save(errors_figure(test, mistakes, n, title), out_path, f"errors-{_slug(loaded.path.name)}.png")

    @show.command("saliency")
    def saliency_cmd(
        run: str = typer.Argument(..., help="Run folder (or its name under runs/)."),
        image: str = typer.Option("0", "--image", help=ImageHelp),
        target: int = typer.Option(None, "--target", help="Class to explain (default: the predicted one)."),
        out_path: Path = OutOption,
        data_dir: str = DataOpt,
        device: str = DeviceOpt,
    ) -> None:
        """Which pixels the decision depends on: gradient and gradient x input."""
        from mnistlab.viz.attribution import saliency, saliency_figure
        from mnistlab.viz.inputs import display_image

        loaded = _load(run, device)
        x, caption = _run_image(loaded, image, data_dir)
        s = saliency(loaded.model, x, target)
        fig = saliency_figure(display_image(x[0]), s, f"{loaded.path.name}: saliency of class {s.target} on {caption}")
        _save(fig, out_path, f"saliency-{_slug(loaded.path.name)}-{_slug(image)}.png")

    @show.command("embedding")
    def embedding_cmd(
        run: str = typer.Argument(..., help="Run folder (or its name under runs/)."),
        n: int = typer.Option(2000, "--n", help="Test digits to project."),
        out_path: Path = OutOption,
        data_dir: str = DataOpt,
        device: str = DeviceOpt,
    ) -> None:
        """The penultimate layer of the test digits, projected to 2-D by PCA, coloured by class."""
        from mnistlab.viz.attribution import embedding_figure, pca_2d
        from mnistlab.viz.layers import layer_names, penultimate

        if n < 3:
            raise ConfigError(f"--n must be at least 3, not {n}")
        loaded = _load(run, device)
        test = _splits(loaded, data_dir).test
        x, y = test.x[:n], test.y[:n]
        feats = penultimate(loaded.model, x)
        points, explained = pca_2d(feats)
        last = layer_names(loaded.model)[-1]
        title = f"{loaded.path.name}: input of layer {last!r} ({feats.shape[1]} features), {len(y)} test digits, PCA"
        _save(embedding_figure(points, y, explained, title), out_path, f"embedding-{_slug(loaded.path.name)}.png")
