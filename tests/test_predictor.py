"""The core -> apps contract: a run record loaded as a Predictor reads canonical digits (white on
black, [0, 1], 28x28) through the same input function its training data was built with, and
every app (the reader, evaluate-images, the web API) answers what the Predictor answers."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistlab.config import DataConfig
from mnistlab.dataset import canonical, model_input, prepare_splits
from mnistlab.errors import DataError
from mnistlab.experiment import run_experiment
from mnistlab.models import create_model, list_models
from mnistlab.predictor import Predictor
from mnistlab.recipes import RECIPES, list_recipes, resolve_run_config

SLICE = {"data.train_limit": 512, "data.test_limit": 200, "train.epochs": 1}


@pytest.mark.parametrize(
    "data",
    [
        DataConfig(),
        DataConfig(scale=False),
        DataConfig(invert="only"),
        DataConfig(invert="add", eval_inverted=True),
        DataConfig(subsample="half"),
        DataConfig(subsample="down4", upsample=True),
        DataConfig(subsample="random"),
        DataConfig(channels=3, invert="add"),
    ],
    ids=["plain", "unscaled", "inverted", "plus-inverted", "half", "down4-up", "random", "rgb"],
)
def test_model_input_is_what_the_run_trained_and_tested_on(mnist, data):
    data = dataclasses.replace(data, test_limit=16, train_limit=16)
    splits = prepare_splits(mnist, data, seed=3)
    test01 = canonical(mnist.test_images[:16])
    assert torch.equal(model_input(test01, data, seed=3), splits.test.x)
    # The training images of invert="add" are the plain ones followed by their inverted copy.
    train_idx = splits.train.x[: len(splits.train) // (2 if data.invert == "add" else 1)]
    assert train_idx.shape[1:] == splits.test.x.shape[1:]
    for name, extra in splits.extra_tests.items():
        other = dataclasses.replace(data, invert="only" if name == "test_inverted" else "none")
        assert torch.equal(model_input(test01, other, seed=3), extra.x)


@pytest.mark.parametrize("name", list_models())
def test_every_model_reads_canonical_digits_with_gradients(name):
    """Attacks and saliency need d(logits)/d(canonical pixels) through the run's own input."""
    model = create_model(name)
    channels = model.input_shape[0]
    cfg = resolve_run_config(name, {"data.channels": channels, "data.invert": "none"})
    p = Predictor(model, cfg)
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    out = p.logits(x)
    assert out.shape == (2, 10)
    out[:, 3].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    probs = p.probs(x.detach())
    assert probs.shape == (2, 10) and torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)


