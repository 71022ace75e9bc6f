"""How much of a BN network's test accuracy is its batch-norm statistics (deep-init 3.1's gap).

For each run folder given (a trained model with BatchNorm layers), the test accuracy with:
  as trained  the running mean/var PyTorch kept (EMA, momentum 0.01 = Keras' 0.99, of the
              *unbiased* batch variance),
  keras var   every running_var x (B-1)/B: the EMA of the *biased* batch variance, which is what
              Keras' BatchNormalization keeps for Dense inputs (B = the run's batch size),
  population  the running statistics recomputed as the plain average over every training batch
              of the final weights (no EMA lag): what the model would score if its statistics
              matched its last weights,
  batch stats every test batch of B normalised by its own statistics, as in training (BN in
              training mode, nothing updated): the network the training accuracy measures.
Run: python docs/scripts/bn_statistics.py RUN [RUN ...]   (e.g. study runs of deep-init)
"""

import copy
import sys

import torch
from torch import nn

from mnistlab.data import load_mnist
from mnistlab.dataset import prepare_splits
from mnistlab.predictor import Predictor
from mnistlab.train import evaluate

torch.set_num_threads(1)
mnist = load_mnist()


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def batch_stats_acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    m = copy.deepcopy(model)
    for bn in bn_layers(m):
        bn.track_running_stats = False  # normalise by the batch, keep the stored statistics as they are
        bn.running_mean = bn.running_var = None
    m.train()
    for mod in m.modules():  # dropout (none in deep-dnn) stays off
        if isinstance(mod, nn.Dropout):
            mod.eval()
    correct = sum(
        int((m(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum()) for i in range(0, len(x), batch_size)
    )
    return correct / len(y)


@torch.no_grad()
def population_stats(model: nn.Module, x: torch.Tensor, batch_size: int) -> nn.Module:
    m = copy.deepcopy(model)
    for bn in bn_layers(m):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches seen
    m.train()
    for i in range(0, len(x), batch_size):
        m(x[i : i + batch_size])
    return m.eval()


for ref in sys.argv[1:]:
    p = Predictor.load(ref)
    cfg = p.config
    splits = prepare_splits(mnist, cfg.data, cfg.seed)
    model = p.model.eval()
    b = cfg.train.batch_size
    acc = evaluate(model, splits.test)["acc"]
    keras = copy.deepcopy(model)
    for bn in bn_layers(keras):
        bn.running_var.mul_((b - 1) / b)
    acc_keras = evaluate(keras, splits.test)["acc"]
    pop = population_stats(model, splits.train.x, b)
    acc_pop = evaluate(pop, splits.test)["acc"]
    acc_batch = batch_stats_acc(model, splits.test.x, splits.test.y, b)
    print(
        f"{ref}: test acc as trained {acc:.4f}  keras var {acc_keras:.4f}  population {acc_pop:.4f}  "
        f"batch stats {acc_batch:.4f}"
    )
