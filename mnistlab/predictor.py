"""The one interface from the core to the apps: a run record loaded as a `Predictor`.

    p = Predictor.load("runs/robust-20261203-101500-s0")
    probs = p.probs(x)          # x: (N, 1, 28, 28) float in [0, 1], white ink on black -> (N, 10)

Every app hands over digits in that one canonical form (MNIST's own: what the handwriting reader
crops, what the web canvas becomes, what `show` and the attacks start from) and never needs to
know how the run was trained: the Predictor builds the model's own input with
`dataset.model_input`, the function `prepare_splits` builds the training and test sets with
(no /255 scaling, sub-sampling, inverted-only training, 3 channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistlab import runs
from mnistlab.config import RunConfig
from mnistlab.dataset import model_input
from mnistlab.errors import DataError

CANONICAL_SHAPE = (1, 28, 28)


class CanonicalNet(nn.Module):
    """A run's network behind the canonical input: canonical digits -> logits. Made of
    differentiable tensor ops, so attacks in [0, 1] pixel space see through it."""

    def __init__(self, model: nn.Module, config: RunConfig):
        super().__init__()
        self.model = model
        self.data = config.data
        self.seed = config.seed
        self.input_shape = CANONICAL_SHAPE

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return model_input(x, self.data, self.seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.prepare(x))


@dataclass
class Predictor:
    """A trained run, ready to read canonical digits.

    `model` is the run's own network (layer names for feature maps, hooks), `net` the same network
    taking canonical digits (for gradients: attacks, saliency), `config` its RunConfig, `path` the
    run folder and `result` its result.json (None for an incomplete run).
    """

    model: nn.Module
    config: RunConfig
    path: Path | None = None
    result: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.model.eval()
        self.net = CanonicalNet(self.model, self.config).eval()

    @classmethod
    def load(cls, ref: str | Path, device: torch.device | str = "cpu") -> Predictor:
        """The run at `ref` (a folder, or a name under the runs root); RunError if it is not one."""
        run = runs.load_run(ref, device)
        return cls(run.model, run.config, run.path, run.result)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else self.config.recipe or self.config.model

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Canonical digits -> the model's own input (see dataset.model_input)."""
        return self.net.prepare(check_canonical(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Canonical digits -> logits, with gradients (the caller picks the mode and the device)."""
        return self.net(check_canonical(x))

    @torch.no_grad()
    def probs(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Canonical digits (N, 1, 28, 28) or (N, 28, 28) -> (N, 10) float32 probabilities on the
        CPU, in batches of `batch_size` on the model's device."""
        x = check_canonical(x.unsqueeze(1) if x.dim() == 3 else x)
        self.model.eval()
        out = [
            torch.softmax(self.net(x[i : i + batch_size].to(self.device)).float(), 1).cpu()
            for i in range(0, len(x), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, 10)

    __call__ = probs


def check_canonical(x: torch.Tensor) -> torch.Tensor:
    """`x` as canonical digits: float (N, 1, 28, 28), finite. A DataError says what it got."""
    if x.dim() != 4 or tuple(x.shape[1:]) != CANONICAL_SHAPE:
        raise DataError(f"a Predictor reads digits of shape (N, 1, 28, 28), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DataError(f"a Predictor reads float digits in [0, 1], got {x.dtype}")
    return x
