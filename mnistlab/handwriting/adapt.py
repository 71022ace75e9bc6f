"""Teach a trained run one writer's handwriting from a few labelled digits (issue 20).

    digits = load_digits_folder(Path("my-digits"), shots=10)   # sub-folders 0..9 or 3_foo.png
    result = adapt_run(Predictor.load(base), digits, out=Path("runs/me"), mnist=load_mnist())

The writer's digits are read through the single-digit path (`preprocess_digit`, as `predict
--single` reads them), then the run's network is fine-tuned: by default every weight and the BN
statistics at a small learning rate, each step 32 of the writer's digits (augmented with the
base run's own augmentation) and 64 MNIST training digits ("replay", so MNIST is not
forgotten). What to train was chosen by measurement (`mnistlab adapt-study`, docs/adapt.md).
The result is an ordinary run record (runs.py) whose config is the base run's plus
`adapted_from` and `adapt`: `predict --run`, `evaluate-images --run`, `serve --run` and `eval`
read it like any other run.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab import runs
from mnistlab.augment import augment_batch, is_active
from mnistlab.config import AdaptConfig, RunConfig
from mnistlab.data import MNIST
from mnistlab.dataset import canonical, canonical_test
from mnistlab.errors import DataError, MnistlabError, RunError
from mnistlab.handwriting.evaluate import labelled_files
from mnistlab.handwriting.images import ImageSource
from mnistlab.handwriting.normalize import preprocess_digit
from mnistlab.predictor import CANONICAL_SHAPE, Predictor

# Called with (done_steps, total_steps) while the model adapts.
Progress = Callable[[int, int], None]


@dataclass
class Digits:
    """A writer's labelled digits, canonical (N, 1, 28, 28) in [0, 1], white on black."""

    x: torch.Tensor
    y: torch.Tensor  # (N,) int64
    names: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # images that could not be used, one line each
    skipped: list[str] = field(default_factory=list)  # image files without a label

    def __len__(self) -> int:
        return int(self.y.numel())

    def counts(self) -> list[int]:
        return np.bincount(self.y.numpy(), minlength=10).tolist()

    def check_classes(self, where: str) -> None:
        """A DataError unless every digit 0..9 has at least one image."""
        if len(self) == 0:
            raise DataError(f"{where}: no labelled digits (use sub-folders 0..9 or names like 3_foo.png)")
        missing = [d for d, c in enumerate(self.counts()) if c == 0]
        if missing:
            raise DataError(
                f"{where}: no images of digit{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} "
                f"(every digit 0..9 needs at least one)"
            )


def first_shots(labels: Sequence[int], shots: int) -> list[int]:
    """Indices of the first `shots` items of each class, in the given order (0 = all)."""
    seen = [0] * 10
    keep = []
    for i, y in enumerate(labels):
        if not shots or seen[y] < shots:
            keep.append(i)
            seen[y] += 1
    return keep


def read_digits(sources: Sequence[ImageSource], labels: Sequence[int], names: Sequence[str]) -> Digits:
    """Labelled single-digit images -> Digits, each read with `preprocess_digit` (the single-digit
    path of `predict --single`). An image that cannot be read, or holds no ink, is listed in
    `errors` and left out; the others are used."""
    xs, ys, kept, errors = [], [], [], []
    for src, y, name in zip(sources, labels, names, strict=True):
        try:
            x = preprocess_digit(src)
        except MnistlabError as e:
            errors.append(str(e))
            continue
        if float(x.max()) <= 0:
            errors.append(f"{name}: no digit found")
            continue
        xs.append(x)
        ys.append(int(y))
        kept.append(name)
    x = torch.stack(xs) if xs else torch.zeros(0, *CANONICAL_SHAPE)
    return Digits(x, torch.tensor(ys, dtype=torch.int64), kept, errors)


