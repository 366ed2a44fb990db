"""The data-gates options of the stages that use labeled shards (train, evaluate, ablation), and their check."""
from __future__ import annotations

import argparse


def gates_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--gates``/``--skip-gates``: the validate verdict the shards' manifest must have passed."""
    parser.add_argument("--gates", default="artifacts/quality/summary.json",
                        help="the `eulernet validate` verdict the shards' manifest must have passed")
    parser.add_argument("--skip-gates", action="store_true",
                        help=f"{what} on data that has not passed validation (recorded with the result)")


def checked_gates(args: argparse.Namespace) -> str:
    """``"passed"`` when the shards were cut from a manifest whose validate verdict still stands, ``"skipped"``
    with ``--skip-gates``; anything else stops the stage (exit 2) saying why. The result travels with what the
    stage writes (MLflow tag, checkpoint, metrics), so un-gated data is never mistaken for gated."""
    from components.quality.gates import GateError, require_shards_passed
    from flows.errors import StageError

    if getattr(args, "skip_gates", False):
        return "skipped"
    try:
        require_shards_passed(args.shards, getattr(args, "gates", "artifacts/quality/summary.json"))
    except GateError as exc:
        raise StageError(exc) from None
    return "passed"
