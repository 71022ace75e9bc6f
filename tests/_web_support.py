"""Shared by test_web_api.py and test_web_browser.py: tiny trained runs and test images.

The runs are trained once per pytest session (both test files reuse them) on MNIST slices:
keras-convnet (conv layers, 1 channel), cnn-small (takes 3 channels) and dnn (dense only).
"""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from mnistlab.experiment import run_experiment
from mnistlab.recipes import resolve_run_config

# name -> training images; keras-convnet reads drawn digits well enough after 1 epoch on 10k
RUNS = {"keras-convnet": 10000, "cnn-small": 2000, "dnn": 2000}
DEFAULT = "keras-convnet"
LOCAL = "http://localhost"  # TestClient's base URL: the server answers only to local host names
_root: Path | None = None


def trained_runs(mnist) -> Path:
    """A runs root holding one complete 1-epoch run per entry of RUNS, named after the model."""
    global _root
    if _root is None:
        root = Path(tempfile.mkdtemp(prefix="mnistlab-web-runs-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        for name, limit in RUNS.items():
            overrides = {"data.train_limit": limit, "data.test_limit": 500, "train.epochs": 1}
            cfg = resolve_run_config(name, overrides, seed=0)
            run_experiment(cfg, run_dir=root / name, mnist=mnist, device="cpu")
        _root = root
    return _root


def blank_png(size: int = 140) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), "white").save(buf, format="PNG")
    return buf.getvalue()
