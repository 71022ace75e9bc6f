"""A study's results: the table (mean ± std over seeds beside the seed's numbers), figures, and
the Markdown/HTML report. Reads only run records (result.json, metrics.jsonl), so a report can
be made from a partly finished study, and rebuilt at any time without training."""

from __future__ import annotations

import html
import json
import math
import re
import statistics
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistlab import runs
from mnistlab.errors import RunError
from mnistlab.studies import Study, Variant
from mnistlab.studies.runner import run_dir_for
from mnistlab.studies.steps import STEPS


@dataclass
class Row:
    variant: Variant
    results: list[dict[str, Any]]  # one per completed seed
    histories: list[list[dict[str, Any]]]
    run_dirs: list[Path] = field(default_factory=list)
    steps: list[list[dict[str, Any]]] = field(default_factory=list)  # within-epoch points (steps.py)

    @property
    def n(self) -> int:
        return len(self.results)

    def values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.results if r.get(key) is not None]

    def extra_values(self, name: str) -> list[float]:
        return [float(r["extra_tests"][name]["acc"]) for r in self.results if name in (r.get("extra_tests") or {})]

    def metric_values(self) -> list[float]:
        return self.values(self.variant.metric)


def mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def collect(study: Study, root: Path) -> list[Row]:
    """Every variant's completed runs s0, s1, ... under `root` (incomplete ones are left out)."""
    rows = []
    for v in study.variants:
        vdir = root / v.name
        results, histories, dirs = [], [], []
        seeds = sorted((int(p.name[1:]) for p in vdir.glob("s*") if p.name[1:].isdigit()) if vdir.is_dir() else [])
        for s in seeds:
            rd = run_dir_for(root, v.name, s)
            if runs.is_complete(rd):
                results.append(runs.read_json(rd / runs.RESULT))
                histories.append(runs.read_history(rd))
                dirs.append(rd)
        steps = [runs.read_json(rd / STEPS) if (rd / STEPS).is_file() else [] for rd in dirs]
        rows.append(Row(v, results, histories, dirs, steps))
    if not any(r.n for r in rows):
        raise RunError(
            f"no completed runs of study {study.name!r} under {root}: run `mnistlab study run {study.name}` first"
        )
    return rows


def extra_test_names(rows: list[Row]) -> list[str]:
    names: list[str] = []
    for r in rows:
        for res in r.results:
            for k in res.get("extra_tests") or {}:
                if k not in names:
                    names.append(k)
    return names


def _pm(xs: list[float], digits: int = 4) -> str:
    m, s = mean_std(xs)
    if math.isnan(m):
        return "–"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(xs) > 1 else f"{m:.{digits}f}"


