"""Reading people's handwriting: image loading, the pipeline, pages, the CLI (issue 7)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from scipy import ndimage

from mnistlab.config import AugmentConfig
from mnistlab.errors import ImageError
from mnistlab.handwriting import preprocess_digit, read_image
from mnistlab.handwriting.images import load_grey
from mnistlab.handwriting.pages import PageSpec, make_page, score_page
from mnistlab.handwriting.segment import Blob
from mnistlab.predictor import Predictor


def _canvas(mnist, i: int, side: int = 280, dark_ink: bool = False) -> np.ndarray:
    """MNIST test digit i drawn big on a canvas, uint8; white on black unless dark_ink."""
    img = Image.fromarray(mnist.test_images[i].numpy()).resize((side, side), Image.Resampling.BICUBIC)
    a = np.asarray(img)
    return 255 - a if dark_ink else a


@pytest.fixture(scope="session")
def reader_run(mnist, tmp_path_factory):
    """A small robust-style model, trained once per session on a slice (seconds), recorded."""
    from mnistlab.experiment import run_experiment
    from mnistlab.recipes import resolve_run_config

    cfg = resolve_run_config(
        "robust",
        {"data.train_limit": 10000, "data.test_limit": 1000, "train.epochs": 1, "model.widths": "16,32"},
    )
    run_dir = tmp_path_factory.mktemp("reader") / "run"
    out = run_experiment(cfg, run_dir=run_dir, mnist=mnist, device="cpu")
    assert out.result["test_acc"] > 0.9
    return run_dir, Predictor.load(run_dir)


# --------------------------------------------------------------------------------------------
# loading


def _ref_digit() -> np.ndarray:
    """A dark '7' on white paper, 60x40, uint8."""
    a = np.full((60, 40), 240, np.uint8)
    a[8:14, 6:34] = 20
    for y in range(14, 54):
        x = 30 - (y - 14) * 16 // 40
        a[y, x - 3 : x + 3] = 20
    return a


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda a: _encode(Image.fromarray(a), "PNG"),
        lambda a: _encode(Image.fromarray(a).convert("RGB"), "JPEG", quality=95),
        lambda a: _encode(Image.fromarray(a), "BMP"),
        lambda a: _encode(Image.fromarray(a), "GIF"),
        lambda a: _encode(Image.fromarray(a), "WEBP", lossless=True),
        lambda a: _encode(Image.fromarray(a.astype(np.uint16) * 257), "TIFF"),  # 16-bit grey
        lambda a: _encode(Image.fromarray(a).convert("RGB").convert("CMYK"), "JPEG", quality=95),
        lambda a: _encode(Image.fromarray(a).convert("RGB").convert("CMYK"), "TIFF"),
    ],
    ids=["png", "jpeg", "bmp", "gif", "webp", "tiff16", "cmyk-jpeg", "cmyk-tiff"],
)
def test_formats_load_to_the_same_grey(make):
    ref = _ref_digit()
    grey = load_grey(make(ref))
    assert grey.shape == ref.shape and grey.dtype == np.float32
    assert 0 <= grey.min() and grey.max() <= 1
    assert np.abs(grey - ref / 255).mean() < 0.03


def test_gif_first_frame_alpha_on_white_and_exif_rotation():
    ref = _ref_digit()
    frames = [Image.fromarray(ref).convert("P"), Image.fromarray(255 - ref).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert np.abs(load_grey(buf.getvalue()) - ref / 255).mean() < 0.03

    # Black ink on a fully transparent background (a typical canvas export): ink on white.
    rgba = np.zeros((*ref.shape, 4), np.uint8)
    rgba[..., 3] = np.where(ref < 128, 255, 0)  # opaque where the ink is, transparent elsewhere
    grey = load_grey(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert grey[0, 0] == pytest.approx(1.0) and grey[10, 20] < 0.2

    # A phone stores the sensor's pixels rotated and an EXIF tag to turn them upright.
    stored = Image.fromarray(ref).rotate(90, expand=True)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = _encode(stored.convert("RGB"), "JPEG", quality=95, exif=exif.tobytes())
    grey = load_grey(data)
    assert grey.shape == ref.shape
    assert np.abs(grey - ref / 255).mean() < 0.03


def test_bad_images_raise_one_clear_error(tmp_path):
    bomb = _encode(Image.new("1", (8000, 6000)), "PNG")  # 48 MP in a few kB
    with pytest.raises(ImageError, match="too many pixels"):
        load_grey(bomb)
    png = _encode(Image.fromarray(_ref_digit()), "PNG")
    with pytest.raises(ImageError):
        load_grey(png[: len(png) // 2])  # truncated
    with pytest.raises(ImageError, match="empty"):
        load_grey(b"")
    with pytest.raises(ImageError, match="not an image"):
        load_grey(b"hello, I am text")
    with pytest.raises(ImageError, match="too large"):
        load_grey(png, max_bytes=100)
    with pytest.raises(ImageError, match="cannot read|not an image|folder"):
        load_grey(tmp_path / "missing.png")


# --------------------------------------------------------------------------------------------
# the one loader: allow-list, header probe, reduced-size decode (issue 21)


def _page(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A w x h grey 'page' (uint8): paper with a lighting gradient and a few dark strokes."""
    rng = np.random.default_rng(seed)
    a = np.linspace(230, 200, w, dtype=np.float32)[None, :].repeat(h, 0)
    for _ in range(12):
        x, y = int(rng.integers(0, w - w // 8)), int(rng.integers(0, h - h // 8))
        a[y : y + h // 8, x : x + max(3, w // 80)] = 30
    return a.astype(np.uint8)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: _encode(Image.fromarray(a).convert("RGBA"), "PNG"),
        lambda a: _encode(Image.fromarray(a).convert("RGB"), "JPEG", quality=95),
        lambda a: _encode(Image.fromarray(a.astype(np.uint16) * 257), "TIFF"),
        lambda a: _encode(Image.fromarray(a).convert("P"), "GIF"),
    ],
    ids=["png-rgba", "jpeg", "tiff16", "gif"],
)
def test_reduced_decode_matches_the_full_one(make):
    """A big image decoded at reduced size == the full decode box-resized, and its own size is kept."""
    from mnistlab.handwriting.images import load_image

    ref = _page(3300, 2500)
    data = make(ref)
    full = load_grey(data)
    small = load_image(data, max_side=1600)
    assert (small.width, small.height) == (3300, 2500) and small.grey.shape == (1212, 1600)
    assert small.scale == pytest.approx(1600 / 3300)
    want = np.asarray(Image.fromarray(full).resize((1600, 1212), Image.Resampling.BOX))
    assert np.abs(small.grey - want).mean() < 0.01 and 0 <= small.grey.min() and small.grey.max() <= 1
    assert load_image(data, max_side=4000).grey.shape == full.shape  # no reduction asked: none made


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_as_pil_turns_it(orientation):
    from mnistlab.handwriting.images import load_image, probe

    stored = Image.fromarray(_page(90, 60, seed=orientation))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(stored.convert("RGB"), "JPEG", quality=95, exif=exif.tobytes())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("L"), np.float32) / 255
    info = probe(data)
    assert (info.height, info.width) == upright.shape and info.orientation == orientation
    for max_side in (None, 45):
        grey = load_image(data, max_side=max_side).grey
        if max_side is None:
            assert grey.shape == upright.shape and np.abs(grey - upright).mean() < 0.01
        else:  # the reduced picture is the upright one, reduced
            want = np.asarray(Image.fromarray(upright).resize(grey.shape[::-1], Image.Resampling.BOX))
            assert max(grey.shape) == 45 and np.abs(grey - want).mean() < 0.02


