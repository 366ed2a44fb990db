"""The Ray Train worker loop (runs inside every training worker; Ray Train V2 API).

Every worker trains on its split of the ``train`` shard stream (DDP keeps the replicas equal); rank 0 alone
scores the whole ``dev`` stream, chooses the threshold on it, writes the checkpoint and logs to MLflow, so a
run is tracked once however many workers it has. The checkpoint holds two files:
``checkpoint.pt`` (a Predictor checkpoint, what evaluate/register/serve load) and ``train_state.pt``
(optimizer, epoch, history, MLflow run id: what a restarted or resumed run continues from).

Read top to bottom: :func:`train_step` (one optimiser step; the throughput benchmark times this very
function), :func:`train_epoch` (one pass over this worker's shard), :func:`evaluate_dev` (rank 0's dev
metrics), :func:`save` (the two checkpoint files as a ``ray.train.Checkpoint``) and
:func:`train_loop_per_worker`, the driver of those. The loop config may name an ``epoch_start_hook`` (see
:func:`load_epoch_start_hook`), called on every worker at the start of every epoch: a plain extension point
(tests use it to kill a worker at a chosen epoch; nothing in here knows about that).
"""
from __future__ import annotations

import functools
import importlib
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # annotations only: torch, pandas and Ray load inside the worker functions that use them
    import pandas as pd
    import ray
    import torch

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
        try:
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in sorted(flat.items())],
                                  tags=[RunTag(k, str(v)) for k, v in tags.items()])
        except Exception:  # a changed value (e.g. use_gpu overridden on a re-run): keep the first one logged
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
            for k, v in sorted(flat.items()):
                try:
                    self.client.log_param(self.run_id, k, v)
                except Exception:
                    pass

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


def load_epoch_start_hook(spec: str | dict | None) -> Callable[..., Any] | None:
    """The callable the loop config's ``epoch_start_hook`` names, or None.

    ``spec`` is ``"package.module:function"`` or ``{"fn": "package.module:function", "kwargs": {...}}`` (a
    plain string or dict, so the loop config pickles to any worker; ``kwargs`` are bound to the function).
    The hook is called on every worker as ``hook(epoch=<1-based epoch about to start>, rank=<world rank>,
    **kwargs)`` before any of that epoch's steps. It must be importable on the workers (a local cluster's
    workers see the driver's working directory on their ``sys.path``).
    """
    if not spec:
        return None
    if isinstance(spec, str):
        spec = {"fn": spec}
    if not isinstance(spec, dict) or not set(spec) <= {"fn", "kwargs"} or not isinstance(spec.get("fn"), str):
        raise ValueError("epoch_start_hook must be 'module:function' or {'fn': 'module:function', 'kwargs': {...}}, "
                         f"got {spec!r}")
    module, _, name = spec["fn"].partition(":")
    if not module or not name:
        raise ValueError(f"epoch_start_hook must name 'package.module:function', got {spec['fn']!r}")
    return functools.partial(getattr(importlib.import_module(module), name), **dict(spec.get("kwargs") or {}))


def maybe_sync_batchnorm(model, device_type: str, world_size: int):
    """``model`` with every BatchNorm a ``SyncBatchNorm`` when more than one worker trains on CUDA, else
    ``model`` unchanged. Call before ``prepare_model`` (DDP).

    The global batch is small (8-16 clips of 4 near-identical frames), so per-GPU statistics over
    ``batch / workers`` clips are noisy (one video per GPU at 8 workers) and only rank 0's running statistics
    would be saved. SyncBatchNorm normalises with, and averages into its running statistics, the whole global
    batch. Its ``state_dict`` keys are BatchNorm's, so checkpoints load into a plain EulerNet. Not on CPU:
    SyncBatchNorm needs CUDA (or similar) tensors, and CPU runs are one or two workers on one machine."""
    import torch

    if device_type == "cuda" and world_size > 1:
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def setup(cfg, inference, total_steps: int | None) -> tuple:
    """This worker's model (SyncBatchNorm on multi-GPU runs, device placement, DDP when the world is larger
    than one), its device, the optimiser, the LR schedule over ``total_steps`` optimiser steps, the grad scaler
    and whether AMP is on."""
    import ray.train
    import ray.train.torch
    import torch

    from components.model.eulernet import create_model

    model = create_model(cfg.variant, **{"width": cfg.width, "clip_len": inference.clip_len,
                                         **cfg.model_overrides})
    device = ray.train.torch.get_device()
    model = maybe_sync_batchnorm(model, device.type, ray.train.get_context().get_world_size())
    model = ray.train.torch.prepare_model(model)
    optimizer = make_optimizer(model.parameters(), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg.warmup_steps, total_steps, cfg.lr_schedule))
    use_amp = bool(cfg.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return model, device, optimizer, scheduler, scaler, use_amp


def read_train_state(directory: str | Path) -> dict:
    """``train_state.pt`` of a checkpoint directory, every tensor on the CPU.

    Always the CPU, never the training device: :func:`restore` copies the weights into the model wherever it
    lives and ``Optimizer.load_state_dict`` moves the moment buffers (and Lookahead's slow weights) to their
    parameters' device, but keeps RAdam/Adam's ``step`` counters where they were loaded. Loaded onto the GPU
    they stay there, and every optimiser step then syncs on ``step.item()``."""
    import torch

    return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)


