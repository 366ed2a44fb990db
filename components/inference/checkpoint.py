"""Self-describing checkpoints: weights + architecture + the inference config, in one plain dict.

Layout (``torch.load(path, weights_only=True)`` reads it without trusting pickled code)::

    {"format": "eulernet-checkpoint/1", "variant": str, "model_config": EulerNetConfig as a dict,
     "state_dict": {...}, "preprocess": {"crop_size", "mean", "std"},
     "clip": {"length", "interval", "per_video"}, "label_type": str, "threshold": float | None,
     "landmark": {"backend", "options", "face_fraction", "max_side", "face_path", "track"},
     ["video_head": {...}], ["window_seconds": float], "extra": {...}}   # [...]: only when set

Everything except ``format``, ``model_config``, ``state_dict`` and ``extra`` is :class:`InferenceConfig`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.model.eulernet import EulerNet

from .config import CheckpointError, InferenceConfig

CHECKPOINT_FORMAT = "eulernet-checkpoint/1"


def _plain(value: Any) -> Any:
    """Tuples -> lists, numpy scalars -> python, recursively: keeps the checkpoint weights_only-loadable."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise CheckpointError(f"checkpoint metadata must be plain python types, got {type(value).__name__}: {value!r}")


def build_meta(*, extra: Mapping[str, Any] | None = None, **inference: Any) -> dict:
    """Checkpoint metadata from :class:`InferenceConfig` keyword arguments plus a free ``extra`` dict."""
    try:
        cfg = InferenceConfig(**inference)
    except TypeError as exc:
        raise CheckpointError(f"bad inference settings: {exc}") from exc
    return _plain(cfg.to_meta(extra))


def make_checkpoint(model: EulerNet, meta: Mapping[str, Any] | InferenceConfig,
                    extra: Mapping[str, Any] | None = None) -> dict:
    """The checkpoint dict for ``model`` with ``meta`` (an InferenceConfig, or :func:`build_meta`'s dict)."""
    if isinstance(meta, InferenceConfig):
        meta = meta.to_meta(extra)
    required = ("variant", "preprocess", "clip", "label_type", "threshold", "landmark")
    missing = [k for k in required if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint meta lacks {missing}; build it with build_meta(...)")
    # Unwrap DDP / torch.compile wrappers first: the keys (and .cfg) must be those of a bare EulerNet.
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    if meta["clip"]["length"] != model.cfg.clip_len:
        raise CheckpointError(
            f"meta clip length {meta['clip']['length']} differs from the model's clip_len {model.cfg.clip_len}")
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    ckpt = {"format": CHECKPOINT_FORMAT, "model_config": model.cfg.to_dict(), "state_dict": state}
    ckpt.update(_plain({k: v for k, v in meta.items() if k not in ("format", "model_config", "state_dict")}))
    ckpt.setdefault("extra", {})
    return ckpt


def save_checkpoint(path: str | os.PathLike, model: EulerNet, meta: Mapping[str, Any] | InferenceConfig,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a self-describing checkpoint atomically (temp file + rename, so readers never see half a file)."""
    from components.files import atomic_path

    path = Path(path)
    ckpt = make_checkpoint(model, meta, extra)
    with atomic_path(path) as tmp:  # a unique temp name: two writers of one path never share a half file
        torch.save(ckpt, tmp)
    return path


def validate_checkpoint(ckpt: Any) -> dict:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint must be a dict, got {type(ckpt).__name__}")
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"not an EulerNet checkpoint: format={ckpt.get('format')!r}, want {CHECKPOINT_FORMAT!r}")
    for key in ("model_config", "state_dict", "preprocess", "clip", "label_type", "threshold"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint lacks {key!r}")
    for key in ("crop_size", "mean", "std"):
        if key not in ckpt["preprocess"]:
            raise CheckpointError(f"checkpoint preprocess lacks {key!r}")
    for key in ("length", "interval"):
        if key not in ckpt["clip"]:
            raise CheckpointError(f"checkpoint clip lacks {key!r}")
    return ckpt


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code) and check its layout."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises several types for corrupt / non-checkpoint files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return validate_checkpoint(ckpt)
