"""The two tensor rules every path shares: how crops become model input, and how a predicted map becomes a score.

Training, dev scoring, evaluation, serving and the registered MLflow model import these; nothing else may
normalise crops or reduce a map to a score, so the paths cannot drift apart.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def to_model_input(
    crops: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float], device: str | torch.device = "cpu"
) -> torch.Tensor:
    """uint8 RGB crops ``(N, T, S, S, 3)`` -> normalised float ``(N, T, 3, S, S)``: ((x / 255) - mean) / std."""
    if isinstance(crops, np.ndarray):
        # Arrays read from Parquet/Arrow are read-only views; torch must not alias memory it may not write.
        crops = np.ascontiguousarray(crops) if crops.flags.writeable else np.array(crops, copy=True)
    x = torch.as_tensor(crops)
    if x.dim() != 5 or x.shape[-1] != 3:
        raise ValueError(f"crops must be (N, T, S, S, 3) RGB, got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"crops must be uint8, got {x.dtype}")
    x = x.to(device).permute(0, 1, 4, 2, 3).float().div_(255.0)  # (N, T, 3, S, S)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 1, 3, 1, 1)
    return (x - m) / s


def clip_scores(maps: ArrayT) -> ArrayT:
    """Live score per clip: the mean of its predicted map. ``(N, T, M, M)`` -> ``(N,)``.

    The paper scores a clip by the mean of the face location map (live faces light the map up, attacks leave
    it dark); a video's score is the mean of its clip scores (:func:`video_score`).
    """
    if maps.ndim != 4:
        raise ValueError(f"maps must be (N, T, M, M), got shape {tuple(maps.shape)}")
    if isinstance(maps, torch.Tensor):
        return maps.float().mean(dim=(1, 2, 3))
    return np.asarray(maps, dtype=np.float32).mean(axis=(1, 2, 3), dtype=np.float32)


def video_score(scores: np.ndarray | Sequence[float]) -> float:
    """A video's score from its clip scores (their mean); evaluation, serving and predict all use this."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("a video needs at least one clip score")
    return float(scores.mean())
