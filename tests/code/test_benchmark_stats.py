"""Benchmark statistics: bootstrap ACER intervals, non-learned reference scores, row summaries."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.metrics import acer_bootstrap_ci, error_rates
from components.metrics.references import chroma_pulse, frame_difference, orient, reference_scores


def test_bootstrap_interval_brackets_the_acer_and_narrows_with_more_videos():
    rng = np.random.default_rng(0)

    def draw(n):
        y = np.r_[np.ones(n), np.zeros(n)].astype(int)
        s = np.where(y == 1, rng.normal(1.0, 1.0, 2 * n), rng.normal(-1.0, 1.0, 2 * n))
        return s, y

    s, y = draw(50)
    acer = error_rates(s, y, 0.0)["acer"]
    lo, hi = acer_bootstrap_ci(s, y, [0.0], n_boot=2000)
    assert lo < acer < hi
    assert 0.0 < lo and hi < 0.5
    s4, y4 = draw(800)
    lo4, hi4 = acer_bootstrap_ci(s4, y4, [0.0], n_boot=2000)
    # ~4x narrower with 16x the videos (1/sqrt(n)); allow slack for the draw
    assert (hi4 - lo4) < 0.5 * (hi - lo)


def test_bootstrap_of_a_perfect_model_is_a_point_and_seeds_average():
    y = np.array([1, 1, 1, 0, 0, 0])
    perfect = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    assert acer_bootstrap_ci(perfect, y, [0.5]) == (0.0, 0.0)
    # two "seeds": one perfect, one that accepts every attack -> every resample has mean ACER 0.25
    always_live = np.ones(6)
    lo, hi = acer_bootstrap_ci(np.stack([perfect, always_live]), y, [0.5, 0.5], n_boot=200)
    assert lo == pytest.approx(0.25) and hi == pytest.approx(0.25)
    with pytest.raises(ValueError, match="both live and attack"):
        acer_bootstrap_ci([0.1, 0.2], [1, 1], [0.5])
    with pytest.raises(ValueError, match="line up"):
        acer_bootstrap_ci(perfect, y[:4], [0.5])


def test_chroma_pulse_sees_a_green_oscillation_and_ignores_brightness_flicker():
    t = np.arange(8)
    base = np.full((1, 8, 16, 16, 3), 120.0)
    pulse = base.copy()
    pulse[..., 1] *= (1 + 0.03 * np.sin(2 * np.pi * t / 8))[None, :, None, None]  # green only
    flicker = base * (1 + 0.05 * np.sin(2 * np.pi * t / 8))[None, :, None, None, None]  # all channels
    s_pulse = chroma_pulse(np.clip(pulse, 0, 255).astype(np.uint8))
    s_flick = chroma_pulse(np.clip(flicker, 0, 255).astype(np.uint8))
    s_still = chroma_pulse(base.astype(np.uint8))
    assert s_still[0] == 0.0
    assert s_pulse[0] > 5e-3
    assert s_flick[0] < 0.2 * s_pulse[0]  # a ratio cancels a brightness change (up to uint8 rounding)


def test_frame_difference_is_the_mean_absolute_change():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(3, 4, 8, 8, 3)).astype(np.uint8)
    want = np.abs(np.diff(x.astype(float), axis=1)).mean(axis=(1, 2, 3, 4))
    np.testing.assert_allclose(frame_difference(x), want, rtol=1e-6)
    np.testing.assert_allclose(reference_scores("frame_difference", x), want, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown reference"):
        reference_scores("optical_flow", x)
    with pytest.raises(ValueError, match="T >= 2"):
        frame_difference(x[:, :1])


def test_orient_flips_a_reference_whose_live_scores_are_lower():
    assert orient([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert orient([0.1, 0.2, 0.9], [1, 1, 0]) == -1.0


def test_summarise_videos_pools_seeds_over_the_same_test_videos():
    from components.benchmark.temporal_summary import summarise_videos

    v = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "label": [1, 1, 0, 0],
                      "attack_type": ["live", "live", "print", "replay"], "score": [0.9, 0.4, 0.3, 0.6]})
    other = v.iloc[::-1].assign(score=[0.2, 0.1, 0.8, 0.9])  # seed 2, rows in another order: d, c, b, a
    r = summarise_videos([v, other], [0.5, 0.5], n_boot=100)
    # seed 1: one live rejected (b), one attack accepted (d): ACER 0.5; seed 2 perfect: ACER 0
    assert r["per_seed_acer"] == pytest.approx([0.5, 0.0])
    assert r["test_acer"] == pytest.approx(0.25)
    assert r["apcer_per_attack"] == pytest.approx({"print": 0.0, "replay": 0.5})
    assert r["n_test_videos"] == 4 and r["n_test_live"] == 2
    with pytest.raises(ValueError, match="different test videos"):
        summarise_videos([v, v.assign(video_id=["a", "b", "c", "e"])], [0.5, 0.5], n_boot=10)


def test_benchmark_config_is_checked_before_any_work():
    from components.benchmark.temporal import TemporalBenchmarkConfig, check_plan

    plan = check_plan(TemporalBenchmarkConfig())
    test = plan[plan["split"] == "test"]
    assert (test["label"] == 1).sum() >= 96 and (test["label"] == 0).sum() >= 96  # the floor
    ident = plan["meta"].map(lambda m: __import__("json").loads(m)["identity"])
    assert not set(ident[plan["split"] == "train"]) & set(ident[plan["split"] != "train"])
    with pytest.raises(ValueError, match="leave no videos in dev/live"):
        check_plan(TemporalBenchmarkConfig(n_subjects=2))
    with pytest.raises(ValueError, match="unknown rows"):
        TemporalBenchmarkConfig(rows=("eulernet", "resnet"))
    with pytest.raises(ValueError, match="setting"):
        TemporalBenchmarkConfig(setting="easy")


def test_benchmark_clip_window_reaches_labeling_and_must_fit_a_video():
    from components.benchmark.temporal import TemporalBenchmarkConfig, clip_fps, label_config

    cfg = TemporalBenchmarkConfig(clip_len=16, clip_interval=3, clips_per_video=1, crop_size=64)
    lab = label_config(cfg)
    assert (lab.clip_len, lab.clip_interval, lab.clips_per_video, lab.crop_size) == (16, 3, 1, 64)
    assert clip_fps(cfg) == pytest.approx(25.0 / 3)
    assert lab.fingerprint() != label_config(TemporalBenchmarkConfig()).fingerprint()  # relabels, never reuses
    with pytest.raises(ValueError, match="span 49"):  # 16 frames at interval 3 span 46 <= 48; 17 do not fit
        TemporalBenchmarkConfig(clip_len=17, clip_interval=3)
    with pytest.raises(ValueError, match="multiple of 8"):
        TemporalBenchmarkConfig(crop_size=60)
    with pytest.raises(ValueError, match="clip_len must be >= 2"):
        TemporalBenchmarkConfig(clip_len=1)
    with pytest.raises(ValueError, match="clips_per_video"):
        TemporalBenchmarkConfig(clips_per_video=0)


def test_identity_folds_give_every_identity_one_test_turn_and_pool_by_identity():
    from components.benchmark.temporal_summary import fold_splits, summarise_pooled

    names = [f"id{i}" for i in range(12)]
    folds = fold_splits(names, (2, 1, 1), 4)
    assert len(folds) == 4
    for name in names:
        roles = [f[name] for f in folds]
        assert roles.count("test") == 1 and roles.count("dev") == 1 and roles.count("train") == 2
    for f in folds:  # in each fold the test people are never trained on, and every split is populated
        assert {"train", "dev", "test"} == set(f.values())
    with pytest.raises(ValueError, match="folds must be 4"):
        fold_splits(names, (2, 1, 1), 3)
    with pytest.raises(ValueError, match="one test turn"):
        fold_splits(names[:10], (2, 1, 1), 4)
    # Pooling: fold A perfect at its threshold, fold B rejects its one live video.
    a = pd.DataFrame({"video_id": ["a1", "a2"], "label": [1, 0], "attack_type": ["live", "print"],
                      "score": [0.9, 0.1]})
    b = pd.DataFrame({"video_id": ["b1", "b2"], "label": [1, 0], "attack_type": ["live", "replay"],
                      "score": [0.4, 0.2]})
    r = summarise_pooled([a, b], [0.5, 0.5], {"a1": "p", "a2": "p", "b1": "q", "b2": "q"}, n_boot=200)
    assert r["test_bpcer"] == pytest.approx(0.5) and r["test_apcer"] == 0.0 and r["test_acer"] == pytest.approx(0.25)
    assert r["per_fold_acer"] == pytest.approx([0.0, 0.5]) and r["n_test_identities"] == 2
    assert r["test_auc"] == pytest.approx(1.0)  # pooled scores: both lives above both attacks
    lo, hi = r["acer_ci95"]
    assert lo <= 0.25 <= hi
