"""`mnistlab show ...`: figures of the data, the networks and the runs, one PNG per command.

The drawing lives in mnistlab.viz (imported inside the commands: matplotlib costs half a second
that the other commands need not pay); this module only resolves arguments (a run, a layer, a
digit given as INDEX or FILE), calls it, saves the figure and says where. A run is loaded as a
Predictor, whose `prepare` turns a canonical digit into what the run's model takes. A figure of
a run goes to RUN/figures/NAME.png, one of no run (digit, samples, classes, several runs'
curves) to figures/ under the runs root, unless --out says where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from mnistlab import data as mdata
from mnistlab import runs
from mnistlab.cli._common import DataDir, DeviceOrCuda, figure_path, out
from mnistlab.cli.core import load_data as load_data_with_bar
from mnistlab.dataset import Split, canonical_test
from mnistlab.errors import ConfigError, RunError
from mnistlab.predictor import Predictor
from mnistlab.train import pick_device

ImageHelp = "A test-set digit by INDEX (of the run's test set), or an image FILE of one digit."
OutPath = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="PNG to write (default: RUN/figures/NAME.png; figures of no run: figures/ under runs/)."
    ),
]
RunArg = Annotated[str, typer.Argument(help="Run folder (or its name under runs/).")]
ImageOpt = Annotated[str, typer.Option("--image", help=ImageHelp)]


def _save(fig, path: Path | None, name: str, run_dir: Path | None = None) -> None:  # noqa: ANN001 - a Figure
    """Write `fig` to `path`, by default to RUN/figures/NAME (or figures/NAME under the runs root)."""
    from mnistlab.viz import save_figure

    written = save_figure(fig, figure_path(path, name, run_dir))
    out.print(f"wrote {written}")


def load_data(data_dir: str | None) -> mdata.MNIST:
    """MNIST, with a download bar only when it must be downloaded (the bar's console would
    otherwise add an empty line to a one-line error)."""
    if mdata.locate(data_dir) is not None:
        return mdata.load_mnist(data_dir)
    return load_data_with_bar(data_dir)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)


def _load(run: str, device: str | None) -> Predictor:
    return Predictor.load(run, pick_device(device))


def _label(p: Predictor) -> str:
    """The run's name for a title; a study run (VARIANT/sSEED) keeps its variant: "lecun-selu-bn/s0"."""
    name = p.name
    if name[:1] == "s" and name[1:].isdigit():
        return f"{p.path.parent.name}/{name}"
    return name


def _test(p: Predictor, data_dir: str | None, n: int | None = None) -> Split:
    """The run's (first n) test digits as its model takes them (its channels, scaling, sub-sampling)."""
    test = canonical_test(load_data(data_dir), p.config.data)
    return Split(p.prepare(test.x[:n]), test.y[:n])


def _run_image(p: Predictor, ref: str, data_dir: str | None) -> tuple[torch.Tensor, str]:
    """(1, C, H, W) model input for INDEX|FILE, and a caption."""
    from mnistlab.viz.inputs import is_index, load_digit_image, pick_index

    if is_index(ref):
        test = canonical_test(load_data(data_dir), p.config.data)
        i = pick_index(test.y, ref, "the run's test set")
        return p.prepare(test.x[i : i + 1]), f"test digit #{i} (label {int(test.y[i])})"
    return p.prepare(load_digit_image(ref).unsqueeze(0)), Path(ref).name


def _image_slug(ref: str) -> str:
    return _slug(ref.strip() if ref.strip().isdigit() else Path(ref).stem)


