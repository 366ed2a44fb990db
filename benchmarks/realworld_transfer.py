"""What does EulerNet learn from real recordings? Leave-one-source-out training on a real-world folder.

    python benchmarks/realworld_transfer.py --data /data/realworld --out /tmp/rw_transfer [--intervals 3 10]

The shipped model is trained on renders and fails on real faces (docs/evaluation.md). This measures the other
road: train the default EulerNet variant on real clips themselves, each source scored by a model that never saw
it (its threshold at the EER of the sources it was trained on), with a held still of every live video as the
attack that differs only over time. One row per clip interval (``--intervals``: 3 spans 0.3 s at 30 fps, the
pipeline's default; 10 spans 1 s, long enough for a blink or a syllable). Nothing here changes a default: it is a
measurement, reported beside the sample-trained model and the ``learned_stats`` reference on the same videos.

Clips are cut by the one Predictor path (``extract_clips``: the labeling crop), label maps by
``components.labeling.maps.location_map``; training is an in-process AdamW loop with BN recalibration, as the
pipeline's worker loop does on one worker. Prints ``table.md``; writes ``summary.json`` and ``scores.csv``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def stabilise(crops: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each frame re-warped so its 68 points fit the clip's mean points (a similarity per frame): rigid head
    or hand motion leaves the clip, non-rigid motion (blinks, mouth, expression) and everything that is not the
    face's geometry (pulse, flicker, texture) stays. (N, T, S, S, 3), (N, T, 68, 2) -> same shapes."""
    import cv2

    out_c, out_p = crops.copy(), points.copy()
    s = crops.shape[2]
    for n in range(len(crops)):
        ref = points[n].mean(axis=0)  # (68, 2)
        for t in range(crops.shape[1]):
            m, _ = cv2.estimateAffinePartial2D(points[n, t], ref, method=cv2.LMEDS)
            if m is None:
                continue
            out_c[n, t] = cv2.warpAffine(crops[n, t], m, (s, s), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REFLECT101)
            out_p[n, t] = points[n, t] @ m[:, :2].T + m[:, 2]
    return out_c, out_p


def cut_clips(videos: pd.DataFrame, interval: int, crop: int, clips: int, max_seconds: float, progress=True,
              stable: bool = False):
    """Per video: crops (N, T, S, S, 3) and location maps (N, T, M, M) of its clips, or the refusal reason;
    ``stable``: frames stabilised on their landmarks (:func:`stabilise`)."""
    from components.benchmark.realworld import video_fps
    from components.data.video import VideoError
    from components.inference import Predictor, build_meta, make_checkpoint
    from components.labeling.clips import LabelingError
    from components.labeling.maps import location_map
    from components.model.eulernet import TEST_WIDTH, create_model

    model = create_model("eulernet", width=TEST_WIDTH)
    meta = build_meta(variant="eulernet", crop_size=crop, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                      clip_len=4, clip_interval=interval, clips_per_video=clips, threshold=0.5,
                      landmark_backend="dlib", face_path="track")
    pred = Predictor.from_checkpoint(make_checkpoint(model, meta))
    m = crop // 8
    out = {}
    it = videos.itertuples()
    if progress:
        from tqdm import tqdm

        it = tqdm(list(it), desc=f"clips, interval {interval}", unit="video", leave=False)
    for r in it:
        try:
            frames = pred.read_video(r.file, max_frames=int(video_fps(r.file) * max_seconds))
            c = pred.extract_clips(frames)
            crops, points = stabilise(c.crops, c.points) if stable else (c.crops, c.points)
            points = np.clip(points, 0, crop - 1e-3)
            maps = np.stack([[location_map(p, crop, m, live=bool(r.label)) for p in pts] for pts in points])
            out[r.file] = (crops, maps.astype(np.float32))  # (N, T, S, S, 3), (N, T, M, M)
        except (LabelingError, VideoError) as exc:
            out[r.file] = exc.reason
    return out


