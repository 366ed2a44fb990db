"""Metrics against hand-computed values: ties at the threshold, missing attack types, dev-only thresholds."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from components.metrics import auc, breakdown, choose_threshold, det_curve, error_rates, roc_curve, video_scores
from components.metrics.report import evaluate_splits, split_summary

# 4 live, 3 attacks; two scores sit exactly on the threshold 0.5 (one live, one attack).
SCORES = [0.9, 0.5, 0.5, 0.2, 0.5, 0.7, 0.1]
LABELS = [1, 1, 1, 1, 0, 0, 0]
TYPES = ["live", "live", "live", "live", "print", "replay", "print"]


def test_error_rates_hand_computed_with_ties_counting_as_live():
    r = error_rates(SCORES, LABELS, 0.5, TYPES)
    # live rejected: only 0.2 (the 0.5s are accepted) -> 1/4; attacks accepted: 0.5 (tie) and 0.7 -> 2/3
    assert r["false_rejects"] == 1 and r["false_accepts"] == 2
    assert r["bpcer"] == pytest.approx(1 / 4)
    assert r["apcer"] == pytest.approx(2 / 3)
    assert r["acer"] == pytest.approx((2 / 3 + 1 / 4) / 2)
    assert r["hter"] == pytest.approx(r["acer"])
    assert r["apcer_per_attack"] == pytest.approx({"print": 1 / 2, "replay": 1.0})
    assert r["apcer_worst"] == 1.0 and r["worst_attack_type"] == "replay"
    assert r["acer_worst"] == pytest.approx((1.0 + 1 / 4) / 2)
    # just above the tie, both 0.5 scores flip to "attack"
    r2 = error_rates(SCORES, LABELS, np.nextafter(0.5, 1.0), TYPES)
    assert r2["bpcer"] == pytest.approx(3 / 4) and r2["apcer"] == pytest.approx(1 / 3)
    assert r2["apcer_per_attack"]["print"] == 0.0


def test_split_without_an_attack_type_or_class_does_not_crash():
    r = error_rates([0.9, 0.1, 0.6], [1, 0, 0], 0.5, ["live", "print", "print"],
                    expected_attack_types=["print", "replay"])
    assert r["apcer_per_attack"]["print"] == pytest.approx(0.5)
    assert math.isnan(r["apcer_per_attack"]["replay"]) and r["absent_attack_types"] == ["replay"]
    assert r["apcer_worst"] == pytest.approx(0.5) and r["worst_attack_type"] == "print"
    only_live = error_rates([0.9, 0.3], [1, 1], 0.5, ["live", "live"])
    assert only_live["bpcer"] == 0.5 and math.isnan(only_live["apcer"]) and math.isnan(only_live["acer"])
    assert only_live["missing"] == ["attack"] and only_live["apcer_per_attack"] == {}
    s = split_summary(pd.DataFrame({"score": [0.9, 0.3], "label": [1, 1], "attack_type": ["live", "live"]}), 0.5)
    assert "no attack" in s["note"] and math.isnan(s["auc"])


def test_choose_threshold_rules_and_tie_break():
    scores = [0.9, 0.8, 0.6, 0.1, 0.3, 0.7]
    labels = [1, 1, 1, 0, 0, 0]
    # candidates 0.1, 0.2, 0.45, 0.65, 0.75, 0.85, >0.9; at 0.65 APCER = BPCER = 1/3
    assert choose_threshold(scores, labels, "eer") == pytest.approx(0.65)
    # min ACER 1/6 at both 0.45 (APCER 1/3, BPCER 0) and 0.75 (0, 1/3): equal gap -> the higher threshold
    assert choose_threshold(scores, labels, "min_acer") == pytest.approx(0.75)
    assert error_rates(scores, labels, 0.75)["acer"] == pytest.approx(1 / 6)
    # separable scores: zero error, threshold strictly between the classes
    t = choose_threshold([0.8, 0.9, 0.1, 0.2], [1, 1, 0, 0], "min_acer")
    assert t == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no attack"):
        choose_threshold([0.1, 0.2], [1, 1], "eer")
    with pytest.raises(ValueError, match="unknown threshold rule"):
        choose_threshold(scores, labels, "best")


def test_auc_roc_det_hand_computed():
    scores, labels = [0.9, 0.8, 0.6, 0.1, 0.3, 0.7], [1, 1, 1, 0, 0, 0]
    assert auc(scores, labels) == pytest.approx(8 / 9)  # 8 of 9 live/attack pairs ordered correctly
    assert auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)  # a tie counts one half
    assert auc([0.9, 0.5, 0.5], [1, 1, 0]) == pytest.approx(0.75)
    fpr, tpr, thr = roc_curve(scores, labels)
    assert thr[0] == np.inf and fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    apcer, bpcer, t = det_curve(scores, labels)
    assert apcer[0] == 1 and bpcer[0] == 0 and apcer[-1] == 0 and bpcer[-1] == 1
    for a, b, th in zip(apcer, bpcer, t):
        r = error_rates(scores, labels, th)
        assert (r["apcer"], r["bpcer"]) == pytest.approx((a, b))


def test_video_scores_mean_of_clips_and_breakdown():
    clips = pd.DataFrame({
        "video_id": ["a", "a", "b", "b", "b", "c"],
        "score": [0.2, 0.4, 0.9, 0.8, 0.7, 0.6],
        "label": [0, 0, 1, 1, 1, 0],
        "attack_type": ["print", "print", "live", "live", "live", "replay"],
        "device": ["x", "x", "y", "y", "y", "y"],
        "scene": ["in", "in", "in", "in", "in", "out"],
    })
    v = video_scores(clips)
    assert v["video_id"].tolist() == ["a", "b", "c"]
    assert v["score"].tolist() == pytest.approx([0.3, 0.8, 0.6])
    assert v["n_clips"].tolist() == [2, 3, 1] and v["label"].tolist() == [0, 1, 0]
    bd = breakdown(v, 0.5).set_index(["factor", "value"])
    assert bd.loc[("device", "y"), "apcer"] == 1.0 and bd.loc[("device", "y"), "bpcer"] == 0.0
    assert math.isnan(bd.loc[("device", "x"), "bpcer"])  # no live video on device x
    assert bd.loc[("attack_type", "print"), "apcer"] == 0.0
    bad = clips.assign(label=[0, 1, 1, 1, 1, 0])
    with pytest.raises(ValueError, match="both labels"):
        video_scores(bad)


def test_the_given_threshold_is_applied_unchanged_to_dev_and_test():
    """evaluate_splits chooses no threshold: the one chosen on dev by training is applied as given, so a wildly
    different test set (or dev set) changes the rates and never the operating point."""
    rng = np.random.default_rng(0)
    def split(shift):
        return pd.DataFrame({"score": np.r_[rng.uniform(0.5, 1, 20), rng.uniform(0, 0.6, 20)] + shift,
                             "label": [1] * 20 + [0] * 20,
                             "attack_type": ["live"] * 20 + ["print", "replay"] * 10,
                             "device": "d", "scene": "s"})
    dev, test = split(0.0), split(0.0)
    t = choose_threshold(dev["score"], dev["label"], "eer")
    r1 = evaluate_splits(dev, test, t, "eer")
    assert r1["threshold"] == t and r1["threshold_source"] == "dev" and r1["threshold_rule"] == "eer"
    assert r1["dev"]["acer"] == pytest.approx(error_rates(dev["score"], dev["label"], t)["acer"])
    r2 = evaluate_splits(dev, test.assign(score=test["score"] - 0.4), t, "eer")
    assert r2["threshold"] == t and r2["bpcer"] > r1["bpcer"]
    r3 = evaluate_splits(dev.assign(score=dev["score"] + 0.2), test, t, "eer")
    assert r3["threshold"] == t and r3["acer"] == r1["acer"]
    assert r1["acer"] == pytest.approx(error_rates(test["score"], test["label"], t)["acer"])
    json.dumps(r1, allow_nan=False)  # JSON-safe for metrics.json
    with pytest.raises(ValueError, match="finite"):
        evaluate_splits(dev, test, float("nan"))
    only_dev = evaluate_splits(dev, test.iloc[:0], t)
    assert only_dev["test"] is None and only_dev["acer"] is None and "no test split" in only_dev["note"]


def test_test_split_missing_a_class_is_reported_not_raised():
    dev = pd.DataFrame({"score": [0.9, 0.8, 0.2, 0.1], "label": [1, 1, 0, 0],
                        "attack_type": ["live", "live", "print", "replay"]})
    test = pd.DataFrame({"score": [0.9, 0.4], "label": [1, 1], "attack_type": ["live", "live"]})
    r = evaluate_splits(dev, test, 0.5, "min_acer", expected_attack_types=["print", "replay"])
    assert r["bpcer"] == 0.5 and r["apcer"] is None and r["acer"] is None
    assert "no attack" in r["note"]
    json.dumps(r, allow_nan=False)


def test_plots_write_pngs(tmp_path):
    from components.metrics import plots

    scores, labels = [0.9, 0.8, 0.6, 0.1, 0.3, 0.7], [1, 1, 1, 0, 0, 0]
    fpr, tpr, _ = roc_curve(scores, labels)
    a, b, _ = det_curve(scores, labels)
    h = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.3, 0.2, 0.1], "dev_acer": [0.4, 0.2, 0.1]})
    paths = [plots.plot_roc({"test": (fpr, tpr)}, tmp_path / "roc.png"),
             plots.plot_det({"test": (a, b)}, tmp_path / "det.png"),
             plots.plot_training_curves({"baseline": h, "c4": h}, tmp_path / "curves.png"),
             plots.plot_score_histograms(scores, labels, 0.65, tmp_path / "hist.png")]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


@pytest.mark.parametrize("seed", range(5))
def test_rates_agree_with_scikit_learn(seed):
    """scikit-learn as the oracle (live = positive class): AUC, the ROC points and the APCER/BPCER at a
    threshold, on random scores with ties and unbalanced classes."""
    from sklearn.metrics import confusion_matrix, roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc

    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 200))
    labels = (rng.random(n) < rng.uniform(0.2, 0.8)).astype(int)
    labels[:2] = [0, 1]  # both classes present
    scores = np.round(rng.random(n) * 0.6 + 0.3 * labels, 2)  # rounded: ties within and across classes
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, thr = roc_curve(scores, labels)
    sk_fpr, sk_tpr, _ = sk_roc(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    t = choose_threshold(scores, labels, "eer")
    r = error_rates(scores, labels, t)
    tn, fp, fn, tp = confusion_matrix(labels, (scores >= t).astype(int), labels=[0, 1]).ravel()
    assert r["apcer"] == pytest.approx(fp / (fp + tn)) and r["bpcer"] == pytest.approx(fn / (fn + tp))