def table_rows(rows: list[Row], quick: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the results table (plain strings, for the terminal and Markdown).
    Quick runs (tiny slices, one epoch) get no "ours − seed" column: the difference means nothing."""
    extras = extra_test_names(rows)
    header = ["variant", "runs", "test acc (mean ± std)", *[f"{e} acc" for e in extras], "test loss",
              "final train acc", "wall s/run", "params", "seed reported"]  # fmt: skip
    if not quick:
        header.append("ours − seed")
    cells = []
    for r in rows:
        v = r.variant
        reported = " / ".join(f"{x:.4f}" for x in v.seed_reported) or "–"
        if v.seed_reported and v.metric != "test_acc":
            reported += f" ({v.metric})"
        ours = r.metric_values()
        diff = "–"
        if v.seed_reported and ours:
            diff = f"{statistics.fmean(ours) - statistics.fmean(v.seed_reported):+.4f}"
            if v.metric != "test_acc":
                diff += f" ({v.metric})"
        params = r.values("params")
        cells.append(
            [
                v.name,
                str(r.n),
                _pm(r.values("test_acc")),
                *[_pm(r.extra_values(e)) for e in extras],
                _pm(r.values("test_loss")),
                _pm(r.values("train_acc")),
                _pm(r.values("wall_seconds"), 1),
                f"{int(params[0]):,}" if params else "–",
                reported,
                *([] if quick else [diff]),
            ]
        )
    return header, cells


def results_json(study: Study, rows: list[Row]) -> dict[str, Any]:
    out = {"study": study.name, "title": study.title, "seed_doc": study.seed_doc, "variants": []}
    for r in rows:
        acc_m, acc_s = mean_std(r.values("test_acc"))
        out["variants"].append(
            {
                "variant": r.variant.name,
                "runs": r.n,
                "test_acc": r.values("test_acc"),
                "test_acc_mean": acc_m,
                "test_acc_std": acc_s,
                "test_loss_mean": mean_std(r.values("test_loss"))[0],
                "train_acc_mean": mean_std(r.values("train_acc"))[0],
                "wall_seconds_mean": mean_std(r.values("wall_seconds"))[0],
                "params": int(r.values("params")[0]) if r.values("params") else None,
                "extra_tests": {e: r.extra_values(e) for e in extra_test_names([r])},
                "metric": r.variant.metric,
                "seed_reported": list(r.variant.seed_reported),
            }
        )
    return out


def write_results(study: Study, root: Path, quick: bool = False) -> list[Row]:
    """results.json and results.md in the study folder (written after every `study run`)."""
    rows = collect(study, root)
    runs.atomic_write_json(root / "results.json", results_json(study, rows))
    header, cells = table_rows(rows, quick)
    (root / "results.md").write_text(markdown_table(header, cells))
    return rows


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Figures (matplotlib, Agg)

FIG_DPI = 120  # as `mnistlab show` (viz._plot.DPI): panel text stays legible


def _title(width: float, text: str, size: float = 12.0) -> str:
    """`text` broken into lines that fit `width` inches at font `size` (a long study title is never cut)."""
    chars = max(30, int(width * 72 / (0.6 * size)))  # ~0.6 em per character
    return textwrap.fill(text, chars)


def _legend_below(fig, ax, n: int) -> None:  # noqa: ANN001 - matplotlib objects
    """The variants' legend under the axes, outside the data (it never covers a curve)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ncol = min(n, 6)
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
        rows = -(-n // ncol)
        fig.subplots_adjust(bottom=0.14 + 0.045 * rows)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve_metric(rows: list[Row]) -> tuple[str, str]:
    has_val = any("val_acc" in h[0] for r in rows for h in r.histories if h)
    return ("val_acc", "validation accuracy") if has_val else ("acc", "training accuracy (running mean)")


def plot_step_curves(study: Study, rows: list[Row], path: Path) -> str:
    """One-epoch studies: running training accuracy and loss against images seen (seed 0's run)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 4.2 + 0.25 * (len(rows) // 6 + 1)))
    cmap = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    for ax, k, title in ((axes[0], "acc", "training accuracy"), (axes[1], "loss", "training loss")):
        for j, r in enumerate(rows):
            pts = next((s for s in r.steps if s), None)
            if pts:
                ax.plot([p["images"] for p in pts], [p[k] for p in pts], color=cmap(j % cmap.N), label=r.variant.name)
        ax.set_xlabel("training images seen")
        ax.set_ylabel(f"{title} (running mean over the epoch)")
        ax.set_title(f"{title} during the epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(_title(fig.get_figwidth(), f"{study.title}: learning curves within the single epoch (seed 0)"))
    fig.tight_layout()
    _legend_below(fig, axes[0], len(rows))
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)
    return (
        "Learning curves of every variant within its one training epoch: running accuracy and loss against images seen."
    )


def plot_curves(study: Study, rows: list[Row], path: Path) -> str:
    """Accuracy per epoch of every variant (mean over seeds); one panel per metric."""
    if max(len(h) for r in rows for h in r.histories) <= 1 and any(s for r in rows for s in r.steps):
        return plot_step_curves(study, rows, path)
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    key, label = _curve_metric(rows)
    panels = [("acc", "training accuracy (running mean)")] + ([(key, label)] if key != "acc" else [])
    panels.append(("loss", "training loss"))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 4.2 + 0.25 * (len(rows) // 6 + 1)), squeeze=False
    )
    cmap = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    for ax, (k, title) in zip(axes[0], panels, strict=True):
        for j, r in enumerate(rows):
            curves = [[m[k] for m in h if k in m] for h in r.histories if h]
            curves = [c for c in curves if c]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            mean = [statistics.fmean(c[e] for c in curves) for e in range(length)]
            epochs = list(range(1, length + 1))
            ax.plot(
                epochs, mean, marker="o" if length < 15 else None, ms=3, color=cmap(j % cmap.N), label=r.variant.name
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if k == "loss":
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        longest = max(len(h) for r in rows for h in r.histories)
        if longest > 20:  # e.g. small-data's 1 / 10 / 100 epochs: a log axis shows all three
            ax.set_xscale("log")
        else:
            ax.set_xlim(0.5, longest + 0.5)
    n_seeds = max(r.n for r in rows)
    fig.suptitle(_title(fig.get_figwidth(), f"{study.title}: learning curves (mean over {n_seeds} seed(s))"))
    fig.tight_layout()
    _legend_below(fig, axes[0][0], sum(1 for r in rows if r.n))
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)
    return f"Learning curves of every variant: {label if key != 'acc' else 'training accuracy'} and loss per epoch."


def plot_accuracy(study: Study, rows: list[Row], path: Path) -> str:
    """Our test accuracy (mean ± std, every seed as a dot) beside the seed's reported numbers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.5, 0.75 * len(rows) + 2) + 1.6, 4.4))
    xs = range(len(rows))
    labelled = False  # legend entries once, on the first variant that has runs
    for x, r in zip(xs, rows, strict=True):
        vals = r.metric_values()
        if vals:
            m, s = mean_std(vals)
            ax.bar(x, m, yerr=s, color="#4C72B0", alpha=0.8, capsize=3, label=None if labelled else "ours (mean ± std)")
            ax.scatter(
                [x] * len(vals), vals, color="black", s=8, zorder=3, label=None if labelled else "ours, each seed"
            )
            labelled = True
        for y in r.variant.seed_reported:
            ax.scatter([x + 0.25], [y], marker="D", color="#DD8452", s=25, zorder=3)
    ax.scatter([], [], marker="D", color="#DD8452", label="seed document")
    lows = [
        min(r.metric_values() + list(r.variant.seed_reported))
        for r in rows
        if r.metric_values() or r.variant.seed_reported
    ]
    lo = max(0.0, min(lows) - 0.05) if lows else 0.0
    ax.set_ylim(lo, 1.0)
    ax.set_xticks(list(xs), [r.variant.name for r in rows], rotation=35, ha="right", fontsize=8)
    metric = {r.variant.metric for r in rows}
    ax.set_ylabel("accuracy (" + ", ".join(sorted(metric)) + ")")
    ax.set_title(
        _title(fig.get_figwidth() - 2.8, f"{study.title}: ours vs the seed ({study.seed_doc})", 11), fontsize=11
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)
    return "Accuracy per variant: bars are our mean ± std over seeds (dots: each seed); diamonds are the seed document's numbers."


EXTRA_TEST_LABELS = {
    "test_inverted": "the colour-inverted test set",
    "uci": "real handwriting (UCI digits, single-digit reader)",
}


def plot_extra_tests(study: Study, rows: list[Row], path: Path) -> str:
    """Grouped bars: accuracy on the normal test set and on each extra test set (seed 4)."""
    plt = _plt()
    extras = extra_test_names(rows)
    groups = ["test", *extras]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.4 * len(rows) + 2) + 2.0, 4.2))
    width = 0.8 / len(groups)
    for g, name in enumerate(groups):
        means, stds = [], []
        for r in rows:
            vals = r.values("test_acc") if name == "test" else r.extra_values(name)
            m, s = mean_std(vals)
            means.append(m)
            stds.append(0 if math.isnan(s) else s)
        xs = [i + (g - (len(groups) - 1) / 2) * width for i in range(len(rows))]
        label = "normal test set" if name == "test" else EXTRA_TEST_LABELS.get(name, name)
        shown = [j for j, m in enumerate(means) if not math.isnan(m)]  # a run without this test: no bar, not 0
        bars = ax.bar([xs[j] for j in shown], [means[j] for j in shown], width,
                      yerr=[stds[j] for j in shown], capsize=3, label=label)  # fmt: skip
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(rows)), [r.variant.name for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.08)
    names = " vs ".join(EXTRA_TEST_LABELS.get(e, e) for e in extras)
    ax.set_title(f"study {study.name}: normal test digits vs {names}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)
    return f"Each model on the normal MNIST test set and on {', '.join(EXTRA_TEST_LABELS.get(e, e) for e in extras)}."


def plot_activations(study: Study, rows: list[Row], path: Path) -> str | None:
    """Seed 3.2's grid (rows = epochs, columns = the input and the first hidden layers), drawn as
    `mnistlab show activations` draws it, from the same recorder's file."""
    from mnistlab.viz import save_figure
    from mnistlab.viz.activations import ACTIVATIONS_FILE, activation_grid_figure, read_activations

    name = study.activations.get("variant")
    row = next((r for r in rows if r.variant.name == name), None)
    if row is None or not row.run_dirs or not (row.run_dirs[0] / ACTIVATIONS_FILE).is_file():
        return None
    record = read_activations(row.run_dirs[0])
    layers = record["layers"]
    epochs = [(f"epoch {e['epoch']}", e["histograms"]) for e in record["epochs"]]
    seed = row.results[0]["seed"]
    probe = record["probe"]
    images = f"{probe['n']} {probe['split']} images" if probe.get("n") else f"{probe['split']} images"
    title = f"{study.title}: outputs of {name} (seed {seed}) after each epoch, {images}"
    save_figure(activation_grid_figure(epochs, layers, title), path)
    estimated = " (μ, σ estimated from the bins: a file of the former recorder)" if record.get("converted_from") else ""
    return (
        f"Seed 3.2's figure for variant `{name}`: histograms of the input and of the outputs of the first "
        f"hidden layers after every epoch (rows: epochs; columns: layers; y: share of values per bin; "
        f"each panel's title: mean μ, std σ and share of exact zeros of the values){estimated}."
    )


def plot_grid(study: Study, rows: list[Row], path: Path) -> str | None:
    """A heatmap of test accuracy over two config keys (e.g. conv1 vs conv2 kernel size)."""
    xk, yk = study.grid.get("x"), study.grid.get("y")
    if not xk or not yk:
        return None
    cells: dict[tuple[Any, Any], float] = {}
    for r in rows:
        ov = r.variant.overrides
        if xk in ov and yk in ov and r.values("test_acc"):
            cells[(ov[xk], ov[yk])] = mean_std(r.values("test_acc"))[0]
    if not cells:
        return None
    xs = sorted({k[0] for k in cells})
    ys = sorted({k[1] for k in cells})
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.4 * len(xs) + 3.0, 1.0 * len(ys) + 2.0))
    grid = [[cells.get((x, y), math.nan) for x in xs] for y in ys]
    im = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    lo, hi = min(cells.values()), max(cells.values())
    for yi, y in enumerate(ys):
        for xi, x in enumerate(xs):
            v = cells.get((x, y))
            if v is None:
                ax.text(xi, yi, "not run", ha="center", va="center", color="0.4", fontsize=9)
                continue
            bright = hi > lo and (v - lo) / (hi - lo) > 0.6  # viridis' top is yellow: dark text there
            ax.text(xi, yi, f"{v:.4f}", ha="center", va="center", color="black" if bright else "white", fontsize=11)
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(xk)
    ax.set_ylabel(yk)
    ax.set_title(_title(fig.get_figwidth() - 2.0, f"{study.title}: test accuracy", 11), fontsize=11)
    fig.colorbar(im, ax=ax, label="test accuracy (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)
    return f"Test accuracy over the grid {xk} × {yk}."


PLOTS = {
    "curves": plot_curves,
    "accuracy": plot_accuracy,
    "extra_tests": plot_extra_tests,
    "activations": plot_activations,
    "grid": plot_grid,
}


# ---------------------------------------------------------------------------------------------
# The report


def _variant_table(study: Study, quick: bool) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "recipe", "overrides", "note"]
    cells = []
    for v in study.variants:
        ov = study.overrides_for(v, quick)
        text = ", ".join(f"`{k}={json.dumps(val)}`" for k, val in ov.items()) or "(recipe as is)"
        cells.append([v.name, f"`{v.recipe}`", text, v.note or v.label])
    return header, cells


