"""Inference: the config that travels with the weights, the checkpoint format, and the one pipeline
video -> faces -> clips -> tensor -> map -> score used by evaluate, serve, predict, the MLflow model and tests.

May import ``components.model`` (the network), ``components.labeling`` (face finding and cropping, the same code
labeling runs) and ``components.data`` (decoding). Names resolve lazily so importing the package loads no torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "config": ("InferenceConfig", "CheckpointError", "DEFAULT_MEAN", "DEFAULT_STD", "FALLBACK_THRESHOLD"),
    "checkpoint": ("CHECKPOINT_FORMAT", "build_meta", "make_checkpoint", "save_checkpoint", "load_checkpoint",
                   "validate_checkpoint"),
    "tensors": ("to_model_input", "clip_scores", "video_score"),
    "predictor": ("Predictor", "make_landmark_backend"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'components.inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
