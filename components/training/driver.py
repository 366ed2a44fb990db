"""The training driver: shards -> Ray Data streams -> TorchTrainer (Ray Train V2) -> best Predictor checkpoint.

The caller owns the Ray connection (flows call ``ray.init``); this module never initialises Ray and never
sets a global MLflow tracking URI: it talks to the given ``tracking_uri`` through an explicit client.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from components.inference.config import InferenceConfig
from components.runtime import absolute_tracking_uri, json_safe
from components.training.config import TrainConfig, TrainResult
from components.training.loop import PREDICTOR_FILE, read_train_state, train_loop_per_worker

if TYPE_CHECKING:
    from components.training.devices import DeviceDecision

RUN_PATH_TAG = "eulernet.ray_run_path"
log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training could not start or did not finish (bad shards, failed run)."""


def _split_dataset(shards_dir: str, split: str, columns: list[str]):
    from components.labeling.shards import ShardsError, read_shards

    try:
        return read_shards(shards_dir, split=split, columns=columns)
    except ShardsError as exc:
        raise TrainingError(f"no {split} clips to train with: {exc}") from exc


def _check_dev(shards_dir: str) -> None:
    # pyarrow reads only the label column: no Ray Data job just to look at a few hundred integers.
    from components.labeling.shards import ShardsError, load_clips

    try:
        labels = set(int(v) for v in load_clips(shards_dir, split="dev", columns=["label"])["label"])
    except ShardsError as exc:
        raise TrainingError(f"no dev split: {exc}") from exc
    if labels != {0, 1}:
        missing = "live" if 1 not in labels else "attack"
        raise TrainingError(f"the dev split has no {missing} clips: it is needed to choose the threshold "
                            "and to rank checkpoints by dev ACER")


def _inference_config(train_ds, shards_dir: str, cfg: TrainConfig) -> InferenceConfig:
    """The inference config the checkpoints will carry, from the data alone: the label config recorded beside
    the shards (landmark backend, clip layout, decode size) and the clip shape the shards actually hold."""
    from components.labeling.config import LabelConfig, read_label_config

    frames = train_ds.take(1)[0]["frames"]  # (T, S, S, 3)
    found = {"clip_len": int(frames.shape[0]), "crop_size": int(frames.shape[1])}
    label = read_label_config(shards_dir)
    if label is None:  # shards written by hand (tests, imports): the labeling defaults at the shards' shape
        label = LabelConfig(crop_size=found["crop_size"], clip_len=found["clip_len"])
    for k, v in found.items():
        if getattr(label, k) != v:
            raise TrainingError(f"{shards_dir}/label_config.json says {k}={getattr(label, k)} but the shards hold "
                                f"clips with {k}={v}: relabel (eulernet label)")
    return InferenceConfig.from_label_config(label, variant=cfg.variant, label_type=cfg.label_type)


