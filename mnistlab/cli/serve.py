"""`mnistlab serve`: the web page to draw, photograph, look inside and fool a model.

FastAPI and uvicorn are imported inside the command only, so every other command starts
without paying for them (and works without the `web` extra installed).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from mnistlab.cli._common import DataDir, err, out, print_json
from mnistlab.errors import ConfigError


def _raise_interrupt(signum, frame):  # noqa: ANN001 - a signal handler
    raise KeyboardInterrupt


def serve(
    run: Annotated[
        str | None,
        typer.Option(
            "--run", help="Run folder (or its name under runs/) shown first (default: the handwriting model)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback exposes the page.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Also answer requests for this host name (repeatable; default: localhost, 127.0.0.1, ::1 and --host).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda (one image at a time: the CPU is usually faster).")] = "cpu",
    threads: Annotated[
        int,
        typer.Option(help="Torch threads per request; requests run in parallel, and one small image gains nothing."),
    ] = 1,
    workers: Annotated[int, typer.Option("--workers", help="Light jobs (drawn digits, small photos) run at once.")] = 4,
    heavy_workers: Annotated[
        int, typer.Option("--heavy-workers", help="Heavy jobs (photos over 2.56 MP, attacks) at once.")
    ] = 1,
    heavy_queue: Annotated[
        int, typer.Option("--heavy-queue", help="Heavy jobs waiting; beyond that: 503 + Retry-After.")
    ] = 3,
    bench: Annotated[
        bool, typer.Option("--bench", help="Measure /api/predict latency over HTTP, print, exit.")
    ] = False,
    bench_n: Annotated[int, typer.Option("--bench-n", help="Requests per --bench measurement.")] = 300,
    bench_pad: Annotated[
        int, typer.Option("--bench-pad", help="Side of the drawn-digit PNG (the page sends 140).")
    ] = 140,
    data_dir: DataDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="With --bench: print one JSON object.")] = False,
) -> None:
    """Serve the web page and its JSON API (docs at /docs); Ctrl-C or SIGTERM stops it within a second."""
    try:
        import uvicorn  # noqa: F401

        from mnistlab.web.app import LOCAL_HOSTS, Limits, create_app
        from mnistlab.web.server import bind, is_loopback, run_server
    except ImportError as e:
        raise ConfigError(
            f"the web page needs the 'web' extra ({e.name} is missing): pip install 'mnistlab[web]'"
        ) from None
    if bench_n < 1 or not 28 <= bench_pad <= 2000:
        raise ConfigError("--bench-n must be >= 1 and --bench-pad within 28..2000")
    if not 0 <= port <= 65535:
        raise ConfigError(f"bad port {port}: use 0..65535")
    if threads < 1 or workers < 1 or heavy_workers < 1 or heavy_queue < 0:
        raise ConfigError("--threads, --workers and --heavy-workers must be >= 1, --heavy-queue >= 0")
    # SIGTERM (a service manager, `kill`) stops start-up like Ctrl-C; uvicorn takes both over while serving.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    import torch

    from mnistlab.train import pick_device

    torch.set_num_threads(threads)

    dev = pick_device(device)
    hosts = [*LOCAL_HOSTS, *(allow_host or [])]
    if host not in ("0.0.0.0", "::", ""):
        hosts.append(host)
    limits = Limits(light_workers=workers, heavy_workers=heavy_workers, heavy_waiting=heavy_queue)
    web = create_app(default_run=run, device=dev, allowed_hosts=hosts, limits=limits)
    store = web.state.store
    try:
        if run is None:
            from mnistlab.cli.predict import load_reader

            # Trained here, before listening, with a progress bar: never inside a request.
            load_reader(None, data_dir)
        store.get()  # load it before the first visitor waits
    except KeyboardInterrupt:
        # Interpreter shutdown after a training start takes seconds (garbage-collecting the
        # data set and torch's state, measured ~2.5 s): leave at once. The half-trained
        # model folder is not complete, so the next start trains it again.
        _leave(130, "mnistlab: interrupted")
    if bench:
        _bench(web, store, data_dir, bench_n, bench_pad, json_out)
        return
    sock = bind(host, port)
    if not is_loopback(host):
        err.print(
            f"[bold]warning:[/] binding {host} makes the page reachable from other machines; it has no login. "
            f"Host names answered: {', '.join(hosts)} (add more with --allow-host)"
        )
    shown = f"[{host}]" if ":" in host else host
    out.print(
        f"mnistlab serving {store.default!r} on http://{shown}:{sock.getsockname()[1]}/  (API docs: /docs; Ctrl-C stops)"
    )
    try:
        run_server(web, sock)
    except KeyboardInterrupt:
        pass
    # A heavy job may still be running in a worker thread (a torch call cannot be interrupted):
    # leave without joining it, so that stopping takes well under 2 s in every state.
    _leave(0, "mnistlab serve: stopped")


def _leave(status: int, line: str) -> None:
    err.print(line)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _bench(web, store, data_dir: str | None, bench_n: int, bench_pad: int, json_out: bool) -> None:  # noqa: ANN001
    from mnistlab.cli.core import load_data
    from mnistlab.web.bench import bench_predict

    mnist = load_data(data_dir)
    result = {
        "model": store.default,
        **bench_predict(web, mnist.test_images, mnist.test_labels, n=bench_n, pad=bench_pad),
    }
    if json_out:
        print_json(result)
        return
    for key, label in (
        ("canvas", f"drawn digit ({result['canvas']['size']} PNG in JSON, as the page sends it)"),
        ("photo_5_digits", f"photo of 5 digits ({result['photo_5_digits']['size']} JPEG)"),
    ):
        r = result[key]
        out.print(
            f"{label}, n={r['n']}:\n"
            f"  wall  p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms\n"
            f"  CPU   p50 {r['cpu']['p50_ms']:.1f} ms, p95 {r['cpu']['p95_ms']:.1f} ms, p99 {r['cpu']['p99_ms']:.1f} ms"
            "  (CPU time per request: a bound on its latency on an idle machine)"
        )
    m = result["model_only"]
    out.print(f"the model alone, one 28x28 crop: p50 {m['p50_ms']:.2f} ms, CPU p50 {m['cpu']['p50_ms']:.2f} ms")
    out.print(
        f"model {result['model']}, {result['threads']} torch threads, load average "
        f"{result['load_average_before']} -> {result['load_average_after']}; "
        f"drawn-digit accuracy {result['canvas']['accuracy']:.3f}"
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
