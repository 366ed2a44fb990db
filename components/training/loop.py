"""The Ray Train worker loop (runs inside every training worker; Ray Train V2 API).

Every worker trains on its split of the ``train`` shard stream (DDP keeps the replicas equal); rank 0 alone
scores the whole ``dev`` stream, chooses the threshold on it, writes the checkpoint and logs to MLflow, so a
run is tracked once however many workers it has. The checkpoint holds two files:
``checkpoint.pt`` (a Predictor checkpoint, what evaluate/register/serve load) and ``train_state.pt``
(optimizer, epoch, history, MLflow run id: what a restarted or resumed run continues from).
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PREDICTOR_FILE = "checkpoint.pt"
STATE_FILE = "train_state.pt"


def _flatten(prefix: str, d: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(key + ".", v))
        else:
            out[key] = v
    return out


class _Tracker:
    """MLflow logging for rank 0 through an explicit client (no global tracking URI is ever set)."""

    def __init__(self, mlflow_cfg: dict | None):
        self.client = None
        self.run_id = None
        if mlflow_cfg and mlflow_cfg.get("run_id"):
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=mlflow_cfg["tracking_uri"])
            self.run_id = mlflow_cfg["run_id"]

    def start(self, params: dict, tags: dict) -> None:
        if not self.client:
            return
        from mlflow.entities import Param, RunTag

        flat = {k: ("None" if v is None else str(v))[:6000] for k, v in _flatten("", params).items()}
        # Re-logging an identical value is allowed, so a restart before the first checkpoint is harmless.
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in sorted(flat.items())],
                              tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_epoch(self, row: dict, epoch: int) -> None:
        if not self.client:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, epoch) for k, v in row.items()
                   if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(float(v))]
        self.client.log_batch(self.run_id, metrics=metrics)

    def tag(self, key: str, value: Any) -> None:
        if self.client:
            self.client.set_tag(self.run_id, key, str(value))


def _dev_scores(model, ds, cfg, mean, std, device) -> "pd.DataFrame":
    """Clip scores of the whole dev stream (rank 0), with the columns ``video_scores`` needs."""
    import pandas as pd
    import torch

    from components.inference import to_model_input

    net = getattr(model, "module", model)  # bare module: no DDP collectives while only rank 0 runs
    net.eval()
    parts = []
    with torch.no_grad():
        for batch in ds.iter_batches(batch_size=max(1, cfg.per_worker_batch * 2), batch_format="numpy"):
            x = to_model_input(batch["frames"], mean, std, device)  # (B, T, 3, S, S)
            maps = net(x).float()  # (B, T, M, M)
            parts.append(pd.DataFrame({
                "video_id": batch["video_id"], "label": batch["label"].astype(int),
                "attack_type": batch["attack_type"], "score": maps.mean(dim=(1, 2, 3)).cpu().numpy(),
            }))
    net.train()
    if not parts:
        raise RuntimeError("the dev split is empty: cannot choose a threshold or rank checkpoints")
    return pd.concat(parts, ignore_index=True)


def _evaluate_dev(clips, rule: str) -> dict:
    from components.metrics import auc, choose_threshold, error_rates, video_scores

    v = video_scores(clips)
    s, y = v["score"].to_numpy(), v["label"].to_numpy()
    t = choose_threshold(s, y, rule)
    r = error_rates(s, y, t)
    return {"dev_apcer": r["apcer"], "dev_bpcer": r["bpcer"], "dev_acer": r["acer"], "dev_threshold": t,
            "dev_auc": auc(s, y)}


def make_optimizer(params, cfg) -> "torch.optim.Optimizer":
    """The optimiser ``cfg.optimizer`` names, at ``cfg.lr`` and ``cfg.weight_decay``."""
    import torch

    from components.model.optim import ranger

    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return ranger(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, warmup_steps: int, total_steps: int | None, schedule: str) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based): a linear warm-up over
    ``warmup_steps``, then constant or a cosine decay to 5 % of the base at ``total_steps``."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine" and total_steps and total_steps > warmup_steps:
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def train_loop_per_worker(config: dict) -> list[dict]:
    """Ray Train worker entry point. ``config`` is built by :func:`components.training.fit`:

    ``train`` (TrainConfig as a dict), ``meta`` (build_meta keyword arguments: crop size, clip layout,
    landmark backend), ``mlflow`` ({tracking_uri, run_id} or None), ``params``/``tags`` (logged by rank 0),
    ``resume_from`` (a checkpoint directory to start from when the run has none of its own) and the test-only
    ``fault`` ({epoch, marker, after_s} or a list of them: rank 0 exits at the start of that epoch, ``after_s``
    seconds after the previous report, once: the ``marker`` file it leaves stops the retry dying again).
    Returns the per-epoch history (rank 0's return value becomes ``Result.return_value``).
    """
    import ray.train
    import ray.train.torch
    import torch

    from components.model import create_model
    from components.inference import build_meta, save_checkpoint, to_model_input
    from components.training.bn import recalibrate_batchnorm
    from components.training.config import TrainConfig

    cfg = TrainConfig(**config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # Same seed on every rank: identical initial weights (DDP also broadcasts), different data per rank.
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed + rank)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)

    meta_kw = dict(config.get("meta") or {})
    model = create_model(cfg.variant, **{"width": cfg.width, "clip_len": int(meta_kw.get("clip_len", 4)),
                                         **cfg.model_overrides})
    model = ray.train.torch.prepare_model(model)  # device placement + DDP when world > 1
    bare = getattr(model, "module", model)  # the EulerNet itself, for checkpoints and rank-0-only scoring
    device = ray.train.torch.get_device()
    optimizer = make_optimizer(model.parameters(), cfg)
    total_steps = config.get("total_steps")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg.warmup_steps, total_steps, cfg.lr_schedule))
    use_amp = bool(cfg.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    mean, std = meta_kw.get("mean", (0.5, 0.5, 0.5)), meta_kw.get("std", (0.5, 0.5, 0.5))

    # Resume: the run's own latest checkpoint (worker restart or re-run of the same name) wins over an
    # explicit starting checkpoint.
    start_epoch, history, resumed_from = 0, [], []
    state = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, map_location=device, weights_only=True)
    elif config.get("resume_from"):
        state = torch.load(Path(config["resume_from"]) / STATE_FILE, map_location=device, weights_only=True)
    mlflow_cfg = dict(config.get("mlflow") or {})
    if state is not None:
        bare.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        if use_amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        resumed_from = list(state.get("resumed_from", [])) + [start_epoch]
        if ckpt is not None and state.get("mlflow_run_id"):
            mlflow_cfg["run_id"] = state["mlflow_run_id"]  # keep logging into the interrupted run

    tracker = _Tracker(mlflow_cfg if rank == 0 else None)
    if rank == 0 and ckpt is None:  # a fresh MLflow run (a restart re-logs identical values, which is allowed)
        tracker.start({"train": cfg.to_dict(), **(config.get("params") or {})}, config.get("tags") or {})
    if rank == 0 and resumed_from:
        tracker.tag("resumed_from_epoch", ",".join(map(str, resumed_from)))

    train_ds = ray.train.get_dataset_shard("train")
    dev_ds = ray.train.get_dataset_shard("dev") if rank == 0 else None
    label_col = cfg.label_type
    faults = config.get("fault") or []
    faults = [faults] if isinstance(faults, dict) else list(faults)

    for epoch in range(start_epoch, cfg.epochs):
        for f in faults:
            if rank == 0 and f.get("epoch") == epoch + 1 and not os.path.exists(f["marker"]):
                Path(f["marker"]).write_text(f"killed at the start of epoch {epoch + 1}\n")
                # The controller collects reports by polling (every 2 s): give it time to register the last
                # checkpoint, as a real failure minutes into an epoch would.
                time.sleep(float(f.get("after_s", 6.0)))
                os._exit(1)  # a hard worker death, as from an OOM kill or a lost node

        model.train()
        recent: list = []  # rank 0's last training inputs, for the BN recalibration
        t0, total, n_clips, steps = time.perf_counter(), 0.0, 0, 0
        batches = train_ds.iter_torch_batches(
            batch_size=cfg.per_worker_batch, dtypes={"frames": torch.uint8, label_col: torch.float32},
            device=device, local_shuffle_buffer_size=cfg.shuffle_buffer or None,
            local_shuffle_seed=cfg.seed * 1000 + epoch * 10 + rank if cfg.shuffle_buffer else None,
            drop_last=False)
        for batch in batches:
            x = to_model_input(batch["frames"], mean, std, device)  # (B, T, 3, S, S)
            target = batch[label_col]  # (B, T, M, M)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                pred = model(x)  # (B, T, M, M)
            loss = torch.nn.functional.mse_loss(pred.float(), target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if rank == 0 and cfg.bn_recalibration_batches:
                recent.append(x.detach())
                del recent[:-cfg.bn_recalibration_batches]
            total += float(loss.detach()) * len(x)
            n_clips += len(x)
            steps += 1
            if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
                break
        # Mean loss over every worker's clips, so rank 0 logs the loss of the whole epoch.
        stats = torch.tensor([total, float(n_clips)], dtype=torch.float64, device=device)
        if world > 1:
            torch.distributed.all_reduce(stats)
        elapsed = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(stats[0] / max(stats[1], 1.0)),
                               "train_clips": int(stats[1]), "epoch_time_s": elapsed,
                               "clips_per_s": float(stats[1]) / max(elapsed, 1e-9)}

        evaluate = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                # Before anything looks at eval-mode outputs: BN statistics of the weights as they are now.
                # (DDP broadcasts rank 0's buffers to the other ranks at their next forward.)
                recalibrate_batchnorm(bare, recent)
                row["lr"] = float(scheduler.get_last_lr()[0])
                if evaluate:
                    row.update(_evaluate_dev(_dev_scores(model, dev_ds, cfg, mean, std, device),
                                             cfg.threshold_rule))
                else:
                    row["dev_acer"] = math.inf  # never "best" without a dev measurement
                history.append(row)
                meta = build_meta(**{**meta_kw, "variant": cfg.variant, "label_type": cfg.label_type,
                                     "threshold": row.get("dev_threshold"),
                                     "extra": {"epoch": epoch + 1, "train_loss": row["train_loss"],
                                               "dev_acer": row["dev_acer"] if evaluate else None,
                                               "threshold_rule": cfg.threshold_rule,
                                               "mlflow_run_id": tracker.run_id}})
                save_checkpoint(Path(tmp) / PREDICTOR_FILE, bare, meta)
                torch.save({"model": bare.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scaler": scaler.state_dict() if use_amp else None,
                            "scheduler": scheduler.state_dict(),
                            "epoch": epoch + 1, "history": history, "resumed_from": resumed_from,
                            "mlflow_run_id": tracker.run_id}, Path(tmp) / STATE_FILE)
                tracker.log_epoch(row, epoch + 1)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            metrics = {**row, "resumed_from": resumed_from[-1] if resumed_from else -1}
            ray.train.report(metrics, checkpoint=checkpoint)
    return history