def test_probe_reads_the_header_only():
    """A PNG that declares 6000x6000 and holds no real pixel data: the probe answers from the
    header (decoding would fail), and the caps apply before any decoding."""
    from mnistlab.handwriting.images import ImageTooLarge, UnsupportedImage, probe

    def png(width: int, height: int) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"garbage") + chunk(b"IEND", b"")

    info = probe(png(6000, 6000))
    assert (info.format, info.width, info.height, info.pixels) == ("PNG", 6000, 6000, 36_000_000)
    with pytest.raises(UnsupportedImage, match="not an image"):
        load_grey(png(6000, 6000))
    with pytest.raises(ImageTooLarge, match="too many pixels"):
        probe(png(6400, 6400))  # 41 MP
    with pytest.raises(ImageTooLarge, match="10 MB"):
        probe(png(10, 10) + b"\0" * (10 * 2**20), max_bytes=10 * 2**20)


def test_big_decode_costs_its_native_bytes_not_float_copies():
    """Peak memory of reading a 16 MP RGBA PNG at the reader's working size, in a fresh process:
    about its 4 decoded bytes a pixel (64 MB) plus tiles; decoding in full and converting to
    floats (what the loader did before) peaked at ~27 bytes a pixel (430 MB)."""
    code = (
        "import os\n"
        "from mnistlab.loadtest import big_png, rss_mib\n"
        "from mnistlab.handwriting.images import load_image\n"
        "data = big_png(4000)\n"
        "before = rss_mib(os.getpid(), 'VmHWM')\n"
        "g = load_image(data, max_side=1600)\n"
        "print(rss_mib(os.getpid(), 'VmHWM') - before, g.grey.shape, g.width)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    peak_mib = float(out[0])
    assert out[1:] == ["(1600,", "1600)", "4000"]
    assert peak_mib < 4 * 16 + 96, peak_mib  # 4 B/px of 16 MP, plus tiles and the output


@pytest.mark.parametrize("fmt", ["EPS", "PS", "TGA", "ICO", "PCX", "PPM", "SGI", "DDS"])
def test_formats_outside_the_allow_list_are_never_parsed(fmt, tmp_path, monkeypatch):
    """PIL opens all of these; the loader refuses them unread. For PostScript a fake `gs` on PATH
    records any call: PIL itself calls it (the control), the loader never does."""
    import PIL.EpsImagePlugin

    from mnistlab.handwriting.images import UnsupportedImage, probe
    from mnistlab.loadtest import fake_ghostscript, foreign_images

    data = foreign_images()[fmt]
    calls = fake_ghostscript(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(PIL.EpsImagePlugin, "gs_binary", None)  # PIL caches whether gs exists
    with pytest.raises(UnsupportedImage, match="not an image"):
        load_grey(data)
    with pytest.raises(UnsupportedImage):
        probe(data)
    assert not calls.exists()
    with Image.open(io.BytesIO(data)) as img:  # the control: PIL, left to itself, parses it
        assert img.format == ("EPS" if fmt == "PS" else fmt)
        if img.format == "EPS":
            with pytest.raises(Exception):  # noqa: B017 - our fake gs fails, after being called
                img.load()
            assert calls.exists()


# --------------------------------------------------------------------------------------------
# pipeline


def test_preprocess_matches_mnist_normalisation(mnist):
    """An MNIST digit, enlarged and turned into dark ink on paper, comes back close to itself."""
    for i in range(10):
        orig = mnist.test_images[i].float() / 255
        crop = preprocess_digit(_canvas(mnist, i, dark_ink=True).astype(np.float32) / 255)
        assert crop.shape == (1, 28, 28) and crop.min() >= 0 and crop.max() <= 1
        corr = np.corrcoef(crop.numpy().ravel(), orig.numpy().ravel())[0, 1]
        assert corr > 0.75, (i, corr)


def test_bilinear_up_matches_scipy_zoom():
    from scipy import ndimage

    from mnistlab.handwriting.segment import _bilinear_up

    a = np.random.default_rng(0).random((13, 29)).astype(np.float32)
    for shape in [(210, 210), (40, 117), (13, 29)]:
        ref = ndimage.zoom(a, (shape[0] / 13, shape[1] / 29), order=1, mode="nearest")[: shape[0], : shape[1]]
        assert np.abs(_bilinear_up(a, shape) - ref).max() < 1e-5


def test_blank_images_find_no_digit(reader_run):
    _, model = reader_run
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400]
    blanks = {
        "white": np.ones((300, 400)),
        "black": np.zeros((300, 400)),
        "noisy paper with a gradient": 0.6 + 0.3 * xx / 400 + rng.normal(0, 0.02, (300, 400)),
    }
    for name, a in blanks.items():
        r = read_image(np.clip(a, 0, 1).astype(np.float32), model)
        assert not r.found and r.text == "" and r.to_json()["message"] == "no digit found", name
        assert preprocess_digit(np.clip(a, 0, 1).astype(np.float32)).max() == 0, name


def test_a_strip_one_pixel_across_is_no_digit():
    """A 300x1 strip of ink (or one that shrinks to 1 px at working size) holds no pen strokes:
    no digit, not a ValueError from np.gradient."""
    for shape in [(300, 1), (300, 2), (1, 400)]:
        grey = np.ones(shape, np.float32)
        grey[tuple(slice(n // 3, 2 * n // 3) if n > 2 else slice(None) for n in shape)] = 0
        assert preprocess_digit(grey).max() == 0, shape


def test_canvas_digit_read_in_both_polarities(mnist, reader_run):
    _, model = reader_run
    right = {True: 0, False: 0}
    for i in range(20):
        for dark in (True, False):
            png = _encode(Image.fromarray(_canvas(mnist, i, dark_ink=dark)), "PNG")
            r = read_image(png, model)
            assert len(r.digits) == 1, (i, dark, r.text)
            assert r.dark_ink == dark
            right[dark] += r.digits[0].digit == int(mnist.test_labels[i])
            d = r.digits[0]
            assert d.crop.shape == (28, 28) and len(d.probs) == 10
            assert sum(d.probs) == pytest.approx(1, abs=1e-4)
    assert right[True] >= 18 and right[False] >= 18, right


def test_generated_page_is_read(mnist, reader_run):
    _, model = reader_run
    rng = np.random.default_rng(7)
    spec = PageSpec(width=900, height=600, min_lines=3, max_lines=3, min_digits=5, max_digits=6, touch_prob=0.0)
    page, lines, boxes = make_page(mnist, rng, spec)
    r = read_image(_encode(page, "JPEG", quality=80), model)
    s = score_page(lines, r.text)
    assert len(r.text.split("\n")) == len(lines), (lines, r.text)
    assert s["digit_errors"] <= 2, (lines, r.text)
    assert r.to_json()["digits"][0].keys() >= {"digit", "confidence", "box", "line"}
    json.dumps(r.to_json())  # serialisable


def test_pages_enlarged_are_the_same_pages(mnist, tmp_path):
    """`make-pages --size 2400x1800 --format png`: the seed's pages, twice as large, boxes with them."""
    from mnistlab.handwriting.pages import make_pages

    plain = make_pages(mnist, tmp_path / "plain", n=1, seed=3)
    big = make_pages(mnist, tmp_path / "big", n=1, seed=3, size=(2400, 1800), fmt="png")
    assert big[0]["file"] == "page-000.png" and big[0]["lines"] == plain[0]["lines"]
    assert Image.open(tmp_path / "big" / "page-000.png").size == (2400, 1800)
    for a, b in zip(plain[0]["digits"], big[0]["digits"], strict=True):
        assert all(abs(2 * u - v) <= 1 for u, v in zip(a["box"], b["box"], strict=True))


def test_score_page_counts_edits():
    assert score_page(["123", "45"], "123\n45") == {"digits": 5, "digit_errors": 0, "lines": 2, "lines_exact": 2}
    assert score_page(["123", "45"], "13\n475") == {"digits": 5, "digit_errors": 2, "lines": 2, "lines_exact": 0}
    assert score_page(["123"], "") == {"digits": 3, "digit_errors": 3, "lines": 1, "lines_exact": 0}


# --------------------------------------------------------------------------------------------
# augmentation


def test_handwriting_augmentation_is_batched_and_seeded(mnist):
    from mnistlab.augment import augment_batch

    x = mnist.test_images[:64].unsqueeze(1).float() / 255
    cfg = AugmentConfig(rotate=10, elastic=2, thickness=1, pixelate=0.5, blur=1, noise=0.1, contrast=0.5, invert=0.5)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, x)
    inverted = augment_batch(x, AugmentConfig(invert=1.0), torch.Generator())
    assert torch.allclose(inverted, 1 - x)
    thick = augment_batch(x, AugmentConfig(thickness=1.0), torch.Generator().manual_seed(0))
    changed = (thick - x).abs().flatten(1).sum(1) > 0
    assert changed.all()  # every sample thickened or thinned
    blocky = augment_batch(x, AugmentConfig(pixelate=1.0), torch.Generator().manual_seed(0))
    assert blocky.shape == x.shape and 0 <= blocky.min() and blocky.max() <= 1
    # a round trip through 8-16 px loses detail (every sample changed), keeps the ink where it was
    assert ((blocky - x).abs().flatten(1).amax(1) > 0.05).all()
    a, b = (
        x.flatten(1) - x.flatten(1).mean(1, keepdim=True),
        blocky.flatten(1) - blocky.flatten(1).mean(1, keepdim=True),
    )
    assert ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).min() > 0.5  # still the same digit, blurred


def test_touching_pairs_look_like_two_digits_in_one_crop(mnist):
    from mnistlab.augment import touching_pairs

    x = mnist.test_images[:64].unsqueeze(1).float() / 255
    p = touching_pairs(x, 32, torch.Generator().manual_seed(0))
    assert p.shape == (32, 1, 28, 28) and 0 <= p.min() and p.max() <= 1
    assert torch.equal(p, touching_pairs(x, 32, torch.Generator().manual_seed(0)))  # seeded
    ink = p[:, 0] > 0.3
    rows, cols = ink.any(2).sum(1), ink.any(1).sum(1)
    # Fitted into 20x20 like the reader's crops, and wider than high, as two digits side by side.
    assert (torch.maximum(rows, cols) <= 21).all() and (torch.maximum(rows, cols) >= 18).all()
    assert (cols > rows).float().mean() > 0.8


def test_training_with_touching_pairs_lowers_their_confidence(mnist):
    from mnistlab.augment import touching_pairs
    from mnistlab.errors import ConfigError
    from mnistlab.experiment import run_experiment
    from mnistlab.recipes import resolve_run_config

    base = {"data.train_limit": 3000, "data.test_limit": 500, "train.epochs": 2}
    pairs = touching_pairs(mnist.test_images[:500].unsqueeze(1).float() / 255, 200, torch.Generator().manual_seed(1))
    conf = {}
    for frac in (0.0, 0.2):
        out = run_experiment(
            resolve_run_config("robust", {**base, "augment.pairs": frac}), mnist=mnist, record=False, device="cpu"
        )
        assert out.result["test_acc"] > 0.85  # still reads single digits
        with torch.no_grad():
            conf[frac] = float(torch.softmax(out.model.eval()(pairs), 1).max(1).values.mean())
    assert conf[0.2] < conf[0.0] - 0.1, conf
    with pytest.raises(ConfigError, match="do not combine"):
        cfg = resolve_run_config("robust", {**base, "augment.pairs": 0.2, "train.adversarial": "pgd"})
        run_experiment(cfg, mnist=mnist, record=False, device="cpu")


# --------------------------------------------------------------------------------------------
# CLI


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "mnistlab", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_predict_cli_reads_good_files_and_reports_bad_ones(mnist, reader_run, tmp_path):
    run_dir, _ = reader_run
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(_canvas(mnist, i, dark_ink=True)).save(folder / f"d{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("L", (200, 200), 255).save(folder / "blank.png")
    res = _cli("predict", str(folder), "--run", str(run_dir), "--json")
    assert res.returncode == 1
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    by_name = {Path(r["file"]).name: r for r in rows}
    assert set(by_name) == {"d0.png", "d1.png", "d2.png", "broken.jpg", "blank.png"}
    assert "error" in by_name["broken.jpg"]
    assert by_name["blank.png"]["text"] == "" and by_name["blank.png"]["digits"] == []
    read = [by_name[f"d{i}.png"]["text"] for i in range(3)]
    assert sum(t == str(int(mnist.test_labels[i])) for i, t in enumerate(read)) >= 2, read

    explain = tmp_path / "explain.png"
    res = _cli("predict", str(folder / "d0.png"), "--run", str(run_dir), "--explain", str(explain))
    assert res.returncode == 0, res.stderr
    assert Image.open(explain).size[0] > 400


def test_evaluate_images_cli(mnist, reader_run, tmp_path):
    run_dir, _ = reader_run
    for i in range(12):
        label = int(mnist.test_labels[i])
        sub = tmp_path / "mine" / str(label)
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_canvas(mnist, i, 120, dark_ink=True)).save(sub / f"{i}.png")
    gallery = tmp_path / "misses.png"
    res = _cli("evaluate-images", str(tmp_path / "mine"), "--run", str(run_dir), "--json", "--gallery", str(gallery))
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["n"] == 12 and s["acc"] >= 0.75
    assert np.array(s["confusion"]).sum() == 12


# --------------------------------------------------------------------------------------------
# the single-digit path


def _tight(mnist, i: int, side: int, dark_ink: bool, stretch: bool) -> np.ndarray:
    """MNIST test digit i cropped to its ink's bounding box, resized so its longer side (or both
    sides, `stretch`) is `side` px: a scan, a crop or a form box the digit fills."""
    a = mnist.test_images[i].numpy()
    rows, cols = np.flatnonzero(a.max(1) > 0), np.flatnonzero(a.max(0) > 0)
    a = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = a.shape
    size = (side, side) if stretch else (max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w))))
    img = np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BICUBIC))
    return 255 - img if dark_ink else img


