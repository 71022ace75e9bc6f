"""Read a person's own handwriting: images in, MNIST-normalised digits, lines of text out.

images.py loads any common image safely; segment.py finds the ink and the digits; normalize.py
turns each digit into the canonical 28x28 crop a Predictor reads; reader.py ties them to a
Predictor; pages.py makes realistic test pages with ground truth; evaluate.py measures;
explain.py draws the steps; model.py says which run is the default reader.
"""

from mnistlab.handwriting.model import default_predictor, default_reader_dir
from mnistlab.handwriting.normalize import preprocess_digit
from mnistlab.handwriting.reader import Digit, Reading, read_image, read_images

__all__ = [
    "Digit",
    "Reading",
    "default_predictor",
    "default_reader_dir",
    "preprocess_digit",
    "read_image",
    "read_images",
]
