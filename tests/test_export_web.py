"""`mnistlab export-web`: the static page reads a drawn digit in the browser, with no server behind it.

1. The JS port of the MNIST normalisation (normalize.js) against the Python one on the same ink,
   in Node: the same 28x28 numbers (no browser needed).
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
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

pytest.importorskip("onnxruntime")

from mnistlab.export import INPUT, OUTPUT, onnx_session  # noqa: E402
from mnistlab.export_web import MANIFEST, ORT_FILES, PAGE_DIR, build_site, ort_web_cache  # noqa: E402
from mnistlab.handwriting.normalize import digit_mask, match_stroke, normalize_digit, preprocess_digit  # noqa: E402
from mnistlab.handwriting.segment import InkMap  # noqa: E402

NODE = shutil.which("node")
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
    assert diff7 < 0.05 and diff1 < 0.05, (diff7, diff1)
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
