"""The printable sheet a person fills with their digits, and reading a phone photo of it.

    draw_sheet(columns=8).save("sheet.pdf")     # a row of boxes per digit, four corner marks
    digits = read_sheet("photo.jpg")            # Digits: every filled box, labelled by its row

The sheet is drawn in its own coordinates (SHEET_W x SHEET_H, A4's proportions). Four solid
black squares mark its corners; in a photo they are found as the solid, square dark blobs, the
photo is warped back to the sheet's coordinates from their centres (a perspective transform),
and each box's inside (less a margin, so the printed box lines stay out) goes through the
single-digit path, `preprocess_digit`, as `predict --single` reads a digit. Empty boxes are
skipped: fill as many boxes per row as you like.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from mnistlab.errors import DataError
from mnistlab.handwriting.adapt import Digits
from mnistlab.handwriting.images import ImageSource, load_grey
from mnistlab.handwriting.normalize import preprocess_digit

SHEET_W, SHEET_H = 1000, 1414  # sheet units (A4: 210 x 297 mm), ~4.76 units a millimetre
MARK = 60  # side of a corner mark
MARK_MARGIN = 40  # from the sheet's edge to a mark
GRID = (150, 200, 950, 1300)  # x0, y0, x1, y1 of the boxes
COLUMNS = 8  # boxes per digit
BOX_LINE = 170  # grey of the box lines (0 black .. 255 white): light, and cropped away anyway
INSET = 0.12  # of a box's side: the margin left out when its inside is read
READ_SIDE = 2000  # px: photos are decoded at most this long (a box is then ~100 px)


@dataclass(frozen=True)
class Layout:
    columns: int = COLUMNS

    def box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """Box (x0, y0, x1, y1) in sheet units of digit `row`, column `col`."""
        x0, y0, x1, y1 = GRID
        w, h = (x1 - x0) / self.columns, (y1 - y0) / 10
        return x0 + col * w, y0 + row * h, x0 + (col + 1) * w, y0 + (row + 1) * h

    @staticmethod
    def mark_centres() -> np.ndarray:
        """(4, 2) centres of the marks: top-left, top-right, bottom-right, bottom-left."""
        a = MARK_MARGIN + MARK / 2
        return np.array([[a, a], [SHEET_W - a, a], [SHEET_W - a, SHEET_H - a], [a, SHEET_H - a]], np.float64)


def _check_columns(columns: int) -> None:
    if not 1 <= columns <= 16:
        raise DataError(f"bad number of columns {columns}: 1 to 16 boxes per digit")


def draw_sheet(columns: int = COLUMNS, scale: float = 2.0) -> Image.Image:
    """The blank sheet, white, `scale` pixels per sheet unit (2: ~240 dpi on A4)."""
    _check_columns(columns)
    lay = Layout(columns)
    w, h = round(SHEET_W * scale), round(SHEET_H * scale)
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)
    for cx, cy in lay.mark_centres():
        r = MARK / 2 * scale
        d.rectangle([cx * scale - r, cy * scale - r, cx * scale + r, cy * scale + r], fill=0)
    font = _font(round(34 * scale))
    small = _font(round(16 * scale))
    d.text((150 * scale, 70 * scale), "mnistlab: teach it your handwriting", fill=0, font=small)
    d.text(
        (150 * scale, 110 * scale),
        "Write each row's digit in its boxes, one digit per box, in your own hand. Empty boxes are fine.",
        fill=90,
        font=_font(round(11 * scale)),
    )
    d.text(
        (150 * scale, 135 * scale),
        "Photograph the whole sheet with its four black corners; then: mnistlab adapt --sheet photo.jpg",
        fill=90,
        font=_font(round(11 * scale)),
    )
    for row in range(10):
        for col in range(columns):
            x0, y0, x1, y1 = (v * scale for v in lay.box(row, col))
            d.rectangle([x0, y0, x1, y1], outline=BOX_LINE, width=max(1, round(1.5 * scale)))
        _, y0, _, y1 = lay.box(row, 0)
        d.text((95 * scale, (y0 + y1) / 2 * scale), str(row), fill=120, font=font, anchor="mm")
    return img


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def write_sheet(path: Path, columns: int = COLUMNS) -> Path:
    """Draw the sheet to `path`: PDF (A4) or PNG, by its suffix."""
    suffix = path.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise DataError(f"{path.name}: write the sheet as .pdf or .png")
    img = draw_sheet(columns)
    try:
        if suffix == ".pdf":
            img.save(path, "PDF", resolution=img.width / (210 / 25.4))  # A4 wide
        else:
            img.save(path, "PNG")
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def fill_sheet(rows: list[list[np.ndarray]], columns: int = COLUMNS, scale: float = 2.0) -> Image.Image:
    """The sheet with digits written in: `rows[d]` are digit d's images (white ink on black,
    uint8, any size; at most `columns`), drawn dark into that row's boxes. For tests and
    `mnistlab template --example`."""
    img = np.asarray(draw_sheet(columns, scale)).copy()
    lay = Layout(columns)
    for row, images in enumerate(rows):
        for col, a in enumerate(images[:columns]):
            x0, y0, x1, y1 = (round(v * scale) for v in lay.box(row, col))
            side = min(x1 - x0, y1 - y0) - round(20 * scale)
            d = np.asarray(Image.fromarray(np.asarray(a, np.uint8)).resize((side, side), Image.Resampling.BICUBIC))
            cy, cx = (y0 + y1) // 2 - side // 2, (x0 + x1) // 2 - side // 2
            box = img[cy : cy + side, cx : cx + side]
            img[cy : cy + side, cx : cx + side] = np.minimum(box, 255 - d)
    return Image.fromarray(img)


def photograph(sheet: Image.Image, angle: float = 7.0, seed: int = 0) -> Image.Image:
    """`sheet` as a phone would see it: on a darker desk, turned by `angle` degrees, in
    perspective (corners moved by up to 4 % at random from `seed`), lit from one side, at half
    the resolution. For tests and `mnistlab template --example`."""
    rng = np.random.default_rng(seed)
    w0, h0 = sheet.size
    canvas = Image.new("L", (int(w0 * 1.3), int(h0 * 1.2)), 90)
    canvas.paste(sheet.convert("L"), (int(w0 * 0.15), int(h0 * 0.1)))
    canvas = canvas.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=90)
    w, h = canvas.size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    moved = corners + rng.uniform(-0.04, 0.04, (4, 2)) * [w, h]
    m = homography(corners, moved)
    canvas = canvas.transform(
        (w, h), Image.Transform.PERSPECTIVE, tuple((m / m[2, 2]).ravel()[:8]), Image.Resampling.BILINEAR, fillcolor=90
    )
    g = np.asarray(canvas, np.float32) * (0.75 + 0.25 * np.linspace(0, 1, w))[None, :]
    return Image.fromarray(np.clip(g, 0, 255).astype(np.uint8)).resize((w // 2, h // 2), Image.Resampling.BOX)


# --------------------------------------------------------------------------------------------
# reading a photo


def find_marks(grey: np.ndarray) -> np.ndarray:
    """The four corner marks' centres in a photo, (4, 2) x, y: top-left, top-right,
    bottom-right, bottom-left. A DataError when fewer than four are found."""
    h, w = grey.shape
    smooth = ndimage.uniform_filter(grey, 3)
    dark = smooth < min(0.45, float(np.percentile(smooth, 50)) * 0.6)
    labels, n = ndimage.label(dark)
    if n == 0:
        raise DataError("no corner marks found: photograph the whole sheet, its four black squares included")
    objs = ndimage.find_objects(labels)
    areas = ndimage.sum_labels(np.ones_like(labels), labels, np.arange(1, n + 1))
    cands = []
    min_area = 1e-4 * h * w
    for i, sl in enumerate(objs):
        bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        area = areas[i]
        if area < min_area or not 0.5 <= bw / max(1, bh) <= 2.0:
            continue
        fill = area / (bw * bh)
        if fill < 0.6:  # strokes, box lines and digits are hollow; a mark is solid
            continue
        cy, cx = ndimage.center_of_mass(labels[sl] == i + 1)
        cands.append((area, cx + sl[1].start, cy + sl[0].start))
    if len(cands) < 4:
        raise DataError(
            f"found {len(cands)} of the sheet's 4 corner marks: photograph the whole sheet, flat and lit, "
            "its four black squares included"
        )
    cands.sort(reverse=True)
    top = cands[:4]
    if top[3][0] < 0.25 * top[0][0]:  # four marks are about the same size
        raise DataError("the sheet's 4 corner marks were not found (one is hidden or cut off?)")
    pts = np.array([[x, y] for _, x, y in top])
    s, d = pts.sum(1), pts[:, 0] - pts[:, 1]
    order = [int(np.argmin(s)), int(np.argmax(d)), int(np.argmax(s)), int(np.argmin(d))]
    if len(set(order)) != 4:
        raise DataError("the sheet's corner marks are not at its corners (is the photo of a sheet?)")
    return pts[order]


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 perspective transform taking the 4 points `src` to `dst`."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    try:
        p = np.linalg.solve(np.array(rows, np.float64), np.array(rhs, np.float64))
    except np.linalg.LinAlgError:
        raise DataError("the sheet's corner marks are degenerate (in a line?)") from None
    return np.append(p, 1.0).reshape(3, 3)


def rectify(grey: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The photo warped back to the sheet's coordinates (`scale` px a unit), grey in [0, 1]."""
    marks = find_marks(grey)
    m = homography(Layout.mark_centres() * scale, marks)  # sheet -> photo, as PIL wants it
    img = Image.fromarray(grey.astype(np.float32), mode="F")
    size = (round(SHEET_W * scale), round(SHEET_H * scale))
    out = img.transform(size, Image.Transform.PERSPECTIVE, tuple((m / m[2, 2]).ravel()[:8]), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(out, np.float32), 0, 1)


