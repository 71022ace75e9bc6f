"""THE image loader: every image the CLI, the web server and the figures read comes in here.

PNG, JPEG, BMP, GIF (first frame), TIFF (first page), WebP and nothing else: the allow-list is
passed to PIL's `Image.open(formats=...)`, so no other format's parser ever sees the bytes (an
EPS upload is never handed to Ghostscript; TGA, ICO, PCX, PPM, SGI, DDS are refused unread).
EXIF orientation is applied; transparency is composited on white (a transparent PNG drawn in
black reads as black ink on paper); 16-bit, 32-bit and float greys are rescaled by their range;
CMYK and palettes are converted.

The caps (bytes, pixels) are checked on the header, before any pixel is decoded. With
`max_side`, a big image is decoded at reduced size before any float conversion: JPEG through
libjpeg's DCT scaling (draft mode), every other format tile by tile, each tile averaged down
by an integer factor, so that a 40-megapixel upload costs its native decoded bytes (at most
4 bytes a pixel) plus a few MB, never several float copies of it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnistlab.errors import ImageError

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")  # PIL's format names; MPO (phone JPEGs) opens as JPEG
FORMAT_NAMES = "PNG, JPEG, BMP, GIF, TIFF or WebP"
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_BYTES = 64 * 2**20  # a file read from disk: far beyond any phone photo of a page
MAX_UPLOAD_BYTES = 10 * 2**20  # an upload to the web server, which holds it in memory while it works
MAX_PIXELS = 40_000_000  # more is a decompression bomb, not a page of digits
TILE_SIDE = 1024  # reduced-size decoding converts tiles of about this side (~16 MB of RGBA temporaries)

# EXIF orientation -> how to turn the stored pixels upright (as PIL's ImageOps.exif_transpose)
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).T,
    8: lambda a: np.rot90(a, 1),
}

ImageSource = bytes | str | Path | Image.Image


class ImageTooLarge(ImageError):
    """Over the byte or the pixel cap (the web answers 413)."""


class UnsupportedImage(ImageError):
    """Empty, not one of the formats read here, or not decodable (the web answers 415)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, before any pixel is decoded."""

    format: str | None
    width: int  # as displayed: after EXIF orientation (the frame boxes of a reading refer to)
    height: int
    orientation: int  # EXIF orientation 1..8 (1: stored upright)

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass
class GreyImage:
    """An image as grey floats, possibly reduced; `width`/`height` are the image's own (displayed) size."""

    grey: np.ndarray  # (h, w) float32 in [0, 1]
    width: int
    height: int

    @property
    def scale(self) -> float:
        """Pixels of `grey` per pixel of the image (1.0 unless it was decoded at reduced size)."""
        return max(self.grey.shape) / max(self.width, self.height)


def _read_bytes(source: bytes | str | Path, name: str, max_bytes: int) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise ImageTooLarge(f"{name}: file too large ({_size(size)}, the limit is {_size(max_bytes)})")
            data = path.read_bytes()
        except IsADirectoryError:
            raise ImageError(f"{name}: is a folder, not an image") from None
        except OSError as e:
            raise ImageError(f"{name}: cannot read ({e.strerror or e})") from None
    if not data:
        raise UnsupportedImage(f"{name}: empty file: send an image ({FORMAT_NAMES})")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{name}: too large ({_size(len(data))}, the limit is {_size(max_bytes)})")
    return data


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 1024:.0f} kB"