def digit(
    image: Annotated[str, typer.Argument(help="A training digit by INDEX (--test: test digit), or an image FILE.")],
    test: Annotated[bool, typer.Option("--test", help="INDEX counts in the test set.")] = False,
    out_path: OutPath = None,
    data_dir: DataDir = None,
) -> None:
    """One digit with every pixel value written on it (seed 1.1)."""
    from mnistlab.viz.data_figs import digit_figure
    from mnistlab.viz.inputs import is_index, load_digit_image, pick_index

    if is_index(image):
        mnist = load_data(data_dir)
        images, labels = (mnist.test_images, mnist.test_labels) if test else (mnist.train_images, mnist.train_labels)
        part = "test" if test else "training"
        i = pick_index(images, image, f"the MNIST {part} set")
        fig = digit_figure(images[i], f"MNIST {part} digit #{i}, label {int(labels[i])} (pixel values 0..255)")
        name = f"digit-{part}-{i}.png"
    else:
        img = load_digit_image(image)[0]
        fig = digit_figure(img, f"{Path(image).name} as a 28x28 MNIST-style digit (pixel values 0..255)")
        name = f"digit-{_slug(Path(image).stem)}.png"
    _save(fig, out_path, name)


def samples(
    per_class: Annotated[int, typer.Option("--n", help="Digits per class (columns).")] = 10,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A data setting KEY=VALUE (repeatable): draw the images a model trains on under it, e.g. "
            "data.subsample=half, data.invert=add, data.channels=3, data.scale=false; seed=N for random masks.",
        ),
    ] = None,
    out_path: OutPath = None,
    data_dir: DataDir = None,
) -> None:
    """A grid of training digits, one row per class (seed 2.1); with --set data.*, the training
    images as the model sees them under that data variant (seed 0.4's sub-sampling, 4.1's inversion)."""
    from mnistlab.viz.data_figs import samples_figure

    if not 1 <= per_class <= 50:
        raise ConfigError(f"--n must be 1..50, not {per_class}")
    if not set_:
        mnist = load_data(data_dir)
        _save(samples_figure(mnist.train_images, mnist.train_labels, per_class), out_path, "samples.png")
        return
    from mnistlab.viz.data_figs import data_variant_samples

    data_cfg, seed, text = _data_variant(set_)
    mnist = load_data(data_dir)
    fig = data_variant_samples(mnist, data_cfg, seed, per_class, text)
    _save(fig, out_path, f"samples-{_slug('-'.join(s.replace('data.', '') for s in set_))}.png")


def _data_variant(items: list[str]):  # noqa: ANN202 - (DataConfig, seed, "k=v, ...")
    """--set items -> the DataConfig they make (data keys only) and the seed."""
    from mnistlab.config import apply_overrides, parse_assignments
    from mnistlab.recipes import resolve_run_config

    sets = parse_assignments(items)
    base = resolve_run_config("dnn")
    cfg = apply_overrides(base, sets)
    if (cfg.model_config, cfg.train, cfg.augment) != (base.model_config, base.train, base.augment):
        raise ConfigError(f"show samples draws the data: only data.* keys (and seed) go with --set, not {items}")
    return cfg.data, cfg.seed, ", ".join(f"{k}={v}" for k, v in sets.items())


def classes(out_path: OutPath = None, data_dir: DataDir = None) -> None:
    """Class distribution of the training and test sets (seed 2.1)."""
    from mnistlab.viz.data_figs import classes_figure

    mnist = load_data(data_dir)
    _save(classes_figure(mnist.train_labels, mnist.test_labels), out_path, "classes.png")


def feature_maps(
    run: RunArg,
    layer: Annotated[
        str | None,
        typer.Option(
            "--layer",
            help="Layer name (see `mnistlab summary MODEL`), e.g. conv1, act1. Default: the activation after the "
            "first convolution (act1), what Keras' Conv2D(activation='relu') outputs (seed 0.3's layer 1).",
        ),
    ] = None,
    image: ImageOpt = "0",
    n: Annotated[int, typer.Option("--n", help="How many maps to show.")] = 9,
    out_path: OutPath = None,
    data_dir: DataDir = None,
    device: DeviceOrCuda = None,
) -> None:
    """The output maps of a layer (conv or activation) for one digit (seed 0.3); by default those
    after the first convolution's ReLU, as the seed's Keras code shows them."""
    from mnistlab.viz import layers
    from mnistlab.viz.inputs import display_image
    from mnistlab.viz.network import feature_maps_figure

    if n < 1:
        raise ConfigError(f"--n must be at least 1, not {n}")
    p = _load(run, device)
    if layer is None:
        layer = layers.default_map_layer(p.model)
    layers.get_layer(p.model, layer)  # an unknown layer fails before any data is loaded
    x, caption = _run_image(p, image, data_dir)
    maps = layers.feature_maps(p.model, x, layer)
    what = layers.describe_layer(p.model, layer)
    fig = feature_maps_figure(display_image(x[0]), maps, what, n, f"{_label(p)}: {what} on {caption}")
    _save(fig, out_path, f"feature-maps-{layer}-{_image_slug(image)}.png", p.path)


