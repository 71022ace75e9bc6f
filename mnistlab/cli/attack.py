"""`mnistlab attack most-likely | targeted | transfer | robustness`: fool the networks (seed 0.8, 0.9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import typer
from rich.table import Table

from mnistlab import attacks, runs
from mnistlab.cli._common import DataDirOption, out, print_json
from mnistlab.cli.core import load_data
from mnistlab.dataset import Split, prepare_splits
from mnistlab.errors import ConfigError
from mnistlab.train import pick_device


def _load(run: str, data_dir: str | None, device: torch.device) -> tuple[runs.LoadedRun, Split]:
    """A run's model and its own test split (its channels, sub-sampling...), in [0, 1]."""
    loaded = runs.load_run(run, device)
    if not loaded.config.data.scale:
        raise ConfigError(f"{loaded.path}: attacks work in [0, 1] pixel space; this run has data.scale=false")
    splits = prepare_splits(load_data(data_dir), loaded.config.data, loaded.config.seed)
    return loaded, splits.test


def _digit(value: int, what: str) -> int:
    if not 0 <= value <= 9:
        raise ConfigError(f"{what} must be a digit 0-9, got {value}")
    return value


def _pick(split: Split, digit: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n test images of `digit` and their test-set indices."""
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    idx = (split.y == digit).nonzero().flatten()[:n]
    if not len(idx):
        raise ConfigError(f"no test image of digit {digit} in this run's test set")
    return split.x[idx], idx


def _image(x: torch.Tensor) -> Any:
    return x.mean(0).numpy()  # (C, H, W) -> (H, W); grey channels repeated for RGB models


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def register(app: typer.Typer) -> None:
    attack_app = typer.Typer(help="Adversarial examples: most-likely digits, targeted attacks, transfer, robustness.")
    app.add_typer(attack_app, name="attack")

    @attack_app.command("most-likely")
    def most_likely_cmd(
        run: str = typer.Argument(..., help="Run folder (or its name under runs/)."),
        digit: int = typer.Option(8, help="The digit."),
        k: int = typer.Option(9, help="How many images."),
        png: Path = typer.Option(Path("most-likely.png"), "--png", help="Grid image to write."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        device: str = typer.Option(None, help="cpu or cuda."),
    ) -> None:
        """The k test images the model rates most likely to be DIGIT (seed 0.8), as a grid."""
        _digit(digit, "--digit")
        if k < 1:
            raise ConfigError(f"--k must be >= 1, got {k}")
        loaded, test = _load(run, data_dir, pick_device(device))
        probs = attacks._predict(loaded.model, test.x.to(pick_device(device))).cpu()
        p, idx = probs[:, digit].topk(min(k, len(probs)))
        rows = [
            {"index": int(i), "prob": float(q), "label": int(test.y[i])}
            for i, q in zip(idx.tolist(), p.tolist(), strict=False)
        ]
        plt = _plt()
        cols = min(len(rows), 5)
        nrows = -(-len(rows) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(2 * cols, 2.3 * nrows + 0.4), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, r in zip(axes.flat, rows, strict=False):
            ax.imshow(_image(test.x[r["index"]]), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"#{r['index']} (label {r['label']})\np({digit})={r['prob']:.6f}", fontsize=8)
        fig.suptitle(f"{loaded.path.name}: test images most likely to be a {digit}")
        fig.tight_layout()
        fig.savefig(png, dpi=80)
        plt.close(fig)
        if json_out:
            print_json({"run": str(loaded.path), "digit": digit, "images": rows, "png": str(png)})
            return
        table = Table("rank", "test index", "label", f"p({digit})")
        for rank, r in enumerate(rows, 1):
            table.add_row(str(rank), str(r["index"]), str(r["label"]), f"{r['prob']:.8f}")
        out.print(table)
        out.print(f"grid written to {png}")

    @attack_app.command("targeted")
    def targeted_cmd(
        run: str = typer.Argument(..., help="Run folder (or its name under runs/)."),
        source: int = typer.Option(8, help="Digit of the real test images to perturb."),
        target: int = typer.Option(9, help="Digit the model should say."),
        method: str = typer.Option("pgd", help="fgsm, bim, pgd or cw (Carlini-Wagner L2)."),
        norm: str = typer.Option(None, help="linf or l2 (default: linf; l2 for cw)."),
        n: int = typer.Option(100, help="Number of source test images."),
        eps: float = typer.Option(None, help="A fixed budget instead of searching the smallest."),
        steps: int = typer.Option(50, help="Gradient steps per attack."),
        confidence: float = typer.Option(0.0, help="Also require p(target) >= this."),
        seed: int = typer.Option(0, help="Seed of the random starts."),
        png: Path = typer.Option(Path("targeted.png"), "--png", help="Figure to write."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        device: str = typer.Option(None, help="cpu or cuda."),
    ) -> None:
        """The smallest perturbation that turns real SOURCE digits into TARGET for the model (seed 0.9)."""
        _digit(source, "--source")
        _digit(target, "--target")
        norm = norm or ("l2" if method == "cw" else "linf")
        dev = pick_device(device)
        loaded, test = _load(run, data_dir, dev)
        x, idx = _pick(test, source, n)
        gen = torch.Generator().manual_seed(seed)
        res = attacks.targeted_attack(loaded.model, x, target, method, norm, eps, steps, gen, min_confidence=confidence)
        summary = res.summary() | {"run": str(loaded.path), "source": source, "target": target, "png": str(png)}
        _targeted_figure(res, x, idx, source, target, loaded.path.name, png)
        if json_out:
            print_json(summary)
            return
        out.print(
            f"{loaded.path.name}: {method} ({norm}) {source} -> {target} on {summary['n']} test images: "
            f"success {summary['success_rate']:.1%}"
        )
        table = Table("size of the perturbation", "median", "mean")
        for key, label in (
            ("l2", "L2 (pixel units)"),
            ("linf", "L∞ (0..1)"),
            ("target_prob_after", f"p({target}) after"),
        ):
            s = summary[key]
            table.add_row(label, *(f"{s[m]:.4f}" if s[m] is not None else "-" for m in ("median", "mean")))
        out.print(table)
        out.print(f"figure written to {png}")

    @attack_app.command("transfer")
    def transfer_cmd(
        run_refs: list[str] = typer.Argument(..., help="Two or more run folders."),
        source: int = typer.Option(8, help="Digit of the real test images."),
        target: int = typer.Option(9, help="Digit the adversarials aim at."),
        n: int = typer.Option(100, help="Number of source test images."),
        steps: int = typer.Option(50, help="PGD steps."),
        seed: int = typer.Option(0, help="Seed of the random starts."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        device: str = typer.Option(None, help="cpu or cuda."),
    ) -> None:
        """Adversarials crafted on each model (smallest L∞ PGD, SOURCE -> TARGET); accuracy of every model on them."""
        _digit(source, "--source")
        _digit(target, "--target")
        if len(run_refs) < 2:
            raise ConfigError("transfer needs at least two runs")
        dev = pick_device(device)
        loaded = [_load(r, data_dir, dev) for r in run_refs]
        x, _ = _pick(loaded[0][1], source, n)
        for lr, split in loaded[1:]:
            if split.x.shape[1:] != x.shape[1:]:
                raise ConfigError(
                    f"{lr.path}: input shape {tuple(split.x.shape[1:])} differs from {tuple(x.shape[1:])}"
                )
        y = torch.full((len(x),), source)
        gen = torch.Generator().manual_seed(seed)
        m = attacks.transfer_matrix([lr.model for lr, _ in loaded], x, y, target, steps, gen)
        names = [lr.path.name for lr, _ in loaded]
        if json_out:
            print_json({"runs": names, "source": source, "target": target, "n": len(x)} | m)
            return
        table = Table(
            "crafted on \\ judged by", *names,
        )  # fmt: skip
        out.print(
            f"accuracy of each model on {len(x)} adversarial {source}s aimed at {target} \\[fraction it reads as {target}]"
        )
        for name, accs, hits in zip(names, m["accuracy"], m["target_rate"], strict=False):
            table.add_row(name, *(f"{a:.2f} [{h:.2f}]" for a, h in zip(accs, hits, strict=False)))
        out.print(table)

    @attack_app.command("robustness")
    def robustness_cmd(
        run: str = typer.Argument(..., help="Run folder (or its name under runs/)."),
        norm: str = typer.Option("linf", help="linf or l2."),
        eps: str = typer.Option("0,0.05,0.1,0.15,0.2,0.25,0.3", help="Comma-separated budgets."),
        steps: int = typer.Option(40, help="PGD steps."),
        restarts: int = typer.Option(5, help="Starts per image (the first without random start)."),
        n: int = typer.Option(1000, help="First n test images."),
        seed: int = typer.Option(0, help="Seed of the random starts."),
        png: Path = typer.Option(Path("robustness.png"), "--png", help="Curve to write."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
        data_dir: str = typer.Option(None, "--data-dir", **DataDirOption),
        device: str = typer.Option(None, help="cpu or cuda."),
    ) -> None:
        """Accuracy vs eps under PGD with random restarts (a sample counts only if no restart fools it)."""
        try:
            eps_values = [float(e) for e in eps.split(",") if e.strip()]
        except ValueError:
            raise ConfigError(f"bad --eps {eps!r}: expected comma-separated numbers") from None
        if not eps_values or min(eps_values) < 0:
            raise ConfigError(f"bad --eps {eps!r}")
        if norm not in attacks.NORMS or steps < 1 or restarts < 1 or n < 1:
            raise ConfigError(f"bad --norm {norm}, --steps {steps}, --restarts {restarts} or --n {n}")
        dev = pick_device(device)
        loaded, test = _load(run, data_dir, dev)
        gen = torch.Generator().manual_seed(seed)
        rows = attacks.robustness_curve(
            loaded.model,
            test.x[:n],
            test.y[:n],
            eps_values,
            norm,
            steps,
            restarts,
            gen,  # type: ignore[arg-type]
        )
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([r["eps"] for r in rows], [r["accuracy"] for r in rows], "o-")
        ax.set_xlabel(f"ε ({'L∞' if norm == 'linf' else 'L2'})")
        ax.set_ylabel("accuracy under attack")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(f"{loaded.path.name}: PGD-{steps}, {restarts} restarts, {len(test.y[:n])} images", fontsize=9)
        fig.tight_layout()
        fig.savefig(png, dpi=80)
        plt.close(fig)
        if json_out:
            print_json({"run": str(loaded.path), "norm": norm, "steps": steps, "restarts": restarts, "curve": rows})
            return
        out.print(
            f"{loaded.path.name}: accuracy under {norm} PGD-{steps}, {restarts} restarts, first {len(test.y[:n])} test images"
        )
        table = Table("eps", "accuracy")
        for r in rows:
            table.add_row(f"{r['eps']:g}", f"{r['accuracy']:.4f}")
        out.print(table)
        out.print(f"curve written to {png}")


def _targeted_figure(
    res: attacks.AttackResult, x: torch.Tensor, idx: torch.Tensor, source: int, target: int, name: str, png: Path
) -> None:
    """Original, perturbation, adversarial and the probabilities before/after, for up to 3 examples."""
    plt = _plt()
    ok = res.success.nonzero().flatten()
    show = (ok if len(ok) else torch.arange(len(res.success)))[:3]
    fig, axes = plt.subplots(len(show), 4, figsize=(11, 2.6 * len(show)), squeeze=False)
    for row, i in zip(axes, show.tolist(), strict=False):
        adv = _image(res.x_adv[i])
        orig = _image(x[i].cpu())
        delta = adv - orig
        row[0].imshow(orig, cmap="gray_r", vmin=0, vmax=1)
        row[0].set_title(f"test #{int(idx[i])}: p({source})={res.probs_before[i, source]:.3f}", fontsize=8)
        lim = float(abs(delta).max()) or 1.0
        row[1].imshow(delta, cmap="seismic", vmin=-lim, vmax=lim)
        row[1].set_title(f"perturbation (red +, blue -): L2 {res.l2[i]:.2f}, L∞ {res.linf[i]:.3f}", fontsize=8)
        row[2].imshow(adv, cmap="gray_r", vmin=0, vmax=1)
        row[2].set_title(f"adversarial: p({target})={res.probs_after[i, target]:.3f}", fontsize=8)
        for ax in row[:3]:
            ax.set_xticks([])
            ax.set_yticks([])
        digits = torch.arange(10)
        row[3].bar(digits - 0.2, res.probs_before[i], 0.4, label="before")
        row[3].bar(digits + 0.2, res.probs_after[i], 0.4, label="after")
        row[3].set_xticks(range(10))
        row[3].set_xlabel("digit")
        row[3].set_ylabel("probability")
        row[3].legend(fontsize=7)
    fig.suptitle(f"{name}: {res.method} ({res.norm}) {source} -> {target}, smallest perturbation found")
    fig.tight_layout()
    fig.savefig(png, dpi=70)
    plt.close(fig)