def _open(source: ImageSource, name: str, max_bytes: int) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    data = _read_bytes(source, name, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: our own cap applies
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedImage(f"{name}: not an image, or not a format read here (send {FORMAT_NAMES})") from None
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"{name}: too many pixels (the limit is {MAX_PIXELS // 1_000_000} megapixels)") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct_error) as e:
        raise UnsupportedImage(f"{name}: not an image: its header is damaged ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    return (str(e) or type(e).__name__).splitlines()[0][:200]


def _orientation(img: Image.Image) -> int:
    # PngImageFile.getexif() decodes the whole image first (an eXIf chunk may follow the pixel
    # data): that would defeat the point of a header probe. The base method reads only what the
    # header gave (eXIf before IDAT, XMP); the same function serves the probe and the decode, so
    # both agree on the frame.
    try:
        value = Image.Image.getexif(img).get(0x0112, 1)
    except Exception:  # a damaged EXIF block is not worth refusing the image for
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _check(img: Image.Image, name: str, max_pixels: int) -> ImageInfo:
    w, h = img.size
    if w * h > max_pixels:
        raise ImageTooLarge(
            f"{name}: too many pixels ({w}x{h} = {w * h / 1e6:.1f} megapixels, the limit is {max_pixels / 1e6:.0f})"
        )
    if w < 1 or h < 1:
        raise UnsupportedImage(f"{name}: empty image ({w}x{h})")
    orientation = _orientation(img)
    if orientation in (5, 6, 7, 8):  # turned by 90 degrees one way or the other
        w, h = h, w
    return ImageInfo(img.format, w, h, orientation)


def probe(
    source: bytes | str | Path,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
) -> ImageInfo:
    """Format, size (after EXIF orientation) and the caps, from the header only. Raises ImageError
    (ImageTooLarge over a cap, UnsupportedImage for what is not an image read here)."""
    name = name or (str(source) if isinstance(source, str | Path) else "image")
    with _open(source, name, max_bytes) as img:
        return _check(img, name, max_pixels)


def _to_grey(img: Image.Image, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Any mode -> float32 luminance in [0, 1]; transparency composited on white.

    32-bit int and float images are scaled by `value_range` (the whole image's extrema: a tile
    alone would be stretched by its own)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        else:
            lo, hi = value_range if value_range is not None else (float(np.nanmin(a)), float(np.nanmax(a)))
        span = hi - lo
        a = np.nan_to_num((a - lo) / span) if span > 0 else np.zeros_like(a)
        return np.clip(a, 0, 1).astype(np.float32)
    if mode == "P":
        img = img.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "1"):
        img = img.convert("RGB")
    if img.mode in ("RGBA", "LA") and img.getextrema()[-1] == (255, 255):
        img = img.convert("RGB" if img.mode == "RGBA" else "L")  # opaque: nothing to composite
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    grey = img.convert("L")
    return np.asarray(grey, dtype=np.float32) / 255.0


def _value_range(img: Image.Image) -> tuple[float, float] | None:
    if img.mode not in ("I", "F"):
        return None
    lo, hi = img.getextrema()
    return float(lo), float(hi)


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks (the last row/column of blocks may be partial, as PIL's reduce)."""
    if k == 1:
        return a
    h, w = a.shape
    if h % k == 0 and w % k == 0:  # every tile but those on the right and bottom edges
        rows = sum(a[i::k] for i in range(k))  # strided adds: ~7x faster than reshape().mean()
        return (sum(rows[:, i::k] for i in range(k)) * (1.0 / (k * k))).astype(np.float32, copy=False)
    rows = np.add.reduceat(a, np.arange(0, a.shape[0], k), axis=0)
    sums = np.add.reduceat(rows, np.arange(0, a.shape[1], k), axis=1)
    nr = np.diff(np.append(np.arange(0, a.shape[0], k), a.shape[0]))
    nc = np.diff(np.append(np.arange(0, a.shape[1], k), a.shape[1]))
    return (sums / (nr[:, None] * nc[None, :])).astype(np.float32)


def _decode(img: Image.Image, max_side: int | None) -> np.ndarray:
    """The first frame as grey floats, upright, at most `max_side` on its longer side."""
    orientation = _orientation(img)
    w, h = img.size
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        target = (max(1, round(w * s)), max(1, round(h * s)))
    else:
        target = (w, h)
    if img.format == "JPEG":
        # libjpeg decodes straight to 1/2, 1/4 or 1/8 size (staying >= target), and to grey
        # (the Y channel, the same weights as PIL's RGB -> L) when the file is YCbCr.
        img.draft("L", target)
    img.load()
    big_w, big_h = img.size
    k = max(1, min(big_w // target[0], big_h // target[1]))  # an integer reduction that keeps >= target
    if k == 1 and (big_w, big_h) == target:
        grey = _to_grey(img)
    else:
        value_range = _value_range(img)
        out_w, out_h = -(-big_w // k), -(-big_h // k)
        grey = np.empty((out_h, out_w), np.float32)
        step = k * max(1, TILE_SIDE // k)
        for y in range(0, big_h, step):
            for x in range(0, big_w, step):
                tile = img.crop((x, y, min(big_w, x + step), min(big_h, y + step)))
                small = _block_mean(_to_grey(tile, value_range), k)
                grey[y // k : y // k + small.shape[0], x // k : x // k + small.shape[1]] = small
        if grey.shape != (target[1], target[0]):
            grey = np.asarray(Image.fromarray(grey).resize(target, Image.Resampling.BOX), dtype=np.float32)
            grey = np.clip(grey, 0, 1)
    if orientation in _UPRIGHT:
        grey = np.ascontiguousarray(_UPRIGHT[orientation](grey))
    return grey


def load_image(
    source: ImageSource,
    name: str | None = None,
    max_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
) -> GreyImage:
    """`source` (bytes, a path, or an opened PIL image) -> its grey pixels and its own size.

    With `max_side`, an image longer than that is decoded reduced to it (box-averaged): what
    the digit finder works at anyway. Raises ImageError (ImageTooLarge, UnsupportedImage)."""
    name = name or (str(source) if isinstance(source, str | Path) else "image")
    img = _open(source, name, max_bytes)
    try:
        info = _check(img, name, max_pixels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grey = _decode(img, max_side)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"{name}: too many pixels (decompression bomb?)") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct_error) as e:
        raise UnsupportedImage(f"{name}: not an image: the data cannot be decoded ({_reason(e)})") from None
    finally:
        if img is not source:
            img.close()
    return GreyImage(grey, info.width, info.height)


def load_grey(
    source: ImageSource,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
    max_side: int | None = None,
) -> np.ndarray:
    """`source` (bytes, a path, or a PIL image) -> (H, W) float32 in [0, 1]. Raises ImageError."""
    return load_image(source, name, max_side, max_pixels, max_bytes).grey


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in EXTENSIONS


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given; folders replaced by the image files under them (recursive, sorted).

    A path that does not exist stays in the list, so that it is reported as one failed file.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            try:
                found += sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
            except OSError:
                found.append(p)
        else:
            found.append(p)
    return found
