"""Ensembles: average the softmax outputs of several trained runs on the test set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mnistlab import runs
from mnistlab.data import MNIST
from mnistlab.dataset import prepare_splits
from mnistlab.errors import RunError


@dataclass
class EnsembleResult:
    runs: list[Path]
    member_acc: list[float]
    acc: float  # of the averaged softmax
    n: int


@torch.inference_mode()
def softmax_outputs(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    parts = [model(x[i : i + batch_size].to(device)).float().softmax(1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, 10)


def evaluate_ensemble(refs: Sequence[str | Path], mnist: MNIST, device: torch.device | str = "cpu") -> EnsembleResult:
    """Each run is tested on the test split its own data config builds (a run trained on inverted
    digits sees inverted test digits); the splits must hold the same labels in the same order."""
    if len(refs) < 2:
        raise RunError("an ensemble needs at least two runs")
    probs_sum: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    paths, member_acc = [], []
    for ref in refs:
        loaded = runs.load_run(ref, device)
        test = prepare_splits(mnist, loaded.config.data, loaded.config.seed).test
        if labels is not None and not torch.equal(labels, test.y):
            raise RunError(
                f"{loaded.path} is tested on different images than {paths[0]} "
                "(data.test_limit or the data variant differs); ensemble runs of the same test set"
            )
        labels = test.y
        probs = softmax_outputs(loaded.model, test.x)
        member_acc.append(float((probs.argmax(1) == labels).float().mean()))
        probs_sum = probs if probs_sum is None else probs_sum + probs
        paths.append(loaded.path)
    assert probs_sum is not None and labels is not None
    acc = float((probs_sum.argmax(1) == labels).float().mean())
    return EnsembleResult(paths, member_acc, acc, len(labels))
