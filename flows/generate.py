"""`eulernet generate`: write a synthetic live/spoof video dataset (videos/ + manifest.csv) of N subjects.

The embedded sample in data/sample/ is made with this command and ``--preset sample_v1`` (the renderer and
identities it was made with; see docs/data.md for the exact line).
It is a tool, not a DVC stage: it is configured by its flags, not by params.yaml.
"""
from __future__ import annotations

import argparse
import sys

from flows.errors import StageError

HELP = "write a synthetic live/spoof video dataset (the embedded sample is made this way)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from components.data.profiles import DEVICES, SCENES
    from components.data.synthetic import ATTACKS, PRESETS, SPLIT_BY, SynthConfig, identity_names

    d = SynthConfig()
    parser.add_argument("--out", required=True, help="output folder (gets videos/ and manifest.csv)")
    parser.add_argument("--subjects", type=int, default=d.n_subjects, help="number of subjects")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--temporal-only", action="store_true",
                        help="live and attack frames look alike one at a time; they differ only over time")
    parser.add_argument("--devices", nargs="+", default=list(d.devices), choices=sorted(DEVICES), metavar="DEVICE",
                        help=f"device profiles (default {' '.join(d.devices)}; known: {', '.join(sorted(DEVICES))})")
    parser.add_argument("--scenes", nargs="+", default=list(d.scenes), choices=sorted(SCENES), metavar="SCENE",
                        help=f"scene profiles (default {' '.join(d.scenes)}; known: {', '.join(sorted(SCENES))})")
    parser.add_argument("--attacks", nargs="+", default=None, choices=ATTACKS, metavar="ATTACK",
                        help=f"attack types to rotate through (default all: {', '.join(ATTACKS)}; "
                             "with --temporal-only all but certificate)")
    parser.add_argument("--lives-per-cell", type=int, default=d.lives_per_cell,
                        help="live videos per subject per (device, scene)")
    parser.add_argument("--attacks-per-cell", type=int, default=d.attacks_per_cell,
                        help="attack videos per subject per (device, scene)")
    parser.add_argument("--frames", type=int, default=d.n_frames)
    parser.add_argument("--fps", type=float, default=d.fps)
    parser.add_argument("--size", type=int, nargs=2, default=list(d.size), metavar=("H", "W"),
                        help="base frame size before each device's scale")
    parser.add_argument("--split-ratio", type=int, nargs=3, default=list(d.split_ratio),
                        metavar=("TRAIN", "DEV", "TEST"),
                        help="subjects (or identities, with --split-by identity) per split, as a repeating pattern")
    parser.add_argument("--split-by", default=d.split_by, choices=SPLIT_BY,
                        help="subject: subjects rotate over splits (a person may recur in dev/test); identity: every "
                             "identity in one split, so dev/test people are never seen in training")
    parser.add_argument("--identities", nargs="+", default=None, choices=identity_names(), metavar="NAME",
                        help=f"identities to use, in order (default all: {' '.join(identity_names())})")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS),
                        help="named cue strengths: default (fixed strengths), hard (faint pulse, blur, strong JPEG), "
                             "realistic (renderer v3: per-video random effect strengths, mains flicker, exposure "
                             "drift, tremor, rolling shutter, H.264 on every capture), sample_v1 (the renderer and "
                             "identities that made data/sample/)")
    parser.add_argument("--workers", type=int, default=1,
                        help="render videos in this many processes (same bytes as 1)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from components.data.manifest import ManifestError
    from components.data.synthetic import SynthConfig, generate_dataset, preset

    attacks = args.attacks
    if attacks is None:
        # A card is a per-frame cue, so temporal-only data cannot contain certificate attacks.
        attacks = [a for a in SynthConfig().attack_types if not (args.temporal_only and a == "certificate")]
    try:
        overrides = preset(args.preset) if args.preset else {}
        if args.identities:
            overrides["identities"] = tuple(args.identities)
        cfg = SynthConfig(**overrides, n_subjects=args.subjects, devices=tuple(args.devices), scenes=tuple(args.scenes),
                          attack_types=tuple(attacks), lives_per_cell=args.lives_per_cell,
                          attacks_per_cell=args.attacks_per_cell, n_frames=args.frames, fps=args.fps,
                          size=tuple(args.size), seed=args.seed, temporal_only=args.temporal_only,
                          split_ratio=tuple(args.split_ratio), split_by=args.split_by)
        from components.data.synthetic import empty_splits

        if empty := empty_splits(cfg):  # fine for a smoke dataset, never silent
            print(f"eulernet generate: warning: --subjects {cfg.n_subjects} with --split-ratio "
                  f"{' '.join(map(str, cfg.split_ratio))} (by {cfg.split_by}) leaves {', '.join(empty)} empty; "
                  "`eulernet train` needs a dev split (threshold) and evaluation a test split: add subjects or "
                  "change the ratio", file=sys.stderr)
        df = generate_dataset(args.out, cfg, progress=not args.no_progress, workers=args.workers)
    except (ValueError, ManifestError, OSError) as exc:
        raise StageError(exc) from None
    summary = df.groupby(["split", "attack_type"]).size().unstack(fill_value=0)
    print(f"wrote {len(df)} videos of {df['subject_id'].nunique()} subjects to {args.out}")
    print(summary.to_string())
    return 0
