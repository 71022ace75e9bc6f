"""The CLI as a user runs it: in a subprocess, reading stdout and the exit status."""

import json
import subprocess
import sys

import pytest

SLICE = ["--set", "data.train_limit=1000", "--set", "data.test_limit=500"]


def mnistlab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mnistlab", *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_models_json():
    rows = json.loads(mnistlab("models", "--json").stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["deep-dnn"]["params"] == 594410 and by_name["deep-dnn"]["trainable"] == 584410
    assert by_name["cnn"]["params"] == 1199882


def test_summary_is_keras_like():
    text = mnistlab("summary", "cnn").stdout
    assert "conv1" in text and "(None, 32, 26, 26)" in text and "Total params: 1,199,882" in text


def test_data_command(mnist):
    info = json.loads(mnistlab("data", "--json", "--no-download").stdout)
    assert info["train"]["count"] == 60000 and info["test"]["has_nan"] is False


def test_train_then_eval(tmp_path):
    run_dir = tmp_path / "run"
    line = mnistlab("train", "dnn", *SLICE, "--epochs", "1", "--json", "--run-dir", str(run_dir)).stdout
    result = json.loads(line.strip().splitlines()[-1])
    for key in ("test_acc", "test_loss", "train_seconds", "epochs", "params", "run_dir"):
        assert key in result
    assert result["test_acc"] > 0.5 and result["epochs"] == 1
    again = json.loads(mnistlab("eval", str(run_dir), "--json").stdout)
    assert again["test_acc"] == result["test_acc"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "nosuchnet"], "unknown model or recipe 'nosuchnet'"),
        (["train", "dnn", "--set", "hidden=wide"], "expected an integer"),
        (["train", "dnn", "--set", "bogus=1"], "valid keys"),
        (["eval", "/no/such/run"], "no run"),
        (["data", "--data-dir", "/no/such/dir", "--no-download"], "MNIST not found"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message, monkeypatch):
    monkeypatch.delenv("MNISTLAB_DATA", raising=False) if args[0] == "data" else None
    monkeypatch.setenv("MNISTLAB_CACHE", "/no/such/cache")
    proc = mnistlab(*args, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
