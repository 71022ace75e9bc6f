"""The seed experiments (mnistlab/seeds.toml) and the page generated from them, docs/seeds.md.

The page puts, for every experiment of the seed documents, what it asked and reported beside the
command that reruns it here and our result, copied from the committed study reports
(docs/studies/NAME.md, written by `mnistlab study report`): nothing on it is typed by hand, so
`mnistlab study seeds --out docs/seeds.md` rebuilds it and a test checks it has not drifted.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mnistlab.errors import ConfigError

SOURCE = "mnistlab/seeds.toml"
_TOP_KEYS = {"about", "keras_notes", "document", "experiment"}
_DOC_KEYS = {"id", "title", "kind", "summary"}
_EXP_KEYS = {"id", "document", "title", "asked", "reported", "studies", "commands", "docs", "note"}


class SeedsError(ConfigError):
    """seeds.toml does not parse, or does not agree with the study files."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    kind: str
    summary: str


@dataclass(frozen=True)
class StudyRef:
    study: str
    variants: tuple[str, ...] = ()  # empty: every variant of the study


@dataclass(frozen=True)
class Experiment:
    id: str
    document: str
    title: str
    asked: str
    reported: str
    studies: tuple[StudyRef, ...] = ()
    commands: tuple[str, ...] = ()
    docs: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Seeds:
    about: str
    keras_notes: str
    documents: tuple[Document, ...]
    experiments: tuple[Experiment, ...]

    def ids(self) -> list[str]:
        return [e.id for e in self.experiments]


def _text(v: Any) -> str:
    return " ".join(str(v).split())  # TOML's multi-line strings, as one paragraph


def _unknown(d: dict, allowed: set[str], where: str) -> None:
    bad = sorted(set(d) - allowed)
    if bad:
        raise SeedsError(f"{SOURCE}, {where}: unknown entry {bad[0]!r}; valid entries: {', '.join(sorted(allowed))}")


def load_seeds(text: str | None = None) -> Seeds:
    """Parse seeds.toml (the packaged one unless `text` is given); SeedsError on anything unknown."""
    if text is None:
        text = resources.files("mnistlab").joinpath("seeds.toml").read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SeedsError(f"{SOURCE}: not valid TOML ({e})") from None
    _unknown(doc, _TOP_KEYS, "top level")
    documents = []
    for d in doc.get("document", []):
        _unknown(d, _DOC_KEYS, f"document {d.get('id')!r}")
        documents.append(Document(str(d["id"]), str(d["title"]), _text(d.get("kind", "")), _text(d["summary"])))
    doc_ids = {d.id for d in documents}
    experiments = []
    for e in doc.get("experiment", []):
        where = f"experiment {e.get('id')!r}"
        _unknown(e, _EXP_KEYS, where)
        if e.get("document") not in doc_ids:
            raise SeedsError(f"{SOURCE}, {where}: unknown document {e.get('document')!r}")
        refs = tuple(StudyRef(str(s["study"]), tuple(s.get("variants", ()))) for s in e.get("studies", []))
        experiments.append(
            Experiment(
                id=str(e["id"]),
                document=str(e["document"]),
                title=str(e["title"]),
                asked=_text(e["asked"]),
                reported=_text(e["reported"]),
                studies=refs,
                commands=tuple(e.get("commands", ())),
                docs=tuple(e.get("docs", ())),
                note=_text(e.get("note", "")),
            )
        )
    ids = [e.id for e in experiments]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SeedsError(f"{SOURCE}: experiment {dupes[0]!r} is listed twice")
    return Seeds(
        _text(doc.get("about", "")), str(doc.get("keras_notes", "")).strip(), tuple(documents), tuple(experiments)
    )


def expand_ref(ref: str, ids: list[str]) -> list[str]:
    """A study's seed reference ("0.6", "0.1, 0.2", "4.1-4.4") as experiment ids, in order."""
    out: list[str] = []
    for part in (p.strip() for p in ref.split(",")):
        if not part:
            continue
        if "-" in part:
            lo, hi = (x.strip() for x in part.split("-", 1))
            if lo not in ids or hi not in ids:
                raise SeedsError(f"seed reference {ref!r}: {lo if lo not in ids else hi!r} is not a seed experiment")
            out += ids[ids.index(lo) : ids.index(hi) + 1]
        elif part in ids:
            out.append(part)
        else:
            raise SeedsError(f"seed reference {ref!r}: {part!r} is not a seed experiment; known: {', '.join(ids)}")
    return out


def anchor(experiment_id: str) -> str:
    return f"seed-{experiment_id}"


def _numbers(text: str) -> set[float]:
    return {float(x) for x in re.findall(r"\d+\.\d+", text)}


