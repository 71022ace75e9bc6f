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

# Shortest wall time to 99 % on a CPU: a 3-block pool-first CNN in channels-last, one epoch at
# batch 256 under a one-cycle Adam schedule (see docs/bench.md for what was tried and measured).
register_recipe(
    "fast",
    "fastnet",
    {
        "train.optimizer": "adam",
        "train.lr": 0.01,
        "train.schedule": "onecycle",
        "train.warmup": 0.25,
        "train.batch_size": 256,
        "train.epochs": 1,
    },
    "fastnet, 1 epoch, batch 256, Adam one-cycle lr 0.01 (shortest time to 99 %)",
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
        "augment.rotate": 10.0,
        "augment.zoom": 0.1,
        "augment.shift": 0.1,
    },
    "bestnet + augmentation, 12 epochs, Adam one-cycle, label smoothing 0.1",
)
