"""MNIST files -> uint8 tensors: find, download, verify, parse IDX; and the index splits studies use.

Where the files are looked for, in order:
  1. an explicit folder (`--data-dir`),
  2. the MNISTLAB_DATA environment variable,
  3. the user cache, $MNISTLAB_CACHE or $XDG_CACHE_HOME/mnistlab/mnist (~/.cache/mnistlab/mnist),
and, if none has all four files, they are downloaded from public mirrors into the cache.
Each file may be gzipped (`name.gz`) or raw. Every file is checked against the SHA-256 of the
original distribution's decompressed bytes, so a re-compressed .gz is fine and a corrupt one is not.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistlab.errors import DataError


@dataclass(frozen=True)
class IdxFile:
    name: str  # file name without .gz
    magic: int  # 2051 images, 2049 labels
    count: int
    raw_sha256: str  # of the decompressed file
    gz_md5: str  # of the .gz as published on the mirrors


FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte", 2051, 60000,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte", 2049, 60000,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte", 2051, 10000,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", "9fb629c4189551a2d022fa330f9573f3",
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte", 2049, 10000,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", "ec29112dd5afa0611ce80d1b7f02629c",
    ),
}  # fmt: skip

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

ENV_DATA = "MNISTLAB_DATA"
ENV_CACHE = "MNISTLAB_CACHE"

# progress(file_name, bytes_done, bytes_total or None)
Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class MNIST:
    train_images: torch.Tensor  # (60000, 28, 28) uint8, white digit on black
    train_labels: torch.Tensor  # (60000,) int64
    test_images: torch.Tensor  # (10000, 28, 28) uint8
    test_labels: torch.Tensor  # (10000,) int64
    source: Path  # the folder the files came from


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mnistlab" / "mnist"


def search_dirs(data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """(where it came from, folder) in the order they are searched."""
    dirs: list[tuple[str, Path]] = []
    if data_dir:
        dirs.append(("--data-dir", Path(data_dir).expanduser()))
    if os.environ.get(ENV_DATA):
        dirs.append((ENV_DATA, Path(os.environ[ENV_DATA]).expanduser()))
    dirs.append(("cache", cache_dir()))
    return dirs


def _find(folder: Path, f: IdxFile) -> Path | None:
    for candidate in (folder / f.name, folder / f"{f.name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_bytes(path: Path) -> bytes:
    """The decompressed content of a raw or gzipped file; DataError on a broken gzip stream."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head == b"\x1f\x8b":
                return gzip.decompress(fh.read())
            return fh.read()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e}); delete it or fetch it again") from None


