"""The video head: how one video's clip scores and face geometry become its live score.

EulerNet scores clips of 4 frames (0.3 s at 30 fps). Two things no single clip shows: how the face changes over the
whole scored window (the clips are spread over up to 10 s) and whether the face *deforms* -- blinks, speech,
expression -- rather than only moving as a rigid sheet does when a photo or a phone is held to the camera. The
68 landmarks the face path already tracks on every clip frame carry the second cue at no extra cost: measured on
real recordings, their non-rigid motion alone tells live faces from held stills of the same frames at AUC 0.99
(docs/evaluation.md), where the clip model trained on renders sat at 0.18.

A head is a logistic regression over named video features (:data:`FEATURES`), fitted on real recordings by
``eulernet reference`` and carried in the checkpoint (``InferenceConfig.video_head``), so evaluation, serving,
``eulernet predict`` and the registered model apply the same one. A checkpoint without a head scores a video by the
mean of its clip scores, as the paper does. Pure numpy: serving imports it without sklearn; :meth:`VideoHead.fit`
imports sklearn when called.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_LEFT_EYE, _RIGHT_EYE = slice(36, 42), slice(42, 48)
_EPS = 1e-4  # floor of the log-compressed features (a perfectly still face has motion 0)


# ------------------------------------------------------------------------------------------------ face geometry
def similarity_residual(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray]:
    """RMS residual of the least-squares similarity mapping ``src`` (68, 2) onto ``dst`` (68, 2), and its
    translation (2,) (Umeyama's closed form: rotation, uniform scale, shift). What a rigid move of the whole face
    (head turn in the image plane, a hand holding a photo) explains is taken out; the residual is deformation."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s ** 2).sum()
    if var < 1e-9:
        return 0.0, mu_d - mu_s
    u, sig, vt = np.linalg.svd(d.T @ s)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    e = np.diag([1.0, sign])
    r = u @ e @ vt
    scale = float((sig * np.diag(e)).sum() / var)
    fitted = scale * s @ r.T + mu_d
    return float(np.sqrt(((fitted - dst) ** 2).sum(1).mean())), mu_d - mu_s


def homography_residual(src: np.ndarray, dst: np.ndarray) -> float:
    """RMS residual of the least-squares homography mapping ``src`` (K >= 5, 2) onto ``dst`` (K, 2) (normalised
    direct linear transform). A flat sheet -- a print, a phone screen -- turned out of its plane moves its landmarks
    by a homography, which a similarity explains only up to the perspective's keystone; a face is not flat, and
    blinks and speech move a few points against the rest, so they stay in the residual."""
    def normalise(p):
        mu = p.mean(0)
        d = np.sqrt(((p - mu) ** 2).sum(1)).mean()
        k = np.sqrt(2) / max(d, 1e-9)
        return np.array([[k, 0, -k * mu[0]], [0, k, -k * mu[1]], [0, 0, 1.0]])

    ts, td = normalise(src), normalise(dst)
    s = src @ ts[:2, :2].T + ts[:2, 2]  # (K, 2)
    d = dst @ td[:2, :2].T + td[:2, 2]
    one, zero = np.ones(len(s)), np.zeros(len(s))
    a = np.concatenate([
        np.column_stack([s[:, 0], s[:, 1], one, zero, zero, zero, -d[:, 0] * s[:, 0], -d[:, 0] * s[:, 1], -d[:, 0]]),
        np.column_stack([zero, zero, zero, s[:, 0], s[:, 1], one, -d[:, 1] * s[:, 0], -d[:, 1] * s[:, 1], -d[:, 1]]),
    ])  # (2K, 9)
    h = np.linalg.svd(a)[2][-1].reshape(3, 3)
    h = np.linalg.inv(td) @ h @ ts
    xy1 = np.column_stack([src, np.ones(len(src))]) @ h.T  # (K, 3)
    w = np.where(np.abs(xy1[:, 2:]) > 1e-12, xy1[:, 2:], 1e-12)
    return float(np.sqrt(((xy1[:, :2] / w - dst) ** 2).sum(1).mean()))


def quadratic_residual(src: np.ndarray, dst: np.ndarray) -> float:
    """RMS residual of the least-squares 2-D quadratic warp (x, y -> polynomials of degree 2: 12 parameters) mapping
    ``src`` (K >= 6, 2) onto ``dst`` (K, 2). A sheet that bows about one axis and turns in perspective moves its
    points by a smooth warp that such a polynomial follows in good part (the bow's depth is quadratic across the
    sheet, a small turn's keystone bilinear; perspective adds higher orders it leaves); a blink or a word moves a
    few points against their neighbours, which it cannot. A cubic follows the bow further, but also more of a
    face's own deformation (in a trial on the open folder it separated flat held stills less well)."""
    mu = src.mean(0)
    scale = max(float(np.sqrt(((src - mu) ** 2).sum(1)).mean()), 1e-9)
    x, y = ((src - mu) / scale).T  # conditioned: unit mean distance from the centroid
    a = np.column_stack([np.ones_like(x), x, y, x * x, x * y, y * y])  # (K, 6)
    coef = np.linalg.lstsq(a, dst, rcond=None)[0]  # (6, 2)
    return float(np.sqrt(((a @ coef - dst) ** 2).sum(1).mean()))


def eye_distance(points: np.ndarray) -> float:
    """Distance between the eye centres of one frame's 68 points: the face's own length unit."""
    return float(np.linalg.norm(points[_LEFT_EYE].mean(0) - points[_RIGHT_EYE].mean(0)))


def eye_aspect_ratio(points: np.ndarray) -> float:
    """Eye aspect ratio of one frame, mean of both eyes (drops towards 0 in a blink)."""
    out = []
    for sl in (_LEFT_EYE, _RIGHT_EYE):
        p = points[sl]
        width = np.linalg.norm(p[0] - p[3])
        out.append((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2 * max(width, 1e-6)))
    return float(np.mean(out))


def nonrigid_motion(points: np.ndarray) -> float:
    """90th percentile over frames of the 68 points' residual after a similarity fit to the first frame, per eye
    distance. ``points`` (F, 68, 2) in any pixel frame that differs between frames by at most a similarity (the
    labeling crop does: one similarity per clip), F >= 2."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2) or len(pts) < 2:
        raise ValueError(f"points must be (F >= 2, 68, 2), got {pts.shape}")
    ref = pts[0]
    eye = max(eye_distance(ref), 1.0)
    residual = np.array([similarity_residual(p, ref)[0] for p in pts]) / eye  # (F,)
    return float(np.percentile(residual, 90))


def _between_clips(points: np.ndarray, residual_of) -> float:
    """90th percentile, per eye distance, of ``residual_of(clip mean, first clip mean)`` over the clips of
    ``points`` (N, T, 68, 2); one clip's frames stand in for clips."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 4 or pts.shape[2:] != (68, 2) or pts.shape[0] * pts.shape[1] < 2:
        raise ValueError(f"points must be (N, T, 68, 2) with N * T >= 2, got {pts.shape}")
    if len(pts) < 2:
        pts = pts.reshape(-1, 1, 68, 2)  # (T, 1, 68, 2)
    means = pts.mean(1)  # (N, 68, 2)
    eye = max(eye_distance(means[0]), 1.0)
    residual = np.array([residual_of(m, means[0]) for m in means[1:]]) / eye  # (N-1,)
    return float(np.percentile(residual, 90))


def nonplanar_motion(points: np.ndarray) -> float:
    """How far the face deforms between clips beyond what a flat sheet could do: each clip's mean landmarks are
    fitted by a homography to the first clip's, and the 90th percentile of the residuals, per eye distance, is the
    statistic. ``points`` (N, T, 68, 2), each clip in its own crop frame (a similarity apart, which the homography
    absorbs). Two changes from :func:`nonrigid_motion`, each measured on held stills of real faces
    (docs/model-card.md): the mean over a clip's frames averages the landmark jitter that dominates a small or
    blurred face, and the homography takes out the keystone of a print or phone turned out of its plane. A video
    of one clip has no second clip to compare: its frames stand in for the clips (N = T, T = 1)."""
    return _between_clips(points, homography_residual)


def nonquadratic_motion(points: np.ndarray) -> float:
    """:func:`nonplanar_motion` with a quadratic warp in place of the homography: what a bowed sheet, turned or not,
    cannot do. ``points`` (N, T, 68, 2) as there. A print held by its edges bows and flexes with the hand, and a
    homography leaves that bow in the residual, where it reads as a face deforming (docs/model-card.md, "Paper
    that bows")."""
    return _between_clips(points, quadratic_residual)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def video_features(clip_scores: Sequence[float] | np.ndarray, points: np.ndarray) -> dict[str, float]:
    """Every feature in :data:`FEATURES` for one video: ``clip_scores`` (N,) of its clips, ``points``
    (N, T, 68, 2) their landmarks in crop pixels (``FaceClips.points``)."""
    s = np.asarray(clip_scores, dtype=np.float64).ravel()
    pts = np.asarray(points, dtype=np.float64)
    if len(s) == 0:
        raise ValueError("a video needs at least one clip score")
    if pts.ndim != 4 or pts.shape[0] != len(s) or pts.shape[2:] != (68, 2):
        raise ValueError(f"points must be (N={len(s)}, T, 68, 2), got {pts.shape}")
    flat = pts.reshape(-1, 68, 2)  # (N*T, 68, 2): every clip frame, in time order
    logits = _logit(s)
    ears = np.array([eye_aspect_ratio(p) for p in flat])
    return {
        "clip_logit_mean": float(logits.mean()),
        "clip_logit_max": float(logits.max()),
        "clip_logit_min": float(logits.min()),
        "nonrigid_motion": nonrigid_motion(flat),
        "nonplanar_motion": nonplanar_motion(pts),
        "nonquadratic_motion": nonquadratic_motion(pts),
        "blink": float(1.0 - ears.min() / max(float(np.median(ears)), 1e-6)),
    }


FEATURES = ("clip_logit_mean", "clip_logit_max", "clip_logit_min", "nonrigid_motion", "nonplanar_motion",
            "nonquadratic_motion", "blink")
# Motion statistics are non-negative and span decades between a still and a talking face: a log keeps one extreme
# video from setting the scale. Clip logits are already on a log scale.
LOG_FEATURES = frozenset({"nonrigid_motion", "nonplanar_motion", "nonquadratic_motion", "blink"})


# ------------------------------------------------------------------------------------------------ the head
@dataclass(frozen=True)
class VideoHead:
    """``p(live) = sigmoid(intercept + coef . (f(x) - center) / scale)``, f = log for :data:`LOG_FEATURES`."""

    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def __post_init__(self) -> None:
        feats = tuple(str(f) for f in self.features)
        unknown = [f for f in feats if f not in FEATURES]
        if not feats or unknown or len(set(feats)) != len(feats):
            raise ValueError(f"video head features must be distinct names from {list(FEATURES)}, got {list(feats)}")
        vals = {}
        for name in ("center", "scale", "coef"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != len(feats) or not all(math.isfinite(x) for x in v):
                raise ValueError(f"video head {name} needs {len(feats)} finite values, got {list(v)}")
            vals[name] = v
        if min(vals["scale"]) <= 0:
            raise ValueError(f"video head scale must be > 0, got {list(vals['scale'])}")
        if not math.isfinite(float(self.intercept)):
            raise ValueError(f"video head intercept must be finite, got {self.intercept}")
        object.__setattr__(self, "features", feats)
        for name, v in vals.items():
            object.__setattr__(self, name, v)
        object.__setattr__(self, "intercept", float(self.intercept))

    @staticmethod
    def design(rows: Sequence[Mapping[str, float]], features: Sequence[str]) -> np.ndarray:
        """(N, K) raw design matrix, log-compressed where :data:`LOG_FEATURES` says."""
        x = np.array([[float(r[f]) for f in features] for r in rows], dtype=np.float64).reshape(len(rows), -1)
        for j, f in enumerate(features):
            if f in LOG_FEATURES:
                x[:, j] = np.log(np.maximum(x[:, j], 0.0) + _EPS)
        return x

    def scores(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Live probability per row (N,)."""
        if not rows:
            return np.zeros(0)
        missing = [f for f in self.features if f not in rows[0]]
        if missing:
            raise ValueError(f"video features lack {missing}")
        z = (self.design(rows, self.features) - np.array(self.center)) / np.array(self.scale)  # (N, K)
        return 1.0 / (1.0 + np.exp(-(z @ np.array(self.coef) + self.intercept)))

    def score(self, features: Mapping[str, float]) -> float:
        return float(self.scores([features])[0])

    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, float]], labels: Sequence[int], features: Sequence[str],
            c: float = 1.0) -> "VideoHead":
        """Fitted by an L2 logistic regression with balanced class weights (live and attack videos weigh the
        same whatever their counts) on standardised features."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(labels).astype(int)
        if set(y.tolist()) != {0, 1}:
            raise ValueError("a video head needs live (1) and attack (0) videos to fit")
        features = tuple(features)
        x = cls.design(rows, features)
        center, scale = x.mean(0), x.std(0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        lr = LogisticRegression(C=float(c), class_weight="balanced", max_iter=5000)
        lr.fit((x - center) / scale, y)
        return cls(features, tuple(center), tuple(scale), tuple(lr.coef_[0]), float(lr.intercept_[0]))

    def to_dict(self) -> dict:
        return {"features": list(self.features), "center": list(self.center), "scale": list(self.scale),
                "coef": list(self.coef), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, d: Mapping) -> "VideoHead":
        try:
            return cls(tuple(d["features"]), tuple(d["center"]), tuple(d["scale"]), tuple(d["coef"]),
                       float(d["intercept"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"video head is incomplete: {exc}") from exc


__all__ = ["FEATURES", "LOG_FEATURES", "VideoHead", "video_features", "nonrigid_motion", "nonplanar_motion",
           "nonquadratic_motion", "similarity_residual", "homography_residual", "quadratic_residual",
           "eye_distance", "eye_aspect_ratio"]
