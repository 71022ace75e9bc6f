"""The line reader: a small CRNN (Shi et al. 2015) that reads a strip of touching digits with CTC.

Input: (N, 1, H, W) ink strength in [0, 1], white ink on black (what the page reader cuts out
of a component: its own ink, scaled to H pixels high, the aspect kept, zeros to the right).
Output: (N, T, 11) logits over T = W / 4 columns; class 10 is the CTC blank. A few conv blocks
(BN, ReLU, max-pool) bring the height to 1, a bidirectional GRU reads the columns left to right.

It is not a 28x28 classifier: its ModelSpec has task "line", so the digit tests and tools that go
over every classifier leave it out (`list_models()`), and `mnistlab train line-reader` trains it
on synthetic strips (handwriting/lines.py), not on MNIST's labels directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mnistlab.models._registry import register_model

BLANK = 10  # the CTC blank: the 11th class


@dataclass(frozen=True)
class LineReaderConfig:
    height: int = 32  # input height in pixels (a strip is resized to it, aspect kept)
    min_width: int = 128  # strips narrower than this are padded with zeros to it
    widths: str = "16,32,64"  # conv widths of the blocks (comma-separated)
    hidden: int = 48  # GRU hidden size per direction
    # What the strips it trains on hold (handwriting/lines.py draws them from MNIST TRAINING digits):
    min_digits: int = 1
    max_digits: int = 3
    touch: float = 0.85  # fraction of neighbouring digits that touch or overlap (else a small gap)
    max_overlap: float = 0.3  # most a digit may slide over its neighbour, in digit heights
    samples_per_epoch: int = 12000
    val_samples: int = 2000  # held-out strips made from MNIST TEST digits (fixed seed)

    def __post_init__(self) -> None:
        ws = self.conv_widths
        if self.height < 16 or self.height % 8:
            raise ValueError(f"bad height={self.height}: a multiple of 8, at least 16")
        if len(ws) < 2 or min(ws) < 1 or self.hidden < 1:
            raise ValueError(f"bad widths={self.widths!r} or hidden={self.hidden}")
        if not 1 <= self.min_digits <= self.max_digits <= 16:
            raise ValueError(f"bad digits per strip: {self.min_digits}..{self.max_digits} (1..16)")
        if not 0 <= self.touch <= 1 or not 0 <= self.max_overlap < 1:
            raise ValueError(f"bad touch={self.touch} or max_overlap={self.max_overlap}")
        if self.samples_per_epoch < 1 or self.val_samples < 1:
            raise ValueError("samples_per_epoch and val_samples must be positive")

    @property
    def conv_widths(self) -> list[int]:
        try:
            return [int(w) for w in self.widths.split(",") if w.strip()]
        except ValueError:
            raise ValueError(f"bad widths={self.widths!r}: comma-separated integers") from None


class CRNN(nn.Module):
    def __init__(self, cfg: LineReaderConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        h = cfg.height
        for i, c in enumerate(cfg.conv_widths):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            # The first two blocks halve both sides (T = W / 4); the rest only the height.
            layers.append(nn.MaxPool2d(2) if i < 2 else nn.MaxPool2d((2, 1)))
            h //= 2
            c_in = c
        self.features = nn.Sequential(*layers)
        self.squash = nn.Conv2d(c_in, c_in, (h, 1))  # what is left of the height -> 1
        self.rnn = nn.GRU(c_in, cfg.hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.hidden, BLANK + 1)
        self.input_shape = (1, cfg.height, cfg.min_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.squash(self.features(x)))  # (N, C, 1, T)
        seq = f.squeeze(2).transpose(1, 2)  # (N, T, C)
        seq, _ = self.rnn(seq)
        return self.out(seq)  # (N, T, 11)


def greedy_decode(logits: torch.Tensor) -> list[list[int]]:
    """Best-path CTC decoding: the likeliest class per column, repeats merged, blanks dropped."""
    best = logits.argmax(-1).cpu()
    out = []
    for row in best.tolist():
        seq, prev = [], BLANK
        for c in row:
            if c != prev and c != BLANK:
                seq.append(c)
            prev = c
        out.append(seq)
    return out


@register_model(
    "crnn",
    LineReaderConfig(),
    task="line",
    description="line reader: conv 16-32-64 (BN, max-pool) -> BiGRU 48 -> CTC over 10 digits + blank; "
    "reads a strip of touching digits",
)
def build_crnn(cfg: LineReaderConfig) -> nn.Module:
    return CRNN(cfg)