def load_digits_folder(folder: Path, shots: int = 0) -> Digits:
    """The labelled images under `folder`, in the layout `evaluate-images` reads (sub-folders
    0..9, or the label as the file name's first character); with `shots`, the first `shots`
    usable images of each class in sorted file order (the unusable ones are listed in `errors`)."""
    files, labels, skipped = labelled_files(folder)
    parts, errors, seen = [], [], [0] * 10
    for f, y in zip(files, labels, strict=True):
        if shots and seen[y] >= shots:
            continue
        one = read_digits([f], [y], [str(f)])  # an unusable image is listed and the next one taken
        errors += one.errors
        if len(one):
            parts.append(one)
            seen[y] += 1
    digits = Digits(
        torch.cat([p.x for p in parts]) if parts else torch.zeros(0, *CANONICAL_SHAPE),
        torch.cat([p.y for p in parts]) if parts else torch.zeros(0, dtype=torch.int64),
        [n for p in parts for n in p.names],
        errors,
        skipped,
    )
    return digits


def check_base(predictor: Predictor) -> None:
    """A RunError unless the run reads canonical 28x28 digits into 10 classes."""
    model = predictor.model
    probe = torch.zeros(1, *CANONICAL_SHAPE, device=predictor.device)
    try:
        with torch.no_grad():
            want = tuple(getattr(model, "input_shape", ()))
            got = tuple(predictor.prepare(probe).shape[1:])
            if want and want != got:
                raise RunError(
                    f"{predictor.name}: its model takes {'x'.join(map(str, want))} input, but its data config "
                    f"makes {'x'.join(map(str, got))} from a 28x28 digit: it cannot be adapted"
                )
            classes = predictor.logits(probe).shape[-1]
    except RunError:
        raise
    except (RuntimeError, ValueError) as e:
        raise RunError(f"{predictor.name}: cannot read 28x28 digits ({str(e).splitlines()[0][:160]})") from None
    if classes != 10:
        raise RunError(f"{predictor.name}: it has {classes} outputs, not 10 digits: it cannot be adapted")


def _bn_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _head(model: nn.Module) -> nn.Module:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise RunError("the model has no Linear layer: `head` adaptation cannot be used on it")
    return linears[-1]


def trainable_parameters(model: nn.Module, mode: str) -> list[nn.Parameter]:
    """The parameters `mode` trains (AdaptConfig.mode); the others get requires_grad False."""
    if mode in ("all", "all-bn"):
        chosen = list(model.parameters())
    elif mode == "head":
        chosen = list(_head(model).parameters())
    elif mode == "bn":
        chosen = [p for m in _bn_layers(model) for p in m.parameters()]
        if not chosen:
            raise RunError("the model has no BatchNorm layer: `bn` adaptation cannot be used on it")
    else:  # pragma: no cover - AdaptConfig's Literal
        raise ValueError(mode)
    ids = {id(p) for p in chosen}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return chosen


def _set_mode(model: nn.Module, mode: str) -> None:
    """Dropout off always (a few shots); BN layers update their statistics only in `bn`/`all-bn`."""
    model.eval()
    if mode in ("bn", "all-bn"):
        for m in _bn_layers(model):
            m.train()


def adapt_model(
    predictor: Predictor,
    digits: Digits,
    cfg: AdaptConfig,
    mnist: MNIST | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[nn.Module, float]:
    """A copy of the predictor's model, fine-tuned on `digits` (+ MNIST replay) as `cfg` says,
    and the mean loss of its last 10 steps. A pure function of (base weights, digits, cfg,
    seed) on the CPU."""
    check_base(predictor)
    if len(digits) == 0:
        raise DataError("no digits to adapt to")
    if cfg.replay and mnist is None:
        raise DataError("MNIST replay needs the MNIST training set")
    device = predictor.device
    model = copy.deepcopy(predictor.model)
    net = Predictor(model, predictor.config).net  # canonical digits -> logits, the run's own input
    params = trainable_parameters(model, cfg.mode)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    x_own, y_own = digits.x.to(device), digits.y.to(device)
    n_replay = round(cfg.batch * cfg.replay)
    aug = predictor.config.augment
    use_aug = cfg.augment and is_active(aug)
    losses: list[float] = []
    if progress:
        progress(0, cfg.steps)
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(y_own), (cfg.batch,), generator=g)
        xb, yb = x_own[idx.to(device)], y_own[idx.to(device)]
        if use_aug:
            xb = augment_batch(xb, aug, g).clamp(0, 1)
        if n_replay:
            assert mnist is not None
            r = torch.randint(len(mnist.train_labels), (n_replay,), generator=g)
            xr = canonical(mnist.train_images[r]).to(device)
            if use_aug:
                xr = augment_batch(xr, aug, g).clamp(0, 1)
            xb = torch.cat([xb, xr])
            yb = torch.cat([yb, mnist.train_labels[r].to(device)])
        _set_mode(model, cfg.mode)
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress and (step % 5 == 0 or step == cfg.steps):
            progress(step, cfg.steps)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval(), float(np.mean(losses[-10:]))


