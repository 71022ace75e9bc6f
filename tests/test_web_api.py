"""The JSON API of `mnistlab serve`, through FastAPI's test client, on tiny trained runs."""

from __future__ import annotations

import base64
import io
import re
import struct
import subprocess
import sys
import zlib

import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from _web_support import DEFAULT, LOCAL, RUNS, blank_png, trained_runs  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from mnistlab.handwriting import read_image  # noqa: E402
from mnistlab.viz.layers import layer_names  # noqa: E402
from mnistlab.web import service  # noqa: E402
from mnistlab.web.app import STATIC, create_app  # noqa: E402
from mnistlab.web.bench import canvas_png, line_photo_jpeg  # noqa: E402


@pytest.fixture(scope="module")
def runs_root(mnist):
    return trained_runs(mnist)


@pytest.fixture(scope="module")
def app(runs_root):
    return create_app(runs_root=runs_root, default_run=DEFAULT)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def predict_json(client, png: bytes, **extra):
    return client.post("/api/predict", json={"image": data_url(png), **extra})


def correct_digit(client, mnist, model: str = DEFAULT) -> tuple[list[list[float]], int]:
    """The `input` of the first test digit the model reads correctly, and its label."""
    for i in range(50):
        r = predict_json(client, canvas_png(mnist.test_images[i]), model=model).json()
        if r["text"] == str(int(mnist.test_labels[i])):
            return r["digits"][0]["input"], int(mnist.test_labels[i])
    raise AssertionError("the model reads none of the first 50 test digits")


# ------------------------------------------------------------------------------------ basics


def test_health_and_models(client, runs_root):
    assert client.get("/healthz").json()["status"] == "ok"
    listing = client.get("/api/models").json()
    assert listing["default"] == DEFAULT
    by_name = {m["name"]: m for m in listing["models"]}
    assert set(RUNS) <= set(by_name)
    assert by_name[DEFAULT]["default"] is True and by_name["dnn"]["default"] is False
    for name in RUNS:
        assert by_name[name]["model"] == name and by_name[name]["complete"] is True
        assert 0.5 < by_name[name]["test_acc"] <= 1.0


def test_drawn_digits_are_read(client, mnist):
    """MNIST test digits sent as the page sends its pad: most are read right, fields are consistent."""
    correct = 0
    for i in range(20):
        r = predict_json(client, canvas_png(mnist.test_images[i])).json()
        assert r["file"] == "canvas" and r["model"] == DEFAULT
        assert (r["width"], r["height"]) == (140, 140)
        assert r["text"] == "".join(str(d["digit"]) for d in r["digits"])
        for d in r["digits"]:
            assert len(d["probs"]) == 10 and abs(sum(d["probs"]) - 1) < 1e-3
            assert d["digit"] == max(range(10), key=lambda k: d["probs"][k])
            assert abs(d["confidence"] - max(d["probs"])) < 1e-3
            x, y, w, h = d["box"]
            assert 0 <= x < x + w <= 140 and 0 <= y < y + h <= 140 and d["line"] == 0
            pixels = torch.tensor(d["input"])
            assert pixels.shape == (28, 28) and 0 <= pixels.min() and pixels.max() <= 1 and pixels.max() > 0.5
        correct += r["text"] == str(int(mnist.test_labels[i]))
    assert correct >= 16  # a 1-epoch model behind the handwriting pipeline; most are read right


def test_same_fields_as_predict_json(client, app, mnist):
    """The answer carries everything `Reading.to_json()` (what `predict --json` prints) has, unchanged."""
    png = line_photo_jpeg([mnist.test_images[i] for i in range(3)])
    r = client.post("/api/predict", files={"file": ("three.jpg", png, "image/jpeg")}).json()
    direct = read_image(png, app.state.store.get().predictor, name="three.jpg").to_json()
    for key, value in direct.items():
        if key != "digits":
            assert r[key] == value, key
    assert len(r["digits"]) == len(direct["digits"]) == 3
    for got, want in zip(r["digits"], direct["digits"], strict=True):
        assert {k: got[k] for k in want} == want


def test_photo_upload_of_a_line(client, mnist):
    labels = [int(v) for v in mnist.test_labels[:5]]
    photo = line_photo_jpeg([mnist.test_images[i] for i in range(5)])
    r = client.post("/api/predict", files={"file": ("line.jpg", photo, "image/jpeg")})
    assert r.status_code == 200
    body = r.json()
    assert body["file"] == "line.jpg"
    assert len(body["digits"]) == 5
    xs = [d["box"][0] for d in body["digits"]]
    assert xs == sorted(xs)  # read left to right
    for d in body["digits"]:
        x, y, w, h = d["box"]
        assert x + w <= body["width"] and y + h <= body["height"]
    assert sum(a == b for a, b in zip(body["text"], map(str, labels), strict=True)) >= 4


def test_blank_canvas_is_no_digit(client):
    r = predict_json(client, blank_png())
    assert r.status_code == 200
    body = r.json()
    assert body["text"] == "" and body["digits"] == [] and body["message"] == "no digit found"


