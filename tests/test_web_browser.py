"""The page in a real browser: Debian's Chromium, headless, driven by Playwright.

Draws digits stroke by stroke with mouse events, uploads a photo, looks inside, fools the
model, switches models, and takes the screenshots the docs show (docs/figures/web-*.png, written
there only with MNISTLAB_UPDATE_FIGURES=1).
No browser is downloaded: Chromium comes from the system (`apt-get install chromium`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from _web_support import DEFAULT, trained_runs  # noqa: E402

from mnistlab.web.app import create_app  # noqa: E402
from mnistlab.web.bench import line_photo_jpeg, serve_in_background  # noqa: E402

CHROMIUM = os.environ.get("MNISTLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Screenshots land in docs/figures only when asked (MNISTLAB_UPDATE_FIGURES=1), so a test run
# never dirties the checkout; otherwise they go to a temp folder and are still taken (and fail
# loudly if the page cannot be rendered).
FIGURES = (
    Path(__file__).resolve().parents[1] / "docs" / "figures"
    if os.environ.get("MNISTLAB_UPDATE_FIGURES")
    else Path(tempfile.gettempdir()) / "mnistlab-web-figures"
)
expect = sync_api.expect

if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    if os.environ.get("CI"):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium", pytrace=False)
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(mnist):
    app = create_app(runs_root=trained_runs(mnist), default_run=DEFAULT)
    with serve_in_background(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    pg.goto(server + "/")
    expect(pg.locator("#model option")).not_to_have_count(0)
    yield pg
    context.close()
    assert not problems, problems  # no script error, no CSP violation, nothing fetched that failed


def body_counter(pg, key: str) -> str:
    return pg.locator("body").get_attribute(f"data-{key}") or "0"


def wait_for_new(pg, key: str, before: str, timeout: float = 20_000) -> None:
    expect(pg.locator("body")).not_to_have_attribute(f"data-{key}", before, timeout=timeout)


def draw(pg, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw on the pad with the mouse, one stroke at a time; points are in pad units (0..280)."""
    box = pg.locator("#pad").bounding_box()

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * box["width"] / 280, box["y"] + y * box["height"] / 280

    for stroke in strokes:
        before = body_counter(pg, "predictions")
        pg.mouse.move(*at(*stroke[0]))
        pg.mouse.down()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:], strict=False):
            for t in range(1, 9):
                pg.mouse.move(*at(x0 + (x1 - x0) * t / 8, y0 + (y1 - y0) * t / 8))
        pg.mouse.up()
        wait_for_new(pg, "predictions", before)  # each stroke is read as soon as the pen lifts


SEVEN = [[(70, 60), (215, 60)], [(215, 60), (165, 150), (125, 245)]]  # the bar, then the stem
ONE = [[(140, 45), (138, 150), (136, 245)]]


def test_draw_look_inside_and_fool(page):
    verdict = page.locator("#verdict")
    expect(verdict).to_have_text("no digit")
    draw(page, SEVEN)
    expect(verdict).to_have_text("7")
    expect(page.locator("#confidence")).to_contain_text("% sure")
    # the probability bars: ten of them, the top one is the 7
    expect(page.locator("#bars .track")).to_have_count(10)
    expect(page.locator("#bars .track.top")).to_have_attribute("data-digit", "7")

    # look inside: the maps are for the digit shown; another layer can be picked
    expect(page.locator("body")).to_have_attribute("data-maps-for", body_counter(page, "predictions"))
    expect(page.locator("#maps")).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
    expect(page.locator("#maps-info")).to_contain_text("conv1: 32 channels of 26×26")
    before = body_counter(page, "maps")
    page.select_option("#layer", "conv2")
    wait_for_new(page, "maps", before)
    expect(page.locator("#maps-info")).to_contain_text("conv2: 64 channels of 11×11")

    # fool it: make the 7 say 3
    page.click("#targets button[data-digit='3']")
    before = body_counter(page, "attacks")
    page.click("#fool")
    wait_for_new(page, "attacks", before, timeout=60_000)
    expect(page.locator("#adv-verdict")).to_contain_text("Fooled: it now says 3")
    expect(page.locator("#adv-bars .track.top")).to_have_attribute("data-digit", "3")
    expect(page.locator("#delta-caption")).to_contain_text("perturbation ×")
    page.select_option("#layer", "conv1")
    FIGURES.mkdir(parents=True, exist_ok=True)
    expect(page.locator("#maps-info")).to_contain_text("conv1")
    page.screenshot(path=str(FIGURES / "web-draw.png"), full_page=True)

    # undo takes the strokes back one at a time
    for _ in SEVEN:
        before = body_counter(page, "predictions")
        page.click("#undo")
        wait_for_new(page, "predictions", before)
    expect(verdict).to_have_text("no digit")
    expect(page.locator("#fool")).to_be_disabled()


