"""Hand statistics of a face video: the cheap cues a learned model has to beat.

Each statistic reads a window of decoded frames ``(F, H, W, 3)`` uint8 RGB and the 68 landmarks tracked on them
``(F, 68, 2)`` (NaN rows where no face was found) and returns one number; :func:`statistics_bank` returns them
all. They are what a reviewer would try first, so a benchmark on which any one of them separates live from
attack is a benchmark with a shortcut, and a model that does not beat a logistic regression on all of them
(``learned_stats`` in the benchmarks) has learnt nothing a few lines could not.

* ``nonrigid_motion``: 90th percentile over frames of the 68 points' RMS residual after a similarity fit to the
  first frame, per eye distance: a face deforms (blinks, speech, expression), a held photo does not.
* ``rigid_motion``: std over frames of the similarity's translation, per eye distance (head or hand motion).
* ``face_motion`` / ``frame_difference``: mean absolute grey-level change between frames, inside the face box /
  over the whole frame (0..1).
* ``chroma_pulse``: share of the detrended G/(R+B) trace's power in the cardiac band (0.7-3 Hz), face centre.
* ``global_flicker``: std of the whole-frame brightness after a 5-frame moving average is removed, relative to
  the mean (screens and mains lighting flicker; a live scene in daylight does not).
* ``tone_contrast``: the face's grey-level 5-95 % range (0..1): a print or a screen compresses the tone curve.
* ``blink``: 1 - min / median of the eye aspect ratio over the window (a blink closes the eye).
* ``face_background_corr``: correlation over time of face-box motion with the motion outside the box: a held
  photo in front of a fixed camera moves alone, a hand-held phone moves face and room together.
"""
from __future__ import annotations

import numpy as np

# One face geometry for the statistics and the model's video head: the same residual, eye unit and EAR.
from components.inference.video_head import eye_aspect_ratio as _ear
from components.inference.video_head import eye_distance as _eye_distance
from components.inference.video_head import similarity_residual as _similarity_residual

STATISTICS = ("nonrigid_motion", "rigid_motion", "face_motion", "frame_difference", "chroma_pulse",
              "global_flicker", "tone_contrast", "blink", "face_background_corr")


