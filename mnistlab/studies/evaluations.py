"""Tests a study runs on every trained run besides MNIST's own (`evaluate = ["uci"]` in a study
file): each run is loaded as a `Predictor`, read through an app's own path, and its accuracy is
written into the run's result.json under `extra_tests` (beside `test_inverted`), so the report's
table and its `extra_tests` figure show it like any other test set.

An evaluation is not part of a run's config (a run is a pure function of config and seed): it is
done once a run is complete, also for runs trained before the study asked for it, and never
again for a run whose result already has it. `quick` studies evaluate on a small slice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnistlab import runs
from mnistlab.predictor import Predictor

QUICK_LIMIT = 100  # digits a --quick study evaluates on


def _uci(predictor: Predictor, quick: bool) -> dict[str, Any]:
    """scikit-learn's UCI digits through the single-digit reader, exactly as `mnistlab evaluate-uci`."""
    from mnistlab.handwriting.evaluate import evaluate_uci

    summary, _ = evaluate_uci(predictor, limit=QUICK_LIMIT if quick else None)
    keep = ("acc", "n", "no_digit", "upscale", "per_class")
    return {k: summary[k] for k in keep} | {"reader": "evaluate-uci (single-digit path)"}


EVALUATIONS: dict[str, Callable[[Predictor, bool], dict[str, Any]]] = {"uci": _uci}


def pending(names: tuple[str, ...], run_dir: Path) -> list[str]:
    """The evaluations in `names` that the complete run at `run_dir` has not recorded yet."""
    if not names or not runs.is_complete(run_dir):
        return []
    done = runs.read_json(run_dir / runs.RESULT).get("extra_tests") or {}
    return [n for n in names if n not in done]


def evaluate_run(names: tuple[str, ...], run_dir: Path, quick: bool = False, device: str | None = None) -> dict:
    """Run the pending evaluations of `run_dir` and record them in its result.json; returns the result."""
    todo = pending(names, run_dir)
    result = runs.read_json(run_dir / runs.RESULT)
    if not todo:
        return result
    predictor = Predictor.load(run_dir, device or "cpu")
    extra = dict(result.get("extra_tests") or {})
    for name in todo:
        extra[name] = EVALUATIONS[name](predictor, quick)
    result["extra_tests"] = extra
    runs.atomic_write_json(run_dir / runs.RESULT, result)
    return result
