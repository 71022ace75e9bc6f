"""Read a person's own handwriting: images in, MNIST-normalised digits, lines of text out.

images.py loads any common image safely; segment.py finds the ink and the digits; normalize.py
turns each digit into what an MNIST model expects; reader.py ties them to a model; pages.py makes
realistic test pages with ground truth; evaluate.py measures; explain.py draws the steps;
model.py holds the `robust` recipe and the default model.

The public names below are imported lazily, so that `mnistlab.recipes` (which imports model.py
to register the recipe) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "default_model": "model",
    "default_model_dir": "model",
    "preprocess_digit": "normalize",
    "Digit": "reader",
    "Reading": "reader",
    "read_image": "reader",
    "read_images": "reader",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
