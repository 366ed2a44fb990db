"""The video head: face-geometry features, the logistic head, and how a checkpoint carries it to the Predictor."""
from __future__ import annotations

import numpy as np
import pytest

from components.inference.video_head import FEATURES, VideoHead, nonrigid_motion, similarity_residual, video_features


def _face(rng) -> np.ndarray:
    pts = rng.uniform(20, 44, (68, 2))
    pts[36:42] = [22, 28] + rng.normal(0, 0.5, (6, 2))  # left eye
    pts[42:48] = [42, 28] + rng.normal(0, 0.5, (6, 2))  # right eye
    return pts


def _similar(p: np.ndarray, angle: float, scale: float, shift) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return scale * p @ np.array([[c, -s], [s, c]]).T + np.asarray(shift)


def test_nonrigid_motion_ignores_rigid_moves_and_sees_deformation():
    rng = np.random.default_rng(0)
    p = _face(rng)
    rigid = np.stack([_similar(p, 0.05 * k, 1 + 0.02 * k, (k, -k)) for k in range(8)])  # (8, 68, 2)
    assert nonrigid_motion(rigid) < 1e-6
    deformed = rigid.copy()
    deformed[4:, 48:68, 1] += 3.0  # the mouth opens from frame 4 on
    assert nonrigid_motion(deformed) > 0.05
    with pytest.raises(ValueError, match="F >= 2"):
        nonrigid_motion(p[None])


def test_nonplanar_motion_ignores_a_turning_sheet_that_the_similarity_fit_reads_as_deformation():
    import cv2

    from components.data.held_still import sheet_homography
    from components.inference.video_head import homography_residual, nonplanar_motion

    p = _face(np.random.default_rng(2)) * 4  # (68, 2) a face spanning ~100 px of a 200-px photo
    turned = np.stack([cv2.perspectiveTransform(p[None].astype(np.float64),
                                                sheet_homography(200, 200, k, -k, 0.5 * k, 3.0 * k, -2.0 * k))[0]
                       for k in range(8)])  # (8, 68, 2): the sheet pitches and yaws up to 21 and 14 degrees
    assert homography_residual(turned[0], turned[7]) < 1e-6
    assert homography_residual(p, p + 1.0) < 1e-9  # a pure shift is a homography too
    clips = turned.reshape(4, 2, 68, 2)  # (N, T, 68, 2)
    # The keystone is deformation to a similarity fit, next to nothing to the homography of the clips' mean shapes
    # (the mean of two views of a sheet is a view of it only to first order).
    assert nonrigid_motion(turned) > 0.01
    assert nonplanar_motion(clips) < 1e-4
    # Each clip in its own crop frame (a similarity apart) changes nothing.
    crops = np.stack([_similar(c.reshape(-1, 2), 0.1 * i, 1 + 0.1 * i, (3 * i, 0)).reshape(2, 68, 2)
                      for i, c in enumerate(clips)])
    assert nonplanar_motion(crops) < 1e-4
    deformed = clips.copy()
    deformed[2:, :, 48:68, 1] += 6.0  # the mouth opens in the last two clips: no homography of the face does that
    assert nonplanar_motion(deformed) > 0.03
    # Landmark jitter averages out over a clip's frames; the frame-by-frame similarity residual keeps all of it.
    rng = np.random.default_rng(3)
    noisy = clips[:, :1].repeat(8, axis=1) + rng.normal(0, 0.5, (4, 8, 68, 2))
    assert nonplanar_motion(noisy) < 0.5 * nonrigid_motion(noisy.reshape(-1, 68, 2))
    # One clip: its frames are compared instead.
    assert nonplanar_motion(turned[None]) < 1e-4
    assert nonplanar_motion(deformed[1:3].reshape(1, 4, 68, 2)) > 0.03
    with pytest.raises(ValueError, match="points must be"):
        nonplanar_motion(turned)


def test_nonquadratic_motion_takes_out_much_of_a_bowing_sheet_that_the_homography_leaves():
    from components.data.held_still import sheet_points
    from components.inference.video_head import nonplanar_motion, nonquadratic_motion, quadratic_residual

    p = _face(np.random.default_rng(4)) * 4 + 20  # (68, 2) a face spanning ~100 px of a 200-px print
    # The print bows by 4-16 % of its width (flexing with the hand) while it turns up to 7 degrees: (8, 68, 2).
    views = np.stack([sheet_points(p, 200, 200, k, -k, 0.5 * k, k, -0.7 * k, bow_share=0.04 + 0.015 * k)
                      for k in range(8)])
    clips = views.reshape(4, 2, 68, 2)  # (N, T, 68, 2)
    # The changing bow is deformation to a homography; a quadratic warp follows the bow's curvature (what stays is
    # perspective's higher orders): 0.0039 against 0.0072 eye distances here.
    assert nonplanar_motion(clips) > 0.006
    assert nonquadratic_motion(clips) < 0.65 * nonplanar_motion(clips)
    assert quadratic_residual(p, p * 1.1 + 3.0) < 1e-9  # a similarity is a quadratic warp too
    # A face deforms locally: the mouth opening in the last two clips stays in the residual.
    deformed = clips.copy()
    deformed[2:, :, 48:68, 1] += 6.0
    assert nonquadratic_motion(deformed) > 0.03
    with pytest.raises(ValueError, match="points must be"):
        nonquadratic_motion(views)


