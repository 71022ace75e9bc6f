"""`mnistlab export RUN OUT.onnx` and `mnistlab export-web RUN OUT/`: models you can take away."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnistlab.cli._common import DataDir, JsonObject, err, out, print_json

RunArgument = Annotated[
    str, typer.Argument(help="A run folder, its name under the runs root, or `default` (the handwriting model).")
]
Opset = Annotated[int | None, typer.Option("--opset", help="ONNX opset, 11..20 (default 17).")]


def _run_path(run: str) -> str | Path:
    """`default` is the handwriting model (as in `serve`), trained once on first use; else as given."""
    from mnistlab import runs

    if run != "default" or (runs.runs_root() / run).is_dir():
        return run
    from mnistlab.cli.predict import load_reader

    return load_reader(None).path  # trains and caches it when missing, with a progress bar


def export_cmd(
    run: RunArgument,
    dest: Annotated[Path, typer.Argument(help="The file to write, e.g. model.onnx (TorchScript: model.pt).")],
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    opset: Opset = None,
    test_digits: Annotated[
        int,
        typer.Option(
            "--test-digits", help="Also read the first N MNIST test digits with the file and with PyTorch, and compare."
        ),
    ] = 0,
    data_dir: DataDir = None,
    json_out: JsonObject = False,
) -> None:
    """Export a run as one file taking the canonical digit (N, 1, 28, 28) and giving probabilities (N, 10)."""
    from mnistlab.errors import ConfigError
    from mnistlab.export import DEFAULT_OPSET, export_run

    if opset is not None and fmt != "onnx":
        raise ConfigError("--opset applies to --format onnx only")
    e = export_run(_run_path(run), dest, fmt, DEFAULT_OPSET if opset is None else opset, test_digits, data_dir)
    if json_out:
        print_json(e.to_json())
        return
    kind = f"ONNX opset {e.opset}" if e.format == "onnx" else "TorchScript"
    runtime = "onnxruntime" if e.format == "onnx" else "TorchScript"
    sizes = " and ".join(map(str, e.batches))
    out.print(
        f"wrote {e.path} ({kind}, {e.bytes / 1e6:.2f} MB): image (N, 1, 28, 28) in [0, 1], white on black -> probs (N, 10)"
    )
    out.print(
        f"checked: max |p_{runtime} - p_torch| = {e.max_abs_diff:.2g} on batches of {sizes} "
        f"({e.wall_s:.2f} s wall, {e.cpu_s:.2f} s CPU)"
    )
    if e.digits:
        d = e.digits
        out.print(
            f"{d['n']} MNIST test digits: accuracy {d['acc_file']:.4f} ({runtime}) vs {d['acc_torch']:.4f} (PyTorch), "
            f"{d['disagree']} read differently, max |p_{runtime} - p_torch| = {d['max_abs_diff']:.2g}"
        )


def export_web_cmd(
    run: RunArgument,
    dest: Annotated[
        Path, typer.Argument(help="The folder to write the page into (new, empty, or an earlier export-web).")
    ],
    opset: Opset = None,
    ort_dir: Annotated[
        Path | None,
        typer.Option(
            "--ort-dir", help="A copy of onnxruntime-web's dist/ files to use instead of fetching it with npm."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object (mnistlab-export.json).")] = False,
) -> None:
    """Write a static page that reads a drawn digit in the browser (onnxruntime-web), for any static host."""
    from mnistlab.export import DEFAULT_OPSET
    from mnistlab.export_web import ORT_WEB_VERSION, build_site

    manifest = build_site(_run_path(run), dest, DEFAULT_OPSET if opset is None else opset, ort_dir, note=err.print)
    if json_out:
        print_json(manifest)
        return
    acc = f", MNIST test {manifest['test_acc']:.4f}" if manifest.get("test_acc") is not None else ""
    out.print(
        f"wrote {dest}/ ({len(manifest['files'])} files, {manifest['bytes'] / 1e6:.1f} MB): "
        f"{manifest['run']} ({manifest['model']}{acc}) as ONNX opset {manifest['opset']}, onnxruntime-web {ORT_WEB_VERSION}"
    )
    out.print(f"host the folder anywhere static, or try it here: python -m http.server -d {dest} 8000")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.command("export-web")(export_web_cmd)
