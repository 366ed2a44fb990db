"""Does any single hand statistic separate live from attack in a generator setting?

    python benchmarks/realistic_shortcuts.py --setting realistic --subjects 6 --out OUT [--workers 2]
    python benchmarks/realistic_shortcuts.py --setting default --subjects 6 --out OUT2

Generates a small dataset of the setting as the temporal benchmark makes it (``preset(setting)``,
``temporal_only``, attack types print / replay / ai_dynamic; ``components.benchmark.temporal``), decodes every
video as labeling does (``components.data.video.read_frames`` at ``label.max_side``), follows its face with the
labeling face path (``label.backend`` landmarks through ``components.face.tracking.FaceTracker``, as
``benchmarks/realworld_cues.py``), computes every statistic of
``components.metrics.statistics.statistics_bank`` over the whole video at the video's frame rate, and prints per
statistic its separation of live from each attack type and from all attacks: max(AUC, 1 - AUC), whichever side
live lies on. The verdict line: PASS when every separation is <= ``--max-auc`` (0.70). A last line scores the
nine together (``learned_stats``, leave-one-subject-out), which the verdict does not bound.

Writes ``OUT/data/`` (the videos; reused when its config matches), ``OUT/statistics.csv`` (one row per video),
``OUT/summary.json`` (the figures) and ``OUT/table.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from realworld_cues import _WORKER, measure_all, write_report  # noqa: E402  (one face backend per worker, as the cue scan)

ATTACKS = ("print", "replay", "ai_dynamic")


def synth_config(setting: str, subjects: int, lives: int, attacks: int, frames: int, seed: int):
    """The temporal benchmark's generator configuration (temporal_only, its three attack types), smaller."""
    from components.data.synthetic import SynthConfig, preset

    return SynthConfig(**{**preset(setting), "n_subjects": subjects, "n_frames": frames, "lives_per_cell": lives,
                          "attacks_per_cell": attacks, "seed": seed, "temporal_only": True,
                          "attack_types": ATTACKS})


def make_data(cfg, out: Path, workers: int, progress: bool) -> pd.DataFrame:
    from components.data.manifest import read_manifest
    from components.data.synthetic import generate_dataset

    data = out / "data"
    stamp = data / "config.json"
    want = json.loads(json.dumps({k: getattr(cfg, k) for k in cfg.__dataclass_fields__}))
    if stamp.is_file() and (data / "manifest.csv").is_file() and json.loads(stamp.read_text()) == want:
        return read_manifest(data / "manifest.csv")
    generate_dataset(data, cfg, progress=progress, workers=workers)
    stamp.write_text(json.dumps(want, indent=2, sort_keys=True) + "\n")
    return read_manifest(data / "manifest.csv")


def measure(job: dict) -> dict:
    """One video -> its statistics (or ``skipped`` with the reason)."""
    from realworld_cues import follow_face

    from components.data.video import read_frames
    from components.metrics.statistics import STATISTICS, statistics_bank

    row = {"video_id": job["video_id"], "skipped": "", **{k: np.nan for k in STATISTICS}}
    try:
        frames = read_frames(job["file"], max_side=job["max_side"])
        _, points = follow_face(frames, _WORKER["backend"], _WORKER["track"])
        row["face_share"] = float(np.isfinite(points[:, 0, 0]).mean())
        row.update(statistics_bank(frames, points, job["fps"]))
    except Exception as exc:  # one video without a face must not stop the others
        row["skipped"] = f"{type(exc).__name__}: {exc}"
    return row


def separation(values, labels) -> float:
    """max(AUC, 1 - AUC) of ``values`` for live (1) vs attack (0); NaN rows dropped."""
    from components.metrics.rates import auc

    v, y = np.asarray(values, dtype=np.float64), np.asarray(labels)
    ok = np.isfinite(v)
    if len(set(y[ok].tolist())) < 2:
        return float("nan")
    a = auc(v[ok], y[ok])
    return max(a, 1.0 - a)


