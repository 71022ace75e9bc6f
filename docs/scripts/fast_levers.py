"""Lever trials for the `fast` recipe (issue 25): one interleaved `mnistlab bench` over variants of
a recipe, each a set of config overrides, written as a bench report (docs/benchmarks-levers.md
says what each one gave).

    python docs/scripts/fast_levers.py --group schedule --seeds 3 --out docs/benchmarks-levers-schedule.md

Every variant runs seed 0, then every variant seed 1, ... (the bench's interleaving), so a change
of the machine's load falls on all of them; compare CPU seconds and images to target, which hold
up on a shared machine, more than wall seconds.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mnistlab import bench, threads
from mnistlab.data import load_mnist

HALF = {"train.schedule_epochs": 0.5}
C20 = {"data.crop": 20}
MUON = {"train.optimizer": "muon", "train.muon_lr": 0.3, "train.muon_momentum": 0.8}
GROUPS: dict[str, dict[str, tuple[str, dict]]] = {
    # the schedule as long as the target, its learning rate, Adam's betas, EMA of the weights
    "schedule": {
        "fast": ("fast", {}),
        "half": ("fast", HALF),
        "half-lr0.02": ("fast", {**HALF, "train.lr": 0.02}),
        "half-betas0.7,0.9": ("fast", {**HALF, "train.betas": "0.7,0.9"}),
        "half-ema0.99": ("fast", {**HALF, "train.ema": 0.99}),
    },
    # fewer FLOPs per image: a stride-2 second convolution, a centre crop of the input
    "flops": {
        "fast": ("fast", {}),
        "strided2": ("fast", {"model.strided": "2"}),
        "crop24": ("fast", {"data.crop": 24}),
        "crop20": ("fast", {"data.crop": 20}),
        "crop20-strided2": ("fast", {"data.crop": 20, "model.strided": "2"}),
    },
    # the crop (the flops group's winner) with a shorter schedule and Adam's betas
    "crop": {
        "crop20": ("fast", C20),
        "crop20-betas0.7,0.9": ("fast", {**C20, "train.betas": "0.7,0.9"}),
        "crop20-s0.75": ("fast", {**C20, "train.schedule_epochs": 0.75}),
        "crop20-s0.75-betas0.7,0.9": ("fast", {**C20, "train.schedule_epochs": 0.75, "train.betas": "0.7,0.9"}),
        "crop20-s0.75-lr0.015-betas0.7,0.9": (
            "fast",
            {**C20, "train.schedule_epochs": 0.75, "train.lr": 0.015, "train.betas": "0.7,0.9"},
        ),
        "crop20-s0.75-bs128-betas0.7,0.9": (
            "fast",
            {**C20, "train.schedule_epochs": 0.75, "train.batch_size": 128, "train.betas": "0.7,0.9"},
        ),
    },
    # fast-crop at 0.75 epoch passed 99 % but one seed of five ended below it: longer schedules (the
    # recipe is 0.9 epoch since; its report, written before, calls the 0.75-epoch row "fast-crop")
    "crop-length": {
        "fast-crop-s0.75": ("fast-crop", {"train.schedule_epochs": 0.75}),
        "fast-crop-s0.85": ("fast-crop", {"train.schedule_epochs": 0.85}),
        "fast-crop-s0.9": ("fast-crop", {"train.schedule_epochs": 0.9}),
        "fast-crop-s1.0": ("fast-crop", {"train.schedule_epochs": 1.0}),
        "fast-crop-s0.9-lr0.02": ("fast-crop", {"train.schedule_epochs": 0.9, "train.lr": 0.02}),
    },
    # orthogonalised updates (train.optimizer=muon: Muon on the conv kernels and the hidden
    # Linear layer, Adam on the rest) in fast-crop, at its schedule and shorter ones. Naming the
    # optimizer resets the recipe's lr to the optimizer's default (recipes.resolve_run_config):
    # MUON's Adam part runs at 0.001 unless train.lr is named (muon-adam0.015)
    "muon": {
        "fast-crop": ("fast-crop", {}),
        "muon": ("fast-crop", MUON),
        "muon-s0.75": ("fast-crop", {**MUON, "train.schedule_epochs": 0.75}),
        "muon-s0.6": ("fast-crop", {**MUON, "train.schedule_epochs": 0.6}),
        "muon-adam0.015": ("fast-crop", {**MUON, "train.lr": 0.015}),
        "muon-lr0.15": ("fast-crop", {**MUON, "train.muon_lr": 0.15}),
        "muon-m0.9": ("fast-crop", {**MUON, "train.muon_momentum": 0.9}),
    },
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", choices=sorted(GROUPS), required=True)
    ap.add_argument("--only", default="", help="comma-separated variants of the group (default: all)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--checks-per-epoch", type=int, default=20)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    threads.ensure()
    variants = GROUPS[args.group]
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(variants)
    report = bench.run_bench(
        names, load_mnist(), seeds=args.seeds, checks_per_epoch=args.checks_per_epoch, out_path=args.out,
        variants={n: variants[n] for n in names}, inference=False,
        command="python docs/scripts/fast_levers.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        on_seed=lambda n, r: print(n, r.seed, r.test_acc, r.time_to_target_s, r.cpu_to_target_s, r.images_to_target,
                                   flush=True),
    )  # fmt: skip
    for w in report["warnings"]:
        print("warning:", w)


if __name__ == "__main__":
    main()
