"""Does real, compressed video carry a face's pulse strongly enough to tell live faces from attacks?

    python benchmarks/pulse_cue.py --data DIR --out OUT [--lengths 2.5 10] [--workers 2]

``DIR`` holds ``manifest.csv`` (the layout ``eulernet benchmark realworld`` reads). Every video is decoded as the
labeling path decodes (up to the longest ``--lengths`` second, <= ``label.max_side`` px), its face followed on every
frame (``label.backend`` landmarks), and the pulse read by POS on three skin patches (both cheeks and the forehead,
``components.metrics.pulse``): the mean SNR of the cardiac peak, in dB. A held still of each live video's middle
frame (``components.data.held_still``: no pulse by construction) is made at every length.

Why the lengths: the SNR of a spectral peak depends on how long the trace is (a short trace has a broad peak and
few noise bins), and the real-world benchmark's held stills are 2.5 s long while live videos are scored over 10 s.
A cue compared across unequal lengths can separate them by length alone, so each row here compares equal spans
(the live videos cut to the still's length), and the unequal comparison is printed beside them to show the size of
that artefact. AUC with live higher, 95 % interval resampling sources. Writes ``OUT/pulse.csv`` (every video's SNR
per length, or why it has none), ``OUT/summary.json`` and ``OUT/table.md``; prints the table.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

_WORKER: dict = {}


def _init_worker(backend: str, options: dict) -> None:
    import cv2

    from components.face.landmarks import make_backend

    cv2.setNumThreads(1)
    _WORKER["backend"] = make_backend(backend, **options)


def region_series(frames: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(F, 3, 3) mean RGB of the three skin patches on every frame; NaN rows where no face was followed."""
    from components.metrics.pulse import region_means, skin_regions

    out = np.full((len(frames), 3, 3), np.nan)
    for t, (f, p) in enumerate(zip(frames, points)):
        if np.isfinite(p).all():
            out[t] = region_means(f, skin_regions(p))
    return out


def snr_by_length(series: np.ndarray, fps: float, lengths: list[float]) -> dict[str, float]:
    """``pulse_<L>``: the mean pulse SNR over the first L seconds, for each length the video is long enough for."""
    from components.metrics.pulse import video_pulse_snr

    out = {}
    for length in lengths:
        n = int(round(length * fps))
        out[f"pulse_{length:g}"] = video_pulse_snr(series[:n], fps) if len(series) >= n - 1 else float("nan")
    return out


def measure(job: dict) -> dict:
    """One video -> its SNR per length; ``skipped`` says why a video gave none (one failure never stops the rest)."""
    from components.benchmark.realworld import track_points
    from components.data.video import VideoError, read_frames, video_fps

    row = {"path": job["path"], "skipped": "", "detail": ""}
    try:
        fps = video_fps(job["file"])
        frames = read_frames(job["file"], max_frames=int(round(fps * max(job["lengths"]))),
                             max_side=job["max_side"])  # (F, H, W, 3)
        series = region_series(frames, track_points(frames, _WORKER["backend"]))
        row.update(fps=fps, frames=len(frames), face_share=float(np.isfinite(series[:, 0, 0]).mean()))
        row.update(snr_by_length(series, fps, job["lengths"]))
        if len(frames) < round(min(job["lengths"]) * fps) - 1:
            row["skipped"], row["detail"] = "too_short", f"{len(frames) / fps:.1f} s, shorter than every length"
        elif all(np.isnan(row[f"pulse_{x:g}"]) for x in job["lengths"]):
            row["skipped"], row["detail"] = "no_face", f"a face on {row['face_share']:.0%} of the frames"
    except VideoError as exc:
        row["skipped"], row["detail"] = exc.reason, exc.detail
    except Exception as exc:  # noqa: BLE001 - a broken clip is reported, not fatal
        row["skipped"], row["detail"] = "error", f"{type(exc).__name__}: {exc}"
    return row


