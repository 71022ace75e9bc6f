"""Adversarial examples: FGSM, BIM, PGD (L∞ and L2), Carlini-Wagner L2, and adversarial training.

Conventions: images are float tensors (N, C, H, W) in [0, 1] pixel space and every attack keeps
them there (any normalisation belongs inside the model); models return LOGITS. Attacks run the
model in eval mode (dropout off, BatchNorm on its running statistics) and put it back in the mode
they found it in. Random starts draw from a caller-given `torch.Generator` (CPU) so a fixed seed
reproduces the same adversarials.

Sizes: L∞ = the largest change of one pixel (0..1), L2 = the Euclidean norm of the whole
perturbation in pixel units (sqrt(784) ≈ 28 would turn a black image white).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnistlab.errors import ConfigError

Method = Literal["fgsm", "bim", "pgd", "cw"]
Norm = Literal["linf", "l2"]
METHODS = ("fgsm", "bim", "pgd", "cw")
NORMS = ("linf", "l2")
# Upper ends of the smallest-perturbation search: the whole pixel range in L∞, and an L2 budget
# (pixel units) far above what fools an undefended MNIST model (typically 1-3).
SEARCH_MAX = {"linf": 1.0, "l2": 12.0}


@dataclass
class AttackResult:
    """One targeted attack on a batch. All tensors are on the CPU."""

    x_adv: Tensor  # (N, C, H, W) in [0, 1]; equals x where the attack failed and eps was searched
    success: Tensor  # (N,) bool: the model says `target` on x_adv (with >= min_confidence)
    probs_before: Tensor  # (N, 10) softmax on x
    probs_after: Tensor  # (N, 10) softmax on x_adv
    l2: Tensor  # (N,) L2 norm of x_adv - x
    linf: Tensor  # (N,) L∞ norm of x_adv - x
    target: Tensor  # (N,) int64
    eps: Tensor  # (N,) the budget that succeeded (the searched minimum), or the given eps
    method: str = "pgd"
    norm: str = "linf"

    def summary(self) -> dict[str, Any]:
        """Success rate and size statistics over the successful examples (JSON-ready)."""
        ok = self.success
        n_ok = int(ok.sum())
        idx = torch.arange(len(ok))

        def stats(v: Tensor) -> dict[str, float | None]:
            v = v[ok]
            if not len(v):
                return {"median": None, "mean": None}
            return {"median": float(v.median()), "mean": float(v.mean())}

        p_target_after = self.probs_after[idx, self.target]
        p_target_before = self.probs_before[idx, self.target]
        return {
            "method": self.method,
            "norm": self.norm,
            "n": len(ok),
            "success_rate": n_ok / max(1, len(ok)),
            "l2": stats(self.l2),
            "linf": stats(self.linf),
            "target_prob_before": stats(p_target_before),
            "target_prob_after": stats(p_target_after),
        }


# --------------------------------------------------------------------------------------------
# building blocks


def _check(method: str, norm: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown attack method {method!r}: choose one of {', '.join(METHODS)}")
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")


def _as_eps(eps: float | Tensor, x: Tensor) -> Tensor:
    """A per-sample budget shaped (N, 1, 1, 1) for broadcasting."""
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    return e.expand(len(x)).reshape(-1, 1, 1, 1) if e.dim() == 0 else e.reshape(-1, 1, 1, 1)


def _flat_norm(v: Tensor, norm: str) -> Tensor:
    flat = v.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def _project(delta: Tensor, eps: Tensor, norm: str) -> Tensor:
    """Project a perturbation onto the eps-ball (eps shaped (N,1,1,1))."""
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, eps), -eps)
    n = _flat_norm(delta, "l2").reshape(-1, 1, 1, 1).clamp_min(1e-12)
    return delta * torch.clamp(eps / n, max=1.0)


def _step(grad: Tensor, alpha: Tensor, norm: str) -> Tensor:
    """The steepest-ascent step of size alpha under the norm: sign for L∞, unit direction for L2."""
    if norm == "linf":
        return alpha * grad.sign()
    n = _flat_norm(grad, "l2").reshape(-1, 1, 1, 1).clamp_min(1e-12)
    return alpha * grad / n


def _random_start(x: Tensor, eps: Tensor, norm: str, generator: torch.Generator | None) -> Tensor:
    """A uniform draw in the L∞ box, or a uniform direction with uniform radius fraction in L2."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator).to(x.device, x.dtype)
        return (2 * u - 1) * eps
    d = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    d = d / _flat_norm(d, "l2").reshape(-1, 1, 1, 1).clamp_min(1e-12)
    r = torch.rand(len(x), generator=generator).to(x.device, x.dtype).reshape(-1, 1, 1, 1)
    return d * r * eps


