"""Why batch norm hurts deep-init's 50-layer networks: the weight gradients at initialisation.

For each deep-init variant named (default: He + relu and Xavier + selu, each without and with
BN), builds the recipe's network at seed 0 exactly as `mnistlab train deep-dnn` would, takes one
batch of 128 training images (the first 128 of the training split), and prints the norm of the
loss's gradient with respect to the weight of Dense layers 1, 2, 25 and 50. With BN the first
layers' gradients explode with depth (Yang et al., "A mean field theory of batch normalization",
ICLR 2019), which is why SGD at the seed's lr 0.01 trains these networks worse with BN than
without.
Run: python docs/scripts/grad_at_init.py [VARIANT ...]   (variants of the deep-init study)
"""

import sys

import torch
from torch import nn

from mnistlab.data import load_mnist
from mnistlab.dataset import prepare_splits
from mnistlab.errors import MnistlabError
from mnistlab.models import create_model
from mnistlab.studies import load_study
from mnistlab.train import seed_everything

torch.set_num_threads(1)
study = load_study("deep-init")
names = sys.argv[1:] or ["he-relu", "he-relu-bn", "xavier-selu", "xavier-selu-bn"]
mnist = load_mnist()
for name in names:
    try:
        cfg = study.config(study.variant(name), seed=0)  # the study's own run config
    except MnistlabError as e:
        sys.exit(f"grad_at_init: {e}")
    seed_everything(cfg.seed)
    model = create_model(cfg.model, cfg.model_config).train()
    splits = prepare_splits(mnist, cfg.data, cfg.seed)
    x, y = splits.train.x[:128], splits.train.y[:128]
    nn.functional.cross_entropy(model(x), y).backward()
    dense = [m for m in model.modules() if isinstance(m, nn.Linear)]
    norms = {i: float(dense[i - 1].weight.grad.norm()) for i in (1, 2, 25, 50) if i <= len(dense)}
    print(f"{name:16s} " + "  ".join(f"layer {i}: {n:.3g}" for i, n in norms.items()))
