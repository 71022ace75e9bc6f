"""The line reader (issue 19 part 2): strips of touching MNIST training digits, the CRNN that reads
them with CTC, its recipe and run record, and the page reader asking it how many digits a wide
component holds and where to cut it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mnistlab import runs
from mnistlab.errors import ConfigError, RunError
from mnistlab.handwriting import lines
from mnistlab.handwriting.lines import LineReader, draw_strip, train_line_reader
from mnistlab.handwriting.reader import read_image
from mnistlab.models import create_model, get_spec, list_models
from mnistlab.models.linereader import BLANK, LineReaderConfig, greedy_decode
from mnistlab.predictor import Predictor
from mnistlab.recipes import list_recipes, resolve_run_config

TINY = {"samples_per_epoch": 96, "val_samples": 40, "train.epochs": 1, "train.batch_size": 32}


def test_strips_are_seeded_sized_and_hold_their_digits(mnist):
    cfg = LineReaderConfig()
    images, labels = mnist.train_images.numpy(), mnist.train_labels.numpy()
    a, ta = draw_strip(images, labels, np.random.default_rng(3), cfg)
    b, tb = draw_strip(images, labels, np.random.default_rng(3), cfg)
    assert np.array_equal(a, b) and ta == tb  # a pure function of the generator
    assert a.shape[0] == cfg.height and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    widths = {}
    for k in (1, 2, 4):
        drawn = [draw_strip(images, labels, np.random.default_rng(s), cfg, n_digits=k) for s in range(20)]
        assert all(len(t) == k and all(0 <= d <= 9 for d in t) for _, t in drawn)
        widths[k] = np.median([s.shape[1] for s, _ in drawn])
    # More digits, a wider strip; touching digits slide over each other, so less than k widths.
    assert widths[1] < widths[2] < widths[4] < 4 * widths[1]


def test_the_model_reads_columns_and_decoding_merges_repeats():
    model = create_model("crnn").eval()
    x = torch.rand(3, 1, 32, 128)
    assert model(x).shape == (3, 32, BLANK + 1)  # T = W / 4 columns, 10 digits + blank
    assert model(torch.rand(1, 1, 32, 200)).shape[1] == 50  # any width
    seq = [BLANK, 4, 4, BLANK, 4, 7, 7, BLANK, BLANK, 0]
    logits = torch.nn.functional.one_hot(torch.tensor([seq]), BLANK + 1).float()
    assert greedy_decode(logits) == [[4, 4, 7, 0]]
    with pytest.raises(ValueError, match="widths"):
        LineReaderConfig(widths="16")


def test_the_line_reader_is_a_recipe_the_digit_tools_leave_out():
    assert get_spec("crnn").task == "line"
    assert "crnn" not in list_models() and "crnn" in list_models(task=None)
    assert "line-reader" not in list_recipes() and list_recipes(task="line") == ["line-reader"]
    assert set(list_recipes()) <= set(list_recipes(task=None))
    cfg = resolve_run_config("line-reader", {"samples_per_epoch": 500}, seed=2)
    assert cfg.model == "crnn" and cfg.model_config.samples_per_epoch == 500 and cfg.seed == 2
    from mnistlab.experiment import run_experiment

    with pytest.raises(ConfigError, match="line reader"):
        run_experiment(cfg, record=False)


def test_train_line_reader_leaves_a_run_record_a_line_reader_loads(mnist, tmp_path):
    cfg = resolve_run_config("line-reader", TINY)
    r = train_line_reader(cfg, tmp_path / "run", mnist, torch.device("cpu"))
    assert runs.is_complete(tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / runs.RESULT).read_text())
    assert recorded["task"] == "line" and recorded["test_n"] == 40 and recorded["epochs"] == 1
    assert recorded["test_acc"] == r["test_acc"] and recorded["train_seconds"] > 0
    assert len(runs.read_history(tmp_path / "run")) == 1
    lr = LineReader.load(tmp_path / "run")
    assert lr.height == 32 and lr.config.recipe == "line-reader"
    strips = [np.zeros((32, 40), np.float32), np.ones((32, 90), np.float32)]
    out = lr.read(strips)
    assert len(out) == 2 and all(len(d) == len(c) == len(p) for d, c, p in out)
    # The same seed, the same run (strips are drawn from a seeded generator).
    again = train_line_reader(cfg, tmp_path / "again", mnist, torch.device("cpu"))
    assert again["test_loss"] == pytest.approx(r["test_loss"], rel=1e-5)


def test_mnistlab_train_line_reader(mnist, tmp_path, capsys):
    from mnistlab.cli.core import train

    train("line-reader", set_=[f"{k}={v}" for k, v in TINY.items()], run_dir=tmp_path / "cli", json_out=True)
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "line" and runs.is_complete(tmp_path / "cli")


def test_a_digit_run_is_not_a_line_reader(tmp_path, mnist):
    from mnistlab.experiment import run_experiment

    cfg = resolve_run_config("dnn", {"data.train_limit": 200, "data.test_limit": 100})
    run_experiment(cfg, run_dir=tmp_path / "dnn", mnist=mnist, device="cpu")
    with pytest.raises(RunError, match="not a line reader"):
        LineReader.load(tmp_path / "dnn")


# --------------------------------------------------------------------------------------------
# the page reader and the line reader


@pytest.fixture(scope="module")
def classifier(mnist, tmp_path_factory):
    from mnistlab.experiment import run_experiment

    cfg = resolve_run_config(
        "robust", {"data.train_limit": 10000, "data.test_limit": 500, "train.epochs": 1, "model.widths": "16,32"}
    )
    run_dir = tmp_path_factory.mktemp("clf") / "run"
    run_experiment(cfg, run_dir=run_dir, mnist=mnist, device="cpu")
    return Predictor.load(run_dir)


class _Says(LineReader):
    """A line reader that reads every strip as `digits`, peaks spread evenly over the strip."""

    def __init__(self, digits: list[int]):
        super().__init__(create_model("crnn"), resolve_run_config("line-reader"))
        self.digits, self.strips = digits, []

    def read(self, strips):
        self.strips += list(strips)
        k = len(self.digits)
        return [(self.digits, [(j + 0.5) * s.shape[1] / k for j in range(k)], [0.9] * k) for s in strips]


def _touching_page(mnist, first: int, second: int) -> bytes:
    """Two MNIST test digits, 60 px high, the second sliding a third of a digit over the first:
    one component on a white page, as pages.make_page draws ink."""
    page = np.zeros((160, 320), np.float32)
    x = 100
    for i in (first, second):
        d = np.asarray(Image.fromarray(mnist.test_images[i].numpy()).resize((84, 84), Image.Resampling.BICUBIC))
        d = d.astype(np.float32) / 255
        cols = np.flatnonzero(d.max(0) > 0.2)
        d = d[:, cols[0] : cols[-1] + 1]
        page[40:124, x : x + d.shape[1]] = np.maximum(page[40:124, x : x + d.shape[1]], d)
        x += d.shape[1] - 16
    img = Image.fromarray(((1 - 0.9 * page) * 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_the_line_reader_decides_how_many_digits_a_wide_component_holds(mnist, classifier):
    # test digits 3 (a 0) and 2 (a 1): a "01" touching, which the classifier alone may read as one digit
    page = _touching_page(mnist, 3, 2)
    alone = read_image(page, classifier, single=False)
    two = _Says([0, 1])
    split = read_image(page, classifier, single=False, lines=two)
    assert len(two.strips) == 1 and two.strips[0].shape[0] == 32  # the one wide component, 32 px high
    assert len(split.text) == 2 and split.text[1] == "1", (alone.text, split.text)
    boxes = [d.box for d in split.digits]
    assert boxes[0][0] < boxes[1][0]  # left to right, each its own box
    one = read_image(page, classifier, single=False, lines=_Says([8]))
    assert len(one.text) == 1  # read as one digit: the whole component, by the classifier
    assert one.digits[0].box[2] > boxes[0][2]
    assert split.to_json().keys() == alone.to_json().keys()  # the JSON fields stay


def test_a_real_line_reader_reads_pages_through_worker_processes(mnist, classifier, tmp_path):
    """Worker processes get the line reader's run folder and load it there."""
    from mnistlab.handwriting.reader import read_images

    cfg = resolve_run_config("line-reader", TINY)
    train_line_reader(cfg, tmp_path / "lr", mnist, torch.device("cpu"))
    lr = LineReader.load(tmp_path / "lr")
    files = []
    for i in range(lines_n := 34):  # more than reader.PARALLEL_FROM: the pool reads them
        f = tmp_path / f"p{i}.png"
        f.write_bytes(_touching_page(mnist, i, i + 1))
        files.append(f)
    here = [r.text for r in read_images(files, classifier, lines=lr, workers=1)]
    pooled = [r.text for r in read_images(files, classifier, lines=lr, workers=2)]
    assert here == pooled and len(here) == lines_n
    assert lines.to_strip(np.ones((10, 50), np.float32), 32).shape == (32, 160)
