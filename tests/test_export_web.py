"""`mnistlab export-web`: the static page reads a drawn digit in the browser, with no server behind it.

1. The JS port of the single-digit path (normalize.js) against the Python one, in Node (no
   browser needed): its numeric building blocks against numpy's, scipy's and PIL's; the whole
   path, grey pixels in -> 28x28 out, on cases that take every branch; and normalize_digit on
   given ink. The same numbers, to float precision (the same bits on x86-64 Linux).
2. The folder served by a plain static file server (python's http.server: no mnistlab API),
   opened in Debian's Chromium with Playwright: a 7 drawn with mouse strokes reads 7; the page's
   28x28 input agrees with `preprocess_digit` on the same drawing and the page's probabilities
   with onnxruntime in Python on that input; every request the page makes is same-origin.
   The screenshot goes to docs/figures/web-static.png only with MNISTLAB_UPDATE_FIGURES=1.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image
from scipy import ndimage

pytest.importorskip("onnxruntime")

from mnistlab.export import INPUT, OUTPUT, onnx_session  # noqa: E402
from mnistlab.export_web import MANIFEST, ORT_FILES, PAGE_DIR, build_site, ort_web_cache  # noqa: E402
from mnistlab.handwriting.normalize import digit_mask, match_stroke, normalize_digit, preprocess_digit  # noqa: E402
from mnistlab.handwriting.segment import InkMap  # noqa: E402

NODE = shutil.which("node")
# Where numpy, scipy and Pillow's wheels do plain IEEE float32/float64 arithmetic (x86-64 Linux:
# no fused multiply-add), normalize.js's ink map is the same bits as Python's; elsewhere (e.g.
# scipy's macOS arm64 wheel fuses its filter sums) only to float precision. normalize.js follows
# Pillow 13's order of the resize passes (earlier Pillows always resize the width first).
BIT_EXACT = sys.platform == "linux" and platform.machine() == "x86_64" and int(PIL.__version__.split(".")[0]) >= 13
CHROMIUM = os.environ.get("MNISTLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
FIGURES = (
    Path(__file__).resolve().parents[1] / "docs" / "figures"
    if os.environ.get("MNISTLAB_UPDATE_FIGURES")
    else Path(tempfile.gettempdir()) / "mnistlab-web-figures"
)


def missing(what: str, hint: str) -> None:
    """As the other browser test: CI must have it, a developer's machine may skip with one line."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} ({hint})", pytrace=False)
    pytest.skip(f"{what} ({hint})")


# ------------------------------------------------------------------------ 1. the port, in Node