def check(seeds: Seeds) -> None:
    """Seeds and studies must agree: every study and variant named exists, every study's seed
    reference names known experiments and some experiment lists the study, and every number a study variant says the seed reported
    is in the `reported` text of an experiment that lists that variant."""
    from mnistlab.studies import list_studies, load_study

    ids = seeds.ids()
    studies = {name: load_study(name) for name in list_studies()}
    listed: dict[tuple[str, str], list[Experiment]] = {}
    for e in seeds.experiments:
        for ref in e.studies:
            if ref.study not in studies:
                raise SeedsError(f"{SOURCE}, experiment {e.id}: unknown study {ref.study!r}")
            names = studies[ref.study].variant_names()
            for v in ref.variants or names:
                if v not in names:
                    raise SeedsError(f"{SOURCE}, experiment {e.id}: study {ref.study!r} has no variant {v!r}")
                listed.setdefault((ref.study, v), []).append(e)
    for name, study in studies.items():
        covered = expand_ref(study.seed_doc, ids) if study.seed_doc else []
        listing = [e.id for e in seeds.experiments if any(r.study == name for r in e.studies)]
        if covered and not listing:
            raise SeedsError(f"study {name!r} reproduces seed {study.seed_doc}, but no experiment in {SOURCE} lists it")
        for v in study.variants:
            if not v.seed_reported:
                continue
            exps = listed.get((name, v.name))
            if not exps:
                raise SeedsError(
                    f"{SOURCE}: no experiment lists study {name!r} variant {v.name!r}, which has seed numbers"
                )
            quoted = set().union(*(_numbers(e.reported) for e in exps))
            for x in v.seed_reported:
                if x not in quoted:
                    raise SeedsError(
                        f"study {name!r} variant {v.name!r}: seed_reported {x} is not in the `reported` text of "
                        f"experiment(s) {', '.join(e.id for e in exps)} in {SOURCE}"
                    )


# ---------------------------------------------------------------------------------------------
# The study reports' results table, read back


