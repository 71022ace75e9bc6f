"""Named recipes: a model plus the training/data settings that go with it.

Every registered model is also a recipe of the same name: its seed document's training recipe
(so `mnistlab train dnn` trains the way seed 0.1 did). Recipes that are not a seed's (the fast
and best recipes, the reference recipes) register here with `register_recipe`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mnistlab import transforms
from mnistlab.config import RunConfig, apply_overrides
from mnistlab.errors import ConfigError
from mnistlab.models import default_config, get_spec, list_models


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    overrides: Mapping[str, Any]
    description: str = ""


_RECIPES: dict[str, Recipe] = {}

# What `mnistlab train` trains when no name is given: "fast" (~99 % in seconds; docs/bench.md says why).
DEFAULT_RECIPE = "fast"


def register_recipe(name: str, model: str, overrides: Mapping[str, Any], description: str = "") -> Recipe:
    if name in _RECIPES or name in list_models():
        raise ValueError(f"recipe {name!r} already exists")
    recipe = Recipe(name, model, dict(overrides), description)
    _RECIPES[name] = recipe
    return recipe


def list_recipes() -> list[str]:
    return sorted(set(_RECIPES) | set(list_models()))


def get_recipe(name: str) -> Recipe:
    if name in _RECIPES:
        return _RECIPES[name]
    if name in list_models():
        spec = get_spec(name)
        return Recipe(name, name, spec.recipe, spec.description)
    raise ConfigError(f"unknown model or recipe {name!r}; available: {', '.join(list_recipes())}")


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
    cfg = RunConfig(model=recipe.model, model_config=default_config(recipe.model))
    cfg = apply_overrides(cfg, recipe.overrides)
    user = dict(overrides or {})
    # A recipe's lr belongs to its optimizer (cnn: Adadelta at 1.0): switching the optimizer
    # without naming an lr falls back to the new optimizer's Keras default.
    if {"optimizer", "train.optimizer"} & user.keys() and not {"lr", "train.lr"} & user.keys():
        user["train.lr"] = 0.0
    cfg = apply_overrides(cfg, user)
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    return fit_model_to_data(cfg)


from mnistlab import recipes_bench  # noqa: E402, F401  (registers ref-pytorch, ref-keras, fast, best)
from mnistlab.handwriting import model as _handwriting_model  # noqa: E402, F401  (registers robust)
