"""Non-learned reference scores: what a benchmark gives away without any training.

A learned model is only interesting where these fail. Both read the same aligned face clips the model sees
(``(N, T, S, S, 3)`` uint8 RGB) and return one score per clip; which direction means "live" is decided on dev
by :func:`orient` (one bit learned from dev, never from test).

* ``chroma_pulse``: the temporal standard deviation of the mean G / (R + B) over the central face region,
  the remote-photoplethysmography cue (blood volume changes green absorption far more than red or blue, and
  a ratio cancels brightness changes).
* ``frame_difference``: the mean absolute frame-to-frame difference, all pixels: plain motion energy.
"""
from __future__ import annotations

import numpy as np

REFERENCES = ("chroma_pulse", "frame_difference")


def _check(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 5 or frames.shape[-1] != 3 or frames.shape[1] < 2:
        raise ValueError(f"frames must be (N, T >= 2, S, S, 3) RGB clips, got {frames.shape}")
    return frames


def chroma_pulse(frames: np.ndarray, centre: float = 0.5) -> np.ndarray:
    """(N, T, S, S, 3) -> (N,): std over time of the central region's mean G / (R + B)."""
    frames = _check(frames)
    s = frames.shape[2]
    lo = int(round(s * (1 - centre) / 2))
    region = frames[:, :, lo:s - lo, lo:s - lo].astype(np.float64)  # (N, T, s', s', 3)
    rgb = region.mean(axis=(2, 3))  # (N, T, 3)
    ratio = rgb[..., 1] / np.maximum(rgb[..., 0] + rgb[..., 2], 1e-6)  # (N, T)
    return ratio.std(axis=1)


def frame_difference(frames: np.ndarray) -> np.ndarray:
    """(N, T, S, S, 3) -> (N,): mean |x_t - x_(t-1)| over pixels, channels and time, in 0..255 units."""
    frames = _check(frames).astype(np.float32)
    return np.abs(np.diff(frames, axis=1)).mean(axis=(1, 2, 3, 4))


def reference_scores(name: str, frames: np.ndarray) -> np.ndarray:
    if name == "chroma_pulse":
        return chroma_pulse(frames)
    if name == "frame_difference":
        return frame_difference(frames)
    raise ValueError(f"unknown reference {name!r}; known: {REFERENCES}")


def orient(dev_scores: np.ndarray, dev_labels: np.ndarray) -> float:
    """+1 when higher scores go with live on dev, else -1 (multiply scores by it)."""
    from components.metrics.rates import auc

    return 1.0 if auc(np.asarray(dev_scores), np.asarray(dev_labels)) >= 0.5 else -1.0


__all__ = ["REFERENCES", "chroma_pulse", "frame_difference", "reference_scores", "orient"]
