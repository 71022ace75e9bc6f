"""The real-handwriting study (issue 19, part 3): a study's `evaluate = ["uci"]` reads every run's
UCI digits through the single-digit reader, as `mnistlab evaluate-uci --run` does, into the run's
result; seed 004's 3-channel models are read like any other run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mnistlab import runs
from mnistlab.handwriting.evaluate import evaluate_uci
from mnistlab.predictor import Predictor
from mnistlab.studies import StudyError, load_study, parse_study
from mnistlab.studies.evaluations import QUICK_LIMIT
from mnistlab.studies.report import table_rows, write_report, write_results
from mnistlab.studies.runner import run_dir_for, run_study


def _variants(*names):
    study = load_study("real-handwriting")
    return replace(study, variants=tuple(study.variant(n) for n in names))


def test_the_study_names_the_seed_models_and_ours():
    study = load_study("real-handwriting")
    assert study.evaluate == ("uci",)
    recipes = {v.name: (v.recipe, v.overrides.get("data.invert")) for v in study.variants}
    assert recipes == {
        "small-both": ("cnn-small", "add"),
        "robust-both": ("cnn-robust", "add"),
        "robust": ("robust", None),
        "small-mnist": ("cnn-small", "none"),
        "robust-mnist": ("cnn-robust", "none"),
    }
    for v in study.variants:  # the seed's own input: 28x28x3 for both of its models
        assert study.config(v, 0).data.channels == (1 if v.recipe == "robust" else 3), v.name


def test_an_unknown_evaluation_fails_before_training():
    doc = {"recipe": "dnn", "evaluate": ["usps"], "variant": [{"name": "a"}]}
    with pytest.raises(StudyError, match=r"evaluate must be a list of uci, got \['usps'\]"):
        parse_study("bad", doc)
    assert parse_study("good", {"recipe": "dnn", "variant": [{"name": "a"}]}).evaluate == ()


def test_quick_study_records_uci_as_evaluate_uci_reads_it(mnist, tmp_path):
    study = _variants("small-both", "robust")
    events = []
    run_study(study, seeds=1, quick=True, out=tmp_path, mnist=mnist, device="cpu", on_event=events.append)
    assert [(e.kind, e.variant) for e in events if e.kind == "evaluated"] == [
        ("evaluated", "small-both"),
        ("evaluated", "robust"),
    ]
    for v in study.variants:
        rd = run_dir_for(tmp_path, v.name, 0)
        uci = runs.read_json(rd / runs.RESULT)["extra_tests"]["uci"]
        assert uci["n"] == QUICK_LIMIT
        # the same number `evaluate-uci --run RD` gives on those digits (3-channel runs too)
        direct, _ = evaluate_uci(Predictor.load(rd), limit=QUICK_LIMIT)
        assert uci["acc"] == direct["acc"] and uci["no_digit"] == direct["no_digit"]
    # evaluated once: a second `study run` trains nothing and leaves the results as they were
    stamps = {rd: (rd / runs.RESULT).stat().st_mtime_ns for rd in tmp_path.glob("*/s0")}
    events.clear()
    run_study(study, seeds=1, quick=True, out=tmp_path, mnist=mnist, device="cpu", on_event=events.append)
    assert sorted(e.kind for e in events) == ["skip", "skip"]
    assert {rd: (rd / runs.RESULT).stat().st_mtime_ns for rd in stamps} == stamps
    # the table has a `uci acc` column, and the report draws it beside the MNIST test set
    header, cells = table_rows(write_results(study, tmp_path))
    col = header.index("uci acc")
    assert [c[col] for c in cells] == [
        f"{runs.read_json(run_dir_for(tmp_path, v.name, 0) / runs.RESULT)['extra_tests']['uci']['acc']:.4f}"
        for v in study.variants
    ]
    report = write_report(study, tmp_path, tmp_path / "report", quick=True, html_too=False)
    assert "uci acc" in report.read_text()
    assert (tmp_path / "report" / "real-handwriting-extra_tests.png").stat().st_size > 1000


def test_runs_trained_before_the_study_asked_are_evaluated_later(mnist, tmp_path):
    study = _variants("small-mnist")
    run_study(replace(study, evaluate=()), seeds=1, quick=True, out=tmp_path, mnist=mnist, device="cpu")
    rd = run_dir_for(tmp_path, "small-mnist", 0)
    assert "uci" not in runs.read_json(rd / runs.RESULT)["extra_tests"]
    events = []
    run_study(study, seeds=1, quick=True, out=tmp_path, mnist=mnist, device="cpu", on_event=events.append)
    assert [e.kind for e in events] == ["skip", "evaluated"]
    result = json.loads((rd / runs.RESULT).read_text())
    assert result["extra_tests"]["uci"]["n"] == QUICK_LIMIT
    assert "test_inverted" in result["extra_tests"]  # what the run recorded itself is kept
