"""`mnistlab loadtest` on a tiny load: the server starts, answers every request, stops, and the
report is written. No timing assertions (the machine may be busy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
