"""Every named recipe in one table: a model plus the training, data and augmentation settings that
go with it. `mnistlab train NAME` trains recipe NAME.

Each seed architecture has a recipe of its own name that trains it the way its seed document did
(`mnistlab train dnn` is seed 0.1); the other architectures have a bare recipe of their name (the
model's defaults); the rest are ours: the reference recipes `mnistlab bench` compares against, the
fastest and the most accurate recipe, the adversarially robust one and the handwriting reader.
The table is data: nothing registers itself from elsewhere, so importing this module imports the
model registry and the config, nothing above them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mnistlab import transforms
from mnistlab.config import RunConfig, apply_overrides
from mnistlab.errors import ConfigError, did_you_mean
from mnistlab.models import default_config, get_spec, list_models


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str  # a registered model name
    overrides: Mapping[str, Any]  # config overrides, keys as `config.apply_overrides` takes them
    description: str = ""
    seed_doc: str = ""  # the seed experiment whose recipe this is ("0.1"), "" for our own


# Seed 004's training, shared by its two models (4.2, 4.4): MNIST plus its inverted copy, 3
# channels, a random 80/20 validation split, the best epoch by val_acc kept.
_SEED4 = {
    "train.optimizer": "adam",
    "train.batch_size": 32,
    "data.invert": "add",
    "data.channels": 3,
    "data.val_split": 0.2,
    "data.val_mode": "random",
    "data.eval_inverted": True,
    "train.monitor": "val_acc",
}

_TABLE: tuple[Recipe, ...] = (
    # --- the seed documents' recipes (their numbers: docs/studies.md) -------------------------
    Recipe(
        "dnn",
        "dnn",
        {"train.optimizer": "rmsprop", "train.batch_size": 32, "train.epochs": 1},
        "seed 0.1: RMSprop (the Keras tutorial's compile), batch 32, 1 epoch",
        "0.1",
    ),
    Recipe(
        "cnn",
        "cnn",
        {"train.optimizer": "adadelta", "train.lr": 1.0, "train.batch_size": 128, "train.epochs": 1},
        "seed 0.2 (Keras mnist_cnn.py): Adadelta at Keras 2's lr 1.0, batch 128, 1 epoch",
        "0.2",
    ),
    Recipe(
        "mlp",
        "mlp",
        {
            "train.optimizer": "rmsprop",
            "train.batch_size": 128,
            "train.epochs": 10,
            "data.val_split": 0.2,
            "train.monitor": "val_loss",  # ModelCheckpoint(save_best_only) + load_weights
        },
        "seed 1.2: RMSprop, batch 128, 10 epochs, the best epoch by val_loss restored",
        "1.2",
    ),
    Recipe(
        "cnn-bn",
        "cnn-bn",
        {
            "train.optimizer": "rmsprop",
            "train.eps": 1e-8,
            "train.batch_size": 86,  # the Kaggle kernel seed 002 follows
            "train.epochs": 40,
            "data.val_split": 0.1,
            "train.schedule": "plateau",
            "train.plateau_monitor": "val_acc",
            "augment.rotate": 10.0,
            "augment.zoom": 0.1,
            "augment.shift": 0.1,
        },
        "seed 2.2-2.5: RMSprop, batch 86, 40 epochs, ReduceLROnPlateau on val_acc, augmentation",
        "2.2",
    ),
    Recipe(
        "deep-dnn",
        "deep-dnn",
        {"train.optimizer": "sgd", "train.batch_size": 128, "train.epochs": 10, "data.val_split": 0.3},
        "seed 3.1: SGD, batch 128, 10 epochs, the last 30 % for validation",
        "3.1",
    ),
    Recipe(
        "cnn-small",
        "cnn-small",
        {**_SEED4, "train.epochs": 5},
        "seed 4.2: Adam on MNIST + inverted (28x28x3), 5 epochs, the best by val_acc",
        "4.2",
    ),
    Recipe(
        "cnn-robust",
        "cnn-robust",
        {**_SEED4, "train.epochs": 4},
        "seed 4.4: Adam on MNIST + inverted (28x28x3), 4 epochs, the best by val_acc",
        "4.4",
    ),
    # --- the reference recipes `mnistlab bench` measures against (docs/bench.md) ---------------
    Recipe(
        "ref-pytorch",
        "pt-example-net",
        {
            # pytorch/examples mnist/main.py with its defaults: PyTorch's Adadelta (rho 0.9, eps 1e-6)
            "train.optimizer": "adadelta",
            "train.lr": 1.0,
            "train.rho": 0.9,
            "train.eps": 1e-6,
            "train.schedule": "step",
            "train.step_size": 1,
            "train.gamma": 0.7,
            "train.batch_size": 64,
            "train.epochs": 14,
        },
        "pytorch/examples mnist: Adadelta lr 1.0, StepLR gamma 0.7 per epoch, batch 64, 14 epochs",
    ),
    Recipe(
        "ref-keras",
        "keras-convnet",
        # keras-io examples/vision/mnist_convnet.py: model.fit(batch_size=128, epochs=15, validation_split=0.1)
        {"train.optimizer": "adam", "train.batch_size": 128, "train.epochs": 15, "data.val_split": 0.1},
        "keras-io mnist_convnet: Adam, batch 128, 15 epochs, validation_split 0.1",
    ),
    # --- ours ------------------------------------------------------------------------------------
    Recipe(
        # Shortest wall time to 99 % on a CPU: a 3-block CNN in channels-last whose first block is a
        # stride-2 convolution (no 28x28 activation), bfloat16 autocast where the CPU runs it
        # natively, one epoch at batch 192 under one-cycle Adam (docs/bench.md: what was tried).
        "fast",
        "fastnet",
        {
            "model.stem": "stride2",
            "train.precision": "auto",
            "train.optimizer": "adam",
            "train.lr": 0.01,
            "train.schedule": "onecycle",
            "train.warmup": 0.25,
            "train.batch_size": 192,
            "train.epochs": 1,
        },
        "fastnet (stride-2 stem), 1 epoch, batch 192, Adam one-cycle lr 0.01, bf16 where native (shortest time to 99 %)",
    ),
    Recipe(
        # `fast` with the levers that helped (issue 25, docs/benchmarks-levers.md): the central 20x20
        # of the digit (MNIST's ink lies there: ~half the FLOPs per image), a one-cycle schedule a
        # little longer than the target (0.9 epoch: at 0.75 and 0.85 one seed in 5 or 10 ended below
        # 99 %), Adam betas (0.7, 0.9) at peak lr 0.015.
        "fast-crop",
        "fastnet",
        {
            "model.stem": "stride2",
            "data.crop": 20,
            "train.precision": "auto",
            "train.optimizer": "adam",
            "train.lr": 0.015,
            "train.betas": "0.7,0.9",
            "train.schedule": "onecycle",
            "train.warmup": 0.25,
            "train.schedule_epochs": 0.9,
            "train.batch_size": 192,
            "train.epochs": 1,
        },
        "fastnet (stride-2 stem) on the central 20x20, 0.9 epoch one-cycle Adam lr 0.015 betas (0.7, 0.9), "
        "batch 192, bf16 where native",
    ),
    Recipe(
        # Highest single-model accuracy: a VGG-like BN net with Keras-ImageDataGenerator-like
        # augmentation, one-cycle Adam and label smoothing.
        "best",
        "bestnet",
        {
            "train.optimizer": "adam",
            "train.lr": 0.005,
            "train.schedule": "onecycle",
            "train.warmup": 0.2,
            "train.batch_size": 128,
            "train.epochs": 12,
            "train.label_smoothing": 0.1,
            "train.precision": "auto",  # bf16 autocast where native: 1.6x per step on an AMX CPU (docs/bench.md)
            "augment.rotate": 10.0,
            "augment.zoom": 0.1,
            "augment.shift": 0.1,
        },
        "bestnet + augmentation, 12 epochs, Adam one-cycle, label smoothing 0.1",
    ),
    # --- ensemble members (issue 25, docs/ensemble.md): diverse families, each a short schedule
    # (<= ~15 CPU minutes on one thread), so that their errors differ: a VGG-like net, the same
    # on a 24x24 crop under elastic distortion, a wide and a narrow fastnet, the Kaggle CNN. ------
    Recipe(
        "ens-vgg",
        "bestnet",
        {
            "train.optimizer": "adam",
            "train.lr": 0.005,
            "train.schedule": "onecycle",
            "train.warmup": 0.2,
            "train.batch_size": 128,
            "train.epochs": 6,
            "train.label_smoothing": 0.1,
            "train.precision": "auto",
            "augment.rotate": 10.0,
            "augment.zoom": 0.1,
            "augment.shift": 0.1,
        },
        "ensemble member: `best` on half its schedule (6 epochs)",
    ),
    Recipe(
        "ens-vgg-crop",
        "bestnet",
        {
            "data.crop": 24,
            "train.optimizer": "adam",
            "train.lr": 0.005,
            "train.schedule": "onecycle",
            "train.warmup": 0.2,
            "train.batch_size": 128,
            "train.epochs": 6,
            "train.label_smoothing": 0.1,
            "train.precision": "auto",
            "augment.rotate": 8.0,
            "augment.zoom": 0.08,
            "augment.shift": 0.06,
            "augment.elastic": 1.5,
        },
        "ensemble member: bestnet on the central 24x24 under affine + elastic distortion, 6 epochs",
    ),
    Recipe(
        "ens-wide",
        "fastnet",
        {
            "model.widths": "64,128,256",
            "model.stem": "stride2",
            "train.optimizer": "adam",
            "train.lr": 0.005,
            "train.schedule": "onecycle",
            "train.warmup": 0.2,
            "train.batch_size": 128,
            "train.epochs": 8,
            "train.label_smoothing": 0.1,
            "train.precision": "auto",
            "augment.rotate": 10.0,
            "augment.zoom": 0.1,
            "augment.shift": 0.1,
            "augment.shear": 10.0,
        },
        "ensemble member: fastnet 64-128-256 (stride-2 stem) under affine augmentation with shear, 8 epochs",
    ),
    Recipe(
        "ens-fast",
        "fastnet",
        {
            "model.widths": "32,64,128",
            "data.crop": 20,
            "train.optimizer": "adam",
            "train.lr": 0.006,
            "train.schedule": "onecycle",
            "train.warmup": 0.2,
            "train.batch_size": 128,
            "train.epochs": 10,
            "train.label_smoothing": 0.05,
            "train.precision": "auto",
            "augment.rotate": 12.0,
            "augment.zoom": 0.08,
            "augment.shift": 0.05,
            "augment.elastic": 1.0,
        },
        "ensemble member: fastnet 32-64-128 on the central 20x20 under rotation + elastic distortion, 10 epochs",
    ),
    Recipe(
        "ens-fast24",
        "fastnet",
        {
            "model.widths": "32,64,128",
            "data.crop": 24,
            "train.optimizer": "adam",
            "train.lr": 0.006,
            "train.schedule": "onecycle",
            "train.warmup": 0.2,
            "train.batch_size": 128,
            "train.epochs": 10,
            "train.label_smoothing": 0.05,
            "train.precision": "auto",
            "augment.rotate": 10.0,
            "augment.zoom": 0.1,
            "augment.shift": 0.06,
            "augment.shear": 12.0,
            "augment.thickness": 0.3,
        },
        "ensemble member: fastnet 32-64-128 on the central 24x24 under affine (with shear) and pen-width "
        "augmentation, 10 epochs",
    ),
    Recipe(
        "ens-kaggle",
        "cnn-bn",
        {
            "model.filters": 32,
            "train.optimizer": "adam",
            "train.lr": 0.003,
            "train.schedule": "onecycle",
            "train.warmup": 0.2,
            "train.batch_size": 128,
            "train.epochs": 6,
            "train.precision": "auto",
            "augment.rotate": 10.0,
            "augment.zoom": 0.1,
            "augment.shift": 0.1,
        },
        "ensemble member: the Kaggle CNN of seed 2.2 at 32 filters (5x5 and 3x3 kernels, dense head), Adam "
        "one-cycle, 6 epochs",
    ),
    Recipe(
        # Adversarially robust (L∞ eps 0.3): Madry et al.'s PGD training, 5 steps of 2.5*eps/5, on the
        # small strided CNN of Wong et al., batch 100. Two things matter (docs/attacks.md, measured):
        # eps must ramp up from 0 (at the full 0.3 from the first step the net never leaves chance),
        # and single-step attacks (fgsm-rs, n-fgsm) fall into catastrophic overfitting here.
        "adversarial",
        "advnet",
        {
            "train.optimizer": "adam",
            "train.lr": 0.005,
            "train.schedule": "onecycle",
            "train.warmup": 0.5,
            "train.batch_size": 100,
            "train.epochs": 12,
            "train.adversarial": "pgd",
            "train.adv_eps": 0.3,
            "train.adv_steps": 5,
            "train.adv_eps_warmup": 0.25,
        },
        "advnet, PGD-5 adversarial training at eps 0.3 (eps ramped up over the first quarter), Adam "
        "one-cycle lr 0.005, 12 epochs",
    ),
    Recipe(
        # The default model for reading handwriting (`predict`, the web page). MNIST digits are
        # clean, centred, one pen, one writer population; a person's are not: a small BN CNN under
        # augmentation that covers what differs (slant, size, wobble, pen width, blur, faint ink,
        # sensor noise). Polarity inversion is left off: the reader always hands over white-on-black
        # crops, and spending capacity on both polarities costs accuracy (docs/handwriting.md).
        # Widths 32-64-128 rather than 16-32-64 (4x the FLOPs, still ~1 ms a digit): better on MNIST,
        # on UCI digits and on the synthetic pages alike, over 3 seeds (docs/handwriting.md).
        "robust",
        "fastnet",
        {
            "model.widths": "32,64,128",
            "train.epochs": 2,
            "train.batch_size": 128,
            "train.optimizer": "adam",
            "train.lr": 0.006,
            "train.schedule": "onecycle",
            "train.warmup": 0.2,
            "train.label_smoothing": 0.05,
            "augment.rotate": 15,
            "augment.zoom": 0.15,
            "augment.shift": 0.08,
            "augment.shear": 15,
            "augment.elastic": 1.5,
            "augment.thickness": 0.5,
            "augment.blur": 1.0,
            "augment.noise": 0.08,
            "augment.contrast": 0.4,
        },
        "fastnet 32-64-128 under handwriting augmentation (affine, elastic, pen width, blur, noise, "
        "contrast): the default model of `mnistlab predict`",
    ),
    Recipe(
        # The page reader's second model (task "line", models/linereader.py): a CRNN that reads a
        # component wider than one digit (touching digits) with CTC, trained on strips synthesised
        # from MNIST training digits on the fly (handwriting/lines.py). Small: minutes on one core.
        # 8 epochs, not 4: held-out strips 0.784 -> 0.891 exact (seed 0), seed-0 pages a little
        # better (docs/handwriting.md, "Measured").
        "line-reader",
        "crnn",
        {
            "train.epochs": 8,
            "train.batch_size": 64,
            "train.optimizer": "adam",
            "train.lr": 0.004,
            "train.schedule": "onecycle",
            "train.warmup": 0.15,
            "train.grad_clip": 5.0,
        },
        "CRNN (conv + BiGRU, CTC) on synthetic strips of 1-3 touching MNIST training digits: reads the "
        "page reader's wide components",
    ),
)

# The architectures no seed trains have a bare recipe of their own name: the model's defaults.
_BARE = ("pt-example-net", "keras-convnet", "fastnet", "bestnet", "advnet")

RECIPES: dict[str, Recipe] = {r.name: r for r in _TABLE} | {
    name: Recipe(name, name, {}, "the model's defaults") for name in _BARE
}

# What `mnistlab train` trains when no name is given: "fast" (~99 % in seconds; docs/bench.md says why).
DEFAULT_RECIPE = "fast"
# What reads handwriting when no run is named (`predict`, `serve`): see handwriting/model.py.
READER_RECIPE = "robust"
# What reads the touching digits of a page when a run of it exists (handwriting/lines.py).
LINE_READER_RECIPE = "line-reader"


def list_recipes(task: str | None = "digit") -> list[str]:
    """Recipe names: those that train a digit classifier by default (what studies, benches and the
    digit tests go over), `task="line"` the line reader's, `task=None` all."""
    return sorted(n for n, r in RECIPES.items() if task in (None, get_spec(r.model).task))


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        every = list_recipes(task=None)
        raise ConfigError(
            f"unknown model or recipe {name!r}{did_you_mean(name, every)}; available: {', '.join(every)}"
        ) from None


