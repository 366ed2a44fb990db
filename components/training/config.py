"""Typed training configuration and result (checked once, before any cluster work starts)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import pandas as pd

OPTIMIZERS = ("ranger", "adamw")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults follow the paper (IV-A): Ranger, lr 1e-4, 16 clips per step.

    ``batch_size`` is the GLOBAL number of clips per optimizer step, split evenly over ``num_workers`` (so
    changing the worker count keeps the optimisation the same). ``use_gpu="auto"`` takes one GPU per worker when
    the Ray cluster has, or its autoscaler may add, that many, and a resumed run keeps its first decision
    (``components.training.devices``); ``amp`` only acts on CUDA (mixed precision on CPU is slower here).
    ``eval_every``: dev evaluation every N epochs (the last epoch always); epochs without one still
    checkpoint, with ``dev_acer = inf`` so they never rank as best.
    ``cpus_per_worker=None`` (auto) reserves at most one CPU per worker and leaves one CPU of a small cluster
    to Ray Data: Ray Train reserves its workers' CPUs first, and with none left the shard reads never start.
    ``cache_data`` materialises the decoded shards in the object store once, instead of re-reading Parquet
    every epoch: worth it when the data fits in memory (sample profile, tests), off for large datasets.
    """

    # Keys that change where and how fast training runs, not the model it makes: left out of the train stage's
    # DVC params, so resizing a cluster does not retrain.
    SPEED_ONLY: ClassVar[frozenset[str]] = frozenset({"cpus_per_worker", "torch_threads", "cache_data", "max_failures",
                                                      "num_to_keep"})

    variant: str = "baseline"
    width: float = 1.0
    epochs: int = 2
    lr: float = 1e-4
    batch_size: int = 16
    weight_decay: float = 0.0
    num_workers: int = 2
    use_gpu: bool | Literal["auto"] = "auto"
    amp: bool = True
    seed: int = 0
    label_type: str | None = None
    eval_every: int = 1
    max_failures: int = 1
    num_to_keep: int = 2
    threshold_rule: Literal["eer", "min_acer"] = "eer"
    max_steps_per_epoch: int | None = None
    shuffle_buffer: int = 64
    cpus_per_worker: float | None = None
    cache_data: bool = False
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # Optimisation dynamics (docs/training.md, "Making short runs learn"). Ranger is the paper's; its RAdam
    # rectification scales the first ~200 steps by 0.03-0.3, so a short CPU run barely moves. AdamW with a
    # short linear warm-up makes full-size steps from the end of the warm-up.
    optimizer: Literal["ranger", "adamw"] = "ranger"
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # Training batches (rank 0's last ones) over which BN running statistics are recomputed with the current
    # weights before each dev scoring and checkpoint; 0 keeps PyTorch's running averages.
    bn_recalibration_batches: int = 8
    # Intra-op threads per worker; None keeps Ray's default (one per reserved CPU). One worker on a 2-core
    # machine trains faster with 2 threads than two DDP workers with one each (docs/training.md).
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"TrainConfig: {msg}")

        if self.epochs < 1:
            bad(f"epochs must be >= 1, got {self.epochs}")
        if not (self.lr > 0):
            bad(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            bad(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.num_workers < 1:
            bad(f"num_workers must be >= 1, got {self.num_workers}")
        if self.batch_size < self.num_workers:
            bad(f"batch_size ({self.batch_size}) is global and must give every one of the "
                f"{self.num_workers} workers at least one clip")
        if self.width <= 0:
            bad(f"width must be > 0, got {self.width}")
        if self.use_gpu not in (True, False, "auto"):
            bad(f"use_gpu must be true, false or 'auto', got {self.use_gpu!r}")
        if self.eval_every < 1:
            bad(f"eval_every must be >= 1, got {self.eval_every}")
        if self.max_failures < 0 and self.max_failures != -1:
            bad(f"max_failures must be >= 0 (or -1 for unlimited), got {self.max_failures}")
        if self.num_to_keep < 1:
            bad(f"num_to_keep must be >= 1, got {self.num_to_keep}")
        from components.metrics.rates import THRESHOLD_RULES

        if self.threshold_rule not in THRESHOLD_RULES:
            bad(f"threshold_rule must be one of {THRESHOLD_RULES}, got {self.threshold_rule!r}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            bad(f"max_steps_per_epoch must be >= 1 or null, got {self.max_steps_per_epoch}")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            bad(f"cpus_per_worker must be > 0 or null (auto), got {self.cpus_per_worker}")
        if self.optimizer not in OPTIMIZERS:
            bad(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            bad(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.warmup_steps < 0:
            bad(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.torch_threads is not None and self.torch_threads < 1:
            bad(f"torch_threads must be >= 1 or null, got {self.torch_threads}")
        if self.bn_recalibration_batches < 0:
            bad(f"bn_recalibration_batches must be >= 0, got {self.bn_recalibration_batches}")
        if self.shuffle_buffer < 0:
            bad(f"shuffle_buffer must be >= 0, got {self.shuffle_buffer}")
        from components.model.variants import LABEL_TYPES, VARIANTS, variant_label_type

        if self.variant not in VARIANTS:
            bad(f"unknown variant {self.variant!r}; choose one of {sorted(VARIANTS)}")
        if self.label_type is None:
            # The ablation variants differ in their supervision (Table I), so the variant decides by default.
            object.__setattr__(self, "label_type", variant_label_type(self.variant))
        if self.label_type not in LABEL_TYPES:
            bad(f"label_type must be one of {LABEL_TYPES}, got {self.label_type!r}")

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.num_workers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What ``fit`` hands back. ``best_checkpoint_path`` is a Predictor checkpoint file (``checkpoint.pt``)."""

    best_checkpoint_path: str
    history: "pd.DataFrame"
    best: dict[str, Any]
    run_id: str | None
    resumed_from: list[int]
    run_path: str
    use_gpu: bool | None = None  # the resolved device policy (components.training.devices) ...
    device_reason: str = ""      # ... and why
