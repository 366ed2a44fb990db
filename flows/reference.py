"""`eulernet reference --data DIR`: train the shipped reference model on real recordings, with honest figures.

EulerNet plus a video head (components/inference/video_head.py) trained on the videos of a real-world folder
(DIR/manifest.csv, as `eulernet benchmark realworld` reads it) and a held still of every live one; every figure
it prints is leave-one-source-out (components/benchmark/reference.py). Writes OUT/checkpoint.pt, OUT/loso.json,
OUT/scores.csv and OUT/table.md; OUT defaults to models/reference, the DVC-tracked shipped model
(`dvc add models/reference && dvc push` publishes a new one; docs/model-card.md says what the shipped one is).
"""
from __future__ import annotations

import argparse

from flows.errors import StageError

HELP = "train the reference model (EulerNet + video head) on real recordings, figures leave-one-source-out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from components.benchmark.reference import ReferenceConfig

    d = ReferenceConfig()
    parser.add_argument("--data", required=True, help="folder with manifest.csv (path, label, attack_type, source)")
    parser.add_argument("--out", default="models/reference", help="where the model and its figures go "
                                                                  "(default models/reference, the shipped one)")
    parser.add_argument("--work", default="artifacts/reference", help="scratch folder (held stills are reused)")
    parser.add_argument("--crop", type=int, default=d.crop_size, help=f"crop side in pixels (default {d.crop_size})")
    parser.add_argument("--clips", type=int, default=d.clips_per_video,
                        help=f"clips per video (default {d.clips_per_video}, what the endpoint scores)")
    parser.add_argument("--clip-len", type=int, default=d.clip_len,
                        help=f"frames per clip, 3 frames apart (default {d.clip_len}; 16 spans 1.5 s at 30 fps)")
    parser.add_argument("--face-fraction", type=float, default=d.face_fraction,
                        help=f"share of the crop the face fills (default {d.face_fraction}); less keeps more of "
                             "what surrounds the face (a screen's or a sheet's edge, the hand)")
    parser.add_argument("--max-seconds", type=float, default=d.max_seconds,
                        help=f"scored window: the clips are spread over each video's first MAX_SECONDS "
                             f"(default {d.max_seconds:g}); the model carries it, so serving decodes no further")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"training steps per fit (default {d.steps})")
    parser.add_argument("--features", nargs="+", default=list(d.features),
                        help=f"video head features (default {' '.join(d.features)})")
    parser.add_argument("--train-types", nargs="+", default=list(d.train_types or []) or None,
                        help=f"attack types EulerNet trains on (default {' '.join(d.train_types or ['all'])}; "
                             f"the video head always sees all); 'all' for every type")
    parser.add_argument("--bpcer-target", type=float, default=d.bpcer_target,
                        help=f"share of live videos the threshold may reject (default {d.bpcer_target})")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--backend", default=d.backend,
                        help=f"face detector of the face path, carried in the model (default {d.backend}; yunet: "
                             "the vendored YuNet, 3-7x faster detection)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from components.benchmark.reference import ReferenceConfig, train_reference
    from components.runtime import header

    try:
        cfg = ReferenceConfig(crop_size=args.crop, clips_per_video=args.clips, clip_len=args.clip_len,
                              face_fraction=args.face_fraction, steps=args.steps, max_seconds=args.max_seconds,
                              features=tuple(args.features), bpcer_target=args.bpcer_target, seed=args.seed,
                              backend=args.backend,
                              train_types=None if not args.train_types or args.train_types == ["all"]
                              else tuple(args.train_types))
    except ValueError as exc:
        raise StageError(exc) from None
    header("reference", f"{args.data} -> {args.out}")
    try:
        summary = train_reference(args.data, args.out, args.work, cfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        raise StageError(exc) from None
    print((Path(args.out) / "table.md").read_text())
    print(f"model: {Path(args.out) / 'checkpoint.pt'} (threshold {summary['threshold']:.3f}); "
          f"figures: {Path(args.out) / 'loso.json'} ({summary['wall_s'] / 60:.1f} min)")
    return 0
