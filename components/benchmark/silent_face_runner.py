"""Score videos with the Silent-Face-Anti-Spoofing peer (minivision-ai, Apache-2.0), using ITS code and weights.

Run as a script with the peer's checkout as the working directory (its code loads its detector by relative
path and imports itself as ``src``); nothing of the peer is copied into this repository::

    cd /path/to/silent-face && python /path/to/silent_face_runner.py videos.json > scores.jsonl

``videos.json`` is a JSON list of video paths. For each video, ``frames`` frames spread evenly over the first
``seconds`` are scored by every model in ``resources/anti_spoof_models`` (the peer's own ensemble: the real-class
probabilities summed over models, divided by the model count as its ``test.py`` does); the video's score is the
mean over frames. One JSON line per video: ``{"path", "score"}`` or ``{"path", "error"}``.

Standard library, numpy, OpenCV and torch only: it runs in this project's environment without importing it.
"""
from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    import argparse

    import cv2
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", help="JSON file: a list of video paths")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    sys.path.insert(0, os.getcwd())  # the peer's checkout: `src` is its package
    from src.anti_spoof_predict import AntiSpoofPredict  # noqa: E402  (the peer's code)
    from src.generate_patches import CropImage  # noqa: E402
    from src.utility import parse_model_name  # noqa: E402

    model_dir = os.path.join("resources", "anti_spoof_models")
    models = sorted(os.listdir(model_dir))
    predictor, cropper = AntiSpoofPredict(0), CropImage()
    for path in json.load(open(args.videos)):
        try:
            cap = cv2.VideoCapture(path)
            fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or int(fps * args.seconds)
            last = max(1, min(total, int(fps * args.seconds)))
            wanted = set(np.linspace(0, last - 1, args.frames).round().astype(int).tolist())
            scores, i = [], 0
            while wanted and i <= max(wanted):
                ok, bgr = cap.read()
                if not ok:
                    break
                if i in wanted:
                    wanted.discard(i)
                    bbox = predictor.get_bbox(bgr)
                    pred = np.zeros((1, 3))
                    for name in models:
                        h, w, _, scale = parse_model_name(name)
                        img = cropper.crop(org_img=bgr, bbox=bbox, scale=scale, out_w=w, out_h=h,
                                           crop=scale is not None)
                        pred += predictor.predict(img, os.path.join(model_dir, name))
                    scores.append(float(pred[0][1] / len(models)))
                i += 1
            cap.release()
            if not scores:
                raise ValueError("no frame could be decoded")
            print(json.dumps({"path": path, "score": float(np.mean(scores)), "frames": len(scores)}), flush=True)
        except Exception as exc:  # one bad video must not stop the others; it is reported by name
            print(json.dumps({"path": path, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
