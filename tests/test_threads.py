"""The torch thread count: chosen from the free cores, overridable, and recorded."""

import json
import subprocess
import sys

import pytest
import torch

from mnistlab import threads
from mnistlab.bench import machine_info, machine_line
from mnistlab.errors import ConfigError


@pytest.mark.parametrize(
    "cores, load, torch_default, expected",
    [
        (2, 0.0, 2, 2),  # idle: torch's own default
        (2, 0.4, 2, 2),  # a little background work still leaves both cores
        (2, 0.6, 2, 1),  # one core is taken on average
        (2, 1.6, 2, 1),
        (2, 9.0, 2, 1),  # never fewer than one
        (8, 1.5, 8, 7),
        (8, 0.0, 4, 4),  # never more than torch's default (physical cores, or OMP_NUM_THREADS)
        (1, 0.0, 1, 1),
    ],
)
def test_default_leaves_the_busy_cores_alone(cores, load, torch_default, expected):
    choice = threads.choose(env={}, cores=cores, load=load, torch_default=torch_default)
    assert choice.threads == expected
    assert f"{cores} usable cores" in choice.reason and f"{load:.2f}" in choice.reason


def test_request_then_environment_override_the_load(monkeypatch):
    assert threads.choose(3, env={threads.ENV: "2"}, cores=2, load=9.0).threads == 3
    assert threads.choose(env={threads.ENV: "2"}, cores=2, load=9.0) == threads.ThreadChoice(2, threads.ENV)
    monkeypatch.setattr(threads, "load_average", lambda: None)  # a system without one: torch's default
    assert threads.choose(env={}, cores=4, torch_default=4) == threads.ThreadChoice(
        4, "4 usable cores, load average unknown"
    )


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_thread_counts_are_config_errors(bad):
    with pytest.raises(ConfigError, match="whole number of threads"):
        threads.choose(env={threads.ENV: bad})
    with pytest.raises(ConfigError, match="--threads"):
        threads.choose(bad)


def test_the_choice_is_applied_and_recorded():
    before = torch.get_num_threads()
    try:
        threads.apply(threads.ThreadChoice(2, "a test"))
        assert torch.get_num_threads() == 2
        assert threads.current() == {"torch_threads": 2, "threads_chosen_by": "a test"}
        info = machine_info(torch.device("cpu"))
        assert info["torch_threads"] == 2 and "chosen by a test" in machine_line(info)
        torch.set_num_threads(1)  # changed behind mnistlab's back: the record must not claim the choice
        assert threads.current()["threads_chosen_by"].startswith("set outside")
    finally:
        threads.apply(threads.ThreadChoice(before, threads.ENV))


def test_the_suite_runs_one_thread_per_process():
    assert torch.get_num_threads() == 1 and threads.current()["threads_chosen_by"] == threads.ENV


def test_cli_option_sets_threads_and_the_run_record_says_so(tmp_path, mnist):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "mnistlab", "--threads", "2", "train", "dnn", "--epochs", "1", "--quiet"]
    cmd += ["--set", "data.train_limit=500", "--set", "data.test_limit=200", "--run-dir", str(run_dir)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    env = json.loads((run_dir / "config.json").read_text())["environment"]
    assert env["torch_threads"] == 2 and env["threads_chosen_by"] == "--threads"


def test_cli_bad_threads_is_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "mnistlab", "--threads", "0", "models"], capture_output=True, text=True, timeout=120
    )
    assert (
        proc.returncode == 1
        and proc.stderr.strip() == "mnistlab: error: bad --threads 0: use a whole number of threads, 1 or more"
    )
