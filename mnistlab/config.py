"""Run configuration: frozen dataclasses, and typed overrides from strings (CLI) or TOML values.

A run is a pure function of its `RunConfig` (model name + model config + train/data/augment
sections + seed). Every knob a study turns is a field here or in a model's config dataclass,
addressed as `section.field` ("train.lr", "data.subsample", "model.hidden") or, when the name is
unambiguous, as the bare field name ("hidden", "epochs").
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from mnistlab.errors import ConfigError, did_you_mean
from mnistlab.models import default_config

Optimizer = Literal["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw", "adadelta", "muon"]
Schedule = Literal["constant", "step", "plateau", "onecycle", "cosine"]
Monitor = Literal["", "val_loss", "val_acc", "loss", "acc"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 32  # Keras' default
    optimizer: Optimizer = "rmsprop"
    # None in the four fields below means "the optimizer's Keras default" (train.KERAS_DEFAULTS):
    lr: float | None = None  # sgd/momentum/nesterov 0.01; rmsprop/adam/adamw/adadelta 0.001
    momentum: float | None = None  # sgd 0; "momentum" and "nesterov" 0.9
    weight_decay: float | None = None  # adamw 0.004 (decoupled); 0 for the others
    rho: float | None = None  # the squared-gradient decay: rmsprop 0.9, adadelta 0.95
    eps: float = 1e-7  # Keras' epsilon for rmsprop/adam/adadelta (PyTorch uses 1e-8 / 1e-6)
    label_smoothing: float = 0.0
    # 0: cross-entropy from the logits (PyTorch). c > 0: Keras 2's categorical_crossentropy on the
    # softmax's output, probabilities clipped to [c, 1 - c] before the log (Keras: c = 1e-7), in
    # training and in evaluation. A sample the model is sure is wrong (p < c) then costs a constant
    # -log(c) = 16.1 and gives NO gradient: what keeps seed 1.7's unscaled MLP at ~49 %.
    prob_clip: float = 0.0
    # "bf16": forward and loss under torch.autocast in bfloat16 (weights, optimizer and BN
    # statistics stay float32). On CPUs with AMX/AVX512-BF16 it cuts the step time of small CNNs,
    # which are memory-bound, by ~1.6x (docs/bench.md); on CUDA it is the usual mixed precision.
    # "auto": bf16 where the device runs it natively, else fp32 (train.autocast_bf16 decides; the
    # run's result records which one was used).
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    # Flush denormal floats (|x| < 1.2e-38) to zero while the run trains and tests. A network
    # whose signals shrink towards zero (deep-init's N(0, 0.005) + tanh) otherwise spends most of
    # its time in the CPU's slow denormal path (a deep-init run: 200 s -> 36 s, docs/studies.md).
    # Off by default because it changes results (in the last bits, or more where denormals carry
    # the signal).
    flush_denormal: bool = False
    schedule: Schedule = "constant"
    step_size: int = 1  # "step": epochs between decays
    gamma: float = 0.7  # "step": decay factor per step_size epochs
    plateau_monitor: Monitor = "val_acc"
    plateau_patience: int = 3  # epochs without improvement before the lr is cut
    plateau_factor: float = 0.5
    min_lr: float = 1e-5
    warmup: float = 0.25  # "onecycle": fraction of steps spent warming up
    monitor: Monitor = ""  # keep the best epoch by this metric and restore it (ModelCheckpoint)
    early_stop: int = 0  # stop after this many epochs without improvement of `monitor` (0 = never)
    grad_clip: float = 0.0  # max global grad norm (0 = off)
    # Adversarial training (attacks.adversarial_batch): each batch is replaced by its L∞ attack.
    adversarial: Literal["none", "pgd", "fgsm-rs", "n-fgsm"] = "none"
    adv_eps: float = 0.3  # L∞ budget, pixels in [0, 1]
    adv_steps: int = 7  # "pgd" steps
    adv_alpha: float | None = None  # step size; None = 2.5*eps/steps (pgd), 1.25*eps (fgsm-rs) or eps (n-fgsm)
    adv_noise: float = 2.0  # "n-fgsm": the random start is uniform in [-adv_noise*eps, adv_noise*eps]
    adv_eps_warmup: float = 0.0  # fraction of the training steps over which eps ramps up from 0
    # Levers of the `fast` recipes (issue 25; measured in docs/benchmarks-levers.md). None = off /
    # the framework default, so every recipe that does not name them trains as before.
    betas: tuple[float, float] | None = None  # adam/adamw/muon (beta1, beta2); None = PyTorch's (0.9, 0.999).
    # Set, beta1 stays fixed under "onecycle" (else OneCycleLR cycles it between 0.85 and 0.95).
    # "muon" (train.MuonAdam): Muon on the hidden weight matrices and conv kernels, at this lr and
    # Nesterov momentum (the reference implementation's 0.02 and 0.95); Adam on the rest at train.lr.
    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    ema: float | None = None  # decay of an exponential moving average of the weights (e.g. 0.99): the
    # EMA weights are what is validated, probed, tested and saved; None = no EMA
    schedule_epochs: float | None = None  # "onecycle"/"cosine" length in epochs (e.g. 0.5); training
    # ends where the schedule does. None = train.epochs
    # torch.compile the training step's model: "default", "reduce-overhead" (CUDA graphs),
    # "max-autotune", or "eager" (the compile machinery without code generation, for tests).
    # The compile runs in a warm-up before training (forward + backward of the run's batch shapes,
    # weights and BN statistics restored), which train_seconds excludes and warmup_seconds reports.
    compile: Literal["none", "default", "reduce-overhead", "max-autotune", "eager"] = "none"


@dataclass(frozen=True)
class DataConfig:
    scale: bool = True  # divide pixels by 255 (seed 1.7 turns this off)
    train_fraction: float = 1.0  # keep the FIRST fraction of the training set (seed 0.5)
    train_limit: int = 0  # keep a seeded random subset of this many training images (0 = all)
    test_limit: int = 0  # evaluate on the first N test images only (0 = all; for quick runs)
    val_split: float = 0.0  # hold out this fraction of the training set for validation
    val_mode: Literal["last", "random"] = "last"  # "last" = Keras' validation_split semantics
    subsample: Literal["none", "random", "half", "down4", "top", "left"] = "none"  # seed 0.4, see transforms.py
    subsample_keep: float = 0.5  # "random": fraction of pixels kept
    upsample: bool = False  # resize a sub-sampled image back to 28x28 (a seed-0.4 mitigation)
    invert: Literal["none", "add", "only"] = "none"  # seed 4.1: add an inverted copy, or use only it
    channels: int = 1  # 3 repeats the grey channel, as seed 004's RGB input
    eval_inverted: bool = False  # also report accuracy on the inverted test set
    crop: int | None = None  # centre-crop the 28x28 digit to crop x crop (MNIST's ink lies in the
    # central 20x20); part of dataset.model_input, so every app feeds the crop. None = no crop

    def __post_init__(self) -> None:
        if self.crop is not None and not 8 <= self.crop <= 28:
            raise ValueError(f"bad data.crop={self.crop}: the central N x N of a 28x28 digit, 8 <= N <= 28")


@dataclass(frozen=True)
class AugmentConfig:
    """Per-batch random affine augmentation (Keras ImageDataGenerator-like). 0 disables a term."""

    rotate: float = 0.0  # max rotation, degrees
    zoom: float = 0.0  # max relative zoom, e.g. 0.1 = ±10 %
    shift: float = 0.0  # max shift as a fraction of width/height
    shear: float = 0.0  # max shear, degrees
    # Handwriting variation (augment.py; all batched; 0 = off):
    elastic: float = 0.0  # max elastic displacement, pixels (smooth random field)
    thickness: float = 0.0  # probability of thickening or thinning strokes (3x3 max/min pool)
    blur: float = 0.0  # max Gaussian blur sigma, pixels
    noise: float = 0.0  # max std of additive Gaussian noise (pixels in [0, 1])
    contrast: float = 0.0  # max relative loss of contrast (ink peak scaled to 1 - U(0, c))
    invert: float = 0.0  # probability of white <-> black inversion
    pixelate: float = 0.0  # probability of a low-resolution round trip (a small scan or crop, enlarged)
    # Extra samples, as a fraction of the batch: two digits touching, cropped and fitted into 20x20
    # as the reader crops a blob, trained towards the uniform distribution ("outlier exposure",
    # Hendrycks et al. 2019), so the model says "not one digit" with low confidence and the
    # reader's split test can win (augment.touching_pairs). Pixels in [0, 1], ink bright.
    pairs: float = 0.0


@dataclass(frozen=True)
class AdaptConfig:
    """Few-shot adaptation of a trained run to one writer's digits (handwriting/adapt.py).

    The adapted run records this next to its base run's config (`RunConfig.adapt`). What to
    train was chosen by measurement on three synthetic writers (docs/adapt.md): every weight and
    the BN statistics at a small learning rate, each step the writer's digits (not augmented) and
    twice as many MNIST training digits ("replay", so MNIST is not forgotten); a prototype head,
    BN statistics alone and the last layer alone gained less.
    """

    # "all": every weight, BN statistics frozen; "head": the last Linear layer only; "bn": the BN
    # layers' scale, shift and running statistics only; "all-bn": every weight, BN statistics
    # updated by the mixed batches; "stats": no weight trained, only the BN running statistics
    # re-estimated on the mixed batches (AdaBN-style, the test-time statistics of your digits).
    mode: Literal["all", "head", "bn", "all-bn", "stats"] = "all-bn"
    steps: int = 60  # optimizer steps (Adam); 0 = none (then only `proto` adapts)
    lr: float = 3e-4
    batch: int = 32  # the writer's digits per step (drawn with replacement, augmented)
    replay: float = 2.0  # MNIST training digits per step, as a multiple of `batch` (0 = none)
    shots: int = 0  # at most this many digits per class were used (0 = all that were given)
    # augment your digits and the MNIST replay with the base run's own augmentation; off by default:
    # on the synthetic writers it gained more and forgot less without (docs/adapt.md)
    augment: bool = False
    # Prototype head: after the steps, the mean penultimate feature of each class of your digits
    # (a nearest-class-mean classifier, scores -squared distance) is blended into the logits with
    # this weight, folded into the last Linear layer so the run stays an ordinary record. 0 = off.
    proto: float = 0.0
    proto_copies: int = 8  # augmented copies of each digit the class means are taken over (0 = the digits only)

    def __post_init__(self) -> None:
        if (
            self.steps < 0
            or self.batch < 1
            or self.lr <= 0
            or self.replay < 0
            or self.shots < 0
            or self.proto < 0
            or self.proto_copies < 0
        ):
            raise ValueError(
                f"bad adapt config: steps={self.steps} batch={self.batch} lr={self.lr} "
                f"replay={self.replay} shots={self.shots} proto={self.proto} proto_copies={self.proto_copies}"
            )


# 2: lr, rho, momentum, weight_decay and adv_alpha use None (not 0 or 0.9) for "the default";
# records without a version are read with the old meanings (run_config_from_dict).
# 3: an adapted run (handwriting/adapt.py) records `adapted_from` and `adapt`; records of
# versions 1 and 2 have neither and read as plain runs.
CONFIG_VERSION = 3


@dataclass(frozen=True)
class RunConfig:
    model: str
    model_config: Any  # the model family's frozen config dataclass
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0  # the random seed (model init, batch order, augmentation, dropout)
    recipe: str = ""  # the recipe it was resolved from (recipes.RECIPES), "" when built by hand
    adapted_from: str = ""  # an adapted run: the base run's folder name ("" for a trained run)
    adapt: AdaptConfig | None = None  # an adapted run: how it was adapted

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.adapted_from or self.adapt is not None:
            extra = {"adapted_from": self.adapted_from, "adapt": dataclasses.asdict(self.adapt or AdaptConfig())}
        return extra | {
            "config_version": CONFIG_VERSION,
            "recipe": self.recipe,
            "model": self.model,
            "model_config": dataclasses.asdict(self.model_config),
            "train": dataclasses.asdict(self.train),
            "data": dataclasses.asdict(self.data),
            "augment": dataclasses.asdict(self.augment),
            "seed": self.seed,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


SECTIONS = ("model", "train", "data", "augment")


def _section_obj(cfg: RunConfig, section: str) -> Any:
    return cfg.model_config if section == "model" else getattr(cfg, section)


def _field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in fields(obj)}


def parse_value(raw: Any, typ: Any, key: str) -> Any:
    """Convert `raw` (a CLI string or a TOML value) to `typ`, or raise a ConfigError naming `key`."""
    origin = typing.get_origin(typ)
    if origin is Literal:
        choices = typing.get_args(typ)
        if raw not in choices:
            raise ConfigError(f"bad value {raw!r} for {key}: choose one of {', '.join(map(repr, choices))}")
        return raw
    if origin in (types.UnionType, typing.Union):  # e.g. int | None
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.lower() == "none"):
            return None
        return parse_value(raw, args[0], key)
    if origin is tuple:
        item_t = typing.get_args(typ)[0]
        items = raw
        if isinstance(raw, str):
            items = [s for s in raw.replace("x", ",").split(",") if s.strip()]
        elif isinstance(raw, int | float):
            items = [raw]
        if not isinstance(items, list | tuple):
            raise ConfigError(f"bad value {raw!r} for {key}: expected a comma-separated list")
        return tuple(parse_value(i.strip() if isinstance(i, str) else i, item_t, key) for i in items)
    if typ is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"bad value {raw!r} for {key}: expected true or false")
    if typ is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ConfigError(f"bad value {raw!r} for {key}: expected an integer")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"bad value {raw!r} for {key}: expected an integer") from None
    if typ is float:
        if isinstance(raw, bool):
            raise ConfigError(f"bad value {raw!r} for {key}: expected a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"bad value {raw!r} for {key}: expected a number") from None
    if typ is str:
        if not isinstance(raw, str):
            raise ConfigError(f"bad value {raw!r} for {key}: expected a string")
        return raw
    raise ConfigError(f"cannot set {key}: unsupported field type {typ}")  # pragma: no cover


def valid_keys(cfg: RunConfig) -> list[str]:
    keys = [f"{s}.{f.name}" for s in SECTIONS for f in fields(_section_obj(cfg, s))]
    return keys + ["seed"]


def _resolve_key(cfg: RunConfig, key: str) -> tuple[str, str]:
    if key == "seed":
        return "seed", "seed"
    if "." in key:
        section, name = key.split(".", 1)
        if section in SECTIONS and name in {f.name for f in fields(_section_obj(cfg, section))}:
            return section, name
    else:
        owners = [s for s in SECTIONS if key in {f.name for f in fields(_section_obj(cfg, s))}]
        if len(owners) == 1:
            return owners[0], key
        if len(owners) > 1:
            raise ConfigError(f"ambiguous key {key!r}: write one of {', '.join(f'{o}.{key}' for o in owners)}")
    keys = valid_keys(cfg)
    hint = did_you_mean(key, keys + [k.split(".", 1)[1] for k in keys if "." in k])
    raise ConfigError(f"unknown key {key!r} for model {cfg.model!r}{hint}; valid keys: {', '.join(keys)}")


def apply_overrides(cfg: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Return a copy of `cfg` with `overrides` ({"train.lr": "0.1", "hidden": 2048, ...}) applied."""
    changes: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    seed = cfg.seed
    for key, raw in overrides.items():
        section, name = _resolve_key(cfg, key)
        if section == "seed":
            seed = parse_value(raw, int, "seed")
            continue
        typ = _field_types(_section_obj(cfg, section))[name]
        changes[section][name] = parse_value(raw, typ, f"{section}.{name}")
    try:
        return replace(
            cfg,
            model_config=replace(cfg.model_config, **changes["model"]),
            train=replace(cfg.train, **changes["train"]),
            data=replace(cfg.data, **changes["data"]),
            augment=replace(cfg.augment, **changes["augment"]),
            seed=seed,
        )
    except ValueError as e:  # a __post_init__ check of a config dataclass
        raise ConfigError(str(e)) from None


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """["hidden=2048", "train.lr=0.1"] -> {"hidden": "2048", "train.lr": "0.1"}."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad --set {item!r}: expected KEY=VALUE, e.g. --set hidden=2048")
        out[key.strip()] = value.strip()
    return out


def _upgrade_v1(train: dict[str, Any]) -> dict[str, Any]:
    """A record written before CONFIG_VERSION 2, in today's terms: 0 (and Adadelta's 0.9 rho)
    meant "the default", which is None now. Every old value keeps its old meaning."""
    train = dict(train)
    for key in ("lr", "momentum", "weight_decay", "adv_alpha"):
        if train.get(key) == 0.0:
            train[key] = None
    if train.get("optimizer") == "adadelta" and train.get("rho") == 0.9:
        train["rho"] = None
    return train


def run_config_from_dict(d: Mapping[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from `RunConfig.to_dict()` output (a run record's config.json)."""
    try:
        base = RunConfig(model=d["model"], model_config=default_config(d["model"]), recipe=str(d.get("recipe", "")))
    except KeyError as e:
        raise ConfigError(f"config has no {e.args[0]!r} entry") from None
    flat: dict[str, Any] = {}
    for section in SECTIONS:
        src = d.get("model_config" if section == "model" else section, {}) or {}
        if section == "train" and d.get("config_version", 1) < 2:
            src = _upgrade_v1(src)
        known = {f.name for f in fields(_section_obj(base, section))}
        for name, value in src.items():
            if name not in known:
                raise ConfigError(f"config has an unknown field {section}.{name}")
            flat[f"{section}.{name}"] = list(value) if isinstance(value, list) else value
    flat["seed"] = d.get("seed", 0)
    cfg = apply_overrides(base, flat)
    if d.get("adapted_from") or d.get("adapt") is not None:
        cfg = replace(cfg, adapted_from=str(d.get("adapted_from") or ""), adapt=_adapt_from_dict(d.get("adapt") or {}))
    return cfg


def _adapt_from_dict(src: Mapping[str, Any]) -> AdaptConfig:
    hints = typing.get_type_hints(AdaptConfig)
    known = {f.name for f in fields(AdaptConfig)}
    values = {}
    for name, value in src.items():
        if name not in known:
            raise ConfigError(f"config has an unknown field adapt.{name}")
        values[name] = parse_value(value, hints[name], f"adapt.{name}")
    try:
        return AdaptConfig(**values)
    except ValueError as e:
        raise ConfigError(str(e)) from None