@pytest.mark.parametrize("side", [16, 28, 64])
@pytest.mark.parametrize("stretch", [False, True], ids=["aspect", "stretched"])
def test_a_digit_that_fills_the_frame_is_always_found(mnist, reader_run, side, stretch):
    """No page rule drops a tight crop: a thin 1 filling the height, a digit touching all four
    sides, a stretched box. Both polarities; the shape alone picks the single-digit path."""
    _, predictor = reader_run
    right = total = 0
    for i in range(40):
        for dark in (True, False):
            a = _tight(mnist, i, side, dark, stretch)
            r = read_image(a.astype(np.float32) / 255, predictor)
            assert len(r.digits) == 1, (i, dark, side, stretch, r.text)
            right += r.digits[0].digit == int(mnist.test_labels[i])
            total += 1
    assert right / total >= (0.6 if stretch else 0.85), right / total


def test_single_digit_polarity_from_the_border_and_the_histogram(mnist):
    """A thick 0 that fills most of its box is still dark ink on paper, and the other way round."""
    from mnistlab.handwriting.normalize import single_digit

    yy, xx = np.mgrid[0:60, 0:60]
    r = np.hypot(yy - 29.5, xx - 29.5)
    ring = ((r < 30) & (r > 9)).astype(np.float32)  # a fat 0 touching all four sides
    for ink, dark in ((1 - ring, True), (ring, False)):
        one = single_digit(ink)
        assert one.found and one.ink.dark_ink == dark and one.sure_of_polarity
        assert one.crop[14, 14] < 0.2 < 0.5 < one.crop[14, 7]  # the hole stays a hole, the ring ink
    for i in range(30):
        for dark in (True, False):
            one = single_digit(_tight(mnist, i, 40, dark, False).astype(np.float32) / 255)
            if one.sure_of_polarity:
                assert one.ink.dark_ink == dark, (i, dark, one.polarity)