@torch.no_grad()
def accuracy(predictor: Predictor, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of canonical digits `x` read as `y`."""
    if len(y) == 0:
        return float("nan")
    return float((predictor.probs(x).argmax(1) == y).float().mean())


def mnist_test_accuracy(predictor: Predictor, mnist: MNIST, limit: int = 0) -> float:
    """Accuracy on the MNIST test digits the run is tested on (`eval`: its data.test_limit, all
    10,000 by default), or on the first `limit`."""
    t = canonical_test(
        mnist, dataclasses.replace(predictor.config.data, test_limit=limit or predictor.config.data.test_limit)
    )
    return accuracy(predictor, t.x, t.y)


def adapted_config(base: Predictor, cfg: AdaptConfig, seed: int) -> RunConfig:
    """The adapted run's config: the base run's, plus where it came from and how it was adapted."""
    origin = base.path.name if base.path is not None else base.name
    return dataclasses.replace(base.config, adapted_from=origin, adapt=cfg, seed=seed)


def adapt_run(
    base: Predictor,
    digits: Digits,
    out: Path,
    cfg: AdaptConfig | None = None,
    mnist: MNIST | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    mnist_test_limit: int = 0,
) -> dict[str, Any]:
    """Adapt `base` to `digits` and write the run record at `out` (a new or empty folder).
    Returns its result.json: MNIST test accuracy before and after (forgetting shows), the
    writer's own digits read before and after, timings."""
    cfg = cfg or AdaptConfig()
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out} already exists and is not empty: choose another --out")
    if mnist is None:
        raise DataError("adapting needs MNIST (for replay and to measure forgetting)")
    t_all = time.perf_counter()
    c_all = time.process_time()
    own_before = accuracy(base, digits.x, digits.y)
    mnist_before = mnist_test_accuracy(base, mnist, mnist_test_limit)
    t0, c0 = time.perf_counter(), time.process_time()
    model, loss = adapt_model(base, digits, cfg, mnist, seed, progress)
    adapt_wall, adapt_cpu = time.perf_counter() - t0, time.process_time() - c0
    run_cfg = adapted_config(base, cfg, seed)
    adapted = Predictor(model, run_cfg, out)
    own_after = accuracy(adapted, digits.x, digits.y)
    mnist_after = mnist_test_accuracy(adapted, mnist, mnist_test_limit)
    result: dict[str, Any] = {
        "model": run_cfg.model,
        "seed": seed,
        "adapted_from": run_cfg.adapted_from,
        "test_acc": mnist_after,  # as every run's result: MNIST test accuracy (after adapting)
        "test_n": mnist_test_limit or base.config.data.test_limit or len(mnist.test_labels),
        "base_test_acc": mnist_before,
        "forgetting": mnist_before - mnist_after,
        "digits": len(digits),
        "digits_per_class": digits.counts(),
        "digits_acc_before": own_before,  # the writer's own digits (training digits: a sanity check)
        "digits_acc_after": own_after,
        "unusable": digits.errors,
        "train_loss": loss,
        "epochs": 1,
        "train_seconds": adapt_wall,
        "adapt_cpu_seconds": adapt_cpu,
        "wall_seconds": time.perf_counter() - t_all,
        "cpu_seconds": time.process_time() - c_all,
        "device": str(base.device),
        "run_dir": str(out),
    }
    _write_record(out, model, run_cfg, result, base.device)
    return result


