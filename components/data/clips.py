"""Clip sampling (paper IV-A): ``length`` frames at ``interval``, non-overlapping clips per video."""
from __future__ import annotations


def clip_span(length: int, interval: int) -> int:
    """Frames a clip covers from its first to its last frame, inclusive."""
    return (length - 1) * interval + 1


def clip_starts(n_frames: int, length: int = 4, interval: int = 3, max_clips: int | None = None) -> list[int]:
    """Start frames of non-overlapping clips, evenly spread over the video when ``max_clips`` caps them.

    A clip starting at t uses frames t, t+interval, ..., t+(length-1)*interval.
    """
    if length < 1 or interval < 1:
        raise ValueError(f"clip length and interval must be >= 1, got {length}, {interval}")
    span = clip_span(length, interval)
    starts = list(range(0, n_frames - span + 1, span))
    if max_clips is not None and len(starts) > max_clips:
        if max_clips <= 0:
            return []
        # Spread the kept clips across the whole video rather than taking only its beginning.
        step = len(starts) / max_clips
        starts = [starts[int(i * step)] for i in range(max_clips)]
    return starts


def clip_indices(start: int, length: int = 4, interval: int = 3) -> list[int]:
    return [start + i * interval for i in range(length)]