def filters(
    run: RunArg,
    layer: Annotated[str, typer.Option("--layer", help="A conv layer (or a dense layer reading the image).")],
    n: Annotated[int, typer.Option("--n", help="How many filters to show.")] = 32,
    out_path: OutPath = None,
    device: DeviceOrCuda = None,
) -> None:
    """The learned filters (kernels) of a layer."""
    from mnistlab.viz.network import filters_figure

    if n < 1:
        raise ConfigError(f"--n must be at least 1, not {n}")
    p = _load(run, device)
    _save(filters_figure(p.model, layer, n), out_path, f"filters-{layer}.png", p.path)


def activations(
    run: RunArg,
    layers: Annotated[
        str | None,
        typer.Option("--layers", help="Comma-separated layers (default: input + the first 5 activation layers)."),
    ] = None,
    out_path: OutPath = None,
    data_dir: DataDir = None,
    device: DeviceOrCuda = None,
) -> None:
    """Histograms of each layer's outputs: epochs x layers when the run was trained with
    --record-activations (seed 3.2), else of the trained model on the test set."""
    from mnistlab.viz import activations as act

    p = _load(run, device)
    recorded = (p.path / act.ACTIVATIONS_FILE).is_file()
    record = act.read_activations(p.path) if recorded else None
    available = record["layers"] if record else act.default_layers(p.model)
    if layers:
        chosen = [s.strip() for s in layers.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in available]
        if unknown:
            raise ConfigError(f"unknown or unrecorded layer {unknown[0]!r}; valid layers: {', '.join(available)}")
    else:
        chosen = available[: act.DEFAULT_FIGURE_LAYERS]
    if record:
        rows = [(f"epoch {e['epoch']}", e["histograms"]) for e in record["epochs"]]
        probe = record["probe"]
        images = f"{probe['n']} {probe['split']} images" if probe.get("n") else f"{probe['split']} images"
        title = f"{_label(p)}: layer outputs after each epoch ({images})"
    else:
        probe_x = _test(p, data_dir, act.PROBE_SIZE).x
        rows = [("trained", act.layer_histograms(p.model, probe_x, chosen))]
        title = f"{_label(p)}: layer outputs of the trained model ({len(probe_x)} test images)"
    _save(act.activation_grid_figure(rows, chosen, title), out_path, "activations.png", p.path)


def curves(
    run: Annotated[list[str], typer.Argument(help="One or more run folders (or names under runs/).")],
    out_path: OutPath = None,
) -> None:
    """Training and validation loss and accuracy per epoch, several runs overlaid (seed 2.6)."""
    from mnistlab.viz.evaluation import curves_figure

    series, paths = [], []
    for ref in run:
        path = runs.resolve_run(ref)
        history = runs.read_history(path)
        if not history:
            raise RunError(f"{path} has no completed epoch (metrics.jsonl is empty or missing)")
        series.append((path.name, history))
        paths.append(path)
    if len(paths) == 1:
        _save(curves_figure(series), out_path, "curves.png", paths[0])
    else:  # several runs: no one run folder is theirs
        _save(curves_figure(series), out_path, f"curves-{_slug(paths[0].name)}-and-{len(paths) - 1}-more.png")


