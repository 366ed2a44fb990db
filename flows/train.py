"""Stage `train`: artifacts/shards -> Ray Train (TorchTrainer) -> artifacts/model/, tracked in MLflow.

Writes checkpoint.pt (the best epoch by dev ACER, Predictor format), history.csv, train_metrics.json and
training_curves.png. `--resume NAME` continues an interrupted run from its last checkpoint.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from flows.args import params_option
from flows.errors import StageError
from flows.gates import checked_gates, gates_options

HELP = "train EulerNet with Ray Train, tracked in MLflow"
WALL_CLOCK = ("epoch_time_s", "clips_per_s")  # per-epoch timings: MLflow metrics, not DVC outputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    params_option(parser, "train", "how the shards were cut comes from the shards")
    parser.add_argument("--shards", default="artifacts/shards", help="labeled shards from `eulernet label`")
    parser.add_argument("--out", default="artifacts/model", help="output folder")
    parser.add_argument("--headline", default="metrics/train.json",
                        help="best epoch, dev ACER and loss: a small file tracked by git (dvc exp show)")
    parser.add_argument("--resume", metavar="RUN_NAME", help="continue this interrupted Ray Train run")
    parser.add_argument("--experiment", default="eulernet", help="MLflow experiment name")
    gates_options(parser, "train")


def run(args: argparse.Namespace) -> int:
    from components.config import ConfigError, load_section, read_params
    from components.runtime import header, init_ray, provenance_tags, storage_root, tracking_uri
    from components.training.config import TrainConfig

    try:
        params = read_params(args.params)
        cfg = load_section(TrainConfig, "train", params)
    except ConfigError as exc:
        raise StageError(exc) from None
    if not (Path(args.shards) / "index.csv").is_file():
        raise StageError(f"no shards in {args.shards}: run `eulernet label` first")
    tags = {**provenance_tags("train"), "data_gates": checked_gates(args)}

    from components.files import write_csv, write_json
    from components.metrics.plots import plot_training_curves
    from components.training.driver import TrainingError, copy_best, fit, resumable_run_name
    from components.training.progress import EpochProgress

    storage = storage_root() + "/ray_runs"
    uri = tracking_uri()
    # Same params + same shards -> same run: a killed `dvc repro` continues where its last checkpoint was.
    run_name = args.resume or resumable_run_name(cfg, args.shards, storage, uri, args.experiment)
    header("train", f"{cfg.variant} (width {cfg.width}), {cfg.epochs} epochs, {cfg.num_workers} Ray Train "
                    f"worker{'s' if cfg.num_workers != 1 else ''}, run {run_name}{' (resumed)' if args.resume else ''} "
                    f"-> {args.out}")
    init_ray()
    try:
        with EpochProgress(uri, cfg.epochs) as progress:  # an epoch bar fed from the MLflow run
            result = fit(cfg, args.shards, storage, run_name, experiment=args.experiment, tracking_uri=uri,
                         tags=tags, on_start=progress.start)
    except TrainingError as exc:
        raise StageError(f"{exc}\nresume with: eulernet train --resume {run_name}", code=1) from None
    out = Path(args.out)
    copy_best(result, out / "checkpoint.pt", extra={"data_gates": tags["data_gates"]})
    # DVC outputs hold no wall-clock figures or machine paths: epoch times and throughput are MLflow metrics of
    # the run (mlflow_run_id), the Ray run folder is named relative to the repository when inside it.
    write_csv(result.history.drop(columns=[c for c in WALL_CLOCK if c in result.history.columns]),
              out / "history.csv")
    plot_training_curves({cfg.variant: result.history}, out / "training_curves.png")
    ray_run = result.run_path
    if "://" not in ray_run and Path(ray_run).is_relative_to(Path.cwd()):
        ray_run = str(Path(ray_run).relative_to(Path.cwd()))
    summary = {**{k: v for k, v in result.best.items()
                  if k.startswith(("dev_", "train_loss", "epoch")) and k not in WALL_CLOCK},
               "best_epoch": result.best.get("epoch"), "mlflow_run_id": result.run_id, "ray_run": ray_run,
               "resumed_from": result.resumed_from, **tags}
    write_json(out / "train_metrics.json", summary)
    write_json(getattr(args, "headline", "metrics/train.json"), {  # numbers only: what experiments compare
        "best_epoch": summary.get("best_epoch"), "dev_acer": summary.get("dev_acer"),
        "train_loss": summary.get("train_loss")})
    acer = summary.get("dev_acer")
    print(f"best epoch {summary['best_epoch']}/{cfg.epochs}: dev ACER "
          f"{'n/a' if acer is None else f'{100 * acer:.2f}%'}, checkpoint {out / 'checkpoint.pt'}, "
          f"MLflow run {result.run_id}")
    return 0
