"""BatchNorm statistics that match the weights they are used with.

BatchNorm's running statistics are an exponential average over the batches seen while the weights were
still moving; after a short run (or any run whose early activations had a different scale) they describe
weights that no longer exist, and eval-mode outputs drift away from train-mode ones. Recomputing them with
the final weights over a handful of training batches (as SWA's ``update_bn`` does) makes dev scoring,
threshold choice and the saved checkpoint see the network training actually produced.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


class _LocalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm of any input rank >= 2: what a SyncBatchNorm computes when it is alone (no collectives)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")


@contextmanager
def local_batchnorm(model: nn.Module) -> Iterator[None]:
    """Inside the block every ``SyncBatchNorm`` of ``model`` normalises with this process's own batch
    statistics, like a plain BatchNorm, instead of all-reducing them over the process group.

    In train mode a SyncBatchNorm's forward is a collective: every rank must run it the same number of times.
    Work that only rank 0 does in train mode (the recalibration below) would wait forever for the others."""
    syncs = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    for m in syncs:
        m.__class__ = _LocalBatchNorm  # same attributes and buffers; only forward's dispatch differs
    try:
        yield
    finally:
        for m in syncs:
            m.__class__ = nn.SyncBatchNorm


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Reset every BatchNorm's running mean/var and recompute them as the plain average over ``batches``
    (model inputs, e.g. ``(B, T, 3, S, S)``) with the current weights. Returns the number of batches used;
    with none, the statistics are left untouched. The model's train/eval mode is restored afterwards.

    Safe to call on one rank alone: SyncBatchNorm layers (multi-GPU runs) recompute their statistics from this
    rank's batches (:func:`local_batchnorm`), and DDP then broadcasts rank 0's buffers to the other ranks."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    batches = list(batches)
    if not bns or not batches:
        return 0
    was_training = model.training
    momenta = {m: m.momentum for m in bns}
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    try:
        with local_batchnorm(model):
            for x in batches:
                model(x)
    finally:
        for m in bns:
            m.momentum = momenta[m]
        model.train(was_training)
    return len(batches)


__all__ = ["recalibrate_batchnorm", "local_batchnorm"]
