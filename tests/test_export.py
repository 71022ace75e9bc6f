"""`mnistlab export`: every registered model as ONNX (and TorchScript), checked against PyTorch.

The numbers compared are probabilities of the canonical digit, from a fresh model (no training
needed for the numerics) at two batch sizes, and for runs of every data variant that changes the
model's own input (the export must carry that preparation). One run trained on a slice goes
through the CLI end to end, on real MNIST test digits.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mnistlab import export  # noqa: E402
from mnistlab.models import create_model, list_models  # noqa: E402
from mnistlab.predictor import Predictor  # noqa: E402
from mnistlab.recipes import resolve_run_config  # noqa: E402


def canonical_net(name: str, overrides: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """A fresh model of recipe `name` behind its run's input preparation: what export writes."""
    cfg = resolve_run_config(name, overrides, seed=seed)
    return Predictor(create_model(cfg.model, cfg.model_config), cfg).net


TOL = 1e-5  # max |p_onnxruntime - p_torch|; measured: <= 2.2e-6 (deep-dnn), ~1e-7 for the rest
TOL_ROUTE = "the exported model must give PyTorch's probabilities"


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    session = export.onnx_session(path)
    return session.run([export.OUTPUT], {export.INPUT: x.numpy()})[0]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small graphs: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_to_onnx_with_pytorchs_probabilities(name, tmp_path):
    torch.manual_seed(0)
    net = canonical_net(name)
    e = export.export_module(net, tmp_path / f"{name}.onnx")
    print(  # `pytest tests/test_export.py -k every_model -s` prints the table docs/export.md shows
        f"\n{name}: max |p_onnxruntime - p_torch| = {e.max_abs_diff:.2g}; {e.bytes / 1e6:.2f} MB; "
        f"export + check {e.wall_s:.2f} s wall, {e.cpu_s:.2f} s CPU"
    )
    assert e.max_abs_diff < TOL, (name, e.max_abs_diff)
    # the contract, checked independently of export_module's own check: names, dynamic batch, softmax
    session = export.onnx_session(e.path)
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, outp.name) == (export.INPUT, export.OUTPUT)
    assert inp.shape[1:] == [1, 28, 28] and isinstance(inp.shape[0], str), inp.shape  # N is symbolic
    for n in (2, 9):
        x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            ref = torch.softmax(net.eval()(x), 1).numpy()
        got = run_onnx(e.path, x)
        assert got.shape == (n, 10) and np.allclose(got.sum(1), 1, atol=1e-5)
        assert np.abs(got - ref).max() < TOL, TOL_ROUTE
    meta = export.read_onnx_metadata(e.path)
    assert meta["mnistlab.input"] == export.INPUT_DOC and "max |p_onnxruntime - p_torch|" in meta["mnistlab.check"]
    assert e.opset == export.DEFAULT_OPSET


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", ["dnn", "cnn-bn", "fastnet"])
def test_torchscript_export(name, tmp_path):
    torch.manual_seed(0)
    net = canonical_net(name)
    e = export.export_module(net, tmp_path / "m.pt", fmt="torchscript")
    assert e.max_abs_diff < TOL and e.opset is None
    extra = {"mnistlab.json": ""}
    loaded = torch.jit.load(str(e.path), _extra_files=extra)  # our own file: TorchScript's format, no pickle module
    assert json.loads(extra["mnistlab.json"])["mnistlab.input"] == export.INPUT_DOC
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded(x), torch.softmax(net.eval()(x), 1), atol=TOL)


VARIANTS = [
    ("dnn", {"data.scale": False}),
    ("dnn", {"data.subsample": "random"}),  # a fixed random mask: must be a constant in the graph
    ("dnn", {"data.subsample": "half"}),  # 14x14 input
    ("cnn", {"data.subsample": "down4", "data.upsample": True}),
    ("keras-convnet", {"data.invert": "only"}),
    ("cnn-small", {}),  # takes 3 channels
    ("fastnet", {"data.channels": 3}),
]


@pytest.mark.parametrize(
    "name, overrides", VARIANTS, ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}" for n, o in VARIANTS]
)
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_exports_carry_the_runs_own_input_preparation(name, overrides, fmt, tmp_path):
    torch.manual_seed(0)
    net = canonical_net(name, overrides, seed=3)
    e = export.export_module(net, tmp_path / "m.bin", fmt=fmt)
    assert e.max_abs_diff < TOL, (name, overrides, e.max_abs_diff)
    if fmt == "onnx":  # a second session, other inputs: the preparation is in the file, not in this process
        x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(11))
        with torch.no_grad():
            ref = torch.softmax(net.eval()(x), 1).numpy()
        assert np.abs(run_onnx(e.path, x) - ref).max() < TOL
        assert np.abs(run_onnx(e.path, x) - run_onnx(e.path, x)).max() == 0  # no random draw left in it


