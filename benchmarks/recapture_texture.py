"""Can a texture model trained on *simulated* screen recaptures of real live faces catch *real* replays?

    python benchmarks/recapture_texture.py --data DIR --out OUT [--steps 300] [--variants display camera_both]

The real-recordings question in one line: the single-frame peer catches every real replay from texture (it was
trained on real captures of screens); this project holds four real replays, too few to train on. So a small CNN
(96-px face crops, 1.5x the landmarks' box) is trained on the live videos' frames against the same frames passed
through a screen-recapture simulator, and tested on real replays it never saw, leave-one-source-out: for each
source, the model is trained on the other sources' live videos only and scores that source's live videos, replays
and AI-generated clips (16 frames per video spread over the first 10 s, mean logit). The threshold rejects 5 % of
the training videos' live people. No real attack is ever trained on, so the replay row is a clean transfer test.

The simulator (``recapture``): a display's tone curve (gamma 0.7-1.5, lifted black, dimmed white), a white-balance
cast, moiré (two beating gratings near the camera's pixel pitch), glare. Variants:

* ``display``: the recaptures also get the camera's blur, resampling and noise, the live frames only brightness
  jitter (the model may learn "blurred and noisy" as a screen);
* ``camera_both``: blur, resampling and noise drawn the same way for live frames and recaptures, so only the
  display's tone, cast, moiré and glare tell them apart.

Writes ``OUT/scores_<variant>.csv`` and ``OUT/table.md``; prints the table (AUC live vs each attack type with a 95 %
interval resampling sources, APCER, BPCER). A video whose face cannot be found is named and skipped.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SIZE = 96  # crop side, px
FRAMES = 16  # frames per video


# ------------------------------------------------------------------------------------------------ images
def crop(frame: np.ndarray, box, size: int = SIZE, scale: float = 1.5, dx: float = 0.0, dy: float = 0.0):
    """(size, size, 3) square crop of ``scale`` x the box's larger side around its centre (shifted by dx, dy
    half-sides), resampled with area averaging; the border is reflected."""
    import cv2

    x0, y0, x1, y1 = box
    half = max(x1 - x0, y1 - y0) * scale / 2
    cx, cy = (x0 + x1) / 2 + dx * half, (y0 + y1) / 2 + dy * half
    k = size / (2 * half)
    m = np.float32([[k, 0, size / 2 - cx * k], [0, k, size / 2 - cy * k]])
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)


def jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    """An RGB image through JPEG at ``quality`` (the upload's own compression, on both classes)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def camera(img: np.ndarray, rng) -> np.ndarray:
    """A second camera's optics and sensor: defocus blur, resampling to a lower resolution and back, noise."""
    import cv2

    x = img.astype(np.float32) / 255
    h, w = x.shape[:2]
    x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 2.0))
    s = rng.uniform(0.5, 1.0)
    if s < 0.95:
        small = cv2.resize(x, (max(int(w * s), 8), max(int(h * s), 8)), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    x = x + rng.normal(0, rng.uniform(0.003, 0.03), x.shape).astype(np.float32)
    return np.clip(x * 255, 0, 255).astype(np.uint8)


def display(img: np.ndarray, rng) -> np.ndarray:
    """A screen showing ``img``, as a camera sees it: tone curve, white-balance cast, moiré, glare."""
    x = img.astype(np.float32) / 255
    h, w = x.shape[:2]
    x = x ** rng.uniform(0.7, 1.5)
    black, white = rng.uniform(0.02, 0.18), rng.uniform(0.7, 1.0)
    x = black + (white - black) * x
    x = x * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.8:  # the screen's pixel grid beating against the camera's
        th = rng.uniform(0, np.pi)
        p1 = rng.uniform(2.2, 5.0)
        p2 = p1 * rng.uniform(1.02, 1.15)
        u = xx * np.cos(th) + yy * np.sin(th)
        grid = np.cos(2 * np.pi * u / p1) * np.cos(2 * np.pi * u / p2)
        x = x * (1 + rng.uniform(0.02, 0.08) * grid)[..., None]
    if rng.random() < 0.5:
        gy, gx = rng.uniform(0, h), rng.uniform(0, w)
        x = x + rng.uniform(0.05, 0.3) * np.exp(-(((yy - gy) / (0.3 * h)) ** 2 + ((xx - gx) / (0.3 * w)) ** 2))[..., None]
    return np.clip(x * 255, 0, 255).astype(np.uint8)


def recapture(img: np.ndarray, rng) -> np.ndarray:
    """A screen showing ``img`` filmed by a second camera (both variants)."""
    return camera(display(img, rng), rng)


def live_view(img: np.ndarray, rng, variant: str) -> np.ndarray:
    x = np.clip(img.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
    return camera(x, rng) if variant == "camera_both" else x


# ------------------------------------------------------------------------------------------------ model
def make_net():
    import torch.nn as nn

    class TextureNet(nn.Module):
        """Five stride-2 3x3 conv blocks (96 px -> 3 px) and a linear read-out of their mean: texture, not layout."""

        def __init__(self):
            super().__init__()
            widths = [3, 16, 32, 64, 64, 96]
            layers = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.Conv2d(a, b, 3, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(widths[-1], 1)

        def forward(self, x):  # (B, 3, 96, 96) -> (B,) logit of live
            return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)

    return TextureNet()


def to_tensor(imgs):
    import torch

    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (B, 3, H, W)


def batch(data: dict, paths: list[str], rng, n: int, attack: bool, variant: str):
    out = []
    for _ in range(n):
        p = paths[rng.integers(len(paths))]
        k = rng.integers(len(data[p]["frames"]))
        c = crop(data[p]["frames"][k], data[p]["boxes"][k], scale=rng.uniform(1.3, 1.7),
                 dx=rng.uniform(-0.1, 0.1), dy=rng.uniform(-0.1, 0.1))
        c = recapture(c, rng) if attack else live_view(c, rng, variant)
        c = jpeg(c, rng.uniform(40, 90))
        out.append(c[:, ::-1].copy() if rng.random() < 0.5 else c)
    return to_tensor(out)


def video_score(net, item: dict) -> float:
    import torch

    net.eval()
    with torch.no_grad():
        x = to_tensor([jpeg(crop(f, b), 90) for f, b in zip(item["frames"], item["boxes"])])
        return float(net(x).mean())


def train(data: dict, live: list[str], steps: int, variant: str, seed: int):
    import torch

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = make_net()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    y = torch.cat([torch.ones(32), torch.zeros(32)])
    for _ in range(steps):
        net.train()
        x = torch.cat([batch(data, live, rng, 32, False, variant), batch(data, live, rng, 32, True, variant)])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, float(loss.detach())


# ------------------------------------------------------------------------------------------------ data
def load_videos(videos: pd.DataFrame, max_side: int, backend, bar) -> tuple[dict, list[tuple[str, str]]]:
    """{path: {"frames": (16, H, W, 3), "boxes": (16, 4)}} from the first 10 s of each video; skipped (path, why)."""
    from components.benchmark.realworld import track_points
    from components.data.video import VideoError, read_frames, video_fps

    data, skipped = {}, []
    for r in videos.itertuples():
        try:
            frames = read_frames(r.file, max_frames=int(round(video_fps(r.file) * 10)), max_side=max_side)
            idx = np.linspace(0, len(frames) - 1, FRAMES).round().astype(int)
            points = track_points(frames[idx], backend)  # (16, 68, 2), NaN where no face
            ok = np.isfinite(points).all(axis=(1, 2))
            if ok.sum() < FRAMES // 2:
                raise VideoError("no_face", f"a face on {int(ok.sum())} of {FRAMES} frames")
            boxes = np.c_[points[ok].min(1), points[ok].max(1)]  # (n, 4) x0 y0 x1 y1
            data[r.path] = {"frames": frames[idx][ok], "boxes": boxes}
        except VideoError as exc:
            skipped.append((r.path, f"{exc.reason}: {exc.detail}"))
        bar.update()
    return data, skipped


def figures(scores: pd.DataFrame, n_boot: int) -> dict:
    from components.metrics.rates import auc, auc_bootstrap_ci

    live = scores[scores["label"] == 1]
    out = {"bpcer": float((live["score"] < live["threshold"]).mean()), "n_live": len(live), "rows": {}}
    for typ in sorted(set(scores["attack_type"]) - {"live"}):
        sub = scores[(scores["label"] == 1) | (scores["attack_type"] == typ)]
        att = sub[sub["label"] == 0]
        out["rows"][typ] = {"n": len(att), "auc": auc(sub["score"], sub["label"]),
                            "auc_ci": list(auc_bootstrap_ci(sub["score"], sub["label"], sub["source"],
                                                            n_boot=n_boot)),
                            "apcer": float((att["score"] >= att["threshold"]).mean())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with manifest.csv (path,label,attack_type,source)")
    ap.add_argument("--out", required=True, help="output folder: scores_<variant>.csv, table.md")
    ap.add_argument("--steps", type=int, default=300, help="training steps of 64 crops per fold (default 300)")
    ap.add_argument("--variants", nargs="+", default=["display", "camera_both"], choices=["display", "camera_both"])
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be >= 1, got {args.steps}")

    import cv2
    import torch

    from components.benchmark.realworld import read_manifest
    from components.config import load_params
    from components.face.landmarks import make_backend
    from components.runtime import progress_bar

    cv2.setNumThreads(1)
    torch.set_num_threads(2)
    try:
        videos, _ = read_manifest(args.data)
    except ValueError as exc:  # a folder without a usable manifest.csv: said like any bad argument, exit 2
        ap.error(str(exc))
    label = load_params(REPO / "params.yaml")["label"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bar = progress_bar(len(videos), "videos", unit="video", disable=args.no_progress)
    data, skipped = load_videos(videos, label.max_side, make_backend(label.backend, **dict(label.backend_options)),
                                bar)
    bar.close()
    meta = videos.set_index("path")
    lines = [f"Texture model on simulated recaptures, leave-one-source-out: {len(data)} of {len(videos)} videos, "
             f"{meta['source'].nunique()} sources, {args.steps} steps of 64 crops per fold.", "",
             "| variant | " + " | ".join(f"live vs {t} AUC [95 % CI by source] (n) | APCER {t}"
                                       for t in sorted(set(meta["attack_type"]) - {"live"})) + " | BPCER |",
             "|---|" + "---|---:|" * (meta["attack_type"].nunique() - 1) + "---:|"]
    for variant in args.variants:
        rows = []
        for source in sorted(meta["source"].unique()):
            train_live = [p for p in data if meta.loc[p, "label"] == 1 and meta.loc[p, "source"] != source]
            net, loss = train(data, train_live, args.steps, variant, args.seed)
            threshold = float(np.quantile([video_score(net, data[p]) for p in train_live], 0.05))
            for p in data:
                if meta.loc[p, "source"] == source:
                    rows.append({"path": p, "source": source, "attack_type": meta.loc[p, "attack_type"],
                                 "label": int(meta.loc[p, "label"]), "score": video_score(net, data[p]),
                                 "threshold": threshold})
            # The last batch's loss: how well it tells its own simulations apart (near 0: perfectly).
            print(f"{variant}: fold {source} done, last training loss {loss:.3f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        scores = pd.DataFrame(rows)
        scores.to_csv(out / f"scores_{variant}.csv", index=False)
        f = figures(scores, args.n_boot)
        cells = [f"{r['auc']:.2f} [{r['auc_ci'][0]:.2f}-{r['auc_ci'][1]:.2f}] ({r['n']}) | {100 * r['apcer']:.0f} %"
                 for _, r in sorted(f["rows"].items())]
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {100 * f['bpcer']:.0f} % ({f['n_live']}) |")
    lines += ["", f"Skipped: {len(skipped)}" + "".join(f"; {p} ({why})" for p, why in skipped),
              f"Wall: {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