def fit_model_to_data(cfg: RunConfig) -> RunConfig:
    """Set the model's input_size / in_channels from the data config, so a study that sub-samples
    to 14x14 or feeds 3 channels needs no second override (the resolved config records both)."""
    mc = cfg.model_config
    names = {f.name for f in dataclasses.fields(mc)}
    changes: dict[str, Any] = {}
    if "input_size" in names:
        changes["input_size"] = transforms.output_size(cfg.data)
    if "in_channels" in names:
        changes["in_channels"] = cfg.data.channels
    try:
        return dataclasses.replace(cfg, model_config=dataclasses.replace(mc, **changes))
    except ValueError as e:
        raise ConfigError(f"model {cfg.model!r} does not fit the data: {e}") from None


def resolve_run_config(name: str, overrides: Mapping[str, Any] | None = None, seed: int | None = None) -> RunConfig:
    """Recipe `name` + user `overrides` (+ `seed`) -> the RunConfig a run records and replays."""
    recipe = get_recipe(name)
    cfg = RunConfig(model=recipe.model, model_config=default_config(recipe.model), recipe=name)
    cfg = apply_overrides(cfg, recipe.overrides)
    user = dict(overrides or {})
    # A recipe's lr and rho belong to its optimizer (cnn: Adadelta at 1.0): switching the optimizer
    # without naming them falls back to the new optimizer's Keras defaults.
    if {"optimizer", "train.optimizer"} & user.keys():
        for key in ("lr", "rho"):
            if not {key, f"train.{key}"} & user.keys():
                user[f"train.{key}"] = None
    # A recipe's schedule_epochs (fast-crop: a 0.9-epoch one-cycle in a 1-epoch run) belongs to its
    # epochs: setting train.epochs without naming schedule_epochs gives a schedule as long as the new
    # epochs (schedule_epochs None), not the recipe's old length (which ended training early).
    if {"epochs", "train.epochs"} & user.keys() and not {"schedule_epochs", "train.schedule_epochs"} & user.keys():
        user["train.schedule_epochs"] = None
    cfg = apply_overrides(cfg, user)
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    return fit_model_to_data(cfg)


def _check_table() -> None:
    """Every recipe names a registered model, and every registered model has a recipe."""
    models = set(list_models(task=None))
    unknown = sorted(r.model for r in RECIPES.values() if r.model not in models)
    untrained = sorted(models - {r.model for r in RECIPES.values()})
    if unknown or untrained:  # a programming error in this table, caught at import and by the tests
        raise RuntimeError(f"recipe table out of step with the model registry: {unknown=} {untrained=}")


_check_table()
