"""The old face path (detect on every clip frame) and the new one (track between a few detections) score the
embedded sample alike, through the one Predictor: the scores a model gives must not hinge on which path cut
its clips."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def predictors():
    pytest.importorskip("dlib")
    import torch

    from components.inference.checkpoint import build_meta, make_checkpoint
    from components.inference.predictor import Predictor
    from components.model.eulernet import create_model

    torch.manual_seed(0)
    # The sample profile's model and clip layout (params.yaml: eulernet, width 0.125, crop 128, 3 clips, 480 px).
    meta = build_meta(variant="eulernet", crop_size=128, clips_per_video=3, threshold=0.5, max_side=480)
    ckpt = make_checkpoint(create_model("eulernet", width=0.125), meta)
    old = Predictor.from_checkpoint(ckpt)
    new = old.with_inference(dataclasses.replace(old.inference, face_path="track"))
    return old, new


def test_detect_and_track_give_the_same_scores_on_the_sample(predictors):
    manifest = REPO / "data" / "sample" / "manifest.csv"
    if not manifest.is_file():
        pytest.skip("the embedded sample is not checked out (bin/test runs `dvc pull data.dvc`)")
    old, new = predictors
    assert (old.inference.face_path, new.inference.face_path) == ("detect", "track")
    m = pd.read_csv(manifest)
    # Every attack kind and both labels, a few of each: 12 of the 60 videos.
    pick = m.groupby("attack_type", group_keys=False).apply(lambda g: g.head(3))
    deltas, full = [], []
    for rel in pick["path"]:
        frames = old.read_video(REPO / "data" / "sample" / rel)
        a = old.extract_clips(frames)
        b = new.extract_clips(frames)
        assert a.starts == b.starts
        full.append((a.full_detections, b.full_detections))
        sa = old.result(a, old.predict_maps(a.crops))["score"]
        sb = new.result(b, new.predict_maps(b.crops))["score"]
        deltas.append(abs(sa - sb))
    assert len(deltas) >= 10
    # Crops from a tracked box differ from detected ones by the landmark jitter alone.
    assert max(deltas) < 0.02, deltas
    assert all(t < d for d, t in full), full  # and the tracked path ran far fewer full detections
    assert np.mean(deltas) < 0.005, deltas


def test_with_inference_refuses_settings_the_weights_were_trained_for(predictors):
    old, _ = predictors
    with pytest.raises(ValueError, match="crop_size"):
        old.with_inference(dataclasses.replace(old.inference, crop_size=64))
    assert old.with_inference(dataclasses.replace(old.inference, threshold=0.3)).decide(0.31)[0] == "live"
