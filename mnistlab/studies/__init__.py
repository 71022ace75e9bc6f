"""Studies: every seed experiment as a declarative TOML file, validated before anything trains.

A study file (`mnistlab/studies/<name>.toml`; adding a study is adding a file) names a base
recipe, overrides shared by all variants, the variants themselves as config overrides (keys as
`config.apply_overrides` takes them: "train.lr", "data.subsample", "model.hidden", or a bare
name when unambiguous), the numbers the seed document reports for each variant, and a `quick`
section (tiny slices, one epoch) for tests and CI:

    title = "DNN + dropout"
    seed_doc = "0.6"                  # the experiment's number in docs/seeds.md (mnistlab/seeds.toml)
    about = "..."                     # one paragraph for the report
    recipe = "dnn"                    # base recipe (a model name or a registered recipe)
    metric = "test_acc"               # what the seed's numbers measure (test_acc or val_acc)
    figures = ["curves", "accuracy"]  # see report.FIGURES
    evaluate = ["uci"]                # optional: tests every run gets once trained (studies/evaluations.py)
    [overrides]                       # applied to every variant
    [quick]                           # applied on top with --quick
    [[variant]]
    name = "p0.55"
    overrides = { "model.dropout" = 0.55 }
    seed_reported = [0.9186]          # one number per run the seed reports
    # optional: recipe, label, note, metric, quick = {...} (this variant's extra quick overrides)
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mnistlab.config import RunConfig
from mnistlab.errors import ConfigError
from mnistlab.recipes import resolve_run_config
from mnistlab.runs import check_name

METRICS = ("test_acc", "val_acc")
FIGURES = ("curves", "accuracy", "extra_tests", "activations", "grid")
_STUDY_KEYS = {
    "title", "seed_doc", "about", "recipe", "metric", "figures", "overrides", "quick", "variant",
    "activations", "grid", "evaluate",
}  # fmt: skip
_VARIANT_KEYS = {"name", "label", "recipe", "overrides", "seed_reported", "note", "metric", "quick"}


class StudyError(ConfigError):
    """A study file that does not parse or validate, or an unknown study name."""


@dataclass(frozen=True)
class Variant:
    name: str
    recipe: str
    overrides: dict[str, Any]
    quick: dict[str, Any]  # this variant's own quick overrides (on top of the study's)
    label: str = ""
    seed_reported: tuple[float, ...] = ()
    note: str = ""
    metric: str = "test_acc"


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    seed_doc: str  # the seed experiment(s) it reruns, e.g. "0.4" (docs/seeds.md)
    about: str
    variants: tuple[Variant, ...]
    quick: dict[str, Any]
    figures: tuple[str, ...] = ("curves", "accuracy")
    activations: dict[str, Any] = field(default_factory=dict)  # {variant, layers, samples}
    grid: dict[str, Any] = field(default_factory=dict)  # {x, y, variants_prefix} for a heatmap
    evaluate: tuple[str, ...] = ()  # evaluations.EVALUATIONS run on every complete run
    path: Path | None = None

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise StudyError(f"study {self.name!r} has no variant {name!r}; variants: {', '.join(self.variant_names())}")

    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    def overrides_for(self, variant: Variant, quick: bool) -> dict[str, Any]:
        """The variant's overrides as the run sees them (quick ones last: they shrink the run)."""
        merged = dict(variant.overrides)
        if quick:
            merged.update(self.quick)
            merged.update(variant.quick)
        return merged

    def config(self, variant: Variant, seed: int, quick: bool = False) -> RunConfig:
        try:
            return resolve_run_config(variant.recipe, self.overrides_for(variant, quick), seed)
        except ConfigError as e:
            raise StudyError(f"study {self.name!r}, variant {variant.name!r}: {e}") from None


def _study_dir() -> Path:
    return Path(str(resources.files("mnistlab.studies")))


def list_studies() -> list[str]:
    return sorted(p.stem for p in _study_dir().glob("*.toml"))


def _table(d: Any, what: str) -> dict[str, Any]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise StudyError(f"{what} must be a table of KEY = VALUE overrides")
    return dict(d)


