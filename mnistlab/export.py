"""Models you can take away: a run as one ONNX (or TorchScript) file that takes the canonical digit.

The exported graph is `softmax(net(image))`, where `net` is the run's network behind its own input
preparation (no scaling, sub-sampling, inversion, 3 channels: whatever the run was trained on),
so every exported model has the same contract, whatever its config:

  input  `image`  float32 (N, 1, 28, 28) in [0, 1], white ink on black, one MNIST-normalised
                  digit (its box fitted into 20x20, its centre of mass at the centre)
  output `probs`  float32 (N, 10), the probabilities of the digits 0-9

N is dynamic. Each export is run once with onnxruntime (or TorchScript) against PyTorch on the
same inputs, at two batch sizes, before the file is written; the largest difference of the
probabilities is returned and recorded in the file's metadata.

ONNX goes through torch's TorchScript-based exporter (`dynamo=False`): it needs only the `onnx`
package (for the metadata and the checker), where the default dynamo exporter also needs
onnxscript, onnx-ir and ml_dtypes, and it exports these small networks ~20x faster (0.05 s vs
1 s per model, measured in docs/export.md) with the same probabilities. torch marks it
deprecated; if a later torch drops it, `dynamo=True` with onnxscript gives the same graphs.
Needs the `export` extra: pip install 'mnistlab[export]' (onnx, onnxruntime).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mnistlab import __version__, runs
from mnistlab.errors import MnistlabError
from mnistlab.predictor import Predictor

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17  # every op these networks use exists there; onnxruntime reads it since 1.12
MIN_OPSET, MAX_OPSET = 11, 20  # both ends tested; 20 is the TorchScript-based exporter's last
INPUT, OUTPUT = "image", "probs"
CHECK_BATCHES = (1, 7)  # two batch sizes: the batch axis must really be dynamic
CHECK_SEED = 0
INPUT_DOC = (
    f"{INPUT}: float32 (N, 1, 28, 28) in [0, 1], white ink on black, one MNIST-normalised digit "
    "(bounding box fitted into 20x20, centre of mass at the centre of the 28x28 frame)"
)
OUTPUT_DOC = f"{OUTPUT}: float32 (N, 10), softmax probabilities of the digits 0-9"
EXTRA_HINT = "pip install 'mnistlab[export]' (onnx, onnxruntime)"


class ExportError(MnistlabError):
    """A model that cannot be exported, a missing extra, a bad option or output path."""


def canonical_module(run: runs.LoadedRun) -> nn.Module:
    """A loaded run as an nn.Module canonical digit -> logits: the Predictor's `net`."""
    return Predictor(run.model, run.config, run.path, run.result).net


class Probabilities(nn.Module):
    """canonical digit -> probabilities: what a program using the file wants, no softmax to add."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(image), dim=1)


@dataclass
class Exported:
    path: Path
    format: str
    opset: int | None  # None for TorchScript
    max_abs_diff: float  # max |p_exported - p_torch| over the check inputs
    batches: tuple[int, ...]  # the batch sizes checked
    bytes: int
    wall_s: float  # export + check
    cpu_s: float
    metadata: dict[str, str]
    digits: dict[str, Any] | None = None  # compare_on_digits, when real digits were given

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        return d


def check_inputs(batches: tuple[int, ...] = CHECK_BATCHES, seed: int = CHECK_SEED) -> list[torch.Tensor]:
    """Canonical inputs to compare runtimes on: uniform noise in [0, 1], the hardest case for the
    comparison (real digits give near one-hot probabilities, noise spreads them)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, 1, 28, 28, generator=g) for n in batches]


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ExportError(f"ONNX export needs {e.name}: {EXTRA_HINT}") from None
    return onnx, onnxruntime


