"""Faults: an interrupted run keeps its completed epochs, and --resume ends bit-identical."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnistlab import checkpoint, runs
from mnistlab.errors import RunError
from mnistlab.experiment import run_experiment
from mnistlab.recipes import resolve_run_config
from mnistlab.train import Callback

# Dropout, augmentation, Adam state, a per-step schedule and best-epoch restore: everything
# a resume has to carry over.
CFG = {
    "data.train_limit": 1500,
    "data.test_limit": 500,
    "data.val_split": 0.2,
    "epochs": 4,
    "hidden": 64,
    "dropout": 0.3,
    "train.optimizer": "adam",
    "train.schedule": "onecycle",
    "train.monitor": "val_acc",
    "augment.rotate": 10,
    "augment.shift": 0.1,
}


class InterruptAt(Callback):
    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_batch_end(self, state, loss):
        if state.epoch == self.epoch and (state.step - 1) % state.steps_per_epoch + 1 == self.batch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("optimizer", ["adam", "muon"])  # muon: train.MuonAdam's own state
def test_resume_is_bit_identical(mnist, tmp_path, optimizer):
    cfg = resolve_run_config("mlp", {**CFG, "train.optimizer": optimizer}, seed=3)
    full = run_experiment(cfg, mnist=mnist, run_dir=tmp_path / "full")

    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, mnist=mnist, run_dir=tmp_path / "cut", callbacks=[InterruptAt(epoch=3, batch=5)])
    cut = tmp_path / "cut"
    assert not runs.is_complete(cut)
    assert len(runs.read_history(cut)) == 2  # the two completed epochs are intact
    ckpt = checkpoint.load(cut / checkpoint.CHECKPOINT)
    assert ckpt.epoch == 2

    resumed = run_experiment(cfg, mnist=mnist, run_dir=cut, resume=ckpt)
    assert resumed.result["test_acc"] == full.result["test_acc"]
    assert resumed.result["best_epoch"] == full.result["best_epoch"]
    assert [m["loss"] for m in resumed.train.history] == [m["loss"] for m in full.train.history]
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (cut / checkpoint.CHECKPOINT).exists()  # complete: checkpoint removed


def test_tampered_checkpoint_is_refused(tmp_path):
    (tmp_path / checkpoint.CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="not a valid mnistlab checkpoint"):
        checkpoint.load(tmp_path / checkpoint.CHECKPOINT)
    with pytest.raises(RunError, match="no checkpoint"):
        checkpoint.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_unwritable_output_folder_is_a_clear_error(mnist, tmp_path, where):
    # Permission bits do not stop root (CI runs as root): a path under a regular file, and
    # /proc (which refuses new folders even to root), fail for everyone.
    (tmp_path / "file").write_text("x")
    parent = tmp_path / "file" if where == "under-a-file" else "/proc/mnistlab"
    with pytest.raises(RunError, match="cannot write the run record"):
        run_experiment(resolve_run_config("dnn", CFG), mnist=mnist, run_dir=Path(parent) / "run")


def test_disk_full_leaves_no_record_that_looks_complete(mnist, tmp_path, monkeypatch):
    import mnistlab.runs as r

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    real = r.atomic_write_json
    monkeypatch.setattr(r, "atomic_write_json", lambda p, o: full_disk() if p.name == r.RESULT else real(p, o))
    with pytest.raises(RunError, match="No space left"):
        run_experiment(resolve_run_config("dnn", {**CFG, "epochs": 1}), mnist=mnist, run_dir=tmp_path / "r")
    assert not runs.is_complete(tmp_path / "r")
    assert len(runs.read_history(tmp_path / "r")) == 1


def test_sigterm_then_resume_from_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["--set", "data.train_limit=3000", "--set", "data.test_limit=500", "--set", "hidden=64"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnistlab", "train", "mlp", "--epochs", "200", *args, "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(runs.read_history(run_dir)) < 1:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    done = len(runs.read_history(run_dir))
    assert done >= 1 and not runs.is_complete(run_dir)
    # Resuming with other options is refused; a complete run cannot be resumed.
    bad = subprocess.run(
        [sys.executable, "-m", "mnistlab", "train", "--resume", str(run_dir), "--epochs", "3"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "drop the other options" in bad.stderr
