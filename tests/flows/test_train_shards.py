"""Tiny labeled shards in the labeling schema (one row per clip), for training/evaluation tests.

Live clips carry a smooth face-like blob; attack clips add a high-frequency stripe pattern (a screen/print
texture) that flickers over time, so a small model can learn the difference in a few epochs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ATTACKS = ("print", "replay")


def make_clip(rng, live: bool, crop: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:crop, 0:crop] / crop
    face = np.exp(-(((xx - 0.5) / 0.28) ** 2 + ((yy - 0.5) / 0.36) ** 2))  # (S, S)
    frames = []
    for k in range(t):
        img = 60 + 150 * face[..., None] * np.array([1.0, 0.8, 0.7]) + rng.normal(0, 6, (crop, crop, 3))
        if not live:
            img = img + 45 * np.sin(2 * np.pi * (xx * crop / 3.0 + k / 4.0))[..., None]
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    m = crop // 8
    fm = face[::8, ::8][:m, :m].astype(np.float32)
    loc = (fm > 0.3).astype(np.float32) if live else np.zeros((m, m), np.float32)
    maps = np.repeat(loc[None], t, 0)  # (T, M, M)
    return np.stack(frames), maps


def make_rows(n_videos: dict, crop: int = 32, t: int = 4, clips_per_video: int = 2, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in n_videos.items():
        for v in range(n):
            live = v % 2 == 0
            attack = "live" if live else ATTACKS[(v // 2) % 2]
            for c in range(clips_per_video):
                frames, loc = make_clip(rng, live, crop, t)
                rows.append({
                    "video_id": f"{split}_{v:03d}", "clip_index": c, "start_frame": 12 * c, "split": split,
                    "label": int(live), "attack_type": attack, "device": f"dev{v % 2}",
                    "scene": "indoor" if v % 3 else "outdoor", "subject_id": f"s{v // 2}",
                    "frames": frames, "location_map": loc, "binary_mask": np.full_like(loc, float(live)),
                    "depth_map": loc * 0.8,
                })
    return rows


def write_tiny_shards(out_dir: Path, n_videos=None, crop: int = 32, t: int = 4, clips_per_video: int = 2,
                      seed: int = 0) -> Path:
    """Write shards in the label stage's layout (Parquet written by Ray Data + ``index.csv``); needs Ray."""
    import pandas as pd
    import ray.data

    out_dir = Path(out_dir)
    n_videos = n_videos or {"train": 16, "dev": 8, "test": 8}
    rows = make_rows(n_videos, crop, t, clips_per_video, seed)
    for r in rows:
        r["cache_key"] = r["video_id"]
    ray.data.from_items(rows).repartition(2).write_parquet(str(out_dir / "runs" / "tiny"))
    files = ";".join(sorted(str(p.relative_to(out_dir)) for p in (out_dir / "runs" / "tiny").glob("*.parquet")))
    meta = ["video_id", "split", "label", "attack_type", "device", "scene", "subject_id"]
    idx = pd.DataFrame([{k: r[k] for k in meta} for r in rows]).drop_duplicates("video_id")
    idx = idx.assign(cache_key=idx["video_id"], path=idx["video_id"] + ".mp4", status="ok", reason="",
                     clips=clips_per_video, files=files)
    idx.to_csv(out_dir / "index.csv", index=False)
    return out_dir


def test_tiny_shards_schema(tmp_path, ray_session):
    from components.labeling.shards import load_clips, read_shards

    out = write_tiny_shards(tmp_path / "shards", {"train": 2, "dev": 2})
    rows = read_shards(out, split="dev").take_all()
    assert len(rows) == 4 and {r["split"] for r in rows} == {"dev"}
    r = rows[0]
    assert r["frames"].shape == (4, 32, 32, 3) and r["frames"].dtype == np.uint8
    assert r["location_map"].shape == (4, 4, 4) and r["location_map"].dtype == np.float32
    c = load_clips(out, split="train")
    assert c["frames"].shape == (4, 4, 32, 32, 3) and c["label"].tolist() == [1, 1, 0, 0]
