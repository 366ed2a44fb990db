"""`eulernet ablation`: the paper's Table I (baseline and C1-C5) trained and evaluated on the same shards over
seeds, written as a markdown table to artifacts/ablation/table.md (plus runs.csv and Fig. 7-style curves).

The `train` section is the base configuration; --epochs/--width override it for a quick rerun.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

HELP = "train and evaluate the paper's Table I variants and write the table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file; `train` is the base config")
    parser.add_argument("--shards", default="artifacts/shards", help="labeled shards (train, dev, test)")
    parser.add_argument("--out", default="artifacts/ablation", help="output folder")
    parser.add_argument("--variants", nargs="+", default=["c1", "c2", "c3", "c4", "c5", "baseline"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override train.epochs")
    parser.add_argument("--width", type=float, help="override train.width")
    parser.add_argument("--experiment", default="eulernet-ablation", help="MLflow experiment name")


def run(args: argparse.Namespace) -> int:
    from components.config import ConfigError, load_section, read_params
    from components.metrics.evaluate import EvalConfig
    from components.runtime import init_ray, provenance_tags, storage_root, tracking_uri
    from components.training import TrainConfig

    try:
        params = read_params(args.params)
        base = load_section(TrainConfig, "train", params)
        ev = load_section(EvalConfig, "evaluate", params) if "evaluate" in params else EvalConfig()
        over = {k: v for k, v in (("epochs", args.epochs), ("width", args.width)) if v is not None}
        base = dataclasses.replace(base, **over)
    except (ConfigError, ValueError) as exc:
        print(f"eulernet ablation: {exc}", file=sys.stderr)
        return 2
    if not (Path(args.shards) / "index.csv").is_file():
        print(f"eulernet ablation: no shards in {args.shards}: run `eulernet label` first", file=sys.stderr)
        return 2

    from components.training.ablation import run_ablation

    init_ray()
    storage = storage_root() + "/ray_runs"
    runs = run_ablation(base, args.shards, args.out, storage, args.variants, args.seeds,
                        tracking_uri=tracking_uri(), experiment=args.experiment,
                        tags=provenance_tags("ablation"),
                        eval_cfg=dataclasses.replace(ev, gradcam_clips=0),
                        run_prefix=f"ablation-{time.strftime('%Y%m%d-%H%M%S')}")
    print((Path(args.out) / "table.md").read_text())
    print(f"{len(runs)} runs: {Path(args.out) / 'runs.csv'}")
    return 0