def confusion(
    run: Annotated[str, typer.Argument(help="A completed run folder (or its name under runs/).")],
    top: Annotated[int, typer.Option("--top", help="How many most-confused pairs to list.")] = 5,
    out_path: OutPath = None,
) -> None:
    """Confusion-matrix heat map with counts; lists the most-confused pairs (seed 2.6)."""
    from mnistlab.viz.evaluation import confusion_figure, most_confused

    path = runs.resolve_run(run)
    if not runs.is_complete(path):
        raise RunError(f"{path} is incomplete (no result.json): finish it with `mnistlab train --resume {path}`")
    cm = torch.tensor(runs.read_json(path / runs.RESULT)["confusion"])
    fig = confusion_figure(cm, f"{path.name}: confusion matrix on the test set", top)
    _save(fig, out_path, "confusion.png", path)
    for pair in most_confused(cm, top):
        out.print(f"  true {pair.true} predicted as {pair.predicted}: {pair.count}")


def errors(
    run: RunArg,
    n: Annotated[int, typer.Option("--n", help="How many mistakes to show (most confident first).")] = 36,
    out_path: OutPath = None,
    data_dir: DataDir = None,
    device: DeviceOrCuda = None,
) -> None:
    """Gallery of misclassified test digits: true label, prediction, confidence."""
    from mnistlab.viz.evaluation import errors_figure, misclassified

    if n < 1:
        raise ConfigError(f"--n must be at least 1, not {n}")
    p = _load(run, device)
    test = _test(p, data_dir)
    mistakes = misclassified(p.model, test)
    title = f"{p.name}: {len(mistakes)} of {len(test)} test digits misclassified (most confident first)"
    _save(errors_figure(test, mistakes, n, title), out_path, "errors.png", p.path)


def saliency(
    run: RunArg,
    image: ImageOpt = "0",
    target: Annotated[
        int | None, typer.Option("--target", help="Class to explain (default: the predicted one).")
    ] = None,
    out_path: OutPath = None,
    data_dir: DataDir = None,
    device: DeviceOrCuda = None,
) -> None:
    """Which pixels the decision depends on: gradient and gradient x input."""
    from mnistlab.viz import attribution
    from mnistlab.viz.inputs import display_image

    p = _load(run, device)
    x, caption = _run_image(p, image, data_dir)
    s = attribution.saliency(p.model, x, target)
    title = f"{p.name}: saliency of class {s.target} on {caption}"
    _save(attribution.saliency_figure(display_image(x[0]), s, title), out_path, f"saliency-{_image_slug(image)}.png",
          p.path)  # fmt: skip


def embedding(
    run: RunArg,
    n: Annotated[int, typer.Option("--n", help="Test digits to project.")] = 2000,
    out_path: OutPath = None,
    data_dir: DataDir = None,
    device: DeviceOrCuda = None,
) -> None:
    """The penultimate layer of the test digits, projected to 2-D by PCA, coloured by class."""
    from mnistlab.viz.attribution import embedding_figure, pca_2d
    from mnistlab.viz.layers import layer_names, penultimate

    if n < 3:
        raise ConfigError(f"--n must be at least 3, not {n}")
    p = _load(run, device)
    test = _test(p, data_dir, n)
    feats = penultimate(p.model, test.x)
    points, explained = pca_2d(feats)
    last = layer_names(p.model)[-1]
    title = f"{p.name}: input of layer {last!r} ({feats.shape[1]} features), {len(test)} test digits, PCA"
    _save(embedding_figure(points, test.y, explained, title), out_path, "embedding.png", p.path)


def register(app: typer.Typer) -> None:
    show = typer.Typer(help="Figures: digits, data, feature maps, filters, activations, curves, errors (PNG).")
    app.add_typer(show, name="show")
    for name, command in [
        ("digit", digit), ("samples", samples), ("classes", classes), ("feature-maps", feature_maps),
        ("filters", filters), ("activations", activations), ("curves", curves), ("confusion", confusion),
        ("errors", errors), ("saliency", saliency), ("embedding", embedding),
    ]:  # fmt: skip
        show.command(name)(command)
