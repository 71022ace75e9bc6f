"""`mnistlab serve` under hostile and heavy use (issue 21), in process: the Host allow-list, the
Origin check, formats never parsed, no server path in any answer, a model that is not ready,
the bounded work lanes (503 + Retry-After), the body budget and timeout, attack step caps, and
the documented limits equal to the code's. The same rows against a real server process (memory,
SIGTERM) are tests/test_loadtest.py::test_hostile_use_of_a_real_server."""

from __future__ import annotations

import asyncio
import io
import os
import re
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from _web_support import LOCAL, blank_png  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from mnistlab.experiment import run_experiment  # noqa: E402
from mnistlab.handwriting import images  # noqa: E402
from mnistlab.loadtest import FOREIGN_FORMATS, fake_ghostscript, foreign_images  # noqa: E402
from mnistlab.recipes import resolve_run_config  # noqa: E402
from mnistlab.web import service  # noqa: E402
from mnistlab.web.app import BodyLimit, Limits, create_app  # noqa: E402
from mnistlab.web.pool import Busy, ClientGone, Lane  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs_root(mnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-runs")
    cfg = resolve_run_config("dnn", {"data.train_limit": 1000, "data.test_limit": 100, "train.epochs": 1}, seed=0)
    run_experiment(cfg, run_dir=root / "tiny", mnist=mnist, device="cpu")
    return root


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """No default reading model: MNISTLAB_CACHE points at an empty folder."""
    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def client(runs_root, empty_cache):
    with TestClient(create_app(runs_root=runs_root, default_run="tiny"), base_url=LOCAL) as c:
        yield c


def _upload(client, data: bytes = b"", name: str = "d.png", **kw):
    return client.post("/api/predict", files={"file": (name, data or blank_png(), "image/png")}, **kw)


# ------------------------------------------------------------------------------------ browser side


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.2", ""])
def test_foreign_host_headers_are_400(client, host):
    """A DNS-rebinding page reaches the server under its own name: refused before any work."""
    for r in (client.get("/healthz", headers={"host": host}), _upload(client, headers={"host": host})):
        assert r.status_code == 400, r.text
        assert "bad Host header" in r.json()["detail"] and "--allow-host" in r.json()["detail"]


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8765", "[::1]:8000", "LOCALHOST."])
def test_local_host_names_are_served(client, host):
    assert client.get("/healthz", headers={"host": host}).status_code == 200


def test_allow_host_adds_a_name(runs_root, empty_cache):
    app = create_app(runs_root=runs_root, default_run="tiny", allowed_hosts=["localhost", "box.lan"])
    with TestClient(app, base_url="http://box.lan:8000") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/healthz", headers={"host": "127.0.0.1"}).status_code == 400  # not in this list


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "http://localhost:9999"},  # another port is another origin
        {"origin": "null"},  # a sandboxed frame, a file:// page
        {"sec-fetch-site": "cross-site"},  # a browser that sent no Origin
        {"sec-fetch-site": "same-site"},
    ],
)
def test_cross_origin_posts_are_403(client, headers):
    """Any web site can make a visitor's browser post a form (an upload) here, CORS or not."""
    r = _upload(client, headers=headers)
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = client.post("/api/attack", json={"input": [[0.0] * 28] * 28, "target": 3}, headers=headers)
    assert r.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [{}, {"origin": "http://localhost"}, {"origin": "http://localhost:80"}, {"sec-fetch-site": "same-origin"}],
)
def test_same_origin_and_non_browser_posts_pass(client, headers):
    assert _upload(client, headers=headers).status_code == 200


def test_security_headers_on_every_answer(client):
    for r in (client.get("/"), client.get("/healthz"), _upload(client, b"not an image"), client.get("/nope")):
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"