def load_train_state(resume_from: str | None) -> tuple[dict | None, bool]:
    """The train state to continue from (on the CPU, see :func:`read_train_state`) and whether it is the run's
    own. The run's own latest checkpoint (a worker restart or a re-run of the same name) wins over
    ``resume_from``, an explicit starting checkpoint."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            return read_train_state(d), True
    if resume_from:
        return read_train_state(resume_from), False
    return None, False


def restore(state: dict, model, optimizer, scheduler, scaler) -> tuple[int, list[dict], list[int]]:
    """Load ``state`` into the bare model, optimiser, schedule and (AMP) scaler. Returns the epoch to start
    from (0-based: the number of epochs done), the history so far and the epochs each resume began at."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])
    if scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    start_epoch = int(state["epoch"])
    return start_epoch, list(state["history"]), list(state.get("resumed_from", [])) + [start_epoch]


def train_step(model, x, target, optimizer, scaler, scheduler, use_amp: bool, device) -> float:
    """One optimiser step: forward on model input ``x`` ``(B, T, 3, S, S)`` (fp16 autocast when ``use_amp``),
    :meth:`EulerNet.loss` against the label maps ``target`` ``(B, T, M, M)``, backward through the grad
    scaler, optimiser step, then the LR schedule's step (``scheduler`` may be None). Returns the batch's mean
    loss (a host sync, as the epoch's loss sum needs it anyway)."""
    import torch

    from components.model.eulernet import EulerNet

    with torch.autocast(device_type=torch.device(device).type, dtype=torch.float16, enabled=use_amp):
        pred = model(x)  # (B, T, M, M)
    loss = EulerNet.loss(pred.float(), target)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None:
        scheduler.step()
    return float(loss.detach())


def epoch_batches(train_ds, cfg, epoch: int, rank: int, device):
    """This worker's batches of its ``train`` shard for 0-based ``epoch`` (a seeded local shuffle)."""
    import torch

    return train_ds.iter_torch_batches(
        batch_size=cfg.per_worker_batch, dtypes={"frames": torch.uint8, cfg.label_type: torch.float32},
        device=device, local_shuffle_buffer_size=cfg.shuffle_buffer or None,
        local_shuffle_seed=cfg.seed * 1000 + epoch * 10 + rank if cfg.shuffle_buffer else None,
        drop_last=False)


def train_epoch(model, batches, optimizer, scaler, scheduler, *, use_amp: bool, device, mean, std,
                label_col: str, max_steps: int | None = None, keep_recent: int = 0) -> tuple[float, int, list]:
    """One pass of :func:`train_step` over ``batches`` (dicts with uint8 ``frames`` and ``label_col`` maps),
    stopping after ``max_steps`` steps if given. Returns this worker's loss sum over its clips, its clip count
    and its last ``keep_recent`` model inputs (for the BatchNorm recalibration)."""
    from components.inference.tensors import to_model_input

    model.train()
    recent: list = []
    total, n_clips, steps = 0.0, 0, 0
    for batch in batches:
        x = to_model_input(batch["frames"], mean, std, device)  # (B, T, 3, S, S)
        loss = train_step(model, x, batch[label_col], optimizer, scaler, scheduler, use_amp, device)
        if keep_recent:
            recent.append(x.detach())
            del recent[:-keep_recent]
        total += loss * len(x)
        n_clips += len(x)
        steps += 1
        if max_steps and steps >= max_steps:
            break
    return total, n_clips, recent


