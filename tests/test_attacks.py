"""Adversarial attacks: analytic FGSM, PGD constraints, targeted success, determinism, CLI, adversarial training."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from mnistlab import attacks
from mnistlab.errors import ConfigError
from mnistlab.experiment import run_experiment
from mnistlab.recipes import resolve_run_config


def _linear_model(true: int, target: int) -> tuple[nn.Module, torch.Tensor]:
    """A linear classifier whose rows are all w_true except row `target`, so that the gradient
    of the cross-entropy is a positive multiple of ±(w_target - w_true) and FGSM has a closed form."""
    g = torch.Generator().manual_seed(3)
    # small weights keep both probabilities far from 0 and 1 (no float cancellation in the gradient)
    w_true, w_target = 0.01 * torch.randn(784, generator=g), 0.01 * torch.randn(784, generator=g)
    lin = nn.Linear(784, 10)
    with torch.no_grad():
        lin.weight.copy_(w_true.expand(10, 784))
        lin.weight[target] = w_target
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin), w_target - w_true


@pytest.fixture(scope="module")
def small_dnn():
    """A dnn trained one epoch on 3000 images (a few seconds)."""
    from mnistlab.data import load_mnist

    cfg = resolve_run_config("dnn", {"data.train_limit": 3000, "data.test_limit": 2000})
    out = run_experiment(cfg, mnist=load_mnist(), record=False, device="cpu")
    return out.model.eval(), out.splits.test


@pytest.mark.parametrize("targeted", [True, False])
def test_fgsm_on_a_linear_model_is_analytic(targeted):
    true, target, eps = 8, 9, 0.1
    model, direction = _linear_model(true, target)
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.full((5,), target if targeted else true)
    expected = (x + eps * direction.sign().reshape(1, 1, 28, 28)).clamp(0, 1)
    assert torch.allclose(attacks.fgsm(model, x, labels, eps, targeted=targeted), expected)
    if targeted:  # the public API's fixed-budget FGSM is the same step
        res = attacks.targeted_attack(model, x, target, method="fgsm", eps=eps)
        assert torch.allclose(res.x_adv, expected)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [True, False])
def test_pgd_stays_in_the_ball_and_the_pixel_range(norm, targeted):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    eps = 0.1 if norm == "linf" else 1.5
    labels = torch.full((16,), 3)
    gen = torch.Generator().manual_seed(0)
    x_adv = attacks.pgd(model, x, labels, eps, norm, steps=20, targeted=targeted, generator=gen, alpha=eps / 2)
    size = (x_adv - x).flatten(1).abs().amax(1) if norm == "linf" else (x_adv - x).flatten(1).norm(dim=1)
    assert (size <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (size > eps / 2).any()  # it did move


def test_targeted_attack_succeeds_on_a_trained_model(small_dnn):
    model, test = small_dnn
    eights = test.x[test.y == 8][:100]
    res = attacks.targeted_attack(model, eights, 9, method="pgd", norm="linf", steps=20)
    assert res.success.float().mean() >= 0.99
    assert (res.probs_after.argmax(1)[res.success] == 9).all()
    assert res.x_adv.shape == eights.shape and res.probs_before.shape == (len(eights), 10)
    assert torch.allclose(res.linf, (res.x_adv - eights).flatten(1).abs().amax(1))
    # a smallest-perturbation search: the found budget bounds the L∞ size, and it is small
    assert (res.linf <= res.eps + 1e-6).all() and float(res.linf.median()) < 0.3
    s = res.summary()
    assert s["success_rate"] >= 0.99 and s["l2"]["median"] > 0


def test_carlini_wagner_succeeds_with_a_small_l2(small_dnn):
    model, test = small_dnn
    eights = test.x[test.y == 8][:20]
    cw = attacks.targeted_attack(model, eights, 9, method="cw", norm="l2", steps=60)
    assert cw.success.float().mean() >= 0.95
    assert float(cw.l2[cw.success].median()) < 4.0


def test_fixed_seeds_reproduce_the_adversarials(small_dnn):
    model, test = small_dnn
    x = test.x[:32]

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return attacks.targeted_attack(model, x, 3, method="pgd", eps=0.1, steps=5, generator=gen).x_adv

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_robust_accuracy_falls_to_zero_for_large_eps(small_dnn):
    """Undefended model, L∞ eps = 0.5: PGD must break (almost) everything; eps = 0 is clean accuracy."""
    model, test = small_dnn
    x, y = test.x[:200], test.y[:200]
    rows = attacks.robustness_curve(model, x, y, [0.0, 0.5], "linf", steps=20, restarts=2)
    clean = float((attacks._predict(model, x).argmax(1) == y).float().mean())
    assert rows[0]["accuracy"] == pytest.approx(clean)
    assert rows[1]["accuracy"] <= 0.01


def test_bad_arguments_raise_config_errors(small_dnn):
    model, test = small_dnn
    for kwargs in ({"method": "nope"}, {"norm": "l1"}, {"method": "cw", "norm": "linf"}, {"eps": -1.0}):
        with pytest.raises(ConfigError):
            attacks.targeted_attack(model, test.x[:2], 9, **kwargs)
    with pytest.raises(ConfigError):
        attacks.targeted_attack(model, test.x[:2], 12)


@pytest.mark.parametrize("mode", ["fgsm-rs", "n-fgsm", "pgd"])
def test_adversarial_batch_budgets(mode, small_dnn):
    """fgsm-rs and pgd stay in the eps-box; n-fgsm is not projected (noise 2 eps + one eps step);
    all stay in [0, 1]; eps 0 (the first step of an eps warm-up) leaves the batch alone."""
    model, test = small_dnn
    x, y = test.x[:64], test.y[:64]
    tc = resolve_run_config("dnn", {"train.adversarial": mode, "train.adv_steps": 3}).train
    g = torch.Generator().manual_seed(0)
    adv = attacks.adversarial_batch(model, x, y, tc, g, eps=0.1)
    size = (adv - x).abs().flatten(1).amax(1)
    assert adv.min() >= 0 and adv.max() <= 1
    if mode == "n-fgsm":
        assert size.max() <= 0.3 + 1e-6 and size.max() > 0.1 + 1e-3
    else:
        assert size.max() <= 0.1 + 1e-6
    assert torch.equal(attacks.adversarial_batch(model, x, y, tc, g, eps=0.0), x)


def test_eps_warmup_changes_training(mnist):
    base = {"data.train_limit": 300, "data.test_limit": 100, "train.batch_size": 100}
    adv = {**base, "train.adversarial": "pgd", "train.adv_eps": 0.3, "train.adv_steps": 2}

    def weights(overrides):
        out = run_experiment(resolve_run_config("advnet", overrides), mnist=mnist, record=False, device="cpu")
        return torch.cat([p.detach().flatten() for p in out.model.parameters()])

    assert not torch.equal(weights(adv), weights({**adv, "train.adv_eps_warmup": 0.5}))


@pytest.mark.parametrize("mode", ["fgsm-rs", "pgd"])
def test_adversarial_training_is_reproducible_and_changes_training(mode, mnist):
    base = {"data.train_limit": 300, "data.test_limit": 100, "train.batch_size": 100}
    adv = {**base, "train.adversarial": mode, "train.adv_eps": 0.3, "train.adv_steps": 3}

    def weights(overrides):
        out = run_experiment(resolve_run_config("dnn", overrides), mnist=mnist, record=False, device="cpu")
        return torch.cat([p.detach().flatten() for p in out.model.parameters()])

    a, b = weights(adv), weights(adv)
    assert torch.equal(a, b)
    assert not torch.equal(a, weights(base))


def mnistlab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mnistlab", *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_cli_smoke(tmp_path, mnist):
    run = tmp_path / "run"
    train_args = ["--set", "data.train_limit=2000", "--set", "data.test_limit=500", "--adversarial", "fgsm-rs"]
    mnistlab("train", "dnn", *train_args, "--eps", "0.05", "-q", "--run-dir", str(run))
    recorded = json.loads((run / "config.json").read_text())["train"]
    assert recorded["adversarial"] == "fgsm-rs" and recorded["adv_eps"] == 0.05
    png = tmp_path / "t.png"
    r = json.loads(
        mnistlab("attack", "targeted", str(run), "--n", "20", "--steps", "10", "--png", str(png), "--json").stdout
    )
    assert r["success_rate"] >= 0.95 and r["l2"]["median"] > 0 and png.stat().st_size > 1000
    ml = json.loads(
        mnistlab("attack", "most-likely", str(run), "--k", "4", "--png", str(tmp_path / "m.png"), "--json").stdout
    )
    assert len(ml["images"]) == 4 and ml["images"][0]["prob"] >= ml["images"][-1]["prob"]
    tr = json.loads(mnistlab("attack", "transfer", str(run), str(run), "--n", "10", "--steps", "10", "--json").stdout)
    assert len(tr["accuracy"]) == 2 and tr["accuracy"][0][0] <= 0.05  # white-box diagonal
    rb = mnistlab("attack", "robustness", str(run), "--eps", "0,0.3", "--n", "50", "--steps", "5", "--restarts", "2",
                  "--png", str(tmp_path / "r.png"))  # fmt: skip
    assert "0.3" in rb.stdout and (tmp_path / "r.png").exists()
    bad = mnistlab("attack", "targeted", str(run), "--source", "12", check=False)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "digit" in bad.stderr