def _start_run(client, experiment: str, run_name: str, run_path: str, tags: dict,
               artifact_location: str | None) -> str:
    """The MLflow run for this Ray run: the one already tagged with the same Ray run path is continued."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        from components.runtime import artifact_location as default_location

        artifact_location = artifact_location or default_location(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment, artifact_location=artifact_location)
    found = client.search_runs([exp_id], filter_string=f"tags.`{RUN_PATH_TAG}` = '{run_path}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    if found:  # the Ray run continues (resume), so its MLflow run does too
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=run_name, tags={RUN_PATH_TAG: run_path, **tags})
    return run.info.run_id


def resumable_run_name(cfg: TrainConfig, shards_dir: str | os.PathLike, storage_path: str,
                       tracking_uri: str | None, experiment: str = "eulernet") -> str:
    """A Ray run name that is the same for the same training params and the same shards, so a stage that was
    killed (e.g. an interrupted ``dvc repro``) continues its run, and its MLflow run, when re-run unchanged.

    A run of that name that already FINISHED is not reopened (re-running a finished stage means training
    again): the next free ``-2``, ``-3`` ... suffix is used instead."""
    import hashlib

    shards = Path(shards_dir)
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode())
    for name in ("index.csv", "label_config.json"):
        if (shards / name).is_file():
            h.update((shards / name).read_bytes())
    base = f"{cfg.variant}-{h.hexdigest()[:12]}"
    if not tracking_uri:
        return base
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=absolute_tracking_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment)
    storage_path = str(Path(storage_path).resolve()) if "://" not in storage_path else storage_path
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}-{n}"
        if exp is None:
            return name
        found = client.search_runs([exp.experiment_id],
                                   filter_string=f"tags.`{RUN_PATH_TAG}` = '{storage_path.rstrip('/')}/{name}'",
                                   max_results=1)
        if not found or found[0].info.status != "FINISHED":
            return name
    raise TrainingError(f"no free run name for {base}")


def _local_dir(checkpoint, dest: Path) -> Path:
    # A local-filesystem checkpoint is used in place; remote storage (s3://...) is downloaded first.
    if checkpoint.filesystem.type_name == "local":
        return Path(checkpoint.path)
    return Path(checkpoint.to_directory(str(dest)))


def fit(cfg: TrainConfig, shards_dir: str | os.PathLike, storage_path: str, run_name: str,
        experiment: str = "eulernet", tracking_uri: str | None = None, tags: dict[str, str] | None = None,
        resume_from: str | None = None, params: dict[str, Any] | None = None,
        artifact_location: str | None = None,
        epoch_start_hook: str | dict[str, Any] | None = None,
        on_start: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``cfg`` on the ``train`` shards with ``cfg.num_workers`` Ray Train workers; rank by dev ACER.

    ``storage_path``/``run_name``: where Ray Train keeps checkpoints. Calling ``fit`` again with the same
    pair continues that run from its latest checkpoint (an interrupted run resumes rather than restarts).
    ``resume_from``: a checkpoint directory (holding ``train_state.pt``) to start from when the run has no
    checkpoint of its own. How the shards were cut (landmark backend, clip layout, decode size) is read from
    ``<shards_dir>/label_config.json`` and becomes the checkpoints' ``InferenceConfig``. ``tracking_uri=None``
    disables MLflow. ``epoch_start_hook``: ``"package.module:function"`` or ``{"fn": "package.module:function",
    "kwargs": {...}}``, called on every worker as ``fn(epoch=<1-based epoch about to start>, rank=<world rank>,
    **kwargs)`` at the start of each epoch (see ``loop.load_epoch_start_hook``); the tests use it to kill a worker.
    ``cfg.use_gpu`` is resolved by :func:`choose_device` (logged, recorded beside the checkpoints, kept on a
    resume, the MLflow param ``use_gpu_resolved`` and tags ``use_gpu``/``use_gpu_reason``).
    """
    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        raise TrainingError("Ray is not initialised: the caller (a flow or a test) must call ray.init first")
    shards_dir = str(Path(shards_dir).resolve())
    _check_dev(shards_dir)
    train_ds = _split_dataset(shards_dir, "train", ["frames", cfg.label_type])
    dev_ds = _split_dataset(shards_dir, "dev", ["frames", "video_id", "label", "attack_type"])
    if cfg.cache_data:
        train_ds, dev_ds = train_ds.materialize(), dev_ds.materialize()
    inference = _inference_config(train_ds, shards_dir, cfg)

    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    per_worker = cfg.cpus_per_worker or min(1.0, max(cpus - 1.0, cpus / 2.0) / cfg.num_workers)
    storage_path = str(Path(storage_path).resolve()) if "://" not in storage_path else storage_path
    run_path = f"{storage_path.rstrip('/')}/{run_name}"
    device = choose_device(cfg, run_path)
    use_gpu = device.use_gpu

    client, run_id = None, None
    if tracking_uri:
        from mlflow.tracking import MlflowClient

        tracking_uri = absolute_tracking_uri(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri)
        run_id = _start_run(client, experiment, run_name, run_path, dict(tags or {}), artifact_location)
        # Tags, not only params: a resumed run never re-logs its params, and an override must still show.
        client.set_tag(run_id, "use_gpu", str(use_gpu))
        client.set_tag(run_id, "use_gpu_reason", device.reason[:5000])
        client.log_dict(run_id, {"train": cfg.to_dict(), "inference": inference.to_dict(), "params": params or {},
                                 "tags": tags or {}, "use_gpu": use_gpu, "device": device.to_dict(),
                                 "shards_dir": shards_dir,
                                 "storage_path": storage_path, "run_name": run_name}, "config/resolved.json")

    # Optimiser steps of the whole run, for the cosine schedule: each worker sees its equal share of the clips.
    steps_per_epoch = math.ceil(train_ds.count() / cfg.num_workers / cfg.per_worker_batch)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    loop_config = {"train": cfg.to_dict(), "inference": inference.to_dict(),
                   "params": {"inference": inference.to_dict(), "use_gpu_resolved": use_gpu, **(params or {})},
                   "total_steps": steps_per_epoch * cfg.epochs,
                   "tags": {**(tags or {}), "use_gpu": str(use_gpu), "use_gpu_reason": device.reason},
                   "mlflow": {"tracking_uri": tracking_uri, "run_id": run_id} if run_id else None,
                   "resume_from": str(resume_from) if resume_from else None,
                   "epoch_start_hook": epoch_start_hook}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=bool(use_gpu),
                                     resources_per_worker={"CPU": per_worker}),
        run_config=RunConfig(
            name=run_name, storage_path=storage_path,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.num_to_keep, checkpoint_score_attribute="dev_acer",
                                               checkpoint_score_order="min"),
        ),
        datasets={"train": train_ds, "dev": dev_ds},
        # dev is read whole by rank 0 (threshold + ACER need every dev video), train is split over workers.
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )
    if on_start and run_id:  # e.g. training.progress.EpochProgress.start: an epoch bar fed from this run
        on_start(run_id)
    try:
        result = trainer.fit()
    except Exception as exc:
        if client:
            client.set_terminated(run_id, status="FAILED")
        raise TrainingError(f"training run {run_path} failed: {exc}") from exc

    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if m.get("dev_acer") is not None]
    if not candidates:
        raise TrainingError(f"training run {run_path} reported no checkpoint")

    def rank(cm):  # lowest dev ACER; on ties (common on small dev sets) the lower training loss
        acer = cm[1].get("dev_acer")
        acer = math.inf if acer is None or (isinstance(acer, float) and math.isnan(acer)) else acer
        return (acer, cm[1].get("train_loss", math.inf), -cm[1].get("epoch", 0))

    best_ckpt, best_metrics = min(candidates, key=rank)
    history = pd.DataFrame(result.return_value or _history_from(best_ckpt, result))
    if run_id is None:
        run_id = (best_metrics.get("mlflow_run_id") or None)
    local = _local_dir(best_ckpt, Path(tempfile.mkdtemp(prefix="eulernet-best-")))
    best_path = local / PREDICTOR_FILE
    resumed = [int(v) for v in _resumed(best_ckpt, result)]

    if client:
        from components.metrics.plots import plot_training_curves

        with tempfile.TemporaryDirectory() as tmp:
            history.to_csv(Path(tmp) / "history.csv", index=False)
            plot_training_curves({cfg.variant: history}, Path(tmp) / "training_curves.png")
            (Path(tmp) / "best.json").write_text(json.dumps(_scalars(best_metrics), indent=2))
            for name in ("history.csv", "training_curves.png", "best.json"):
                client.log_artifact(run_id, str(Path(tmp) / name), "training")
        client.log_artifact(run_id, str(best_path), "model")
        client.set_tag(run_id, "best_epoch", str(best_metrics.get("epoch")))
        client.set_terminated(run_id, status="FINISHED")
    return TrainResult(best_checkpoint_path=str(best_path), history=history, best=_scalars(best_metrics),
                       run_id=run_id, resumed_from=resumed, run_path=run_path, use_gpu=use_gpu,
                       device_reason=device.reason)