def onnx_session(model: bytes | str | Path) -> Any:
    """An onnxruntime CPU session on one thread (the machine is shared; one digit needs no more)."""
    _, ort = _require_onnx()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def max_abs_diff(run_exported: Any, module: nn.Module, inputs: list[torch.Tensor]) -> float:
    """max |run_exported(x) - module(x)| over the inputs; `run_exported` maps a numpy batch to probs."""
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            ref = module(x).numpy()
            got = np.asarray(run_exported(x.numpy()))
            if got.shape != ref.shape:
                raise ExportError(
                    f"the exported model answered shape {got.shape} for a batch of {len(x)}, not {ref.shape}"
                )
            worst = max(worst, float(np.abs(got - ref).max()))
    return worst


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """The TorchScript exporter is chosen knowingly (module doc): its deprecation notice and the
    tracer's notes on Python-side shape checks (constant for a fixed 28x28 input) are noise here.
    Any failure becomes one ExportError line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            yield
        except ExportError:
            raise
        except Exception as e:  # torch raises many types here; the user needs the first line
            text = str(e).strip()
            raise ExportError(f"export failed: {text.splitlines()[0] if text else type(e).__name__}") from None


def _onnx_bytes(module: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    buf = io.BytesIO()
    with _quiet_tracing():
        torch.onnx.export(
            module,
            (example,),
            buf,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "N"}, OUTPUT: {0: "N"}},
            opset_version=opset,
            dynamo=False,
        )
    return buf.getvalue()


def _torchscript_save(traced: torch.jit.ScriptModule, meta: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={"mnistlab.json": json.dumps(meta, indent=1)})
    return buf.getvalue()


def _check_out(out: Path, fmt: str) -> Path:
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out} is a folder: give a file name, e.g. {out / ('model.' + _suffix(fmt))}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create the folder {out.parent}: {e.strerror or e}") from None
    return out


def _suffix(fmt: str) -> str:
    return "onnx" if fmt == "onnx" else "pt"


def export_module(
    net: nn.Module,
    out: str | Path,
    fmt: str = "onnx",
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, Any] | None = None,
    digits: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Exported:
    """Export `net` (canonical digit -> logits) as probabilities to `out`, checked, then written.

    The file is written (atomically) only once the exported model has answered the check inputs
    at every batch size of CHECK_BATCHES; the difference is returned, not asserted (callers and
    tests decide what is close enough). `digits` (canonical images, labels), when given, are read
    by both too: `Exported.digits` says how the file and PyTorch compare on them.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "onnx" and not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: choose {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
    out = _check_out(Path(out), fmt)
    start, cpu0 = time.perf_counter(), time.process_time()
    module = Probabilities(net).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    inputs = check_inputs()
    # A first call before tracing: values a transform caches (seed 0.4's random mask) then enter
    # the graph as constants, not as the random draw that made them.
    with torch.no_grad():
        module(inputs[0])
    meta = {
        "mnistlab.input": INPUT_DOC,
        "mnistlab.output": OUTPUT_DOC,
        "mnistlab.version": __version__,
        "torch.version": torch.__version__,
        **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()},
    }
    if fmt == "onnx":
        onnx, _ = _require_onnx()
        model = onnx.load_from_string(_onnx_bytes(module, inputs[0], opset))
        session = onnx_session(model.SerializeToString())
        runtime = "onnxruntime"

        def run_file(x: np.ndarray) -> np.ndarray:
            return session.run([OUTPUT], {INPUT: x})[0]

    else:
        runtime = "TorchScript"
        with _quiet_tracing():  # torch 2.13 marks torch.jit deprecated too (docs/export.md)
            with torch.no_grad():
                traced = torch.jit.trace(module, inputs[0], check_trace=False)
            loaded = torch.jit.load(io.BytesIO(_torchscript_save(traced, meta)))  # our own bytes, just made

        def run_file(x: np.ndarray) -> np.ndarray:
            with torch.no_grad(), _quiet_tracing():
                return loaded(torch.from_numpy(x)).numpy()

    diff = max_abs_diff(run_file, module, inputs)
    meta["mnistlab.check"] = _check_note(diff, runtime)
    on_digits = None
    if digits is not None:
        on_digits = compare_on_digits(run_file, module, *digits)
        meta["mnistlab.check_digits"] = (
            f"{on_digits['n']} MNIST test digits: accuracy {on_digits['acc_file']:.4f} ({runtime}) vs "
            f"{on_digits['acc_torch']:.4f} (torch), {on_digits['disagree']} read differently, "
            f"max |p_{runtime} - p_torch| = {on_digits['max_abs_diff']:.3g}"
        )
    if fmt == "onnx":
        model.doc_string = f"mnistlab {meta.get('mnistlab.run', 'model')}: {INPUT_DOC}. {OUTPUT_DOC}."
        model.graph.input[0].doc_string = INPUT_DOC
        model.graph.output[0].doc_string = OUTPUT_DOC
        del model.metadata_props[:]
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=value)
        try:
            onnx.checker.check_model(model, full_check=True)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"the exported ONNX model does not pass onnx.checker: {str(e).splitlines()[0]}") from None
        data = model.SerializeToString()
    else:
        with _quiet_tracing():
            data = _torchscript_save(traced, meta)  # the same graph, now with the checks in its metadata
    try:
        runs.atomic_write_bytes(out, data)
        out.chmod(0o644)  # a file to hand on or host: readable by others, as a plain write would be
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    return Exported(
        path=out,
        format=fmt,
        opset=opset if fmt == "onnx" else None,
        max_abs_diff=diff,
        batches=CHECK_BATCHES,
        bytes=len(data),
        wall_s=time.perf_counter() - start,
        cpu_s=time.process_time() - cpu0,
        metadata=meta,
        digits=on_digits,
    )


