"""BatchNorm statistics that match the weights they are used with.

BatchNorm's running statistics are an exponential average over the batches seen while the weights were
still moving; after a short run (or any run whose early activations had a different scale) they describe
weights that no longer exist, and eval-mode outputs drift away from train-mode ones. Recomputing them with
the final weights over a handful of training batches (as SWA's ``update_bn`` does) makes dev scoring,
threshold choice and the saved checkpoint see the network training actually produced.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Reset every BatchNorm's running mean/var and recompute them as the plain average over ``batches``
    (model inputs, e.g. ``(B, T, 3, S, S)``) with the current weights. Returns the number of batches used;
    with none, the statistics are left untouched. The model's train/eval mode is restored afterwards."""
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
        for x in batches:
            model(x)
    finally:
        for m in bns:
            m.momentum = momenta[m]
        model.train(was_training)
    return len(batches)


__all__ = ["recalibrate_batchnorm"]