# ------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("fmt", FOREIGN_FORMATS)
def test_foreign_formats_are_415_and_ghostscript_is_never_called(client, fmt, tmp_path, monkeypatch):
    import PIL.EpsImagePlugin

    calls = fake_ghostscript(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(PIL.EpsImagePlugin, "gs_binary", None)  # PIL caches whether gs exists
    data = foreign_images()[fmt]
    r = _upload(client, data, f"x.{fmt.lower()}")
    assert r.status_code == 415 and "not an image" in r.json()["detail"] and "PNG, JPEG" in r.json()["detail"]
    url = "data:image/png;base64," + __import__("base64").b64encode(data).decode()
    assert client.post("/api/predict", json={"image": url}).status_code == 415
    assert client.post("/api/attack", json={"image": url, "target": 3}).status_code == 415
    assert not calls.exists()


# ------------------------------------------------------------------------------------ no server paths


def test_errors_name_no_server_path(runs_root, empty_cache, caplog):
    broken = runs_root / "broken"
    if not broken.exists():
        import shutil

        shutil.copytree(runs_root / "tiny", broken)
        (broken / "weights.safetensors").write_bytes(b"not safetensors")
    with TestClient(create_app(runs_root=runs_root, default_run="tiny"), base_url=LOCAL) as c:
        answers = [
            _upload(c, params={"model": "no-such-run"}),
            _upload(c, params={"model": "broken"}),
            _upload(c, params={"model": "default"}),  # not trained: its cache folder is not named either
            c.get("/static/../../etc/passwd"),
            c.get("/readyz"),
        ]
    assert [r.status_code for r in answers[:3]] == [404, 500, 503]
    assert "damaged" in answers[1].json()["detail"]
    for r in answers:
        for secret in (str(runs_root), str(empty_cache), str(Path.home()), str(ROOT)):
            assert secret not in r.text, (r.status_code, r.text)
    assert any("broken" in rec.getMessage() for rec in caplog.records)  # the detail is in the server log


def test_public_message_keeps_api_paths():
    text = "no run under /srv/runs/x/ or ~/.cache/m; see GET /api/models, /docs and /readyz"
    assert service.public_message(text) == "no run under <path>/x or <path>/m; see GET /api/models, /docs and /readyz"


# ------------------------------------------------------------------------------------ not ready


def test_untrained_default_model_answers_503_at_once_and_is_never_trained(client, monkeypatch):
    from mnistlab.handwriting import model as hw_model

    def refuse(*args, **kwargs):
        raise AssertionError("the server trained a model inside a request")

    monkeypatch.setattr(hw_model, "train_default_model", refuse)
    t0 = time.perf_counter()
    r = _upload(client, params={"model": "default"})
    assert r.status_code == 503 and time.perf_counter() - t0 < 2.0
    assert "not ready" in r.json()["detail"] and int(r.headers["retry-after"]) > 0
    assert _upload(client).status_code == 200  # the default run is served meanwhile
    assert client.get("/readyz").json()["ready"] is True


def test_readiness_is_honest_without_a_trained_default(runs_root, empty_cache):
    with TestClient(create_app(runs_root=runs_root), base_url=LOCAL) as c:
        health = c.get("/healthz")
        assert health.status_code == 200 and health.json()["ready"] is False  # alive, not ready
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["ready"] is False and "not trained" in ready.json()["detail"]
        assert _upload(c).status_code == 503


# ------------------------------------------------------------------------------------ bounded work


def test_a_full_lane_answers_503_with_retry_after(runs_root, empty_cache, monkeypatch):
    """One heavy job at a time and none waiting: a second attack is refused at once, not queued."""
    started, release = threading.Event(), threading.Event()

    def slow_attack(*args, **kwargs):
        started.set()
        release.wait(30)
        return {"ok": True}

    monkeypatch.setattr(service, "attack", slow_attack)
    app = create_app(runs_root=runs_root, default_run="tiny", limits=Limits(heavy_workers=1, heavy_waiting=0))
    body = {"input": [[0.0] * 28] * 28, "target": 3}
    with TestClient(app, base_url=LOCAL) as c:
        first: list = []
        t = threading.Thread(target=lambda: first.append(c.post("/api/attack", json=body)))
        t.start()
        assert started.wait(30)
        t0 = time.perf_counter()
        second = c.post("/api/attack", json=body)
        assert second.status_code == 503 and time.perf_counter() - t0 < 2.0
        assert int(second.headers["retry-after"]) >= 1 and "busy" in second.json()["detail"]
        assert _upload(c).status_code == 200  # the light lane still serves drawn digits
        assert c.get("/readyz").json()["lanes"]["heavy"]["running"] == 1
        release.set()
        t.join(30)
        assert first[0].status_code == 200
        assert c.post("/api/attack", json=body).status_code == 200  # the slot is free again


def test_a_job_past_its_time_answers_503(runs_root, empty_cache, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(service, "attack", lambda *a, **k: release.wait(30) and {})
    app = create_app(runs_root=runs_root, default_run="tiny", limits=Limits(job_timeout_s=0.3))
    with TestClient(app, base_url=LOCAL) as c:
        r = c.post("/api/attack", json={"input": [[0.0] * 28] * 28, "target": 3})
        release.set()
    assert r.status_code == 503 and "longer than" in r.json()["detail"] and r.headers["retry-after"]


def test_lane_bounds_and_drops_jobs_nobody_waits_for():
    lane = Lane("test", workers=1, waiting=1, timeout_s=10)
    gate = threading.Event()
    ran: list[str] = []

    def job(name: str) -> str:
        gate.wait(10)
        ran.append(name)
        return name

    async def scenario() -> None:
        running = asyncio.ensure_future(lane.run(job, "a"))
        await asyncio.sleep(0.1)

        async def gone() -> bool:
            return True

        with pytest.raises(ClientGone):  # queued, then its client hangs up: dropped unstarted
            await lane.run(job, "b", is_disconnected=gone)
        queued = asyncio.ensure_future(lane.run(job, "c"))
        await asyncio.sleep(0.1)
        with pytest.raises(Busy) as busy:  # 1 running + 1 waiting: full
            lane.submit(job, "d")
        assert busy.value.retry_after >= 1
        gate.set()
        assert await running == "a" and await queued == "c"

    asyncio.run(scenario())
    assert ran == ["a", "c"]
    assert lane.stats() == {"workers": 1, "waiting_max": 1, "running": 0, "queued": 0, "refused": 1, "timed_out": 0}


def _drive(app, messages: list[dict]) -> tuple[int, dict]:
    """Run an ASGI app on one POST with these receive() messages; (status, headers) sent."""
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def test_request_bodies_are_bounded_in_size_time_and_all_together():
    async def ok_app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    chunk = {"type": "http.request", "body": b"x" * 1000, "more_body": True}
    last = {"type": "http.request", "body": b"x", "more_body": False}
    assert _drive(BodyLimit(ok_app, limit=5000), [chunk, last])[0] == 200
    assert _drive(BodyLimit(ok_app, limit=1500), [chunk, chunk, last])[0] == 413
    status, headers = _drive(BodyLimit(ok_app, limit=5000, budget=1500), [chunk, chunk, last])
    assert status == 503 and headers["retry-after"] == "1"
    t0 = time.perf_counter()
    assert _drive(BodyLimit(ok_app, limit=5000, timeout_s=0.3), [chunk])[0] == 408  # then nothing more comes
    assert time.perf_counter() - t0 < 2


# ------------------------------------------------------------------------------------ attacks


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"method": "cw", "norm": "l2", "steps": 500}, 422, "1..100 for cw"),
        ({"method": "pgd", "steps": 55}, 422, "1..54 for pgd with eps searched"),
        ({"method": "bim", "eps": 0.3, "steps": 601}, 422, "steps"),
        ({"method": "pgd", "eps": 0.3, "steps": 600}, 200, None),
        ({"method": "fgsm", "steps": 50}, 200, None),
    ],
)
def test_attack_steps_are_capped_per_method(client, body, status, message):
    r = client.post("/api/attack", json={"input": [[0.0] * 28] * 28, "target": 3, **body})
    assert r.status_code == status, r.text
    if message:
        assert message in r.json()["detail"]
    elif body["method"] == "fgsm":
        assert r.json()["steps"] == 1  # one step, whatever was asked


