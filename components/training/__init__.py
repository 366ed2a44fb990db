"""training: Ray Train (V2) worker loop and driver, tracked in MLflow from rank 0.

``TrainConfig``/``TrainResult`` load eagerly (dataclasses only); the loop and driver load on first use so that
``import components.training`` does not pull in torch or Ray.
"""
from __future__ import annotations

import importlib

from components.training.config import TrainConfig, TrainResult

_LAZY = {"fit": "driver", "copy_best": "driver", "TrainingError": "driver",
         "train_loop_per_worker": "loop"}
__all__ = ["TrainConfig", "TrainResult", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'components.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"components.training.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