def test_statistics_bank_and_head_share_one_geometry():
    from components.metrics import statistics

    assert statistics._similarity_residual is similarity_residual


def test_video_features_shapes_and_values():
    rng = np.random.default_rng(1)
    p = _face(rng)
    points = np.stack([[_similar(p, 0.01 * t, 1.0, (t, 0)) for t in range(4)] for _ in range(3)])  # (3, 4, 68, 2)
    f = video_features([0.5, 0.9, 0.1], points)
    assert set(f) == set(FEATURES)
    assert f["clip_logit_mean"] == pytest.approx(np.mean(np.log([1, 9, 1 / 9])), abs=1e-6)
    assert f["clip_logit_max"] == pytest.approx(np.log(9), abs=1e-6)
    assert f["nonrigid_motion"] < 1e-6 and f["blink"] == pytest.approx(0.0, abs=1e-9)
    assert f["nonplanar_motion"] < 1e-6
    with pytest.raises(ValueError, match="points must be"):
        video_features([0.5, 0.5], points)


def test_head_scores_equal_sklearn_and_round_trip():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    y = np.array([0, 1] * 30)
    rows = [{"clip_logit_mean": rng.normal(0.8 * v), "nonrigid_motion": float(np.exp(rng.normal(-3 + v)))}
            for v in y]
    head = VideoHead.fit(rows, y, ("clip_logit_mean", "nonrigid_motion"), c=0.5)
    x = np.array([[r["clip_logit_mean"], np.log(r["nonrigid_motion"] + 1e-4)] for r in rows])
    ref = LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000).fit(
        (x - x.mean(0)) / x.std(0), y).predict_proba((x - x.mean(0)) / x.std(0))[:, 1]
    assert head.scores(rows) == pytest.approx(ref, abs=1e-6)
    assert VideoHead.from_dict(head.to_dict()) == head
    assert head.scores(rows)[y == 1].mean() > head.scores(rows)[y == 0].mean() + 0.2


@pytest.mark.parametrize("bad, msg", [
    ({"features": ["pulse"], "center": [0], "scale": [1], "coef": [1], "intercept": 0}, "distinct names"),
    ({"features": ["blink"], "center": [0], "scale": [0], "coef": [1], "intercept": 0}, "scale must be > 0"),
    ({"features": ["blink"], "center": [0, 1], "scale": [1], "coef": [1], "intercept": 0}, "center needs 1"),
    ({"features": ["blink"], "center": [0], "scale": [1], "coef": [float("nan")], "intercept": 0}, "finite"),
    ({"features": ["blink"]}, "incomplete"),
])
def test_bad_heads_are_refused(bad, msg):
    with pytest.raises(ValueError, match=msg):
        VideoHead.from_dict(bad)


def test_checkpoint_carries_the_head_and_the_predictor_decides_with_it():
    from types import SimpleNamespace

    from components.inference.checkpoint import build_meta, make_checkpoint
    from components.inference.config import CheckpointError, InferenceConfig
    from components.inference.predictor import Predictor
    from components.model.eulernet import TEST_WIDTH, create_model

    head = VideoHead(("clip_logit_mean", "nonrigid_motion"), (0.0, -4.0), (1.0, 1.0), (0.5, 2.0), -0.1)
    meta = build_meta(variant="eulernet", crop_size=32, clip_len=4, threshold=0.4, video_head=head.to_dict())
    assert InferenceConfig.from_meta(meta).head == head
    plain = build_meta(variant="eulernet", crop_size=32, clip_len=4)
    assert "video_head" not in plain  # checkpoints without a head keep their layout
    with pytest.raises(CheckpointError, match="scale"):
        build_meta(variant="eulernet", crop_size=32, video_head={**head.to_dict(), "scale": [1.0, -1.0]})

    pred = Predictor.from_checkpoint(make_checkpoint(create_model("eulernet", width=TEST_WIDTH), meta))
    rng = np.random.default_rng(3)
    p = _face(rng)
    points = np.stack([[p + rng.normal(0, 0.3 * k, p.shape) for _ in range(4)] for k in range(2)])  # (2, 4, 68, 2)
    maps = rng.uniform(0.2, 0.8, (2, 4, 4, 4)).astype(np.float32)
    out = pred.result(SimpleNamespace(points=points, starts=[0, 10]), maps)
    expected = head.score(video_features(maps.mean(axis=(1, 2, 3)), points))
    assert out["score"] == pytest.approx(expected)
    assert out["clip_score_mean"] == pytest.approx(float(maps.mean()), abs=1e-6)
    assert out["decision"] == ("live" if expected >= 0.4 else "spoof")
    with pytest.raises(ValueError, match="needs the clips' landmarks"):
        pred.result(SimpleNamespace(), maps)
