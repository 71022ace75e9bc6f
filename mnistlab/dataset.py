"""The tensors a run trains and tests on, built from MNIST and a DataConfig."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mnistlab import data as mdata
from mnistlab import transforms
from mnistlab.config import DataConfig
from mnistlab.errors import DataError


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (N, C, H, W) float32, model input scale
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.y.numel())

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split | None
    test: Split
    extra_tests: dict[str, Split] = field(default_factory=dict)  # e.g. {"test_inverted": ...}


def _variant(images: torch.Tensor, cfg: DataConfig, seed: int) -> torch.Tensor:
    x = transforms.to_float(images, cfg.scale)
    return transforms.subsample(x, cfg.subsample, cfg.subsample_keep, seed, cfg.upsample)


def prepare_splits(mnist: mdata.MNIST, cfg: DataConfig, seed: int = 0) -> Splits:
    """Subset -> float -> sub-sample -> invert -> validation split -> channels, train and test alike.

    The sub-sampling mask ("random") is drawn from `seed` and shared by train and test; the
    subsets and random validation splits are seeded by `seed` too, so a run is a pure function
    of (config, seed).
    """
    if not 0 < cfg.train_fraction <= 1 or not 0 <= cfg.val_split < 1:
        raise DataError(f"bad split: train_fraction={cfg.train_fraction}, val_split={cfg.val_split}")
    if cfg.channels < 1:
        raise DataError(f"bad channels={cfg.channels}")
    images, labels = mnist.train_images, mnist.train_labels
    idx = mdata.first_fraction(len(labels), cfg.train_fraction)
    if cfg.train_limit:
        idx = idx[mdata.random_subset(len(idx), min(cfg.train_limit, len(idx)), seed)]
    x, y = _variant(images[idx], cfg, seed), labels[idx]
    if cfg.invert == "add":  # seed 4.1: MNIST followed by its inverted copy
        x, y = torch.cat([x, transforms.invert(x, cfg.scale)]), torch.cat([y, y])
    elif cfg.invert == "only":
        x = transforms.invert(x, cfg.scale)

    val = None
    if cfg.val_split:
        if cfg.val_mode == "last":
            tr, va = mdata.keras_validation_split(len(y), cfg.val_split)
        else:
            tr, va = mdata.random_split(len(y), cfg.val_split, seed)
        val = Split(transforms.with_channels(x[va], cfg.channels), y[va])
        x, y = x[tr], y[tr]
    train = Split(transforms.with_channels(x, cfg.channels), y)

    n_test = cfg.test_limit or len(mnist.test_labels)
    tx, ty = _variant(mnist.test_images[:n_test], cfg, seed), mnist.test_labels[:n_test]
    inverted = transforms.invert(tx, cfg.scale)
    test = Split(transforms.with_channels(inverted if cfg.invert == "only" else tx, cfg.channels), ty)
    extra = {}
    if cfg.eval_inverted:
        other = tx if cfg.invert == "only" else inverted
        extra["test_normal" if cfg.invert == "only" else "test_inverted"] = Split(
            transforms.with_channels(other, cfg.channels), ty
        )
    return Splits(train, val, test, extra)
