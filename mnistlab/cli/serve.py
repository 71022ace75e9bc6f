"""`mnistlab serve`: the web page to draw, photograph, look inside and fool a model.

FastAPI and uvicorn are imported inside the command only, so every other command starts
without paying for them (and works without the `web` extra installed).
"""

from __future__ import annotations

import ipaddress

import typer

from mnistlab.cli._common import DataDirOption, err, out, print_json
from mnistlab.errors import ConfigError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        run: str = typer.Option(
            None, "--run", help="Run folder (or its name under runs/) shown first (default: the handwriting model)."
        ),
        host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback exposes the page."),
        port: int = typer.Option(8000, help="Port to listen on."),
        device: str = typer.Option("cpu", help="cpu or cuda (one image at a time: the CPU is usually faster)."),
        threads: int = typer.Option(
            1, help="Torch threads per request; requests run in parallel, and one small image gains nothing from more."
        ),
        bench: bool = typer.Option(False, "--bench", help="Measure /api/predict latency over HTTP, print, exit."),
        bench_n: int = typer.Option(300, "--bench-n", help="Requests per --bench measurement."),
        bench_pad: int = typer.Option(140, "--bench-pad", help="Side of the drawn-digit PNG (the page sends 140)."),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        json_out: bool = typer.Option(False, "--json", help="With --bench: print one JSON object."),
    ) -> None:
        """Serve the web page and its JSON API (docs at /docs); Ctrl-C stops it."""
        try:
            import uvicorn

            from mnistlab.web.app import create_app
        except ImportError as e:
            raise ConfigError(
                f"the web page needs the 'web' extra ({e.name} is missing): pip install 'mnistlab[web]'"
            ) from None
        if bench_n < 1 or not 28 <= bench_pad <= 2000:
            raise ConfigError("--bench-n must be >= 1 and --bench-pad within 28..2000")
        if not 0 <= port <= 65535:
            raise ConfigError(f"bad port {port}: use 0..65535")
        import torch

        from mnistlab.train import pick_device

        if threads < 1:
            raise ConfigError(f"bad --threads {threads}: use 1 or more")
        torch.set_num_threads(threads)

        dev = pick_device(device)
        web = create_app(default_run=run, device=dev)
        store = web.state.store
        if run is None:
            from mnistlab.cli.predict import load_reader_model

            load_reader_model(None, data_dir)  # trains the default model once, with a progress bar
        store.get()  # load it before the first visitor waits
        if bench:
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
            return
        if not _is_loopback(host):
            err.print(f"[bold]warning:[/] binding {host} makes the page reachable from other machines; it has no login")
        shown = f"[{host}]" if ":" in host else host
        out.print(f"mnistlab serving {store.default!r} on http://{shown}:{port}/  (API docs: /docs; Ctrl-C stops)")
        uvicorn.run(web, host=host, port=port, log_level="warning", access_log=False)
