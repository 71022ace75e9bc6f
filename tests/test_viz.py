"""`mnistlab show ...` and mnistlab.viz on a small real run: every command writes its PNG, the
figures hold the expected panels, the numbers behind them agree with the model, bad input is
one line and a non-zero exit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mnistlab.cli import main
from mnistlab.errors import ConfigError
from mnistlab.runs import load_run
from mnistlab.viz.activations import ACTIVATIONS_FILE, activation_grid_figure, read_activations
from mnistlab.viz.layers import feature_maps, layer_names, layer_outputs, penultimate

EPOCHS = 2
TEST_N = 200
# A narrow cnn on a slice: seconds to train, still the seed-0.2 layer names.
SMALL_CNN = ["filters1=12", "filters2=8", "dense=16", "data.train_limit=600", f"data.test_limit={TEST_N}"]


def cli(*args: str) -> int:
    """Run `mnistlab ARGS` in this process (as `python -m mnistlab` does); the exit status."""
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def image_panels(fig) -> list:  # noqa: ANN001
    return [ax for ax in fig.axes if ax.images]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mnist):
    run = tmp_path_factory.mktemp("viz") / "cnn-small-run"
    sets = [x for s in [*SMALL_CNN, "data.val_split=0.2"] for x in ("--set", s)]
    code = cli("train", "cnn", *sets, "--epochs", EPOCHS, "--run-dir", run, "--record-activations", "-q")
    assert code == 0
    return run


@pytest.fixture(scope="module")
def loaded(run_dir):
    return load_run(run_dir)


@pytest.fixture(scope="module")
def test_split(loaded, mnist):
    from mnistlab.dataset import prepare_splits

    return prepare_splits(mnist, loaded.config.data, loaded.config.seed).test


def test_layer_names_and_unknown_layer(loaded):
    names = layer_names(loaded.model)
    assert names[:4] == ["conv1", "act1", "conv2", "act2"] and names[-1] == "out"
    x = torch.zeros(1, 1, 28, 28)
    with pytest.raises(ConfigError, match="valid layers: conv1, act1, conv2"):
        feature_maps(loaded.model, x, "conv9")


def test_feature_maps_are_the_layer_outputs(loaded, test_split):
    from mnistlab.viz.network import feature_maps_figure

    x = test_split.x[:1]
    conv1 = loaded.model.conv1
    maps = feature_maps(loaded.model, x, "conv1")
    assert maps.shape == (12, 26, 26)
    torch.testing.assert_close(maps, F.conv2d(x, conv1.weight, conv1.bias)[0].detach())
    torch.testing.assert_close(feature_maps(loaded.model, x, "act1"), maps.relu())  # activation outputs too
    fig = feature_maps_figure(x[0, 0], maps, "conv1", n=9)
    assert len(image_panels(fig)) == 1 + 9  # the input and 9 maps
    with pytest.raises(ConfigError, match="layers with maps: conv1, act1, conv2, act2, pool"):
        feature_maps(loaded.model, x, "fc1")


def test_show_feature_maps_from_index_and_file(run_dir, tmp_path, capsys):
    out = tmp_path / "maps.png"
    assert cli("show", "feature-maps", run_dir, "--layer", "act1", "--image", "3", "--out", out) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert Image.open(out).format == "PNG"
    # A dark "1" on white paper, as a phone photo or a scan gives it.
    page = np.full((120, 90), 250, np.uint8)
    page[20:100, 40:52] = 20
    Image.fromarray(page).save(tmp_path / "one.png")
    out2 = tmp_path / "maps-file.png"
    assert cli("show", "feature-maps", run_dir, "--layer", "conv2", "--image", tmp_path / "one.png", "-o", out2) == 0
    assert out2.stat().st_size > 0


def test_recorded_activations_grid_is_epochs_by_layers(run_dir, loaded, tmp_path):
    record = read_activations(run_dir)
    assert [e["epoch"] for e in record["epochs"]] == list(range(1, EPOCHS + 1))
    assert record["layers"] == ["input", "act1", "act2", "act3"]
    for epoch in record["epochs"]:
        for h in epoch["histograms"].values():
            assert sum(h["counts"]) == h["n"] and len(h["edges"]) == len(h["counts"]) + 1
    # The input histogram counts every pixel of the probe batch (the validation images).
    assert record["epochs"][0]["histograms"]["input"]["n"] == record["probe"]["n"] * 28 * 28
    rows = [(f"epoch {e['epoch']}", e["histograms"]) for e in record["epochs"]]
    fig = activation_grid_figure(rows, record["layers"])
    assert len(fig.axes) == EPOCHS * len(record["layers"])
    out = tmp_path / "act.png"
    assert cli("show", "activations", run_dir, "--out", out) == 0 and out.is_file()


def test_activations_without_a_record(tmp_path, mnist, loaded):
    """A run trained without --record-activations: one row, of the trained model."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(loaded.path, bare)
    (bare / ACTIVATIONS_FILE).unlink()
    out = tmp_path / "act-now.png"
    assert cli("show", "activations", bare, "--layers", "input,act1,act3", "--out", out) == 0 and out.is_file()