def sum_over_workers(values: list[float], device, world: int) -> list[float]:
    """``values`` summed over every worker (an all-reduce when the world is larger than one)."""
    import torch

    stats = torch.tensor(values, dtype=torch.float64, device=device)
    if world > 1:
        torch.distributed.all_reduce(stats)
    return [float(v) for v in stats]


def _dev_scores(model, ds, cfg, mean, std, device) -> "pd.DataFrame":
    """Clip scores of the whole dev stream (rank 0), with the columns ``video_scores`` needs."""
    import pandas as pd
    import torch

    from components.inference.tensors import clip_scores, to_model_input

    net = getattr(model, "module", model)  # bare module: no DDP collectives while only rank 0 runs
    net.eval()
    parts = []
    with torch.no_grad():
        for batch in ds.iter_batches(batch_size=max(1, cfg.per_worker_batch * 2), batch_format="numpy"):
            x = to_model_input(batch["frames"], mean, std, device)  # (B, T, 3, S, S)
            maps = net(x).float()  # (B, T, M, M)
            parts.append(pd.DataFrame({
                "video_id": batch["video_id"], "label": batch["label"].astype(int),
                "attack_type": batch["attack_type"], "score": clip_scores(maps).cpu().numpy(),
            }))
    net.train()
    if not parts:
        raise RuntimeError("the dev split is empty: cannot choose a threshold or rank checkpoints")
    return pd.concat(parts, ignore_index=True)


def _dev_metrics(clips, rule: str) -> dict:
    from components.metrics import auc, choose_threshold, error_rates, video_scores

    v = video_scores(clips)
    s, y = v["score"].to_numpy(), v["label"].to_numpy()
    t = choose_threshold(s, y, rule)
    r = error_rates(s, y, t)
    return {"dev_apcer": r["apcer"], "dev_bpcer": r["bpcer"], "dev_acer": r["acer"], "dev_threshold": t,
            "dev_auc": auc(s, y)}


def evaluate_dev(model, dev_ds, cfg, mean, std, device) -> dict:
    """Rank 0's dev row: every dev clip scored, video scores, the threshold ``cfg.threshold_rule`` chooses on
    them, and APCER/BPCER/ACER/AUC at that threshold (keys ``dev_apcer``, ``dev_bpcer``, ``dev_acer``,
    ``dev_threshold``, ``dev_auc``)."""
    return _dev_metrics(_dev_scores(model, dev_ds, cfg, mean, std, device), cfg.threshold_rule)


def save(directory: str | Path, model, optimizer, scheduler, scaler, *, inference, row: dict,
         history: list[dict], resumed_from: list[int], threshold_rule: str, evaluated: bool,
         mlflow_run_id: str | None) -> "ray.train.Checkpoint":
    """Write ``checkpoint.pt`` (the Predictor checkpoint, carrying the epoch's dev threshold) and
    ``train_state.pt`` (what a restart continues from) for the epoch ``row`` describes into ``directory``
    (which must outlive the ``ray.train.report`` of the returned checkpoint). ``model`` is the bare EulerNet."""
    import ray.train
    import torch

    from components.inference.checkpoint import save_checkpoint

    extra = {"epoch": row["epoch"], "train_loss": row["train_loss"],
             "dev_acer": row["dev_acer"] if evaluated else None, "threshold_rule": threshold_rule,
             "mlflow_run_id": mlflow_run_id}
    save_checkpoint(Path(directory) / PREDICTOR_FILE, model, inference.with_threshold(row.get("dev_threshold")),
                    extra)
    torch.save({"model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "scheduler": scheduler.state_dict(),
                "epoch": row["epoch"], "history": history, "resumed_from": resumed_from,
                "mlflow_run_id": mlflow_run_id}, Path(directory) / STATE_FILE)
    return ray.train.Checkpoint.from_directory(str(directory))


