"""Ensembles: average the softmax outputs of several trained runs on the test set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mnistlab.data import MNIST
from mnistlab.dataset import canonical_test
from mnistlab.errors import RunError
from mnistlab.predictor import Predictor


@dataclass
class EnsembleResult:
    runs: list[Path]
    member_acc: list[float]
    acc: float  # of the averaged softmax
    n: int


def evaluate_ensemble(refs: Sequence[str | Path], mnist: MNIST, device: torch.device | str = "cpu") -> EnsembleResult:
    """Each run reads its own test digits (its test_limit) through its Predictor, which builds the
    input the run was trained on (a run trained on inverted digits sees inverted test digits);
    the runs must be tested on the same labels in the same order."""
    if len(refs) < 2:
        raise RunError("an ensemble needs at least two runs")
    probs_sum: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    paths, member_acc = [], []
    for ref in refs:
        p = Predictor.load(ref, device)
        test = canonical_test(mnist, p.config.data)
        if labels is not None and not torch.equal(labels, test.y):
            raise RunError(
                f"{p.path} is tested on different images than {paths[0]} "
                "(data.test_limit differs); ensemble runs of the same test set"
            )
        labels = test.y
        probs = p.probs(test.x, batch_size=1000)
        member_acc.append(float((probs.argmax(1) == labels).float().mean()))
        probs_sum = probs if probs_sum is None else probs_sum + probs
        paths.append(p.path)
    assert probs_sum is not None and labels is not None
    acc = float((probs_sum.argmax(1) == labels).float().mean())
    return EnsembleResult(paths, member_acc, acc, len(labels))
