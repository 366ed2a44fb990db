"""`eulernet ablation`: the paper's Table I (baseline and C1-C5) trained and evaluated on the same shards over
seeds, written as a markdown table to artifacts/ablation/table.md (plus runs.csv and Fig. 7-style curves).

The `train` section is the base configuration; --epochs/--width override it for a quick rerun.

`eulernet ablation --from-dvc-exps` trains nothing: it prints the same table from DVC experiments, one per
variant and seed, queued with `dvc exp run --queue -S train.variant=c3 ... evaluate` and run by
`dvc queue start` (README "Experiments"), reading `dvc exp show --json` (or a saved copy of it).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from flows.args import params_option
from flows.errors import StageError
from flows.gates import checked_gates, gates_options

HELP = "train and evaluate the paper's Table I variants and write the table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    params_option(parser, "train", "the base config of every row")
    parser.add_argument("--shards", default="artifacts/shards", help="labeled shards (train, dev, test)")
    parser.add_argument("--out", default="artifacts/ablation", help="output folder")
    parser.add_argument("--variants", nargs="+", default=["c1", "c2", "c3", "c4", "c5", "baseline"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override train.epochs")
    parser.add_argument("--width", type=float, help="override train.width")
    parser.add_argument("--experiment", default="eulernet-ablation", help="MLflow experiment name")
    gates_options(parser, "train the table")
    parser.add_argument("--from-dvc-exps", nargs="?", const="dvc", metavar="JSON",
                        help="train nothing: print Table I from DVC experiments (`dvc exp show --json`; or this saved "
                             "output of it, '-' for stdin)")
    parser.add_argument("--exps", default="*", metavar="PATTERN",
                        help="with --from-dvc-exps: only experiments whose name matches (fnmatch, e.g. 't1-*')")


def _dvc_exps(source: str):
    """``dvc exp show --json`` output: run here (``dvc``), read from stdin (``-``) or from a file."""
    import json
    import subprocess

    if source == "-":
        return json.load(sys.stdin)
    if source != "dvc":
        return json.loads(Path(source).read_text())
    import shutil

    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))  # the venv's, when not on PATH
    proc = subprocess.run([dvc, "exp", "show", "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc exp show --json` failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def run_from_dvc_exps(args: argparse.Namespace) -> int:
    import json

    from components.training.ablation import ablation_table, experiments_table, runs_from_dvc_exps

    try:
        runs = runs_from_dvc_exps(_dvc_exps(args.from_dvc_exps), args.exps)
    except (OSError, RuntimeError, json.JSONDecodeError) as exc:
        raise StageError(exc) from None
    if runs.empty:
        raise StageError(f"no DVC experiment matches {args.exps!r}: queue them with `dvc exp run --queue "
                         "-S train.variant=<variant> evaluate` and run `dvc queue start` (README \"Experiments\")",
                         code=1)
    print(ablation_table(runs))
    print(experiments_table(runs))
    missing = runs[runs["test_acer"].isna()]["experiment"].tolist()
    if missing:
        print(f"no {len(missing)} test metrics for: {', '.join(missing)} (failed or not run: `dvc queue status`)")
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "from_dvc_exps", None):
        return run_from_dvc_exps(args)
    from components.config import ConfigError, load_section, read_params
    from components.metrics.evaluate import EvalConfig
    from components.runtime import init_ray, provenance_tags, storage_root, tracking_uri
    from components.training.config import TrainConfig

    try:
        params = read_params(args.params)
        base = load_section(TrainConfig, "train", params)
        ev = load_section(EvalConfig, "evaluate", params) if "evaluate" in params else EvalConfig()
        over = {k: v for k, v in (("epochs", args.epochs), ("width", args.width)) if v is not None}
        base = dataclasses.replace(base, **over)
    except (ConfigError, ValueError) as exc:
        raise StageError(exc) from None
    if not (Path(args.shards) / "index.csv").is_file():
        raise StageError(f"no shards in {args.shards}: run `eulernet label` first")
    gates = checked_gates(args)

    from components.training.ablation import run_ablation

    init_ray()
    storage = storage_root() + "/ray_runs"
    runs = run_ablation(base, args.shards, args.out, storage, args.variants, args.seeds,
                        tracking_uri=tracking_uri(), experiment=args.experiment,
                        tags={**provenance_tags("ablation"), "data_gates": gates},
                        eval_cfg=dataclasses.replace(ev, gradcam_clips=0),
                        run_prefix=f"ablation-{time.strftime('%Y%m%d-%H%M%S')}")
    print((Path(args.out) / "table.md").read_text())
    print(f"{len(runs)} runs: {Path(args.out) / 'runs.csv'}")
    return 0
