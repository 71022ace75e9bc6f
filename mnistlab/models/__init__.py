"""Model registry. Importing this package registers every model family."""

from mnistlab.models import (
    adversarial,  # noqa: F401  (the adversarial-training recipe's network)
    fast,  # noqa: F401  (the benchmark recipes' architectures)
    linereader,  # noqa: F401  (the line reader: task "line")
    seed,  # noqa: F401  (registers the seed architectures)
)
from mnistlab.models._registry import (
    ModelSpec,
    create_model,
    default_config,
    get_spec,
    keras_param_count,
    list_models,
    register_model,
)
from mnistlab.models.summary import LayerRow, summarize

__all__ = [
    "LayerRow",
    "ModelSpec",
    "create_model",
    "default_config",
    "get_spec",
    "keras_param_count",
    "list_models",
    "register_model",
    "summarize",
]
