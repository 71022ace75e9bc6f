"""The training loop: `train(config, model, splits) -> TrainResult`, and `evaluate`.

Data stays in tensors on the device; a batch is `x[perm[i:i+b]]` (no DataLoader, no per-sample
Python). Everything that is not the optimisation itself (progress bars, run records, activation
snapshots, time-to-accuracy probes) is a Callback, and callback time is excluded from
`train_seconds`, which counts only the training steps.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab import checkpoint
from mnistlab.attacks import adversarial_batch
from mnistlab.augment import PAIRS_LOSS_WEIGHT, augment_batch, is_active, touching_pairs
from mnistlab.config import RunConfig, TrainConfig
from mnistlab.dataset import Split, Splits
from mnistlab.errors import ConfigError

# Keras' defaults (tf.keras 2.x) for the TrainConfig fields left at None.
KERAS_DEFAULT_LR = {
    "sgd": 0.01,
    "momentum": 0.01,
    "nesterov": 0.01,
    "rmsprop": 0.001,
    "adam": 0.001,
    "adamw": 0.001,
    "adadelta": 0.001,
    "muon": 0.001,  # its Adam part; the Muon part takes train.muon_lr (Keras has no Muon)
}
KERAS_DEFAULT_RHO = {"rmsprop": 0.9, "adadelta": 0.95}
KERAS_DEFAULT_MOMENTUM = {"momentum": 0.9, "nesterov": 0.9}  # plain sgd: 0
KERAS_DEFAULT_WEIGHT_DECAY = {"adamw": 0.004}  # decoupled; the others: 0


def _or(value: float | None, defaults: dict[str, float], optimizer: str) -> float:
    return value if value is not None else defaults.get(optimizer, 0.0)


def pick_device(name: str | None = None) -> torch.device:
    """`name` if given ("cpu", "cuda", "cuda:1"), else CUDA when present, else the CPU."""
    if name:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but no CUDA device is available")
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds CUDA: model init and dropout draw from here


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    name = cfg.optimizer
    lr = _or(cfg.lr, KERAS_DEFAULT_LR, name)
    wd = _or(cfg.weight_decay, KERAS_DEFAULT_WEIGHT_DECAY, name)
    momentum = _or(cfg.momentum, KERAS_DEFAULT_MOMENTUM, name)
    rho = _or(cfg.rho, KERAS_DEFAULT_RHO, name)
    if cfg.betas is not None and name not in ("adam", "adamw", "muon"):
        raise ConfigError(f"train.betas is for adam/adamw/muon, not {name!r}")
    betas = {} if cfg.betas is None else {"betas": tuple(cfg.betas)}
    match name:
        case "sgd" | "momentum" | "nesterov":
            return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=name == "nesterov", weight_decay=wd)
        case "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, alpha=rho, eps=cfg.eps, weight_decay=wd)
        case "adam":
            return torch.optim.Adam(params, lr=lr, eps=cfg.eps, weight_decay=wd, **betas)
        case "adamw":
            return torch.optim.AdamW(params, lr=lr, eps=cfg.eps, weight_decay=wd, **betas)
        case "adadelta":
            return torch.optim.Adadelta(params, lr=lr, rho=rho, eps=cfg.eps, weight_decay=wd)
        case "muon":
            params = list(params)
            matrices = [p for p in params if p.ndim >= 2][:-1]  # the last one is the output layer: Adam
            rest = [p for p in params if all(p is not m for m in matrices)]
            return MuonAdam(
                matrices, rest, lr=lr, muon_lr=cfg.muon_lr, muon_momentum=cfg.muon_momentum,
                betas=cfg.betas or (0.9, 0.999), eps=cfg.eps, weight_decay=wd,
            )  # fmt: skip
    raise ConfigError(f"unknown optimizer {name!r}")  # pragma: no cover


def _orthogonalise(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The nearest semi-orthogonal matrix to `g` (rows, cols), roughly: Newton-Schulz iterations
    with Muon's quintic coefficients, which push every singular value towards ~1 in 5 steps
    (K. Jordan et al., 2024). In float32: these matrices are small and the CPU has no fast bf16
    path for them."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (g.norm() + 1e-7)
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T
    for _ in range(steps):
        xx = x @ x.T
        x = a * x + (b * xx + c * xx @ xx) @ x
    return x if wide else x.T


class MuonAdam(torch.optim.Optimizer):
    """`train.optimizer=muon`: Muon on the hidden weight matrices (each conv's weight flattened to
    (out, in x kh x kw), the hidden Linear layers'), Adam on the rest (biases, BatchNorm, the
    output layer). Muon keeps Nesterov momentum of the gradient and steps along its orthogonalised
    form, so every direction of a layer's weight moves at the same rate; scaled by
    sqrt(max(1, rows / cols)) as in the reference implementation. PyTorch's own torch.optim.Muon
    takes 2-D parameters only, so not conv kernels. Group 0 is Adam's, group 1 Muon's: the
    scheduler scales both lrs (OneCycleLR's max_lr is each group's own)."""

    def __init__(
        self,
        muon_params: list[torch.Tensor],
        adam_params: list[torch.Tensor],
        lr: float,
        muon_lr: float,
        muon_momentum: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
    ):
        groups = [
            {"params": adam_params, "muon": False, "lr": lr, "betas": tuple(betas), "eps": eps},
            {"params": muon_params, "muon": True, "lr": muon_lr, "momentum": muon_momentum},
        ]
        super().__init__([g for g in groups if g["params"]], {"weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if wd:
                    p.mul_(1 - lr * wd)  # decoupled, as AdamW
                if group["muon"]:
                    buf = state.setdefault("momentum_buffer", torch.zeros_like(p))
                    buf.lerp_(p.grad, 1 - group["momentum"])
                    g = p.grad.lerp(buf, group["momentum"]).reshape(len(p), -1)  # Nesterov
                    scale = max(1.0, g.shape[0] / g.shape[1]) ** 0.5
                    p.add_(_orthogonalise(g.float()).view_as(p).to(p.dtype), alpha=-lr * scale)
                    continue
                b1, b2 = group["betas"]
                if not state:
                    state["step"] = torch.zeros(())
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                state["exp_avg"].lerp_(p.grad, 1 - b1)
                state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (state["exp_avg_sq"] / (1 - b2**t)).sqrt_().add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1**t))


def schedule_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimiser steps of the run: epochs x steps_per_epoch, or train.schedule_epochs' worth."""
    if cfg.schedule_epochs is None:
        return max(1, cfg.epochs * steps_per_epoch)
    return max(1, round(cfg.schedule_epochs * steps_per_epoch))


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> tuple[Any, str]:
    """(scheduler or None, when it steps: "step", "epoch" or "metric")."""
    match cfg.schedule:
        case "constant":
            return None, "epoch"
        case "step":
            return torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, cfg.gamma), "epoch"
        case "plateau":
            mode = "max" if cfg.plateau_monitor.endswith("acc") else "min"
            # threshold_mode="abs" with 1e-4 matches Keras' min_delta semantics.
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience,
                threshold=1e-4, threshold_mode="abs", min_lr=cfg.min_lr,
            )  # fmt: skip
            return sched, "metric"
        case "onecycle":
            total = schedule_steps(cfg, steps_per_epoch)
            group = opt.param_groups[0]
            cycle_momentum = "betas" in group or group.get("momentum", 0) > 0  # Adadelta, plain SGD: none
            cycle_momentum = cycle_momentum and cfg.betas is None  # betas named: beta1 stays as named
            # OneCycleLR divides by (warm-up steps - 1): exactly one warm-up step (e.g. 4 steps at 0.25) crashes it
            pct = cfg.warmup if abs(cfg.warmup * total - 1) > 1e-9 else min(1.5 / total, 0.99)
            cycle_momentum = cycle_momentum and cfg.optimizer != "muon"
            sched = torch.optim.lr_scheduler.OneCycleLR(  # each group's own lr is its peak
                opt, [g["lr"] for g in opt.param_groups], total_steps=total, pct_start=pct,
                cycle_momentum=cycle_momentum,
            )  # fmt: skip
            return sched, "step"
        case "cosine":
            total = schedule_steps(cfg, steps_per_epoch)
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, total), "step"
    raise ConfigError(f"unknown schedule {cfg.schedule!r}")  # pragma: no cover


