"""The temporal benchmark's reference rows, scored from the labeled shards: non-learned statistics
(``chroma_pulse``, ``frame_difference``), ``learned_stats`` and the ``one_frame`` control (temporal.py)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def reference_videos(shards: Path, fps: float) -> dict[str, dict[str, Any]]:
    """Per reference: ``dev`` and ``test`` (one row per video, oriented score: higher = live), ``wall_s`` and
    ``direction`` (what dev said about the raw score). ``fps``: the clips' frame rate (:func:`clip_fps`)."""
    from components.labeling.shards import load_clips
    from components.metrics.rates import video_scores
    from components.metrics.references import REFERENCES, orient, reference_scores

    cols = ["frames", "video_id", "label", "attack_type"]
    clips = {s: load_clips(shards, s, cols) for s in ("dev", "test")}
    out: dict[str, dict[str, Any]] = {}
    for name in REFERENCES:
        t0 = time.perf_counter()
        per: dict[str, Any] = {}
        for split, c in clips.items():
            table = pd.DataFrame({k: c[k] for k in ("video_id", "label", "attack_type")})
            table["score"] = reference_scores(name, c["frames"])
            per[split] = video_scores(table)
        sign = orient(per["dev"]["score"], per["dev"]["label"])
        for split in clips:
            per[split]["score"] = sign * per[split]["score"]
        per["wall_s"] = time.perf_counter() - t0
        per["direction"] = "higher = live" if sign > 0 else "lower = live"
        out[name] = per
    out["learned_stats"] = learned_stats_videos(shards, fps)
    return out


def learned_stats_videos(shards: Path, fps: float) -> dict[str, Any]:
    """The ``learned_stats`` row: hand statistics of every clip (its crops and crop-space landmarks; ``fps``
    the clip's frame rate, the video's over the clip interval), mean per video, logistic regression fitted on
    train; dev and test scored (higher = live)."""
    from components.labeling.shards import load_clips
    from components.metrics.statistics import STATISTICS, LearnedStatistics, statistics_bank

    t0 = time.perf_counter()
    tables = {}
    for split in ("train", "dev", "test"):
        c = load_clips(shards, split, ["frames", "points", "video_id", "label", "attack_type"])
        stats = pd.DataFrame([statistics_bank(f, p, fps) for f, p in zip(c["frames"], c["points"])])
        stats["video_id"], stats["label"], stats["attack_type"] = c["video_id"], c["label"], c["attack_type"]
        tables[split] = stats.groupby("video_id", sort=True).agg(
            {**{k: "mean" for k in STATISTICS}, "label": "first", "attack_type": "first"}).reset_index()
    model = LearnedStatistics().fit(tables["train"][list(STATISTICS)].to_dict("records"), tables["train"]["label"])
    per: dict[str, Any] = {}
    for split in ("dev", "test"):
        v = tables[split]
        per[split] = v[["video_id", "label", "attack_type"]].assign(
            score=model.score(v[list(STATISTICS)].to_dict("records")), n_clips=1)
    per["wall_s"] = time.perf_counter() - t0
    per["direction"] = "fitted on train"
    return per


def one_frame_videos(checkpoint: str | Path, shards: Path) -> dict[str, Any]:
    """The ``one_frame`` control: ``checkpoint``'s model on dev and test clips whose frames are all the clip's
    first frame (per video, mean clip score)."""
    from components.inference.predictor import Predictor
    from components.labeling.shards import load_clips
    from components.metrics.rates import video_scores

    t0 = time.perf_counter()
    pred = Predictor.from_checkpoint(checkpoint)
    per: dict[str, Any] = {}
    for split in ("dev", "test"):
        c = load_clips(shards, split, ["frames", "video_id", "label", "attack_type"])
        still = np.repeat(c["frames"][:, :1], c["frames"].shape[1], axis=1)  # (N, T, S, S, 3)
        table = pd.DataFrame({k: c[k] for k in ("video_id", "label", "attack_type")})
        table["score"] = pred.score_clips(still)
        per[split] = video_scores(table)
    per["wall_s"] = time.perf_counter() - t0
    return per