def _environment(rows: list[Row]) -> str:
    """The machine of the runs, and how busy it was when each started (wall times depend on it)."""
    envs = []
    for r in rows:
        for rd in r.run_dirs:
            try:
                envs.append((runs.read_json(rd / runs.CONFIG).get("environment") or {}, r.results[0].get("device")))
            except RunError:
                continue
    if not envs:
        return "unknown"
    env, device = envs[0]
    cpus = sorted({e.get("cpu") for e, _ in envs if e.get("cpu")})
    loads = [e["load_avg_1min"] for e, _ in envs if e.get("load_avg_1min") is not None]
    line = (
        f"torch {env.get('torch')}, Python {env.get('python')}, {env.get('platform')}, "
        f"{env.get('cpu_count')} CPU(s), {env.get('torch_threads')} torch thread(s), device {device}"
    )
    if cpus:
        line += f"; CPU {' / '.join(cpus)}"
    recorded = [e["cpu_kernels"] for e, _ in envs if e.get("cpu_kernels")]
    if recorded:  # the runs of a kernel set are bit-reproducible there, not across sets
        line += (
            f"; torch CPU kernels {' / '.join(sorted(set(recorded)))} ({len(recorded)} of {len(envs)} runs recorded it)"
        )
    if loads:
        line += (
            f"; load average (1 min) when the runs started: {min(loads):.1f}–{max(loads):.1f} "
            f"({len(loads)} of {len(envs)} runs recorded it)"
        )
    else:
        line += "; load average not recorded (runs from before it was)"
    return line + "."


