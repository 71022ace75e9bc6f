"""Benchmark recipes, the time-to-accuracy probe, `mnistlab bench --quick` and ensembles."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from mnistlab import bench
from mnistlab.ensemble import evaluate_ensemble
from mnistlab.errors import ConfigError, RunError
from mnistlab.experiment import run_experiment
from mnistlab.models import create_model, keras_param_count
from mnistlab.recipes import get_recipe, resolve_run_config
from mnistlab.train import make_optimizer, make_scheduler, schedule_steps

SLICE = {"data.train_limit": 1000, "data.test_limit": 300}
BENCH_RECIPES = ["ref-pytorch", "ref-keras", "fast", "fast-crop", "best"]


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


@pytest.mark.parametrize("name", ["fast", "fast-crop"])
def test_fast_recipe_trains_on_a_slice(mnist, name):
    # 2 whole epochs of 20 steps (fast-crop's 0.9-epoch schedule would be 18 steps of a slice)
    over = {**SLICE, "train.batch_size": 50, "train.epochs": 2, "train.schedule_epochs": None}
    cfg = resolve_run_config(name, over, seed=0)
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
    # 6 steps of 192 per epoch, a probe after every step: stopped after the first, of 3 epochs
    assert stopped.seeds[0].epochs == pytest.approx(1 / 6) and stopped.seeds[0].stopped_at_target


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
        assert r["seeds"] == 2 and r["test_acc_mean"] >= 0.2  # the target, which both reached
        assert r["reached"] == 2 and r["cpu_to_99_s"] > 0 and r["images_to_99"] >= 1
        assert r["floor_s"] > 0 and r["floor_gap"] > 1  # nothing runs faster than the FLOP floor
        for p in r["per_seed"]:
            assert p["cpu_to_target_s"] <= p["train_cpu_seconds"] <= p["cpu_seconds"]
            assert p["load_start"] is not None and p["load_end"] is not None
    # interleaved: A0 B0 A1 B1
    assert report["order"] == ["fast:0", "ref-pytorch:0", "fast:1", "ref-pytorch:1"]
    assert [p["order"] for p in by_name["fast"]["per_seed"]] == [0, 2]
    assert report["peak"]["fp32"] > 0
    ref = by_name["ref-pytorch"]
    if ref["time_to_99_s"] is not None:
        assert ref["ratio_vs_ref_pytorch"] == pytest.approx(1.0)
    for key in ("cpu", "cores", "torch", "device"):
        assert key in report["machine"]
    assert report["inference"]["images_per_s"] > 0
    text = report_md.read_text()
    assert "mnistlab bench --quick" in text and "ref-pytorch" in text and "--quick" in text
    assert "FLOP floor" in text and "fast:0 ref-pytorch:0 fast:1 ref-pytorch:1" in text


def test_ensemble_is_at_least_its_worse_member(mnist, tmp_path):
    paths = []
    for seed in (0, 1):
        cfg = resolve_run_config("fast", {**SLICE, "train.batch_size": 64}, seed=seed)
        run_experiment(cfg, run_dir=tmp_path / f"r{seed}", mnist=mnist, device="cpu")
        paths.append(tmp_path / f"r{seed}")
    cropped = resolve_run_config("fast", {**SLICE, "train.batch_size": 64, "data.crop": 20}, seed=1)
    run_experiment(cropped, run_dir=tmp_path / "crop", mnist=mnist, device="cpu")
    res = evaluate_ensemble([*paths, tmp_path / "crop"], mnist)  # diverse: a member sees a 20x20 crop
    assert res.n == 300 and len(res.member_acc) == 3
    assert res.acc >= min(res.member_acc)
    assert [m["crop"] for m in res.members] == [None, None, 20]
    assert all(m["train_cpu_seconds"] > 0 for m in res.members)
    assert res.train_cpu_seconds == pytest.approx(sum(m["train_cpu_seconds"] for m in res.members))
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
    assert len(out.train.history) == 1 and out.result["test_acc"] > 0.2  # 4 steps lift it off chance (0.1)


def test_bench_steps_json():
    r = json.loads(mnistlab("bench-steps", "fast", "--set", "train.batch_size=16", "--steps", "2", "--json").stdout)
    assert r["model"] == "fastnet" and r["batch_size"] == 16 and r["step_ms_median"] > 0


def test_ensemble_cli_needs_two_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mnistlab", "ensemble", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1 and "at least two runs" in proc.stderr and "Traceback" not in proc.stderr


# --- issue 25: interleaving, load, CPU seconds, the FLOP floor, the CUDA path, the levers -------


def test_interleaved_order_runs_round_by_round():
    order = bench.interleaved_order({"a": 2, "ref": 1, "c": 3})
    assert order == [("a", 0), ("ref", 0), ("c", 0), ("a", 1), ("c", 1), ("c", 2)]


def _seed(load0, load1, cpu, wall=10.0, seed=0):
    return bench.SeedResult(
        seed=seed, test_acc=0.99, time_to_target_s=5.0, train_seconds=wall, probe_eval_seconds=0.0,
        wall_seconds=wall, epochs=1.0, stopped_at_target=False, train_cpu_seconds=cpu, load_start=load0,
        load_end=load1,
    )  # fmt: skip


def test_load_warnings(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    steady = [bench.RecipeResult("a", "", [_seed(2.0, 2.1, 9.9), _seed(2.1, 2.0, 9.8, seed=1)])]
    assert bench.load_warnings(steady, cores=2) == []
    moved = [bench.RecipeResult("a", "", [_seed(2.0, 2.1, 9.9), _seed(2.1, 5.0, 9.8, seed=1)])]
    (w,) = bench.load_warnings(moved, cores=2)
    assert "between 2.00 and 5.00" in w
    starved = [bench.RecipeResult("a", "", [_seed(2.0, 2.0, 9.9), _seed(2.0, 2.0, 3.0, seed=1)])]
    (w,) = bench.load_warnings(starved, cores=2)
    assert "a seed 1 (30 %)" in w and "seed 0" not in w


def test_peak_flops_from_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(bench, "cpu_flags_and_ghz", lambda: ({"avx", "avx2", "fma"}, 2.5))
    p = bench.peak_flops(torch.device("cpu"), threads_=2)
    assert p["fp32"] == pytest.approx(2 * 2.5e9 * 32) and p["bf16"] == p["fp32"]  # no bf16 unit: as fp32
    monkeypatch.setattr(bench, "cpu_flags_and_ghz", lambda: ({"avx2", "fma", "avx512f", "amx_bf16"}, 2.0))
    p = bench.peak_flops(torch.device("cpu"), threads_=1)
    assert p["fp32"] == pytest.approx(2.0e9 * 64) and p["bf16"] == pytest.approx(2.0e9 * 1024)
    monkeypatch.setattr(bench, "cpu_flags_and_ghz", lambda: (set(), None))
    assert bench.peak_flops(torch.device("cpu"))["fp32"] is None


@pytest.mark.parametrize("name", BENCH_RECIPES)
def test_train_flops_per_image_is_three_forwards(name):
    # backward costs about twice the forward (input and weight gradients); the first layer has no
    # input gradient, so the total lies between 2x and 3x the forward FLOPs
    from torch.utils.flop_counter import FlopCounterMode

    cfg = resolve_run_config(name)
    model = create_model(cfg.model, cfg.model_config)
    with FlopCounterMode(display=False) as c, torch.no_grad():
        model(torch.rand(4, *model.input_shape))
    forward = c.get_total_flops() / 4
    assert 2 * forward < bench.train_flops_per_image(name) <= 3 * forward * 1.001


def test_fast_levers_cut_flops_per_image():
    base = bench.train_flops_per_image("fast")
    assert base == pytest.approx(11.07e6, rel=0.01)  # issue 25's count of `fast`
    assert bench.train_flops_per_image("fast", {"model.strided": "2"}) < 0.7 * base
    assert bench.train_flops_per_image("fast", {"data.crop": 20}) < 0.55 * base


class _FakeCudaState(SimpleNamespace):
    eval_model = None


def test_probe_syncs_cuda_only_at_probe_points(monkeypatch):
    """On CUDA the steps are asynchronous: the probe synchronises before reading its clocks, and
    only at its probe points (here 4 per epoch of 20 steps, plus the epoch's last step)."""
    syncs = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: syncs.append(device))
    monkeypatch.setattr(bench, "evaluate", lambda model, split: {"acc": 0.5})
    cfg = resolve_run_config("fast")
    state = _FakeCudaState(device=torch.device("cuda"), step=0, steps_per_epoch=20, config=cfg, train_seconds=0.0,
                           stop=False)  # fmt: skip
    probe = bench.TimeToAccuracy(None, target=0.9, checks_per_epoch=4)
    probe.on_train_begin(state)
    for step in range(1, 21):
        state.step = step
        probe.on_batch_end(state, torch.zeros(()))
    assert len(syncs) == 4  # steps 5, 10, 15 (probes) and 20 (the epoch's last)
    state.train_seconds = 1.0
    probe.on_epoch_end(state, {})
    assert [c["epoch"] for c in probe.checks] == [0.25, 0.5, 0.75, 1.0]
    assert [c["images"] for c in probe.checks] == [5 * 192, 10 * 192, 15 * 192, 20 * 192]


