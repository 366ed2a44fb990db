"""Video decoding and encoding with OpenCV; every reader error names the file and the reason."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class VideoError(ValueError):
    """A video cannot be used; ``reason`` is a short machine-readable cause."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def read_frames(path: str | Path, max_frames: int | None = None, max_side: int | None = None) -> np.ndarray:
    """Decode up to ``max_frames`` frames as RGB uint8, shape (N, H, W, 3).

    ``max_side`` bounds the resolution read into memory (frames are downscaled, aspect kept) so a huge
    upload cannot exhaust memory before any check runs.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError("missing", f"{path} does not exist")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError("unreadable", f"{path.name} cannot be opened as a video")
        frames = []
        while max_frames is None or len(frames) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if max_side is not None and max(bgr.shape[:2]) > max_side:
                s = max_side / max(bgr.shape[:2])
                bgr = cv2.resize(bgr, (round(bgr.shape[1] * s), round(bgr.shape[0] * s)), interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise VideoError("no_frames", f"{path.name} decoded to zero frames (corrupt or not a video)")
    return np.stack(frames)  # (N, H, W, 3)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0) -> None:
    """Write RGB uint8 frames (N, H, W, 3) as mp4 (mp4v) or avi (MJPG), chosen by suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    h, w = frames.shape[1:3]
    out = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not out.isOpened():
        raise OSError(f"OpenCV cannot write {path}")
    try:
        for f in frames:
            out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        out.release()
