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
    elif mode in ("bn", "stats"):
        chosen = [p for m in _bn_layers(model) for p in m.parameters()]
        if not chosen:
            raise RunError(f"the model has no BatchNorm layer: `{mode}` adaptation cannot be used on it")
        if mode == "stats":
            chosen = []  # only the running statistics move
    else:  # pragma: no cover - AdaptConfig's Literal
        raise ValueError(mode)
    ids = {id(p) for p in chosen}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return chosen


def _set_mode(model: nn.Module, mode: str) -> None:
    """Dropout off always (a few shots); BN layers update their statistics only in `bn`, `all-bn`
    and `stats`."""
    model.eval()
    if mode in ("bn", "all-bn", "stats"):
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
    opt = torch.optim.Adam(params, lr=cfg.lr) if params else None
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
        if opt is None:  # `stats`: the forward pass moves the BN running statistics, nothing else
            with torch.no_grad():
                losses.append(float(F.cross_entropy(net(xb), yb)))
        else:
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        if progress and (step % 5 == 0 or step == cfg.steps):
            progress(step, cfg.steps)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    if cfg.proto:
        fold_prototypes(model, net, x_own, y_own, cfg, aug if use_aug else None, g)
    return model, float(np.mean(losses[-10:])) if losses else 0.0


PROTO_SCALE = 10.0  # the mean squared distance between two class means becomes this many logits


@torch.no_grad()
def fold_prototypes(
    model: nn.Module,
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: AdaptConfig,
    aug: Any,
    g: torch.Generator,
) -> None:
    """Blend a nearest-class-mean head into the last Linear layer, in place.

    The class means mu_c of the penultimate features f (the last Linear layer's input) of the
    writer's digits (and `cfg.proto_copies` augmented copies of each) give scores
    -s * |f - mu_c|^2, with s = PROTO_SCALE / (mean |mu_c - mu_c'|^2 over class pairs). The
    |f|^2 term is the same for every class, so softmax(logits + proto * scores) is exactly the
    softmax of a Linear layer with W + 2 proto s mu and b - proto s |mu|^2: the adapted run stays
    an ordinary record. Every class needs at least one digit."""
    head = _head(model)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = head.register_forward_hook(lambda m, i, o: seen.append((i[0].detach().flatten(1), o.detach())))
    try:
        batches = [x] + [augment_batch(x, aug, g).clamp(0, 1) for _ in range(cfg.proto_copies if aug else 0)]
        outs = [net(b) for b in batches]
    finally:
        hook.remove()
    if len(seen) != len(batches) or not all(
        o.shape == got.shape and torch.allclose(o, got) for o, (_, got) in zip(outs, seen, strict=False)
    ):
        raise RunError("the model's last Linear layer does not give its logits: `proto` cannot be used on it")
    if head.bias is None:
        raise RunError("the model's last Linear layer has no bias: `proto` cannot be used on it")
    f = torch.cat([feat for feat, _ in seen]).double()
    ys = y.repeat(len(batches))
    if sorted(set(ys.tolist())) != list(range(head.out_features)):
        raise DataError("`proto` needs digits of every class")  # |f|^2 cancels only if every class moves
    mu = torch.stack([f[ys == c].mean(0) for c in range(head.out_features)])
    spread = float(torch.cdist(mu, mu).pow(2).sum()) / (len(mu) * (len(mu) - 1))
    if spread <= 0:
        return
    s = cfg.proto * PROTO_SCALE / spread
    head.weight.add_((2 * s * mu).to(head.weight.dtype))
    head.bias.add_((-s * mu.pow(2).sum(1)).to(head.bias.dtype))


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

# The synthetic writers of the study, each one consistent style made from MNIST digits:
#   writer       a 45 degree slant and a pen 4 px (at 4x) thicker (the first one, kept as it was)
#   thin         a thin pen (strokes eroded by 3 px at 4x), small and wide (20 x 48 px of 112)
#   continental  a continental 1 (a long flag), a 7 with a bar, a back-slant, a slightly thicker pen
WRITERS = ("writer", "thin", "continental")


