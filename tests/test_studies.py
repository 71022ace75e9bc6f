"""Studies: every study file validates and runs in quick mode; resume; errors; Ray = local."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest

from mnistlab import runs
from mnistlab.errors import ConfigError, RunError
from mnistlab.studies import StudyError, list_studies, load_study, parse_study, validate
from mnistlab.studies.report import collect, write_report, write_results
from mnistlab.studies.runner import run_dir_for, run_study

STUDIES = list_studies()


def test_the_seed_studies_are_all_there():
    expected = {
        "baseline", "subsample", "small-data", "dnn-dropout", "kernel-size", "mlp-ablation", "optimizers",
        "augment-schedule", "deep-init", "inverted",
    }  # fmt: skip
    assert expected <= set(STUDIES)


@pytest.mark.parametrize("name", STUDIES)
def test_study_validates(name):
    study = load_study(name)
    plan = validate(study, seeds=3)
    assert len(plan) == 3 * len(study.variants)
    # every variant's overrides really reach its config (nothing silently dropped)
    for v, seed, cfg in plan:
        assert cfg.seed == seed
        flat = {f"{s}.{k}": val for s in ("train", "data", "augment") for k, val in cfg.to_dict()[s].items()}
        flat.update({f"model.{k}": val for k, val in cfg.to_dict()["model_config"].items()})
        for key, value in v.overrides.items():
            got = flat[key]
            assert got == (list(value) if isinstance(value, tuple) else value), (v.name, key)


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDIES)
def test_study_runs_quick_and_reports(name, mnist, tmp_path):
    study = load_study(name)
    root = run_study(study, seeds=1, quick=True, out=tmp_path / name, mnist=mnist, device="cpu")
    rows = write_results(study, root)
    assert [r.variant.name for r in rows] == study.variant_names()
    for r in rows:
        assert r.n == 1
        res = r.results[0]
        cfg = study.config(r.variant, 0, quick=True)
        assert res["epochs"] == cfg.train.epochs == 1  # quick really is one epoch ...
        assert res["test_n"] == cfg.data.test_limit <= 500  # ... on a small test slice
        assert 0.0 <= res["test_acc"] <= 1.0
    report = write_report(study, root, tmp_path / "report", quick=True)
    text = report.read_text()
    for v in study.variants:
        assert f"| {v.name} |" in text
    for fig in study.figures:  # every figure the study names is drawn, deep-init's histograms included
        assert (tmp_path / "report" / f"{name}-{fig}.png").stat().st_size > 1000, fig
    assert (tmp_path / "report" / f"{name}.html").is_file()
    # The report says how busy the machine was, from the runs' own records (wall times depend on it).
    assert "load average (1 min) when the runs started" in text
    if "extra_tests" in study.figures:  # the inverted test set wherever the run asks for it
        for r in rows:
            asked = study.config(r.variant, 0, quick=True).data.eval_inverted
            assert ("test_inverted" in r.results[0]["extra_tests"]) == asked, r.variant.name
    for r in rows:  # and the study's own evaluations (real handwriting) on every run
        assert set(study.evaluate) <= set(r.results[0]["extra_tests"]), r.variant.name


def _one_variant(name, variant):
    study = load_study(name)
    return replace(study, variants=(study.variant(variant),))


def test_resume_skips_completed_runs(mnist, tmp_path):
    study = load_study("dnn-dropout")
    study = replace(study, variants=study.variants[:2])
    events = []
    run_study(study, seeds=2, quick=True, out=tmp_path, mnist=mnist, on_event=events.append)
    assert [e.kind for e in events].count("done") == 4
    # a run cut off before its result.json: only that one is trained again
    victim = run_dir_for(tmp_path, study.variants[1].name, 1)
    (victim / runs.RESULT).unlink()
    before = {rd: (rd / runs.RESULT).stat().st_mtime_ns for rd in tmp_path.glob("*/s*") if rd != victim}
    events.clear()
    run_study(study, seeds=2, quick=True, out=tmp_path, mnist=mnist, on_event=events.append)
    assert sorted(e.kind for e in events) == ["done", "skip", "skip", "skip", "start"]
    assert [(e.variant, e.seed) for e in events if e.kind == "done"] == [(study.variants[1].name, 1)]
    assert {rd: (rd / runs.RESULT).stat().st_mtime_ns for rd in before} == before
    assert collect(study, tmp_path)[1].n == 2


def test_two_commands_share_a_study_through_run_locks(mnist, tmp_path):
    study = _one_variant("dnn-dropout", "p0.25")
    held = run_dir_for(tmp_path, "p0.25", 0)
    held.mkdir(parents=True)
    (held / runs.LOCK).write_text(f"{socket.gethostname()} {os.getpid()}")  # a live process holds s0
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no process any more: a lock left by a crash
    stale = run_dir_for(tmp_path, "p0.25", 1)
    stale.mkdir(parents=True)
    (stale / runs.LOCK).write_text(f"{socket.gethostname()} {dead.pid}")
    events = []
    run_study(study, seeds=2, quick=True, out=tmp_path, mnist=mnist, on_event=events.append)
    assert [(e.kind, e.seed) for e in events] == [("busy", 0), ("start", 1), ("done", 1)]
    assert events[0].holder == f"{socket.gethostname()} {os.getpid()}"
    assert not runs.is_complete(held) and runs.is_complete(stale)
    assert not (stale / runs.LOCK).exists()  # released after training
    (held / runs.LOCK).unlink()  # the other command stopped: the next run trains s0
    events.clear()
    run_study(study, seeds=2, quick=True, out=tmp_path, mnist=mnist, on_event=events.append)
    assert [(e.kind, e.seed) for e in events] == [("skip", 1), ("start", 0), ("done", 0)]
    assert not list(tmp_path.glob("*/s*/" + runs.LOCK))


def test_changed_study_does_not_mix_into_old_runs(mnist, tmp_path):
    study = _one_variant("dnn-dropout", "p0.25")
    run_study(study, seeds=1, quick=True, out=tmp_path, mnist=mnist)
    changed = replace(study, variants=(replace(study.variants[0], overrides={"model.dropout": 0.3}),))
    with pytest.raises(RunError, match="different config"):
        run_study(changed, seeds=1, quick=True, out=tmp_path, mnist=mnist)


def test_unknown_study_lists_the_valid_ones():
    with pytest.raises(StudyError, match="unknown study 'nope'; available: .*dnn-dropout"):
        load_study("nope")


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"train.lrate": 0.1}, r"unknown key 'train.lrate'.*valid keys: .*train\.lr"),
        ({"model.dropout": "lots"}, r"bad value 'lots' for model.dropout: expected a number"),
        ({"data.subsample": "quarter"}, r"bad value 'quarter' for data.subsample: choose one of 'none', 'random'"),
    ],
)
def test_bad_variant_fails_before_training(overrides, match, tmp_path):
    doc = {
        "recipe": "dnn",
        "variant": [{"name": "good", "overrides": {"model.dropout": 0.5}}, {"name": "bad", "overrides": overrides}],
    }
    study = parse_study("broken", doc)
    with pytest.raises(ConfigError, match=match):
        run_study(study, seeds=1, quick=True, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # the good variant did not train first


def test_bad_study_entries_are_named():
    with pytest.raises(StudyError, match="unknown entry 'varaint'"):
        parse_study("x", {"recipe": "dnn", "varaint": []})
    with pytest.raises(StudyError, match="used twice"):
        parse_study("x", {"recipe": "dnn", "variant": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(StudyError, match="unknown model or recipe 'dnnn'"):
        validate(parse_study("x", {"recipe": "dnnn", "variant": [{"name": "a"}]}))


def _cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "mnistlab", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_cli_errors_are_one_line(tmp_path):
    proc = _cli("study", "run", "nope")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "available: " in proc.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('recipe = "dnn"\n[[variant]]\nname = "a"\noverrides = { "hiden" = 3 }\n')
    proc = _cli("study", "run", str(bad), "--quick", "--seeds", "1")
    assert proc.returncode == 1 and "unknown key 'hiden'" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_run_then_report(tmp_path, mnist):
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(
        'title = "tiny"\nrecipe = "dnn"\n[quick]\n"data.train_limit" = 500\n"data.test_limit" = 200\n'
        '[[variant]]\nname = "a"\nseed_reported = [0.9]\n[[variant]]\nname = "b"\noverrides = { "hidden" = 8 }\n'
    )
    proc = _cli("study", "run", str(study_file), "--quick", "--seeds", "2", "--json", "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    a, b = res["variants"]
    assert a["runs"] == 2 and len(set(a["test_acc"])) == 2  # two seeds, two different runs
    assert b["params"] == 784 * 8 + 8 + 8 * 10 + 10
    proc = _cli("study", "report", str(study_file), "--out", str(tmp_path / "o"), "--dest", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "| a | 2 |" in (tmp_path / "r" / "tiny.md").read_text()


def test_local_executor_imports_no_ray(tmp_path):
    code = (
        "import sys; from mnistlab.cli import main\n"
        "from mnistlab.studies import load_study\n"
        "from mnistlab.studies.runner import run_study\n"
        "from dataclasses import replace\n"
        "s = load_study('dnn-dropout'); s = replace(s, variants=s.variants[:1])\n"
        f"run_study(s, seeds=1, quick=True, out={str(tmp_path)!r})\n"
        "print('ray' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.slow
def test_ray_gives_the_same_results_as_local(mnist, tmp_path):
    pytest.importorskip("ray")
    study = _one_variant("baseline", "dnn")
    run_study(study, seeds=1, quick=True, out=tmp_path / "local", mnist=mnist, device="cpu")
    run_study(study, seeds=1, quick=True, out=tmp_path / "ray", executor="ray", device="cpu")
    local = runs.read_json(run_dir_for(tmp_path / "local", "dnn", 0) / runs.RESULT)
    remote = runs.read_json(run_dir_for(tmp_path / "ray", "dnn", 0) / runs.RESULT)
    assert remote["test_acc"] == local["test_acc"]
    assert remote["test_loss"] == local["test_loss"]
    assert remote["confusion"] == local["confusion"]
    assert (run_dir_for(tmp_path / "ray", "dnn", 0) / runs.WEIGHTS).is_file()  # written by the worker
