"""Studies: every study file validates and runs in quick mode; resume; errors; Ray = local."""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from mnistlab import runs
from mnistlab.errors import ConfigError, RunError
from mnistlab.studies import StudyError, list_studies, load_study, parse_study, validate
from mnistlab.studies.report import collect, table_rows, write_report, write_results
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
        # the recorded accuracy is the confusion matrix's: its diagonal over the test images
        cm = res["confusion"]
        assert sum(map(sum, cm)) == res["test_n"]
        assert res["test_acc"] == pytest.approx(sum(cm[i][i] for i in range(10)) / res["test_n"])
    report = write_report(study, root, tmp_path / "report", quick=True)
    text = report.read_text()
    assert "ours − seed" not in text  # one epoch on a slice: a difference to the seed means nothing
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
    proc = _cli(
        "study", "report", str(study_file), "--quick", "--out", str(tmp_path / "o"), "--dest", str(tmp_path / "r")
    )
    assert proc.returncode == 0, proc.stderr
    assert "| a | 2 |" in (tmp_path / "r" / "tiny.md").read_text()
    # quick runs: no "ours − seed" column; full-size runs of the same records: there is one
    assert "ours − seed" not in (tmp_path / "r" / "tiny.md").read_text()
    study = load_study(str(study_file))
    header, cells = table_rows(collect(study, tmp_path / "o"))
    assert header[-1] == "ours − seed" and cells[0][-1] == f"{statistics.fmean(a['test_acc']) - 0.9:+.4f}"


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


# --- issue 22: one activation recorder, pooled DNN, swish, Keras' clipped loss ---------------


def _tiny_deep_init(tmp_path, mnist):
    """deep-init's 3.1 variant, 3 layers deep on a slice: the study's recorder runs as in full size."""
    study = _one_variant("deep-init", "lecun-selu-bn")
    v = replace(study.variants[0], quick={"model.depth": 3, "data.train_limit": 128, "data.test_limit": 50})
    study = replace(study, variants=(v,))
    root = run_study(study, seeds=1, quick=True, out=tmp_path / "deep-init", mnist=mnist)
    return study, run_dir_for(root, v.name, 0)


def test_deep_init_study_run_then_show_activations(mnist, tmp_path):
    from mnistlab.cli.show import activations as show_activations
    from mnistlab.viz.activations import read_activations

    study, rd = _tiny_deep_init(tmp_path, mnist)
    record = read_activations(rd)
    # the study's file is the one recorder's format: the input + the activation layers, training images
    assert record["version"] == 1 and record["probe"] == {"split": "train", "n": 90}  # 128 less the last 30 %
    assert record["layers"] == ["input", "act1", "act2", "act3"] and [e["epoch"] for e in record["epochs"]] == [1]
    h = record["epochs"][0]["histograms"]["input"]
    assert h["n"] == 90 * 28 * 28 and sum(h["counts"]) == h["n"]
    out = tmp_path / "act.png"
    show_activations(str(rd), out_path=out)
    assert out.stat().st_size > 5000
    report = write_report(study, rd.parent.parent, tmp_path / "report", quick=True)
    assert (tmp_path / "report" / "deep-init-activations.png").stat().st_size > 5000
    assert "μ" in report.read_text()  # the caption says what the panel titles give


def test_former_study_activation_files_still_read(mnist, tmp_path):
    from mnistlab.cli.show import activations as show_activations
    from mnistlab.viz.activations import ACTIVATIONS_FILE, read_activations

    _, rd = _tiny_deep_init(tmp_path, mnist)
    # what mnistlab/studies/activations.py wrote before issue 22: fixed bins, counts only
    values = torch.tensor([0.0, 1.0, 1.0, 3.0])
    edges = torch.linspace(-0.5, 3.5, 5).tolist()  # bins centred on 0, 1, 2, 3
    old = {"layers": ["input", "act1"], "edges": {"input": edges, "act1": edges},
           "epochs": [{"epoch": 1, "counts": {"input": [1, 2, 0, 1], "act1": [4, 0, 0, 0]}}]}  # fmt: skip
    (rd / ACTIVATIONS_FILE).write_text(json.dumps(old))
    record = read_activations(rd)
    h = record["epochs"][0]["histograms"]["input"]
    assert h["mean"] == pytest.approx(float(values.mean())) and h["std"] == pytest.approx(float(values.std()))
    assert h["zero_frac"] is None and record["layers"] == ["input", "act1"]
    out = tmp_path / "old.png"
    show_activations(str(rd), out_path=out)
    assert out.stat().st_size > 5000
    (rd / ACTIVATIONS_FILE).write_text('{"layers": ["input"], "edges": {}}')
    with pytest.raises(RunError, match="unreadable"):
        read_activations(rd)