def test_probe_counts_cpu_seconds_and_images(mnist):
    res = bench.bench_recipe("fast", mnist, [0], target=0.0, overrides={**SLICE, "train.batch_size": 50},
                             checks_per_epoch=4)  # fmt: skip
    s = res.seeds[0]
    assert s.images_to_target == 5 * 50  # the first probe: a quarter of 20 steps of 50
    assert 0 < s.cpu_to_target_s <= s.train_cpu_seconds <= s.cpu_seconds


def test_schedule_epochs_ends_training_with_the_schedule(mnist):
    over = {**SLICE, "train.batch_size": 50, "train.schedule_epochs": 0.5}
    res = bench.bench_recipe("fast", mnist, [0], target=1.01, overrides=over, checks_per_epoch=4)
    s = res.seeds[0]
    assert s.epochs == pytest.approx(0.5)  # 10 of the 20 steps
    assert [c["epoch"] for c in s.checks] == pytest.approx([0.25, 0.5])  # the last probe where training ended
    cfg = resolve_run_config("fast", over)
    opt = make_optimizer(create_model(cfg.model, cfg.model_config).parameters(), cfg.train)
    sched, _ = make_scheduler(opt, cfg.train, 20)
    assert sched.total_steps == 10
    with pytest.raises(ConfigError, match="schedule_epochs"):
        run_experiment(resolve_run_config("fast", {**over, "train.schedule_epochs": 2}), record=False, mnist=mnist)
    with pytest.raises(ConfigError, match="schedule_epochs"):
        run_experiment(resolve_run_config("dnn", {**over, "train.schedule_epochs": 0.5}), record=False, mnist=mnist)


