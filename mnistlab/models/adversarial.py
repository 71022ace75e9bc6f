"""advnet: the small strided CNN of the provable/fast adversarial-training papers (Wong & Kolter
2018, Wong, Rice & Kolter 2020), used by the `adversarial` recipe.

No pooling, no BatchNorm, no dropout on purpose: every layer is the same function in train and
eval mode, so the FGSM-RS adversary (crafted in eval mode) attacks exactly the network that is
trained on it, and the robustness evaluation sees no train/eval gap that could hide gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mnistlab.models._layers import INITS, Net, check_choice, check_input, init_weights
from mnistlab.models._registry import register_model


@dataclass(frozen=True)
class AdvNetConfig:
    widths: tuple[int, ...] = (16, 32)  # one 4x4 stride-2 conv + ReLU per entry (28 -> 14 -> 7)
    hidden: int = 100  # units of the dense layer before the classifier
    init: str = "pytorch"
    in_channels: int = 1
    input_size: int = 28

    def __post_init__(self) -> None:
        check_choice(self.init, INITS, "init")
        if not self.widths or min(self.widths) < 1 or self.hidden < 1:
            raise ValueError(f"bad advnet shape: widths={self.widths} hidden={self.hidden}")
        check_input(self.in_channels, self.input_size, 2 ** len(self.widths))


@register_model(
    "advnet",
    AdvNetConfig(),
    description="[Conv4 stride 2 -> ReLU] x 2 (16, 32) -> Dense100 -> ReLU -> Dense10 (adversarial training)",
)
def build_advnet(cfg: AdvNetConfig) -> nn.Module:
    layers: list[tuple[str, nn.Module]] = []
    c, side = cfg.in_channels, cfg.input_size
    for i, w in enumerate(cfg.widths, 1):
        # kernel 4, stride 2, padding 1 halves the side exactly (28 -> 14 -> 7)
        layers += [(f"conv{i}", nn.Conv2d(c, w, 4, stride=2, padding=1)), (f"act{i}", nn.ReLU())]
        c, side = w, side // 2
    layers += [
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(c * side * side, cfg.hidden)),
        (f"act{len(cfg.widths) + 1}", nn.ReLU()),
        ("out", nn.Linear(cfg.hidden, 10)),
    ]
    net = Net(layers, (cfg.in_channels, cfg.input_size, cfg.input_size))
    init_weights(net, cfg.init)
    return net