def box_crops(sheet: np.ndarray, columns: int = COLUMNS, scale: float = 1.0) -> list[tuple[int, int, np.ndarray]]:
    """(row, column, the box's inside) for every box of a rectified sheet."""
    lay = Layout(columns)
    out = []
    for row in range(10):
        for col in range(columns):
            x0, y0, x1, y1 = (v * scale for v in lay.box(row, col))
            mx, my = INSET * (x1 - x0), INSET * (y1 - y0)
            crop = sheet[round(y0 + my) : round(y1 - my), round(x0 + mx) : round(x1 - mx)]
            out.append((row, col, crop))
    return out


def read_sheet(source: ImageSource, columns: int = COLUMNS, name: str | None = None) -> Digits:
    """A photo (or scan) of a filled sheet -> the digits in its filled boxes, labelled by row,
    read through the single-digit path. Empty boxes are left out."""
    _check_columns(columns)
    name = name or (str(source) if isinstance(source, str | Path) else "sheet")
    grey = load_grey(source, name, max_side=READ_SIDE)
    try:
        sheet = rectify(grey, scale=1.0)
    except DataError as e:
        raise DataError(f"{name}: {e}") from None
    xs, labels, names = [], [], []
    for row, col, crop in box_crops(sheet, columns):
        x = preprocess_digit(crop, dark_ink=True)  # a pen on paper: no polarity guess
        if float(x.max()) <= 0:
            continue  # an empty box
        xs.append(x)
        labels.append(row)
        names.append(f"{name}: digit {row}, box {col + 1}")
    x = torch.stack(xs) if xs else torch.zeros(0, 1, 28, 28)
    return Digits(x, torch.tensor(labels, dtype=torch.int64), names)
