"""Rows of the bad-input matrix (docs/hardening.md) not already proven by another test file:
odd images end to end (1x1, 16-bit, CMYK, animated, truncated) through the HTTP API, a fuzz of
the image loader, malformed study files, config values that look like code, and names that are
paths."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mnistlab import runs
from mnistlab.config import apply_overrides
from mnistlab.errors import ConfigError, ImageError
from mnistlab.handwriting.images import load_grey
from mnistlab.recipes import resolve_run_config
from mnistlab.studies import StudyError, load_study


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _digit(mnist, i: int = 0, size: int = 112) -> Image.Image:
    """MNIST test digit i as dark ink on white paper, enlarged (what a photo/canvas looks like)."""
    ink = Image.fromarray(mnist.test_images[i].numpy()).resize((size, size), Image.BILINEAR)
    return Image.eval(ink, lambda v: 255 - v)


def _animated_gif(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    frames = [img.convert("P"), Image.eval(img, lambda v: 255 - v).convert("P")]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ images


def test_one_pixel_image_loads_and_finds_no_digit():
    grey = load_grey(_encode(Image.new("L", (1, 1), 255), "PNG"))
    assert grey.shape == (1, 1) and grey.dtype == np.float32 and grey[0, 0] == pytest.approx(1.0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=st.binary(max_size=2048))
def test_image_loader_on_random_bytes(blob):
    """Whatever the bytes, the loader answers a grey array in [0, 1] or an ImageError, nothing else."""
    try:
        grey = load_grey(blob)
    except ImageError:
        return
    assert grey.ndim == 2 and grey.dtype == np.float32 and 0 <= grey.min() and grey.max() <= 1


_PNG_HEADER = _encode(Image.new("L", (4, 4)), "PNG")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, len(_PNG_HEADER)), flip=st.integers(0, len(_PNG_HEADER) - 1), bit=st.integers(0, 7))
def test_image_loader_on_damaged_png(cut, flip, bit):
    """A valid PNG with one bit flipped and/or cut short: a grey array or an ImageError."""
    data = bytearray(_PNG_HEADER)
    data[flip] ^= 1 << bit
    try:
        grey = load_grey(bytes(data[: max(cut, 1)]))
    except ImageError:
        return
    assert grey.ndim == 2 and 0 <= grey.min() and grey.max() <= 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    mode=st.sampled_from(["L", "RGB", "RGBA", "I;16", "1", "P", "CMYK"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_image_loader_on_small_random_images(h, w, mode, seed):
    """Small random pictures of every mode, saved as PNG (CMYK as TIFF): always loaded, in [0, 1]."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        img = base.convert(mode)
    data = _encode(img, "TIFF" if mode == "CMYK" else "PNG")
    grey = load_grey(data)
    assert grey.shape == (h, w) and grey.dtype == np.float32
    assert 0 <= grey.min() and grey.max() <= 1


# ------------------------------------------------------------------------------------ HTTP


@pytest.fixture(scope="module")
def client(mnist, tmp_path_factory):
    """The web app serving one tiny dnn run (1 epoch on 2,000 images) as its default model."""
    from _web_support import LOCAL
    from fastapi.testclient import TestClient

    from mnistlab.experiment import run_experiment
    from mnistlab.web import create_app

    root = tmp_path_factory.mktemp("runs")
    cfg = resolve_run_config("dnn", {"data.train_limit": 2000, "data.test_limit": 200, "train.epochs": 1}, seed=0)
    run_experiment(cfg, run_dir=root / "tiny", mnist=mnist, device="cpu")
    with TestClient(create_app(runs_root=root, default_run="tiny"), base_url=LOCAL) as c:
        yield c


def _odd_images(mnist) -> dict[str, tuple[bytes, str]]:
    d = _digit(mnist)
    return {
        "1x1": (_encode(Image.new("L", (1, 1), 255), "PNG"), "image/png"),
        "16bit": (_encode(Image.fromarray(np.asarray(d).astype(np.uint16) * 257), "PNG"), "image/png"),
        "cmyk": (_encode(d.convert("RGB").convert("CMYK"), "JPEG", quality=95), "image/jpeg"),
        "animated": (_animated_gif(d), "image/gif"),
    }