def ink_cases(mnist) -> list[tuple[np.ndarray, np.ndarray]]:
    """MNIST test digits enlarged to 60..300 px, as drawn (plain), with a fine pen (thinned) and a
    marker (thickened): the three branches of match_stroke."""
    rng = np.random.default_rng(0)
    cases = []
    for i in range(12):
        img = mnist.test_images[i].numpy().astype(np.float32) / 255
        side = int(rng.integers(60, 300))
        big = np.clip(np.asarray(Image.fromarray(img, mode="F").resize((side, side), Image.Resampling.BILINEAR)), 0, 1)
        if i % 3 == 1:
            big = ndimage.grey_erosion(big, size=(side // 30 + 1,) * 2)
        elif i % 3 == 2:
            big = ndimage.grey_dilation(big, size=(side // 7 + 1,) * 2)
        big = np.pad(big, 10).astype(np.float32)
        cases.append((big, big > 0.35))
    return cases


def test_js_normalisation_is_the_python_one(mnist, tmp_path):
    if NODE is None:
        missing("no node to run normalize.js", "apt-get install nodejs")
    cases, expected, branches = [], [], set()
    for ink, mask in ink_cases(mnist):
        dm = digit_mask(InkMap(ink, mask, 1.0, True, 0.0))  # a clean canvas: the paper's noise is 0
        expected.append((dm, normalize_digit(ink, dm)))
        rows, cols = np.flatnonzero(dm.any(1)), np.flatnonzero(dm.any(0))
        box = np.pad(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 3)
        bmask = np.pad(dm[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 3)
        changed = match_stroke(box, bmask, 20 / max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
        branches.add("same" if changed is box else "thicker" if changed.sum() > box.sum() else "thinner")
        cases.append(
            {
                "w": ink.shape[1],
                "h": ink.shape[0],
                "ink": ink.ravel().tolist(),
                "mask": mask.ravel().astype(int).tolist(),
            }
        )
    assert branches == {"same", "thicker", "thinner"}, branches  # the cases cover every branch
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = f"""
const N = require({json.dumps(str(PAGE_DIR / "normalize.js"))});
const cases = require({json.dumps(str(tmp_path / "cases.json"))});
const out = cases.map((c) => {{
  const ink = Float32Array.from(c.ink);
  const dm = N.digitMask(ink, Uint8Array.from(c.mask), c.w, c.h);
  return {{ mask: Array.from(dm), pixels: Array.from(N.normalizeDigit(ink, dm, c.w, c.h)) }};
}});
process.stdout.write(JSON.stringify(out));
"""
    proc = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    worst = 0.0
    for (dm, pixels), got in zip(expected, json.loads(proc.stdout), strict=True):
        assert np.array_equal(np.array(got["mask"], bool).reshape(dm.shape), dm)
        worst = max(worst, float(np.abs(np.array(got["pixels"]).reshape(28, 28) - pixels).max()))
    print(f"normalize.js vs normalize.py on {len(cases)} digits: max |js - py| = {worst:.2g}")
    assert worst < 1e-5


def test_js_numeric_building_blocks_are_numpy_scipy_and_pil(tmp_path):
    """normalize.js's percentile, median, MAD, Otsu threshold, Gaussian filter and resampling
    against numpy's, scipy's and PIL's on random float32 data with ties, odd and even sizes,
    lines shorter than the filter, shrinking and enlarging: the same bits."""
    if NODE is None:
        missing("no node to run normalize.js", "apt-get install nodejs")
    from scipy.ndimage import gaussian_filter

    from mnistlab.handwriting.normalize import _otsu, _resample, _robust_std

    rng = np.random.default_rng(1)
    stats = [np.round(rng.random(n), 2 if n % 3 else 6).astype(np.float32) for n in (1, 2, 3, 8, 9, 50, 1001)]
    images = [rng.random(shape).astype(np.float32) for shape in ((1, 7), (3, 5), (24, 17), (41, 60))]
    sizes = [(16, 9), (64, 40), (37, 50), (5, 2)]
    filters = {"BOX": Image.Resampling.BOX, "BILINEAR": Image.Resampling.BILINEAR, "BICUBIC": Image.Resampling.BICUBIC}
    data = {
        "stats": [v.tolist() for v in stats],
        "images": [{"w": a.shape[1], "h": a.shape[0], "v": a.ravel().tolist()} for a in images],
        "sizes": sizes,
        "filters": list(filters),
    }
    (tmp_path / "blocks.json").write_text(json.dumps(data))
    script = f"""
const N = require({json.dumps(str(PAGE_DIR / "normalize.js"))});
const d = require({json.dumps(str(tmp_path / "blocks.json"))});
const v32 = (a) => Float32Array.from(a);
const out = {{
  stats: d.stats.map((a) => [N.percentile(v32(a), 10, false), N.percentile(v32(a), 90, false),
    N.percentile(v32(a), 90, true), N.median32(v32(a)), N.robustStd(v32(a)), N.otsu(v32(a))]),
  gauss: d.images.map((m) => [Array.from(N.gaussian(v32(m.v), m.w, m.h, 1.0, "reflect")),
    Array.from(N.gaussian(v32(m.v), m.w, m.h, 3.0, "nearest"))]),
  resized: d.images.map((m) => d.sizes.map(([w, h]) => d.filters.map((f) =>
    Array.from(N.resample(v32(m.v), m.w, m.h, w, h, f))))),
}};
process.stdout.write(JSON.stringify(out));
"""
    proc = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)

    def same(js, py) -> bool:
        js, py = np.asarray(js, np.float64).reshape(np.shape(py)), np.asarray(py, np.float64)
        return np.array_equal(js, py) if BIT_EXACT else np.allclose(js, py, rtol=0, atol=1e-6)

    for v, js in zip(stats, got["stats"], strict=True):
        lo, hi = np.percentile(v, [10, 90])
        py = [lo, hi, np.percentile(v, 90), np.median(v), _robust_std(v), _otsu(v)]
        assert same(js, py), (v.size, js, py)
    for a, (g1, g3), resized in zip(images, got["gauss"], got["resized"], strict=True):
        assert same(g1, gaussian_filter(a, 1.0)) and same(g3, gaussian_filter(a, 3.0, mode="nearest")), a.shape
        for (w, h), per_filter in zip(sizes, resized, strict=True):
            for name, js in zip(filters, per_filter, strict=True):
                assert same(js, _resample(a, w, h, filters[name])), (a.shape, (w, h), name)


def _digit(mnist, i: int, side: int, dark_ink: bool, pad: int = 0, tight: bool = False) -> np.ndarray:
    """MNIST test digit i enlarged to `side` px (bilinear), optionally cropped to its ink first
    (a tight crop) and padded with paper; grey float32 in [0, 1]."""
    a = mnist.test_images[i].numpy().astype(np.float32) / 255
    if tight:
        rows, cols = np.flatnonzero(a.max(1) > 0), np.flatnonzero(a.max(0) > 0)
        a = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = a.shape
    size = (max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w))))
    ink = np.clip(np.asarray(Image.fromarray(a, mode="F").resize(size, Image.Resampling.BILINEAR)), 0, 1)
    ink = np.pad(ink, pad)
    return (1 - ink if dark_ink else ink).astype(np.float32)


def _pen(strokes: list[list[tuple[float, float]]], side: int, width: float) -> np.ndarray:
    """Lines drawn 4x larger and box-averaged down: an anti-aliased pen, as a canvas draws it."""
    from PIL import ImageDraw

    big = Image.new("L", (4 * side, 4 * side), 255)
    draw = ImageDraw.Draw(big)
    for s in strokes:
        draw.line([(4 * x, 4 * y) for x, y in s], fill=0, width=round(4 * width), joint="curve")
    return np.asarray(big.resize((side, side), Image.Resampling.BOX), np.float32) / 255


def whole_path_cases(mnist) -> list[tuple[str, np.ndarray, bool | None]]:
    """(name, grey (H, W) float32 0 black .. 1 white, dark_ink) covering single_digit's branches:
    both polarities, shrunk (> 160 px, BOX), kept (64..160) and enlarged (< 64, BICUBIC), a tight
    crop with no paper away from the ink, uniform and shaded paper, the three pen-width branches,
    and the four ways of finding no digit; and odd shapes (wide, a strip a few pixels across)."""
    from mnistlab.handwriting.evaluate import uci_images

    rng = np.random.default_rng(0)
    cases: list[tuple[str, np.ndarray, bool | None]] = [
        ("canvas 280, dark ink", _digit(mnist, 0, 200, True, pad=40), None),
        ("canvas 200, white ink", _digit(mnist, 1, 150, False, pad=25), None),
        ("canvas 120, dark ink", _digit(mnist, 2, 90, True, pad=15), None),
        ("tight crop 90 px", _digit(mnist, 3, 90, True, tight=True), None),
        ("tight crop 40 px, white ink", _digit(mnist, 4, 40, False, tight=True), None),
        ("thin 1, 280", _pen([[(150, 45), (143, 150), (136, 245)]], 280, 3), None),
        ("fine-pen 7, 280", _pen([[(70, 60), (215, 60)], [(215, 60), (165, 150), (125, 245)]], 280, 2), None),
        ("marker, 200", 1 - ndimage.grey_dilation(1 - _digit(mnist, 11, 140, True, pad=30), size=(25, 25)), None),
        ("wide 400x100", np.pad(_digit(mnist, 6, 90, True), ((5, 5), (150, 160)), constant_values=1), None),
        ("forced white ink on a dark-ink canvas", _digit(mnist, 7, 100, True, pad=10), False),
    ]
    # A photo of a digit: the light falls off across the paper, the ink is the paper darkened,
    # the camera adds noise.
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    light = 0.9 - 0.3 * (xx / 320) * (0.6 + 0.4 * yy / 240)
    ink = np.pad(1 - _digit(mnist, 8, 180, True, pad=30), ((0, 0), (40, 40)))
    shaded = light * (1 - 0.7 * ink) + rng.normal(0, 0.01, light.shape)
    cases.append(("shaded photo 320x240", np.clip(shaded, 0, 1).astype(np.float32), None))
    for k, img in enumerate(uci_images(4)[0][:2]):  # 8x8 scans, enlarged to 32x32 (bicubic)
        cases.append((f"UCI digit {k}, 32 px", np.asarray(img, np.float32) / 255, None))
    strip = np.ones((300, 6), np.float32)
    strip[60:240, 2:4] = 0
    cases.append(("strip 300x6", strip, None))
    dashes = np.ones((300, 1), np.float32)  # sharp edges, but one pixel across: not pen strokes
    dashes[60:240][np.arange(180) // 20 % 2 == 0] = 0
    cases.append(("dashed strip 300x1", dashes, None))
    # No digit: one level; paper noise only; specks; a soft shadow (a shape, but no pen edge); a ramp.
    cases.append(("blank white 100", np.ones((100, 100), np.float32), None))
    specks = np.ones((200, 200), np.float32)
    for y, x in rng.integers(10, 190, (12, 2)):
        specks[y : y + 2, x : x + 2] = 0.1
    cases.append(("specks 200", specks, None))
    cases.append(("noisy paper 200x150", np.clip(0.9 + rng.normal(0, 0.02, (150, 200)), 0, 1).astype(np.float32), None))
    yy, xx = np.mgrid[0:200, 0:200].astype(np.float32)
    shadow = 1 - 0.6 * np.exp(-((yy - 100) ** 2 + (xx - 90) ** 2) / (2 * 45.0**2))
    cases.append(("soft shadow 200", shadow.astype(np.float32), None))
    cases.append(("smooth ramp 200", np.tile(np.linspace(0.15, 0.95, 200, dtype=np.float32), (200, 1)), None))
    return cases


def python_branches(grey: np.ndarray, dark_ink: bool | None) -> tuple[object, str, set[str]]:
    """single_digit on `grey` (as preprocess_digit clips it), the step that decided (normalize.js's
    `reason`) and the branches that ran, told by spies on the functions it calls."""
    from mnistlab.handwriting import normalize as nz

    seen: set[str] = set()
    with pytest.MonkeyPatch.context() as mp:

        def spy(name, record):
            real = getattr(nz, name)

            def wrapper(*args, **kwargs):
                out = real(*args, **kwargs)
                seen.update(record(args, out))
                return out

            mp.setattr(nz, name, wrapper)

        spy("_robust_std", lambda a, out: {"levels"})
        spy("_paper_estimate", lambda a, out: {"shaded"})
        spy("digit_mask", lambda a, out: set() if out.any() else {"dust"})
        spy("_edge_sharpness", lambda a, out: {"smooth"} if out < nz.MIN_EDGE else set())
        spy(
            "match_stroke",
            lambda a, out: {"same" if out is a[0] else "thicker" if out.sum() > a[0].sum() else "thinner"},
        )
        one = nz.single_digit(np.clip(grey.astype(np.float32), 0, 1), dark_ink)
    scale = one.ink.scale
    seen.add("shrunk" if scale < 1 else "enlarged" if scale > 1 else "kept")
    if one.found:
        reason = "digit"
        seen |= {"dark ink" if one.ink.dark_ink else "white ink", "uniform" if one.uniform_paper else "shaded"}
    elif seen & {"smooth", "dust"}:
        (reason,) = seen & {"smooth", "dust"}
    else:  # the paper level was never measured: no paper/ink split
        reason = "faint" if "levels" in seen else "one level"
    return one, reason, seen | {reason}


def run_normalize_js(tmp_path: Path, cases: list[dict], call: str) -> list[dict]:
    """normalize.js in Node on each case (a dict with w, h and pixels); `call` is a JS expression
    of N (the module), c (the case) and px (its pixels, a typed array)."""
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = f"""
const N = require({json.dumps(str(PAGE_DIR / "normalize.js"))});
const cases = require({json.dumps(str(tmp_path / "cases.json"))});
const out = cases.map((c) => {{
  const px = c.rgba ? Uint8ClampedArray.from(c.rgba) : Float32Array.from(c.grey);
  const r = {call};
  return {{ ...r, pixels: Array.from(r.pixels), ink: Array.from(r.ink), mask: Array.from(r.mask) }};
}});
process.stdout.write(JSON.stringify(out));
"""
    proc = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_js_single_digit_path_is_the_python_one(mnist, tmp_path):
    """The whole path, grey pixels in -> 28x28 out: normalize.js's preprocessGrey against
    normalize.single_digit on the same pixels, on cases that take every branch; and the page's
    RGBA entry (transparency over white) against preprocess_digit on the same RGBA image."""
    if NODE is None:
        missing("no node to run normalize.js", "apt-get install nodejs")
    cases = whole_path_cases(mnist)
    expected, branches = [], set()
    for name, grey, dark_ink in cases:
        one, reason, seen = python_branches(grey, dark_ink)
        branches |= seen
        expected.append((name, one, reason))
    wanted = {"shrunk", "kept", "enlarged", "dark ink", "white ink", "uniform", "shaded"}
    wanted |= {"same", "thicker", "thinner", "one level", "faint", "dust", "smooth", "digit"}
    assert wanted <= branches, f"cases miss branches: {wanted - branches}"

    got = run_normalize_js(
        tmp_path,
        [{"w": g.shape[1], "h": g.shape[0], "grey": g.ravel().tolist(), "dark": d} for _, g, d in cases],
        "N.preprocessGrey(px, c.w, c.h, c.dark)",
    )
    worst, lines = 0.0, []
    for (name, one, reason), js in zip(expected, got, strict=True):
        diff = float(np.abs(np.array(js["pixels"], np.float32).reshape(28, 28) - one.crop).max())
        worst = max(worst, diff)
        # the steps on the way: the ink map at working size, its mask, the paper's noise
        ink = np.array(js["ink"], np.float32).reshape(js["height"], js["width"])
        ink_diff = float(np.abs(ink - one.ink.ink).max()) if ink.size else 0.0
        lines.append(f"  {name:40s} {reason:9s} max |js - py| = {diff:.2g} (ink map at working size: {ink_diff:.2g})")
        assert js["reason"] == reason and js["found"] == one.found, (name, js["reason"], reason)
        assert js["polarity"] == pytest.approx(one.polarity, abs=1e-12), name
        assert js["scale"] == pytest.approx(one.ink.scale, abs=1e-12), name
        assert ink.shape == one.ink.ink.shape and ink_diff <= (0 if BIT_EXACT else 1e-6), (name, ink_diff)
        assert np.array_equal(np.array(js["mask"], bool).reshape(ink.shape), one.ink.mask), name
        assert js["noise"] == pytest.approx(one.ink.noise, rel=1e-6, abs=1e-12), name
        if one.found:
            assert (js["dark"], js["uniform"], tuple(js["box"])) == (one.ink.dark_ink, one.uniform_paper, one.box), name
        assert diff < 1e-5, (name, diff)

    # The page's entry: RGBA with transparency (a PNG drawn on a transparent canvas) -> grey on white.
    ink = 1 - _digit(mnist, 9, 150, True, pad=20)
    rgba = np.zeros(ink.shape + (4,), np.uint8)
    rgba[..., :3] = (20, 40, 90)  # a dark blue pen
    rgba[..., 3] = np.round(255 * ink).astype(np.uint8)
    rgba[:10, :10] = (200, 10, 10, 255)  # an opaque corner, and
    rgba[-6:, -6:, 3] = 0  # a fully transparent one
    py = preprocess_digit(Image.fromarray(rgba, "RGBA")).numpy()[0]
    (js,) = run_normalize_js(
        tmp_path,
        [{"w": rgba.shape[1], "h": rgba.shape[0], "rgba": rgba.ravel().tolist()}],
        "N.preprocessRGBA(px, c.w, c.h)",
    )
    rgba_diff = float(np.abs(np.array(js["pixels"], np.float32).reshape(28, 28) - py).max())
    assert py.max() > 0 and js["found"]
    print(f"normalize.js vs single_digit, whole path, {len(cases)} cases: max |js - py| = {worst:.2g}")
    print("\n".join(lines))
    print(f"  {'RGBA with transparency, 190 px':40s} digit     max |js - py| = {rgba_diff:.2g}")
    assert rgba_diff < 1e-5, rgba_diff


# ------------------------------------------------------------------------ 2. the page, in Chromium


@pytest.fixture(scope="module")
def site(mnist, tmp_path_factory):
    if not (ort_web_cache() / ORT_FILES[0]).is_file() and shutil.which("npm") is None:
        missing("no npm to fetch onnxruntime-web with", "apt-get install npm")
    from _web_support import DEFAULT, trained_runs

    out = tmp_path_factory.mktemp("site") / "site"
    manifest = build_site(trained_runs(mnist) / DEFAULT, out)
    assert sorted(manifest["files"]) == sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return out


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def static_url(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def draw(pg, expect, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes on the pad; points in pad units (0..280). Waits for each stroke's reading."""
    box = pg.locator("#pad").bounding_box()

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * box["width"] / 280, box["y"] + y * box["height"] / 280

    for stroke in strokes:
        before = pg.locator("body").get_attribute("data-predictions")
        pg.mouse.move(*at(*stroke[0]))
        pg.mouse.down()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:], strict=False):
            for t in range(1, 9):
                pg.mouse.move(*at(x0 + (x1 - x0) * t / 8, y0 + (y1 - y0) * t / 8))
        pg.mouse.up()
        expect(pg.locator("body")).not_to_have_attribute("data-predictions", before, timeout=20_000)


SEVEN = [[(70, 60), (215, 60)], [(215, 60), (165, 150), (125, 245)]]  # the bar, then the stem
ONE = [[(150, 45), (143, 150), (136, 245)]]


def compare_with_python(pg, site) -> tuple[float, int, int, np.ndarray]:
    """The page's 28x28 input vs preprocess_digit on the pad's own PNG, and the digit each reads."""
    js = np.array(pg.evaluate("Array.from(window.mnistlab.input)"), np.float32).reshape(1, 1, 28, 28)
    assert js.max() == 1.0 and (js > 0.5).sum() >= 40, "the page's input holds a digit"
    js_probs = np.array(pg.evaluate("window.mnistlab.probs"), np.float32)
    png = base64.b64decode(pg.evaluate("document.getElementById('pad').toDataURL('image/png')").split(",", 1)[1])
    py = preprocess_digit(Image.open(io.BytesIO(png))).numpy().reshape(1, 1, 28, 28)
    session = onnx_session(site / "model.onnx")
    py_probs = session.run([OUTPUT], {INPUT: py})[0][0]
    same_input_probs = session.run([OUTPUT], {INPUT: js})[0][0]
    assert np.abs(same_input_probs - js_probs).max() < 1e-5, "onnxruntime-web and onnxruntime disagree"
    return float(np.abs(js - py).max()), int(js_probs.argmax()), int(py_probs.argmax()), np.abs(js - py)


def test_static_page_reads_a_drawn_seven_with_no_server(site, static_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing(f"no Chromium at {CHROMIUM}", "apt-get install -y chromium")
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_context(viewport={"width": 900, "height": 720}).new_page()
            problems: list[str] = []
            requests: list[str] = []
            pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            pg.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            pg.on("request", lambda r: requests.append(r.url))
            pg.goto(static_url + "/")
            expect(pg.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
            expect(pg.locator("#verdict")).to_have_text("no digit")

            draw(pg, expect, SEVEN)
            expect(pg.locator("#verdict")).to_have_text("7")
            expect(pg.locator("#bars .track.top")).to_have_attribute("data-digit", "7")
            expect(pg.locator("#status")).to_contain_text("in this page")
            diff7, js7, py7, _ = compare_with_python(pg, site)
            ms7 = pg.evaluate("window.mnistlab.ms")
            FIGURES.mkdir(parents=True, exist_ok=True)
            pg.screenshot(path=str(FIGURES / "web-static.png"), full_page=True)

            # a fine pen: the port's stroke matching (dilation) runs, and must still agree
            pg.click("#clear")
            expect(pg.locator("#verdict")).to_have_text("no digit")
            pg.fill("#stroke", "5")
            draw(pg, expect, ONE)
            expect(pg.locator("#verdict")).to_have_text("1")
            diff1, js1, py1, _ = compare_with_python(pg, site)
        finally:
            browser.close()
    print(f"in Chromium: {ms7['normalise']:.1f} ms to normalise the 280x280 pad, {ms7['infer']:.1f} ms to infer")
    print(f"page vs preprocess_digit on the same drawing: max |js - py| = {diff7:.2g} (7), {diff1:.2g} (thin 1)")
    assert (js7, py7, js1, py1) == (7, 7, 1, 1)
    assert diff7 < 1e-5 and diff1 < 1e-5, (diff7, diff1)  # the same path as Python's, as in Node
    assert not problems, problems
    own = [u for u in requests if not (u.startswith(static_url + "/") or u.startswith(("data:", "blob:")))]
    assert not own, f"requests that left the page's origin: {own}"
    assert {static_url + "/model.onnx", static_url + "/" + MANIFEST} <= set(requests)
    assert not [u for u in requests if "/api/" in u]


# ------------------------------------------------------------------------ 3. building the folder


@pytest.fixture
def tiny_run(tmp_path):
    """A run folder with an untrained dnn (the page's numbers are not under test here)."""
    from mnistlab import runs
    from mnistlab.models import create_model
    from mnistlab.recipes import resolve_run_config

    run = tmp_path / "tiny"
    run.mkdir()
    runs.atomic_write_json(run / runs.CONFIG, resolve_run_config("dnn", seed=0).to_dict())
    runs.save_weights(create_model("dnn"), run / runs.WEIGHTS, "dnn")
    return run


@pytest.fixture
def fake_ort(tmp_path):
    """Stand-ins for the three onnxruntime-web files, laid out as an npm package (--ort-dir)."""
    dist = tmp_path / "ort-web" / "package" / "dist"
    dist.mkdir(parents=True)
    for name in ORT_FILES:
        (dist / name).write_text(f"// {name}\n")
    return tmp_path / "ort-web"


def export_web(*args: str, capsys) -> tuple[int, str]:
    from mnistlab.cli import main

    try:
        main(["export-web", *args])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_build_rebuild_and_permissions(tiny_run, fake_ort, tmp_path):
    out = tmp_path / "site"
    first = build_site(tiny_run, out, ort_dir=fake_ort)
    assert sorted(first["files"]) == sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert (out / "ort" / "ort.wasm.min.js").read_text() == "// ort.wasm.min.js\n"
    assert all(p.stat().st_mode & 0o444 == 0o444 for p in out.rglob("*")), "a web server must read every file"
    assert first["run"] == "tiny" and first["model"] == "dnn" and first["test_acc"] is None  # untrained, incomplete
    (out / "model.onnx").write_bytes(b"stale")
    build_site(tiny_run, out, opset=13, ort_dir=fake_ort)  # an earlier export is replaced whole
    assert json.loads((out / MANIFEST).read_text())["opset"] == 13 and (out / "model.onnx").read_bytes() != b"stale"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")], "no build folder left behind"


def test_foreign_folder_is_refused_and_left_alone(tiny_run, fake_ort, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, err = export_web(str(tiny_run), str(out), "--ort-dir", str(fake_ort), capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and "not empty and was not made by export-web" in err, err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


def test_no_npm_is_one_line(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "cache"))  # nothing cached yet
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm on it
    code, err = export_web(str(tiny_run), str(tmp_path / "site"), capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and "`npm` was not found" in err and "--ort-dir" in err, err
    assert not (tmp_path / "site").exists()


def test_ort_dir_without_the_files(tiny_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = export_web(str(tiny_run), str(tmp_path / "site"), "--ort-dir", str(tmp_path / "empty"), capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and "no ort.wasm.min.js" in err, err
    assert not (tmp_path / "site").exists()


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    import tarfile

    from mnistlab import export_web

    def fake_pack(dest: Path) -> Path:  # npm answered, but with other bytes than the pinned release
        tgz = dest / "onnxruntime-web-1.30.0.tgz"
        with tarfile.open(tgz, "w:gz") as tar:
            data = b"not onnxruntime"
            info = tarfile.TarInfo("package/dist/ort.wasm.min.js")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return tgz

    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(export_web, "_npm_pack", fake_pack)
    with pytest.raises(export_web.ExportError, match="does not match the pinned sha512"):
        export_web.ensure_ort_web()
    assert not export_web.ort_web_cache().exists()