def test_setting_epochs_resets_a_recipes_schedule_epochs():
    # fast-crop's 0.9-epoch schedule belongs to its 1 epoch: --epochs 3 means a 3-epoch schedule
    assert resolve_run_config("fast-crop").train.schedule_epochs == 0.9
    for key in ("train.epochs", "epochs"):
        t = resolve_run_config("fast-crop", {key: 3}).train
        assert (t.epochs, t.schedule_epochs) == (3, None)
        assert schedule_steps(t, 100) == 300
    # ... unless the override names both
    t = resolve_run_config("fast-crop", {"train.epochs": 3, "train.schedule_epochs": 2.5}).train
    assert (t.epochs, t.schedule_epochs, schedule_steps(t, 100)) == (3, 2.5, 250)
    # other overrides leave the recipe's schedule as it is
    assert resolve_run_config("fast-crop", {"train.lr": 0.02}).train.schedule_epochs == 0.9


def test_betas_are_adams_and_stay_fixed_under_onecycle():
    cfg = resolve_run_config("fast", {"train.betas": "0.7,0.9"})
    assert cfg.train.betas == (0.7, 0.9)
    opt = make_optimizer(create_model(cfg.model, cfg.model_config).parameters(), cfg.train)
    sched, _ = make_scheduler(opt, cfg.train, 10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["betas"] == (0.7, 0.9)  # OneCycleLR would have moved beta1 off 0.7
    default = resolve_run_config("fast")
    opt = make_optimizer(create_model(default.model, default.model_config).parameters(), default.train)
    sched, _ = make_scheduler(opt, default.train, 10)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["betas"][0] != 0.9  # the recipe as before: beta1 cycles
    with pytest.raises(ConfigError, match="betas"):
        make_optimizer(create_model("dnn").parameters(), resolve_run_config("dnn", {"train.betas": "0.7,0.9"}).train)


def test_ema_weights_are_the_result(mnist):
    from mnistlab.train import WeightEMA

    model = torch.nn.Linear(2, 1)
    ema = WeightEMA(model, 0.5)
    before = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # n = 1: decay min(0.5, 2/11) = 2/11
    assert torch.allclose(ema.module.weight, before + (1 - 2 / 11))
    over = {**SLICE, "train.batch_size": 50}
    plain = run_experiment(resolve_run_config("fast", over, seed=0), record=False, mnist=mnist)
    averaged = run_experiment(resolve_run_config("fast", {**over, "train.ema": 0.9}, seed=0), record=False, mnist=mnist)
    # same seed, same steps: only the averaging differs, and the averaged weights are what was tested
    assert not torch.equal(plain.model.conv2.weight, averaged.model.conv2.weight)
    assert averaged.result["test_acc"] > 0.2  # chance is 0.1 (an EMA of 20 steps lags the live weights)


def test_crop_is_part_of_the_model_input(mnist, tmp_path):
    from mnistlab import dataset
    from mnistlab.config import DataConfig
    from mnistlab.predictor import Predictor

    x = torch.rand(2, 1, 28, 28)
    got = dataset.model_input(x, DataConfig(crop=20))
    assert got.shape == (2, 1, 20, 20) and torch.equal(got, x[..., 4:24, 4:24])
    cfg = resolve_run_config("fast", {**SLICE, "data.crop": 20, "train.batch_size": 50}, seed=0)
    assert cfg.model_config.input_size == 20
    run_experiment(cfg, run_dir=tmp_path / "crop", mnist=mnist, device="cpu")
    p = Predictor.load(tmp_path / "crop")
    probs = p.probs(torch.rand(3, 1, 28, 28))  # apps hand over 28x28 digits; the predictor crops
    assert probs.shape == (3, 10)
    with pytest.raises(ConfigError):
        resolve_run_config("fast", {"data.crop": 40})


def test_fastnet_strided_block_halves_the_side():
    model = create_model("fastnet", resolve_run_config("fast", {"model.strided": "2"}).model_config)
    assert model.conv2.stride == (2, 2) and not hasattr(model, "pool2")
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConfigError):
        resolve_run_config("fast", {"model.strided": "1"})