def comparisons(df: pd.DataFrame, lengths: list[float], n_boot: int, seed: int) -> list[dict]:
    """AUC (live higher) of live vs each attack type at each length, held stills of the same length; then live
    over the longest length vs the shortest stills (unequal spans)."""
    from components.metrics.rates import auc, auc_bootstrap_ci

    def one(live, attack, col_live, col_attack, what):
        a = attack[col_attack].dropna()
        v = live[col_live].dropna()
        if len(a) == 0 or len(v) == 0:
            return None
        s = np.r_[v.to_numpy(), a.to_numpy()]
        y = np.r_[np.ones(len(v), int), np.zeros(len(a), int)]
        g = np.r_[live.loc[v.index, "source"].to_numpy(), attack.loc[a.index, "source"].to_numpy()]
        return {"compare": what, "n_live": len(v), "n_attack": len(a), "auc": auc(s, y),
                "auc_ci": list(auc_bootstrap_ci(s, y, g, n_boot=n_boot, seed=seed))}

    live = df[df["attack_type"] == "live"]
    rows = []
    for length in lengths:
        col = f"pulse_{length:g}"
        for typ in sorted(t for t in df["attack_type"].unique() if t != "live" and not t.startswith("still_")):
            r = one(live, df[df["attack_type"] == typ], col, col, f"live vs {typ}, both over the first {length:g} s")
            if r:
                rows.append({**r, "length_s": length})
        r = one(live, df[df["attack_type"] == f"still_{length:g}"], col, col,
                f"live vs held still, both {length:g} s")
        if r:
            rows.append({**r, "length_s": length})
    lo, hi = min(lengths), max(lengths)
    if lo != hi:
        r = one(live, df[df["attack_type"] == f"still_{lo:g}"], f"pulse_{hi:g}", f"pulse_{lo:g}",
                f"live over {hi:g} s vs held still of {lo:g} s (unequal spans)")
        if r:
            rows.append({**r, "length_s": None})
    return rows


def table(rows: list[dict], head: str, skipped: pd.DataFrame) -> str:
    lines = [head, "", "| comparison | live / attack | AUC (live higher) [95 % CI by source] |", "|---|---|---|"]
    for r in rows:
        lo, hi = r["auc_ci"]
        lines.append(f"| {r['compare']} | {r['n_live']} / {r['n_attack']} | {r['auc']:.2f} [{lo:.2f}-{hi:.2f}] |")
    lines += ["", f"Skipped: {len(skipped)}" + ("" if skipped.empty else " - " + "; ".join(
        f"{p} ({s}: {d})" for p, s, d in zip(skipped["path"], skipped["skipped"], skipped["detail"])))]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with manifest.csv (path,label,attack_type,source)")
    ap.add_argument("--out", required=True, help="output folder: pulse.csv, summary.json, table.md")
    ap.add_argument("--lengths", type=float, nargs="+", default=[2.5, 10.0], metavar="S",
                    help="spans compared, seconds (default 2.5 10: the held stills' length and the scored window)")
    ap.add_argument("--workers", type=int, default=2, help="processes measuring videos (default 2)")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the intervals (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if not all(2.0 <= x <= 60 for x in args.lengths):
        ap.error(f"--lengths must be within 2..60 s (a pulse needs a few beats), got {args.lengths}")

    from components.benchmark.realworld import make_held_stills, read_manifest
    from components.config import load_params
    from components.runtime import progress_bar

    label = load_params(REPO / "params.yaml")["label"]
    try:
        videos, _ = read_manifest(args.data)
    except ValueError as exc:  # a folder without a usable manifest.csv: said like any bad argument, exit 2
        ap.error(str(exc))
    out = Path(args.out)
    t0 = time.perf_counter()
    lengths = sorted(set(args.lengths))
    parts = [videos]
    for length in lengths:
        stills = make_held_stills(videos, out / "held_stills", seed=args.seed, seconds=length)
        parts.append(stills.assign(attack_type=f"still_{length:g}"))
    allv = pd.concat(parts, ignore_index=True)
    jobs = [{"path": r.path, "file": r.file, "lengths": lengths, "max_side": label.max_side}
            for r in allv.itertuples()]
    bar = progress_bar(len(jobs), "videos", unit="video", disable=args.no_progress)
    rows = []
    # spawn: decoding the stills above started codec threads, and a forked child of a threaded parent can hang.
    with ProcessPoolExecutor(max(args.workers, 1), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker,
                             initargs=(label.backend, dict(label.backend_options))) as pool:
        for row in pool.map(measure, jobs):
            rows.append(row)
            bar.update()
    bar.close()
    df = allv.drop(columns=["file"]).merge(pd.DataFrame(rows), on="path")
    df.to_csv(out / "pulse.csv", index=False)
    skipped = df[df["skipped"] != ""]
    ok = df[df["skipped"] == ""].reset_index(drop=True)
    figures = comparisons(ok, lengths, args.n_boot, args.seed)
    head = (f"Pulse SNR (POS, 3 skin patches) on {len(ok)} of {len(df)} videos from {ok['source'].nunique()} "
            f"sources ({', '.join(f'{k} {v}' for k, v in ok['attack_type'].value_counts().items())}); "
            f"{label.backend} face path, <= {label.max_side} px; {time.perf_counter() - t0:.0f} s on "
            f"{args.workers} workers.")
    text = table(figures, head, skipped)
    (out / "summary.json").write_text(json.dumps({"args": vars(args), "comparisons": figures, "skipped":
                                                  skipped[["path", "skipped", "detail"]].to_dict("records")},
                                                 indent=2, default=float) + "\n")
    (out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
