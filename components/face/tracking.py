"""Follow one face through a video: a full detection on a few frames, a cheap search near the last box on the rest.

Full-frame detection is most of the cost of turning a video into clips (dlib's HOG at upsample 1 on a 480x270
frame: ~40 ms; the 68 points given a box: ~1 ms). Over a few seconds of a selfie the face moves little, so after
one full detection each later frame is searched only in a window around the previous box, rescaled so the face
is about ``search_face_px`` wide (~2 ms). The window search runs the same detector, so boxes keep the detector's
own geometry (``benchmarks/face_agreement.py`` measures the agreement with detecting every frame). Frames of one
clip (at most ``near_gap`` apart) need not even that: their 68 points are fitted in the previous box and the box
moves with them (``follow_max_shift``), checked by how well its content correlates with the face's patch on the
frame before (``follow_min_ncc``); a failed check falls back to the window search.

A full detection runs again (and with it the several-faces check) on the first frame, every ``redetect_every``
frames, and whenever the window search loses the face or its box jumps (IoU with the previous box below
``min_iou``): the tracking confidence test.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .landmarks import Face, LandmarkBackend

FACE_PATHS = ("detect", "track")


@dataclass(frozen=True)
class TrackConfig:
    # Frames between full detections: the several-faces recheck (the window search runs the same detector, so
    # boxes do not drift). 60 (2 s at 30 fps) gives a 2-s request one full detection; 45 gave it two (+42 ms).
    redetect_every: int = 60
    search_scale: float = 2.0     # window side / face box side: room for the motion between sampled frames
    # Frames at most near_gap apart (the frames of one clip: clip_interval 3) move less, so their window is
    # near_scale times the face: HOG over a 150 px window instead of 200 px, ~1.7 ms instead of ~3.3. 0: off.
    near_gap: int = 3
    near_scale: float = 1.5
    search_face_px: int = 100     # the face's width inside the rescaled window; HOG at upsample 0 needs >= ~80 px
    # Near frames are followed by their landmarks: the 68 points are fitted in the previous box (no detector run,
    # ~1.5 ms instead of ~3.3 for window search + points) and the box moves with their mean. When the points
    # moved more than this share of the face's side, the face moved too far for a box fitted to where it was, and
    # the window search runs instead. 0: off (near frames get the window search).
    follow_max_shift: float = 0.1
    # Points fitted in a box always look like a face, even where the face has left: a followed box is kept only
    # when its grey patch correlates (NCC) at least this well with the face's patch on the frame before.
    follow_min_ncc: float = 0.6
    min_iou: float = 0.3          # window box vs previous box below this: lost, detect the full frame again
    # A first full detection looks without upsampling (~4x cheaper); a face at least this wide found so is kept
    # without the upsampled pass, since a face half as wide (the several-faces check ignores smaller ones) is
    # also found without upsampling. A re-detection scales the frame by this / the followed face's width (at
    # most 2x, dlib's upsampled pass) for the same reason. 0: always the backend's own detection.
    coarse_min_face_px: int = 160

    def __post_init__(self) -> None:
        if self.redetect_every < 1:
            raise ValueError(f"redetect_every must be >= 1, got {self.redetect_every}")
        if self.search_scale < 1.2:
            raise ValueError(f"search_scale must be >= 1.2 (the window must exceed the box), got {self.search_scale}")
        if self.near_gap < 0:
            raise ValueError(f"near_gap must be >= 0 (0: off), got {self.near_gap}")
        if not 1.2 <= self.near_scale <= self.search_scale:
            raise ValueError(f"near_scale must be in [1.2, search_scale={self.search_scale}], got {self.near_scale}")
        if not 0.0 <= self.follow_max_shift <= 0.25:
            raise ValueError(f"follow_max_shift must be in [0, 0.25] (0: off), got {self.follow_max_shift}")
        if not -1.0 <= self.follow_min_ncc < 1.0:
            raise ValueError(f"follow_min_ncc must be in [-1, 1), got {self.follow_min_ncc}")
        if self.search_face_px < 40:
            raise ValueError(f"search_face_px must be >= 40, got {self.search_face_px}")
        if not 0.0 < self.min_iou < 1.0:
            raise ValueError(f"min_iou must be in (0, 1), got {self.min_iou}")
        if self.coarse_min_face_px and self.coarse_min_face_px < 160:
            raise ValueError(f"coarse_min_face_px must be 0 (off) or >= 160 (twice the smallest face HOG finds "
                             f"without upsampling), got {self.coarse_min_face_px}")


def face_path_errors(face_path: str, track) -> list[str]:
    """What is wrong with a face path and its tracker options (empty: nothing); label and inference configs both
    check their settings with this, so the two cannot accept different things."""
    errors = []
    if face_path not in FACE_PATHS:
        errors.append(f"face_path must be one of {list(FACE_PATHS)}, got {face_path!r}")
    try:
        TrackConfig(**dict(track or {}))
    except (TypeError, ValueError) as exc:
        errors.append(f"track: {exc}")
    return errors


# Options added after checkpoints began recording resolved tracker options, with the value that reproduces what
# those checkpoints' labels were made with (the option did not exist, i.e. the old behaviour).
_BEFORE_OPTION = {"follow_max_shift": 0.0, "follow_min_ncc": 0.6}


def resolved_track(track) -> dict[str, Any]:
    """Every tracker option, defaults filled in: what a checkpoint records, so that serving follows faces exactly
    as its labels were made even after a default here changes (a checkpoint that recorded ``{}`` gets today's)."""
    return dataclasses.asdict(TrackConfig(**dict(track or {})))


def recorded_track(track) -> dict[str, Any]:
    """The tracker options a checkpoint recorded, read back: a resolved record from before an option existed gets
    that option's old behaviour, not today's default (``{}``, recorded before any were resolved, stays ``{}``)."""
    track = dict(track or {})
    if track:
        for key, old in _BEFORE_OPTION.items():
            track.setdefault(key, old)
    return track


_PATCH = 24  # side of the grey patch followed boxes are compared by: enough for a face's layout, ~0.05 ms


def _patch(frame: np.ndarray, box) -> np.ndarray | None:
    """The box's content as a zero-mean, unit-norm ``(_PATCH, _PATCH)`` grey patch; None when the box is (almost)
    outside the frame or its content is flat (nothing to correlate)."""
    import cv2

    h, w = frame.shape[:2]
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(w, int(round(box[2]))), min(h, int(round(box[3])))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    g = cv2.resize(frame[y0:y1, x0:x1], (_PATCH, _PATCH), interpolation=cv2.INTER_AREA).astype(np.float32)
    g = g.mean(axis=2)
    g -= g.mean()
    norm = float(np.linalg.norm(g))
    return g / norm if norm > 0.5 * _PATCH else None  # under ~0.5 grey level of spread per pixel: flat


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Per-video state over a landmark backend; ``detect(frame, index)`` answers like ``backend.detect(frame)``.

    Frames must come in increasing ``index`` order (clip extraction visits sampled frames in time order). On a
    tracked frame only the followed face is returned: several-faces checks belong to full detections.
    ``full`` and ``tracked`` count the two kinds of frames (``coarse``: full detections that needed no upsampling;
    ``followed``: tracked frames settled by their landmarks alone).
    """

    def __init__(self, backend: LandmarkBackend, cfg: TrackConfig | None = None):
        if not hasattr(backend, "detect_boxes") or not hasattr(backend, "landmarks_for_boxes"):
            raise TypeError(f"backend {getattr(backend, 'name', backend)!r} cannot be tracked: it needs "
                            "detect_boxes() and landmarks_for_boxes()")
        self.backend = backend
        self.cfg = cfg or TrackConfig()
        self._face: Face | None = None  # the followed face on the last frame (its box is where to look next)
        self._patch: np.ndarray | None = None  # and its grey patch (_patch), what a followed box is checked against
        self._last_full: int | None = None
        self._last_index: int | None = None
        self.full = 0
        self.coarse = 0  # full detections settled without the upsampled pass
        self.tracked = 0
        self.followed = 0

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """The followed face's box after the last frame (None before a face was found)."""
        return None if self._face is None else self._face.box

    def detect(self, frame_rgb: np.ndarray, index: int) -> list[Face]:
        if self._last_index is not None and index <= self._last_index:
            raise ValueError(f"frames must be tracked in increasing order, got {index} after {self._last_index}")
        gap = None if self._last_index is None else index - self._last_index
        self._last_index = index
        due = self._last_full is None or index - self._last_full >= self.cfg.redetect_every
        if not due and self._face is not None:
            near = gap is not None and gap <= self.cfg.near_gap
            face = self._follow(frame_rgb) if near and self.cfg.follow_max_shift > 0 else None
            if face is not None:
                self.followed += 1
            else:
                face = self._search(frame_rgb, self.box, self.cfg.near_scale if near else self.cfg.search_scale)
            if face is not None:
                self.tracked += 1
                self._keep(frame_rgb, face)
                return [face]
        faces = self._detect_full(frame_rgb)
        self.full += 1
        self._last_full = index
        if faces:
            # Keep following the same person: the face overlapping the followed box, else the largest.
            self._keep(frame_rgb, max(faces, key=lambda f: iou(f.box, self.box)) if self._face else faces[0])
        return faces

    def _keep(self, frame: np.ndarray, face: Face) -> None:
        self._face = face
        self._patch = _patch(frame, face.box) if self.cfg.follow_max_shift > 0 else None

    def _follow(self, frame: np.ndarray) -> Face | None:
        """The followed face's landmarks fitted in its last box, and that box moved by their mean shift; None when
        they shifted more than ``follow_max_shift`` of the face's side, when the moved box's content does not
        correlate with the face's on the frame before (``follow_min_ncc``), or when the backend found no points."""
        last = self._face
        if last is None or self._patch is None:
            return None
        faces = self.backend.landmarks_for_boxes(frame, [last.box], [last.score])
        if not faces:
            return None
        face = faces[0]
        dx, dy = (face.points.mean(axis=0) - last.points.mean(axis=0)).tolist()
        x0, y0, x1, y1 = last.box
        if np.hypot(dx, dy) > self.cfg.follow_max_shift * max(x1 - x0, y1 - y0):
            return None
        box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
        patch = _patch(frame, box)
        if patch is None or float((patch * self._patch).sum()) < self.cfg.follow_min_ncc:
            return None
        return Face(box, face.points, face.points3d, face.score)

    def _detect_full(self, frame: np.ndarray) -> list[Face]:
        if self.cfg.coarse_min_face_px and getattr(self.backend, "upsample", 0) > 0:
            if self._face is not None:  # a re-detection: the followed face's size bounds what still counts
                faces = self._redetect_scaled(frame, self.box)
                if faces:
                    self.coarse += 1
                    return faces
            else:
                found = self.backend.detect_boxes(frame, upsample=0)
                if found and max(b[2] - b[0] for b, _ in found) >= self.cfg.coarse_min_face_px:
                    self.coarse += 1
                    return self.backend.landmarks_for_boxes(frame, [b for b, _ in found], [s for _, s in found])
        return self.backend.detect(frame)

    def _redetect_scaled(self, frame: np.ndarray, box) -> list[Face] | None:
        """A full-frame detection at the smallest scale that still finds every face the several-faces check
        counts: one at least half as wide as the followed face (a quarter of its area). HOG without upsampling
        finds faces of about ``coarse_min_face_px / 2`` px, so the frame is scaled by ``coarse_min_face_px /
        face width``: about 1.45x for a 110 px face, half the pixels of dlib's 2x upsampled pass. None when that
        scale would reach the 2x pass anyway, or when nothing is found (the caller then runs the full pass)."""
        import cv2

        scale = self.cfg.coarse_min_face_px / max(1.0, box[2] - box[0])
        if scale >= 2.0:
            return None
        scale = max(scale, 1.0)
        h, w = frame.shape[:2]
        img = frame if scale == 1.0 else np.ascontiguousarray(
            cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR))
        found = self.backend.detect_boxes(img, upsample=0)
        if not found:
            return None
        boxes = [tuple(v / scale for v in b) for b, _ in found]
        return self.backend.landmarks_for_boxes(frame, boxes, [s for _, s in found])

    def _search(self, frame: np.ndarray, box, search_scale: float) -> Face | None:
        import cv2

        h, w = frame.shape[:2]
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0)
        if side < 4:
            return None
        half = side * search_scale / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        wx0, wy0 = int(max(0, cx - half)), int(max(0, cy - half))
        wx1, wy1 = int(min(w, cx + half)), int(min(h, cy + half))
        if wx1 - wx0 < 8 or wy1 - wy0 < 8:
            return None
        scale = self.cfg.search_face_px / side
        window = frame[wy0:wy1, wx0:wx1]
        size = (max(8, round((wx1 - wx0) * scale)), max(8, round((wy1 - wy0) * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        window = np.ascontiguousarray(cv2.resize(window, size, interpolation=interp))
        found = self.backend.detect_boxes(window, upsample=0)
        if not found:
            return None
        sx, sy = (wx1 - wx0) / size[0], (wy1 - wy0) / size[1]
        cands = [((bx0 * sx + wx0, by0 * sy + wy0, bx1 * sx + wx0, by1 * sy + wy0), score)
                 for (bx0, by0, bx1, by1), score in found]
        best, score = max(cands, key=lambda c: iou(c[0], box))
        if iou(best, box) < self.cfg.min_iou:
            return None
        faces = self.backend.landmarks_for_boxes(frame, [best], [score])
        return faces[0] if faces else None