def seed_line(study: Study, dest: Path) -> str:
    """The report's line naming its seed experiments, linked to docs/seeds.md."""
    from mnistlab.seeds import link_from

    first = study.seed_doc.replace("-", ",").split(",")[0].strip()
    return f"Seed experiment(s): **{study.seed_doc}** (what they asked and reported: {link_from(dest, first)})."


def write_report(study: Study, root: Path, dest: Path, quick: bool = False, html_too: bool = True) -> Path:
    """<dest>/<study>.md (+ .html) and its PNG figures; returns the Markdown file."""
    rows = collect(study, root)
    dest.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str]] = []  # (file name, caption)
    for fig in study.figures:
        name = f"{study.name}-{fig}.png"
        caption = PLOTS[fig](study, rows, dest / name)
        if caption:
            figures.append((name, caption))
    header, cells = table_rows(rows, quick)
    seeds = sorted({r.n for r in rows if r.n})
    cmd = f"mnistlab study run {study.name} --seeds {max(seeds)}" + (" --quick" if quick else "")
    md = [f"# Study `{study.name}`: {study.title}", ""]
    if study.seed_doc:
        md.append(seed_line(study, dest))
        md.append("")
    if study.about:
        md += [study.about, ""]
    md += [
        "## Results",
        "",
        f"Produced by `{cmd}` then `mnistlab study report {study.name}`. The `runs` column counts the seeds "
        "completed per variant (seeds 0, 1, ...)"
        + ("; variants with fewer runs were given fewer seeds for lack of time" if len(seeds) > 1 else "")
        + "; mean ± sample std over seeds. "
        "`final train acc` is the running mean over the last epoch (as Keras prints it); `wall s/run` is the whole run "
        "(training, validation, callbacks) on the machine and under the load that `Environment` names: other jobs "
        "on a 2-core machine slow a run down several times, so compare times within one study only.",
        "",
        markdown_table(header, cells),
    ]
    missing = [r.variant.name for r in rows if not r.n]
    if missing:
        md += [f"Not run yet (no completed run under the study folder): {', '.join(missing)}.", ""]
    if quick:
        md += ["**Quick mode**: tiny slices and one epoch; these numbers are NOT comparable with the seed's.", ""]
    vh, vc = _variant_table(study, quick)
    md += ["## Variants", "", markdown_table(vh, vc)]
    if figures:
        md += ["## Figures", ""]
        for name, caption in figures:
            md += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    md += ["## Environment", "", _environment(rows), ""]
    text = "\n".join(md)
    out = dest / f"{study.name}.md"
    out.write_text(text)
    if html_too:
        (dest / f"{study.name}.html").write_text(_html(study, header, cells, vh, vc, figures, text))
    return out


def _html_table(header: list[str], cells: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c.replace('`', ''))}</td>" for c in row) + "</tr>" for row in cells
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def inline_html(text: str) -> str:
    """One Markdown paragraph of the report as HTML: code and bold marks dropped, links kept."""
    escaped = html.escape(text.replace("`", "").replace("**", ""))
    return _MD_LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', escaped)


def _html(study: Study, header, cells, vh, vc, figures, md_text: str) -> str:
    paras = [p for p in md_text.split("\n## ")[0].split("\n\n")[1:] if p.strip()]
    intro = "".join(f"<p>{inline_html(p)}</p>" for p in paras)
    figs = "".join(
        f'<figure><img src="{html.escape(n)}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for n, c in figures
    )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
        "th{background:#eee}img{max-width:100%}figcaption{font-style:italic;font-size:13px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(study.title)}</title>"
        f"<style>{style}</style></head><body><h1>Study {html.escape(study.name)}: {html.escape(study.title)}</h1>"
        f"{intro}<h2>Results</h2>{_html_table(header, cells)}<h2>Variants</h2>{_html_table(vh, vc)}"
        f"<h2>Figures</h2>{figs}</body></html>\n"
    )