def separations(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    from components.metrics.statistics import STATISTICS

    out = {}
    for s in STATISTICS:
        row = {}
        for a in (*ATTACKS, "all"):
            sub = df[(df["label"] == 1) | ((df["attack_type"] == a) if a != "all" else True)]
            row[a] = separation(sub[s], sub["label"])
        out[s] = row
    return out


def learned_separation(df: pd.DataFrame) -> dict[str, float]:
    """The nine together: ``learned_stats`` (components.metrics.statistics.LearnedStatistics, trained live vs all
    attacks) scored leave-one-subject-out; its AUC per attack type and vs all (not folded: below 0.5 is worse
    than chance). Not part of the verdict, which bounds single statistics."""
    from components.metrics.rates import auc
    from components.metrics.statistics import STATISTICS, LearnedStatistics

    score = np.zeros(len(df))
    for s in df["subject_id"].unique():
        held = (df["subject_id"] == s).to_numpy()
        model = LearnedStatistics().fit(df[~held][list(STATISTICS)].to_dict("records"), df[~held]["label"])
        score[held] = model.score(df[held][list(STATISTICS)].to_dict("records"))
    out = {}
    for a in (*ATTACKS, "all"):
        m = ((df["label"] == 1) | ((df["attack_type"] == a) if a != "all" else True)).to_numpy()
        out[a] = auc(score[m], df["label"].to_numpy()[m])
    return out


def table(seps: dict, df: pd.DataFrame, max_auc: float, head: str) -> tuple[str, bool]:
    cols = (*ATTACKS, "all")
    lines = [head, "", "| statistic | " + " | ".join(f"vs {c}" for c in cols) + " | live median | attack median |",
             "|---|" + "---:|" * (len(cols) + 2)]
    worst = 0.0
    for s, row in seps.items():
        worst = max(worst, *[v for v in row.values() if np.isfinite(v)])
        cells = " | ".join(f"**{row[c]:.2f}**" if row[c] > max_auc else f"{row[c]:.2f}" for c in cols)
        live, att = df.loc[df["label"] == 1, s].median(), df.loc[df["label"] == 0, s].median()
        lines.append(f"| {s} | {cells} | {live:.4g} | {att:.4g} |")
    misses = [f"{s} vs {c} ({row[c]:.2f})" for s, row in seps.items() for c in cols if row[c] > max_auc]
    ok = not misses
    lines += ["", (f"PASS: every statistic's separation <= {max_auc:.2f} (worst {worst:.2f})" if ok else
                   f"MISS: {len(misses)} separations > {max_auc:.2f}: " + ", ".join(misses))]
    return "\n".join(lines) + "\n", ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", default="realistic", help="generator preset (default realistic; default, hard)")
    ap.add_argument("--subjects", type=int, default=6, help="subjects (default 6: 72 live, 108 attack videos)")
    ap.add_argument("--lives-per-cell", type=int, default=2, help="live videos per subject, device and scene (2)")
    ap.add_argument("--attacks-per-cell", type=int, default=3, help="attack videos per subject, device and scene "
                                                                    "(3: one of each type)")
    ap.add_argument("--frames", type=int, default=40, help="frames per video (default 40)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", required=True, help="output folder: data/, statistics.csv, summary.json, table.md")
    ap.add_argument("--workers", type=int, default=2, help="processes generating and measuring (default 2)")
    ap.add_argument("--max-auc", type=float, default=0.70, help="the verdict's bound on every separation (0.70)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from components.config import load_params
    from components.runtime import progress_bar

    cfg = synth_config(args.setting, args.subjects, args.lives_per_cell, args.attacks_per_cell, args.frames,
                       args.seed)
    label = load_params(REPO / "params.yaml")["label"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = make_data(cfg, out, args.workers, not args.no_progress)
    gen_s = time.perf_counter() - t0
    jobs = [{"video_id": r.video_id, "file": str(out / "data" / r.path), "fps": cfg.fps, "max_side": label.max_side}
            for r in manifest.itertuples()]
    init = (label.backend, dict(label.backend_options), dict(label.track))
    bar = progress_bar(len(jobs), "statistics", unit="video", disable=args.no_progress)
    t1 = time.perf_counter()
    rows = measure_all(measure, jobs, init, args.workers, bar)
    bar.close()
    stat_s = time.perf_counter() - t1
    df = manifest[["video_id", "subject_id", "attack_type", "label", "device", "scene"]].merge(pd.DataFrame(rows), on="video_id")
    df.to_csv(out / "statistics.csv", index=False)
    skipped = df[df["skipped"] != ""]
    ok_df = df[df["skipped"] == ""].reset_index(drop=True)
    seps = separations(ok_df)
    counts = ok_df["attack_type"].value_counts()
    head = (f"Setting `{args.setting}`: {len(ok_df)} of {len(df)} videos ({', '.join(f'{k} {v}' for k, v in counts.items())}; "
            f"{args.subjects} subjects, {cfg.n_frames} frames at {cfg.fps:g} fps, temporal_only, seed {args.seed}); "
            f"{label.backend} face path; separation = max(AUC, 1 - AUC) of live vs attack. Generation "
            f"{gen_s:.0f} s, statistics {stat_s:.0f} s on {args.workers} workers.")
    text, ok = table(seps, ok_df, args.max_auc, head)
    learned = learned_separation(ok_df) if ok_df["subject_id"].nunique() > 1 else {}
    if learned:
        text += ("\nAll nine together (learned_stats, leave-one-subject-out AUC, not in the verdict): "
                 + ", ".join(f"vs {k} {v:.2f}" for k, v in learned.items()) + "\n")
    if len(skipped):
        text += f"\n{len(skipped)} skipped: " + "; ".join(f"{r.video_id} ({r.skipped})"
                                                          for r in skipped.head(5).itertuples()) + "\n"
    summary = {"setting": args.setting, "args": vars(args), "n_videos": int(len(df)), "n_used": int(len(ok_df)),
               "per_type": {k: int(v) for k, v in counts.items()}, "separations": seps, "max_auc": args.max_auc,
               "pass": ok, "learned_stats_auc": learned, "generate_s": gen_s, "statistics_s": stat_s,
               "medians": ok_df.groupby("attack_type")[list(seps)].median().to_dict("index")}
    write_report(out, summary, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
