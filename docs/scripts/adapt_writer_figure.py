"""docs/figures/adapt-writer.png: two MNIST test digits of each class from 5000 on (the study's
test range) and the same digits as each synthetic writer of `mnistlab adapt-study` writes them
(handwriting/adapt.py: writer, thin, continental), all after the single-digit path (what the
model sees). Run: python docs/scripts/adapt_writer_figure.py"""

from pathlib import Path

import numpy as np
from PIL import Image

from mnistlab.data import load_mnist
from mnistlab.handwriting.adapt import WRITER_TEST, WRITERS, read_digits, styled
from mnistlab.handwriting.normalize import preprocess_digit

mnist = load_mnist()
start, n = WRITER_TEST
labels = mnist.test_labels[start : start + n].numpy()
idx = [start + int(i) for d in range(10) for i in (labels == d).nonzero()[0][:2]]
images = mnist.test_images[idx]
ys = mnist.test_labels[idx].tolist()
plain = [preprocess_digit(1.0 - a.numpy() / 255.0)[0].numpy() for a in images]
rows = [plain] + [[x[0].numpy() for x in read_digits(styled(images, ys, w), ys, [""] * len(ys)).x] for w in WRITERS]
grid = np.concatenate([np.concatenate([np.pad(a, 1) for a in r], 1) for r in rows], 0)
grid = (np.pad(grid, 1) * 255).astype(np.uint8)
out = Path(__file__).resolve().parents[1] / "figures" / "adapt-writer.png"
Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.Resampling.NEAREST).save(out)
print(f"wrote {out}: rows MNIST, {', '.join(WRITERS)}")
