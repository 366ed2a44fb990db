"""Face crops aligned from landmarks: a similarity transform (rotation + uniform scale + shift) that levels the
eyes and scales the face so its landmarks fill a fixed fraction of the crop. Landmarks are carried into the crop.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .landmarks import LEFT_EYE, RIGHT_EYE, Face

DEFAULT_FACE_FRACTION = 0.75
# The smallest crop anything is cut, trained or served at: the label maps are crop // 8 a side, and under 4x4
# a map has no interior to place a face in. One rule for labeling's and the checkpoint's configs.
MIN_CROP = 32


def clip_geometry_errors(crop_size: Any, clip_len: Any, clip_interval: Any) -> list[str]:
    """What is wrong with a crop size and clip shape (empty when nothing): one rule for labeling and inference."""
    errors = []
    if not isinstance(crop_size, int) or isinstance(crop_size, bool) or crop_size < MIN_CROP or crop_size % 8:
        errors.append(f"crop_size must be a multiple of 8 and >= {MIN_CROP} (label maps are crop_size // 8), "
                      f"got {crop_size!r}")
    if not isinstance(clip_len, int) or not isinstance(clip_interval, int) or clip_len < 2 or clip_interval < 1:
        errors.append(f"clip_len must be >= 2 (EulerNet reads change between frames) and clip_interval >= 1, "
                      f"got {clip_len!r}, {clip_interval!r}")
    return errors


def _points_of(face_or_points) -> np.ndarray:
    pts = face_or_points.points if isinstance(face_or_points, Face) else face_or_points
    pts = np.asarray(pts, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2 or pts.shape[0] != 68:
        raise ValueError(f"expected 68 landmarks (68, 2), got shape {pts.shape}")
    return pts[:, :2]


def similarity_transform(points, size: int, face_fraction: float = DEFAULT_FACE_FRACTION) -> np.ndarray:
    """2x3 matrix mapping frame pixels to crop pixels for 68 ``points`` (68, 2).

    The eye line becomes horizontal; the landmarks' extent (in the rotated frame) spans ``face_fraction`` of
    ``size`` on its longer side and is centred. The extent is used rather than the detector box because boxes
    differ between backends while the 68-point scheme is shared, so all backends crop alike.
    """
    if size < 8:
        raise ValueError(f"crop size must be >= 8, got {size}")
    if not 0.1 <= face_fraction <= 1.0:
        raise ValueError(f"face_fraction must be in [0.1, 1], got {face_fraction}")
    pts = _points_of(points)
    d = pts[LEFT_EYE].mean(0) - pts[RIGHT_EYE].mean(0)
    angle = np.arctan2(d[1], d[0])
    c, s = np.cos(-angle), np.sin(-angle)
    rot = np.array([[c, -s], [s, c]])  # undoes the eye-line tilt
    rp = pts @ rot.T  # (68, 2) in the levelled frame
    lo, hi = rp.min(0), rp.max(0)
    extent = max(float((hi - lo).max()), 1.0)
    scale = face_fraction * size / extent
    centre = (lo + hi) / 2.0
    a = scale * rot
    t = size / 2.0 - a @ (rot.T @ centre)  # rot.T @ centre: the levelled centre back in frame coordinates
    return np.hstack([a, t[:, None]]).astype(np.float64)  # (2, 3)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 similarity to (N, 2) points; (N, 3) points also get z scaled by the same factor."""
    pts = np.asarray(points, dtype=np.float64)
    xy = pts[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    if pts.shape[1] == 3:
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        return np.hstack([xy, pts[:, 2:3] * scale]).astype(np.float32)
    return xy.astype(np.float32)


def warp(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The crop (size, size, 3) uint8; outside the frame is black (constant border) so padding is visible."""
    import cv2

    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))


def align_crop(frame: np.ndarray, face_or_points, size: int,
               face_fraction: float = DEFAULT_FACE_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Aligned face crop (size, size, 3) uint8 and the 68 landmarks in crop pixels (68, 2) float32."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    m = similarity_transform(face_or_points, size, face_fraction)
    return warp(frame, m, size), transform_points(m, _points_of(face_or_points))