def _write_record(out: Path, model: nn.Module, cfg: RunConfig, result: dict[str, Any], device: torch.device) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        runs.atomic_write_json(
            out / runs.CONFIG, {**cfg.to_dict(), "environment": runs.environment(), "device": str(device)}
        )
        metrics = {
            "epoch": 1,
            "loss": result["train_loss"],
            "acc": result["digits_acc_after"],
            "lr": cfg.adapt.lr if cfg.adapt else 0.0,
            "seconds": result["train_seconds"],
            "train_seconds": result["train_seconds"],
        }
        runs.atomic_write_bytes(out / runs.METRICS, (json.dumps(metrics, sort_keys=True) + "\n").encode())
        runs.write_result(out, model, cfg.model, result)
    except OSError as e:
        raise RunError(f"cannot write the run record in {out}: {e.strerror}") from None


# --------------------------------------------------------------------------------------------
# Measuring it (`mnistlab adapt-study`): UCI digits (a test set: 43 other writers) and a
# synthetic writer made from MNIST (one consistent style: a strong slant and a thick pen).


def uci_digits(upscale: int = 4) -> Digits:
    """scikit-learn's UCI digits as a user would hand them in (evaluate.uci_images), read
    through the single-digit path."""
    from mnistlab.handwriting.evaluate import uci_images

    imgs, y = uci_images(upscale)
    return read_digits(imgs, y.tolist(), [f"uci-{i}" for i in range(len(y))])


WRITER_SHEAR = 1.0  # horizontal shift per unit of height (a slant of 45 degrees)
WRITER_PEN = 4  # radius, pixels at 4x (112x112): a thick marker


def writer_style(images: torch.Tensor, shear: float = WRITER_SHEAR, pen: int = WRITER_PEN) -> list[np.ndarray]:
    """MNIST digits (N, 28, 28) uint8 -> the same digits written by one synthetic writer: 4x
    larger, slanted by `shear`, with a pen `pen` pixels thicker, dark ink on white paper (what
    a scan of their page would give). Deterministic."""
    from PIL import Image
    from scipy import ndimage

    r = np.arange(-pen, pen + 1)
    disk = (r[:, None] ** 2 + r[None, :] ** 2) <= pen * pen
    out = []
    for a in images.numpy():
        img = Image.fromarray(a).resize((112, 112), Image.Resampling.BILINEAR)
        # output (x, y) <- input (x + shear * (y - 56), y): the top leans right
        img = img.transform(
            (112, 112), Image.Transform.AFFINE, (1, shear, -shear * 56, 0, 1, 0), Image.Resampling.BILINEAR
        )
        ink = ndimage.grey_dilation(np.asarray(img, np.float32) / 255.0, footprint=disk)
        out.append(1.0 - ink)
    return out


def writer_digits(mnist: MNIST, start: int, n: int) -> Digits:
    """MNIST test digits start..start+n in the synthetic writer's style, read through the
    single-digit path."""
    imgs = writer_style(mnist.test_images[start : start + n])
    y = mnist.test_labels[start : start + n].tolist()
    return read_digits(imgs, y, [f"writer-{i}" for i in range(start, start + n)])


