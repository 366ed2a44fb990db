"""`eulernet benchmark temporal --out DIR`: the held-out temporal benchmark in one command.

Generates temporal-only synthetic videos with identity-disjoint splits, labels them (Ray Data), trains the
default EulerNet over three seeds plus the paper and single-frame rows (Ray Train, tracked in MLflow), scores
two non-learned references, and writes DIR/summary.json and DIR/table.md. Rerunning with the same DIR reuses
every finished step. Details and figures: docs/training.md, "Temporal benchmark".
"""
from __future__ import annotations

import argparse
import os
import sys

HELP = "held-out temporal benchmark: generate, label, train, evaluate; writes summary.json and table.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from components.benchmark.temporal import MODEL_ROWS, SETTINGS, TemporalBenchmarkConfig

    d = TemporalBenchmarkConfig()
    parser.add_argument("suite", choices=["temporal"], help="which benchmark (only 'temporal' so far)")
    parser.add_argument("--out", required=True, help="output folder; a rerun with the same folder reuses finished steps")
    parser.add_argument("--setting", choices=SETTINGS, default=d.setting,
                        help="generator preset: default (realistic cue strengths) or hard (faint pulse, blur, "
                             "stronger compression)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(d.seeds), help="seeds of the eulernet row")
    parser.add_argument("--control-seeds", type=int, nargs="+", default=list(d.control_seeds),
                        help="seeds of the paper and single_frame rows")
    parser.add_argument("--rows", nargs="+", choices=MODEL_ROWS, default=list(d.rows), help="learned rows to run")
    parser.add_argument("--subjects", type=int, help=f"subjects (default {d.n_subjects})")
    parser.add_argument("--epochs", type=int, help=f"training epochs per run (default {d.epochs})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke size (a few minutes; too few test videos for the figures to mean anything)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from components.benchmark.temporal import TemporalBenchmarkConfig, run_benchmark
    from components.training.tracking import tracking_uri

    over = {"setting": args.setting, "seeds": tuple(args.seeds), "control_seeds": tuple(args.control_seeds),
            "rows": tuple(args.rows)}
    if args.subjects is not None:
        over["n_subjects"] = args.subjects
    if args.epochs is not None:
        over["epochs"] = args.epochs
    try:
        cfg = TemporalBenchmarkConfig.quick(**over) if args.quick else TemporalBenchmarkConfig(**over)
    except (TypeError, ValueError) as exc:
        print(f"eulernet benchmark: {exc}", file=sys.stderr)
        return 2

    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = not args.no_progress
    try:
        summary = run_benchmark(cfg, args.out, tracking_uri=tracking_uri("."), progress=not args.no_progress)
    except ValueError as exc:
        print(f"eulernet benchmark: {exc}", file=sys.stderr)
        return 2
    from pathlib import Path

    print((Path(args.out) / "table.md").read_text())
    print(f"summary: {Path(args.out) / 'summary.json'} ({summary['wall_s'] / 60:.1f} min)")
    return 0
