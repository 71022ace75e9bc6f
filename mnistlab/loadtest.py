"""A bounded local load test of `mnistlab serve`: N predict requests, C at a time, loopback only.

`run_loadtest` starts the real server (`python -m mnistlab serve --port P`) as a child process on
127.0.0.1 and a free port, waits for /healthz, sends `requests` POST /api/predict uploads of one
real drawn digit (an MNIST test digit as the page's 140x140 PNG) from `concurrency` threads,
then stops the server. Bounded twice: by the request count and by `time_limit_s` (requests not
started by then are counted as not sent). The server's resident memory (VmRSS from
/proc/PID/status, in MiB) is read after the model is loaded and after the last request.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import MnistlabError

HOST = "127.0.0.1"  # never anything else: this tool loads only the local machine


class LoadTestError(MnistlabError):
    """The server would not start, or the load test could not run."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def rss_mib(pid: int, field: str = "VmRSS") -> float | None:
    """Resident memory of process `pid` in MiB (Linux /proc), or None where unavailable.

    `field="VmHWM"` gives the peak resident memory since the process started (the kernel's own
    high-water mark, exact where sampling could miss a short peak)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # the kernel reports kB
    except OSError:
        return None
    return None


def _start_server(
    run: str | None,
    port: int,
    data_dir: str | None,
    start_timeout_s: float,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "mnistlab", "serve", "--host", HOST, "--port", str(port), *(extra_args or [])]
    if run is not None:
        cmd += ["--run", run]
    if data_dir is not None:
        cmd += ["--data-dir", data_dir]
    # stderr to a file, not a pipe nobody reads while the load runs: a full pipe would stall the server
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env)
    proc.log = log  # type: ignore[attr-defined]
    deadline = time.monotonic() + start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = _log_tail(proc)
            raise LoadTestError(f"the server exited with status {proc.returncode}: {msg or 'no message'}")
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    _stop(proc)
    raise LoadTestError(f"the server did not answer /healthz within {start_timeout_s:.0f} s")


def _log_tail(proc: subprocess.Popen) -> str:
    log = getattr(proc, "log", None)
    if log is None:
        return ""
    log.seek(0)
    lines = log.read().strip().splitlines()
    return lines[-1] if lines else ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = getattr(proc, "log", None)
    if log is not None:
        log.close()


def percentiles(ms: list[float]) -> dict[str, float]:
    """Latency summary in ms (2 decimals): n, p50, p95, p99, max, mean; NaNs for no samples.

    The one latency helper: `mnistlab loadtest` and `mnistlab serve --bench` both report with it."""
    if not ms:
        nan = float("nan")
        return {"n": 0, "p50_ms": nan, "p95_ms": nan, "p99_ms": nan, "max_ms": nan, "mean_ms": nan}
    a = np.asarray(ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": len(a),
        "p50_ms": round(float(p50), 2),
        "p95_ms": round(float(p95), 2),
        "p99_ms": round(float(p99), 2),
        "max_ms": round(float(a.max()), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def run_loadtest(
    image_png: bytes,
    expected_text: str | None = None,
    requests: int = 2000,
    concurrency: int = 32,
    run: str | None = None,
    data_dir: str | None = None,
    time_limit_s: float = 600.0,
    start_timeout_s: float = 300.0,
    server_args: list[str] | None = None,
) -> dict[str, Any]:
    """Load the local server with `requests` uploads of `image_png`; returns the measurements.

    `server_args` go to `mnistlab serve` (e.g. ["--workers", "4"]).

    An answer counts as an error unless it is HTTP 200 with JSON digits (and, given
    `expected_text`, reads that text): a wrong reading under load would be an error too.
    """
    import httpx

    if requests < 1 or concurrency < 1:
        raise LoadTestError("--requests and --concurrency must be at least 1")
    port = free_port()
    proc = _start_server(run, port, data_dir, start_timeout_s, server_args)
    url = f"http://{HOST}:{port}/api/predict"
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    next_index = iter(range(requests))
    stop_at = time.monotonic() + time_limit_s

    def worker() -> None:
        client = httpx.Client(timeout=60)  # one keep-alive connection per worker, as a browser
        try:
            while True:
                with lock:
                    if time.monotonic() > stop_at or next(next_index, None) is None:
                        return
                t0 = time.perf_counter()
                problem = None
                try:
                    r = client.post(url, files={"file": ("digit.png", image_png, "image/png")})
                    if r.status_code != 200:
                        problem = f"HTTP {r.status_code}"
                    elif expected_text is not None and r.json().get("text", "").strip() != expected_text:
                        problem = "wrong reading"
                except (httpx.HTTPError, ValueError) as e:
                    problem = type(e).__name__
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    if problem is None:
                        latencies.append(ms)
                    else:
                        errors[problem] = errors.get(problem, 0) + 1
        finally:
            client.close()

    try:
        # one request first: loads the model and warms the caches, so "before" is the served state
        warm = httpx.post(url, files={"file": ("digit.png", image_png, "image/png")}, timeout=120)
        if warm.status_code != 200:
            raise LoadTestError(f"the warm-up request failed: HTTP {warm.status_code} {warm.text[:200]}")
        rss_before = rss_mib(proc.pid)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for f in [pool.submit(worker) for _ in range(concurrency)]:
                f.result()
        wall = time.perf_counter() - t0
        rss_after = rss_mib(proc.pid)
        load_after = os.getloadavg()[0]
    finally:
        _stop(proc)
    done = len(latencies) + sum(errors.values())
    return {
        "requests": requests,
        "concurrency": concurrency,
        "completed": done,
        "not_sent": requests - done,
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "seconds": round(wall, 2),
        "throughput_rps": round(done / wall, 1) if wall > 0 else float("nan"),
        **{k: v for k, v in percentiles(latencies).items() if k in ("p50_ms", "p95_ms", "max_ms")},
        "rss_before_mib": None if rss_before is None else round(rss_before, 1),
        "rss_after_mib": None if rss_after is None else round(rss_after, 1),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(load_after, 2),
        "server_pid_exit": proc.returncode,
    }


def markdown_report(
    result: dict[str, Any], command: str, when: str, machine: str, model: str, hostile: dict[str, Any] | None = None
) -> str:
    """docs/load.md: the command, where and when it ran, and its measurements (and the hostile checks)."""
    r = result
    zero = "yes" if r["errors"] == 0 and r["not_sent"] == 0 else "NO"
    lines = [
        "# Load test of `mnistlab serve`",
        "",
        "Written by the command below (`mnistlab loadtest`): it starts the server on 127.0.0.1 and a free",
        "port, sends POST /api/predict uploads of one drawn digit (an MNIST test digit as the page's",
        "140x140 PNG) from concurrent clients, checks every answer (HTTP 200 and the right digit), then",
        "stops the server. Latency is wall-clock per request as the client saw it, queueing included.",
        "",
        f"- command: `{command}`",
        f"- date: {when}",
        f"- machine: {machine}",
        f"- model: {model}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| requests sent / asked | {r['completed']} / {r['requests']} |",
        f"| concurrency | {r['concurrency']} |",
        f"| zero errors | {zero} ({r['errors']} errors{', ' + str(r['error_kinds']) if r['error_kinds'] else ''}) |",
        f"| latency p50 / p95 / max | {r['p50_ms']} / {r['p95_ms']} / {r['max_ms']} ms |",
        f"| throughput | {r['throughput_rps']} requests/s over {r['seconds']} s |",
        f"| server RSS before / after | {r['rss_before_mib']} / {r['rss_after_mib']} MiB |",
        f"| load average (1 min) before / after | {r['load_average_before']} / {r['load_average_after']} |",
        "",
    ]
    if hostile is not None:
        lines += [
            "## Hostile and heavy use (`--hostile`)",
            "",
            "Then a fresh server of the same run, with an empty model cache (its `default` model untrained)",
            "and a fake `gs` first on its PATH that records any call, gets one check per row",
            f"(`mnistlab.loadtest.run_hostile`; load average {hostile['load_average']} at the end):",
            "",
            hostile_report(hostile),
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# hostile use: what one client can do to the server (issue 21)

# The checks' pass marks; docs/load.md and docs/hardening.md quote them.
PEAK_RSS_LIMIT_MIB = 1536  # 16 concurrent 39.7 MP uploads: the server's peak resident memory
RSS_RETURN_MIB = 100  # afterwards, back within this of where it started
STOP_LIMIT_S = 2.0  # SIGTERM during a heavy request: the process is gone within this
FOREIGN_FORMATS = ("EPS", "PS", "TGA", "ICO", "PCX", "PPM", "SGI", "DDS")


def big_png(side: int = 6300, digit: np.ndarray | None = None) -> bytes:
    """A side x side RGBA PNG (side 6300: 39.7 MP, just under the 40 MP cap) in ~0.2 MB: white
    paper with one digit drawn across the middle third. Written row by row (zlib streaming), so
    making it never holds the decoded picture."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if digit is None:  # a plain "1"
        digit = np.zeros((28, 28), np.uint8)
        digit[4:24, 12:16] = 255
    scale = max(1, side // 3 // 28)
    x0 = (side - 28 * scale) // 2
    white = np.full((side, 4), 255, np.uint8)
    comp = zlib.compressobj(9)
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0))]
    data = []
    for y in range(side):
        row = white
        if 0 <= y - x0 < 28 * scale:
            row = white.copy()
            row[x0 : x0 + 28 * scale, :3] = (255 - np.repeat(digit[(y - x0) // scale], scale))[:, None]
        data.append(comp.compress(b"\0" + row.tobytes()))  # filter type 0 per row
    data.append(comp.flush())
    return b"".join([*parts, chunk(b"IDAT", b"".join(data)), chunk(b"IEND", b"")])


def foreign_images() -> dict[str, bytes]:
    """A small image in each format PIL can parse but the server must refuse unread (415).

    EPS and PS are PostScript programs: PIL hands them to Ghostscript when it decodes them."""
    import io

    from PIL import Image

    img = Image.new("RGB", (28, 28), "white")
    out = {}
    for fmt in FOREIGN_FORMATS:
        if fmt == "PS":  # a bare PostScript program, as `gs` would run it
            out[fmt] = (
                b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 28 28\n%%EndComments\n0 0 moveto 28 28 lineto stroke\nshowpage\n"
            )
            continue
        buf = io.BytesIO()
        img.save(buf, fmt)
        out[fmt] = buf.getvalue()
    return out


def fake_ghostscript(folder: Path) -> Path:
    """A `gs` in `folder` that records every call in folder/gs-calls (and fails): put `folder`
    first on PATH and the file's existence proves Ghostscript was invoked."""
    folder.mkdir(parents=True, exist_ok=True)
    gs = folder / "gs"
    gs.write_text(f'#!/bin/sh\necho "$@" >> "{folder / "gs-calls"}"\nexit 1\n')
    gs.chmod(0o755)
    return folder / "gs-calls"


class _Peak:
    """Samples a process's RSS every 10 ms in a thread: the peak during a `with` block."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> _Peak:
        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, rss_mib(self.pid) or 0.0)
                time.sleep(0.01)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _idle(base: str, timeout_s: float = 120.0) -> None:
    """Wait until the server's work lanes are empty (/readyz)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lanes = httpx.get(f"{base}/readyz", timeout=10).json()["lanes"]
        if all(v["running"] == 0 and v["queued"] == 0 for v in lanes.values()):
            return
        time.sleep(0.1)
    raise LoadTestError(f"the server's lanes were still busy after {timeout_s:.0f} s")


class _Hostile:
    """One hostile session against a running server: its address, the upload helper, the checks."""

    def __init__(self, base: str, proc: subprocess.Popen, image_png: bytes):
        self.base, self.proc, self.image_png = base, proc, image_png
        self.checks: list[dict[str, Any]] = []

    def check(self, name: str, expected: str, measured: str, ok: bool) -> None:
        self.checks.append({"check": name, "expected": expected, "measured": measured, "ok": bool(ok)})

    def upload(self, data: bytes | None = None, name: str = "digit.png", **kw: Any) -> Any:
        import httpx

        data = self.image_png if data is None else data
        return httpx.post(f"{self.base}/api/predict", files={"file": (name, data, "image/png")}, timeout=120, **kw)


def _hostile_big_uploads(h: _Hostile, big: bytes, big_side: int, concurrency: int, peak_limit_mib: float) -> dict:
    """Row 1: `concurrency` big uploads at once; each 200 or 503 + Retry-After, RSS bounded and returned."""
    import httpx

    rss_before = rss_mib(h.proc.pid) or 0.0
    answers: list[tuple[int, str | None, float]] = []
    lock = threading.Lock()

    def one_big() -> None:
        t0 = time.perf_counter()
        try:
            r = h.upload(big, "big.png")
            got = (r.status_code, r.headers.get("retry-after"), time.perf_counter() - t0)
        except httpx.HTTPError as e:
            got = (0, type(e).__name__, time.perf_counter() - t0)
        with lock:
            answers.append(got)

    with _Peak(h.proc.pid) as peak:
        threads = [threading.Thread(target=one_big) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _idle(h.base)
    time.sleep(0.5)
    rss_after = rss_mib(h.proc.pid) or 0.0
    hwm = rss_mib(h.proc.pid, "VmHWM") or peak.peak
    codes = sorted({a[0] for a in answers})
    ok_codes = all(a[0] in (200, 503) for a in answers) and all(a[1] for a in answers if a[0] == 503)
    counts = {c: sum(a[0] == c for a in answers) for c in codes}
    mp = big_side * big_side / 1e6
    h.check(
        f"{concurrency} concurrent {big_side}x{big_side} RGBA PNG uploads ({mp:.1f} MP, {len(big) / 1e3:.0f} kB each)",
        "every answer 200 or 503 with Retry-After",
        ", ".join(f"{n} x {c}" for c, n in counts.items()) + f"; slowest {max(a[2] for a in answers):.1f} s",
        ok_codes,
    )
    h.check(
        "  peak server RSS during them (VmHWM)",
        f"< {peak_limit_mib:.0f} MiB",
        f"{hwm:.0f} MiB (sampled peak {peak.peak:.0f}; {rss_before:.0f} before)",
        hwm < peak_limit_mib,
    )
    h.check(
        "  server RSS after them",
        f"within {RSS_RETURN_MIB} MiB of before",
        f"{rss_after:.0f} MiB ({rss_after - rss_before:+.0f})",
        rss_after - rss_before < RSS_RETURN_MIB,
    )
    return {
        "rss_before_mib": round(rss_before, 1),
        "rss_peak_mib": round(hwm, 1),
        "rss_sampled_peak_mib": round(peak.peak, 1),
        "rss_after_mib": round(rss_after, 1),
    }


def _hostile_untrained_default(h: _Hostile) -> None:
    """Row 2: the untrained default model answers 503 at once while drawn digits keep being read."""
    import httpx

    served: list[int] = []
    stop = threading.Event()

    def drawing() -> None:
        with httpx.Client(base_url=h.base, timeout=60) as c:
            while not stop.is_set():
                served.append(c.post("/api/predict", files={"file": ("d.png", h.image_png, "image/png")}).status_code)

    t = threading.Thread(target=drawing)
    t.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    r = httpx.post(
        f"{h.base}/api/predict?model=default", files={"file": ("d.png", h.image_png, "image/png")}, timeout=60
    )
    untrained_ms = (time.perf_counter() - t0) * 1000
    time.sleep(0.3)
    stop.set()
    t.join()
    h.check(
        "predict with the untrained `default` model, drawn digits read meanwhile",
        "503 at once; the others 200",
        f"{r.status_code} in {untrained_ms:.0f} ms ({r.json().get('detail', '')[:60]}...); "
        f"meanwhile {served.count(200)}/{len(served)} answered 200",
        r.status_code == 503 and untrained_ms < 1000 and served and all(c == 200 for c in served),
    )


def _hostile_foreign_formats(h: _Hostile, gs_calls: Path) -> None:
    """Row 3: formats PIL knows but the server must not parse: 415, and Ghostscript never runs."""
    statuses = {fmt: h.upload(data, f"x.{fmt.lower()}").status_code for fmt, data in foreign_images().items()}
    h.check(
        f"uploads in {', '.join(FOREIGN_FORMATS)} (a fake `gs` first on the server's PATH)",
        "415 each; Ghostscript never called",
        ", ".join(f"{k} {v}" for k, v in statuses.items()) + f"; gs called: {'YES' if gs_calls.exists() else 'no'}",
        all(v == 415 for v in statuses.values()) and not gs_calls.exists(),
    )


def _hostile_browser_side(h: _Hostile, work: Path) -> None:
    """Row 4: DNS rebinding, cross-site posts, errors that name no path, the attack step cap."""
    import httpx

    r = httpx.get(f"{h.base}/healthz", headers={"host": "evil.example"}, timeout=10)
    h.check("`Host: evil.example` (DNS rebinding)", "400", str(r.status_code), r.status_code == 400)
    r = h.upload(headers={"origin": "http://evil.example"})
    h.check(
        "upload with `Origin: http://evil.example` (a cross-site form post)",
        "403",
        str(r.status_code),
        r.status_code == 403,
    )
    r = h.upload(headers={"origin": h.base})
    h.check("upload from the server's own page (same Origin)", "200", str(r.status_code), r.status_code == 200)
    r = h.upload(params={"model": "no-such-run"})
    root = str(Path(os.environ.get("MNISTLAB_RUNS", "runs")).resolve())
    h.check(
        "404 for an unknown model",
        "names no server path",
        f"{r.status_code}: {r.json().get('detail')}",
        r.status_code == 404 and root not in r.text and str(work) not in r.text,
    )
    attack = {"input": [[0.0] * 28] * 28, "target": 3, "method": "cw", "norm": "l2", "steps": 500}
    r = httpx.post(f"{h.base}/api/attack", json=attack, timeout=60)
    h.check(
        "`/api/attack` cw with steps=500",
        "422 (capped per method)",
        f"{r.status_code}: {r.json().get('detail')}",
        r.status_code == 422,
    )


def _hostile_sigterm(h: _Hostile, biggest: bytes) -> None:
    """Row 5: SIGTERM while the heavy lane is full (one 39.7 MP upload decoding, the others queued)."""
    import httpx

    lanes = httpx.get(f"{h.base}/readyz", timeout=10).json()["lanes"]["heavy"]
    in_flight = lanes["workers"] + lanes["waiting_max"]

    def heavy_request() -> None:
        try:
            h.upload(biggest, "big.png")
        except httpx.HTTPError:
            pass  # the server went away under it: expected

    for _ in range(in_flight):
        threading.Thread(target=heavy_request, daemon=True).start()
    running = False
    deadline = time.monotonic() + 30
    while not running and time.monotonic() < deadline:
        running = bool(httpx.get(f"{h.base}/readyz", timeout=10).json()["lanes"]["heavy"]["running"])
        time.sleep(0.05)
    t0 = time.perf_counter()
    h.proc.send_signal(signal.SIGTERM)
    try:
        h.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    stopped_s = time.perf_counter() - t0
    h.check(
        f"SIGTERM with {in_flight} 39.7 MP uploads in flight (one decoding)",
        f"the server exits within {STOP_LIMIT_S:.0f} s",
        f"exited in {stopped_s:.2f} s (status {h.proc.returncode}; a decode was running: {'yes' if running else 'NO'})",
        running and h.proc.returncode is not None and stopped_s < STOP_LIMIT_S,
    )


def run_hostile(
    run: str,
    image_png: bytes,
    big_side: int = 6300,
    big_concurrency: int = 16,
    data_dir: str | None = None,
    server_args: list[str] | None = None,
    start_timeout_s: float = 300.0,
    peak_limit_mib: float = PEAK_RSS_LIMIT_MIB,
) -> dict[str, Any]:
    """Hostile and heavy use of a real `mnistlab serve --run RUN` on 127.0.0.1, one check per row.

    The server runs with an empty model cache (so its `default` model is untrained) and a fake
    `gs` first on its PATH. Rows: `big_concurrency` concurrent `big_side`^2 RGBA PNG uploads
    (every answer 200 or 503 + Retry-After, peak RSS under `peak_limit_mib`, RSS back within
    RSS_RETURN_MIB after); a predict for the untrained default answers 503 at once while drawn
    digits are served; each of FOREIGN_FORMATS answers 415 and Ghostscript is never called; a
    foreign Host header 400; a cross-origin upload 403; no error names the runs folder; an
    attack past its step cap 422; SIGTERM during a heavy request stops the server within
    STOP_LIMIT_S. Returns {"checks": [{"check", "expected", "measured", "ok"}], ...}.
    """
    import shutil

    work = Path(tempfile.mkdtemp(prefix="mnistlab-hostile-"))
    gs_calls = fake_ghostscript(work / "bin")
    env = {**os.environ, "PATH": f"{work / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["MNISTLAB_CACHE"] = str(work / "empty-cache")  # no default model in it
    big = big_png(big_side)
    port = free_port()
    proc = _start_server(run, port, data_dir, start_timeout_s, server_args, env)
    h = _Hostile(f"http://{HOST}:{port}", proc, image_png)
    try:
        warm = h.upload()
        if warm.status_code != 200:
            raise LoadTestError(f"the warm-up request failed: HTTP {warm.status_code} {warm.text[:200]}")
        memory = _hostile_big_uploads(h, big, big_side, big_concurrency, peak_limit_mib)
        _hostile_untrained_default(h)
        _hostile_foreign_formats(h, gs_calls)
        _hostile_browser_side(h, work)
        _hostile_sigterm(h, big if big_side == 6300 else big_png(6300))  # last: it stops the server
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "checks": h.checks,
        "ok": all(c["ok"] for c in h.checks),
        "big_side": big_side,
        "big_concurrency": big_concurrency,
        **memory,
        "load_average": round(os.getloadavg()[0], 2),
    }


def hostile_report(result: dict[str, Any]) -> str:
    """The hostile checks as a Markdown table (appended to docs/load.md by `loadtest --hostile`)."""
    lines = [
        "| check | expected | measured | ok |",
        "|---|---|---|---|",
    ]
    for c in result["checks"]:
        lines.append(f"| {c['check']} | {c['expected']} | {c['measured']} | {'yes' if c['ok'] else 'NO'} |")
    return "\n".join(lines) + "\n"
