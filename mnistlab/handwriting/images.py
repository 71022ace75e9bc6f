"""Load any common image safely into a grey float array in [0, 1] (H, W).

PNG, JPEG, BMP, GIF (first frame), TIFF, WebP; EXIF orientation applied; transparency composited
on white (a transparent PNG drawn in black reads as black ink on paper); 16-bit, 32-bit and
float greys rescaled by their own range; CMYK and palettes converted. Caps on bytes and pixels
refuse decompression bombs before decoding them.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnistlab.errors import ImageError

MAX_BYTES = 64 * 1024 * 1024  # a 64 MB file is far beyond any phone photo of a page
MAX_PIXELS = 40_000_000  # 40 megapixels; more is a decompression bomb, not a page of digits
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

ImageSource = bytes | str | Path | Image.Image


def _open(source: bytes | str | Path, name: str, max_bytes: int) -> Image.Image:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise ImageError(f"{name}: file too large ({size / 2**20:.0f} MB > {max_bytes / 2**20:.0f} MB)")
            data = path.read_bytes()
        except IsADirectoryError:
            raise ImageError(f"{name}: is a folder, not an image") from None
        except OSError as e:
            raise ImageError(f"{name}: cannot read ({e.strerror or e})") from None
    if not data:
        raise ImageError(f"{name}: empty file")
    if len(data) > max_bytes:
        raise ImageError(f"{name}: too large ({len(data) / 2**20:.0f} MB > {max_bytes / 2**20:.0f} MB)")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (or a format PIL cannot read)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too many pixels (decompression bomb?)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{name}: unreadable image ({e})") from None


def _to_grey(img: Image.Image) -> np.ndarray:
    """Any mode -> float32 luminance in [0, 1]; transparency composited on white."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            hi = 65535.0
        else:  # 32-bit int or float: scale by the image's own range
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            a = a - lo
            hi = hi - lo
        a = np.nan_to_num(a / hi) if hi > 0 else np.zeros_like(a)
        return np.clip(a, 0, 1).astype(np.float32)
    if mode == "P":
        img = img.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "1"):
        img = img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    grey = img.convert("L")
    return np.asarray(grey, dtype=np.float32) / 255.0


def load_grey(
    source: ImageSource,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
) -> np.ndarray:
    """`source` (bytes, a path, or a PIL image) -> (H, W) float32 in [0, 1]. Raises ImageError."""
    name = name or (str(source) if isinstance(source, str | Path) else "image")
    img = source if isinstance(source, Image.Image) else _open(source, name, max_bytes)
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"{name}: {w}x{h} is too many pixels ({w * h / 1e6:.0f} MP > {max_pixels / 1e6:.0f} MP)")
    if w < 1 or h < 1:
        raise ImageError(f"{name}: empty image ({w}x{h})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: our own cap applies
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # GIF / multi-page TIFF: the first frame
            img.load()
            img = ImageOps.exif_transpose(img) or img
            grey = _to_grey(img)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too many pixels (decompression bomb?)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        msg = str(e) or type(e).__name__
        raise ImageError(f"{name}: unreadable image ({msg})") from None
    return grey


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