def train_loop_per_worker(config: dict) -> list[dict]:
    """Ray Train worker entry point. ``config`` is built by :func:`components.training.fit`:

    ``train`` (TrainConfig as a dict), ``inference`` (the InferenceConfig the checkpoints carry), ``mlflow``
    ({tracking_uri, run_id} or None), ``params``/``tags`` (logged by rank 0), ``total_steps`` (for the LR
    schedule), ``resume_from`` (a checkpoint directory to start from when the run has none of its own) and
    ``epoch_start_hook`` (None, or a hook spec for :func:`load_epoch_start_hook`).
    Returns the per-epoch history (rank 0's return value becomes ``Result.return_value``).
    """
    import ray.train
    import torch

    from components.inference.config import InferenceConfig
    from components.training.bn import recalibrate_batchnorm
    from components.training.config import TrainConfig

    cfg = TrainConfig(**config["train"])
    inference = InferenceConfig(**config["inference"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # Same seed on every rank: identical initial weights (DDP also broadcasts), different data per rank.
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed + rank)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    model, device, optimizer, scheduler, scaler, use_amp = setup(cfg, inference, config.get("total_steps"))
    bare = getattr(model, "module", model)  # the EulerNet itself, for checkpoints and rank-0-only scoring
    hook = load_epoch_start_hook(config.get("epoch_start_hook"))

    start_epoch, history, resumed_from = 0, [], []
    state, own = load_train_state(config.get("resume_from"))
    mlflow_cfg = dict(config.get("mlflow") or {})
    if state is not None:
        start_epoch, history, resumed_from = restore(state, bare, optimizer, scheduler, scaler)
        if own and state.get("mlflow_run_id"):
            mlflow_cfg["run_id"] = state["mlflow_run_id"]  # keep logging into the interrupted run
    tracker = _Tracker(mlflow_cfg if rank == 0 else None)
    if rank == 0 and not own:  # a fresh MLflow run (a restart re-logs identical values, which is allowed)
        tracker.start({"train": cfg.to_dict(), **(config.get("params") or {})}, config.get("tags") or {})
    if rank == 0 and resumed_from:
        tracker.tag("resumed_from_epoch", ",".join(map(str, resumed_from)))

    train_ds = ray.train.get_dataset_shard("train")
    dev_ds = ray.train.get_dataset_shard("dev") if rank == 0 else None
    for epoch in range(start_epoch, cfg.epochs):
        if hook is not None:
            hook(epoch=epoch + 1, rank=rank)
        t0 = time.perf_counter()
        total, n_clips, recent = train_epoch(
            model, epoch_batches(train_ds, cfg, epoch, rank, device), optimizer, scaler, scheduler,
            use_amp=use_amp, device=device, mean=inference.mean, std=inference.std, label_col=cfg.label_type,
            max_steps=cfg.max_steps_per_epoch, keep_recent=cfg.bn_recalibration_batches if rank == 0 else 0)
        total, n_clips = sum_over_workers([total, float(n_clips)], device, world)  # rank 0 logs every clip
        elapsed = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / max(n_clips, 1.0),
                               "train_clips": int(n_clips), "epoch_time_s": elapsed,
                               "clips_per_s": n_clips / max(elapsed, 1e-9)}
        evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                # Before anything looks at eval-mode outputs: BN statistics of the weights as they are now.
                # (DDP broadcasts rank 0's buffers to the other ranks at their next forward.)
                recalibrate_batchnorm(bare, recent)
                row["lr"] = float(scheduler.get_last_lr()[0])
                # Never "best" without a dev measurement.
                row.update(evaluate_dev(model, dev_ds, cfg, inference.mean, inference.std, device) if evaluated
                           else {"dev_acer": math.inf})
                history.append(row)
                checkpoint = save(tmp, bare, optimizer, scheduler, scaler, inference=inference, row=row,
                                  history=history, resumed_from=resumed_from, threshold_rule=cfg.threshold_rule,
                                  evaluated=evaluated, mlflow_run_id=tracker.run_id)
                tracker.log_epoch(row, epoch + 1)
            ray.train.report({**row, "resumed_from": resumed_from[-1] if resumed_from else -1}, checkpoint=checkpoint)
    return history
