"""The tensors a run trains and tests on, built from MNIST and a DataConfig."""

from __future__ import annotations

import dataclasses
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


def model_input(x: torch.Tensor, cfg: DataConfig, seed: int = 0) -> torch.Tensor:
    """THE contract between a digit and a model: canonical digits (N, 1, 28, 28) float in [0, 1],
    white ink on black, as MNIST stores them -> what a model trained under `cfg` takes: centre-
    cropped (`crop`), unscaled (x 255) when `scale` is off, sub-sampled, inverted for `invert="only"`, the grey channel
    repeated. `prepare_splits` builds every split with it and the Predictor feeds every app's
    digit through it, so training and use cannot drift. Differentiable (attacks see through it).
    The channel repeat is a view: no memory is used until a batch is indexed.
    """
    if x.dim() != 4 or x.shape[1] != 1:
        raise DataError(f"expected canonical digits of shape (N, 1, H, W), got {tuple(x.shape)}")
    try:
        x = transforms.crop(x, cfg.crop)
    except ValueError as e:
        raise DataError(str(e)) from None
    if not cfg.scale:
        x = x * 255.0
    x = transforms.subsample(x, cfg.subsample, cfg.subsample_keep, seed, cfg.upsample)
    if cfg.invert == "only":
        x = transforms.invert(x, cfg.scale)
    return transforms.with_channels(x, cfg.channels)


def canonical(images: torch.Tensor) -> torch.Tensor:
    """uint8 MNIST images (N, 28, 28) -> canonical digits (N, 1, 28, 28) float32 in [0, 1]."""
    return images.unsqueeze(1).float() / 255.0


def canonical_test(mnist: mdata.MNIST, cfg: DataConfig) -> Split:
    """The test digits a run under `cfg` is tested on, as canonical digits (its first
    `test_limit`, else all 10,000): what `prepare_splits` builds its test split from, and what
    the apps hand a run's Predictor to re-test it, attack it or draw it."""
    n_test = cfg.test_limit or len(mnist.test_labels)
    return Split(canonical(mnist.test_images[:n_test]), mnist.test_labels[:n_test])


def prepare_splits(mnist: mdata.MNIST, cfg: DataConfig, seed: int = 0) -> Splits:
    """Subset -> model_input -> validation split, train and test alike; `invert="add"` appends the
    inverted copy (seed 4.1) to the training images.

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
    # One channel until the splits are cut: concatenating repeated-channel views would copy them.
    grey = dataclasses.replace(cfg, channels=1)
    inverted = dataclasses.replace(grey, invert="none" if cfg.invert == "only" else "only")
    x01, y = canonical(images[idx]), labels[idx]
    x = model_input(x01, grey, seed)
    if cfg.invert == "add":  # seed 4.1: MNIST followed by its inverted copy
        x, y = torch.cat([x, model_input(x01, inverted, seed)]), torch.cat([y, y])

    val = None
    if cfg.val_split:
        if cfg.val_mode == "last":
            tr, va = mdata.keras_validation_split(len(y), cfg.val_split)
        else:
            tr, va = mdata.random_split(len(y), cfg.val_split, seed)
        val = Split(transforms.with_channels(x[va], cfg.channels), y[va])
        x, y = x[tr], y[tr]
    train = Split(transforms.with_channels(x, cfg.channels), y)

    t = canonical_test(mnist, cfg)
    t01, ty = t.x, t.y
    test = Split(model_input(t01, cfg, seed), ty)
    extra = {}
    if cfg.eval_inverted:  # the other polarity than the one the test set has
        name = "test_normal" if cfg.invert == "only" else "test_inverted"
        extra[name] = Split(model_input(t01, dataclasses.replace(inverted, channels=cfg.channels), seed), ty)
    return Splits(train, val, test, extra)
