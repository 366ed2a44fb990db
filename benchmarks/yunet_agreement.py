"""YuNet against dlib HOG: do the two face paths agree, and what does YuNet save? One command, prints a table.

    .venv/bin/python benchmarks/yunet_agreement.py [--realworld DIR] [--frames 60] [--every 10] [--json out.json]

For every sampled frame (every ``--every``-th of a video's first ``--frames``, decoded at labeling's 480 px) both
backends of components/face/landmarks.py run: ``dlib`` (HOG boxes + 68 points) and ``yunet`` (YuNet boxes,
mapped to HOG's box convention by ``YUNET_TO_DLIB``, + the same 68-point model). Per frame where HOG finds a
face: IoU of the two boxes (a frame YuNet misses counts 0) and the landmark NME (mean point distance over the
inter-ocular distance). Also: each detector's hit rate, time per frame (detection + 68 points), and the box
mapping re-measured (medians), so ``YUNET_TO_DLIB`` can be checked against new data.

Data: the embedded sample (data/sample: synthetic videos of real photographs) and, with ``--realworld``, a folder
with a manifest.csv of real recordings (as `eulernet benchmark realworld` reads it).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(files: list[str], frames: int, every: int) -> dict:
    from components.data.video import VideoError, read_frames
    from components.face.landmarks import LEFT_EYE, RIGHT_EYE, DlibBackend, YuNetBackend
    from components.face.tracking import iou

    hog, yunet = DlibBackend(), YuNetBackend()
    ious, nmes, ratios = [], [], []
    hits = {"dlib": 0, "yunet": 0}
    seconds = {"dlib": 0.0, "yunet": 0.0}
    n = 0
    for f in files:
        try:
            video = read_frames(f, max_frames=frames, max_side=480)
        except VideoError:
            continue
        for frame in video[::every]:
            n += 1
            found = {}
            for name, backend in (("dlib", hog), ("yunet", yunet)):
                t0 = time.perf_counter()
                faces = backend.detect(frame)
                seconds[name] += time.perf_counter() - t0
                found[name] = faces[0] if faces else None
                hits[name] += bool(faces)
            d, y = found["dlib"], found["yunet"]
            if d is None:
                continue
            ious.append(iou(d.box, y.box) if y is not None else 0.0)
            if y is not None:
                iod = float(np.linalg.norm(d.points[LEFT_EYE].mean(0) - d.points[RIGHT_EYE].mean(0)))
                nmes.append(float(np.linalg.norm(y.points - d.points, axis=1).mean() / max(iod, 1e-6)))
                dw, dh, yw, yh = (d.box[2] - d.box[0], d.box[3] - d.box[1], y.box[2] - y.box[0], y.box[3] - y.box[1])
                ratios.append((dw / yw, dh / yh))
    ious_a = np.array(ious)
    return {
        "frames": n, "videos": len(files), "dlib_hit_rate": hits["dlib"] / max(n, 1),
        "yunet_hit_rate": hits["yunet"] / max(n, 1), "frames_compared": len(ious),
        "iou_ge_0.5": float((ious_a >= 0.5).mean()) if len(ious_a) else None,
        "iou_median": float(np.median(ious_a)) if len(ious_a) else None,
        "nme_median": float(np.median(nmes)) if nmes else None,
        "nme_p90": float(np.percentile(nmes, 90)) if nmes else None,
        "ms_per_frame": {k: 1000 * v / max(n, 1) for k, v in seconds.items()},
        # Box sizes after the mapping, HOG over YuNet: 1.0 when YUNET_TO_DLIB still fits this data.
        "mapped_size_ratio_median": [float(np.median([r[i] for r in ratios])) for i in (0, 1)] if ratios else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", default="data/sample", help="the embedded sample (its manifest.csv)")
    ap.add_argument("--realworld", help="a folder of real recordings with manifest.csv (path column)")
    ap.add_argument("--frames", type=int, default=60, help="frames read per video (default 60)")
    ap.add_argument("--every", type=int, default=10, help="compare every n-th of them (default 10)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    import cv2
    import pandas as pd

    cv2.setNumThreads(1)
    sets = {"sample": [str(Path(args.sample) / p) for p in pd.read_csv(Path(args.sample) / "manifest.csv")["path"]]}
    if args.realworld:
        m = pd.read_csv(Path(args.realworld) / "manifest.csv")
        sets["real recordings"] = [str(Path(args.realworld) / p) for p in m["path"]
                                   if not str(p).lower().endswith((".jpg", ".jpeg", ".png"))]
    out = {name: measure(files, args.frames, args.every) for name, files in sets.items()}
    print("| data | videos / frames | HOG finds a face | YuNet finds a face | box IoU >= 0.5 (HOG's faces) | "
          "median IoU | landmark NME median / p90 | ms per frame HOG / YuNet |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    for name, r in out.items():
        print(f"| {name} | {r['videos']} / {r['frames']} | {100 * r['dlib_hit_rate']:.1f} % | "
              f"{100 * r['yunet_hit_rate']:.1f} % | {100 * (r['iou_ge_0.5'] or 0):.1f} % | {r['iou_median']:.2f} | "
              f"{100 * r['nme_median']:.1f} % / {100 * r['nme_p90']:.1f} % | "
              f"{r['ms_per_frame']['dlib']:.1f} / {r['ms_per_frame']['yunet']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