def test_single_path_is_forced_or_avoided(mnist, reader_run):
    _, predictor = reader_run
    line = np.concatenate([_canvas(mnist, i, 80, dark_ink=True) for i in range(4)], axis=1)  # 4 digits on white
    grey = line.astype(np.float32) / 255
    assert len(read_image(grey, predictor).digits) == 4  # a line is not one digit's shape
    assert len(read_image(grey, predictor, single=True).digits) == 1  # forced: all the ink is one digit
    digit = _canvas(mnist, 0, 80, dark_ink=True).astype(np.float32) / 255
    assert len(read_image(digit, predictor, single=False).digits) == 1  # the page path reads it too


def test_predict_single_or_page_and_the_default_reader_is_your_robust_run(mnist, reader_run, tmp_path):
    """--single reads a line as one digit, --page as a line; without --run, predict reads with the
    newest robust run under the runs root (regression: it trained a second copy in the cache)."""
    import shutil

    run_dir, _ = reader_run
    line = np.concatenate([_canvas(mnist, i, 80, dark_ink=True) for i in range(3)], axis=1)
    Image.fromarray(line).save(tmp_path / "line.png")
    runs_root = tmp_path / "runs"
    shutil.copytree(run_dir, runs_root / "robust-20261203-120000-s0")
    env = {"MNISTLAB_RUNS": str(runs_root), "MNISTLAB_CACHE": str(tmp_path / "cache")}
    single = _cli("predict", str(tmp_path / "line.png"), "--single", "--json", env_extra=env)
    page = _cli("predict", str(tmp_path / "line.png"), "--page", "--json", env_extra=env)
    assert single.returncode == 0 and page.returncode == 0, single.stderr + page.stderr
    assert len(json.loads(single.stdout)["digits"]) == 1 and len(json.loads(page.stdout)["digits"]) == 3
    assert f"reading with {runs_root / 'robust-20261203-120000-s0'}" in single.stderr
    assert not (tmp_path / "cache").exists()  # nothing was trained


