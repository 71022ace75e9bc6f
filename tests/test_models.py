import dataclasses

import pytest
import torch

from mnistlab.errors import ConfigError
from mnistlab.models import create_model, default_config, get_spec, keras_param_count, list_models, summarize

# The seeds' model.summary() totals (docs/seeds.md) and the counts they imply for the others.
SEED_PARAMS = {
    "dnn": (25_450, 25_450),
    "cnn": (1_199_882, 1_199_882),
    "mlp": (669_706, 669_706),
    "deep-dnn": (594_410, 584_410),
    "cnn-small": (8_922, 8_922),
}


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.rand(4, *model.input_shape)
    logits = model(x)
    assert logits.shape == (4, 10)
    logits.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list_models())
def test_config_is_frozen_and_summary_adds_up(name):
    cfg = default_config(name)
    assert dataclasses.is_dataclass(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.input_size = 3  # type: ignore[misc]
    model = create_model(name)
    rows = summarize(model)
    assert rows[-1].output_shape == (10,)
    assert sum(r.params for r in rows) == keras_param_count(model)[0]
    spec = get_spec(name)  # every seed model names the experiment it reproduces ("" = our own model)
    assert spec.seed_doc or spec.build.__module__ != "mnistlab.models.seed"


@pytest.mark.parametrize("name", sorted(SEED_PARAMS))
def test_keras_param_counts_match_the_seeds(name):
    assert keras_param_count(create_model(name)) == SEED_PARAMS[name]


def test_overrides_change_the_network():
    assert keras_param_count(create_model("mlp", hidden=2048))[0] == 784 * 2048 + 2048 + 2048 * 2048 + 2048 + 20490
    assert create_model("cnn", input_size=14)(torch.rand(2, 1, 14, 14)).shape == (2, 10)
    m = create_model("cnn", kernel1=2, kernel2=8)
    assert m(torch.rand(1, 1, 28, 28)).shape == (1, 10)


def test_bad_config_values_are_config_errors():
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("resnet-9000")
    with pytest.raises(ValueError, match="activation"):
        create_model("dnn", activation="swishy")
    with pytest.raises(ValueError, match="leave nothing"):
        create_model("cnn", kernel1=15, kernel2=15)


@pytest.mark.parametrize("init", ["glorot_uniform", "glorot_normal", "he_normal", "lecun_normal", "normal"])
def test_inits_have_the_keras_variance(init):
    torch.manual_seed(0)
    w = create_model("dnn", hidden=400, init=init, init_std=0.05).fc1.weight.detach()
    fan_in, fan_out = 784, 400
    want = {
        "glorot_uniform": 2 / (fan_in + fan_out),
        "glorot_normal": 2 / (fan_in + fan_out),
        "he_normal": 2 / fan_in,
        "lecun_normal": 1 / fan_in,
        "normal": 0.05**2,
    }[init]
    assert float(w.var()) == pytest.approx(want, rel=0.05)
    assert float(create_model("dnn", init=init).fc1.bias.abs().sum()) == 0.0