def test_model_choice_and_three_channel_run(client, mnist):
    png = canvas_png(mnist.test_images[0])
    for name in RUNS:
        r = predict_json(client, png, model=name)
        assert r.status_code == 200 and r.json()["model"] == name
    via_query = client.post("/api/predict?model=cnn-small", files={"file": ("d.png", png, "image/png")})
    assert via_query.json()["model"] == "cnn-small"
    via_form = client.post("/api/predict", files={"file": ("d.png", png, "image/png")}, data={"model": "dnn"})
    assert via_form.json()["model"] == "dnn"


# ------------------------------------------------------------------------------------ bad input


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds (almost) nothing: only its header is read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "files, status, message",
    [
        ({"file": ("notes.txt", b"hello, not an image", "text/plain")}, 415, "not an image"),
        ({"file": ("empty.png", b"", "image/png")}, 415, "empty"),
        ({"file": ("bomb.png", _png_header(20000, 20000), "image/png")}, 413, "too many pixels"),
        ({"file": ("big.png", b"\x89PNG" + b"\0" * (10 * 2**20), "image/png")}, 413, "10 MB"),
        ({"other": ("x.png", b"x", "image/png")}, 422, "field named 'file'"),
    ],
)
def test_bad_uploads(client, files, status, message):
    r = client.post("/api/predict", files=files)
    assert r.status_code == status
    assert message in r.json()["detail"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"image": "not a data url"}, 422, "data URL"),
        ({"image": "data:image/png;base64,@@@"}, 422, "base64"),
        ({"image": "data:image/png;base64," + base64.b64encode(b"GIF? no").decode()}, 415, "not an image"),
        ({"picture": "x"}, 422, "image"),
        ({"image": data_url(blank_png()), "model": "../../etc/passwd"}, 404, "bad model name"),
        ({"image": data_url(blank_png()), "model": "no-such-run"}, 404, "unknown model"),
    ],
)
def test_bad_json_predict(client, body, status, message):
    r = client.post("/api/predict", json=body)
    assert r.status_code == status
    assert message in r.json()["detail"]


def test_bad_requests_say_what_is_wrong(client):
    r = client.post("/api/predict", content=b"raw bytes", headers={"content-type": "application/octet-stream"})
    assert r.status_code == 415 and "multipart" in r.json()["detail"]
    r = client.post("/api/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    too_big = "x" * (service.MAX_BODY_BYTES + 1)
    r = client.post("/api/predict", content=too_big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "10 MB" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit counts the bytes as they arrive
        for _ in range(15):
            yield b"y" * 2**20

    r = client.post("/api/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_unexpected_errors_do_not_leak(app, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret detail from /srv/private/path")

    monkeypatch.setattr(service, "predict", boom)
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as c:
        r = c.post("/api/predict", json={"image": data_url(blank_png())})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error (see the server log)"}
    assert "secret" not in r.text and "Traceback" not in r.text


def test_without_a_run_the_handwriting_default_model_is_served(runs_root, mnist, tmp_path, monkeypatch):
    """No --run: the default model (a run record in the cache; here a copy of a tiny run, so nothing trains)."""
    import shutil

    from mnistlab.handwriting.model import default_model_dir

    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "cache"))
    shutil.copytree(runs_root / DEFAULT, default_model_dir())
    with TestClient(create_app(runs_root=runs_root), base_url=LOCAL) as c:
        listing = c.get("/api/models").json()
        assert listing["default"] == "default"
        builtin = listing["models"][0]
        assert builtin["name"] == "default" and builtin["builtin"] and builtin["complete"] and builtin["default"]
        r = predict_json(c, canvas_png(mnist.test_images[0])).json()
        assert r["model"] == "default" and r["text"] == str(int(mnist.test_labels[0]))


def test_unknown_default_run_is_refused(runs_root):
    from mnistlab.errors import MnistlabError

    with pytest.raises(MnistlabError, match="no run"):
        create_app(runs_root=runs_root, default_run="nope")
    with pytest.raises(MnistlabError, match="bad run name"):
        create_app(runs_root=runs_root, default_run="a/../../b")


# ------------------------------------------------------------------------------------ fool it, look inside


def test_attack_fools_the_model(client, app, mnist):
    pixels, label = correct_digit(client, mnist)
    target = (label + 1) % 10
    req = {"input": pixels, "target": target, "eps": 0.3, "steps": 40}
    r = client.post("/api/attack", json=req)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["predicted_before"] == label and a["success"] is True and a["predicted_after"] == target
    x = torch.tensor(pixels)
    adv = torch.tensor(a["adversarial"])
    assert adv.shape == (28, 28) and adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() <= 0.3 + 1e-3  # inside the eps-ball
    assert abs(a["linf"] - float((adv - x).abs().max())) < 1e-3
    assert torch.allclose(torch.tensor(a["perturbation"]), adv - x, atol=2e-4)
    # the picture sent back really fools the model
    net = app.state.store.get().net
    with torch.no_grad():
        assert int(net(adv.view(1, 1, 28, 28)).argmax()) == target
    assert client.post("/api/attack", json=req).json()["adversarial"] == a["adversarial"]  # seeded