def test_draw_a_one_then_switch_model(page):
    draw(page, ONE)
    expect(page.locator("#verdict")).to_have_text("1")
    before = body_counter(page, "predictions")
    page.select_option("#model", "cnn-small")  # a run that takes 3-channel input
    wait_for_new(page, "predictions", before)
    expect(page.locator("#status")).to_contain_text("cnn-small")
    expect(page.locator("#layer option")).not_to_have_count(0)
    page.click("#clear")
    expect(page.locator("#verdict")).to_have_text("no digit")


def test_upload_a_photo_of_a_line(page, mnist, tmp_path):
    photo = tmp_path / "line.jpg"
    photo.write_bytes(line_photo_jpeg([mnist.test_images[i] for i in range(5)]))
    before = body_counter(page, "predictions")
    page.set_input_files("#photo", str(photo))
    wait_for_new(page, "predictions", before)
    expect(page.locator("#photo-panel")).to_be_visible()
    text = page.locator("#photo-text").inner_text()
    truth = "".join(str(int(v)) for v in mnist.test_labels[:5])
    assert len(text) == 5 and sum(a == b for a, b in zip(text, truth, strict=True)) >= 4, (text, truth)
    expect(page.locator("#crops button")).to_have_count(5)  # one crop per digit, clickable
    expect(page.locator("#read-text")).to_contain_text(text)
    page.locator("#crops button").nth(2).click()
    expect(page.locator("#verdict")).to_have_text(text[2])
    expect(page.locator("#maps-info")).to_contain_text("conv1")
    expect(page.locator("body")).to_have_attribute("data-maps-for", body_counter(page, "predictions"))
    FIGURES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(FIGURES / "web-photo.png"), full_page=True)


# One simple drawing of each digit (pad units), for teaching; and a style the model was never
# shown: an X.
DIGITS = {
    0: [[(140, 50), (95, 75), (80, 145), (95, 215), (140, 240), (185, 215), (200, 145), (185, 75), (140, 50)]],
    1: ONE,
    2: [[(80, 90), (110, 55), (170, 55), (195, 95), (170, 150), (85, 240), (205, 240)]],
    3: [[(85, 60), (190, 60), (130, 130), (195, 175), (170, 235), (85, 235)]],
    4: [[(170, 40), (70, 170), (210, 170)], [(170, 40), (170, 250)]],
    5: [[(190, 50), (95, 50), (90, 130), (170, 130), (195, 185), (160, 240), (85, 235)]],
    6: [[(180, 50), (110, 110), (85, 190), (120, 245), (180, 225), (185, 170), (130, 155), (90, 190)]],
    7: SEVEN,
    8: [[(140, 140), (95, 100), (140, 50), (185, 100), (140, 140), (90, 190), (140, 245), (190, 190), (140, 140)]],
    9: [[(185, 100), (140, 50), (90, 90), (110, 140), (185, 110), (185, 50), (180, 250)]],
}
CROSS = [[(70, 60), (210, 240)], [(210, 60), (70, 240)]]


@pytest.fixture
def teach_page(browser, mnist, tmp_path):
    """The page on a server of its own, over a copy of the runs: teaching adds a run to its root."""
    root = tmp_path / "runs"
    shutil.copytree(trained_runs(mnist), root)
    with serve_in_background(create_app(runs_root=root, default_run=DEFAULT)) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        problems: list[str] = []
        pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        pg.goto(url + "/")
        expect(pg.locator("#model option")).not_to_have_count(0)
        yield pg
        context.close()
    assert not problems, problems


def test_teach_mode_adapts_to_drawn_digits_and_shows_the_original_beside(teach_page):
    page = teach_page
    verdict = page.locator("#verdict")
    draw(page, CROSS)
    expect(verdict).not_to_have_text("no digit")
    before_teaching = verdict.inner_text()
    taught = (int(before_teaching) + 1) % 10  # the X will be taught as a digit it is not read as
    page.click("#clear")
    page.select_option("#teach-shots", "2")
    page.click("#teach-start")
    for _ in range(20):
        label = int(page.locator("#teach-panel").get_attribute("data-next"))
        draw(page, CROSS if label == taught else DIGITS[label])
        page.click("#teach-add")
    expect(page.locator("#teach-prompt")).to_contain_text("press Teach")
    before = body_counter(page, "teaches")
    page.click("#teach-go")
    wait_for_new(page, "teaches", before, timeout=60_000)
    expect(page.locator("#teach-status")).to_contain_text("taught with 20 digits")
    new_model = page.locator("#model").input_value()
    assert new_model.startswith(f"{DEFAULT}-taught-"), new_model
    # the new model is listed in the picker, and reads the X as it was taught; the original beside
    draw(page, CROSS)
    expect(verdict).to_have_text(str(taught))
    expect(page.locator("#compare")).to_contain_text(f"original ({DEFAULT}): {before_teaching}")
    FIGURES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(FIGURES / "web-teach.png"), full_page=True)
    page.click("#clear")
    page.select_option("#model", DEFAULT)  # back to the original: nothing beside it
    expect(page.locator("#compare")).to_have_text("")
