"""The docs a newcomer reads: generated pages are current, every command shown parses against the
real CLI, and no page points outside the repository."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer

from mnistlab import seeds
from mnistlab.cli import app
from mnistlab.config import parse_assignments
from mnistlab.errors import MnistlabError
from mnistlab.models import create_model
from mnistlab.recipes import resolve_run_config
from mnistlab.studies import Variant, list_studies, load_study
from mnistlab.studies.report import Row, inline_html, markdown_table, seed_line, table_rows

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "docs" / "studies"
SEEDS_PAGE = ROOT / "docs" / "seeds.md"


# ---------------------------------------------------------------------------------------------
# docs/seeds.md


def test_seeds_page_is_generated_from_the_committed_reports():
    s = seeds.load_seeds()
    seeds.check(s)
    expected = seeds.render(s, REPORTS, SEEDS_PAGE)
    assert SEEDS_PAGE.read_text(encoding="utf-8") == expected, (
        "docs/seeds.md is out of date: run `mnistlab study seeds --out docs/seeds.md`"
    )


def test_the_command_prints_the_page_and_writes_it(tmp_path):
    import sys

    run = [sys.executable, "-m", "mnistlab", "study", "seeds"]
    printed = subprocess.run(run, capture_output=True, text=True, check=True, timeout=120).stdout
    assert printed == SEEDS_PAGE.read_text(encoding="utf-8")
    out = tmp_path / "elsewhere" / "seeds.md"
    subprocess.run([*run, "--out", str(out)], capture_output=True, check=True, timeout=120)
    written = out.read_text(encoding="utf-8")
    assert "## Seed 004: Why does the CNN not read my digits?" in written
    link = re.search(r"\[dnn-dropout\]\(([^)]+)\)", written).group(1)  # relative to where it was written
    assert (out.parent / link).resolve() == (REPORTS / "dnn-dropout.md").resolve()


def test_every_seed_experiment_is_on_the_page_in_order():
    s = seeds.load_seeds()
    ids = s.ids()
    assert ids[0] == "0.1" and ids[-1] == "4.4" and len(ids) == 31  # 9 + 9 + 6 + 3 + 4 in the five seeds
    text = SEEDS_PAGE.read_text(encoding="utf-8")
    positions = [text.index(f'<a id="{seeds.anchor(i)}"></a>') for i in ids]
    assert positions == sorted(positions)


def test_page_quotes_the_report_tables():
    """A number on the page is the cell of the study report, for a study reached by name."""
    _, table = seeds.read_report_table((REPORTS / "dnn-dropout.md").read_text(encoding="utf-8"))
    cell = table["p0.99"]["test acc (mean ± std)"]
    assert re.fullmatch(r"0\.\d{4} ± 0\.\d{4}", cell)
    assert f"| `dnn-dropout` | p0.99 | {table['p0.99']['runs']} | {cell} |" in SEEDS_PAGE.read_text(encoding="utf-8")


def test_page_says_what_the_reports_lack(tmp_path):
    reports = tmp_path / "studies"
    reports.mkdir()
    for md in REPORTS.glob("*.md"):
        if md.stem != "dnn-dropout":  # a study without a report
            (reports / md.name).write_text(md.read_text(encoding="utf-8"), encoding="utf-8")
    mlp = (reports / "mlp-ablation.md").read_text(encoding="utf-8")
    (reports / "mlp-ablation.md").write_text(re.sub(r"\n\| batch-32 \|[^\n]*", "", mlp), encoding="utf-8")
    text = seeds.render(seeds.load_seeds(), reports, tmp_path / "seeds.md")
    assert "Not in the committed report (not run when it was written): `mlp-ablation` batch-32." in text
    assert "study `dnn-dropout` has no full-size report yet" in text
    assert "| `mlp-ablation` | batch-512 |" in text and "| `dnn-dropout` |" not in text


def test_check_catches_a_seed_number_the_page_does_not_quote():
    text = (ROOT / "mnistlab" / "seeds.toml").read_text(encoding="utf-8")
    assert "0.9186" in text
    broken = seeds.load_seeds(text.replace("0.9186", "0.9168"))
    with pytest.raises(seeds.SeedsError, match=r"dnn-dropout.*p0\.55.*0\.9186"):
        seeds.check(broken)


def test_check_catches_an_unknown_variant_and_a_bad_key():
    text = (ROOT / "mnistlab" / "seeds.toml").read_text(encoding="utf-8")
    with pytest.raises(seeds.SeedsError, match="no variant 'hidden-4096'"):
        seeds.check(seeds.load_seeds(text.replace('variants = ["hidden-2048"]', 'variants = ["hidden-4096"]')))
    with pytest.raises(seeds.SeedsError, match="unknown entry 'reportd'"):
        seeds.load_seeds(text.replace('reported = "test accuracy 0.9785"', 'reportd = "x"'))


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("0.6", ["0.6"]),
        ("0.1, 0.2", ["0.1", "0.2"]),
        ("1.2-1.9", [f"1.{i}" for i in range(2, 10)]),
        ("2.4, 2.5", ["2.4", "2.5"]),
    ],
)
def test_seed_references_expand(ref, expected):
    assert seeds.expand_ref(ref, seeds.load_seeds().ids()) == expected


def test_seed_reference_to_an_unknown_experiment_fails():
    with pytest.raises(seeds.SeedsError, match="'5.1' is not a seed experiment"):
        seeds.expand_ref("5.1", seeds.load_seeds().ids())


def test_report_table_reads_back_what_the_report_writes():
    variants = [
        Variant("a", "dnn", {}, {}, seed_reported=(0.9395, 0.9399)),
        Variant("b", "cnn", {}, {}, seed_reported=(0.98,), metric="val_acc"),
    ]
    results = [
        {"test_acc": 0.93, "test_loss": 0.2, "train_acc": 0.9, "wall_seconds": 3.0, "params": 25450, "val_acc": 0.95},
        {"test_acc": 0.94, "test_loss": 0.25, "train_acc": 0.91, "wall_seconds": 4.0, "params": 25450, "val_acc": 0.96},
    ]
    extra = {"extra_tests": {"test_inverted": {"acc": 0.5, "loss": 2.0}}}
    rows = [Row(variants[0], results, [[], []]), Row(variants[1], [results[0] | extra], [[]])]
    header, cells = table_rows(rows)
    text = "# Study\n\n## Results\n\nSome words.\n\n" + markdown_table(header, cells) + "\n## Variants\n"
    got_header, table = seeds.read_report_table(text)
    assert got_header == header
    assert [list(table[c[0]].values()) for c in cells] == cells


@pytest.mark.parametrize("name", sorted(p.stem for p in REPORTS.glob("*.md")))
def test_committed_reports_link_their_seed_experiments(name):
    study = load_study(name)
    line = seed_line(study, REPORTS)
    assert line in (REPORTS / f"{name}.md").read_text(encoding="utf-8")
    assert f"<p>{inline_html(line)}</p>" in (REPORTS / f"{name}.html").read_text(encoding="utf-8")
    target = re.search(r"\]\(\.\./seeds\.md#([^)]+)\)", line).group(1)
    assert f'<a id="{target}"></a>' in SEEDS_PAGE.read_text(encoding="utf-8")


def test_every_study_has_a_seed_reference():
    assert all(load_study(n).seed_doc for n in list_studies())


# ---------------------------------------------------------------------------------------------
# Every `mnistlab ...` command shown in the docs parses against the real CLI

_ROOT_COMMAND = typer.main.get_command(app)
# Words that stand for a value in a synopsis (`mnistlab predict PATH...`), not a command to run.
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(\.\.\.|…)?(\.png)?$|[\[\]…|]|\.\.\.")


def parse_command(line: str) -> None:
    """Parse `mnistlab ARGS` as the CLI would, without running it; raises typer's UsageError.
    For `train` and `summary`, the recipe and every `--set KEY=VALUE` are resolved too (and the
    model built), so a misspelt key or a value the model cannot take fails here as well."""
    words = shlex.split(line)
    assert words[0] == "mnistlab", line
    cut = next((i for i, w in enumerate(words) if w in ("|", ">", "&&", ";", "2>&1")), len(words))
    ctx = _ROOT_COMMAND.make_context("mnistlab", words[1:cut])
    cmd = _ROOT_COMMAND
    while hasattr(cmd, "resolve_command"):  # a group: descend into the sub-command
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            ctx.fail(f"{ctx.command_path} needs a sub-command")
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)
    if ctx.command_path in ("mnistlab train", "mnistlab summary") and not ctx.params.get("resume"):
        recipe = ctx.params.get("name") or ctx.params.get("model")
        try:
            cfg = resolve_run_config(recipe, parse_assignments(list(ctx.params.get("set_") or ())))
            create_model(cfg.model, cfg.model_config)
        except MnistlabError as e:
            ctx.fail(str(e))


def commands_in(path: Path) -> list[str]:
    """`mnistlab ...` lines of fenced code blocks (a leading `$ ` dropped, `# comments` cut,
    `\\` continuations joined) and inline `mnistlab ...` spans that are whole commands."""
    text = path.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for raw in joined.splitlines():
            line = " ".join(raw.strip().removeprefix("$ ").split())
            line = re.sub(r"\s+#\s.*$", "", line)
            if line.startswith("mnistlab "):
                found.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`(mnistlab [^`]+)`", prose):
        if not any(_PLACEHOLDER.search(w) for w in span.split()[1:]):
            found.append(span)
    return found


DOC_FILES = ["README.md", "README.zh-CN.md", "docs/seeds.md", "docs/tutorial.md"]


@pytest.mark.parametrize("doc", DOC_FILES)
def test_every_command_in_the_doc_parses(doc):
    commands = commands_in(ROOT / doc)
    assert len(commands) >= 5, f"{doc}: too few commands found ({commands}): is the extractor broken?"
    bad = []
    for c in commands:
        try:
            parse_command(c)
        except (typer.TyperException, ValueError) as e:  # ValueError: shlex on unbalanced quotes
            bad.append(f"{c!r}: {getattr(e, 'format_message', lambda e=e: str(e))()}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "line",
    [
        "mnistlab trian dnn",
        "mnistlab train --epochs x",
        "mnistlab study rn baseline",
        "mnistlab show feature-maps",  # no RUN (--layer is optional: act1 by default)
        "mnistlab show",
        "mnistlab train mlp --set model.hiden=2048",
        "mnistlab train nosuchnet",
    ],
)
def test_the_checker_rejects_what_the_cli_rejects(line):
    with pytest.raises(typer.TyperException):
        parse_command(line)


def test_the_extractor_finds_block_and_inline_commands(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "Run `mnistlab train dnn --epochs 1` or `mnistlab predict PATH...`.\n\n"
        "```console\n$ mnistlab study run baseline \\\n    --seeds 3   # three seeds\nnot a command\n```\n"
    )
    assert commands_in(page) == ["mnistlab study run baseline --seeds 3", "mnistlab train dnn --epochs 1"]


# ---------------------------------------------------------------------------------------------
# Nothing points outside the repository

# Built from parts so that this file does not match itself.
_OUTSIDE = [".." + "/shared", "/t" + "mp/", "/wo" + "rk/", "SEEDS" + ".md", "/ro" + "ot/", "/ho" + "me/"]


def _published_files() -> list[Path]:
    """README*, docs/ and the package: what a user of a clone or a wheel reads."""
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = [ROOT / f for f in listed.splitlines()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        files = [p for p in ROOT.rglob("*") if p.is_file()]
    files += [ROOT / "docs" / "seeds.md", ROOT / "docs" / "tutorial.md", ROOT / "README.zh-CN.md"]
    keep = []
    for p in dict.fromkeys(files):
        rel = p.relative_to(ROOT).as_posix()
        if p.is_file() and (
            rel.startswith(("docs/", "mnistlab/", "README"))
            and p.suffix in (".md", ".html", ".py", ".toml", ".js", ".css", ".txt")
        ):
            keep.append(p)
    return keep


def test_no_published_file_names_a_path_outside_the_repository():
    files = _published_files()
    assert len(files) > 50
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()[:120]}"
        for p in files
        for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
        if any(s in line for s in _OUTSIDE)
    ]
    assert not hits, "\n".join(hits)


def test_every_relative_link_and_image_in_the_docs_exists():
    pages = [ROOT / "README.md", ROOT / "README.zh-CN.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        prose = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for href in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"^[a-z]+:", href) or href.startswith("#"):
                continue
            if not (page.parent / href.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {href}")
    assert not broken, "\n".join(broken)