class _EvalMode:
    """Run the model in eval mode inside the block, then restore its previous mode."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def _grad(model: nn.Module, x_adv: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Gradient of the loss the attacker ascends: CE(true) untargeted, -CE(target) targeted."""
    x_adv = x_adv.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), labels, reduction="sum")
    if targeted:
        loss = -loss
    (g,) = torch.autograd.grad(loss, x_adv)
    return g


def fgsm(model: nn.Module, x: Tensor, labels: Tensor, eps: float | Tensor, targeted: bool = False) -> Tensor:
    """Fast Gradient Sign Method (Goodfellow et al. 2015), L∞: x ± eps·sign(∇loss), clipped to [0, 1].

    Untargeted: moves up the cross-entropy of `labels` (the true digits). Targeted: moves down the
    cross-entropy of `labels` (the wanted digits).
    """
    with _EvalMode(model):
        g = _grad(model, x, labels, targeted)
    return (x + _step(g, _as_eps(eps, x), "linf")).clamp(0, 1).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    eps: float | Tensor,
    norm: Norm = "linf",
    steps: int = 40,
    alpha: float | Tensor | None = None,
    random_start: bool = True,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient descent (Madry et al. 2018); with random_start=False it is BIM (Kurakin et al.).

    `alpha` defaults to 2.5·eps/steps (Madry's rule: enough to cross the ball and come back).
    The result lies in the eps-ball around x AND in [0, 1].
    """
    _check("pgd", norm)
    e = _as_eps(eps, x)
    a = 2.5 * e / max(1, steps) if alpha is None else _as_eps(alpha, x)
    delta = _random_start(x, e, norm, generator) if random_start else torch.zeros_like(x)
    delta = ((x + delta).clamp(0, 1) - x).detach()
    with _EvalMode(model):
        for _ in range(steps):
            g = _grad(model, x + delta, labels, targeted)
            delta = _project(delta + _step(g, a, norm), e, norm)
            delta = ((x + delta).clamp(0, 1) - x).detach()  # clipping keeps it inside the ball too
    return (x + delta).detach()


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch: int = 1000) -> Tensor:
    with _EvalMode(model):
        return torch.cat([model(x[i : i + batch]).float().softmax(1) for i in range(0, len(x), batch)])


def robust_predictions(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: Norm = "linf",
    steps: int = 40,
    restarts: int = 5,
    alpha: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(N,) bool: the model stays correct under ALL `restarts` untargeted PGD attacks of size eps.

    Each restart starts from a fresh random point (the first from x itself, no random start),
    which is what makes this a strong evaluation: a sample counts as robust only if no start
    finds an adversarial.
    """
    with torch.no_grad():
        robust = _predict(model, x).argmax(1) == y
    if eps <= 0:
        return robust
    for r in range(restarts):
        todo = robust.nonzero().flatten()
        if not len(todo):
            break
        x_adv = pgd(model, x[todo], y[todo], eps, norm, steps, alpha, r > 0, False, generator)
        robust[todo] = _predict(model, x_adv).argmax(1) == y[todo]
    return robust


# --------------------------------------------------------------------------------------------
# targeted attacks with the smallest perturbation


def _fixed_budget(
    model: nn.Module, x: Tensor, target: Tensor, method: str, norm: str, eps: Tensor, steps: int, generator: Any
) -> Tensor:
    if method == "fgsm":
        if norm == "l2":  # the L2 FGM: one normalised-gradient step
            with _EvalMode(model):
                g = _grad(model, x, target, True)
            return (x + _step(g, _as_eps(eps, x), "l2")).clamp(0, 1).detach()
        return fgsm(model, x, target, eps, targeted=True)
    return pgd(model, x, target, eps, norm, steps, None, method == "pgd", True, generator)  # type: ignore[arg-type]


def _hits(probs: Tensor, target: Tensor, min_confidence: float) -> Tensor:
    idx = torch.arange(len(target))
    return (probs.argmax(1) == target) & (probs[idx, target] >= min_confidence)


def _carlini_wagner_l2(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    steps: int,
    search_steps: int = 6,
    c_init: float = 1.0,
    kappa: float = 0.0,
    lr: float = 0.05,
) -> tuple[Tensor, Tensor]:
    """Carlini & Wagner (2017) L2, targeted: minimise ||δ||² + c·max(max_{i≠t} Z_i − Z_t, −κ)
    over w with x+δ = (tanh(w)+1)/2, binary-searching c per sample. Returns (best x_adv, found)."""
    n = len(x)
    x_t = x.clamp(1e-6, 1 - 1e-6)
    w0 = torch.atanh(2 * x_t - 1)
    c = torch.full((n,), c_init, device=x.device)
    lo, hi = torch.zeros(n, device=x.device), torch.full((n,), float("inf"), device=x.device)
    best_l2 = torch.full((n,), float("inf"), device=x.device)
    best_x = x.clone()
    onehot = F.one_hot(target, 10).bool()
    with _EvalMode(model):
        for _ in range(search_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=lr)
            found = torch.zeros(n, dtype=torch.bool, device=x.device)
            for _ in range(steps):
                x_adv = (torch.tanh(w) + 1) / 2
                logits = model(x_adv)
                other = logits.masked_fill(onehot, float("-inf")).amax(1)
                margin = (other - logits[onehot]).clamp_min(-kappa)
                l2sq = (x_adv - x).flatten(1).pow(2).sum(1)
                loss = (l2sq + c * margin).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    ok = logits.argmax(1) == target
                    l2 = l2sq.sqrt()
                    better = ok & (l2 < best_l2)
                    best_l2 = torch.where(better, l2, best_l2)
                    best_x[better] = x_adv[better].detach()
                    found |= ok
            # success: try a smaller c (less weight on fooling, more on size); failure: a larger one
            hi = torch.where(found, torch.minimum(hi, c), hi)
            lo = torch.where(found, lo, torch.maximum(lo, c))
            c = torch.where(torch.isinf(hi), c * 10, (lo + hi) / 2)
    return best_x.detach(), torch.isfinite(best_l2)


def targeted_attack(
    model: nn.Module,
    x: Tensor,
    target: int | Tensor,
    method: str = "pgd",
    norm: str = "linf",
    eps: float | None = None,
    steps: int = 50,
    generator: torch.Generator | None = None,
    search_steps: int = 10,
    min_confidence: float = 0.0,
) -> AttackResult:
    """Make `model` say `target` on each image of `x` ((N, C, H, W) in [0, 1]).

    eps=None searches, per image, the SMALLEST budget that works: a bisection over eps
    (`search_steps` halvings between 0 and SEARCH_MAX[norm]) for fgsm/bim/pgd; for "cw" (L2 only)
    the Carlini-Wagner optimisation, which minimises the L2 size directly. With a given eps the
    attack runs once at that budget. Success = argmax is the target with probability
    >= `min_confidence`. `steps` is the number of gradient steps per attack (fgsm: 1).
    """
    _check(method, norm)
    if method == "cw" and norm != "l2":
        raise ConfigError("the cw attack minimises the L2 size: use norm='l2'")
    if method == "cw" and eps is not None:
        raise ConfigError("the cw attack searches its own size: leave eps unset")
    if eps is not None and eps < 0:
        raise ConfigError(f"eps must be >= 0, got {eps}")
    if x.dim() != 4:
        raise ConfigError(f"expected images shaped (N, C, H, W), got {tuple(x.shape)}")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    device = next(model.parameters()).device
    x = x.to(device).float()
    t = torch.as_tensor(target, dtype=torch.long)
    t = (t.expand(len(x)) if t.dim() == 0 else t).to(device)
    if t.numel() != len(x) or t.min() < 0 or t.max() > 9:
        raise ConfigError("target must be a digit 0-9 (or one per image)")
    probs_before = _predict(model, x)
    n = len(x)
    if method == "cw":
        x_adv, _ = _carlini_wagner_l2(model, x, t, steps)
        used = _flat_norm(x_adv - x, "l2")
    elif eps is not None:
        x_adv = _fixed_budget(model, x, t, method, norm, torch.full((n,), eps, device=device), steps, generator)
        used = torch.full((n,), float(eps), device=device)
    else:
        # Bisection per image on the budget; keep the smallest adversarial found so far. Images
        # that already read as the target need no perturbation (eps 0).
        lo = torch.zeros(n, device=device)
        hi = torch.full((n,), SEARCH_MAX[norm], device=device)
        x_adv = x.clone()
        used = torch.full((n,), float("inf"), device=device)
        already = _hits(probs_before.to(device), t, min_confidence)
        used[already] = 0.0
        hi[already] = 0.0
        for i in range(search_steps + 1):
            mid = hi if i == 0 else (lo + hi) / 2  # first probe the top: can it be done at all?
            cand = _fixed_budget(model, x, t, method, norm, mid, steps, generator)
            ok = _hits(_predict(model, cand), t, min_confidence) & ~already
            take = ok & (mid <= used)
            x_adv[take] = cand[take]
            used = torch.where(take, mid, used)
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
            if i == 0:
                lo = torch.where(ok | already, lo, hi)  # impossible at the top: stop searching
        used = torch.where(torch.isinf(used), torch.full_like(used, SEARCH_MAX[norm]), used)
    probs_after = _predict(model, x_adv)
    delta = (x_adv - x).cpu()
    return AttackResult(
        x_adv=x_adv.cpu(),
        success=_hits(probs_after, t, min_confidence).cpu(),
        probs_before=probs_before.cpu(),
        probs_after=probs_after.cpu(),
        l2=_flat_norm(delta, "l2"),
        linf=_flat_norm(delta, "linf"),
        target=t.cpu(),
        eps=used.cpu(),
        method=method,
        norm=norm,
    )


# --------------------------------------------------------------------------------------------
# adversarial training


def adversarial_batch(
    model: nn.Module, xb: Tensor, yb: Tensor, tc: Any, generator: torch.Generator, eps: float | None = None
) -> Tensor:
    """Replace a training batch by its adversarial version (called by train.train when
    train.adversarial != "none"); `eps` overrides tc.adv_eps (the trainer's eps warm-up).

    "pgd": Madry et al.'s PGD with a random start, tc.adv_steps steps of tc.adv_alpha
    (None = 2.5·eps/steps). "fgsm-rs": Wong et al. 2020 "Fast is better than free": a uniform random
    start in the eps-box then ONE signed-gradient step of tc.adv_alpha (None = 1.25·eps), projected.
    "n-fgsm": de Jorge et al. 2022 "Make some noise": a wider random start (uniform in
    ±tc.adv_noise·eps) and one step of tc.adv_alpha (None = eps), NOT projected back into the
    eps-box. On MNIST at eps 0.3, fgsm-rs falls into catastrophic overfitting (robust to FGSM,
    not to PGD; measured in docs/attacks.md); the stronger noise without clipping avoids it.
    """
    eps = tc.adv_eps if eps is None else eps
    if eps <= 0:
        return xb
    if tc.adversarial == "pgd":
        return pgd(model, xb, yb, eps, "linf", tc.adv_steps, tc.adv_alpha, True, False, generator)
    if tc.adversarial in ("fgsm-rs", "n-fgsm"):
        noisy = tc.adversarial == "n-fgsm"
        alpha = tc.adv_alpha if tc.adv_alpha is not None else (1.0 if noisy else 1.25) * eps
        e = _as_eps(eps, xb)
        delta = _random_start(xb, e * tc.adv_noise if noisy else e, "linf", generator)
        delta = (xb + delta).clamp(0, 1) - xb
        with _EvalMode(model):
            g = _grad(model, xb + delta, yb, False)
        delta = delta + _step(g, _as_eps(alpha, xb), "linf")
        if not noisy:
            delta = _project(delta, e, "linf")
        return (xb + delta).clamp(0, 1).detach()
    raise ConfigError(f"unknown train.adversarial {tc.adversarial!r}")


# --------------------------------------------------------------------------------------------
# experiments behind `mnistlab attack transfer | robustness`


def transfer_matrix(
    models: list[nn.Module], x: Tensor, y: Tensor, target: int, steps: int = 50, generator: Any = None
) -> dict[str, list[list[float]]]:
    """Craft the smallest targeted L∞ PGD adversarials (label y -> target) on each model; return
    `accuracy[i][j]` = accuracy of model j on model i's adversarials (true label y) and
    `target_rate[i][j]` = the fraction that model j reads as the target. The diagonal is the
    white-box attack; off the diagonal, the transfer."""
    acc, hit = [], []
    for crafter in models:
        res = targeted_attack(crafter, x, target, "pgd", "linf", None, steps, generator)
        row_acc, row_hit = [], []
        for judge in models:
            dev = next(judge.parameters()).device
            pred = _predict(judge, res.x_adv.to(dev)).argmax(1).cpu()
            row_acc.append(float((pred == y.cpu()).float().mean()))
            row_hit.append(float((pred == target).float().mean()))
        acc.append(row_acc)
        hit.append(row_hit)
    return {"accuracy": acc, "target_rate": hit}


def robustness_curve(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps_values: list[float],
    norm: Norm = "linf",
    steps: int = 40,
    restarts: int = 5,
    generator: Any = None,
) -> list[dict[str, float]]:
    """Accuracy under untargeted PGD (`steps` steps, `restarts` starts) for each eps."""
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    rows = []
    for eps in eps_values:
        ok = robust_predictions(model, x, y, eps, norm, steps, restarts, None, generator)
        rows.append({"eps": float(eps), "accuracy": float(ok.float().mean()), "n": len(y)})
    return rows


def most_likely(probs: Tensor, labels: Tensor, digit: int, k: int) -> list[dict[str, Any]]:
    """Seed 0.8: the `k` images that `probs` ((N, 10) softmax) rates most likely to be `digit`,
    most likely first, as {"index", "prob", "label"} (the index into `probs` and `labels`)."""
    p, idx = probs[:, digit].topk(min(k, len(probs)))
    return [
        {"index": int(i), "prob": float(q), "label": int(labels[i])}
        for i, q in zip(idx.tolist(), p.tolist(), strict=True)
    ]
