"""Stage `train`: artifacts/shards -> Ray Train (TorchTrainer) -> artifacts/model/, tracked in MLflow.

Writes checkpoint.pt (the best epoch by dev ACER, Predictor format), history.csv, train_metrics.json and
training_curves.png. `--resume NAME` continues an interrupted run from its last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HELP = "train EulerNet with Ray Train, tracked in MLflow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file; reads `train` (and `label` crop info)")
    parser.add_argument("--shards", default="artifacts/shards", help="labeled shards from `eulernet label`")
    parser.add_argument("--out", default="artifacts/model", help="output folder")
    parser.add_argument("--resume", metavar="RUN_NAME", help="continue this interrupted Ray Train run")
    parser.add_argument("--experiment", default="eulernet", help="MLflow experiment name")


def run(args: argparse.Namespace) -> int:
    from components.labeling.pipeline import LabelConfig
    from components.training import TrainConfig
    from components.runtime import init_ray, provenance_tags, storage_root, tracking_uri
    from components.config import ConfigError, load_section, read_params

    try:
        params = read_params(args.params)
        cfg = load_section(TrainConfig, "train", params)
        label = load_section(LabelConfig, "label", params) if "label" in params else LabelConfig()
    except ConfigError as exc:
        print(f"eulernet train: {exc}", file=sys.stderr)
        return 2
    if not (Path(args.shards) / "index.csv").is_file():
        print(f"eulernet train: no shards in {args.shards}: run `eulernet label` first", file=sys.stderr)
        return 2
    # Crop size and clip length come from the shards themselves (fit reads them); the rest of the clip
    # layout and the landmark backend from the label section, so serving crops exactly like labeling did.
    meta = {"clip_interval": label.clip_interval, "clips_per_video": label.clips_per_video,
            "landmark_backend": label.backend, "landmark_options": dict(label.backend_options),
            "face_fraction": label.face_fraction, "max_side": label.max_side}
    tags = provenance_tags("train")

    from components.metrics.plots import plot_training_curves
    from components.training import TrainingError, copy_best, fit

    init_ray()
    storage = storage_root() + "/ray_runs"
    run_name = args.resume or f"{cfg.variant}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = fit(cfg, args.shards, storage, run_name, experiment=args.experiment, tracking_uri=tracking_uri(),
                     tags=tags, meta=meta)
    except TrainingError as exc:
        print(f"eulernet train: {exc}\nresume with: eulernet train --resume {run_name}", file=sys.stderr)
        return 1
    out = Path(args.out)
    copy_best(result, out / "checkpoint.pt")
    result.history.to_csv(out / "history.csv", index=False)
    plot_training_curves({cfg.variant: result.history}, out / "training_curves.png")
    summary = {**{k: v for k, v in result.best.items() if k.startswith(("dev_", "train_loss", "epoch"))},
               "best_epoch": result.best.get("epoch"), "mlflow_run_id": result.run_id, "ray_run": result.run_path,
               "resumed_from": result.resumed_from, **tags}
    (out / "train_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"best epoch {summary['best_epoch']}: dev ACER {summary.get('dev_acer')}, "
          f"checkpoint {out / 'checkpoint.pt'}, MLflow run {result.run_id}")
    return 0
