"""Which clip window and crop should the temporal model read? Decided on **dev** identities only.

    python benchmarks/window_study.py --setting realistic --out OUT [--data-from DIR] [--configs base long16 ...]

Each configuration is the temporal benchmark (``components.benchmark.temporal``: same videos, same identity
split, the real labeling and training paths) with a different clip geometry or crop: ``base`` is today's default
(4 frames at interval 3, 0.4 s at 25 fps, 4 clips per video, crop 32); the others widen the window one clip spans
to more than a second, so a pulse period, a blink or slow parallax fits in one pass, or raise the crop. Every
configuration trains the ``eulernet`` row (first seed) and the ``learned_stats`` reference on the same clips.

Only dev figures are printed and written (``OUT/dev.json``, ``OUT/dev.md``): the choice is made here, and the
chosen configuration's test figure is opened once, by ``eulernet benchmark temporal`` with its flags (the line
the script prints last). ``--data-from`` reuses the videos of an earlier benchmark folder of the same setting
(linked, not copied). Figures, conditions and the decision: docs/training.md, "Clip window".
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.benchmark.temporal import SETTINGS  # noqa: E402  (a constant; the work is imported in main)

# name -> TemporalBenchmarkConfig overrides. Longer clips give fewer clips per video (the videos are 48 frames),
# so those runs train twice the epochs: about as many frames seen as ``base``.
CONFIGS: dict[str, dict] = {
    "base": {},
    "long8": {"clip_len": 8, "clip_interval": 3, "clips_per_video": 2, "epochs": 8},  # 0.9 s per clip
    "long16": {"clip_len": 16, "clip_interval": 3, "clips_per_video": 1, "epochs": 12},  # 1.8 s
    "long12x4": {"clip_len": 12, "clip_interval": 4, "clips_per_video": 1, "epochs": 12},  # 1.8 s, 6 Hz
    "crop64": {"crop_size": 64},
}


def dev_figures(score, label) -> dict[str, float]:
    """AUC and ACER at the EER threshold of one set of dev video scores (higher = live)."""
    from components.metrics.rates import auc, choose_threshold, error_rates

    th = choose_threshold(score, label, "eer")  # on dev itself, as the eulernet row's dev ACER
    return {"auc": float(auc(score, label)), "acer": float(error_rates(score, label, th)["acer"])}


def dev_row(name: str, over: dict, res: dict, refs: dict) -> dict:
    ls = dev_figures(refs["learned_stats"]["dev"]["score"], refs["learned_stats"]["dev"]["label"])
    return {"config": name, "overrides": over, "eulernet_dev_acer": res["dev_acer"], "eulernet_dev_auc": res["dev_auc"],
            "learned_stats_dev_auc": ls["auc"], "learned_stats_dev_acer": ls["acer"],
            "train_s": res["train_s"], "best_epoch": res["best_epoch"]}


POOLING = ("mean", "max", "min")  # how a video's clip scores become its score (the paper: mean)


def dev_pooling(checkpoint: str, shards: Path) -> dict[str, dict[str, float]]:
    """Dev AUC and ACER (at the dev EER threshold) of each pooling rule over the same model's dev clip scores."""
    from components.inference.predictor import Predictor
    from components.metrics.evaluate import score_split

    clips, _ = score_split(Predictor.from_checkpoint(checkpoint), shards, "dev")
    out = {}
    for rule in POOLING:
        v = clips.groupby("video_id").agg(score=("score", rule), label=("label", "first"))
        out[rule] = dev_figures(v["score"], v["label"])
    return out