def compare_on_digits(
    run_file: Callable[[np.ndarray], np.ndarray], module: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, Any]:
    """The exported file and PyTorch on the same real digits: accuracy of each, how many digits
    they read differently, and the largest probability difference."""
    file_hits = torch_hits = disagree = 0
    worst = 0.0
    with torch.no_grad():
        for i in range(0, len(images), 1000):
            x, y = images[i : i + 1000], labels[i : i + 1000].numpy()
            ref, got = module(x).numpy(), np.asarray(run_file(x.numpy()))
            worst = max(worst, float(np.abs(got - ref).max()))
            file_hits += int((got.argmax(1) == y).sum())
            torch_hits += int((ref.argmax(1) == y).sum())
            disagree += int((got.argmax(1) != ref.argmax(1)).sum())
    n = len(images)
    return {"n": n, "acc_file": file_hits / n, "acc_torch": torch_hits / n, "disagree": disagree, "max_abs_diff": worst}


def _check_note(diff: float, runtime: str) -> str:
    sizes = " and ".join(str(n) for n in CHECK_BATCHES)
    return f"max |p_{runtime} - p_torch| = {diff:.3g} on uniform-noise inputs, batches of {sizes} (seed {CHECK_SEED})"


def run_metadata(run: runs.LoadedRun) -> dict[str, Any]:
    """What the file says about where it came from (the run, its model, data variant, accuracy)."""
    meta: dict[str, Any] = {
        "mnistlab.run": run.path.name,
        "mnistlab.model": run.config.model,
        "mnistlab.seed": str(run.config.seed),
        "mnistlab.data": dataclasses.asdict(run.config.data),
    }
    if run.result and run.result.get("test_acc") is not None:
        meta["mnistlab.test_acc"] = f"{run.result['test_acc']:.4f}"
    return meta


def export_run(
    run_ref: str | Path,
    out: str | Path,
    fmt: str = "onnx",
    opset: int = DEFAULT_OPSET,
    test_digits: int = 0,
    data_dir: str | Path | None = None,
) -> Exported:
    """`mnistlab export RUN OUT`: a run folder (or its name under the runs root) to one file.

    `test_digits` > 0 also reads the first that many MNIST test digits (plain, as the canonical
    input) with the file and with PyTorch (Exported.digits).
    """
    if fmt == "onnx":
        _require_onnx()  # before loading anything: the missing extra is the first thing to say
    if not 0 <= test_digits <= 10_000:
        raise ExportError(f"--test-digits must be 0..10000 (MNIST has 10,000 test digits), got {test_digits}")
    run = runs.load_run(run_ref, "cpu")
    digits = None
    if test_digits:
        from mnistlab.data import load_mnist

        mnist = load_mnist(data_dir)
        digits = (mnist.test_images[:test_digits].float().div(255).unsqueeze(1), mnist.test_labels[:test_digits])
    return export_module(canonical_module(run), out, fmt, opset, run_metadata(run), digits)


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata an exported file carries (via onnxruntime: no onnx import needed to read it)."""
    return dict(onnx_session(Path(path)).get_modelmeta().custom_metadata_map)
