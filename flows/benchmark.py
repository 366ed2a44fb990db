"""`eulernet benchmark temporal --out DIR`: the held-out temporal benchmark in one command.

Generates temporal-only synthetic videos with identity-disjoint splits, labels them (Ray Data), trains the
default EulerNet over three seeds plus the paper and single-frame rows (Ray Train, tracked in MLflow), scores
two non-learned references, and writes DIR/summary.json and DIR/table.md. Rerunning with the same DIR reuses
every finished step. Details and figures: docs/training.md, "Temporal benchmark".
"""
from __future__ import annotations

import argparse
import sys

HELP = "held-out temporal benchmark: generate, label, train, evaluate; writes summary.json and table.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from components.benchmark.temporal import MODEL_ROWS, SETTINGS, TemporalBenchmarkConfig

    d = TemporalBenchmarkConfig()
    parser.add_argument("suite", choices=["temporal"], help="which benchmark (only 'temporal' so far)")
    parser.add_argument("--out", required=True, help="output folder; a rerun with the same folder reuses finished steps")
    parser.add_argument("--setting", choices=SETTINGS, default=None,
                        help=f"generator preset: default (realistic cue strengths) or hard (faint pulse, blur, "
                             f"stronger compression); default {d.setting!r}")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help=f"seeds of the eulernet row (default {' '.join(map(str, d.seeds))}; --quick: 0)")
    parser.add_argument("--control-seeds", type=int, nargs="+", default=None,
                        help=f"seeds of the paper and single_frame rows (default {' '.join(map(str, d.control_seeds))})")
    parser.add_argument("--rows", nargs="+", choices=MODEL_ROWS, default=None,
                        help=f"learned rows to run (default {' '.join(d.rows)})")
    parser.add_argument("--subjects", type=int, help=f"subjects (default {d.n_subjects})")
    parser.add_argument("--epochs", type=int, help=f"training epochs per run (default {d.epochs})")
    parser.add_argument("--face-path", choices=["detect", "track"], default=None,
                        help=f"how labeling finds faces: detect on every sampled frame, or track between a few "
                             f"detections (default {d.face_path})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke size (a few minutes; too few test videos for the figures to mean anything)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from components.benchmark.temporal import TemporalBenchmarkConfig, run_benchmark
    from components.runtime import init_ray, tracking_uri

    # Only what was given overrides the chosen size (so --quick keeps its own seeds and sizes).
    given = {"setting": args.setting, "seeds": args.seeds, "control_seeds": args.control_seeds, "rows": args.rows,
             "n_subjects": args.subjects, "epochs": args.epochs, "face_path": args.face_path}
    over = {k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items() if v is not None}
    try:
        cfg = TemporalBenchmarkConfig.quick(**over) if args.quick else TemporalBenchmarkConfig(**over)
    except (TypeError, ValueError) as exc:
        print(f"eulernet benchmark: {exc}", file=sys.stderr)
        return 2

    init_ray()
    try:
        summary = run_benchmark(cfg, args.out, tracking_uri=tracking_uri(), progress=not args.no_progress)
    except ValueError as exc:
        print(f"eulernet benchmark: {exc}", file=sys.stderr)
        return 2
    from pathlib import Path

    print((Path(args.out) / "table.md").read_text())
    print(f"summary: {Path(args.out) / 'summary.json'} ({summary['wall_s'] / 60:.1f} min)")
    return 0
