import pytest
import torch

from mnistlab.config import apply_overrides, parse_assignments, run_config_from_dict
from mnistlab.errors import ConfigError
from mnistlab.recipes import resolve_run_config


def test_recipe_then_overrides():
    cfg = resolve_run_config(
        "dnn", {"hidden": "64", "train.lr": "0.01", "epochs": 3, "data.subsample": "down4"}, seed=7
    )
    assert cfg.model_config.hidden == 64 and cfg.train.lr == 0.01 and cfg.train.epochs == 3
    assert cfg.train.batch_size == 32  # from the seed recipe
    assert cfg.model_config.input_size == 14  # fitted to the 14x14 data
    assert cfg.seed == 7


def test_round_trip_through_json():
    cfg = resolve_run_config("cnn-bn", {"kernels": "3,3,3,3,3"})
    assert cfg.model_config.kernels == (3, 3, 3, 3, 3)
    import json

    assert run_config_from_dict(json.loads(cfg.to_json())) == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"nope": 1}, "unknown key 'nope'"),
        ({"hidden": "wide"}, "expected an integer"),
        ({"train.optimizer": "lion"}, "choose one of"),
        ({"data.scale": "maybe"}, "true or false"),
        ({"train.lr": "fast"}, "expected a number"),
        ({"activation": "swishy"}, "unknown activation"),
    ],
)
def test_bad_overrides_say_what_is_valid(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_run_config("dnn", overrides)


def test_parse_assignments():
    assert parse_assignments(["a=1", "b.c = x"]) == {"a": "1", "b.c": "x"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignments(["nonsense"])


def test_unknown_recipe():
    with pytest.raises(ConfigError, match="available"):
        resolve_run_config("lenet-7")


def test_apply_overrides_types_from_toml_values():
    cfg = resolve_run_config("dnn")
    cfg = apply_overrides(cfg, {"train.lr": 1, "data.scale": False, "seed": 3})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.data.scale is False and cfg.seed == 3


def test_none_means_the_optimizers_keras_default():
    from mnistlab.train import make_optimizer

    cfg = resolve_run_config("cnn")  # Adadelta at lr 1.0, rho left to Adadelta's default
    assert cfg.train.rho is None
    group = make_optimizer([torch.zeros(1, requires_grad=True)], cfg.train).param_groups[0]
    assert (group["lr"], group["rho"]) == (1.0, 0.95)
    switched = resolve_run_config("cnn", {"optimizer": "rmsprop"})  # the lr of Adadelta does not carry over
    group = make_optimizer([torch.zeros(1, requires_grad=True)], switched.train).param_groups[0]
    assert (group["lr"], group["alpha"]) == (0.001, 0.9)
    pt = resolve_run_config("ref-pytorch")  # PyTorch's Adadelta rho 0.9, asked for as it is
    assert make_optimizer([torch.zeros(1, requires_grad=True)], pt.train).param_groups[0]["rho"] == 0.9


def test_records_before_config_version_2_keep_their_meaning():
    from mnistlab.config import run_config_from_dict

    old = resolve_run_config("cnn").to_dict()
    del old["config_version"]
    old["train"] |= {"lr": 0.0, "rho": 0.9, "momentum": 0.0, "weight_decay": 0.0, "adv_alpha": 0.0}
    cfg = run_config_from_dict(old)
    assert (cfg.train.lr, cfg.train.rho, cfg.train.momentum, cfg.train.weight_decay) == (None, None, None, None)
    new = resolve_run_config("ref-pytorch").to_dict()
    assert run_config_from_dict(new).train.rho == 0.9 and run_config_from_dict(new) == resolve_run_config("ref-pytorch")


def test_a_misspelt_key_or_recipe_gets_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key 'hiden'.*did you mean 'hidden'\?"):
        resolve_run_config("mlp", {"hiden": 64})
    with pytest.raises(ConfigError, match=r"unknown model or recipe 'rubost' \(did you mean 'robust'\?\)"):
        resolve_run_config("rubost")