def _box(points: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape
    x0, y0 = np.floor(points.min(0)).astype(int)
    x1, y1 = np.ceil(points.max(0)).astype(int)
    return max(0, x0), max(0, y0), min(w, x1 + 1), min(h, y1 + 1)


def _detrend(x: np.ndarray, k: int) -> np.ndarray:
    if len(x) <= k:
        return x - x.mean()
    kernel = np.ones(k) / k
    pad = np.pad(x, (k // 2, k - 1 - k // 2), mode="edge")
    return x - np.convolve(pad, kernel, mode="valid")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def statistics_bank(frames: np.ndarray, points: np.ndarray, fps: float) -> dict[str, float]:
    """Every statistic in :data:`STATISTICS` for one window. ``frames`` (F, H, W, 3) uint8 RGB, ``points``
    (F, 68, 2) float with NaN rows for frames without a face (at least 3 frames with a face are needed)."""
    frames = np.asarray(frames)
    points = np.asarray(points, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (F, H, W, 3) uint8 RGB, got {frames.dtype} {frames.shape}")
    if points.shape != (len(frames), 68, 2):
        raise ValueError(f"points must be (F={len(frames)}, 68, 2), got {points.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    ok = np.isfinite(points).all(axis=(1, 2))
    if ok.sum() < 3:
        raise ValueError(f"a face was found on {int(ok.sum())} of {len(frames)} frames; at least 3 are needed")
    frames, points = frames[ok], points[ok]  # (F', H, W, 3), (F', 68, 2)
    grey = frames.astype(np.float32).mean(axis=3) / 255.0  # (F', H, W)
    ref = points[0]
    eye = max(_eye_distance(ref), 1.0)

    fits = [_similarity_residual(p, ref) for p in points]
    residual = np.array([r for r, _ in fits]) / eye  # (F',)
    shift = np.array([t for _, t in fits]) / eye  # (F', 2)

    box = _box(np.median(points, axis=0), grey.shape[1:])
    x0, y0, x1, y1 = box
    diff = np.abs(np.diff(grey, axis=0))  # (F'-1, H, W)
    face_diff = diff[:, y0:y1, x0:x1].mean(axis=(1, 2))  # (F'-1,)
    outside = np.ones(grey.shape[1:], bool)
    outside[y0:y1, x0:x1] = False
    back_diff = diff[:, outside].mean(axis=1) if outside.any() else np.zeros_like(face_diff)

    # Face centre (the cheeks and nose, where rPPG is read): the middle half of the face box.
    cx0, cx1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
    cy0, cy1 = y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4
    rgb = frames[:, cy0:cy1, cx0:cx1].astype(np.float64).mean(axis=(1, 2))  # (F', 3)
    ratio = rgb[:, 1] / np.maximum(rgb[:, 0] + rgb[:, 2], 1e-6)
    trace = _detrend(ratio, max(3, int(round(fps))))
    spec = np.abs(np.fft.rfft(trace)) ** 2
    freqs = np.fft.rfftfreq(len(trace), 1.0 / fps)
    band = (freqs >= 0.7) & (freqs <= 3.0)
    pulse = float(spec[band].sum() / max(spec[1:].sum(), 1e-12)) if len(spec) > 1 else 0.0

    lum = grey.mean(axis=(1, 2))  # (F',)
    flicker = float(_detrend(lum, 5).std() / max(lum.mean(), 1e-6))
    face_grey = grey[:, y0:y1, x0:x1]
    contrast = float(np.median([np.percentile(f, 95) - np.percentile(f, 5) for f in face_grey]))
    ears = np.array([_ear(p) for p in points])
    blink = float(1.0 - ears.min() / max(np.median(ears), 1e-6))
    return {
        "nonrigid_motion": float(np.percentile(residual, 90)),
        "rigid_motion": float(np.linalg.norm(shift.std(axis=0))),
        "face_motion": float(face_diff.mean()) if len(face_diff) else 0.0,
        "frame_difference": float(diff.mean()) if len(diff) else 0.0,
        "chroma_pulse": pulse,
        "global_flicker": flicker,
        "tone_contrast": contrast,
        "blink": blink,
        "face_background_corr": _corr(face_diff, back_diff),
    }


class LearnedStatistics:
    """The ``learned_stats`` reference: a logistic regression on :func:`statistics_bank` (standardised,
    log-compressed where a statistic spans decades), threshold chosen on the data it is told to (dev)."""

    def __init__(self, names: tuple[str, ...] = STATISTICS, c: float = 1.0):
        self.names = tuple(names)
        self.c = float(c)
        self._model = None
        self.threshold: float | None = None

    def _matrix(self, rows: list[dict[str, float]]) -> np.ndarray:
        x = np.array([[float(r[n]) for n in self.names] for r in rows], dtype=np.float64)  # (N, K)
        # Motion and flicker statistics are non-negative and span orders of magnitude between a still and a
        # moving head: a log keeps one extreme clip from setting the whole scale.
        signed = {"face_background_corr"}
        for j, n in enumerate(self.names):
            if n not in signed:
                x[:, j] = np.log(np.maximum(x[:, j], 0.0) + 1e-4)
        return x

    def fit(self, rows: list[dict[str, float]], labels) -> "LearnedStatistics":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        y = np.asarray(labels).astype(int)
        if len(set(y.tolist())) < 2:
            raise ValueError("learned_stats needs live and attack rows to fit")
        self._model = make_pipeline(StandardScaler(), LogisticRegression(C=self.c, class_weight="balanced",
                                                                         max_iter=2000))
        self._model.fit(self._matrix(rows), y)
        return self

    def score(self, rows: list[dict[str, float]]) -> np.ndarray:
        """Live probability per row (N,)."""
        if self._model is None:
            raise RuntimeError("fit() first")
        if not rows:
            return np.zeros(0)
        return self._model.predict_proba(self._matrix(rows))[:, 1]

    def choose_threshold(self, rows: list[dict[str, float]], labels, rule: str = "eer") -> float:
        from .rates import choose_threshold

        self.threshold = choose_threshold(self.score(rows), labels, rule)
        return self.threshold


__all__ = ["STATISTICS", "statistics_bank", "LearnedStatistics"]
