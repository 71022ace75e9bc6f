"""Short real trainings on MNIST slices: accuracy floors, determinism, records, restore-best."""

import dataclasses
import json
import typing

import pytest
import torch

from mnistlab import runs
from mnistlab.config import Optimizer
from mnistlab.dataset import prepare_splits
from mnistlab.errors import ConfigError, RunError
from mnistlab.experiment import run_experiment
from mnistlab.recipes import resolve_run_config
from mnistlab.train import Callback

SLICE = {"data.train_limit": 4000, "data.test_limit": 2000}


def test_dnn_learns_on_a_slice(mnist):
    out = run_experiment(resolve_run_config("dnn", SLICE), mnist=mnist, record=False)
    assert out.result["test_acc"] > 0.80
    assert out.result["params"] == 25450
    assert sum(map(sum, out.result["confusion"])) == 2000


def test_cnn_learns_on_a_slice(mnist):
    out = run_experiment(
        resolve_run_config("cnn", {**SLICE, "filters2": 16, "dense": 32, "epochs": 2, "optimizer": "adam"}),
        mnist=mnist,
        record=False,
    )
    assert out.result["test_acc"] > 0.85


def test_same_seed_same_run(mnist):
    cfg = resolve_run_config("mlp", {**SLICE, "epochs": 2, "hidden": 64}, seed=5)
    a = run_experiment(cfg, mnist=mnist, record=False)
    b = run_experiment(cfg, mnist=mnist, record=False)
    assert [m["loss"] for m in a.train.history] == [m["loss"] for m in b.train.history]
    assert all(
        torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True)
    )
    c = run_experiment(dataclasses.replace(cfg, seed=6), mnist=mnist, record=False)
    assert c.train.history[0]["loss"] != a.train.history[0]["loss"]


def test_record_round_trip(mnist, tmp_path):
    cfg = resolve_run_config("cnn-small", {**SLICE, "epochs": 2, "data.train_limit": 2000})
    out = run_experiment(cfg, mnist=mnist, run_dir=tmp_path / "r")
    names = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert names == ["config.json", "metrics.jsonl", "result.json", "weights.safetensors"]
    assert len(runs.read_history(tmp_path / "r")) == 2
    loaded = runs.load_run(tmp_path / "r")
    assert loaded.config == cfg
    from mnistlab.train import evaluate

    splits = prepare_splits(mnist, loaded.config.data, loaded.config.seed)
    assert evaluate(loaded.model, splits.test)["acc"] == out.result["test_acc"]
    assert "test_inverted" in out.result["extra_tests"]  # seed 004's recipe tests both polarities


def test_weights_of_another_architecture_are_refused(mnist, tmp_path):
    run_experiment(resolve_run_config("dnn", {**SLICE, "data.train_limit": 500}), mnist=mnist, run_dir=tmp_path / "r")
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    cfg["model_config"]["hidden"] = 64
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="do not fit model 'dnn'.*fc1.weight is \\(32, 784\\)"):
        runs.load_run(tmp_path / "r")


def test_garbage_weights_are_refused(mnist, tmp_path):
    run_experiment(resolve_run_config("dnn", {**SLICE, "data.train_limit": 500}), mnist=mnist, run_dir=tmp_path / "r")
    (tmp_path / "r" / "weights.safetensors").write_bytes(b"\x80\x04\x95 this is a pickle, not safetensors")
    with pytest.raises(RunError, match="not a valid safetensors"):
        runs.load_run(tmp_path / "r")


def test_monitor_restores_the_best_epoch(mnist):
    # lr far too high for sgd on unscaled pixels: later epochs get worse, the best is restored
    cfg = resolve_run_config("dnn", {**SLICE, "epochs": 3, "data.val_split": 0.2, "train.monitor": "val_acc"})
    out = run_experiment(cfg, mnist=mnist, record=False)
    best = max(range(3), key=lambda i: out.train.history[i]["val_acc"]) + 1
    assert out.result["best_epoch"] == best
    with pytest.raises(ConfigError, match="needs a validation set"):
        run_experiment(resolve_run_config("dnn", {**SLICE, "train.monitor": "val_loss"}), mnist=mnist, record=False)


@pytest.mark.parametrize("schedule", ["step", "plateau", "onecycle", "cosine"])
@pytest.mark.parametrize("optimizer", typing.get_args(Optimizer))
def test_every_optimizer_and_schedule_runs(mnist, optimizer, schedule):
    cfg = resolve_run_config(
        "dnn",
        {"data.train_limit": 600, "data.test_limit": 200, "data.val_split": 0.2, "epochs": 2,
         "train.optimizer": optimizer, "train.schedule": schedule, "train.plateau_patience": 0},
    )  # fmt: skip
    out = run_experiment(cfg, mnist=mnist, record=False)
    h = out.train.history
    assert len(h) == 2 and all(m["loss"] == m["loss"] and m["loss"] < 5 for m in h)
    if schedule == "step":
        assert h[1]["lr"] == pytest.approx(h[0]["lr"] * cfg.train.gamma)
    if schedule in ("onecycle", "cosine"):
        assert h[1]["lr"] < h[0]["lr"]


