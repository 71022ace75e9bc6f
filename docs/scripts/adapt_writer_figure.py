"""docs/figures/adapt-writer.png: MNIST test digits 5000-5009 and the same digits as the synthetic
writer of `mnistlab adapt-study` writes them (handwriting/adapt.py: writer_style), both after the
single-digit path (what the model sees). Run: python docs/scripts/adapt_writer_figure.py"""

from pathlib import Path

import numpy as np
from PIL import Image

from mnistlab.data import load_mnist
from mnistlab.handwriting.adapt import WRITER_TEST, writer_digits
from mnistlab.handwriting.normalize import preprocess_digit

mnist = load_mnist()
start = WRITER_TEST[0]
plain = [preprocess_digit(1.0 - mnist.test_images[i].numpy() / 255.0)[0].numpy() for i in range(start, start + 10)]
styled = [x[0].numpy() for x in writer_digits(mnist, start, 10).x]
rows = [np.concatenate([np.pad(a, 1) for a in r], 1) for r in (plain, styled)]
grid = (np.concatenate(rows, 0) * 255).astype(np.uint8)
out = Path(__file__).resolve().parents[1] / "figures" / "adapt-writer.png"
Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.Resampling.NEAREST).save(out)
print(f"wrote {out}")