def half_split(y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded split in halves, class by class: (indices to adapt from, indices to test on)."""
    g = torch.Generator().manual_seed(seed)
    first, second = [], []
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        first.append(idx[: len(idx) // 2])
        second.append(idx[len(idx) // 2 :])
    return torch.cat(first), torch.cat(second)


def subset(d: Digits, idx: torch.Tensor) -> Digits:
    return Digits(d.x[idx], d.y[idx], [d.names[i] for i in idx.tolist()])


STUDY_SHOTS = (1, 5, 10, 20)
STUDY_SEEDS = (0, 1, 2)
WRITER_POOL = (0, 1000)  # MNIST test digits the synthetic writer's shots are drawn from
WRITER_TEST = (5000, 2000)  # ... and the ones it is tested on (other digits, same style)


def study_sets(mnist: MNIST, sets: Sequence[str]) -> dict[str, tuple[Digits, Digits | None]]:
    """{set: (digits, None)} for "uci" (split in halves per seed) or {set: (pool, test)} for
    "writer" (fixed MNIST test ranges)."""
    out: dict[str, tuple[Digits, Digits | None]] = {}
    for name in sets:
        if name == "uci":
            out[name] = (uci_digits(), None)
        elif name == "writer":
            out[name] = (writer_digits(mnist, *WRITER_POOL), writer_digits(mnist, *WRITER_TEST))
        else:
            raise DataError(f"unknown study set {name!r}: choose uci or writer")
    return out


def adapt_study(
    base: Predictor,
    mnist: MNIST,
    modes: Sequence[str] = ("all",),
    shots: Sequence[int] = STUDY_SHOTS,
    seeds: Sequence[int] = STUDY_SEEDS,
    sets: Sequence[str] = ("uci", "writer"),
    cfg: AdaptConfig | None = None,
    mnist_test_limit: int = 0,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """For each set, mode, K and seed: adapt from the first K digits per class of one part,
    test on the other. UCI: a seeded half/half split per seed; writer: fixed MNIST test ranges
    (the seed draws the batches and augmentation). One row each: accuracy before/after on the
    test part, MNIST test accuracy before/after, adaptation wall and CPU seconds."""
    cfg = cfg or AdaptConfig()
    data = study_sets(mnist, sets)
    mnist_before = mnist_test_accuracy(base, mnist, mnist_test_limit)
    rows = []
    for name, (digits, fixed_test) in data.items():
        for seed in seeds:
            if fixed_test is None:
                a, b = half_split(digits.y, seed)
                pool, test = subset(digits, a), subset(digits, b)
            else:
                pool, test = digits, fixed_test
            before = accuracy(base, test.x, test.y)
            for mode in modes:
                for k in shots:
                    chosen = subset(pool, torch.tensor(first_shots(pool.y.tolist(), k)))
                    run_cfg = dataclasses.replace(cfg, mode=mode, shots=k)
                    t0, c0 = time.perf_counter(), time.process_time()
                    model, _ = adapt_model(base, chosen, run_cfg, mnist, seed)
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    adapted = Predictor(model, base.config)
                    row = {
                        "set": name,
                        "mode": mode,
                        "shots": k,
                        "seed": seed,
                        "test_n": len(test),
                        "before": before,
                        "after": accuracy(adapted, test.x, test.y),
                        "mnist_before": mnist_before,
                        "mnist_after": mnist_test_accuracy(adapted, mnist, mnist_test_limit),
                        "adapt_wall_s": wall,
                        "adapt_cpu_s": cpu,
                    }
                    rows.append(row)
                    if on_row:
                        on_row(row)
    return rows


def summarize_study(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (set, mode, shots), in points (percent)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["mode"], r["shots"]), []).append(r)
    out = []
    for (name, mode, k), rs in groups.items():

        def ms(key: str, rs: list[dict[str, Any]] = rs) -> tuple[float, float]:
            v = np.array([r[key] for r in rs], dtype=np.float64) * 100
            return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

        gain = np.array([r["after"] - r["before"] for r in rs]) * 100
        loss = np.array([r["mnist_before"] - r["mnist_after"] for r in rs]) * 100
        out.append(
            {
                "set": name,
                "mode": mode,
                "shots": k,
                "seeds": len(rs),
                "before": ms("before"),
                "after": ms("after"),
                "gain": (float(gain.mean()), float(gain.std(ddof=1)) if len(rs) > 1 else 0.0),
                "mnist_after": ms("mnist_after"),
                "mnist_loss": (float(loss.mean()), float(loss.std(ddof=1)) if len(rs) > 1 else 0.0),
                "wall_s": float(np.mean([r["adapt_wall_s"] for r in rs])),
                "cpu_s": float(np.mean([r["adapt_cpu_s"] for r in rs])),
            }
        )
    return out
