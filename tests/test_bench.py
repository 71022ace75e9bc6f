"""Benchmark recipes, the time-to-accuracy probe, `mnistlab bench --quick` and ensembles."""

import json
import subprocess
import sys

import pytest
import torch

from mnistlab import bench
from mnistlab.ensemble import evaluate_ensemble
from mnistlab.errors import RunError
from mnistlab.experiment import run_experiment
from mnistlab.models import create_model, keras_param_count
from mnistlab.recipes import DEFAULT_RECIPE, get_recipe, resolve_run_config

SLICE = {"data.train_limit": 1000, "data.test_limit": 300}
BENCH_RECIPES = ["ref-pytorch", "ref-keras", "fast", "best"]


def mnistlab(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mnistlab", *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.parametrize("name", BENCH_RECIPES)
def test_bench_recipes_resolve_and_build(name):
    cfg = resolve_run_config(name)
    model = create_model(cfg.model, cfg.model_config)
    logits = model(torch.rand(3, *model.input_shape))
    assert logits.shape == (3, 10)
    assert get_recipe(name).description


def test_reference_recipes_match_the_examples():
    pt = resolve_run_config("ref-pytorch")
    assert (pt.train.optimizer, pt.train.lr, pt.train.batch_size, pt.train.epochs) == ("adadelta", 1.0, 64, 14)
    assert (pt.train.schedule, pt.train.gamma, pt.train.step_size) == ("step", 0.7, 1)
    # PyTorch's Adadelta rho 0.9 must survive the trainer's Keras mapping of 0.9 -> 0.95
    from mnistlab.train import make_optimizer

    opt = make_optimizer(create_model(pt.model).parameters(), pt.train)
    assert opt.param_groups[0]["rho"] == pytest.approx(0.9, abs=1e-6)
    # parameter counts of the originals (pytorch/examples: 1,199,882; keras-io summary: 34,826)
    assert keras_param_count(create_model(pt.model))[0] == 1_199_882
    ks = resolve_run_config("ref-keras")
    assert keras_param_count(create_model(ks.model))[0] == 34_826
    assert (ks.train.optimizer, ks.train.batch_size, ks.train.epochs, ks.data.val_split) == ("adam", 128, 15, 0.1)


def test_pytorch_example_normalises_inside_the_model():
    model = create_model("pt-example-net")
    x = torch.full((1, 1, 28, 28), 0.1307)
    assert torch.allclose(model.norm(x), torch.zeros_like(x), atol=1e-6)


def test_default_recipe_exists():
    resolve_run_config(DEFAULT_RECIPE)


def test_fast_recipe_trains_on_a_slice(mnist):
    cfg = resolve_run_config("fast", {**SLICE, "train.batch_size": 50, "train.epochs": 2}, seed=0)
    assert cfg.model == "fastnet" and cfg.train.schedule == "onecycle"
    out = run_experiment(cfg, record=False, mnist=mnist, device="cpu")
    assert out.result["test_acc"] > 0.5  # chance is 0.1; 40 steps on 1000 images get well past it
    assert out.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)


def test_probe_checks_regularly_and_stops_at_target(mnist):
    overrides = {**SLICE, "train.batch_size": 50, "train.epochs": 2}
    res = bench.bench_recipe("fast", mnist, [0], target=0.0, overrides=overrides, checks_per_epoch=4)
    s = res.seeds[0]
    # target 0: reached at the first probe (a quarter into epoch 1), which time is training time only
    assert s.time_to_target_s is not None and s.time_to_target_s <= s.train_seconds
    assert [c["epoch"] for c in s.checks] == [0.25]  # no further probes once the target is met
    stopped = bench.bench_recipe(
        "fast", mnist, [0], target=0.0, overrides={**SLICE, "train.epochs": 3}, stop_at_target=True
    )
    assert stopped.seeds[0].epochs == 1 and stopped.seeds[0].stopped_at_target


def test_probe_never_reaching_target_checks_every_point(mnist):
    res = bench.bench_recipe(
        "fast", mnist, [0], target=1.01, overrides={**SLICE, "train.batch_size": 100}, checks_per_epoch=5
    )
    s = res.seeds[0]
    assert s.time_to_target_s is None
    assert [c["epoch"] for c in s.checks] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    times = [c["train_seconds"] for c in s.checks]
    assert times == sorted(times) and times[-1] == pytest.approx(s.train_seconds)


def test_bench_quick_json(tmp_path):
    report_md = tmp_path / "bench.md"
    proc = mnistlab(
        "bench", "--quick", "--recipes", "fast,ref-pytorch", "--seeds", "2", "--target", "0.2",
        "--json", "--out", str(report_md),
    )  # fmt: skip
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    by_name = {r["name"]: r for r in report["recipes"]}
    assert set(by_name) == {"fast", "ref-pytorch"}
    for r in by_name.values():
        for key in ("name", "time_to_99_s", "test_acc_mean", "test_acc_std", "seeds", "ratio_vs_ref_pytorch"):
            assert key in r
        assert r["seeds"] == 2 and 0 <= r["test_acc_mean"] <= 1
    ref = by_name["ref-pytorch"]
    if ref["time_to_99_s"] is not None:
        assert ref["ratio_vs_ref_pytorch"] == pytest.approx(1.0)
    for key in ("cpu", "cores", "torch", "device"):
        assert key in report["machine"]
    assert report["inference"]["images_per_s"] > 0
    text = report_md.read_text()
    assert "mnistlab bench --quick" in text and "ref-pytorch" in text and "--quick" in text


def test_ensemble_is_at_least_its_worse_member(mnist, tmp_path):
    paths = []
    for seed in (0, 1):
        cfg = resolve_run_config("fast", {**SLICE, "train.batch_size": 64}, seed=seed)
        run_experiment(cfg, run_dir=tmp_path / f"r{seed}", mnist=mnist, device="cpu")
        paths.append(tmp_path / f"r{seed}")
    res = evaluate_ensemble(paths, mnist)
    assert res.n == 300 and len(res.member_acc) == 2
    assert res.acc >= min(res.member_acc)
    with pytest.raises(RunError):
        evaluate_ensemble(paths[:1], mnist)
    other = resolve_run_config("fast", {**SLICE, "data.test_limit": 200, "train.batch_size": 64}, seed=2)
    run_experiment(other, run_dir=tmp_path / "r2", mnist=mnist, device="cpu")
    with pytest.raises(RunError, match="different images"):
        evaluate_ensemble([paths[0], tmp_path / "r2"], mnist)


def test_onecycle_with_a_single_warmup_step_trains(mnist):
    # 4 steps at warmup 0.25 = one warm-up step, which OneCycleLR alone divides by zero on
    cfg = resolve_run_config("fast", {"data.train_limit": 1024, "data.test_limit": 100}, seed=0)
    out = run_experiment(cfg, record=False, mnist=mnist, device="cpu")
    assert len(out.train.history) == 1 and 0 <= out.result["test_acc"] <= 1


def test_bench_steps_json():
    r = json.loads(mnistlab("bench-steps", "fast", "--set", "train.batch_size=16", "--steps", "2", "--json").stdout)
    assert r["model"] == "fastnet" and r["batch_size"] == 16 and r["step_ms_median"] > 0


def test_ensemble_cli_needs_two_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mnistlab", "ensemble", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1 and "at least two runs" in proc.stderr and "Traceback" not in proc.stderr
