"""Strips of touching digits from MNIST TRAINING digits, and the line reader that learns to read them.

The page reader (reader.py) hands the line reader what it cuts out of a page: one component's
own ink (0 = paper, ~1 = the ink's typical strength, the paper already removed by
segment.ink_map), scaled to `height` pixels, the aspect kept. So the strips are drawn in that
same ink space: 1-3 MNIST digits (model config `min_digits`..`max_digits`, up to 16), most
touching or sliding over their neighbour (`touch`, `max_overlap`), each at its own size and
height on the line (uneven baseline), the whole strip slanted, the pen thickened or thinned,
blurred, its contrast changed, then thresholded and normalised as ink_map does, with noise on
the ink. The paper's colour, texture, shadows and JPEG are what ink_map removes before a strip is
cut, so they are not drawn here (make-pages draws them on whole pages, which is where the line
reader is measured).

`train_line_reader` is the `line-reader` recipe (`mnistlab train line-reader`): strips drawn on
the fly from the training digits, CTC loss, the trainer's callbacks (progress bar, run record:
config.json, metrics.jsonl, weights.safetensors, result.json) and, as the test set, strips of
MNIST TEST digits drawn with a fixed seed (exact strips, digits, digit counts).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from torch import nn

from mnistlab import runs
from mnistlab.config import RunConfig
from mnistlab.data import MNIST
from mnistlab.errors import RunError
from mnistlab.handwriting.pages import edit_distance
from mnistlab.models import get_spec, keras_param_count
from mnistlab.models.linereader import BLANK, LineReaderConfig, greedy_decode
from mnistlab.train import Callback, TrainState, make_optimizer, make_scheduler, seed_everything

DIGIT_H = 40.0  # the digits' height on the drawing canvas (MNIST's 20 px in 28, x2)
TEST_SEED = 1_234_567  # the held-out strips (MNIST test digits): the same for every run


def draw_strip(
    images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, cfg: LineReaderConfig, n_digits: int | None = None
) -> tuple[np.ndarray, list[int]]:
    """One strip of ink: (height x width float32 in [0, 1], the digits in it, left to right).
    `images` (N, 28, 28) uint8, MNIST's white on black; the digits are drawn from them at random."""
    k = int(rng.integers(cfg.min_digits, cfg.max_digits + 1)) if n_digits is None else n_digits
    dh = DIGIT_H
    canvas = np.zeros((int(2.2 * dh), int(k * 1.6 * dh + 2 * dh)), np.float32)
    x, base, text = 0.5 * dh, 0.45 * dh, []
    drift = rng.normal(0, 0.03 * dh)  # a baseline that rises or falls along the strip
    for j in range(k):
        idx = int(rng.integers(len(labels)))
        s = dh / 20 * rng.uniform(0.85, 1.15)
        side = max(8, int(round(28 * s)))
        img = Image.fromarray(images[idx].astype(np.float32) / 255, mode="F")
        big = np.clip(np.asarray(img.resize((side, side), Image.Resampling.BICUBIC)), 0, 1)
        cols = np.flatnonzero(big.max(0) > 0.2)
        if cols.size == 0:
            cols = np.arange(side)
        big = big[:, cols[0] : cols[-1] + 1]
        bw = big.shape[1]
        if j:  # touching or sliding over the previous digit, or just apart
            x += -rng.uniform(0, cfg.max_overlap) * dh if rng.random() < cfg.touch else rng.uniform(0.0, 0.12) * dh
        y = int(np.clip(base + j * drift + rng.normal(0, 0.05 * dh), 0, canvas.shape[0] - side))
        xi = int(np.clip(x, 0, canvas.shape[1] - bw))
        region = canvas[y : y + side, xi : xi + bw]
        np.maximum(region, big, out=region)
        text.append(int(labels[idx]))
        x = xi + bw
    ink = _pen_and_camera(canvas, rng)
    rows, cols = np.flatnonzero(ink.max(1) > 0), np.flatnonzero(ink.max(0) > 0)
    if rows.size == 0:
        return np.zeros((cfg.height, cfg.height), np.float32), text
    return to_strip(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], cfg.height), text


