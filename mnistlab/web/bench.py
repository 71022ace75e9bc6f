"""Latency of the web API as a user's browser meets it: a real uvicorn server, real HTTP requests.

`mnistlab serve --bench` runs `bench_predict`: a drawn digit (an MNIST test digit rendered as
dark ink on white, 140x140, sent as the page sends its pad: JSON with a PNG data URL) and a photo upload of a line of digits, one request at a time over a keep-alive
connection, after a warm-up. The numbers include PNG/JPEG decoding, the handwriting
pipeline, the model and JSON encoding, and the client's own work. Two measures: wall-clock
latency (what it took, here and now: on a shared, busy machine it includes waiting for a
core) and the CPU time each request cost (its latency on an idle machine; see `_timed`).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from mnistlab.handwriting.images import probe
from mnistlab.loadtest import percentiles


@contextlib.contextmanager
def serve_in_background(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run `app` with uvicorn on a free port of `host` in a thread; yields its base URL."""
    import uvicorn

    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP
    # (proto 6, not 0); without it every response whose headers and body go out as two writes
    # waits for the client's delayed ACK (40 ms on Linux) before the body leaves.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="mnistlab-web")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the web server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def canvas_png(digit: torch.Tensor, size: int = 140) -> bytes:
    """A 28x28 uint8 MNIST digit as the page sends its pad: dark ink on white, a 140x140 PNG."""
    ink = Image.fromarray(digit.numpy().astype(np.uint8)).resize((size, size), Image.BILINEAR)
    page = Image.eval(ink, lambda v: 255 - v).convert("RGBA")
    buf = io.BytesIO()
    page.save(buf, format="PNG")
    return buf.getvalue()


def line_photo_jpeg(digits: list[torch.Tensor], cell: int = 120) -> bytes:
    """Digits side by side, dark ink on slightly grey paper with a lighting gradient, as a JPEG."""
    width, height = cell * len(digits) + cell // 2, cell * 2
    paper = np.linspace(225, 200, width, dtype=np.float32)[None, :].repeat(height, 0)
    for k, d in enumerate(digits):
        ink = np.asarray(Image.fromarray(d.numpy().astype(np.uint8)).resize((cell, cell), Image.BILINEAR), np.float32)
        x0, y0 = cell // 4 + k * cell, cell // 2
        paper[y0 : y0 + cell, x0 : x0 + cell] -= ink * 0.75
    buf = io.BytesIO()
    Image.fromarray(paper.clip(0, 255).astype(np.uint8)).convert("RGB").save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _multipart(data: bytes, filename: str, kind: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {kind}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _timed(conn: http.client.HTTPConnection, path: str, body: bytes, kind: str) -> tuple[float, float, dict]:
    """One request: (wall ms, CPU ms of this whole process meanwhile, the JSON answer).

    Requests go one at a time and server and client share this process, so the process CPU
    time spent during a request is what that request costs: its latency on an idle machine.
    The wall time is what it took here, with whatever else the machine was doing.
    """
    cpu, start = time.process_time(), time.perf_counter()
    conn.request("POST", path, body=body, headers={"content-type": kind})
    response = conn.getresponse()
    payload = response.read()
    elapsed, cpu = (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}: {payload[:200]!r}")
    return elapsed, cpu, json.loads(payload)


def bench_model(net: torch.nn.Module, n: int = 300) -> dict[str, float]:
    """The model alone: one canonical 28x28 crop through the network, wall and CPU ms."""
    x = torch.rand(1, 1, 28, 28)
    wall, cpu = [], []
    with torch.no_grad():
        for i in range(n + 20):
            c, w = time.process_time(), time.perf_counter()
            net(x)
            if i >= 20:
                wall.append((time.perf_counter() - w) * 1000)
                cpu.append((time.process_time() - c) * 1000)
    return {**percentiles(wall), "cpu": percentiles(cpu)}


def bench_predict(
    app: Any, images: torch.Tensor, labels: torch.Tensor, n: int = 200, warmup: int = 20, pad: int = 140
) -> dict[str, Any]:
    """Single-image predict latency (client-side, ms) for a canvas digit and for a photo of 5 digits.

    `images`/`labels` are MNIST test digits (uint8 (N, 28, 28)); the i-th request sends digit
    i % N, so the accuracy reported is on real digits drawn the way the page draws them.
    """
    count = min(len(labels), max(n, 1))
    canvases = [canvas_png(images[i], pad) for i in range(count)]
    photos = [line_photo_jpeg([images[(i * 5 + k) % len(labels)] for k in range(5)]) for i in range(max(1, count // 4))]
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "load_average_before": round(os.getloadavg()[0], 2)}
    with serve_in_background(app) as url:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=60)
        try:
            bodies = [
                json.dumps({"image": "data:image/png;base64," + base64.b64encode(png).decode()}).encode()
                for png in canvases
            ]
            for i in range(warmup):
                _timed(conn, "/api/predict", bodies[i % len(bodies)], "application/json")
            wall, cpu, correct = [], [], 0
            for i in range(n):
                ms, cpu_ms, reading = _timed(conn, "/api/predict", bodies[i % len(bodies)], "application/json")
                wall.append(ms)
                cpu.append(cpu_ms)
                correct += reading["text"] == str(int(labels[i % len(bodies)]))
            out["canvas"] = {**percentiles(wall), "cpu": percentiles(cpu), "accuracy": round(correct / n, 4)}
            out["canvas"]["png_bytes"] = int(np.mean([len(c) for c in canvases]))
            out["canvas"]["size"] = f"{pad}x{pad}"

            photo_n = max(1, n // 4)
            wall, cpu = [], []
            for i in range(photo_n + min(5, warmup)):
                body, kind = _multipart(photos[i % len(photos)], "line.jpg", "image/jpeg")
                ms, cpu_ms, _ = _timed(conn, "/api/predict", body, kind)
                if i >= min(5, warmup):
                    wall.append(ms)
                    cpu.append(cpu_ms)
            size = probe(photos[0])
            out["photo_5_digits"] = {
                **percentiles(wall),
                "cpu": percentiles(cpu),
                "size": f"{size.width}x{size.height}",
            }
        finally:
            conn.close()
    out["model_only"] = bench_model(app.state.store.get().net)
    out["load_average_after"] = round(os.getloadavg()[0], 2)
    return out