def train_fold(crops, maps, labels, steps: int, seed: int):
    """The default variant trained on (crops, maps); live and attack clips drawn equally often."""
    from components.inference.tensors import to_model_input
    from components.model.eulernet import TEST_WIDTH, create_model
    from components.training.bn import recalibrate_batchnorm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = create_model("eulernet", width=TEST_WIDTH)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))
    live, att = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    batches = []
    model.train()
    for _ in range(steps):
        idx = np.r_[rng.choice(live, 8), rng.choice(att, 8)]
        flip = rng.random(len(idx)) < 0.5  # mirror half: a face and its mirror image are equally live
        x = crops[idx].copy()
        x[flip] = x[flip][:, :, :, ::-1]
        y = maps[idx].copy()
        y[flip] = y[flip][:, :, :, ::-1]
        xt = to_model_input(np.ascontiguousarray(x), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "cpu")  # (B, T, 3, S, S)
        loss = model.loss(model(xt), torch.from_numpy(np.ascontiguousarray(y)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        batches.append(xt)
    recalibrate_batchnorm(model, batches[-8:])
    return model.eval()


@torch.no_grad()
def score(model, crops) -> np.ndarray:
    from components.inference.tensors import clip_scores, to_model_input

    out = []
    for i in range(0, len(crops), 32):
        x = to_model_input(crops[i:i + 32], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "cpu")
        out.append(clip_scores(model(x).numpy()))
    return np.concatenate(out) if out else np.zeros(0)


def leave_source_out(table: pd.DataFrame, clips: dict, steps: int, seed: int, log=print) -> pd.DataFrame:
    from components.metrics.rates import choose_threshold

    ok = table[[isinstance(clips[f], tuple) for f in table["file"]]].reset_index(drop=True)
    res = []
    for src in sorted(ok["source"].unique()):
        tr = ok[ok["source"] != src]
        te = ok[ok["source"] == src]
        if tr["label"].nunique() < 2:
            continue
        t0 = time.perf_counter()
        cr = np.concatenate([clips[f][0] for f in tr["file"]])
        mp = np.concatenate([clips[f][1] for f in tr["file"]])
        lab = np.concatenate([np.full(len(clips[f][0]), y) for f, y in zip(tr["file"], tr["label"])])
        model = train_fold(cr, mp, lab, steps, seed)
        train_scores = [float(score(model, clips[f][0]).mean()) for f in tr["file"]]
        th = choose_threshold(train_scores, tr["label"].to_numpy(), "eer")
        for r in te.itertuples():
            s = float(score(model, clips[r.file][0]).mean())
            res.append({"file": r.file, "score": s, "accepted": s >= th, "threshold": th})
        log(f"  fold {src}: {len(tr)} training videos, {len(te)} scored, {time.perf_counter() - t0:.0f} s")
    return ok.merge(pd.DataFrame(res), on="file")


def _cell(rows: dict, kind: str) -> str:
    f = rows.get(kind)
    if not f:
        return "-"
    ci = f["auc_ci"]
    return f"{f['auc']:.2f}" + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else "") + f" ({f['n']})"


def main(argv=None) -> int:
    from components.benchmark.realworld import make_held_stills, read_manifest, row_figures

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="folder with manifest.csv (as eulernet benchmark realworld)")
    p.add_argument("--out", required=True, help="output folder (held stills are reused from it)")
    p.add_argument("--intervals", type=int, nargs="+", default=[3, 10], help="clip intervals to compare")
    p.add_argument("--crop", type=int, default=64, help="crop side in pixels (default 64)")
    p.add_argument("--clips", type=int, default=8, help="clips per video (default 8)")
    p.add_argument("--steps", type=int, default=300, help="training steps per fold (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--stabilise", choices=["no", "yes", "both"], default="no",
                   help="align every frame on its own landmarks (rigid motion out): no, yes, or both rows")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    videos, _ = read_manifest(args.data)
    videos = pd.concat([videos, make_held_stills(videos, out / "held_stills", args.seed)], ignore_index=True)
    summary = {"data": args.data, "n_videos": len(videos), "args": vars(args), "rows": {}}
    lines = [f"Leave-one-source-out EulerNet on {len(videos)} real videos (with held stills), crop {args.crop}, "
             f"{args.clips} clips per video, {args.steps} steps per fold. AUC [95 % CI resampling sources].", "",
             "| clip interval (span at 30 fps) | live vs replay | live vs held still | live vs AI-generated | "
             "BPCER | APCER replay / still / AI | refused |", "|---|---|---|---|---:|---|---:|"]
    all_scores = []
    for interval, stable in [(i, st) for i in args.intervals for st in {"no": [False], "yes": [True], "both": [False, True]}[args.stabilise]]:
        t0 = time.perf_counter()
        clips = cut_clips(videos, interval, args.crop, args.clips, args.max_seconds, not args.no_progress, stable)
        refused = sum(not isinstance(v, tuple) for v in clips.values())
        print(f"interval {interval}: clips cut in {time.perf_counter() - t0:.0f} s ({refused} videos refused)")
        t = leave_source_out(videos, clips, args.steps, args.seed)
        fig = row_figures(t["score"], t["accepted"].astype(bool), t["label"], t["attack_type"], t["source"], 2000)
        name = f"interval_{interval}" + ("_stabilised" if stable else "")
        summary["rows"][name] = {**fig, "refused": refused, "wall_s": time.perf_counter() - t0}
        all_scores.append(t.assign(interval=interval, stabilised=stable).drop(columns=["file"]))
        rw = fig["rows"]
        ap = " / ".join(f"{100 * rw[k]['apcer']:.0f} %" if k in rw else "-" for k in ("replay", "live_still",
                                                                                        "deepfake"))
        lines.append(f"| {interval} ({3 * interval} frames = {3 * interval / 30:.1f} s){', stabilised' * stable} | "
                     f"{_cell(rw, 'replay')} | {_cell(rw, 'live_still')} | {_cell(rw, 'deepfake')} | "
                     f"{100 * rw['live']['bpcer']:.0f} % ({rw['live']['n']}) | {ap} | {refused} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    from components.runtime import json_safe

    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    pd.concat(all_scores).to_csv(out / "scores.csv", index=False)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
