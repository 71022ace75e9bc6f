"""Shared fixtures. Real-data tests read MNIST from $MNISTLAB_DATA (CI points it at the shared
folder); when unset, the shared folder beside the checkout is used if present, else the loader's
normal search (cache, then download)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One torch thread per test process (each xdist worker too), and for the `mnistlab` processes
# tests start: with torch's default of one per core, two busy processes on two cores make a
# run many times slower (mnistlab/threads.py), and the suite once took 31 minutes instead of 4.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MNISTLAB_THREADS", "1")

from mnistlab import threads  # noqa: E402  (imports torch, after OMP_NUM_THREADS is set)

threads.ensure()

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"
if not os.environ.get("MNISTLAB_DATA") and _SHARED.is_dir():
    os.environ["MNISTLAB_DATA"] = str(_SHARED)


@pytest.fixture(scope="session")
def mnist():
    from mnistlab.data import load_mnist

    return load_mnist()


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    """Every test writes its run records under its own temporary folder."""
    monkeypatch.setenv("MNISTLAB_RUNS", str(tmp_path / "runs"))
