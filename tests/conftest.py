"""Shared fixtures. Real-data tests read MNIST from $MNISTLAB_DATA (CI points it at the shared
folder); when unset, the shared folder beside the checkout is used if present, else the loader's
normal search (cache, then download)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
