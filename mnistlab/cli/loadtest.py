"""`mnistlab loadtest`: a bounded local load test of `mnistlab serve`, written into docs/load.md."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from mnistlab.cli._common import DataDir, JsonObject, err, out, print_json


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def loadtest(
    requests: Annotated[int, typer.Option("--requests", help="Predict requests to send in all.")] = 2000,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Clients sending at the same time.")] = 32,
    run: Annotated[
        str | None, typer.Option("--run", help="Run to serve (default: what `mnistlab serve` serves).")
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write the report (Markdown) here, e.g. docs/load.md.")
    ] = None,
    digit: Annotated[int, typer.Option("--digit", help="Index of the MNIST test digit sent as the drawn image.")] = 0,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Stop sending after this many seconds.")] = 600.0,
    data_dir: DataDir = None,
    json_out: JsonObject = False,
    hostile: Annotated[
        bool,
        typer.Option(
            "--hostile",
            help="Then the hostile checks (needs --run): 39.7 MP uploads at once, untrained model, foreign formats, "
            "Host/Origin, SIGTERM under load.",
        ),
    ] = False,
    big_side: Annotated[
        int, typer.Option("--big-side", help="With --hostile: side of the big RGBA PNG uploads.")
    ] = 6300,
    big_concurrency: Annotated[
        int, typer.Option("--big-concurrency", help="With --hostile: big uploads at once.")
    ] = 16,
    workers: Annotated[
        int | None, typer.Option("--workers", help="The server's light workers (`serve --workers`).")
    ] = None,
) -> None:
    """Start the server on 127.0.0.1, send N predict requests C at a time, stop it; report errors, latency, memory."""
    from mnistlab.cli.core import load_data
    from mnistlab.errors import ConfigError
    from mnistlab.loadtest import markdown_report, run_hostile, run_loadtest
    from mnistlab.web.bench import canvas_png

    if requests < 1 or concurrency < 1 or time_limit <= 0:
        raise ConfigError("--requests and --concurrency must be >= 1 and --time-limit > 0")
    if hostile and run is None:
        raise ConfigError("--hostile needs --run RUN (its server runs with an empty model cache)")
    if not 28 <= big_side <= 6324 or big_concurrency < 1:  # 6324^2 is the 40 MP cap
        raise ConfigError("--big-side must be within 28..6324 and --big-concurrency >= 1")
    mnist = load_data(data_dir)
    if not 0 <= digit < len(mnist.test_labels):
        raise ConfigError(f"bad --digit {digit}: use 0..{len(mnist.test_labels) - 1}")
    image = canvas_png(mnist.test_images[digit])
    expected = str(int(mnist.test_labels[digit]))
    err.print(f"load test: {requests} requests, {concurrency} concurrent, on 127.0.0.1 (starting the server)")
    server_args = ["--workers", str(workers)] if workers is not None else None
    result = run_loadtest(
        image,
        expected,
        requests,
        concurrency,
        run=run,
        data_dir=data_dir,
        time_limit_s=time_limit,
        server_args=server_args,
    )
    result["model"] = run or "the default of `mnistlab serve`"
    checks = None
    if hostile:
        err.print(f"hostile checks: {big_concurrency} concurrent {big_side}x{big_side} uploads, then the rest")
        checks = run_hostile(run, image, big_side, big_concurrency, data_dir=data_dir, server_args=server_args)
        result["hostile"] = checks
    if out_path is not None:
        command = "mnistlab " + shlex.join(sys.argv[1:])
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(markdown_report(result, command, when, _machine(), result["model"], checks))
    if json_out:
        print_json(result)
    else:
        r = result
        out.print(
            f"{r['completed']}/{r['requests']} requests, {r['errors']} errors {r['error_kinds'] or ''}\n"
            f"latency p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, max {r['max_ms']} ms; "
            f"{r['throughput_rps']} requests/s\n"
            f"server RSS {r['rss_before_mib']} -> {r['rss_after_mib']} MiB"
            + (f"; report written to {out_path}" if out_path else "")
        )
        for c in (checks or {}).get("checks", []):
            out.print(
                f"{'ok  ' if c['ok'] else 'FAIL'} {c['check'].strip()}: {c['measured']} (expected {c['expected']})"
            )
    if result["errors"] or result["not_sent"] or (checks is not None and not checks["ok"]):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("loadtest")(loadtest)
