import pytest

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