def choose_device(cfg: TrainConfig, run_path: str) -> "DeviceDecision":
    """Resolve ``cfg.use_gpu`` for the run at ``run_path`` (see ``components.training.devices``), log the
    decision and why, and record it beside the run's checkpoints so that a resume keeps it."""
    from components.training.devices import gpu_capacity, read_decision, resolve_use_gpu, write_decision

    gpus_now, gpus_autoscaler = gpu_capacity()
    try:
        decision = resolve_use_gpu(cfg.use_gpu, cfg.num_workers, gpus_now, gpus_autoscaler,
                                   previous=read_decision(run_path))
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    log.info("use_gpu=%s (%s, use_gpu: %s): %s", decision.use_gpu, decision.source, cfg.use_gpu, decision.reason)
    write_decision(run_path, decision)
    return decision


def _scalars(d: dict) -> dict:
    """The JSON-safe scalar and list entries of a Ray Train metrics dict (drops its internal objects)."""
    return json_safe({k: v for k, v in d.items() if isinstance(v, (int, float, str, bool, list)) or v is None})


def _train_state(checkpoint) -> dict:
    with checkpoint.as_directory() as d:
        return read_train_state(d)


def _history_from(best_ckpt, result) -> list[dict]:
    # A run that was already complete returns nothing from its workers: read the history the latest
    # checkpoint carries instead.
    return list(_train_state(result.checkpoint or best_ckpt)["history"])


def _resumed(best_ckpt, result) -> list[int]:
    return list(_train_state(result.checkpoint or best_ckpt).get("resumed_from", []))


def copy_best(result: TrainResult, dest: str | os.PathLike, extra: dict | None = None) -> Path:
    """Copy the best Predictor checkpoint to ``dest`` (e.g. artifacts/model/checkpoint.pt); ``extra`` entries are
    added to its ``extra`` (what the run knows about its data, e.g. ``data_gates``, travels with the weights)."""
    from components.files import atomic_path

    with atomic_path(dest) as tmp:
        if not extra:
            shutil.copyfile(result.best_checkpoint_path, tmp)
        else:
            import torch

            from components.inference.checkpoint import load_checkpoint

            ckpt = load_checkpoint(result.best_checkpoint_path)
            ckpt["extra"] = {**(ckpt.get("extra") or {}), **extra}
            torch.save(ckpt, tmp)
    return Path(dest)