def _disk(r: int) -> np.ndarray:
    a = np.arange(-r, r + 1)
    return (a[:, None] ** 2 + a[None, :] ** 2) <= r * r


def _slanted(a: np.ndarray, shear: float) -> Any:
    """An MNIST digit (28, 28) uint8 -> 112x112, slanted by `shear` (the top leans right if > 0)."""
    from PIL import Image

    img = Image.fromarray(a).resize((112, 112), Image.Resampling.BILINEAR)
    # output (x, y) <- input (x + shear * (y - 56), y)
    return img.transform(
        (112, 112), Image.Transform.AFFINE, (1, shear, -shear * 56, 0, 1, 0), Image.Resampling.BILINEAR
    )


def writer_style(images: torch.Tensor, shear: float = WRITER_SHEAR, pen: int = WRITER_PEN) -> list[np.ndarray]:
    """MNIST digits (N, 28, 28) uint8 -> the same digits written by one synthetic writer: 4x
    larger, slanted by `shear`, with a pen `pen` pixels thicker, dark ink on white paper (what
    a scan of their page would give). Deterministic."""
    from scipy import ndimage

    disk = _disk(pen)
    out = []
    for a in images.numpy():
        ink = ndimage.grey_dilation(np.asarray(_slanted(a, shear), np.float32) / 255.0, footprint=disk)
        out.append(1.0 - ink)
    return out


def thin_style(images: torch.Tensor, erode: int = 3, height: int = 20, width: int = 48) -> list[np.ndarray]:
    """MNIST digits -> written small and wide with a thin pen: at 4x the strokes eroded by `erode`
    px (a 1 px core kept), then the digit squeezed into `height` x `width` px of the 112x112 page."""
    from PIL import Image
    from scipy import ndimage

    disk = _disk(erode)
    out = []
    for a in images.numpy():
        ink = np.asarray(_slanted(a, 0.0), np.float32) / 255.0
        thin = np.maximum(ndimage.grey_erosion(ink, footprint=disk), (ink > 0.9) * ndimage.grey_erosion(ink, size=2))
        small = Image.fromarray((thin * 255).astype(np.uint8)).resize((width, height), Image.Resampling.LANCZOS)
        page = np.zeros((112, 112), np.float32)
        top, left = (112 - height) // 2, (112 - width) // 2
        page[top : top + height, left : left + width] = np.asarray(small, np.float32) / 255.0
        out.append(1.0 - page)
    return out


def continental_style(images: torch.Tensor, labels: Sequence[int], shear: float = -0.3) -> list[np.ndarray]:
    """MNIST digits -> one continental writer: every 1 gets a long flag (a stroke from its top
    down to the left, 40 % of its height), every 7 a bar across its stem at 55 % of its height;
    all slant back by `shear` and the pen is 1 px (at 4x) thicker."""
    from PIL import ImageDraw
    from scipy import ndimage

    out = []
    for a, y in zip(images.numpy(), labels, strict=True):
        img = _slanted(a, shear)
        ink = np.asarray(img, np.float32) / 255.0
        rows, cols = np.nonzero(ink > 0.5)
        if len(rows) and y in (1, 7):
            top, h = rows.min(), rows.max() - rows.min() + 1
            width = max(6, int(round((ink > 0.5).sum() / max(h, 1) * (0.8 if y == 1 else 0.5))))
            draw = ImageDraw.Draw(img)
            if y == 1:
                x0 = float(cols[rows <= top + 3].mean())
                draw.line([(x0, top + 2), (x0 - 0.32 * h, top + 0.4 * h)], fill=255, width=min(width, 12))
            else:
                yb = int(top + 0.55 * h)
                on = cols[np.abs(rows - yb) <= 1]
                if len(on):
                    xc = float(on.mean())
                    draw.line([(xc - 0.22 * h, yb), (xc + 0.22 * h, yb)], fill=255, width=min(width, 12))
            ink = np.asarray(img, np.float32) / 255.0
        out.append(1.0 - ndimage.grey_dilation(ink, footprint=_disk(1)))
    return out