def test_attack_searches_the_smallest_change(client, mnist):
    pixels, label = correct_digit(client, mnist)
    target = (label + 3) % 10
    small = client.post("/api/attack", json={"input": pixels, "target": target, "steps": 20}).json()
    assert small["success"] and small["eps"] is None and 0 < small["eps_used"] < 0.5
    assert small["linf"] <= small["eps_used"] + 1e-3


@pytest.mark.parametrize(
    "body, message",
    [
        ({"input": [[0.0] * 28] * 27, "target": 3}, "28 rows of 28"),
        ({"input": [[0.0] * 28] * 28, "target": 12}, "target"),
        ({"input": [[0.0] * 28] * 28, "target": 3, "steps": 100000}, "steps"),
        ({"input": [[0.0] * 28] * 28, "target": 3, "method": "magic"}, "method"),
        ({"target": 3}, "give the digit"),
    ],
)
def test_bad_attack_requests(client, body, message):
    r = client.post("/api/attack", json=body)
    assert r.status_code == 422
    assert message in r.json()["detail"]


def test_attack_on_an_image_of_a_digit(client, mnist):
    r = client.post("/api/attack", json={"image": data_url(canvas_png(mnist.test_images[0])), "target": 3, "steps": 10})
    assert r.status_code == 200 and r.json()["success"]


def _png_size(url: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size


@pytest.mark.parametrize("model", list(RUNS))
def test_feature_maps_of_every_layer(client, app, mnist, model):
    pixels = predict_json(client, canvas_png(mnist.test_images[0]), model=model).json()["digits"][0]["input"]
    net = app.state.store.get(model).model
    names = layer_names(net)
    for layer in names:
        r = client.post("/api/feature-maps", json={"input": pixels, "layer": layer, "model": model})
        assert r.status_code == 200, (layer, r.text)
        fm = r.json()
        assert fm["layer"] == layer and fm["layers"] == names
        with torch.no_grad():
            out = dict(net.named_children())
            x = app.state.store.get(model).net.prepare(torch.tensor(pixels).view(1, 1, 28, 28))
            for name, module in out.items():
                x = module(x)
                if name == layer:
                    break
        assert fm["channels"] == x.shape[1]  # one channel (or unit) per output of that layer
        if x.dim() == 4:
            assert (fm["height"], fm["width"]) == tuple(x.shape[2:])
        w, h = _png_size(fm["image"])
        assert w >= 28 and h >= 28
    default = client.post("/api/feature-maps", json={"input": pixels, "model": model}).json()
    assert default["layer"] == names[0]
    bad = client.post("/api/feature-maps", json={"input": pixels, "model": model, "layer": "nope"})
    assert bad.status_code == 422 and "unknown layer" in bad.json()["detail"]


def test_feature_maps_are_not_mixed_up_by_parallel_requests(app, mnist):
    """Requests run in a thread pool: maps hooked on a layer must not catch another request's forward.

    Attacks run hundreds of forwards through the same network meanwhile (with the maps hooked
    on the shared model, a few of 30 came out wrong)."""
    from concurrent.futures import ThreadPoolExecutor

    store = app.state.store
    x = torch.tensor(service.predict(store, canvas_png(mnist.test_images[0]))["digits"][0]["input"]).view(1, 1, 28, 28)
    expected = service.feature_maps(store, x, "conv1")["image"]
    with ThreadPoolExecutor(4) as pool:
        attacks = [pool.submit(service.attack, store, x, 3, None, "pgd", "linf", 0.3, 100) for _ in range(2)]
        maps = [pool.submit(service.feature_maps, store, x, "conv1") for _ in range(30)]
        assert all(m.result()["image"] == expected for m in maps)
        assert all(a.result()["success"] for a in attacks)


# ------------------------------------------------------------------------------------ the page and docs


def test_page_is_served_with_all_its_assets_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    for needle in ('id="pad"', 'accept="image/*"', 'capture="environment"', 'id="fool"', 'id="layer"', 'id="model"'):
        assert needle in html
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert len(assets) >= 2
    for path in assets:
        assert client.get(path).status_code == 200, path
    for f in STATIC.iterdir():  # nothing fetched from elsewhere at run time
        text = f.read_text()
        assert not re.search(r"""(?:src|href|url|import|fetch)\s*[=(]\s*["']?(?:https?:)?//""", text), f.name


def test_openapi_and_local_docs(client):
    spec = client.get("/openapi.json").json()
    for path in ("/api/predict", "/api/models", "/api/attack", "/api/feature-maps", "/healthz"):
        assert path in spec["paths"]
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text and "cdn" not in docs.text.lower()


def test_core_cli_does_not_import_the_web_stack():
    code = "import sys, mnistlab.cli; print(any(m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