def test_many_images_read_the_same_in_worker_processes(mnist, reader_run):
    from mnistlab.handwriting.evaluate import reading_speed
    from mnistlab.handwriting.reader import PARALLEL_FROM, read_images

    _, predictor = reader_run
    pngs = [_encode(Image.fromarray(_canvas(mnist, i, 100, dark_ink=True)), "PNG") for i in range(PARALLEL_FROM + 8)]
    pngs[5] = b"not an image"  # an error stays in its place
    here = [r if isinstance(r, Exception) else r.to_json() for r in read_images(pngs, predictor, workers=1)]
    there = [r if isinstance(r, Exception) else r.to_json() for r in read_images(pngs, predictor, workers=2)]
    assert [str(r) for r in here] == [str(r) for r in there] and isinstance(there[5], Exception)
    speed = reading_speed(predictor, mnist, n_digits=40, n_pages=1)
    assert speed["digits_right"] >= 30 and speed["digits_per_s"] > 0 and speed["page_wall_s"] > 0


def _dense_page(mnist, n_lines: int = 6, per_line: int = 5, side: int = 28, gap: int = 10) -> np.ndarray:
    """MNIST test digits, dark on white, in `n_lines` lines `gap` px apart: a page whose line
    gaps are a small share of its ink's height (about 4 %), and no wider than 1.3x that height."""
    page = np.full((2 * gap + n_lines * (side + gap), 2 * gap + per_line * side), 255, np.uint8)
    for j in range(n_lines):
        for k in range(per_line):
            y, x = gap + j * (side + gap), gap + k * side
            digit = _canvas(mnist, j * per_line + k, side, dark_ink=True)
            page[y : y + side, x : x + side] = np.minimum(page[y : y + side, x : x + side], digit)
    return page