@pytest.mark.parametrize("kind", ["1x1", "16bit", "cmyk", "animated"])
def test_odd_images_over_http_are_read(client, mnist, kind):
    data, mime = _odd_images(mnist)[kind]
    r = client.post("/api/predict", files={"file": (f"x.{kind}", data, mime)})
    assert r.status_code == 200, r.text
    body = r.json()
    if kind == "1x1":
        assert body["digits"] == []  # nothing to read, and no error
    else:
        assert len(body["digits"]) == 1 and body["text"].strip() == str(int(mnist.test_labels[0]))


def test_truncated_upload_is_415_not_500(client, mnist):
    png = _encode(_digit(mnist), "PNG")
    r = client.post("/api/predict", files={"file": ("half.png", png[: len(png) // 2], "image/png")})
    assert r.status_code == 415, r.text
    assert "not an image" in r.json()["detail"] and "Traceback" not in r.text


def test_mistyped_upload_content_type_is_ignored(client, mnist):
    """A PNG labelled text/plain is judged by its bytes, not by the label the client put on it."""
    png = _encode(_digit(mnist), "PNG")
    r = client.post("/api/predict", files={"file": ("d.txt", png, "text/plain")})
    assert r.status_code == 200 and r.json()["text"].strip() == str(int(mnist.test_labels[0]))


def test_malformed_multipart_is_a_4xx(client):
    r = client.post(
        "/api/predict",
        content=b"--xyz\r\nContent-Disposition: form-data; name=\r\n\r\nnot closed",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert 400 <= r.status_code < 500, r.text
    assert "detail" in r.json()


# ------------------------------------------------------------------------------------ study files


@pytest.mark.parametrize(
    "text, match",
    [
        ("recipe = 'dnn'\n[[variant]\nname = 'a'\n", "not valid TOML"),
        ("recipe = 'dnn'\n", "needs at least one"),
        ("recipe = 'dnn'\n[[variant]]\nname = 'a'\noverrides = 3\n", "table of KEY = VALUE"),
        (b"\xff\xfe\x00garbage".decode("latin-1"), "not valid TOML"),
    ],
)
def test_malformed_study_files_are_one_study_error(tmp_path, text, match):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(StudyError, match=match):
        load_study(str(path))


# ------------------------------------------------------------------------------------ security


@pytest.mark.parametrize(
    "key, value",
    [
        ("hidden", "__import__('os').system('echo pwned')"),
        ("train.lr", "__import__('os').getpid()"),
        ("train.epochs", "1+1"),
        ("model.dropout", "eval('0.5')"),
        ("data.subsample", "{'a': 1}"),
    ],
)
def test_config_values_are_never_evaluated_as_code(key, value):
    cfg = resolve_run_config("dnn", {}, seed=0)
    with pytest.raises(ConfigError, match="bad value"):
        apply_overrides(cfg, {key: value})


@pytest.mark.parametrize("name", ["../x", "a/b", "/etc/passwd", "a\\b", "..", ".", "", "a b", "x\x00y"])
def test_names_that_are_paths_are_refused(name):
    with pytest.raises(ConfigError, match="bad run name"):
        runs.check_name(name)


class _Booby:
    """Unpickling this creates a file: proof, if the file appears, that something unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_real_pickle_offered_as_weights_is_refused_unopened(mnist, tmp_path):
    import pickle

    from mnistlab.errors import RunError
    from mnistlab.experiment import run_experiment

    cfg = resolve_run_config("dnn", {"data.train_limit": 500, "data.test_limit": 100, "train.epochs": 1}, seed=0)
    run_experiment(cfg, run_dir=tmp_path / "r", mnist=mnist, device="cpu")
    marker = tmp_path / "unpickled"
    (tmp_path / "r" / "weights.safetensors").write_bytes(pickle.dumps(_Booby(str(marker))))
    with pytest.raises(RunError, match="safetensors"):
        runs.load_run(tmp_path / "r")
    assert not marker.exists()


def test_server_binds_loopback_by_default():
    import typer.main

    from mnistlab.cli import app

    serve = typer.main.get_command(app).get_command(None, "serve")
    host = next(p for p in serve.params if p.name == "host")
    assert host.default == "127.0.0.1"