def parse_study(name: str, doc: Mapping[str, Any], path: Path | None = None) -> Study:
    """Build a Study from a parsed TOML document; StudyError on anything unknown or malformed."""
    where = f"study {name!r}"
    unknown = set(doc) - _STUDY_KEYS
    if unknown:
        raise StudyError(
            f"{where}: unknown entry {sorted(unknown)[0]!r}; valid entries: {', '.join(sorted(_STUDY_KEYS))}"
        )
    base_recipe = doc.get("recipe")
    shared = _table(doc.get("overrides"), f"{where}: [overrides]")
    raw_variants = doc.get("variant") or []
    if not isinstance(raw_variants, list) or not raw_variants:
        raise StudyError(f"{where}: needs at least one [[variant]]")
    study_metric = doc.get("metric", "test_acc")
    if study_metric not in METRICS:
        raise StudyError(f"{where}: bad metric {study_metric!r}; choose one of {', '.join(METRICS)}")
    variants = []
    for i, v in enumerate(raw_variants):
        if not isinstance(v, dict) or "name" not in v:
            raise StudyError(f"{where}: variant #{i + 1} needs a name")
        vname = check_name(str(v["name"]), "variant name")
        bad = set(v) - _VARIANT_KEYS
        if bad:
            raise StudyError(
                f"{where}, variant {vname!r}: unknown entry {sorted(bad)[0]!r}; valid entries: {', '.join(sorted(_VARIANT_KEYS))}"
            )
        recipe = v.get("recipe", base_recipe)
        if not recipe:
            raise StudyError(f"{where}, variant {vname!r}: no recipe (set `recipe` in the study or the variant)")
        reported = v.get("seed_reported", [])
        if isinstance(reported, int | float):
            reported = [reported]
        if not isinstance(reported, list) or not all(isinstance(x, int | float) for x in reported):
            raise StudyError(f"{where}, variant {vname!r}: seed_reported must be a number or a list of numbers")
        metric = v.get("metric", study_metric)
        if metric not in METRICS:
            raise StudyError(f"{where}, variant {vname!r}: bad metric {metric!r}; choose one of {', '.join(METRICS)}")
        overrides = {**shared, **_table(v.get("overrides"), f"{where}, variant {vname!r}: overrides")}
        variants.append(
            Variant(
                name=vname,
                recipe=str(recipe),
                overrides=overrides,
                quick=_table(v.get("quick"), f"{where}, variant {vname!r}: quick"),
                label=str(v.get("label", "")),
                seed_reported=tuple(float(x) for x in reported),
                note=str(v.get("note", "")),
                metric=metric,
            )
        )
    names = [v.name for v in variants]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StudyError(f"{where}: variant name {dupes[0]!r} is used twice")
    figures = tuple(doc.get("figures", ["curves", "accuracy"]))
    for fig in figures:
        if fig not in FIGURES:
            raise StudyError(f"{where}: unknown figure {fig!r}; choose from {', '.join(FIGURES)}")
    from mnistlab.studies.evaluations import EVALUATIONS

    evaluate = doc.get("evaluate", [])
    if not isinstance(evaluate, list) or any(e not in EVALUATIONS for e in evaluate):
        raise StudyError(f"{where}: evaluate must be a list of {', '.join(sorted(EVALUATIONS))}, got {evaluate!r}")
    activations = _table(doc.get("activations"), f"{where}: [activations]")
    if "activations" in figures and activations.get("variant") not in names:
        raise StudyError(f"{where}: [activations] variant must be one of {', '.join(names)}")
    return Study(
        name=name,
        title=str(doc.get("title", name)),
        seed_doc=str(doc.get("seed_doc", "")),
        about=str(doc.get("about", "")).strip(),
        variants=tuple(variants),
        quick=_table(doc.get("quick"), f"{where}: [quick]"),
        figures=figures,
        activations=activations,
        grid=_table(doc.get("grid"), f"{where}: [grid]"),
        evaluate=tuple(evaluate),
        path=path,
    )


def load_study(name_or_path: str) -> Study:
    """A packaged study by name, or a study file given by its path (NAME.toml)."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") and path.is_file():
        name = check_name(path.stem, "study name")
    else:
        path = _study_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            raise StudyError(f"unknown study {name_or_path!r}; available: {', '.join(list_studies())}")
        name = name_or_path
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"{path}: not valid TOML ({e})") from None
    return parse_study(name, doc, path)


def validate(study: Study, seeds: int = 1, quick: bool = False) -> list[tuple[Variant, int, RunConfig]]:
    """Resolve every variant x seed to its RunConfig; the first bad key or value raises, so a
    study with a typo fails before anything trains."""
    if seeds < 1:
        raise StudyError(f"--seeds must be at least 1, got {seeds}")
    plan = []
    for v in study.variants:
        cfg = study.config(v, 0, quick)
        _check_metric(study, v, cfg)
        plan += [(v, s, study.config(v, s, quick)) for s in range(seeds)]
    return plan


def _check_metric(study: Study, v: Variant, cfg: RunConfig) -> None:
    if v.metric == "val_acc" and not cfg.data.val_split:
        raise StudyError(f"study {study.name!r}, variant {v.name!r}: metric val_acc needs data.val_split > 0")
