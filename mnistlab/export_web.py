"""`mnistlab export-web RUN OUT/`: a folder that reads a drawn digit entirely in the browser.

OUT/ holds the page (index.html, app.js, pad.js, normalize.js, style.css, page.css), the run exported as ONNX
(model.onnx, see export.py), mnistlab-export.json (what the page shows and the file list) and
onnxruntime-web's WebAssembly build under ort/. Any static host serves it; nothing is fetched
from elsewhere when the page runs (its Content-Security-Policy refuses it).

onnxruntime-web comes from the npm registry at build time, pinned to one version and checked
against the registry's sha512 for it: `npm pack` fetches that one tarball (no dependencies: the
dist files are self-contained) into the user cache the first time, and only the three files the
page needs are kept (~14 MB). `--ort-dir` points at a copy already on disk instead (offline).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnistlab import __version__
from mnistlab.export import DEFAULT_OPSET, INPUT, OUTPUT, ExportError, export_run

ORT_WEB_VERSION = "1.30.0"
# `npm view onnxruntime-web@1.30.0 dist.integrity`: the tarball must be exactly this one
ORT_WEB_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
# The WebAssembly-only build: the UMD script (global `ort`), the module it imports to start the
# runtime, and the runtime. (The WebGPU/WebGL builds would add ~15 MB for a 28x28 input.)
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_DIR = Path(__file__).parent / "web" / "standalone"
PAGE_FILES = ("index.html", "app.js", "normalize.js", "page.css")
# The drawing pad and the look are one file each for both pages: the served page's copies ship
# with the export (page.css holds the few rules where the exported page differs).
SHARED_FILES = tuple(Path(__file__).parent / "web" / "static" / name for name in ("pad.js", "style.css"))
MANIFEST = "mnistlab-export.json"
MODEL = "model.onnx"
NPM_TIMEOUT_S = 600


def ort_web_cache() -> Path:
    """$MNISTLAB_CACHE/npm/onnxruntime-web-VERSION, else ~/.cache/mnistlab/npm/... (as the model cache)."""
    if os.environ.get("MNISTLAB_CACHE"):
        base = Path(os.environ["MNISTLAB_CACHE"]).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnistlab"
    return base / "npm" / f"onnxruntime-web-{ORT_WEB_VERSION}"


def _has_files(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ORT_FILES)


def _from_dir(ort_dir: Path) -> Path:
    """A folder holding the dist files: the files themselves, an npm package, or a node_modules."""
    for folder in (
        ort_dir,
        ort_dir / "dist",
        ort_dir / "package" / "dist",
        ort_dir / "node_modules/onnxruntime-web/dist",
    ):
        if _has_files(folder):
            return folder
    raise ExportError(f"--ort-dir {ort_dir}: no {', '.join(ORT_FILES)} there (nor in its dist/)")


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise ExportError(
            f"export-web vendors onnxruntime-web {ORT_WEB_VERSION} from the npm registry and `npm` was not found: "
            "install Node.js and npm (apt-get install npm), or pass --ort-dir with a copy of its dist/ files"
        )
    return npm


def _npm_pack(dest: Path) -> Path:
    npm = _npm()
    spec = f"onnxruntime-web@{ORT_WEB_VERSION}"
    try:
        proc = subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(dest), "--silent"],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            cwd=dest,
        )
    except subprocess.TimeoutExpired:
        raise ExportError(
            f"npm pack {spec} did not finish in {NPM_TIMEOUT_S} s (is the npm registry reachable?)"
        ) from None
    tarballs = sorted(dest.glob("onnxruntime-web-*.tgz"))
    if proc.returncode != 0 or not tarballs:
        lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise ExportError(f"npm pack {spec} failed: {reason}")
    return tarballs[0]


def ensure_ort_web(ort_dir: str | Path | None = None, note: Callable[[str], None] | None = None) -> Path:
    """The folder holding ORT_FILES: --ort-dir, else the cache, filled from npm the first time
    (`note` is told before the download starts)."""
    if ort_dir is not None:
        return _from_dir(Path(ort_dir).expanduser())
    cache = ort_web_cache()
    if _has_files(cache):
        return cache
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create the cache folder {cache.parent}: {e.strerror or e}") from None
    _npm()  # no npm: say so before anything else
    if note is not None:
        note(f"fetching onnxruntime-web {ORT_WEB_VERSION} with npm (once), into {cache}")
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=".ort-web-") as tmp:
        tgz = _npm_pack(Path(tmp))
        got = _integrity(tgz)
        if got != ORT_WEB_INTEGRITY:
            raise ExportError(f"{tgz.name} from npm does not match the pinned sha512 ({got[:30]}...): not using it")
        unpacked = Path(tmp) / "files"
        unpacked.mkdir()
        with tarfile.open(tgz) as tar:  # only named members are read: no path from the archive is used
            for name in ORT_FILES:
                try:
                    member = tar.extractfile(f"package/dist/{name}")
                except KeyError:
                    member = None
                if member is None:
                    raise ExportError(f"{tgz.name} has no dist/{name}: not onnxruntime-web {ORT_WEB_VERSION}?")
                (unpacked / name).write_bytes(member.read())
        if cache.exists():  # a partial copy from an interrupted run
            shutil.rmtree(cache)
        unpacked.rename(cache)  # whole or not at all
    return cache


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file: give a folder to write the page into")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ExportError(f"{out} is not empty and was not made by export-web: choose a new or empty folder")


def build_site(
    run_ref: str | Path,
    out_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    ort_dir: str | Path | None = None,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the static page for one run into `out_dir`; returns what mnistlab-export.json says.

    The folder is built beside `out_dir` and moved into place at the end, so a failure leaves
    the previous export (or nothing) there, never half of one. A folder that is not empty and
    was not made by export-web is refused, never overwritten.
    """
    out = Path(out_dir)
    _check_out_dir(out)
    ort = ensure_ort_web(ort_dir, note)  # before the export: a missing npm is the first thing to say
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.build-"))
    except OSError as e:
        raise ExportError(f"cannot write beside {out}: {e.strerror or e}") from None
    try:
        exported = export_run(run_ref, work / MODEL, "onnx", opset)
        for name in PAGE_FILES:
            shutil.copyfile(PAGE_DIR / name, work / name)
        for path in SHARED_FILES:
            shutil.copyfile(path, work / path.name)
        (work / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(ort / name, work / "ort" / name)
        meta = exported.metadata
        files = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
        manifest: dict[str, Any] = {
            "run": meta.get("mnistlab.run"),
            "model": meta.get("mnistlab.model"),
            "test_acc": float(meta["mnistlab.test_acc"]) if "mnistlab.test_acc" in meta else None,
            "input": INPUT,
            "output": OUTPUT,
            "input_doc": meta["mnistlab.input"],
            "output_doc": meta["mnistlab.output"],
            "opset": exported.opset,
            "max_abs_diff": exported.max_abs_diff,
            "onnxruntime_web": ORT_WEB_VERSION,
            "mnistlab": __version__,
            "files": files + [MANIFEST],
            "bytes": sum((work / f).stat().st_size for f in files),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        # mkdtemp made the folder private; a static host's server (another user) must read it all
        for p in [work, *work.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        if out.is_dir():  # empty, or a previous export (checked above)
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            work.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest
