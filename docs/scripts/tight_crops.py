"""Single-digit images that the digit fills: MNIST test digits cropped to their ink's box, at
16 to 64 px, aspect kept or stretched to a square, dark on white and white on black, read as
`mnistlab predict` reads a file (no --single: the reader decides by the image's shape).

    python docs/scripts/tight_crops.py RUN [N]

prints, per size and kind, how many answered "no digit found" and how many were read right.
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from mnistlab.data import load_mnist
from mnistlab.handwriting import read_images
from mnistlab.predictor import Predictor


def tight(img: np.ndarray, side: int, stretch: bool, dark_ink: bool) -> Image.Image:
    rows, cols = np.flatnonzero(img.max(1) > 0), np.flatnonzero(img.max(0) > 0)
    a = img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = a.shape
    size = (side, side) if stretch else (max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w))))
    out = np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BICUBIC))
    return Image.fromarray(255 - out if dark_ink else out)


def main(run: str, n: int = 1000) -> None:
    mnist = load_mnist()
    predictor = Predictor.load(run)
    labels = mnist.test_labels[:n].numpy()
    print(f"{run}: {n} MNIST test digits per cell")
    print("side  kind       ink    no digit   right")
    for side in (16, 28, 64):
        for stretch in (False, True):
            for dark in (True, False):
                imgs = [tight(mnist.test_images[i].numpy(), side, stretch, dark) for i in range(n)]
                readings = list(read_images(imgs, predictor))
                none = sum(not r.found for r in readings)
                right = sum(r.text == str(y) for r, y in zip(readings, labels, strict=True))
                kind = "stretched" if stretch else "aspect"
                print(f"{side:4d}  {kind:9s}  {'dark' if dark else 'light':5s}  {none:8d}  {right / n:.4f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
