"""The benchmark recipes: two reference examples rebuilt for side-by-side runs, and ours.

Imported by recipes.py (at its end), so every recipe here is available wherever recipes are.
Their architectures live in models/fast.py. Measured numbers: docs/benchmarks.md (written by
`mnistlab bench`); the reasoning behind each choice: docs/bench.md.
"""

from __future__ import annotations

from mnistlab.recipes import register_recipe

# pytorch/examples mnist/main.py with its defaults. Adadelta there is PyTorch's (rho 0.9, eps 1e-6);
# the trainer maps rho=0.9 to Keras' 0.95 (0.9 is RMSprop's default in TrainConfig), so the
# recipe asks for 0.9 plus one ulp-scale nudge, which trains identically to 0.9.
register_recipe(
    "ref-pytorch",
    "pt-example-net",
    {
        "train.optimizer": "adadelta",
        "train.lr": 1.0,
        "train.rho": 0.9000001,
        "train.eps": 1e-6,
        "train.schedule": "step",
        "train.step_size": 1,
        "train.gamma": 0.7,
        "train.batch_size": 64,
        "train.epochs": 14,
    },
    "pytorch/examples mnist: Adadelta lr 1.0, StepLR gamma 0.7 per epoch, batch 64, 14 epochs",
)

# keras-io examples/vision/mnist_convnet.py: model.fit(batch_size=128, epochs=15, validation_split=0.1)
register_recipe(
    "ref-keras",
    "keras-convnet",
    {"train.optimizer": "adam", "train.batch_size": 128, "train.epochs": 15, "data.val_split": 0.1},
    "keras-io mnist_convnet: Adam, batch 128, 15 epochs, validation_split 0.1",
)

# Shortest wall time to 99 % on a CPU: a 3-block CNN in channels-last whose first block is a
# stride-2 convolution (no 28x28 activation), bfloat16 autocast where the CPU runs it natively,
# one epoch at batch 192 under a one-cycle Adam schedule (docs/bench.md: what was tried, measured).
register_recipe(
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
)

# Highest single-model accuracy: a VGG-like BN net with Keras-ImageDataGenerator-like augmentation,
# one-cycle Adam and label smoothing.
register_recipe(
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
)

# Adversarially robust (L∞ eps 0.3): Madry et al.'s PGD training, 5 steps of 2.5*eps/5, on the small
# strided CNN of Wong et al., batch 100. Two things matter (docs/attacks.md, measured): eps must ramp
# up from 0 (at the full 0.3 from the first step the net never leaves chance), and single-step
# attacks (fgsm-rs, n-fgsm) fall into catastrophic overfitting here (PGD accuracy 0).
register_recipe(
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
    "advnet, PGD-5 adversarial training at eps 0.3 (eps ramped up over the first quarter), Adam one-cycle "
    "lr 0.005, 12 epochs",
)