@pytest.mark.parametrize("opset", [export.MIN_OPSET, export.MAX_OPSET])
def test_opset_range_ends(opset, tmp_path):
    import onnx

    net = canonical_net(
        "cnn-robust", {"data.subsample": "down4", "data.upsample": True}
    )  # pooling, Resize, conv, dropout
    e = export.export_module(net, tmp_path / "m.onnx", opset=opset)
    model = onnx.load(str(e.path))
    assert model.opset_import[0].version == opset and e.max_abs_diff < TOL
    assert "Resize" in {n.op_type for n in model.graph.node}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`mnistlab ARGS` in this process (as the console script calls it): exit status, stdout, stderr."""
    from mnistlab.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_trained_run_on_real_digits(mnist, tmp_path, capsys):
    """Train on a slice, export through the CLI, read MNIST test digits with onnxruntime alone."""
    run = tmp_path / "run"
    slice_ = ["--set", "data.train_limit=3000", "--set", "data.test_limit=500", "--epochs", "1"]
    code, _, err = cli(capsys, "train", "keras-convnet", *slice_, "--run-dir", str(run))
    assert code == 0, err
    code, out, err = cli(
        capsys, "export", str(run), str(tmp_path / "out" / "model.onnx"), "--test-digits", "500", "--json"
    )
    assert code == 0, err
    info = json.loads(out)
    assert info["max_abs_diff"] < TOL and info["opset"] == export.DEFAULT_OPSET
    assert info["digits"]["n"] == 500 and info["digits"]["disagree"] == 0 and info["digits"]["max_abs_diff"] < TOL

    from mnistlab import runs

    loaded = runs.load_run(run)
    x = mnist.test_images[:500].float().div(255).unsqueeze(1)
    got = run_onnx(tmp_path / "out" / "model.onnx", x)
    with torch.no_grad():
        ref = torch.softmax(loaded.model(x), 1).numpy()
    print(
        f"trained keras-convnet, 500 MNIST test digits: max |p_onnxruntime - p_torch| = {np.abs(got - ref).max():.2g}"
    )
    assert np.abs(got - ref).max() < TOL
    acc = float((got.argmax(1) == mnist.test_labels[:500].numpy()).mean())
    result = json.loads((run / "result.json").read_text())
    assert acc == pytest.approx(result["test_acc"], abs=1e-9), "the file reads the test digits as the run did"
    meta = export.read_onnx_metadata(tmp_path / "out" / "model.onnx")
    assert meta["mnistlab.run"] == "run" and meta["mnistlab.model"] == "keras-convnet"
    assert float(meta["mnistlab.test_acc"]) == pytest.approx(result["test_acc"], abs=1e-4)
    assert info["digits"]["acc_file"] == pytest.approx(acc) and "500 MNIST test digits" in meta["mnistlab.check_digits"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["/no/such/run", "m.onnx"], "no run"),
        (["RUN", "m.onnx", "--format", "tflite"], "unknown format 'tflite'"),
        (["RUN", "m.onnx", "--opset", "7"], "opset 7 is not supported: choose 11..20"),
        (["RUN", "m.pt", "--format", "torchscript", "--opset", "13"], "--opset applies to --format onnx only"),
        (["RUN", "."], "is a folder"),
        (["RUN", "m.onnx", "--test-digits", "-1"], "--test-digits must be 0..10000"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message, tmp_path, capsys):
    from mnistlab import runs

    run = tmp_path / "run"
    run.mkdir()
    runs.atomic_write_json(run / runs.CONFIG, resolve_run_config("dnn", seed=0).to_dict())
    runs.save_weights(create_model("dnn"), run / runs.WEIGHTS, "dnn")
    args = [str(run) if a == "RUN" else str(tmp_path / a) if a in ("m.onnx", "m.pt", ".") else a for a in args]
    code, _, err = cli(capsys, "export", *args)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert not list(tmp_path.glob("m.*")), "nothing written"


def test_missing_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(export.ExportError, match=r"pip install 'mnistlab\[export\]'"):
        export.export_module(canonical_net("dnn"), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_default_is_the_handwriting_model(mnist, tmp_path, monkeypatch, capsys):
    """`default` is the cached handwriting model, as in `serve` (a stand-in here: no minute of training)."""
    from mnistlab.experiment import run_experiment

    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "cache"))
    cfg = resolve_run_config("dnn", {"data.train_limit": 500, "data.test_limit": 100, "train.epochs": 1}, seed=0)
    run_experiment(cfg, run_dir=tmp_path / "cache" / "models" / "robust", mnist=mnist, device="cpu")
    code, _, err = cli(capsys, "export", "default", str(tmp_path / "m.onnx"))
    assert code == 0, err
    assert export.read_onnx_metadata(tmp_path / "m.onnx")["mnistlab.run"] == "robust"
