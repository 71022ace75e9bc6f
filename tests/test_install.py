"""The light install: `make train` installs the core only, and the core runs without any extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("fastapi", "uvicorn", "starlette", "multipart", "ray", "playwright", "sklearn", "hypothesis", "httpx")
make = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def _make(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env or None
    )


@make
def test_make_train_installs_the_core_only():
    plan = _make("-n", "-B", "setup").stdout
    pip_lines = [line for line in plan.splitlines() if "pip install" in line]
    assert any("torch==2.13.0" in line for line in pip_lines)
    assert any(line.rstrip().endswith("-e .") for line in pip_lines), pip_lines
    assert not any("[" in line for line in pip_lines), "make setup must not install extras"
    train = _make("-n", "-B", "train").stdout
    assert "mnistlab train" in train and not any("pip install" in x and "[" in x for x in train.splitlines())


@make
def test_make_test_adds_every_extra_the_tests_cover():
    plan = _make("-n", "-B", "setup-test").stdout
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    line = next(x for x in plan.splitlines() if "pip install" in x and "[" in x)
    named = line.split("[", 1)[1].split("]", 1)[0].split(",")
    assert set(extras) <= set(named), f"extras missing from make test: {set(extras) - set(named)}"


@make
def test_chromium_step_says_what_it_does_when_it_cannot_install():
    import os

    env = {**os.environ, "MNISTLAB_NO_BROWSER": "1"}
    proc = _make("chromium", "CHROMIUM=/no/such/chromium", **env)
    assert proc.returncode == 0
    assert (
        proc.stdout.strip()
        == "make test: MNISTLAB_NO_BROWSER is set: no Chromium install, the browser test will be skipped"
    )
    env.pop("MNISTLAB_NO_BROWSER")
    proc = _make("-n", "chromium", "CHROMIUM=/no/such/chromium", **env)
    assert "installing Debian's chromium with apt-get" in proc.stdout  # said before apt-get runs


def test_the_core_trains_with_no_extra_importable(tmp_path, mnist):
    """Every extra made unimportable: the CLI still lists models and trains a small run."""
    code = textwrap.dedent(
        f"""
        import importlib.abc, importlib.machinery, sys
        BLOCKED = {EXTRAS!r}
        class Absent(importlib.abc.Loader):  # importing it fails as if it were not installed
            def create_module(self, spec):
                raise ModuleNotFoundError(f"No module named {{spec.name!r}}", name=spec.name)
            def exec_module(self, module):
                pass
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    return importlib.machinery.ModuleSpec(name, Absent())
                return None
        sys.meta_path.insert(0, Block())
        from mnistlab.cli import main
        main(sys.argv[1:])
        """
    )

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)

    assert run("models").returncode == 0
    run_dir = tmp_path / "run"
    proc = run("train", "dnn", "--epochs", "1", "--quiet", "--set", "data.train_limit=500", "--set", "data.test_limit=200",
               "--run-dir", str(run_dir))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "result.json").is_file()
    proc = run("serve")
    assert (
        proc.returncode == 1 and "pip install" in proc.stderr and "Traceback" not in proc.stderr
    )  # says what to install