def styled(images: torch.Tensor, labels: Sequence[int], style: str) -> list[np.ndarray]:
    """MNIST digits in one synthetic writer's style (WRITERS), dark on white, 112x112."""
    if style == "writer":
        return writer_style(images)
    if style == "thin":
        return thin_style(images)
    if style == "continental":
        return continental_style(images, labels)
    raise DataError(f"unknown synthetic writer {style!r}: choose one of {', '.join(WRITERS)}")


def writer_digits(mnist: MNIST, start: int, n: int, style: str = "writer") -> Digits:
    """MNIST test digits start..start+n in a synthetic writer's style, read through the
    single-digit path."""
    y = mnist.test_labels[start : start + n].tolist()
    imgs = styled(mnist.test_images[start : start + n], y, style)
    return read_digits(imgs, y, [f"{style}-{i}" for i in range(start, start + n)])


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
        elif name in WRITERS:
            out[name] = (writer_digits(mnist, *WRITER_POOL, name), writer_digits(mnist, *WRITER_TEST, name))
        else:
            raise DataError(f"unknown study set {name!r}: choose uci or one of {', '.join(WRITERS)}")
    return out


def method_label(cfg: AdaptConfig) -> str:
    """`cfg.mode`, plus every knob that differs from AdaptConfig's defaults (`shots` aside)."""
    default = AdaptConfig()
    parts = [cfg.mode]
    for f in dataclasses.fields(AdaptConfig):
        if f.name in ("mode", "shots"):
            continue
        v = getattr(cfg, f.name)
        if v != getattr(default, f.name):
            parts.append(f"{f.name.replace('_', '-')}={v:g}" if not isinstance(v, bool) else f"{f.name}={v}")
    return " ".join(parts)


def adapt_study(
    base: Predictor,
    mnist: MNIST,
    variants: Sequence[AdaptConfig] = (AdaptConfig(),),
    shots: Sequence[int] = STUDY_SHOTS,
    seeds: Sequence[int] = STUDY_SEEDS,
    sets: Sequence[str] = ("uci", *WRITERS),
    mnist_test_limit: int = 0,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """For each set, method (an AdaptConfig), K and seed: adapt from the first K digits per class
    of one part, test on the other. UCI: a seeded half/half split per seed; a synthetic writer:
    fixed MNIST test ranges (the seed draws the batches and augmentation). One row each:
    accuracy before/after on the test part, MNIST test accuracy before/after, adaptation wall
    and CPU seconds."""
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
            for cfg in variants:
                for k in shots:
                    chosen = subset(pool, torch.tensor(first_shots(pool.y.tolist(), k)))
                    run_cfg = dataclasses.replace(cfg, shots=k)
                    t0, c0 = time.perf_counter(), time.process_time()
                    model, _ = adapt_model(base, chosen, run_cfg, mnist, seed)
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    adapted = Predictor(model, base.config)
                    row = {
                        "set": name,
                        "mode": cfg.mode,
                        "method": method_label(cfg),
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


WRITERS_MEAN = "writers"  # the summary's row for the mean over the synthetic writers


def summarize_study(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (set, method, shots), in points (percent). With two or more
    synthetic writers, also a `writers` row per (method, shots): each seed's mean over them."""
    rows = list(rows)
    per_seed: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for r in rows:
        if r["set"] in WRITERS:
            per_seed.setdefault((r.get("method", r["mode"]), r["shots"], r["seed"]), []).append(r)
    combined = []
    for rs in per_seed.values():
        if len(rs) > 1:
            mean = {
                key: float(np.mean([r[key] for r in rs]))
                for key in ("before", "after", "mnist_before", "mnist_after", "adapt_wall_s", "adapt_cpu_s")
            }
            combined.append({**rs[0], **mean, "set": WRITERS_MEAN})
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows + combined:
        groups.setdefault((r["set"], r.get("method", r["mode"]), r["shots"]), []).append(r)
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
                "method": mode,
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