def test_a_page_is_never_taken_for_one_digit(mnist, reader_run):
    """Regression (held-out make-pages --seed 1, pages 007/008, read as one digit each since the
    single-digit path was added): a page of close lines, and a grey page photographed with a
    white margin round it, go to the page path when nothing forces a path."""
    from mnistlab.handwriting.normalize import single_digit

    _, predictor = reader_run
    dense = _dense_page(mnist).astype(np.float32) / 255
    assert not single_digit(dense).looks_like_one_digit()
    r = read_image(dense, predictor)
    assert len(r.text.split("\n")) == 6 and len(r.digits) >= 25, r.text
    margin = np.full((120, 150), 1.0, np.float32)  # a thin white margin round grey paper (page-008)
    margin[3:117, 4:146] = 0.62
    for j in range(3):  # three lines of three dark digits on it
        for k in range(3):
            d = _canvas(mnist, 3 * j + k, 22, dark_ink=True).astype(np.float32) / 255
            y, x = 14 + 32 * j, 20 + 26 * k
            margin[y : y + 22, x : x + 22] = np.minimum(margin[y : y + 22, x : x + 22], d * 0.62)
    assert not single_digit(margin).looks_like_one_digit()
    r = read_image(margin, predictor)
    assert len(r.text.split("\n")) == 3 and len(r.digits) >= 7, r.text


def _blob(x0: int, y0: int, x1: int, y1: int) -> Blob:
    return Blob(x0, y0, x1, y1)


def test_a_digit_in_two_pieces_does_not_split_its_line():
    """Regression (tuning make-pages --seed 4, page-008, read as '53' and '019174'): a 5 whose
    flag and bowl are apart starts a second line at the bowl and the digits after it follow the
    bowl, so one written line became two. Lines a pitch apart, straight or slanted, stay apart."""
    from mnistlab.handwriting.segment import _order_lines

    line = [_blob(40, 100, 70, 140), _blob(80, 95, 100, 110), _blob(84, 112, 110, 140)]  # 3, flag, bowl
    line += [_blob(120 + 35 * k, 100, 150 + 35 * k, 140) for k in range(4)]
    assert {b.line for b in _order_lines(line)} == {0}
    two = [_blob(40 + 35 * k, 100, 70 + 35 * k, 140) for k in range(5)]
    two += [_blob(40 + 35 * k, 160, 70 + 35 * k, 200) for k in range(5)]
    assert [b.line for b in _order_lines(two)] == [0] * 5 + [1] * 5
    slanted = [_blob(40 + 35 * k, 100 + 8 * k, 70 + 35 * k, 140 + 8 * k) for k in range(8)]
    slanted += [_blob(40 + 35 * k, 160 + 8 * k, 70 + 35 * k, 200 + 8 * k) for k in range(8)]
    assert [b.line for b in _order_lines(slanted)] == [0] * 8 + [1] * 8


