"""`mnistlab loadtest` on a tiny load: the server starts, answers every request, stops, and the
report is written. No timing assertions (the machine may be busy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mnistlab.experiment import run_experiment
from mnistlab.loadtest import percentiles, rss_mib
from mnistlab.recipes import resolve_run_config


def test_percentiles_and_rss():
    stats = percentiles([float(v) for v in range(1, 101)])
    assert stats["p50_ms"] == 50.5 and stats["max_ms"] == 100.0 and 95 <= stats["p95_ms"] <= 96
    rss = rss_mib(os.getpid())
    assert rss is None or rss > 10  # this Python with torch loaded holds well over 10 MiB


def test_tiny_load_has_zero_errors_and_writes_the_report(mnist, tmp_path):
    cfg = resolve_run_config("dnn", {"data.train_limit": 2000, "data.test_limit": 200, "train.epochs": 1}, seed=0)
    run_dir = tmp_path / "runs" / "tiny"
    run_experiment(cfg, run_dir=run_dir, mnist=mnist, device="cpu")
    report = tmp_path / "load.md"
    proc = subprocess.run(
        [sys.executable, "-m", "mnistlab", "loadtest", "--requests", "20", "--concurrency", "4"]
        + ["--run", str(run_dir), "--out", str(report), "--json", "--time-limit", "120"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["completed"] == 20 and result["ok"] == 20 and result["errors"] == 0
    assert result["p50_ms"] <= result["p95_ms"] <= result["max_ms"]
    assert result["server_pid_exit"] is not None  # the server was stopped, not left running
    text = report.read_text()
    assert "zero errors | yes" in text and "--requests 20" in text and "p50 / p95 / max" in text


def test_bad_values_are_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "mnistlab", "loadtest", "--requests", "0"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and "--requests" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def tiny_run(mnist, tmp_path_factory):
    cfg = resolve_run_config("dnn", {"data.train_limit": 2000, "data.test_limit": 200, "train.epochs": 1}, seed=0)
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    run_experiment(cfg, run_dir=run_dir, mnist=mnist, device="cpu")
    return run_dir


def test_hostile_use_of_a_real_server(tiny_run, mnist):
    """`mnistlab loadtest --hostile` scaled down (the full size is in docs/load.md): 4 concurrent
    9 MP RGBA PNG uploads against 1 heavy worker + 1 waiting, then every other hostile row, then
    SIGTERM with the heavy lane full. Unbounded (what the server did before), 4 such decodes
    peaked ~1 GB over the start; bounded, one at a time, ~0.1 GB."""
    from mnistlab.loadtest import run_hostile
    from mnistlab.web.bench import canvas_png

    result = run_hostile(
        str(tiny_run),
        canvas_png(mnist.test_images[0]),
        big_side=3000,
        big_concurrency=4,
        server_args=["--heavy-workers", "1", "--heavy-queue", "1"],
    )
    failed = [c for c in result["checks"] if not c["ok"]]
    assert not failed, failed
    assert "2 x 200, 2 x 503" in result["checks"][0]["measured"]  # 1 running + 1 waiting admitted
    assert result["rss_sampled_peak_mib"] - result["rss_before_mib"] < 250, result


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_during_start_up_training(tmp_path, sig):
    """No default model cached: `serve` trains it before listening; a signal then stops it at once."""
    env = {**os.environ, "MNISTLAB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnistlab", "serve", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()  # "no default model yet: training ..."
        assert "training" in line, line
        time.sleep(1.0)  # into the training loop
        t0 = time.perf_counter()
        proc.send_signal(sig)
        rest = proc.communicate(timeout=30)[1]
        stopped_s = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stopped_s < 2.0, stopped_s
    assert proc.returncode != 0 and "Traceback" not in rest and "interrupted" in rest