def test_attack_caps_bound_the_passes():
    for method, eps in (("pgd", None), ("bim", None), ("pgd", 0.3), ("cw", None), ("fgsm", None)):
        per_request = service._ATTACKS_PER_REQUEST["cw" if method == "cw" else "search" if eps is None else "fixed"]
        assert service.max_attack_steps(method, eps) * per_request <= service.MAX_ATTACK_PASSES


# ------------------------------------------------------------------------------------ limits, once


def test_documented_limits_are_the_code_limits():
    """The docs state the loader's numbers: one pixel cap, the upload cap, the file cap."""
    mp = images.MAX_PIXELS // 1_000_000
    upload_mb, file_mb = images.MAX_UPLOAD_BYTES // 2**20, images.MAX_BYTES // 2**20
    docs = {p: (ROOT / p).read_text() for p in ("README.md", "docs/web.md", "docs/handwriting.md", "docs/hardening.md")}
    for path, text in docs.items():
        caps = re.findall(r"\b(\d+)[ -]megapixel", text)  # "N megapixels" is said of the cap only
        caps += re.findall(r"(?:>|over|than|limit is|cap of|up to)\s*(\d+)[ -]?MP\b", text)
        for n in caps:
            assert int(n) == mp, f"{path} says {n} megapixels, the code {mp}"
    for path in ("docs/web.md", "docs/hardening.md"):
        assert f"{upload_mb} MB" in docs[path], path
    assert f"{file_mb} MB" in docs["docs/handwriting.md"] and f"{upload_mb} MB" in docs["docs/handwriting.md"]
    assert service.MAX_PIXELS == images.MAX_PIXELS and service.MAX_UPLOAD_BYTES == images.MAX_UPLOAD_BYTES


def test_big_uploads_go_to_the_heavy_lane(client):
    """A photo over the reader's working size is decoded reduced, in the heavy lane; 40 MP + 1 is 413."""
    side = 2000  # 4 MP: heavy, and still read
    buf = io.BytesIO()
    Image.new("RGB", (side, side), "white").save(buf, "PNG")
    assert service.is_heavy(service.probe_upload(buf.getvalue()))
    r = _upload(client, buf.getvalue(), "big.png")
    assert r.status_code == 200 and (r.json()["width"], r.json()["height"]) == (side, side)
    assert client.get("/readyz").json()["lanes"]["heavy"]["refused"] == 0