def test_compile_warmup_is_excluded_and_leaves_the_weights(mnist):
    over = {"data.train_limit": 120, "data.test_limit": 100, "train.batch_size": 50}
    plain = run_experiment(resolve_run_config("fast", over, seed=0), record=False, mnist=mnist)
    compiled = run_experiment(resolve_run_config("fast", {**over, "train.compile": "eager"}, seed=0), record=False,
                              mnist=mnist)  # fmt: skip
    assert plain.train.warmup_seconds == 0 and compiled.train.warmup_seconds > 0
    # the warm-up restored weights and BN statistics: training from there gives the same model
    for k, v in plain.model.state_dict().items():
        assert torch.allclose(v.float(), compiled.model.state_dict()[k].float(), atol=1e-5), k


@pytest.mark.slow
def test_gpu_script_runs_on_the_cpu(tmp_path):
    """scripts/gpu-bench.sh, the GPU check of issue 25, on tiny slices on the CPU (no GPU here)."""
    import os
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu-bench.sh"
    env = {**os.environ, "DEVICE": "cpu", "QUICK": "1", "COMPILE": "eager", "PYTHON": sys.executable,
           "OUT_DIR": str(tmp_path)}  # fmt: skip
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plain, compiled = (
        (tmp_path / "benchmarks-gpu.md").read_text(),
        (tmp_path / "benchmarks-gpu-compiled.md").read_text(),
    )
    assert "device cpu" in plain and "| fast |" in plain and "warm-up" not in plain
    assert "train.compile=eager" in compiled and "warm-up" in compiled and "excluded" in compiled
