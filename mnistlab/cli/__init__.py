"""The `mnistlab` command. A thin layer: parse, call the library, print.

Each module in this package defines its commands as plain module-level functions (typer options
in `Annotated` types, real Python defaults: `from mnistlab.cli.core import train; train("dnn",
epochs=1)` works) and a `register(app)` that only registers them. Modules are found
automatically, so a new command group is a new file here, nothing else. Errors of the library
(MnistlabError) become one line on stderr and exit status 1; Ctrl-C keeps what was recorded and
exits non-zero.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Annotated

import typer

from mnistlab import threads as mthreads
from mnistlab.errors import MnistlabError

app = typer.Typer(
    name="mnistlab",
    help="A fast, reproducible lab for handwritten-digit recognition.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(app)


@app.callback()
def _threads(
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="torch CPU threads for this command (default: the free cores, see mnistlab/threads.py; "
            "or $MNISTLAB_THREADS).",
        ),
    ] = None,
) -> None:
    # Chosen before any command runs: torch's default collapses on a busy machine (threads.py).
    # Not printed (bad input stays one line); run records and bench lines say what was chosen.
    mthreads.ensure(threads)


_register_all()


def main(argv: list[str] | None = None) -> None:
    # Typer's standalone mode handles usage errors (exit 2) and turns Ctrl-C into "Aborted!";
    # what is left to us are the library's own errors.
    try:
        app(args=argv, prog_name="mnistlab")
    except MnistlabError as e:
        print(f"mnistlab: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("mnistlab: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `mnistlab ... | head`
        sys.exit(0)