def test_confusion_sums_to_the_test_set(run_dir, loaded, test_split, tmp_path, capsys):
    from mnistlab.train import evaluate
    from mnistlab.viz.evaluation import confusion_figure, most_confused

    cm = torch.tensor(json.loads((run_dir / "result.json").read_text())["confusion"])
    assert cm.shape == (10, 10) and int(cm.sum()) == TEST_N
    assert cm.tolist() == evaluate(loaded.model, test_split)["confusion"]
    pairs = most_confused(cm, 3)
    off = cm.clone()
    off.fill_diagonal_(0)
    assert [p.count for p in pairs] == sorted(off.flatten().tolist(), reverse=True)[: len(pairs)]
    assert all(cm[p.true, p.predicted] == p.count and p.true != p.predicted for p in pairs)
    assert len(image_panels(confusion_figure(cm))) == 1
    out = tmp_path / "cm.png"
    assert cli("show", "confusion", run_dir, "--out", out) == 0 and out.is_file()
    assert f"true {pairs[0].true} predicted as {pairs[0].predicted}: {pairs[0].count}" in capsys.readouterr().out


def test_errors_gallery(loaded, test_split, run_dir, tmp_path):
    from mnistlab.train import evaluate
    from mnistlab.viz.evaluation import errors_figure, misclassified

    mistakes = misclassified(loaded.model, test_split)
    acc = evaluate(loaded.model, test_split)["acc"]
    assert len(mistakes) == round(TEST_N * (1 - acc))
    assert all(m.true == int(test_split.y[m.index]) != m.predicted for m in mistakes)
    assert [m.confidence for m in mistakes] == sorted((m.confidence for m in mistakes), reverse=True)
    assert len(image_panels(errors_figure(test_split, mistakes, n=12))) == min(12, len(mistakes))
    out = tmp_path / "errors.png"
    assert cli("show", "errors", run_dir, "--n", "12", "--out", out) == 0 and out.is_file()


def test_curves_overlay_runs(run_dir, tmp_path):
    from mnistlab.runs import read_history
    from mnistlab.viz.evaluation import curves_figure

    history = read_history(run_dir)
    fig = curves_figure([("a", history), ("b", history)])
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.lines) == 4  # 2 runs x (train, validation)
    assert list(acc_ax.lines[1].get_ydata()) == [m["val_acc"] for m in history]
    out = tmp_path / "curves.png"
    assert cli("show", "curves", run_dir, run_dir, "--out", out) == 0 and out.is_file()


def test_saliency_and_embedding(loaded, test_split, run_dir, tmp_path):
    from mnistlab.viz.attribution import pca_2d, saliency

    s = saliency(loaded.model, test_split.x[:1])
    assert s.gradient.shape == (28, 28) and (s.gradient >= 0).all() and s.gradient.max() > 0
    assert s.target == int(s.probs.argmax()) and abs(float(s.probs.sum()) - 1) < 1e-5
    feats = penultimate(loaded.model, test_split.x)
    assert feats.shape == (TEST_N, 16)
    torch.testing.assert_close(feats, layer_outputs(loaded.model, test_split.x, ["drop2"])["drop2"])
    points, explained = pca_2d(feats)
    assert points.shape == (TEST_N, 2) and explained[0] >= explained[1] > 0
    for cmd in (
        ["saliency", run_dir, "--image", "5"],
        ["embedding", run_dir],
        ["filters", run_dir, "--layer", "conv1"],
    ):
        out = tmp_path / f"{cmd[0]}.png"
        assert cli("show", *cmd, "--out", out) == 0 and out.is_file()


def test_data_figures(mnist, tmp_path):
    from mnistlab.viz.data_figs import classes_figure, digit_figure, samples_figure

    fig = digit_figure(mnist.train_images[0], "digit")
    texts = fig.axes[0].texts
    assert len(texts) == 28 * 28 and {int(t.get_text()) for t in texts} == set(mnist.train_images[0].unique().tolist())
    assert len(image_panels(samples_figure(mnist.train_images, mnist.train_labels, 5))) == 50
    bars = classes_figure(mnist.train_labels, mnist.test_labels).axes[0].patches
    assert sum(b.get_height() for b in bars) == 60000
    for cmd in (["digit", "7", "--test"], ["samples", "--n", "2"], ["classes"]):
        out = tmp_path / f"{'-'.join(cmd)}.png"
        assert cli("show", *cmd, "--out", out) == 0 and out.is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["feature-maps", "{run}", "--layer", "conv9"], "valid layers: conv1, act1"),
        (["feature-maps", "{run}", "--layer", "conv1", "--image", "99999"], "out of range"),
        (["feature-maps", "{run}", "--layer", "conv1", "--image", "{bad_image}"], "not an image"),
        (["saliency", "{run}", "--image", "/no/such.png"], "no such image file"),
        (["confusion", "/no/such/run"], "no run"),
        (["filters", "{run}", "--layer", "act1"], "layers with filters: conv1, conv2"),
        (["activations", "{run}", "--layers", "fc9"], "valid layers: input, act1"),
        (["digit", "60000"], "out of range"),
        (["classes", "--out", "{tmp}/x.jpg"], "PNG"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message, run_dir, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    args = [a.format(run=run_dir, bad_image=bad, tmp=tmp_path) for a in args]
    assert cli("show", *args) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnistlab: error:") and message in lines[0], captured.err


def test_feature_maps_default_to_the_first_conv_after_its_relu(run_dir, loaded, tmp_path):
    """Seed 0.3's "layer 1" is Keras' Conv2D(activation='relu'): the maps after the ReLU (act1)."""
    from mnistlab.viz.layers import default_map_layer, describe_layer

    assert default_map_layer(loaded.model) == "act1"
    assert describe_layer(loaded.model, "act1") == "act1 = ReLU(conv1)"
    assert "before its activation act1" in describe_layer(loaded.model, "conv1")
    out = tmp_path / "fm.png"
    assert cli("show", "feature-maps", run_dir, "--out", out) == 0 and out.stat().st_size > 5000


@pytest.mark.parametrize(
    "sets, side, vmax",
    [(["data.subsample=half"], 14, 1.0), (["data.subsample=random"], 28, 1.0), (["data.scale=false"], 28, 255.0)],
)
def test_samples_of_a_data_variant_are_the_training_images(mnist, sets, side, vmax):
    from mnistlab.cli.show import _data_variant
    from mnistlab.dataset import prepare_splits
    from mnistlab.viz.data_figs import data_variant_samples

    data_cfg, seed, what = _data_variant(sets)
    fig = data_variant_samples(mnist, data_cfg, seed, 3, what)
    panels = image_panels(fig)
    assert len(panels) == 30
    first = panels[0].images[0]
    assert first.get_array().shape == (side, side) and first.get_clim() == (0, vmax)
    train = prepare_splits(mnist, data_cfg, seed).train
    zero = int(torch.nonzero(train.y == 0)[0])  # row 0, column 0: the first training 0, as trained on
    np.testing.assert_array_equal(first.get_array(), train.x[zero, 0].numpy())


def test_samples_of_inverted_data_show_both_halves(mnist, tmp_path):
    from mnistlab.cli.show import _data_variant
    from mnistlab.viz.data_figs import data_variant_samples

    data_cfg, seed, what = _data_variant(["data.invert=add"])
    panels = image_panels(data_variant_samples(mnist, data_cfg, seed, 4, what))
    means = [float(p.images[0].get_array().mean()) for p in panels[:4]]
    assert max(means[:2]) < 0.3 < 0.7 < min(means[2:])  # two black-background digits, two inverted
    out = tmp_path / "s.png"
    assert cli("show", "samples", "--set", "data.channels=3", "--n", "2", "--out", out) == 0 and out.is_file()
    with pytest.raises(ConfigError, match="only data"):
        _data_variant(["train.lr=0.1"])