def test_a_lone_unsure_mark_at_the_frame_edge_is_not_a_line():
    """Regression (tuning make-pages --seed 4, page-006: the paper's corner, an L, read as a
    line '5'; make-pages --seed 18, page-001: a corner read as a sure '7' far right of the text):
    a page's lone mark within EDGE_MARGIN of the frame is dropped, and the lines renumbered, when
    the model is unsure of it or it lies outside the block of text; a sure one beside the text,
    an unsure one off the edge, or the only mark in the image stays."""
    from mnistlab.handwriting.reader import _drop_edge_marks

    def page(conf: float, mark: tuple[int, int, int, int]):
        blobs = [_blob(30 + 40 * k, 100, 60 + 40 * k, 140) for k in range(3)]
        blobs += [_blob(30 + 40 * k, 200, 60 + 40 * k, 240) for k in range(3)]
        for j, b in enumerate(blobs):
            b.line = 1 if j < 3 else 2
        lone = _blob(*mark)
        lone.line = 0
        chosen = [(lone, 0)] + [(b, i + 1) for i, b in enumerate(blobs)]
        probs = torch.full((7, 10), 0.0)
        probs[:, 3] = 0.95
        probs[0] = (1 - conf) / 9
        probs[0, 5] = conf
        return chosen, probs

    corner, beside, inland = (2, 2, 27, 30), (2, 150, 25, 185), (40, 40, 65, 68)
    for conf, mark in [(0.4, corner), (0.95, corner), (0.4, beside)]:  # unsure, or outside the text
        chosen, probs = page(conf, mark)
        kept = _drop_edge_marks(chosen, probs, (300, 400))
        assert len(kept) == 6 and [b.line for b, _ in kept] == [0, 0, 0, 1, 1, 1], (conf, mark)
    for conf, mark in [(0.95, beside), (0.4, inland)]:  # sure and beside the text, or off the edge
        chosen, probs = page(conf, mark)
        assert len(_drop_edge_marks(chosen, probs, (300, 400))) == 7, (conf, mark)
    chosen, probs = page(0.4, corner)
    alone = [chosen[0]]  # the only mark in the image answers, however unsure
    assert _drop_edge_marks(alone, probs, (300, 400)) == alone
    # Marks each alone on a line and no line of text (a 16-px stretched 1 the page path cut in
    # two, MNIST test digit 196 in docs/scripts/tight_crops.py): not a page, nothing is dropped.
    top, bottom = _blob(0, 0, 16, 7), _blob(0, 8, 16, 16)
    bottom.line = 1
    probs[1] = probs[0]  # both unsure
    assert _drop_edge_marks([(top, 0), (bottom, 1)], probs, (16, 16)) == [(top, 0), (bottom, 1)]


def test_a_five_in_two_pieces_is_one_digit():
    """Regression (tuning make-pages --seed 4, page-008, '53191754' read '05319174'): a wide 5
    whose bowl is a component apart from its stem and flag, one above the other, was read as
    two digits; a small 5 in two short pieces near no digit was lost. Two specks one above the
    other stay no digit."""
    from mnistlab.handwriting.segment import InkMap, find_digits

    mask = np.zeros((300, 1000), bool)
    zeros = [20, 200, 300, 640, 760, 860]  # x0 of 40 x 70 '0's on one line
    for x0 in zeros:
        mask[100:170, x0 : x0 + 4] = mask[100:170, x0 + 36 : x0 + 40] = True
        mask[100:104, x0 : x0 + 40] = mask[166:170, x0 : x0 + 40] = True
    mask[90:122, 104:164] = True  # wide 5: stem and flag (60 x 32) ...
    mask[124:159, 90:152] = True  # ... and its bowl below (62 x 35): together 74 wide, 69 high
    mask[105:130, 440:500] = True  # small 5 far from the rest: flag (60 x 25) ...
    mask[132:156, 434:470] = True  # ... and bowl (36 x 24)
    mask[110:116, 580:586] = mask[140:146, 580:586] = True  # a colon: two specks
    im = InkMap(mask.astype(np.float32), mask, 1.0, True, 0.0)
    blobs, _ = find_digits(im)
    fives = [(90, 164), (434, 500)]
    assert sorted((b.x0, b.x1) for b in blobs) == sorted([(x0, x0 + 40) for x0 in zeros] + fives)


def test_a_page_under_a_hard_shadow_is_not_taken_for_one_digit(mnist, reader_run):
    """Regression (make-pages --seed 11, page-015, read as "4"): a shadow with a hard edge over
    most of a photographed page is one big blob to the single-digit path's one threshold, so the
    page looked like one digit. Big images that look like one digit are segmented as a page too
    (reader.PAGE_CHECK_SIDE): two lines of two digits or more, and it is a page."""
    from mnistlab.handwriting.normalize import single_digit

    _, predictor = reader_run
    side, gap = 70, 40
    page = np.full((2 * gap + 4 * (side + gap), 2 * gap + 6 * (side + 10)), 0.95, np.float32)
    for j in range(4):
        for k in range(6):
            d = _canvas(mnist, 6 * j + k, side).astype(np.float32) / 255
            y, x = gap + j * (side + gap), gap + k * (side + 10)
            page[y : y + side, x : x + side] = np.minimum(page[y : y + side, x : x + side], 0.95 - 0.85 * d)
    yy, xx = np.mgrid[0 : page.shape[0], 0 : page.shape[1]]
    page[xx < 0.7 * page.shape[1] - 0.3 * yy] *= 0.45  # the shadow of a hand, sharp-edged
    assert single_digit(page).looks_like_one_digit()  # the trap
    r = read_image(page, predictor)
    assert len(r.text.split("\n")) == 4 and len(r.digits) >= 20, r.text