def _pen_and_camera(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Slant, pen width, blur, contrast; then ink_map's normalisation and threshold, and noise."""
    h, w = canvas.shape
    slant = rng.uniform(-0.3, 0.3)  # x shift per pixel up: about +-17 degrees
    img = Image.fromarray(canvas, mode="F").transform(
        (w, h), Image.Transform.AFFINE, (1, slant, -slant * h / 2, 0, 1, 0), Image.Resampling.BILINEAR
    )
    ink = np.asarray(img, np.float32)
    r = rng.random()
    if r < 0.2:
        ink = ndimage.grey_dilation(ink, size=(int(rng.integers(2, 4)),) * 2)
    elif r < 0.35:
        ink = ndimage.grey_erosion(ink, size=(2, 2))
    if rng.random() < 0.6:
        ink = ndimage.gaussian_filter(ink, rng.uniform(0.3, 1.5))
    ink = ink * rng.uniform(0.6, 1.0)
    strong = ink[ink > 0.1]
    if strong.size == 0:
        return np.zeros_like(ink)
    ink = np.clip(ink / np.percentile(strong, 90), 0, 1)  # ink_map: 1 = the ink's typical strength
    ink = ink + rng.normal(0, rng.uniform(0, 0.06), ink.shape).astype(np.float32)
    ink[ink < rng.uniform(0.2, 0.45)] = 0  # the reader keeps a component's pixels above its threshold
    return np.clip(ink, 0, 1)


def to_strip(ink: np.ndarray, height: int) -> np.ndarray:
    """A component's ink (any size) -> `height` pixels high, the aspect kept (at least 1 wide)."""
    h, w = ink.shape
    new_w = max(1, int(round(w * height / max(1, h))))
    img = Image.fromarray(np.ascontiguousarray(ink, np.float32), mode="F")
    return np.clip(np.asarray(img.resize((new_w, height), Image.Resampling.BILINEAR, reducing_gap=None)), 0, 1)


def batch_strips(strips: Sequence[np.ndarray], min_width: int) -> torch.Tensor:
    """Strips of any widths -> (N, 1, H, W) with zeros on the right, W a multiple of 4 >= min_width."""
    width = max([min_width, *(s.shape[1] for s in strips)])
    width = -(-width // 4) * 4
    out = np.zeros((len(strips), 1, strips[0].shape[0] if strips else 1, width), np.float32)
    for i, s in enumerate(strips):
        out[i, 0, :, : s.shape[1]] = s
    return torch.from_numpy(out)


def draw_batch(
    images: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator, cfg: LineReaderConfig
) -> tuple[torch.Tensor, list[list[int]]]:
    drawn = [draw_strip(images, labels, rng, cfg) for _ in range(n)]
    return batch_strips([s for s, _ in drawn], cfg.min_width), [t for _, t in drawn]


def ctc_loss(logits: torch.Tensor, texts: list[list[int]]) -> torch.Tensor:
    log_probs = F.log_softmax(logits.float(), -1).transpose(0, 1)  # (T, N, C)
    t, n = log_probs.shape[:2]
    targets = torch.tensor([c for s in texts for c in s], dtype=torch.long)
    lengths = torch.tensor([len(s) for s in texts], dtype=torch.long)
    return F.ctc_loss(
        log_probs, targets, torch.full((n,), t, dtype=torch.long), lengths, blank=BLANK, zero_infinity=True
    )


@torch.no_grad()
def evaluate_strips(model: nn.Module, x: torch.Tensor, texts: list[list[int]], batch: int = 250) -> dict[str, Any]:
    """Exact strips, digits (1 - edit distance / digits) and the digit count right, and CTC loss."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    reads, loss = [], 0.0
    for i in range(0, len(texts), batch):
        logits = model(x[i : i + batch].to(device))
        loss += float(ctc_loss(logits, texts[i : i + batch])) * len(texts[i : i + batch])
        reads += greedy_decode(logits)
    model.train(was)
    n = max(1, len(texts))
    digits = sum(len(t) for t in texts)
    return {
        "loss": loss / n,
        "acc": sum(r == t for r, t in zip(reads, texts, strict=True)) / n,
        "digit_acc": 1 - sum(edit_distance(t, r) for r, t in zip(reads, texts, strict=True)) / max(1, digits),
        "count_acc": sum(len(r) == len(t) for r, t in zip(reads, texts, strict=True)) / n,
        "n": len(texts),
    }


def test_strips(mnist: MNIST, cfg: LineReaderConfig) -> tuple[torch.Tensor, list[list[int]]]:
    """The held-out strips: MNIST TEST digits, a fixed seed (the same for every run and seed)."""
    rng = np.random.default_rng(TEST_SEED)
    return draw_batch(mnist.test_images.numpy(), mnist.test_labels.numpy(), cfg.val_samples, rng, cfg)


def train_line_reader(
    cfg: RunConfig, run_dir: Path, mnist: MNIST, device: torch.device, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """The `line-reader` recipe: train `cfg` (a model of task "line") into `run_dir` and record it.
    Returns what result.json holds. Strips are drawn on the fly from a generator seeded by cfg.seed,
    so a run is a function of (config, seed)."""
    if get_spec(cfg.model).task != "line":
        raise RunError(f"model {cfg.model!r} is not a line reader")
    mc: LineReaderConfig = cfg.model_config
    tc = cfg.train
    seed_everything(cfg.seed)
    from mnistlab.models import create_model

    model = create_model(cfg.model, mc).to(device)
    steps = -(-mc.samples_per_epoch // tc.batch_size)
    opt = make_optimizer(model.parameters(), tc)
    sched, sched_when = make_scheduler(opt, tc, steps)
    state = TrainState(cfg, model, opt, None, device, steps_per_epoch=steps, scheduler=sched)  # type: ignore[arg-type]
    rng = np.random.default_rng(cfg.seed)
    images, labels = mnist.train_images.numpy(), mnist.train_labels.numpy()
    test_x, test_texts = test_strips(mnist, mc)
    cbs = [*callbacks, runs.RunRecorder(run_dir)]
    wall0 = time.perf_counter()
    synth_seconds = 0.0
    for cb in cbs:
        cb.on_train_begin(state)
    for epoch in range(1, tc.epochs + 1):
        state.epoch = epoch
        model.train()
        epoch0, in_callbacks = time.perf_counter(), 0.0
        loss_sum, correct, seen = torch.zeros(()), torch.zeros((), dtype=torch.long), 0
        for i in range(steps):
            n = min(tc.batch_size, mc.samples_per_epoch - i * tc.batch_size)
            t = time.perf_counter()
            xb, texts = draw_batch(images, labels, n, rng, mc)
            synth_seconds += time.perf_counter() - t
            logits = model(xb.to(device))
            loss = ctc_loss(logits, texts)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            if sched is not None and sched_when == "step":
                sched.step()
            state.step += 1
            with torch.no_grad():
                loss_sum += loss.detach() * n
                correct += sum(r == t for r, t in zip(greedy_decode(logits), texts, strict=True))
                seen += n
            state.running = (loss_sum, correct, seen)
            t = time.perf_counter()
            for cb in cbs:
                cb.on_batch_end(state, loss)
            in_callbacks += time.perf_counter() - t
        epoch_train = time.perf_counter() - epoch0 - in_callbacks
        state.train_seconds += epoch_train
        v = evaluate_strips(model, test_x, test_texts)
        metrics = {
            "epoch": epoch,
            "loss": float(loss_sum) / seen,
            "acc": float(correct) / seen,
            "lr": opt.param_groups[0]["lr"],
            "train_seconds": epoch_train,
            "val_loss": v["loss"],
            "val_acc": v["acc"],
            "val_digit_acc": v["digit_acc"],
            "val_count_acc": v["count_acc"],
            "seconds": time.perf_counter() - epoch0,
        }
        state.history.append(metrics)
        if sched is not None and sched_when == "epoch":
            sched.step()
        for cb in cbs:
            cb.on_epoch_end(state, metrics)
    for cb in cbs:
        cb.on_train_end(state)
    t0 = time.perf_counter()
    test = evaluate_strips(model, test_x, test_texts)
    total, trainable = keras_param_count(model)
    result = {
        "model": cfg.model,
        "task": "line",
        "seed": cfg.seed,
        "test_acc": test["acc"],  # strips read exactly (held-out strips of MNIST test digits)
        "test_digit_acc": test["digit_acc"],
        "test_count_acc": test["count_acc"],
        "test_loss": test["loss"],
        "test_n": test["n"],
        "epochs": len(state.history),
        "best_epoch": None,
        "stopped_early": False,
        "train_seconds": state.train_seconds,
        "synth_seconds": synth_seconds,  # of train_seconds: drawing the strips
        "wall_seconds": time.perf_counter() - wall0,
        "eval_seconds": time.perf_counter() - t0,
        "params": total,
        "trainable": trainable,
        "device": str(device),
        "extra_tests": {},
        "run_dir": str(run_dir),
    }
    runs.write_result(run_dir, model, cfg.model, result)
    return result


@dataclass
class LineReader:
    """A trained line-reader run: strips in, digits out (with where each digit's column peaks)."""

    model: nn.Module
    config: RunConfig
    path: Path | None = None

    @classmethod
    def load(cls, ref: str | Path, device: torch.device | str = "cpu") -> LineReader:
        run = runs.load_run(ref, device)
        if get_spec(run.config.model).task != "line":
            raise RunError(
                f"{run.path}: a {run.config.model!r} run is not a line reader (train one: mnistlab train line-reader)"
            )
        return cls(run.model.eval(), run.config, run.path)

    @property
    def height(self) -> int:
        return self.config.model_config.height

    @torch.no_grad()
    def read(self, strips: Sequence[np.ndarray]) -> list[tuple[list[int], list[float], list[float]]]:
        """Per strip: (digits, the column of each digit's peak in strip pixels, its probability)."""
        if not strips:
            return []
        x = batch_strips(strips, self.config.model_config.min_width)
        device = next(self.model.parameters()).device
        probs = torch.softmax(self.model(x.to(device)).float(), -1).cpu()
        stride = x.shape[-1] / probs.shape[1]
        out = []
        for p, s in zip(probs, strips, strict=True):
            t_max = int(math.ceil(s.shape[1] / stride))
            best = p[:t_max].argmax(-1).tolist()
            digits, cols, confs, prev = [], [], [], BLANK
            for t, c in enumerate(best):
                if c != BLANK and c != prev:
                    digits.append(c)
                    cols.append((t + 0.5) * stride)
                    confs.append(float(p[t, c]))
                elif c != BLANK and c == prev and float(p[t, c]) > confs[-1]:
                    cols[-1], confs[-1] = (t + 0.5) * stride, float(p[t, c])
                prev = c
            out.append((digits, cols, confs))
        return out