def test_pooled_dnn_and_swish_build_as_described():
    from torch import nn

    from mnistlab.models import create_model, keras_param_count

    cfg = load_study("dnn-dropout").config(load_study("dnn-dropout").variant("pool2"), 0)
    model = create_model(cfg.model, cfg.model_config)
    assert [n for n, _ in model.named_children()][:2] == ["pool", "flatten"]
    assert keras_param_count(model)[0] == 14 * 14 * 32 + 32 + 32 * 10 + 10  # 196 inputs, not 784
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 0, 1] = 1.0  # one bright pixel: max-pooling keeps it in the first of the 196 inputs
    assert model.pool(x).flatten()[0] == 1.0
    extra = load_study("deep-init-extra")
    cfg = extra.config(extra.variant("xavier-swish"), 0)
    model = create_model(cfg.model, cfg.model_config)
    assert sum(isinstance(m, nn.SiLU) for m in model.modules()) == 50
    t = torch.tensor([-1.0, 0.0, 2.0])
    assert torch.allclose(model.act1(t), t * torch.sigmoid(t))


def test_keras_clipped_loss_has_no_gradient_for_sure_mistakes():
    import torch.nn.functional as F

    from mnistlab.train import cross_entropy

    logits = torch.tensor([[30.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    y = torch.tensor([1, 1])
    loss = cross_entropy(logits, y, 1e-7)
    loss.backward()
    expected = (-math.log(1e-7) + F.cross_entropy(logits[1:], y[1:]).item()) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logits.grad[0].abs().max() == 0  # p(label) < 1e-7: clipped, no gradient (Keras 2)
    assert logits.grad[1].abs().max() > 0
    plain = torch.tensor([[2.0, 0.0, 1.0]])
    assert cross_entropy(plain, y[:1]) == F.cross_entropy(plain, y[:1])  # 0 = PyTorch's loss
    from mnistlab.config import TrainConfig
    from mnistlab.train import _check_monitors

    with pytest.raises(ConfigError, match="prob_clip"):
        _check_monitors(TrainConfig(prob_clip=0.7), has_val=False)


def test_keras_output_init_changes_only_the_output_layer():
    from mnistlab.models import create_model

    study = load_study("deep-init-3.1")
    ours = study.config(study.variant("lecun-selu-bn"), 0)
    keras = study.config(study.variant("keras-out"), 0)
    assert ours.model_config.out_init is None and keras.model_config.out_init == "glorot_uniform"
    torch.manual_seed(0)
    a = create_model(ours.model, ours.model_config)
    torch.manual_seed(0)
    b = create_model(keras.model, keras.model_config)
    assert torch.equal(a.fc1.weight, b.fc1.weight) and torch.equal(a.fc50.weight, b.fc50.weight)
    limit = math.sqrt(6 / (100 + 10))  # glorot_uniform's bound for Dense(100 -> 10)
    assert b.out.weight.abs().max() <= limit and b.out.weight.abs().max() > 0.9 * limit
    # lecun_normal truncates at 2 std = 2 * sqrt(1/100) / 0.8796 = 0.227 < limit: the uniform one is wider
    assert a.out.weight.abs().max() <= 2 * 0.1 / 0.87962566103423978 + 1e-6
    assert b.out.bias.abs().max() == 0
    with pytest.raises(ValueError, match="out_init"):
        replace(keras.model_config, out_init="orthogonal")