def parse_idx(data: bytes, name: str, expect_magic: int | None = None, expect_count: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a uint8 array of the header's shape. Errors name `name`."""
    if len(data) < 8:
        raise DataError(f"{name}: truncated IDX file ({len(data)} bytes, no complete header)")
    magic = int.from_bytes(data[0:4], "big")
    if data[0:2] != b"\x00\x00" or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise DataError(f"{name}: not an unsigned-byte IDX file (magic {magic}, expected 2049 or 2051)")
    if expect_magic is not None and magic != expect_magic:
        raise DataError(f"{name}: wrong magic number {magic}, expected {expect_magic}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != size:
        what = "truncated" if len(data) - header < size else "has trailing bytes"
        raise DataError(f"{name}: {what}: header says {shape} = {size} bytes, file holds {len(data) - header}")
    if expect_count is not None and shape[0] != expect_count:
        raise DataError(f"{name}: holds {shape[0]} items, expected {expect_count}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_file(path: Path, f: IdxFile, verify: bool = True) -> np.ndarray:
    data = read_bytes(path)
    arr = parse_idx(data, str(path), f.magic, f.count)
    if verify and hashlib.sha256(data).hexdigest() != f.raw_sha256:
        raise DataError(
            f"{path}: checksum mismatch (sha256 of the decompressed file is not the original MNIST's); "
            "the file is corrupt or not MNIST: delete it or fetch it again"
        )
    return arr


def _download_one(f: IdxFile, dest: Path, progress: Progress | None, timeout: float) -> None:
    errors = []
    for mirror in MIRRORS:
        url = mirror + f.name + ".gz"
        # Download to a temporary file beside the destination, verify, then rename: the cache never
        # holds a half-written or unverified file.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{f.name}.", suffix=".part", dir=dest)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                done = 0
                md5 = hashlib.md5()
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    md5.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(f.name, done, total)
            if md5.hexdigest() != f.gz_md5:
                raise DataError(f"md5 mismatch for {url}")
            load_file(tmp, f)  # parse + sha256 of the decompressed content
            os.replace(tmp, dest / f"{f.name}.gz")
            return
        except (OSError, urllib.error.URLError, DataError, ValueError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(f"could not download {f.name}: " + "; ".join(errors))


def download(dest: Path | None = None, progress: Progress | None = None, timeout: float = 30.0) -> Path:
    """Fetch the four files into `dest` (default: the cache) and verify them; returns the folder."""
    dest = dest or cache_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the cache folder {dest}: {e.strerror}") from None
    for f in FILES.values():
        if _find(dest, f) is None:
            _download_one(f, dest, progress, timeout)
    return dest


_LOADED: dict[Path, MNIST] = {}


def locate(data_dir: str | Path | None = None) -> Path | None:
    """The first searched folder that holds all four files, or None."""
    for _label, folder in search_dirs(data_dir):
        if all(_find(folder, f) for f in FILES.values()):
            return folder
    return None


def load_mnist(
    data_dir: str | Path | None = None,
    download_missing: bool = True,
    progress: Progress | None = None,
) -> MNIST:
    """Find (or download), verify and parse MNIST. Cached per folder for the life of the process."""
    folder = locate(data_dir)
    if folder is None:
        looked = "; ".join(f"{label}: {p}" for label, p in search_dirs(data_dir))
        if not download_missing:
            raise DataError(
                f"MNIST not found (looked in {looked}); pass --data-dir or set {ENV_DATA} to a folder "
                "holding the four IDX files (gzipped or raw)"
            )
        try:
            folder = download(progress=progress)
        except DataError as e:
            raise DataError(
                f"MNIST not found (looked in {looked}) and the download failed ({e}); "
                f"put the four IDX files in a folder and pass --data-dir or set {ENV_DATA}"
            ) from None
    folder = folder.resolve()
    if folder not in _LOADED:
        arrays = {key: load_file(_find(folder, f), f) for key, f in FILES.items()}  # type: ignore[arg-type]
        for part in ("train", "test"):
            images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
            if images.shape[1:] != (28, 28) or labels.ndim != 1:
                raise DataError(f"{folder}: {part} images are {images.shape[1:]}, expected 28x28")
            if int(labels.max()) > 9:
                raise DataError(f"{folder}: {part} labels hold values above 9")
        _LOADED[folder] = MNIST(
            train_images=torch.from_numpy(arrays["train_images"].copy()),
            train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
            test_images=torch.from_numpy(arrays["test_images"].copy()),
            test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
            source=folder,
        )
    return _LOADED[folder]


def clear_cache_folder() -> None:  # pragma: no cover - a user-facing convenience
    shutil.rmtree(cache_dir(), ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Index splits. All return LongTensors of indices into the training set.


def keras_validation_split(n: int, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keras' `validation_split`: the LAST `fraction` of the arrays is validation, before shuffling."""
    n_val = int(n * fraction)  # Keras: split_at = int(n * (1 - fraction)), same up to rounding
    cut = n - n_val
    return torch.arange(cut), torch.arange(cut, n)


def random_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random (train, validation) split with `fraction` held out."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(n * fraction)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def first_fraction(n: int, fraction: float) -> torch.Tensor:
    """The first `fraction` of the set (seed 0.5 trains on the first 10 %)."""
    return torch.arange(max(1, int(round(n * fraction))))


def random_subset(n: int, count: int, seed: int) -> torch.Tensor:
    """`count` distinct indices drawn with a seeded generator, in ascending order."""
    if not 0 < count <= n:
        raise DataError(f"cannot draw {count} of {n} training images")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values


def describe(mnist: MNIST) -> dict:
    """Class distribution, pixel statistics and a NaN check (seed 2.1), as plain numbers."""
    out: dict = {"source": str(mnist.source)}
    for part, images, labels in (
        ("train", mnist.train_images, mnist.train_labels),
        ("test", mnist.test_images, mnist.test_labels),
    ):
        x = images.float()
        out[part] = {
            "count": int(labels.numel()),
            "shape": list(images.shape[1:]),
            "class_counts": torch.bincount(labels, minlength=10).tolist(),
            "pixel_min": int(images.min()),
            "pixel_max": int(images.max()),
            "pixel_mean": round(float(x.mean()), 4),
            "pixel_std": round(float(x.std()), 4),
            "mean_scaled": round(float(x.mean() / 255), 4),
            "std_scaled": round(float(x.std() / 255), 4),
            "has_nan": bool(torch.isnan(x).any()),
        }
    return out