def read_report_table(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The results table of a report written by `study report` (the first table under
    '## Results', header starting `| variant | runs |`): its header and {variant: {column: cell}}."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "## Results")
        head = next(i for i in range(start, len(lines)) if lines[i].startswith("| variant | runs |"))
    except StopIteration:
        raise SeedsError("no results table (a '## Results' section with a `| variant | runs |` table)") from None

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    header = cells(lines[head])
    rows: dict[str, dict[str, str]] = {}
    for line in lines[head + 2 :]:
        if not line.startswith("|"):
            break
        c = cells(line)
        if len(c) != len(header):
            raise SeedsError(f"results table row has {len(c)} cells, the header {len(header)}: {line[:80]}")
        rows[c[0]] = dict(zip(header, c, strict=True))
    return header, rows


def reports_dir_default() -> Path:
    """docs/studies of the checkout this package runs from (an installed wheel has none)."""
    return Path(__file__).resolve().parents[1] / "docs" / "studies"


def seeds_page_default() -> Path:
    return reports_dir_default().parent / "seeds.md"


def link_from(dest_dir: Path, experiment_id: str) -> str:
    """How a page written into `dest_dir` links to an experiment on docs/seeds.md."""
    page = seeds_page_default()
    if not page.is_file():
        return f"docs/seeds.md#{anchor(experiment_id)} in the mnistlab repository"
    rel = os.path.relpath(page, Path(dest_dir).resolve())
    return f"[docs/seeds.md]({Path(rel).as_posix()}#{anchor(experiment_id)})"


# ---------------------------------------------------------------------------------------------
# docs/seeds.md


_GROUPS = ("show", "attack", "study")  # command groups: their sub-command is part of the name


def _rerun_commands(e: Experiment) -> list[str]:
    cmds = []
    for ref in e.studies:
        variants = "".join(f" --variant {v}" for v in ref.variants)
        cmds += [f"mnistlab study run {ref.study}{variants}", f"mnistlab study report {ref.study} --dest docs/studies"]
    seen: list[str] = []
    for c in cmds + list(e.commands):
        if c not in seen:
            seen.append(c)
    return seen


def _command_heads(commands: tuple[str, ...]) -> list[str]:
    """`mnistlab show feature-maps` for `mnistlab show feature-maps runs/cnn --layer conv1`; the
    training commands that only make a run for the others are left out."""
    heads = []
    for c in commands:
        words = c.split()
        head = " ".join(words[: 3 if len(words) > 2 and words[1] in _GROUPS else 2])
        if head not in heads:
            heads.append(head)
    return [h for h in heads if h != "mnistlab train"] or heads


def _ours(e: Experiment, reports: Path, out_dir: Path) -> list[str]:
    """Our results for `e`, copied from the committed study reports."""
    from mnistlab.studies import load_study

    md: list[str] = []
    rows: list[tuple[str, str, dict[str, str]]] = []  # (study, variant, cells)
    missing: list[str] = []  # studies without a committed report
    unreported: list[str] = []  # variants the report's table does not have (not run when it was written)
    sources: list[str] = []
    for ref in e.studies:
        study = load_study(ref.study)
        report = reports / f"{ref.study}.md"
        if not report.is_file():
            missing.append(ref.study)
            continue
        try:
            _, table = read_report_table(report.read_text(encoding="utf-8"))
        except SeedsError as err:
            raise SeedsError(f"{report}: {err}") from None
        link = Path(os.path.relpath(report, out_dir)).as_posix()
        if f"[{ref.study}]({link})" not in sources:
            sources.append(f"[{ref.study}]({link})")
        for v in ref.variants or tuple(study.variant_names()):
            if v in table:
                rows.append((ref.study, v, table[v]))
            else:
                unreported.append(f"`{ref.study}` {v}")
    if rows:
        extras = []
        for _, _, c in rows:
            extras += [k for k in c if k.endswith(" acc") and k not in ("test acc (mean ± std)", "final train acc")]
        extras = list(dict.fromkeys(extras))
        header = ["study", "variant", "runs", "test acc (mean ± std)", *extras, "seed reported", "ours − seed"]
        md += [
            f"Ours, from the study report{'s' if len(sources) > 1 else ''} {', '.join(sources)} (mean ± std over the "
            "seeds in `runs`; the report names the machine and its load):",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for study, v, c in rows:
            md.append("| " + " | ".join([f"`{study}`", v, *(c.get(h, "–") for h in header[2:])]) + " |")
        md.append("")
    if unreported:
        md += [f"Not in the committed report (not run when it was written): {', '.join(unreported)}.", ""]
    studies_page = Path(os.path.relpath(reports.parent / "studies.md", out_dir)).as_posix()
    for name in missing:
        md += [
            f"Ours: study `{name}` has no full-size report yet (see [docs/studies.md]({studies_page}#results-at-full-size) "
            "for what it costs); `--quick` runs it in seconds as a smoke check.",
            "",
        ]
    if e.docs:
        links = ", ".join(f"[{d.split('#')[0]}]({d})" for d in e.docs)
        md += [f"{'More' if rows else 'Ours'}: {links}, with every command and its output.", ""]
    return md


def render(seeds: Seeds, reports: Path | None = None, out_path: Path | None = None) -> str:
    """docs/seeds.md as text. `reports`: the folder of study reports (docs/studies);
    `out_path`: where the page will be written (its links are relative to it)."""
    reports = reports or reports_dir_default()
    out_dir = (out_path or seeds_page_default()).resolve().parent
    reports = reports.resolve()
    md = [
        "# What mnistlab reproduces: the seed experiments",
        "",
        f"<!-- Generated by `mnistlab study seeds --out docs/seeds.md` from {SOURCE}, the study files and the "
        "study reports in docs/studies; edit those, not this page. -->",
        "",
        seeds.about,
        "",
        "Below, every experiment with what it asked, the numbers the seed reported (as fractions: 98.02 % is "
        "0.9802), the commands that rerun it here and our result. Our numbers are copied from the study "
        "reports in [docs/studies](studies/) when the page is generated; each report names the command, the "
        "machine and its load.",
        "",
        "How we read Keras, so that the reruns are faithful:",
        "",
        seeds.keras_notes,
        "",
        "## All experiments",
        "",
        "| # | experiment | rerun with | seed reported |",
        "|---|---|---|---|",
    ]
    for e in seeds.experiments:
        how = ", ".join(
            [f"study `{r.study}`" for r in e.studies]
            or [f"`{h.removeprefix('mnistlab ')}`" for h in _command_heads(e.commands)]
        )
        md.append(f"| [{e.id}](#{anchor(e.id)}) | {e.title} | {how} | {e.reported} |")
    md.append("")
    for d in seeds.documents:
        md += [f"## Seed {d.id}: {d.title}", "", f"*{d.kind[0].upper() + d.kind[1:]}.* {d.summary}", ""]
        for e in (x for x in seeds.experiments if x.document == d.id):
            md += [f'<a id="{anchor(e.id)}"></a>', "", f"### {e.id} {e.title}", ""]
            md += [f"**Asked.** {e.asked}", "", f"**Reported.** {e.reported[0].upper() + e.reported[1:]}.", ""]
            if e.note:
                md += [f"**How we read it.** {e.note}", ""]
            md += ["**Rerun.**", "", "```bash", *_rerun_commands(e), "```", ""]
            md += _ours(e, reports, out_dir)
    return "\n".join(md).rstrip() + "\n"


def write(out_path: Path, reports: Path | None = None) -> Path:
    seeds = load_seeds()
    check(seeds)
    text = render(seeds, reports, out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    return out_path
