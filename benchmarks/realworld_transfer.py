"""What does EulerNet learn from real recordings? Leave-one-source-out training on a real-world folder.

    python benchmarks/realworld_transfer.py --data /data/realworld --out /tmp/rw_transfer [--intervals 3 10]

The shipped model is trained on renders and fails on real faces (docs/evaluation.md). This measures the other
road: train the default EulerNet variant on real clips themselves, each source scored by a model that never saw
it (its threshold at the EER of the sources it was trained on), with a held still of every live video as the
attack that differs only over time. One row per clip interval (``--intervals``: 3 spans 0.3 s at 30 fps, the
pipeline's default; 10 spans 1 s, long enough for a blink or a syllable). Nothing here changes a default: it is a
measurement, reported beside the sample-trained model and the ``learned_stats`` reference on the same videos.

Clips are cut and EulerNet is trained by the reference recipe's own functions (``components.benchmark.reference``:
the Predictor's labeling crop, location-map labels, an in-process AdamW loop with BN recalibration); this script
only varies the clip interval and stabilisation, without the video head (``eulernet reference`` adds it). Prints ``table.md``; writes ``summary.json`` and ``scores.csv``.
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


def cut_clips(videos: pd.DataFrame, interval: int, crop: int, clips: int, max_seconds: float, progress=True,
              stable: bool = False):
    """Per video: (crops, maps, points) of its clips, or the refusal reason (the recipe's own clip cutter)."""
    from components.benchmark.reference import ReferenceConfig, make_predictor
    from components.benchmark.reference import cut_clips as cut

    pred = make_predictor(ReferenceConfig(crop_size=crop, clip_interval=interval, clips_per_video=clips,
                                          max_side=640))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = lambda it: tqdm(list(it), desc=f"clips, interval {interval}", unit="video", leave=False)  # noqa: E731
    return cut(pred, videos, max_seconds, bar, stable)


def leave_source_out(table: pd.DataFrame, clips: dict, steps: int, seed: int, log=print) -> pd.DataFrame:
    """Each source scored by EulerNet trained on the others; threshold at the EER of its training videos."""
    from components.benchmark.reference import clip_scores_of, train_eulernet
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
        model = train_eulernet(cr, mp, lab, steps, seed)
        train_scores = [float(clip_scores_of(model, clips[f][0]).mean()) for f in tr["file"]]
        th = choose_threshold(train_scores, tr["label"].to_numpy(), "eer")
        for r in te.itertuples():
            sc = float(clip_scores_of(model, clips[r.file][0]).mean())
            res.append({"file": r.file, "score": sc, "accepted": sc >= th, "threshold": th})
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
