"""`mnistlab attack most-likely | targeted | transfer | robustness`: fool the networks (seed 0.8, 0.9).

Each run is loaded as a Predictor and attacked through its `net`: the attacks perturb the
canonical digit, [0, 1] pixels of the image itself, whatever input the run was trained on. The
figures are drawn by mnistlab.viz.attacks (matplotlib, imported with the first figure)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.table import Table

from mnistlab import attacks
from mnistlab.cli._common import DataDir, Device, JsonObject, figure_path, out, print_json
from mnistlab.cli.core import load_data
from mnistlab.dataset import Split, canonical_test
from mnistlab.errors import ConfigError
from mnistlab.predictor import Predictor
from mnistlab.train import pick_device

RunArg = Annotated[str, typer.Argument(help="Run folder (or its name under runs/).")]
PngHelp = "Figure to write (default: RUN/figures/{}).".format
Seed = Annotated[int, typer.Option(help="Seed of the random starts.")]


def _load(run: str, data_dir: str | None, device: torch.device) -> tuple[Predictor, Split]:
    """A run as a Predictor, and its own test digits (its test_limit) in canonical form."""
    p = Predictor.load(run, device)
    return p, canonical_test(load_data(data_dir), p.config.data)


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


def _save(fig, png: Path | None, name: str, p: Predictor) -> Path:  # noqa: ANN001 - a matplotlib Figure
    """Write the figure to --png, by default RUN/figures/NAME; returns where it went."""
    from mnistlab.viz import save_figure

    return save_figure(fig, figure_path(png, name, p.path))


def most_likely(
    run: RunArg,
    digit: Annotated[int, typer.Option(help="The digit.")] = 8,
    k: Annotated[int, typer.Option(help="How many images.")] = 9,
    png: Annotated[Path | None, typer.Option("--png", help=PngHelp("most-likely.png"))] = None,
    json_out: JsonObject = False,
    data_dir: DataDir = None,
    device: Device = None,
) -> None:
    """The k test images the model rates most likely to be DIGIT (seed 0.8), as a grid."""
    from mnistlab.viz.attacks import most_likely_figure

    _digit(digit, "--digit")
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    p, test = _load(run, data_dir, pick_device(device))
    rows = attacks.most_likely(p.probs(test.x), test.y, digit, k)
    images = test.x[[r["index"] for r in rows]]
    png = _save(
        most_likely_figure(images, rows, digit, f"{p.name}: test images most likely to be a {digit}"),
        png,
        "most-likely.png",
        p,
    )
    if json_out:
        print_json({"run": str(p.path), "digit": digit, "images": rows, "png": str(png)})
        return
    table = Table("rank", "test index", "label", f"p({digit})")
    for rank, r in enumerate(rows, 1):
        table.add_row(str(rank), str(r["index"]), str(r["label"]), f"{r['prob']:.8f}")
    out.print(table)
    out.print(f"grid written to {png}")


def targeted(
    run: RunArg,
    source: Annotated[int, typer.Option(help="Digit of the real test images to perturb.")] = 8,
    target: Annotated[int, typer.Option(help="Digit the model should say.")] = 9,
    method: Annotated[str, typer.Option(help="fgsm, bim, pgd or cw (Carlini-Wagner L2).")] = "pgd",
    norm: Annotated[str | None, typer.Option(help="linf or l2 (default: linf; l2 for cw).")] = None,
    n: Annotated[int, typer.Option(help="Number of source test images.")] = 100,
    eps: Annotated[float | None, typer.Option(help="A fixed budget instead of searching the smallest.")] = None,
    steps: Annotated[int, typer.Option(help="Gradient steps per attack.")] = 50,
    confidence: Annotated[float, typer.Option(help="Also require p(target) >= this.")] = 0.0,
    seed: Seed = 0,
    png: Annotated[Path | None, typer.Option("--png", help=PngHelp("targeted.png"))] = None,
    json_out: JsonObject = False,
    data_dir: DataDir = None,
    device: Device = None,
) -> None:
    """The smallest perturbation that turns real SOURCE digits into TARGET for the model (seed 0.9)."""
    from mnistlab.viz.attacks import targeted_figure

    _digit(source, "--source")
    _digit(target, "--target")
    norm = norm or ("l2" if method == "cw" else "linf")
    p, test = _load(run, data_dir, pick_device(device))
    x, idx = _pick(test, source, n)
    gen = torch.Generator().manual_seed(seed)
    res = attacks.targeted_attack(p.net, x, target, method, norm, eps, steps, gen, min_confidence=confidence)
    title = f"{p.name}: {res.method} ({res.norm}) {source} -> {target}, smallest perturbation found"
    png = _save(targeted_figure(res, x, idx, source, target, title), png, "targeted.png", p)
    summary = res.summary() | {"run": str(p.path), "source": source, "target": target, "png": str(png)}
    if json_out:
        print_json(summary)
        return
    out.print(
        f"{p.name}: {method} ({norm}) {source} -> {target} on {summary['n']} test images: "
        f"success {summary['success_rate']:.1%}"
    )
    table = Table("size of the perturbation", "median", "mean")
    for key, label in (("l2", "L2 (pixel units)"), ("linf", "L∞ (0..1)"), ("target_prob_after", f"p({target}) after")):
        s = summary[key]
        table.add_row(label, *(f"{s[m]:.4f}" if s[m] is not None else "-" for m in ("median", "mean")))
    out.print(table)
    out.print(f"figure written to {png}")


def transfer(
    run_refs: Annotated[list[str], typer.Argument(help="Two or more run folders.")],
    source: Annotated[int, typer.Option(help="Digit of the real test images.")] = 8,
    target: Annotated[int, typer.Option(help="Digit the adversarials aim at.")] = 9,
    n: Annotated[int, typer.Option(help="Number of source test images.")] = 100,
    steps: Annotated[int, typer.Option(help="PGD steps.")] = 50,
    seed: Seed = 0,
    json_out: JsonObject = False,
    data_dir: DataDir = None,
    device: Device = None,
) -> None:
    """Adversarials crafted on each model (smallest L∞ PGD, SOURCE -> TARGET); accuracy of every model on them."""
    _digit(source, "--source")
    _digit(target, "--target")
    if len(run_refs) < 2:
        raise ConfigError("transfer needs at least two runs")
    dev = pick_device(device)
    loaded = [_load(r, data_dir, dev) for r in run_refs]
    x, _ = _pick(loaded[0][1], source, n)  # canonical digits: every run reads them, whatever its input
    y = torch.full((len(x),), source)
    gen = torch.Generator().manual_seed(seed)
    m = attacks.transfer_matrix([p.net for p, _ in loaded], x, y, target, steps, gen)
    names = [p.name for p, _ in loaded]
    if json_out:
        print_json({"runs": names, "source": source, "target": target, "n": len(x)} | m)
        return
    out.print(
        f"accuracy of each model on {len(x)} adversarial {source}s aimed at {target} \\[fraction it reads as {target}]"
    )
    table = Table("crafted on \\ judged by", *names)
    for name, accs, hits in zip(names, m["accuracy"], m["target_rate"], strict=False):
        table.add_row(name, *(f"{a:.2f} [{h:.2f}]" for a, h in zip(accs, hits, strict=False)))
    out.print(table)


def robustness(
    run: RunArg,
    norm: Annotated[str, typer.Option(help="linf or l2.")] = "linf",
    eps: Annotated[str, typer.Option(help="Comma-separated budgets.")] = "0,0.05,0.1,0.15,0.2,0.25,0.3",
    steps: Annotated[int, typer.Option(help="PGD steps.")] = 40,
    restarts: Annotated[int, typer.Option(help="Starts per image (the first without random start).")] = 5,
    n: Annotated[int, typer.Option(help="First n test images.")] = 1000,
    seed: Seed = 0,
    png: Annotated[Path | None, typer.Option("--png", help=PngHelp("robustness.png"))] = None,
    json_out: JsonObject = False,
    data_dir: DataDir = None,
    device: Device = None,
) -> None:
    """Accuracy vs eps under PGD with random restarts (a sample counts only if no restart fools it)."""
    from mnistlab.viz.attacks import robustness_figure

    try:
        eps_values = [float(e) for e in eps.split(",") if e.strip()]
    except ValueError:
        raise ConfigError(f"bad --eps {eps!r}: expected comma-separated numbers") from None
    if not eps_values or min(eps_values) < 0:
        raise ConfigError(f"bad --eps {eps!r}")
    if norm not in attacks.NORMS or steps < 1 or restarts < 1 or n < 1:
        raise ConfigError(f"bad --norm {norm}, --steps {steps}, --restarts {restarts} or --n {n}")
    p, test = _load(run, data_dir, pick_device(device))
    x, y = test.x[:n], test.y[:n]
    gen = torch.Generator().manual_seed(seed)
    rows = attacks.robustness_curve(p.net, x, y, eps_values, norm, steps, restarts, gen)  # type: ignore[arg-type]
    title = f"{p.name}: PGD-{steps}, {restarts} restarts, {len(y)} images"
    png = _save(robustness_figure(rows, norm, title), png, "robustness.png", p)
    if json_out:
        print_json(
            {"run": str(p.path), "norm": norm, "steps": steps, "restarts": restarts, "curve": rows, "png": str(png)}
        )
        return
    out.print(f"{p.name}: accuracy under {norm} PGD-{steps}, {restarts} restarts, first {len(y)} test images")
    table = Table("eps", "accuracy")
    for r in rows:
        table.add_row(f"{r['eps']:g}", f"{r['accuracy']:.4f}")
    out.print(table)
    out.print(f"curve written to {png}")


def register(app: typer.Typer) -> None:
    attack_app = typer.Typer(help="Adversarial examples: most-likely digits, targeted attacks, transfer, robustness.")
    app.add_typer(attack_app, name="attack")
    attack_app.command("most-likely")(most_likely)
    attack_app.command("targeted")(targeted)
    attack_app.command("transfer")(transfer)
    attack_app.command("robustness")(robustness)