class WeightEMA:
    """An exponential moving average of a model's weights (train.ema): parameters and float
    buffers (BN statistics) are lerped towards the live model's after every step, with the usual
    warm-up decay min(decay, (1 + n) / (10 + n)) so that early steps are not swamped by the init.
    One foreach call per step: no host sync."""

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.n = decay, 0
        self._pairs = [(e, m) for e, m in zip(self._tensors(self.module), self._tensors(model), strict=True)]

    @staticmethod
    def _tensors(model: nn.Module) -> list[torch.Tensor]:
        return [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        ema, live = zip(*self._pairs, strict=True)
        torch._foreach_lerp_(list(ema), [t.detach() for t in live], 1.0 - d)
        for e, m in zip(self.module.buffers(), model.buffers(), strict=True):
            if not e.is_floating_point():
                e.copy_(m)  # num_batches_tracked


@dataclass
class TrainState:
    """What callbacks see. Setting `stop = True` ends training after the current batch."""

    config: RunConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    splits: Splits
    device: torch.device
    epoch: int = 0  # 1-based once training has started
    step: int = 0  # optimiser steps taken so far
    steps_per_epoch: int = 0
    train_seconds: float = 0.0  # training-step time so far (callbacks excluded)
    train_cpu_seconds: float = 0.0  # the same steps' process CPU time, all threads (callbacks excluded)
    running: tuple[torch.Tensor, torch.Tensor, int] | None = None  # this epoch's (loss sum, correct, seen)
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: bool = False
    # What a checkpoint must hold besides the model and optimizer (see checkpoint.py):
    scheduler: Any = None
    generators: dict[str, torch.Generator] = field(default_factory=dict)  # batch order, augmentation
    best_value: float | None = None  # of train.monitor
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    since_best: int = 0
    ema: WeightEMA | None = None  # train.ema: the averaged weights, which are what gets evaluated

    @property
    def eval_model(self) -> nn.Module:
        """The weights to evaluate: the EMA's under train.ema, else the model's."""
        return self.ema.module if self.ema is not None else self.model


class Callback:
    def on_train_begin(self, state: TrainState) -> None: ...
    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None: ...
    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...


@dataclass
class TrainResult:
    history: list[dict[str, Any]]  # one dict per epoch
    best_epoch: int | None  # the restored epoch when train.monitor is set
    train_seconds: float  # training steps only
    wall_seconds: float  # everything, validation and callbacks included
    stopped_early: bool
    warmup_seconds: float = 0.0  # train.compile's warm-up before training (not in train_seconds)
    train_cpu_seconds: float = 0.0  # process CPU seconds of the training steps (callbacks excluded)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, prob_clip: float = 0.0, **kw: Any) -> torch.Tensor:
    """Cross-entropy from logits, or (prob_clip > 0, TrainConfig.prob_clip) as Keras 2 computes it
    on softmax outputs: -log(clip(p_true, c, 1 - c)), whose gradient is zero where the clip acts."""
    if not prob_clip:
        return F.cross_entropy(logits, y, **kw)
    p = F.softmax(logits.float(), dim=1).gather(1, y[:, None])[:, 0]
    nll = -p.clamp(prob_clip, 1.0 - prob_clip).log()
    return nll.sum() if kw.get("reduction") == "sum" else nll.mean()


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1000, prob_clip: float = 0.0) -> dict[str, Any]:
    """Loss, accuracy and the 10x10 confusion matrix (rows: true label, columns: prediction).
    `prob_clip`: the loss as the run trains it (TrainConfig.prob_clip)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    confusion = torch.zeros(100, dtype=torch.long, device=device)
    for i in range(0, len(split), batch_size):
        x = split.x[i : i + batch_size].to(device, non_blocking=True)
        y = split.y[i : i + batch_size].to(device, non_blocking=True)
        logits = model(x)
        loss_sum += cross_entropy(logits.float(), y, prob_clip, reduction="sum")
        confusion += torch.bincount(y * 10 + logits.argmax(1), minlength=100)
    model.train(was_training)
    n = max(1, len(split))
    cm = confusion.view(10, 10).cpu()
    return {
        "loss": float(loss_sum) / n,
        "acc": float(cm.diag().sum()) / n,
        "n": len(split),
        "confusion": cm.tolist(),
    }


def _check_monitors(cfg: TrainConfig, has_val: bool) -> None:
    for what, metric in (("train.monitor", cfg.monitor), ("train.plateau_monitor", cfg.plateau_monitor)):
        if what == "train.plateau_monitor" and cfg.schedule != "plateau":
            continue
        if metric.startswith("val_") and not has_val:
            raise ConfigError(f"{what}={metric} needs a validation set: set data.val_split > 0")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError(f"bad training length: epochs={cfg.epochs}, batch_size={cfg.batch_size}")
    if cfg.schedule_epochs is not None:
        if cfg.schedule not in ("onecycle", "cosine"):
            raise ConfigError(f"train.schedule_epochs is for the onecycle/cosine schedules, not {cfg.schedule!r}")
        if not 0 < cfg.schedule_epochs <= cfg.epochs:
            raise ConfigError(f"bad train.schedule_epochs={cfg.schedule_epochs}: needs 0 < it <= train.epochs")
    if cfg.ema is not None and not 0 < cfg.ema < 1:
        raise ConfigError(f"bad train.ema={cfg.ema}: a decay in (0, 1)")
    if not 0 <= cfg.prob_clip < 0.5:
        raise ConfigError(f"bad train.prob_clip={cfg.prob_clip}: 0 (off) or a small probability such as 1e-7")
    if cfg.prob_clip and cfg.label_smoothing:
        raise ConfigError("train.prob_clip and train.label_smoothing do not combine")


def _improved(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best if metric.endswith("acc") else value < best


@contextmanager
def flush_denormal(enabled: bool) -> Iterator[None]:
    """train.flush_denormal for the duration of a run. The setting is process-wide and torch
    has no getter, so it is switched back off afterwards (its default); a no-op when off."""
    if not enabled:
        yield
        return
    torch.set_flush_denormal(True)  # False (and no effect) on CPUs without SSE3
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def autocast_bf16(precision: str, device: torch.device | str) -> bool:
    """Whether train.precision means bfloat16 autocast on this device ("auto": where it is native:
    a CUDA GPU with bf16, or a CPU that oneDNN runs bf16 on (AVX512-BF16/AMX, or AVX512 with
    conversion), not an AVX2-only CPU, where bf16 would be emulated and slower)."""
    if precision != "auto":
        return precision == "bf16"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private probe: absent in some builds
        return False


def compiled_for_training(
    model: nn.Module, tc: TrainConfig, n: int, device: torch.device, bf16: bool, in_shape: tuple[int, ...]
) -> tuple[nn.Module, float]:
    """(the model train.compile asks for, seconds of its warm-up). The warm-up runs forward and
    backward at the run's two batch sizes (the full one and the last, smaller one) so that the
    compile (and CUDA-graph capture) happens here and not inside the timed steps; the weights'
    gradients are cleared and the BN statistics restored, so training starts where it would have."""
    if tc.compile == "none":
        return model, 0.0
    t0 = time.perf_counter()
    if tc.compile == "eager":
        run = torch.compile(model, backend="eager")
    else:
        run = torch.compile(model, mode=None if tc.compile == "default" else tc.compile)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sizes = {tc.batch_size if n >= tc.batch_size else n}
    if n % tc.batch_size:
        sizes.add(n % tc.batch_size)
    model.train()
    for b in sorted(sizes, reverse=True):
        x = torch.rand(b, *in_shape, device=device)
        y = torch.zeros(b, dtype=torch.long, device=device)
        for _ in range(3):  # CUDA graph trees record on the second or third call
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(run(x), y)
            loss.backward()
    for p in model.parameters():
        p.grad = None
    with torch.no_grad():
        model.load_state_dict(saved)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return run, time.perf_counter() - t0


def train(
    cfg: RunConfig,
    model: nn.Module,
    splits: Splits,
    device: torch.device | None = None,
    callbacks: Sequence[Callback] = (),
    resume: Any = None,
) -> TrainResult:
    """Train `model` in place by `cfg.train` on `splits.train`; validate on `splits.val` each epoch.

    `resume` (a checkpoint.Checkpoint of this same config) continues after its last epoch and
    ends exactly where an uninterrupted run would (same batches, dropout masks and updates).
    """
    tc = cfg.train
    _check_monitors(tc, splits.val is not None)
    device = device or next(model.parameters()).device
    model.to(device)
    train_x, train_y = splits.train.x.to(device), splits.train.y.to(device)
    n = len(train_y)
    steps_per_epoch = -(-n // tc.batch_size)
    opt = make_optimizer(model.parameters(), tc)
    sched, sched_when = make_scheduler(opt, tc, steps_per_epoch)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)  # batch order
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)  # augmentation draws
    augment = is_active(cfg.augment)
    state = TrainState(cfg, model, opt, splits, device, steps_per_epoch=steps_per_epoch, scheduler=sched)
    state.generators = {"shuffle": shuffle_gen, "augment": aug_gen}
    if tc.adversarial != "none":  # random starts of the attacks: their own seeded generator
        state.generators["adversarial"] = torch.Generator().manual_seed(cfg.seed + 2_000_029)
    if tc.ema is not None:
        if resume is not None:
            raise ConfigError("train.ema runs cannot be resumed yet (the checkpoint does not hold the EMA weights)")
        state.ema = WeightEMA(model, tc.ema)
    total_steps = schedule_steps(tc, steps_per_epoch) if tc.schedule_epochs is not None else None
    if resume is not None:
        checkpoint.restore(state, resume)
    if cfg.augment.pairs and tc.adversarial != "none":
        raise ConfigError("augment.pairs and train.adversarial do not combine (the attack needs a label per sample)")
    bf16 = autocast_bf16(tc.precision, device)
    if tc.compile != "none" and (tc.adversarial != "none" or cfg.augment.pairs):
        raise ConfigError("train.compile does not combine with train.adversarial or augment.pairs yet")
    run, warmup_seconds = compiled_for_training(model, tc, n, device, bf16, tuple(train_x.shape[1:]))
    wall0 = time.perf_counter()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    for cb in callbacks:
        cb.on_train_begin(state)
    for epoch in range(state.epoch + 1, tc.epochs + 1):
        state.epoch = epoch
        model.train()
        epoch0, cpu0 = time.perf_counter(), time.process_time()
        in_callbacks = in_callbacks_cpu = 0.0
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        perm = torch.randperm(n, generator=shuffle_gen).to(device)
        for i in range(0, n, tc.batch_size):
            idx = perm[i : i + tc.batch_size]
            xb, yb = train_x[idx], train_y[idx]
            n_pairs = round(cfg.augment.pairs * len(yb))
            if n_pairs:  # not-one-digit samples, appended after the labelled ones
                xb = torch.cat([xb, touching_pairs(xb, n_pairs, aug_gen)])
            if augment:
                xb = augment_batch(xb, cfg.augment, aug_gen)
            if tc.adversarial != "none":
                ramp = tc.adv_eps_warmup * tc.epochs * steps_per_epoch  # steps until the full eps
                eps = tc.adv_eps * min(1.0, (state.step + 1) / ramp) if ramp > 0 else tc.adv_eps
                xb = adversarial_batch(model, xb, yb, tc, state.generators["adversarial"], eps)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = run(xb)
                if n_pairs:  # cross-entropy against the uniform distribution: "no digit is likely"
                    pairs_loss = -F.log_softmax(logits[len(yb) :].float(), 1).mean()
                    logits = logits[: len(yb)]
                if tc.prob_clip:
                    loss = cross_entropy(logits, yb, tc.prob_clip)
                else:
                    loss = F.cross_entropy(logits, yb, label_smoothing=tc.label_smoothing)
                if n_pairs:
                    loss = loss + PAIRS_LOSS_WEIGHT * pairs_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            if state.ema is not None:
                state.ema.update(model)
            if sched_when == "step" and sched is not None:
                sched.step()
            state.step += 1
            with torch.no_grad():
                loss_sum += loss.detach() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
            state.running = (loss_sum, correct, i + len(yb))
            if callbacks:
                # process_time is a system call, where the scheduler likes to preempt a process on
                # a busy machine: the wall window is taken inside the CPU one, so such a pause counts
                # as training for the trainer and for the probes alike
                c = time.process_time()
                t = time.perf_counter()
                for cb in callbacks:
                    cb.on_batch_end(state, loss)
                in_callbacks += time.perf_counter() - t
                in_callbacks_cpu += time.process_time() - c
            if state.stop or (total_steps is not None and state.step >= total_steps):
                break
        sync()
        epoch_train_seconds = time.perf_counter() - epoch0 - in_callbacks
        state.train_seconds += epoch_train_seconds
        state.train_cpu_seconds += time.process_time() - cpu0 - in_callbacks_cpu
        seen = min(n, (i + tc.batch_size))
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "loss": float(loss_sum) / seen,
            "acc": float(correct) / seen,
            "lr": opt.param_groups[0]["lr"],
            "train_seconds": epoch_train_seconds,
        }
        if splits.val is not None:
            v = evaluate(state.eval_model, splits.val, prob_clip=tc.prob_clip)
            metrics["val_loss"], metrics["val_acc"] = v["loss"], v["acc"]
        metrics["seconds"] = time.perf_counter() - epoch0  # the whole epoch, validation included
        state.history.append(metrics)

        if sched is not None and sched_when == "epoch":
            sched.step()
        elif sched is not None and sched_when == "metric":
            sched.step(metrics[tc.plateau_monitor])
        if tc.monitor:
            if _improved(tc.monitor, metrics[tc.monitor], state.best_value):
                state.best_value, state.best_epoch, state.since_best = metrics[tc.monitor], epoch, 0
                state.best_state = copy.deepcopy(state.eval_model.state_dict())
            else:
                state.since_best += 1
            if tc.early_stop and state.since_best >= tc.early_stop:
                state.stop = True
        for cb in callbacks:
            cb.on_epoch_end(state, metrics)
        if state.stop or (total_steps is not None and state.step >= total_steps):
            break

    if state.ema is not None:
        model.load_state_dict(state.ema.module.state_dict())  # the averaged weights are the result
    if state.best_state is not None:
        model.load_state_dict(state.best_state)  # ModelCheckpoint(save_best_only) + load_weights
    for cb in callbacks:
        cb.on_train_end(state)
    return TrainResult(
        history=state.history,
        best_epoch=state.best_epoch,
        train_seconds=state.train_seconds,
        train_cpu_seconds=state.train_cpu_seconds,
        wall_seconds=time.perf_counter() - wall0,
        stopped_early=state.stop and state.epoch < tc.epochs,
        warmup_seconds=warmup_seconds,
    )
