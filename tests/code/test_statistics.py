"""Hand statistics, the learned-statistics reference and bootstrap intervals by group."""
from __future__ import annotations

import numpy as np
import pytest

from components.metrics.rates import acer_bootstrap_ci, auc, auc_bootstrap_ci
from components.metrics.statistics import STATISTICS, LearnedStatistics, _similarity_residual, statistics_bank


def _face_points(rng=None) -> np.ndarray:
    """68 plausible points: a jaw arc, brows, nose, two eyes (6 points each), a mouth; ~60 px eye distance."""
    t = np.linspace(np.pi * 0.1, np.pi * 0.9, 17)
    jaw = np.c_[100 + 70 * np.cos(t[::-1] + np.pi), 100 + 70 * np.sin(t)]
    brows = np.c_[np.linspace(50, 150, 10), np.full(10, 60.0)]
    nose = np.c_[np.full(9, 100.0), np.linspace(75, 120, 9)]
    eye = np.array([[-15, 0], [-7, -5], [7, -5], [15, 0], [7, 5], [-7, 5]], float)
    eyes = np.r_[eye + (70, 80), eye + (130, 80)]
    mouth = np.c_[100 + 25 * np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
                  140 + 8 * np.sin(np.linspace(0, 2 * np.pi, 20, endpoint=False))]
    pts = np.r_[jaw, brows, nose, eyes, mouth]  # (68, 2)
    assert pts.shape == (68, 2)
    return pts


def test_similarity_residual_is_zero_for_rigid_motion_only():
    p = _face_points()
    a = np.deg2rad(7)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = 1.1 * p @ r.T + (5.0, -3.0)
    res, shift = _similarity_residual(moved, p)
    assert res < 1e-9
    deformed = p.copy()
    deformed[37:39, 1] += 4  # an eyelid closes
    assert _similarity_residual(deformed, p)[0] > 0.5


def _clip(points_per_frame: np.ndarray, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(80, 120, size=(len(points_per_frame), 200, 200, 3), dtype=np.uint8)


def test_bank_sees_a_blink_and_nonrigid_motion_but_not_in_a_rigidly_moving_face():
    base = _face_points()
    rigid = np.stack([base + (0.5 * i, 0.2 * i) for i in range(20)])  # (20, 68, 2)
    blinking = rigid.copy()
    blinking[8:11, 37:39, 1] += 4  # upper lids down
    blinking[8:11, 43:45, 1] += 4
    s_rigid = statistics_bank(_clip(rigid), rigid, fps=30)
    s_blink = statistics_bank(_clip(blinking), blinking, fps=30)
    assert set(s_rigid) == set(STATISTICS)
    assert s_rigid["nonrigid_motion"] < 1e-6 and s_rigid["blink"] < 1e-6
    assert s_blink["nonrigid_motion"] > 0.01 and s_blink["blink"] > 0.3
    assert s_rigid["rigid_motion"] > 0.05  # it did move, rigidly


def test_bank_reads_flicker_and_refuses_bad_input():
    pts = np.stack([_face_points()] * 30)
    frames = np.full((30, 200, 200, 3), 120, np.uint8)
    steady = statistics_bank(frames, pts, fps=30)
    flicker = frames.astype(float) * (1 + 0.05 * (-1) ** np.arange(30))[:, None, None, None]
    flick = statistics_bank(flicker.astype(np.uint8), pts, fps=30)
    assert steady["global_flicker"] == 0 and flick["global_flicker"] > 0.02
    gone = pts.copy()
    gone[2:] = np.nan
    with pytest.raises(ValueError, match="at least 3"):
        statistics_bank(frames, gone, fps=30)
    with pytest.raises(ValueError, match="68, 2"):
        statistics_bank(frames, pts[:, :10], fps=30)


def test_learned_statistics_separates_a_separable_bank_and_needs_both_classes():
    rng = np.random.default_rng(0)
    rows, y = [], []
    for i in range(60):
        live = i % 2
        r = {k: float(rng.uniform(0.01, 0.1)) for k in STATISTICS}
        r["nonrigid_motion"] = float(rng.uniform(0.02, 0.05) if live else rng.uniform(0.001, 0.004))
        rows.append(r)
        y.append(live)
    m = LearnedStatistics().fit(rows[:40], y[:40])
    assert auc(m.score(rows[40:]), y[40:]) > 0.95
    th = m.choose_threshold(rows[:40], y[:40])
    assert 0 < th < 1
    with pytest.raises(ValueError, match="live and attack"):
        LearnedStatistics().fit(rows[:5], [1] * 5)


def test_bootstrap_by_identity_is_wider_than_by_video_when_videos_of_a_person_agree():
    """Ten videos per person that all score alike carry the information of one person, not of ten."""
    rng = np.random.default_rng(0)
    people = 6
    person_score = np.array([1.0, -0.5, 0.8, -0.7, 0.4, -1.2])  # one live and one attack person misjudged
    y = np.repeat([1, 1, 1, 0, 0, 0], 10)
    s = np.repeat(person_score, 10) + rng.normal(0, 0.01, 60)
    groups = np.repeat(np.arange(people), 10)
    lo_v, hi_v = acer_bootstrap_ci(s, y, [0.0], n_boot=1000)
    lo_g, hi_g = acer_bootstrap_ci(s, y, [0.0], groups=groups, n_boot=1000)
    assert (hi_g - lo_g) > 2 * (hi_v - lo_v)
    a_lo, a_hi = auc_bootstrap_ci(s, y, groups, n_boot=500)
    v_lo, v_hi = auc_bootstrap_ci(s, y, None, n_boot=500)
    assert (a_hi - a_lo) > (v_hi - v_lo)
    assert a_lo <= auc(s, y) <= a_hi
    # one group only: no interval can be drawn
    assert np.isnan(auc_bootstrap_ci(s, y, np.zeros(60))[0])
    with pytest.raises(ValueError, match="entries"):
        acer_bootstrap_ci(s, y, [0.0], groups=groups[:5])


def test_auc_and_roc_agree_with_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(y, 1.0), 1)  # ties included
    assert auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
