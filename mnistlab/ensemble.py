"""Ensembles: average the softmax outputs of several trained runs on the test set."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mnistlab.data import MNIST
from mnistlab.dataset import canonical_test
from mnistlab.errors import RunError
from mnistlab.predictor import Predictor


@dataclass
class EnsembleResult:
    runs: list[Path]
    member_acc: list[float]
    acc: float  # of the averaged softmax
    n: int
    members: list[dict[str, Any]] = field(default_factory=list)  # what each member is and cost
    # curve[k-1]: accuracy of the mean softmax of the first k members, in the order given (curve[-1] = acc)
    curve: list[float] = field(default_factory=list)
    # leave_one_out[i]: accuracy of the mean softmax of every member but member i
    leave_one_out: list[float] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        return sum(m["train_seconds"] or 0.0 for m in self.members)

    @property
    def train_cpu_seconds(self) -> float | None:
        """None when a member's record predates CPU-time recording."""
        cpu = [m["train_cpu_seconds"] for m in self.members]
        return None if any(c is None for c in cpu) else sum(cpu)


def describe_member(p: Predictor) -> dict[str, Any]:
    """What makes a member different from the others (recipe, model, input crop, augmentation)
    and what it cost to train (from its result.json)."""
    cfg, result = p.config, p.result or {}
    aug = {k: v for k, v in dataclasses.asdict(cfg.augment).items() if v}
    return {
        "run": str(p.path),
        "recipe": cfg.recipe or cfg.model,
        "model": cfg.model,
        "seed": cfg.seed,
        "crop": cfg.data.crop,
        "augment": aug,
        "train_seconds": result.get("train_seconds"),
        "train_cpu_seconds": result.get("train_cpu_seconds"),
    }


def evaluate_ensemble(refs: Sequence[str | Path], mnist: MNIST, device: torch.device | str = "cpu") -> EnsembleResult:
    """Each run reads its own test digits (its test_limit) through its Predictor, which builds the
    input the run was trained on (a run trained on inverted digits sees inverted test digits);
    the runs must be tested on the same labels in the same order."""
    if len(refs) < 2:
        raise RunError("an ensemble needs at least two runs")
    probs_sum: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    paths, member_acc, members, curve, all_probs = [], [], [], [], []
    for ref in refs:
        p = Predictor.load(ref, device)
        test = canonical_test(mnist, p.config.data)
        if labels is not None and not torch.equal(labels, test.y):
            raise RunError(
                f"{p.path} is tested on different images than {paths[0]} "
                "(data.test_limit differs); ensemble runs of the same test set"
            )
        labels = test.y
        probs = p.probs(test.x, batch_size=1000)
        member_acc.append(float((probs.argmax(1) == labels).float().mean()))
        members.append(describe_member(p) | {"test_acc": member_acc[-1]})
        probs_sum = probs if probs_sum is None else probs_sum + probs
        curve.append(_acc(probs_sum, labels))
        all_probs.append(probs)
        paths.append(p.path)
    assert probs_sum is not None and labels is not None
    loo = [_acc(probs_sum - q, labels) for q in all_probs]
    return EnsembleResult(paths, member_acc, curve[-1], len(labels), members, curve, loo)


def _acc(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probs.argmax(1) == labels).float().mean())


def markdown_report(res: EnsembleResult, command: str, machine: str, date: str) -> str:
    """The ensemble's members (what each is, its accuracy and training cost), the ensemble's
    accuracy, the curve as members are added and each member's leave-one-out accuracy."""
    cpu = res.train_cpu_seconds
    lines = [
        "# Ensemble",
        "",
        "Written by `mnistlab ensemble --out`; do not edit by hand. Re-run the command below to refresh it.",
        "",
        f"- command: `{command}`",
        f"- date: {date}",
        f"- machine (where the ensemble was tested; each member's training machine and load are in its run "
        f"record): {machine}",
        f"- **ensemble of {len(res.runs)} (mean softmax): test accuracy {100 * res.acc:.2f} %** on {res.n:,} "
        f"test images ({round((1 - res.acc) * res.n)} errors); best member {100 * max(res.member_acc):.2f} %",
        f"- members trained {res.train_seconds:.0f} s wall"
        + (f", {cpu:.0f} s CPU ({cpu / 60:.1f} CPU min) in all" if cpu is not None else ""),
        "- each member was trained by `mnistlab train RECIPE --seed SEED --run-dir RUN` with the table's recipe, "
        "seed and run folder; the curve column adds the members in the order the command names them",
        "",
        "| # | run | recipe | model | seed | crop | augmentation | test acc % | train s wall / CPU "
        "| ensemble of members 1..# % | ensemble without this member % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, m in enumerate(res.members):
        aug = ", ".join(f"{k} {v:g}" for k, v in m["augment"].items()) or "none"
        wall = "-" if m["train_seconds"] is None else f"{m['train_seconds']:.0f}"
        mcpu = "-" if m["train_cpu_seconds"] is None else f"{m['train_cpu_seconds']:.0f}"
        crop = "-" if m["crop"] is None else f"{m['crop']}x{m['crop']}"
        lines.append(
            f"| {i + 1} | {Path(m['run']).name} | {m['recipe']} | {m['model']} | {m['seed']} | {crop} | {aug} "
            f"| {100 * m['test_acc']:.2f} | {wall} / {mcpu} | {100 * res.curve[i]:.2f} "
            f"| {100 * res.leave_one_out[i]:.2f} |"
        )
    return "\n".join(lines) + "\n"
