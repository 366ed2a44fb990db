"""Video frames -> aligned face clips. The one function both labeling and serving use, so they crop identically."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from components.data.clips import clip_indices, clip_span, clip_starts

from .crop import DEFAULT_FACE_FRACTION, similarity_transform, transform_points, warp
from .landmarks import Face, LandmarkBackend
from .tracking import FACE_PATHS, FaceTracker, TrackConfig, iou

# A second face smaller than this share of the largest face's area is ignored by the multiple-faces check: it is a
# background face or a detector false hit, and the crop follows the largest face anyway.
SECONDARY_FACE_AREA = 0.25


class LabelingError(ValueError):
    """A video cannot be turned into clips; ``reason`` is one of REASONS (machine-readable, used in reports)."""

    REASONS = ("too_short", "no_face", "multiple_faces", "not_a_video", "unreadable", "error")

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class FaceClips:
    crops: np.ndarray  # (N, T, S, S, 3) uint8 RGB
    points: np.ndarray  # (N, T, 68, 2) float32, crop pixels
    points3d: np.ndarray | None  # (N, T, 68, 3) float32 or None when the backend is 2D
    starts: list[int]  # first frame index of each clip
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) of the first detected face, frame pixels
    n_frames_no_face: int  # sampled frames where the backend found no face (in kept and dropped clips)
    max_faces: int  # most faces seen in one sampled frame
    full_detections: int = 0  # sampled frames that ran the full-frame detector (all of them for face_path detect)

    @property
    def n_no_face(self) -> int:  # name used in docs/ARCHITECTURE.md
        return self.n_frames_no_face

    @property
    def n_faces_max(self) -> int:
        return self.max_faces

    def __len__(self) -> int:
        return len(self.starts)


def _significant(faces: list[Face]) -> int:
    if not faces:
        return 0
    return sum(f.area >= SECONDARY_FACE_AREA * faces[0].area for f in faces)


def extract_clips(frames: np.ndarray, backend: LandmarkBackend, crop_size: int, clip_len: int = 4,
                  clip_interval: int = 3, max_clips: int | None = None, allow_multiple: bool = False,
                  face_fraction: float = DEFAULT_FACE_FRACTION, face_path: str = "detect",
                  track: Mapping[str, Any] | None = None) -> FaceClips:
    """Aligned face clips from a video's frames (F, H, W, 3) uint8 RGB.

    Only the frames the clips use are run through the backend; ``face_path="track"`` detects on a few of them
    and follows the face on the rest (:mod:`.tracking`, options ``track``), ``"detect"`` detects on each. One similarity transform per clip (from the
    clip's mean landmarks) crops all its frames, so the face's real motion inside a clip survives the crop; the
    per-frame landmarks are carried into crop coordinates for the label maps.
    A sampled frame without a face borrows the landmarks of the nearest frame of the same clip that has one
    (every faceless sampled frame counts in ``n_frames_no_face``); a clip with no face at all is dropped.

    Raises LabelingError: ``too_short`` (fewer frames than one clip spans), ``no_face`` (no clip has a face),
    ``multiple_faces`` (two comparable faces in a frame and ``allow_multiple`` is False; otherwise the face
    overlapping the first detected one is followed).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (F, H, W, 3), got {frames.dtype} {frames.shape}")
    n = len(frames)
    span = clip_span(clip_len, clip_interval)
    if n < span:
        raise LabelingError("too_short", f"{n} frames, a clip of {clip_len} frames at interval {clip_interval} "
                                         f"needs {span}")
    starts = clip_starts(n, clip_len, clip_interval, max_clips)

    if face_path not in FACE_PATHS:
        raise ValueError(f"face_path must be one of {list(FACE_PATHS)}, got {face_path!r}")
    tracker = FaceTracker(backend, TrackConfig(**(track or {}))) if face_path == "track" else None
    detections: dict[int, list[Face]] = {}
    ref_box = None
    max_faces = 0
    for s in starts:
        for i in clip_indices(s, clip_len, clip_interval):  # increasing frame order, as the tracker needs
            faces = tracker.detect(frames[i], i) if tracker else backend.detect(frames[i])
            detections[i] = faces
            max_faces = max(max_faces, len(faces))
            if _significant(faces) > 1 and not allow_multiple:
                raise LabelingError("multiple_faces", f"frame {i} has {_significant(faces)} faces of comparable "
                                                      "size; one face per video is expected")
            if faces and ref_box is None:
                ref_box = faces[0].box

    def pick(faces: list[Face]) -> Face | None:
        if not faces:
            return None
        # Follow the same person: the face overlapping the first detected face, else the largest.
        best = max(faces, key=lambda f: iou(f.box, ref_box))
        return best if iou(best.box, ref_box) > 0 else faces[0]

    crops, points, points3d, kept = [], [], [], []
    n_no_face = sum(1 for faces in detections.values() if not faces)
    has_3d = True
    for s in starts:
        idx = clip_indices(s, clip_len, clip_interval)
        chosen = [pick(detections[i]) for i in idx]
        found = [k for k, f in enumerate(chosen) if f is not None]
        if not found:
            continue
        for k in range(len(chosen)):
            if chosen[k] is None:
                chosen[k] = chosen[min(found, key=lambda j: abs(j - k))]
        mean_pts = np.mean([f.points for f in chosen], axis=0)  # (68, 2)
        m = similarity_transform(mean_pts, crop_size, face_fraction)
        crops.append(np.stack([warp(frames[i], m, crop_size) for i in idx]))  # (T, S, S, 3)
        points.append(np.stack([transform_points(m, f.points) for f in chosen]))  # (T, 68, 2)
        if all(f.points3d is not None for f in chosen):
            points3d.append(np.stack([transform_points(m, f.points3d) for f in chosen]))  # (T, 68, 3)
        else:
            has_3d = False
        kept.append(s)
    if not kept:
        raise LabelingError("no_face", f"no face found in the {len(detections)} sampled frames")
    return FaceClips(
        crops=np.stack(crops),  # (N, T, S, S, 3)
        points=np.stack(points).astype(np.float32),  # (N, T, 68, 2)
        points3d=np.stack(points3d).astype(np.float32) if has_3d and points3d else None,  # (N, T, 68, 3)
        starts=kept,
        box=tuple(float(v) for v in ref_box),
        n_frames_no_face=n_no_face,
        max_faces=max_faces,
        full_detections=tracker.full if tracker else len(detections),
    )
