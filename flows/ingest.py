"""`eulernet ingest`: build artifacts/manifest.csv from the dataset named in params.yaml `data:`."""
from __future__ import annotations

import argparse
from pathlib import Path

from flows.args import params_option
from flows.errors import StageError

HELP = "build the manifest from a dataset (sample, generic CSV, OULU-NPU)"
OUT = Path("artifacts/manifest.csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    params_option(parser, "data")
    parser.add_argument("--out", default=str(OUT), help=f"manifest to write (default {OUT})")


def summarize(df) -> str:
    """Per-split counts of videos by attack type, plus subjects, devices and scenes."""
    table = df.pivot_table(index="split", columns="attack_type", values="video_id", aggfunc="count", fill_value=0)
    table["videos"] = table.sum(axis=1)
    table["subjects"] = df.groupby("split")["subject_id"].nunique()
    lines = [f"{len(df)} videos, {df['subject_id'].nunique()} subjects, devices {sorted(df['device'].unique())}, "
             f"scenes {sorted(df['scene'].unique())}", table.to_string()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from components.config import ConfigError, load_section
    from components.data.adapters import IngestConfig, load_dataset
    from components.data.manifest import ManifestError, write_manifest
    from components.runtime import header

    try:
        cfg = load_section(IngestConfig, "data", args.params)
        header("ingest", f"{cfg.adapter} dataset in {cfg.root} -> {args.out}")
        df = load_dataset(cfg)
        write_manifest(df, args.out)
    except (ConfigError, ManifestError, ValueError, OSError) as exc:
        raise StageError(exc) from None
    print(summarize(df))
    print(f"wrote {args.out}: {len(df)} videos")
    return 0