def test_a_paper_edge_in_dashes_does_not_set_the_digit_size():
    """Regression (make-pages --seed 12, page-008, read as nothing): the photo's paper edge broke
    into forty 1-px dashes, whose size became the typical size, and every digit was then dropped
    as "far bigger than the text"."""
    from mnistlab.handwriting.segment import InkMap, find_digits

    mask = np.zeros((900, 1200), bool)
    zeros = [(100 + 90 * k, 150 + 200 * j) for j in range(3) for k in range(4)]  # 12 '0's, 50 x 70
    for x0, y0 in zeros:
        mask[y0 : y0 + 70, x0 : x0 + 5] = mask[y0 : y0 + 70, x0 + 45 : x0 + 50] = True
        mask[y0 : y0 + 5, x0 : x0 + 50] = mask[y0 + 65 : y0 + 70, x0 : x0 + 50] = True
    for k in range(40):  # the paper's left edge: 1-px dashes, 16 px long, 4 px apart
        mask[60 + 20 * k : 76 + 20 * k, 8 + k // 10] = True
    im = InkMap(mask.astype(np.float32), mask, 1.0, True, 0.0)
    blobs, _ = find_digits(im)
    assert sorted((b.x0, b.y0) for b in blobs) == sorted(zeros)


def test_bold_ink_among_specks_is_not_hollowed_into_pieces(mnist, reader_run):
    """Regression (make-pages --seed 32, page-007: 47 errors on one page): the pen's width was the
    plain median over the ink's components, and a shadow's noisy edge left hundreds of 2-px
    specks against two dozen bold digits, so the pen measured 2.7 px for 10-px strokes; the paper
    estimate's opening, narrower than a stroke, took each stroke's core for paper and broke every
    digit into its outline's fragments. Each digit is one blob again."""
    from mnistlab.handwriting.segment import _component_stroke_width, find_digits, ink_map

    rng = np.random.default_rng(0)
    side, gap = 90, 50
    page = np.full((2 * gap + 4 * (side + gap), 2 * gap + 6 * (side + 20)), 0.9, np.float32)
    for j in range(4):
        for k in range(6):
            d = _canvas(mnist, 6 * j + k, side).astype(np.float32) / 255
            d = ndimage.grey_dilation(d, size=7)  # a felt pen: ~12-px strokes
            y, x = gap + j * (side + gap), gap + k * (side + 20)
            page[y : y + side, x : x + side] = np.minimum(page[y : y + side, x : x + side], 0.9 - 0.8 * d)
    page = ndimage.gaussian_filter(page, 1.5)  # out of focus
    noisy = rng.random((30, page.shape[1])) < 0.5  # the paper's top edge in a noisy shadow: specks
    page[:30][noisy] = 0.3
    im = ink_map(page)
    assert _component_stroke_width(im.mask) > 9  # the plain median: 2.2
    blobs, _ = find_digits(im)
    assert len([b for b in blobs if b.y0 > 40]) == 24
    r = read_image(page, reader_run[1])
    assert [len(s) for s in r.text.split("\n")] == [6, 6, 6, 6], r.text


def test_two_touching_digits_are_cut_where_both_models_agree():
    """Regression (make-pages --seed 34, page-016: `04` read `64`): of a component the line
    reader read as two digits, the column with the least ink ran through the 0's hole and gave
    the 0's right half to the 4; the classifier read the left half as a sure 6 (0.93), surer than
    the right cut's 0 (0.87). Now cuts across the component are tried (`segment.pair_cuts`) and
    the reader keeps, of the cuts where the classifier reads the digits the line reader read,
    the one it is surest of."""
    from mnistlab.handwriting.reader import Reading, _finish, _Pending
    from mnistlab.handwriting.segment import pair_cuts

    region = np.zeros((90, 160), bool)
    yy, xx = np.mgrid[0:90, 0:160]
    ring = (((xx - 40) / 38) ** 2 + ((yy - 45) / 44) ** 2 <= 1) & (((xx - 40) / 30) ** 2 + ((yy - 45) / 36) ** 2 > 1)
    region |= ring
    region[0:90, 140:148] = True  # the 4's stem ...
    region[50:58, 78:148] = True  # ... and its bar, touching the 0's side at column 78
    region[0:55, 95:103] = True  # ... and its left stroke
    b = Blob(0, 0, 160, 90, [1])
    cuts = [ps[0].cut[1] for ps in pair_cuts(b, region, 90.0)]
    assert len(cuts) == 9 and any(74 <= c <= 84 for c in cuts), cuts
    # The line reader read "04"; two cuts: through the hole (6 0.93, 4 0.999), at the join (0 0.87, 4 0.99).
    hole = [Blob(0, 0, 52, 90, [1], (0, 52)), Blob(52, 0, 160, 90, [1], (52, 160))]
    join = [Blob(0, 0, 80, 90, [1], (0, 80)), Blob(80, 0, 160, 90, [1], (80, 160))]
    b.splits, b.line_read = [hole, join], [0, 4]
    probs = torch.full((5, 10), 0.001)
    for i, (digit, conf) in enumerate([(2, 0.77), (6, 0.93), (4, 0.999), (0, 0.87), (4, 0.99)]):
        probs[i, digit] = conf
    pending = _Pending(Reading("page", 160, 90), [b], np.zeros((5, 28, 28), np.float32))
    assert _finish(pending, probs).text == "04"
    b.line_read = [6, 4]  # no cut reads what the line reader read: the classifier's surest, as before
    pending = _Pending(Reading("page", 160, 90), [b], np.zeros((5, 28, 28), np.float32))
    assert _finish(pending, probs).text == "64"
