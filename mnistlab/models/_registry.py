"""Name -> model factory registry (timm-style): `@register_model` fills it, `create_model` reads it."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from mnistlab.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: Any  # the default (frozen dataclass) config
    build: Callable[[Any], nn.Module]
    seed_doc: str = ""  # the seed experiment whose architecture it is ("0.1"), or "" for our own
    description: str = ""
    # What the model does: "digit" = a 28x28 classifier (10 logits; what a Predictor, the studies,
    # the attacks and the exports take); "line" = the line reader (models/linereader.py: a strip of
    # digits -> CTC logits), trained by its own recipe and left out of what goes over classifiers.
    task: str = "digit"


TASKS = ("digit", "line")
_MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    config: Any,
    *,
    seed_doc: str = "",
    description: str = "",
    task: str = "digit",
) -> Callable[[Callable[[Any], nn.Module]], Callable[[Any], nn.Module]]:
    """Register `build(config) -> nn.Module` under `name` with its default config. How it is
    trained is a recipe (recipes.py), not part of the model."""
    if not dataclasses.is_dataclass(config) or not type(config).__dataclass_params__.frozen:
        raise TypeError(f"model {name!r}: config must be a frozen dataclass instance")
    if task not in TASKS:
        raise ValueError(f"model {name!r}: unknown task {task!r}")

    def deco(build: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = ModelSpec(name, config, build, seed_doc, description, task)
        return build

    return deco


def list_models(pattern: str = "*", task: str | None = "digit") -> list[str]:
    """Registered names matching `pattern`: the digit classifiers by default, `task=None` for all."""
    return sorted(n for n, s in _MODELS.items() if fnmatch.fnmatch(n, pattern) and task in (None, s.task))


def get_spec(name: str) -> ModelSpec:
    try:
        return _MODELS[name]
    except KeyError:
        hint = did_you_mean(name, list_models(task=None))
        raise ConfigError(f"unknown model {name!r}{hint}; available: {', '.join(list_models(task=None))}") from None


def default_config(name: str) -> Any:
    return get_spec(name).config


def create_model(name: str, config: Any | None = None, **overrides: Any) -> nn.Module:
    """Build model `name` from `config` (default: the registered one) with field `overrides`."""
    spec = get_spec(name)
    cfg = spec.config if config is None else config
    if type(cfg) is not type(spec.config):
        raise ConfigError(f"model {name!r} takes a {type(spec.config).__name__}, not {type(cfg).__name__}")
    if overrides:
        try:
            cfg = dataclasses.replace(cfg, **overrides)
        except TypeError as e:
            raise ConfigError(f"model {name!r}: {e}") from None
    model = spec.build(cfg)
    model.model_name = name
    model.config = cfg
    return model


def keras_param_count(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) the way Keras' model.summary() counts them.

    Keras counts BatchNormalization's moving mean and variance as non-trainable params; PyTorch
    keeps them as buffers (plus an int64 `num_batches_tracked`, which Keras has no twin of).
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    moving = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )
    return trainable + frozen + moving, trainable
