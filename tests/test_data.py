"""The IDX parser, checksums and the search/download logic, on small synthetic files."""

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistlab import data as mdata
from mnistlab.errors import DataError


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()


def fake_set(folder: Path, n_train=6, n_test=4, gz=True) -> dict[str, mdata.IdxFile]:
    """Write four tiny IDX files and return IdxFile specs whose checksums match them."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), 2051),
        "train_labels": (np.arange(n_train, dtype=np.uint8) % 10, 2049),
        "test_images": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), 2051),
        "test_labels": (np.arange(n_test, dtype=np.uint8) % 10, 2049),
    }
    specs = {}
    folder.mkdir(parents=True, exist_ok=True)
    for key, (arr, magic) in arrays.items():
        raw = idx_bytes(arr, magic)
        name = mdata.FILES[key].name
        blob = gzip.compress(raw) if gz else raw
        (folder / (name + (".gz" if gz else ""))).write_bytes(blob)
        specs[key] = mdata.IdxFile(
            name, magic, len(arr), hashlib.sha256(raw).hexdigest(), hashlib.md5(gzip.compress(raw, mtime=0)).hexdigest()
        )
    return specs


@pytest.fixture
def fake(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    specs = fake_set(folder)
    monkeypatch.setattr(mdata, "FILES", specs)
    monkeypatch.setattr(mdata, "_LOADED", {})
    monkeypatch.delenv(mdata.ENV_DATA, raising=False)
    monkeypatch.setenv(mdata.ENV_CACHE, str(tmp_path / "cache"))
    return folder


def test_parse_gz_and_raw(fake, tmp_path, monkeypatch):
    ds = mdata.load_mnist(fake, download_missing=False)
    assert ds.train_images.shape == (6, 28, 28) and ds.train_images.dtype == torch.uint8
    assert ds.train_labels.dtype == torch.int64 and ds.test_labels.tolist() == [0, 1, 2, 3]
    raw_dir = tmp_path / "raw"
    monkeypatch.setattr(mdata, "FILES", fake_set(raw_dir, gz=False))
    assert mdata.load_mnist(raw_dir, download_missing=False).test_images.shape == (4, 28, 28)


def test_env_variable_then_cache(fake, monkeypatch):
    monkeypatch.setenv(mdata.ENV_DATA, str(fake))
    assert mdata.locate() == fake
    assert [label for label, _ in mdata.search_dirs("x")] == ["--data-dir", mdata.ENV_DATA, "cache"]


def test_missing_offline_says_where_it_looked(fake, tmp_path):
    with pytest.raises(DataError, match=r"looked in --data-dir: .*empty.*cache") as e:
        mdata.load_mnist(tmp_path / "empty", download_missing=False)
    assert "MNISTLAB_DATA" in str(e.value)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:100], "truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b"\x00\x00\x08\x01" + b[4:], "wrong magic number 2049"),
        (lambda b: b"\x12\x34\x56\x78" + b[4:], "not an unsigned-byte IDX"),
        (lambda b: b[:5], "truncated"),
        (lambda b: b[:16] + bytes([b[16] ^ 0xFF]) + b[17:], "checksum mismatch"),
    ],
)
def test_corrupt_files_name_the_file(fake, mutate, message):
    path = fake / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(mutate(raw)))
    with pytest.raises(DataError, match=message) as e:
        mdata.load_mnist(fake, download_missing=False)
    assert "train-images-idx3-ubyte" in str(e.value)


def test_broken_gzip_stream(fake):
    path = fake / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: cannot read"):
        mdata.load_mnist(fake, download_missing=False)


def test_download_verifies_and_leaves_nothing_half_written(fake, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for f in mdata.FILES.values():  # the mirror serves .gz files compressed with mtime=0 (md5 known)
        raw = gzip.decompress((fake / f"{f.name}.gz").read_bytes())
        (mirror / f"{f.name}.gz").write_bytes(gzip.compress(raw, mtime=0))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"garbage")
    monkeypatch.setattr(mdata, "MIRRORS", (bad.as_uri() + "/", mirror.as_uri() + "/"))
    seen = []
    ds = mdata.load_mnist(tmp_path / "nowhere", progress=lambda name, done, total: seen.append(name))
    cache = mdata.cache_dir()
    assert ds.source == cache.resolve() and len(ds.train_labels) == 6
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{f.name}.gz" for f in mdata.FILES.values())
    assert seen  # progress was reported


def test_failed_download_is_one_clear_error(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(mdata, "MIRRORS", ((tmp_path / "nothing").as_uri() + "/",))
    with pytest.raises(DataError, match="download failed") as e:
        mdata.load_mnist(tmp_path / "nowhere")
    assert "--data-dir" in str(e.value)
    assert not any(mdata.cache_dir().iterdir())  # no partial file left


def test_splits():
    tr, va = mdata.keras_validation_split(10, 0.3)
    assert tr.tolist() == list(range(7)) and va.tolist() == [7, 8, 9]
    tr, va = mdata.random_split(100, 0.2, seed=1)
    assert len(va) == 20 and set(tr.tolist()).isdisjoint(va.tolist())
    assert torch.equal(mdata.random_split(100, 0.2, 1)[1], va)
    assert mdata.first_fraction(60000, 0.1).tolist() == list(range(6000))
    sub = mdata.random_subset(100, 10, seed=3)
    assert len(set(sub.tolist())) == 10 and torch.equal(sub, mdata.random_subset(100, 10, seed=3))


def test_real_mnist_matches_the_published_counts(mnist):
    info = mdata.describe(mnist)
    assert info["train"]["class_counts"] == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert info["test"]["class_counts"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert not info["train"]["has_nan"] and info["train"]["pixel_max"] == 255