def test_a_wrong_shape_is_one_clear_error():
    p = Predictor(create_model("dnn"), resolve_run_config("dnn"))
    with pytest.raises(DataError, match=r"\(N, 1, 28, 28\), got \(2, 3, 28, 28\)"):
        p.probs(torch.zeros(2, 3, 28, 28))
    with pytest.raises(DataError, match="float"):
        p.probs(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_every_recipe_names_a_model_and_every_model_has_a_recipe():
    models = set(list_models(task=None))  # the line reader too
    assert {r.model for r in RECIPES.values()} == models
    assert set(list_recipes()) >= set(list_models())  # every digit model has a bare recipe of its name
    assert "line-reader" in list_recipes(task="line")  # the line model's recipe is named for its job


# --------------------------------------------------------------------------------------------
# every recipe, end to end through the one interface


def _canvas(mnist, i: int) -> bytes:
    """MNIST test digit i as a user draws it: dark ink on white, 140x140 PNG."""
    import io

    img = Image.fromarray(255 - mnist.test_images[i].numpy()).resize((140, 140), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list_recipes())
def test_every_recipe_trains_then_reads_through_the_predictor(recipe, mnist, tmp_path):
    from mnistlab.handwriting import read_image
    from mnistlab.handwriting.evaluate import evaluate_images

    torch.manual_seed(0)
    run_dir = tmp_path / recipe
    out = run_experiment(resolve_run_config(recipe, SLICE), run_dir=run_dir, mnist=mnist, device="cpu")
    p = Predictor.load(run_dir)
    assert p.config.recipe == recipe
    # The Predictor on canonical test digits == the trained model on its own test split.
    test01 = canonical(mnist.test_images[:200])
    with torch.no_grad():
        want = torch.softmax(out.model.eval()(out.splits.test.x).float(), 1)
    assert torch.allclose(p.probs(test01), want, atol=1e-5)
    assert float((p.probs(test01).argmax(1) == out.splits.test.y).float().mean()) == pytest.approx(
        out.result["test_acc"], abs=1e-6
    )
    # A drawn digit read by the reader: one digit, whose probabilities are the Predictor's on its crop.
    reading = read_image(_canvas(mnist, 0), p, name="canvas")
    assert len(reading.digits) == 1
    d = reading.digits[0]
    assert np.allclose(d.probs, p.probs(d.crop[None, None]).numpy()[0], atol=1e-6)
    # evaluate-images answers what the Predictor answers on the same crops.
    folder = tmp_path / "digits"
    for i in range(3):
        (folder / str(int(mnist.test_labels[i]))).mkdir(parents=True, exist_ok=True)
        (folder / str(int(mnist.test_labels[i])) / f"{i}.png").write_bytes(_canvas(mnist, i))
    summary, _ = evaluate_images(folder, p)
    assert summary["n"] == 3 and sum(map(sum, summary["confusion"])) == 3
    # The web API: the same reading as the reader.
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mnistlab.web.app import create_app

    with TestClient(create_app(runs_root=tmp_path, default_run=run_dir), base_url="http://localhost") as c:
        r = c.post("/api/predict", files={"file": ("canvas.png", _canvas(mnist, 0), "image/png")}).json()
    assert [x["digit"] for x in r["digits"]] == [d.digit]
    assert np.allclose(r["digits"][0]["probs"], d.probs, atol=1e-4)  # the JSON rounds to 4 decimals


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [{"data.invert": "only"}, {"data.scale": False}, {"data.subsample": "down4"}])
def test_reading_a_run_trained_on_another_input_variant(overrides, mnist, tmp_path):
    """Regression: `predict --run` used to feed such runs the plain canonical crop; a run trained on
    inverted digits then read the background. Through the Predictor it reads drawn digits."""
    from mnistlab.handwriting import read_image

    cfg = resolve_run_config("keras-convnet", {"data.train_limit": 6000, "data.test_limit": 500, **overrides})
    run_experiment(cfg, run_dir=tmp_path / "run", mnist=mnist, device="cpu")
    p = Predictor.load(tmp_path / "run")
    right = sum(read_image(_canvas(mnist, i), p).text == str(int(mnist.test_labels[i])) for i in range(20))
    assert right >= 15, right


# --------------------------------------------------------------------------------------------
# the core/apps line

CORE = [
    "errors",
    "models",
    "config",
    "data",
    "transforms",
    "augment",
    "attacks",  # the attack primitives adversarial training uses (the attack commands are an app)
    "dataset",
    "checkpoint",
    "threads",  # the thread count a run uses (recorded in every run)
    "train",
    "runs",
    "experiment",
    "recipes",
    "predictor",
]
PACKAGE = Path(__file__).resolve().parents[1] / "mnistlab"


def _imports(path: Path) -> set[str]:
    """Every mnistlab module `path` imports, at any depth of the file (late imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnistlab"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mnistlab")}
    return found


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_nothing_above_itself(module):
    path = PACKAGE / f"{module}.py"
    files = [path] if path.is_file() else sorted((PACKAGE / module).glob("*.py"))
    core = {f"mnistlab.{m}" for m in CORE} | {"mnistlab"}
    for f in files:
        for name in _imports(f):
            top = ".".join(name.split(".")[:2])
            assert top in core or name.startswith("mnistlab.models"), f"{f.name} imports {name}"