def linked_data(data_from: str, want: dict) -> Path:
    """The ``data/`` folder of an earlier benchmark run, checked to hold the videos this study would generate:
    a mismatch would make the study regenerate into (and so overwrite) the other run's folder."""
    data = Path(data_from).resolve() / "data"
    stamp = data / "config.json"
    if not (stamp.is_file() and (data / "manifest.csv").is_file()):
        raise SystemExit(f"window_study: --data-from {data_from}: no finished benchmark data there "
                         f"(expected {stamp} and manifest.csv)")
    have = json.loads(stamp.read_text())
    if have != want:
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        raise SystemExit(f"window_study: --data-from {data_from} holds other videos (differs in {', '.join(diff)}); "
                         "nothing was linked")
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (one sub-folder per configuration; reruns reuse)")
    ap.add_argument("--setting", default="realistic", choices=SETTINGS,
                    help="generator preset, as eulernet benchmark temporal --setting (default realistic)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                    help="configurations to compare (default all): " + "; ".join(
                        f"{k}: {', '.join(f'{a}={b}' for a, b in v.items()) or 'today'}" for k, v in CONFIGS.items()))
    ap.add_argument("--data-from", help="an earlier benchmark folder of the same setting whose data/ to reuse")
    ap.add_argument("--seed", type=int, default=0, help="training seed of every configuration (default 0)")
    args = ap.parse_args(argv)

    from components.benchmark.temporal import TemporalBenchmarkConfig, clip_fps, label, make_data, train_row
    from components.benchmark.temporal_references import reference_videos
    from components.runtime import init_ray, tracking_uri

    out = Path(args.out).resolve()
    cfgs = {name: TemporalBenchmarkConfig(setting=args.setting, rows=("eulernet",), seeds=(args.seed,),
                                          **CONFIGS[name]) for name in args.configs}
    # Every configuration shares the generator settings (they differ in labeling and training only).
    source = linked_data(args.data_from, next(iter(cfgs.values())).data_dict()) if args.data_from else None
    rows = []
    init_ray()
    for name, cfg in cfgs.items():
        over = CONFIGS[name]
        sub = out / name
        sub.mkdir(parents=True, exist_ok=True)
        if source and not (sub / "data").exists():
            (sub / "data").symlink_to(source)
        t0 = time.perf_counter()
        manifest = make_data(cfg, sub, progress=False)
        label(cfg, sub, manifest, progress=False)
        refs = reference_videos(sub / "shards", clip_fps(cfg))
        res = train_row(cfg, "eulernet", args.seed, sub, tracking_uri(), log=lambda m: None)
        row = dev_row(name, over, res, refs)
        row["pooling"] = dev_pooling(res["checkpoint"], sub / "shards")
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        print(f"{name}: eulernet dev ACER {100 * row['eulernet_dev_acer']:.1f} %, AUC {row['eulernet_dev_auc']:.3f}; "
              f"learned_stats dev ACER {100 * row['learned_stats_dev_acer']:.1f} %, AUC "
              f"{row['learned_stats_dev_auc']:.3f}; pooling dev AUC "
              + ", ".join(f"{k} {v['auc']:.3f}" for k, v in row["pooling"].items())
              + f" ({row['wall_s']:.0f} s)", flush=True)
    (out / "dev.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [f"Clip window study, setting `{args.setting}`, seed {args.seed}: dev identities only", "",
             "| config | overrides | eulernet dev ACER (%) | dev AUC | dev AUC, clip pooling mean / max / min | "
             "learned_stats dev ACER (%) | dev AUC | train (s) |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        ov = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "-"
        lines.append(f"| {r['config']} | {ov} | {100 * r['eulernet_dev_acer']:.1f} | {r['eulernet_dev_auc']:.3f} | "
                     + " / ".join(f"{r['pooling'][k]['auc']:.3f}" for k in POOLING)
                     + f" | {100 * r['learned_stats_dev_acer']:.1f} | {r['learned_stats_dev_auc']:.3f} | {r['train_s']:.0f} |")
    (out / "dev.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    best = min(rows, key=lambda r: (r["eulernet_dev_acer"], -r["eulernet_dev_auc"]))
    flags = {"crop_size": "--crop", "clip_len": "--clip-len", "clip_interval": "--clip-interval",
             "clips_per_video": "--clips-per-video", "epochs": "--epochs"}
    cmd = " ".join(f"{flags[k]} {v}" for k, v in best["overrides"].items())
    print(f"lowest dev ACER: {best['config']}; its test figure: eulernet benchmark temporal --setting "
          f"{args.setting} --out DIR {cmd}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
