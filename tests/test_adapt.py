"""Few-shot adaptation (issue 20): adapt, the adapted run record, refusals, the study."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistlab import runs
from mnistlab.cli import adapt as adapt_cmds
from mnistlab.config import AdaptConfig, run_config_from_dict
from mnistlab.errors import ConfigError, DataError, RunError
from mnistlab.handwriting import adapt as A
from mnistlab.handwriting.model import is_reader_run
from mnistlab.predictor import Predictor


@pytest.fixture(scope="module")
def base_run(mnist, tmp_path_factory):
    """A small robust-style run trained on a slice (seconds)."""
    from mnistlab.experiment import run_experiment
    from mnistlab.recipes import resolve_run_config

    cfg = resolve_run_config(
        "robust",
        {"data.train_limit": 4000, "data.test_limit": 1000, "train.epochs": 1, "model.widths": "16,32"},
    )
    run_dir = tmp_path_factory.mktemp("base") / "robust-small"
    run_experiment(cfg, run_dir=run_dir, mnist=mnist, device="cpu")
    return run_dir


def _write_writer_folder(mnist, folder, start: int, n: int, layout: str = "folders") -> None:
    """MNIST training digits start..start+n in the synthetic writer's style, as PNG files."""
    imgs = A.writer_style(mnist.train_images[start : start + n])
    for i, (g, y) in enumerate(zip(imgs, mnist.train_labels[start : start + n].tolist(), strict=True)):
        a = (np.clip(g, 0, 1) * 255).astype(np.uint8)
        if layout == "folders":
            (folder / str(y)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(folder / str(y) / f"{i:04d}.png")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(folder / f"{y}_{i:04d}.png")


def test_adapted_config_round_trips_and_old_records_read_as_plain_runs(base_run):
    base = Predictor.load(base_run)
    cfg = A.adapted_config(base, AdaptConfig(mode="head", steps=7, shots=3), seed=2)
    d = cfg.to_dict()
    assert d["config_version"] == 3 and d["adapted_from"] == "robust-small" and d["adapt"]["steps"] == 7
    assert run_config_from_dict(json.loads(json.dumps(d))) == cfg
    plain = base.config.to_dict()
    assert "adapted_from" not in plain and "adapt" not in plain  # a trained run's record is unchanged
    old = dict(plain, config_version=2)
    again = run_config_from_dict(old)
    assert again.adapted_from == "" and again.adapt is None
    with pytest.raises(ConfigError, match="adapt.nonsense"):
        run_config_from_dict({**d, "adapt": {**d["adapt"], "nonsense": 1}})


def test_adapt_learns_a_writer_keeps_mnist_and_leaves_an_ordinary_run(mnist, base_run, tmp_path):
    folder = tmp_path / "mine"
    _write_writer_folder(mnist, folder, 0, 300)
    digits = A.load_digits_folder(folder, shots=10)
    assert digits.counts() == [10] * 10
    test = A.read_digits(
        A.writer_style(mnist.test_images[:300]), mnist.test_labels[:300].tolist(), [str(i) for i in range(300)]
    )
    base = Predictor.load(base_run)
    out = tmp_path / "runs" / "me"
    ticks = []
    result = A.adapt_run(
        base,
        digits,
        out,
        AdaptConfig(),
        mnist,
        seed=0,
        progress=lambda d, t: ticks.append((d, t)),
        mnist_test_limit=2000,
    )
    assert ticks[0] == (0, 60) and ticks[-1] == (60, 60)
    adapted = Predictor.load(out)  # what predict/evaluate-images/serve --run load
    before, after = A.accuracy(base, test.x, test.y), A.accuracy(adapted, test.x, test.y)
    assert after >= before + 0.05, (before, after)  # other digits of the same writer read better
    assert result["base_test_acc"] - result["test_acc"] < 0.02  # MNIST replay: little forgetting
    assert result["forgetting"] == pytest.approx(result["base_test_acc"] - result["test_acc"])
    assert adapted.config.adapted_from == "robust-small" and adapted.config.adapt.shots == 0
    assert runs.load_run(out).history[0]["epoch"] == 1
    assert not is_reader_run(out) and is_reader_run(base_run)  # never silently the default reader
    # The same (digits, config, seed) gives the same weights.
    again, _ = A.adapt_model(base, digits, AdaptConfig(), mnist, seed=0)
    w = runs.load_weights(out / runs.WEIGHTS)
    assert all(torch.equal(w[k], v) for k, v in again.state_dict().items())


@pytest.mark.parametrize("mode", ["all", "head", "bn", "all-bn", "stats"])
def test_each_mode_trains_only_its_part(mnist, base_run, mode):
    base = Predictor.load(base_run)
    x = A.preprocess_digit(np.asarray(mnist.test_images[0]) / 255.0).unsqueeze(0).repeat(10, 1, 1, 1)
    digits = A.Digits(x, torch.arange(10))
    old = {k: v.clone() for k, v in base.model.state_dict().items()}
    model, _ = A.adapt_model(base, digits, AdaptConfig(mode=mode, steps=3, replay=0.5), mnist, seed=0)
    new = model.state_dict()
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    head = {"out.weight", "out.bias"}
    stats = {k for k in old if "running" in k or "num_batches" in k}
    bn_params = {k for k in old if k.startswith("bn") and k.split(".")[-1] in ("weight", "bias")}
    if mode == "head":
        assert changed == head
    elif mode == "bn":
        assert changed and changed <= bn_params | stats and stats & changed
    elif mode == "stats":
        assert changed and changed <= stats  # no weight moves, only the running statistics
    elif mode == "all":
        assert head <= changed and not stats & changed  # BN statistics frozen
    else:
        assert head <= changed and stats & changed
    assert all(torch.equal(v, old[k]) for k, v in base.model.state_dict().items())  # the base is untouched


def test_the_prototype_head_is_folded_exactly_into_the_last_layer(mnist, base_run):
    base = Predictor.load(base_run)
    x = A.canonical(mnist.test_images[:100]).float()
    y = mnist.test_labels[:100]
    keep = torch.tensor(A.first_shots(y.tolist(), 2))
    digits = A.Digits(x[keep], y[keep])
    assert digits.counts() == [2] * 10
    cfg = AdaptConfig(steps=0, proto=0.5, proto_copies=0)
    model, _ = A.adapt_model(base, digits, cfg, mnist, seed=0)
    # The same blend computed by hand: logits - proto * s * |f - mu_c|^2.
    feats = []
    hook = base.model.out.register_forward_hook(lambda m, i, o: feats.append(i[0].flatten(1)))
    with torch.no_grad():
        base.logits(digits.x)
        logits_test = base.logits(x)
    hook.remove()
    f_shots, f_test = feats[0].double(), feats[1].double()
    mu = torch.stack([f_shots[digits.y == c].mean(0) for c in range(10)])
    spread = float(torch.cdist(mu, mu).pow(2).sum()) / 90
    scale = 0.5 * A.PROTO_SCALE / spread
    want = torch.softmax(logits_test.double() - scale * torch.cdist(f_test, mu).pow(2), 1)
    got = Predictor(model, base.config).probs(x)
    assert torch.allclose(got.double(), want, atol=1e-4)
    assert not torch.allclose(got, base.probs(x), atol=1e-3)  # it did change the answers
    # steps=0 and proto=0: nothing moves
    same, _ = A.adapt_model(base, digits, AdaptConfig(steps=0), mnist, seed=0)
    assert all(torch.equal(v, base.model.state_dict()[k]) for k, v in same.state_dict().items())


def test_the_synthetic_writers_are_consistent_styles(mnist):
    imgs = mnist.test_images[:40]
    labels = mnist.test_labels[:40].tolist()
    ones = [i for i, v in enumerate(labels) if v == 1][:3]
    flagged = A.continental_style(imgs[ones], [1] * len(ones))
    plain = A.continental_style(imgs[ones], [0] * len(ones))  # the same strokes without the flag
    for a, b in zip(flagged, plain, strict=True):
        assert (1 - a).sum() > (1 - b).sum() * 1.15  # the flag adds ink
    thin = A.thin_style(imgs[:5])
    thick = A.writer_style(imgs[:5])
    for a, b in zip(thin, thick, strict=True):
        assert a.shape == b.shape == (112, 112) and (1 - a).sum() < (1 - b).sum() / 3
    assert all(np.array_equal(a, b) for a, b in zip(A.styled(imgs, labels, "thin"), A.thin_style(imgs), strict=True))
    with pytest.raises(DataError, match="unknown synthetic writer"):
        A.styled(imgs, labels, "nobody")


def test_adapt_refuses_with_one_clear_line(mnist, base_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no labelled digits"):
        adapt_cmds.adapt(empty, run=str(base_run), out_dir=tmp_path / "o1")
    partial = tmp_path / "partial"
    _write_writer_folder(mnist, partial, 0, 60, layout="names")
    for f in partial.glob("3_*.png"):
        f.unlink()
    with pytest.raises(DataError, match="no images of digit 3"):
        adapt_cmds.adapt(partial, run=str(base_run), out_dir=tmp_path / "o2")
    with pytest.raises(ConfigError, match="--mode"):
        adapt_cmds.adapt(partial, run=str(base_run), mode="everything")
    # An unreadable image is listed, the rest are used.
    good = tmp_path / "good"
    _write_writer_folder(mnist, good, 0, 60, layout="names")
    (good / "4_-broken.png").write_bytes(b"\x89PNG not really")
    Image.new("L", (50, 50), 255).save(good / "5_-blank.png")
    adapt_cmds.adapt(good, run=str(base_run), out_dir=tmp_path / "o3", shots=2, steps=5)
    cap = capsys.readouterr()
    assert "4_-broken.png" in cap.err and "5_-blank.png: no digit found" in cap.err
    assert "MNIST test accuracy" in cap.out
    result = runs.read_json(tmp_path / "o3" / runs.RESULT)
    assert result["digits_per_class"] == [2] * 10 and len(result["unusable"]) == 2
    # --shots takes the first K usable images per class in sorted file order
    names = A.load_digits_folder(good, shots=1).names
    firsts = {}
    for f in sorted(good.glob("*.png")):
        if "-" not in f.name:
            firsts.setdefault(f.name[0], str(f))
    assert sorted(names) == sorted(firsts.values())
    with pytest.raises(RunError, match="not empty"):
        adapt_cmds.adapt(good, run=str(base_run), out_dir=tmp_path / "o3")


def test_a_run_of_another_input_shape_is_refused(mnist, base_run):
    from mnistlab.models import create_model

    base = Predictor.load(base_run)
    small = create_model(base.config.model, dataclasses.replace(base.config.model_config, input_size=16))
    odd = Predictor(small, base.config)  # its data config makes 28x28, its model takes 16x16
    digits = A.Digits(torch.zeros(10, 1, 28, 28), torch.arange(10))
    with pytest.raises(RunError, match="cannot be adapted"):
        A.adapt_model(odd, digits, AdaptConfig(steps=1), mnist)


def test_adapt_study_rows_and_summary(mnist, base_run, monkeypatch, capsys):
    monkeypatch.setattr(A, "WRITER_POOL", (0, 200))
    monkeypatch.setattr(A, "WRITER_TEST", (5000, 200))
    adapt_cmds.adapt_study(
        run=str(base_run), modes="all,head", shots="1,5", seeds=2, sets="writer", steps=10, mnist_test_limit=500
    )
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| writer")]
    assert len(rows) == 4  # 2 modes x 2 K, each a mean over 2 seeds
    assert all("±" in r for r in rows)
    with pytest.raises(ConfigError):
        adapt_cmds.adapt_study(run=str(base_run), shots="ten")
    with pytest.raises(ConfigError, match="--proto"):
        adapt_cmds.adapt_study(run=str(base_run), proto="a lot")


def test_the_study_compares_every_combination_and_averages_the_writers(mnist, base_run, monkeypatch, capsys):
    monkeypatch.setattr(A, "WRITER_POOL", (0, 100))
    monkeypatch.setattr(A, "WRITER_TEST", (5000, 100))
    adapt_cmds.adapt_study(
        run=str(base_run), shots="2", seeds=1, sets="thin,continental", steps="0,3", proto="0,0.2", mnist_test_limit=200
    )
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][2:]
    methods = {r[1] for r in rows}
    assert methods == {"all-bn steps=0", "all-bn steps=0 proto=0.2", "all-bn steps=3", "all-bn steps=3 proto=0.2"}
    assert {r[0].strip("| ") for r in rows} == {"thin", "continental", "writers"}
    nothing = [r for r in rows if r[1] == "all-bn steps=0"]
    assert all(r[5].startswith("0.00 ±") for r in nothing)  # no steps, no proto: no gain, no loss
    by = {(r[0].strip("| "), r[1]): r for r in rows}
    mean = lambda r: float(r[4].split(" ")[0])  # noqa: E731
    pair = [mean(by[(s, "all-bn steps=3 proto=0.2")]) for s in ("thin", "continental")]
    assert mean(by[("writers", "all-bn steps=3 proto=0.2")]) == pytest.approx(sum(pair) / 2, abs=0.01)


def test_eval_and_predict_read_the_adapted_run(mnist, base_run, tmp_path, capsys):
    from mnistlab.cli import core as core_cmds
    from mnistlab.cli import predict as predict_cmds

    folder = tmp_path / "mine"
    _write_writer_folder(mnist, folder, 0, 40, layout="names")
    adapt_cmds.adapt(folder, run=str(base_run), out_dir=tmp_path / "me", steps=5, json_out=True)
    result = json.loads(capsys.readouterr().out)
    core_cmds.eval_(str(tmp_path / "me"), json_out=True)
    got = json.loads(capsys.readouterr().out)
    assert got["test_acc"] == pytest.approx(result["test_acc"], abs=1e-3) and result["test_n"] == 1000
    predict_cmds.predict(
        [folder / sorted(p.name for p in folder.iterdir())[0]], run=str(tmp_path / "me"), json_out=True
    )
    assert json.loads(capsys.readouterr().out.splitlines()[0])["found"]


def test_the_sheet_is_found_in_a_photo_and_its_boxes_read(mnist, base_run, tmp_path, capsys):
    from mnistlab.handwriting import template as T

    labels = mnist.test_labels.numpy()
    rows = [[mnist.test_images[i].numpy() for i in (labels == d).nonzero()[0][: 3 + d % 3]] for d in range(10)]
    photo = T.photograph(T.fill_sheet(rows, columns=6), angle=-9, seed=3)
    path = tmp_path / "photo.jpg"
    photo.save(path, quality=80)
    digits = T.read_sheet(path, columns=6)
    assert digits.counts() == [len(r) for r in rows]  # every filled box, no empty one
    # The boxes read as the digits themselves do through the single-digit path.
    base = Predictor.load(base_run)
    assert A.accuracy(base, digits.x, digits.y) >= 0.9
    # A photo without the marks: one clear error.
    cut = photo.crop((0, 0, photo.width, photo.height // 2))
    with pytest.raises(DataError, match="corner marks"):
        T.read_sheet(cut, columns=6, name="half.jpg")
    # The CLI: template writes the sheet; adapt --sheet reads the photo.
    adapt_cmds.template(tmp_path / "sheet.pdf", columns=6)
    assert (tmp_path / "sheet.pdf").read_bytes()[:4] == b"%PDF"
    adapt_cmds.adapt(sheet=[path], columns=6, run=str(base_run), out_dir=tmp_path / "from-sheet", steps=5)
    assert runs.read_json(tmp_path / "from-sheet" / runs.RESULT)["digits"] == sum(map(len, rows))


def test_web_teach_saves_a_model_the_picker_lists_after_a_restart(mnist, base_run, tmp_path):
    pytest.importorskip("fastapi")
    import shutil

    from fastapi.testclient import TestClient

    from mnistlab.web.app import create_app

    root = tmp_path / "served"
    shutil.copytree(base_run, root / "robust-small")
    imgs = A.writer_style(mnist.train_images[:60])
    shots = A.read_digits(imgs, mnist.train_labels[:60].tolist(), [str(i) for i in range(60)])
    lesson = [{"label": int(y), "input": x[0].tolist()} for x, y in zip(shots.x, shots.y, strict=True)]
    with TestClient(create_app(runs_root=root, default_run="robust-small"), base_url="http://localhost") as c:
        r = c.post("/api/teach", json={"digits": lesson, "name": "mine"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "mine" and body["base"] == "robust-small" and body["digits"] == 60
        assert abs(body["mnist_before"] - body["mnist_after"]) < 0.03
        names = [m["name"] for m in c.get("/api/models").json()["models"]]
        assert "mine" in names
        x = {"input": lesson[0]["input"], "model": "mine"}
        assert c.post("/api/feature-maps", json=x).status_code == 200
        # refusals: one line each, no server path, the same checks as every POST
        again = c.post("/api/teach", json={"digits": lesson, "name": "mine"})
        assert again.status_code == 422 and "exists already" in again.json()["detail"]
        no_threes = [d for d in lesson if d["label"] != 3]
        r = c.post("/api/teach", json={"digits": no_threes})
        assert r.status_code == 422 and "no images of digit 3" in r.json()["detail"]
        assert str(tmp_path) not in r.text
        r = c.post("/api/teach", json={"digits": lesson * 4})
        assert r.status_code == 422  # over MAX_TEACH_DIGITS
        r = c.post("/api/teach", json={"digits": lesson}, headers={"origin": "http://evil.example"})
        assert r.status_code == 403
        r = c.post("/api/teach", json={"digits": lesson, "name": "../x"})
        assert r.status_code == 422 and "bad model name" in r.json()["detail"]
        # or a photo of a filled sheet
        import base64
        import io

        from mnistlab.handwriting import template as T

        labels = mnist.test_labels.numpy()
        rows = [[mnist.test_images[i].numpy() for i in (labels == d).nonzero()[0][:2]] for d in range(10)]
        buf = io.BytesIO()
        T.photograph(T.fill_sheet(rows), seed=1).save(buf, "JPEG", quality=85)
        url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        r = c.post("/api/teach", json={"sheet": url, "name": "from-sheet"})
        assert r.status_code == 200, r.text
        assert r.json()["digits_per_class"] == [2] * 10
    # a restart of the server still lists (and serves) the taught model
    with TestClient(create_app(runs_root=root, default_run="robust-small"), base_url="http://localhost") as c:
        models = {m["name"]: m for m in c.get("/api/models").json()["models"]}
        assert models["mine"]["complete"]
        assert c.post("/api/feature-maps", json={"input": lesson[0]["input"], "model": "mine"}).status_code == 200


def test_without_run_it_adapts_the_default_reader_which_stays_the_default(mnist, base_run, tmp_path, capsys):
    import shutil

    from mnistlab.handwriting.model import default_reader_dir

    shutil.copytree(base_run, runs.runs_root() / "robust-mine")  # your newest robust run: the default reader
    folder = tmp_path / "mine"
    _write_writer_folder(mnist, folder, 0, 40, layout="names")
    adapt_cmds.adapt(folder, out_dir=tmp_path / "ignored-name" / "me", steps=3, json_out=True)
    result = json.loads(capsys.readouterr().out)
    assert result["adapted_from"] == "robust-mine"
    adapt_cmds.adapt(folder, out_dir=Path("me2"), steps=3, json_out=True)  # a bare name: under the runs root
    assert runs.is_complete(runs.runs_root() / "me2")
    assert default_reader_dir().name == "robust-mine"  # the newer adapted runs did not take its place
