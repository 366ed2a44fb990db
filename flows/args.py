"""Options every stage command spells the same way."""
from __future__ import annotations

import argparse

from components.config import DEFAULT_PARAMS


def params_option(parser: argparse.ArgumentParser, section: str, note: str = "") -> None:
    """``--params``: the params file, and which section of it the command reads."""
    parser.add_argument("--params", default=DEFAULT_PARAMS,
                        help=f"params file; reads its `{section}` section" + (f" ({note})" if note else ""))


def manifest_option(parser: argparse.ArgumentParser) -> None:
    """``--manifest``: the manifest `eulernet ingest` wrote."""
    parser.add_argument("--manifest", default="artifacts/manifest.csv", help="manifest written by `eulernet ingest`")

