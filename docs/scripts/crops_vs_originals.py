"""How much the page reader's crops cost the classifier: on every line of make-pages folders that
was segmented into the right number of digits, the digit read from its crop against the same MNIST
test digit read unprocessed (`truth.json` keeps its `test_index`).

    python docs/scripts/crops_vs_originals.py RUN LINES_RUN PAGE_DIR [PAGE_DIR ...]

prints the digits compared and the four counts (crop right/wrong x original right/wrong).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from mnistlab.data import load_mnist
from mnistlab.handwriting import read_images
from mnistlab.handwriting.pages import load_truth
from mnistlab.predictor import Predictor


def main(run: str, lines: str, folders: list[str]) -> None:
    predictor, mnist = Predictor.load(run), load_mnist()
    counts: collections.Counter[str] = collections.Counter()
    for folder in map(Path, folders):
        truth = load_truth(folder)
        for t, r in zip(truth, read_images([folder / x["file"] for x in truth], predictor, lines=lines), strict=True):
            if isinstance(r, Exception):
                continue
            read: dict[int, list] = collections.defaultdict(list)
            for d in r.digits:
                read[d.line].append(d)
            want: dict[int, list] = collections.defaultdict(list)
            for b in t["digits"]:
                want[b["line"]].append(b)
            if len(read) != len(want):
                continue
            for wl, rl in zip((want[k] for k in sorted(want)), (read[k] for k in sorted(read)), strict=True):
                if len(wl) != len(rl):
                    continue
                originals = mnist.test_images[[b["test_index"] for b in wl]].float() / 255
                orig = predictor.probs(originals).argmax(1).tolist()
                for b, d, o in zip(wl, rl, orig, strict=True):
                    crop = "crop right" if d.digit == b["digit"] else "crop WRONG"
                    counts[f"{crop} / original {'right' if o == b['digit'] else 'WRONG'}"] += 1
    n = sum(counts.values())
    print(f"{n} digits on lines segmented right")
    for k in sorted(counts):
        print(f"  {k}: {counts[k]} ({counts[k] / max(1, n):.2%})")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
