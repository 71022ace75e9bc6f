"""A 4 drawn on a 280x280 canvas, white on black with a round 18-px pen, as the web page's canvas
sends it: the input of the canvas picture in docs/handwriting.md.

    python docs/scripts/canvas_digit.py canvas-4.png
    mnistlab predict canvas-4.png --run RUN --explain docs/figures/handwriting-canvas.png
"""

from __future__ import annotations

import sys

from PIL import Image, ImageDraw

STROKES = [[(172, 40), (88, 172), (228, 170)], [(196, 100), (190, 242)]]


def main(out: str) -> None:
    img = Image.new("L", (280, 280), 0)
    draw = ImageDraw.Draw(img)
    for stroke in STROKES:
        draw.line(stroke, fill=255, width=18, joint="curve")
        for x, y in (stroke[0], stroke[-1]):  # round pen ends
            draw.ellipse((x - 9, y - 9, x + 9, y + 9), fill=255)
    img.save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "canvas-4.png")