def test_muon_orthogonalises_the_hidden_kernels_and_leaves_the_rest_to_adam():
    from mnistlab.models import create_model
    from mnistlab.train import MuonAdam, _orthogonalise, make_optimizer

    g = torch.randn(64, 288, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(_orthogonalise(g))  # quintic Newton-Schulz: every singular value near 1
    assert 0.6 < float(s.min()) and float(s.max()) < 1.3
    cfg = resolve_run_config("fast-crop", {"train.optimizer": "muon"})
    model = create_model(cfg.model, cfg.model_config)
    opt = make_optimizer(model.parameters(), cfg.train)
    adam, muon = opt.param_groups
    assert isinstance(opt, MuonAdam) and not adam["muon"] and muon["muon"]
    kernels = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert kernels and all(any(p is k for p in muon["params"]) for k in kernels)
    head = [p for p in model.parameters() if p.ndim >= 2][-1]
    assert any(p is head for p in adam["params"]) and all(p.ndim == 1 or p is head for p in adam["params"])
    assert (muon["lr"], adam["lr"]) == (cfg.train.muon_lr, 0.001)  # naming the optimizer: its own lr


@pytest.mark.parametrize(
    "data",
    [
        {"data.subsample": "random"},
        {"data.subsample": "half"},
        {"data.subsample": "down4"},
        {"data.subsample": "top"},
        {"data.subsample": "left"},
        {"data.subsample": "half", "data.upsample": True},
        {"data.invert": "add", "data.channels": 3},
        {"data.scale": False},
        {"data.train_fraction": 0.1},
    ],
)
def test_data_variants_train(mnist, data):
    cfg = resolve_run_config("dnn", {**SLICE, **data, "data.train_limit": 1000})
    out = run_experiment(cfg, mnist=mnist, record=False)
    assert out.result["test_acc"] > 0.2


@pytest.mark.parametrize("mode", ["none", "random", "half", "down4", "top", "left"])
def test_subsample_modes_keep_what_they_say(mode):
    from mnistlab.transforms import subsample

    x = torch.rand(4, 1, 28, 28) + 0.1  # no zero pixel before
    out = subsample(x, mode, keep=0.5, seed=0)
    kept = (out != 0).float().mean().item()
    side = {"half": 14, "down4": 14}.get(mode, 28)
    assert out.shape == (4, 1, side, side)
    assert kept == pytest.approx({"none": 1, "half": 1, "down4": 1, "top": 0.5, "left": 0.5}.get(mode, 0.5), abs=0.05)
    if mode == "top":
        assert torch.equal(out[..., :14, :], x[..., :14, :]) and not out[..., 14:, :].any()
    if mode == "left":
        assert torch.equal(out[..., :, :14], x[..., :, :14]) and not out[..., :, 14:].any()


def test_augmentation_is_seeded_and_keeps_shape():
    from mnistlab.augment import augment_batch
    from mnistlab.config import AugmentConfig

    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1
    cfg = AugmentConfig(rotate=10, zoom=0.1, shift=0.1, shear=5)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    assert float(augment_batch(x, AugmentConfig(), torch.Generator()).sub(x).abs().max()) == 0


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_precision_trains_and_is_recorded(mnist, precision):
    from mnistlab.train import autocast_bf16

    cfg = resolve_run_config("fast", {**SLICE, "train.epochs": 3, "train.precision": precision})
    out = run_experiment(cfg, mnist=mnist, record=False, device="cpu")
    assert out.result["test_acc"] > 0.85
    assert out.result["bf16"] is autocast_bf16(precision, "cpu")
    assert out.result["bf16"] is (precision == "bf16") or precision == "auto"
    # weights stay float32 whatever the autocast did
    assert all(p.dtype == torch.float32 for p in out.model.parameters())


def test_fastnet_stride2_stem_skips_the_full_size_activation():
    from mnistlab.models import create_model, default_config

    net = create_model("fastnet", dataclasses.replace(default_config("fastnet"), stem="stride2"))
    sizes = []
    x = torch.rand(2, 1, 28, 28)
    for layer in net:
        x = layer(x)
        sizes.append(x.shape[-1] if x.dim() == 4 else None)
    assert x.shape == (2, 10)
    assert max(s for s in sizes if s) == 14  # no 28x28 activation anywhere
    with pytest.raises(ValueError, match="stem"):
        dataclasses.replace(default_config("fastnet"), stem="nope")


class _DenormalProbe(Callback):
    """Records whether a denormal double survives while the run trains."""

    def __init__(self) -> None:
        self.flushed: list[bool] = []

    def on_batch_end(self, state, loss) -> None:
        self.flushed.append(float(torch.tensor([1e-323], dtype=torch.float64)[0]) == 0.0)


@pytest.mark.parametrize("flush", [False, True])
def test_flush_denormal_holds_for_the_run_only(mnist, flush):
    cfg = resolve_run_config("dnn", {**SLICE, "data.train_limit": 256, "train.flush_denormal": flush})
    probe = _DenormalProbe()
    run_experiment(cfg, mnist=mnist, record=False, callbacks=[probe])
    supported = torch.set_flush_denormal(False)  # False on CPUs without SSE3: nothing to check
    assert probe.flushed and all(f == (flush and supported) for f in probe.flushed)
    assert float(torch.tensor([1e-323], dtype=torch.float64)[0]) != 0.0  # switched back off
