"""`eulernet benchmark temporal|realworld --out DIR`: the held-out temporal benchmark and the real-world one.

`realworld --data DIR`: real recordings listed in DIR/manifest.csv scored through the one Predictor, with
intervals by source, held stills of the live videos (`--held-stills`) and a peer (`--peer-dir`);
components/benchmark/realworld.py. docs/evaluation.md quotes its figures.

`temporal`:
Generates temporal-only synthetic videos with identity-disjoint splits, labels them (Ray Data), trains the
default EulerNet over three seeds plus the paper and single-frame rows (Ray Train, tracked in MLflow), scores
two non-learned references, and writes DIR/summary.json and DIR/table.md. Rerunning with the same DIR reuses
every finished step. Details and figures: docs/training.md, "Temporal benchmark".
"""
from __future__ import annotations

import argparse

from flows.errors import StageError

HELP = ("held-out temporal benchmark (generate, label, train, evaluate) or the real-world one (score real "
        "recordings); writes summary.json and table.md")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from components.benchmark.realworld import STILL_SECONDS
    from components.benchmark.temporal import MODEL_ROWS, SETTINGS, TemporalBenchmarkConfig

    d = TemporalBenchmarkConfig()
    parser.add_argument("suite", choices=["temporal", "realworld"],
                        help="temporal: synthetic, identity-disjoint, trains its rows; realworld: scores real "
                             "recordings listed in --data/manifest.csv with a trained model")
    parser.add_argument("--out", required=True, help="output folder; a rerun with the same folder reuses finished steps")
    real = parser.add_argument_group("realworld")
    real.add_argument("--data", help="folder with manifest.csv (path, label, attack_type, source; path relative to "
                                     "the folder) and the videos")
    src = real.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a Predictor checkpoint (default: the shipped reference model, "
                                          "models/reference/checkpoint.pt)")
    src.add_argument("--model", help="a registered model, models:/<name>@<alias> or models:/<name>/<version>")
    real.add_argument("--held-stills", action="store_true",
                      help="add a held still of one frame of each live video (attack type live_still): same "
                           "face and pixels, only time differs")
    real.add_argument("--still-tilt", type=float, default=0.0, metavar="DEG",
                      help="turn each held still's sheet out of its plane by DEG degrees RMS (pitch and yaw, "
                           "seen in perspective), as a hand holds a print; default 0: parallel to the lens")
    real.add_argument("--still-bend", type=float, default=0.0, metavar="SHARE",
                      help="bow each held still's sheet by SHARE of its width (0-0.3; 0.05: a 10-cm print bowed "
                           "5 mm), flexing with the hand, as a print held by its edges; default 0: flat")
    real.add_argument("--still-seconds", type=float, default=STILL_SECONDS, metavar="S",
                      help=f"length of each held still (1-60 s; default {STILL_SECONDS:g}, a phone's liveness check); "
                           "set it to --max-seconds to compare stills and live videos over the same span")
    real.add_argument("--downscale", type=float, default=1.0, metavar="F",
                      help="resize every decoded frame by F (0.1-1) before the face path reads it: the same "
                           "videos from a lower-resolution camera or a face farther away (default 1)")
    real.add_argument("--peer-dir", help="a Silent-Face-Anti-Spoofing checkout: its own code scores the same "
                                         "videos, side by side (summary 'peer')")
    real.add_argument("--max-seconds", type=float, default=None, help="scored window per video (default 10)")
    temporal = parser.add_argument_group("temporal")
    temporal.add_argument("--setting", choices=SETTINGS, default=None,
                        help=f"generator preset: default (fixed cue strengths: one hand statistic gives each attack away), hard (faint pulse, blur, "
                             f"stronger compression) or realistic (renderer v3: flicker, drift, tremor, rolling "
                             f"shutter and H.264 on every capture; no single hand statistic separates the classes); "
                             f"default {d.setting!r}")
    temporal.add_argument("--seeds", type=int, nargs="+", default=None,
                        help=f"seeds of the eulernet row (default {' '.join(map(str, d.seeds))}; --quick: 0)")
    temporal.add_argument("--control-seeds", type=int, nargs="+", default=None,
                        help=f"seeds of the paper and single_frame rows (default {' '.join(map(str, d.control_seeds))})")
    temporal.add_argument("--rows", nargs="+", choices=MODEL_ROWS, default=None,
                        help=f"learned rows to run (default {' '.join(d.rows)})")
    temporal.add_argument("--subjects", type=int, help=f"subjects (default {d.n_subjects})")
    temporal.add_argument("--epochs", type=int, help=f"training epochs per run (default {d.epochs})")
    temporal.add_argument("--face-path", choices=["detect", "track"], default=None,
                        help=f"how labeling finds faces: detect on every sampled frame, or track between a few "
                             f"detections (default {d.face_path})")
    temporal.add_argument("--crop", type=int, default=None,
                          help=f"face crop side in pixels, a multiple of 8 (default {d.crop_size})")
    temporal.add_argument("--clip-len", type=int, default=None,
                          help=f"frames per clip (default {d.clip_len}); with --clip-interval it sets the window "
                               f"one clip spans")
    temporal.add_argument("--clip-interval", type=int, default=None,
                          help=f"frames between a clip's frames (default {d.clip_interval})")
    temporal.add_argument("--clips-per-video", type=int, default=None,
                          help=f"clips labeled and scored per video (default {d.clips_per_video})")
    temporal.add_argument("--folds", type=int, default=None,
                          help="leave-identities-out folds over all identities (4 for the default 2:1:1 split): "
                               "each identity tested once by a model that never saw it, figures pooled; first "
                               "seed of each row")
    temporal.add_argument("--quick", action="store_true",
                        help="smoke size (a few minutes; too few test videos for the figures to mean anything)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    if args.suite == "realworld":
        return run_realworld(args)
    from components.benchmark.temporal import TemporalBenchmarkConfig, run_benchmark
    from components.runtime import init_ray, tracking_uri

    # Only what was given overrides the chosen size (so --quick keeps its own seeds and sizes).
    given = {"setting": args.setting, "seeds": args.seeds, "control_seeds": args.control_seeds, "rows": args.rows,
             "n_subjects": args.subjects, "epochs": args.epochs, "face_path": args.face_path, "folds": args.folds,
             "crop_size": args.crop, "clip_len": args.clip_len, "clip_interval": args.clip_interval,
             "clips_per_video": args.clips_per_video}
    over = {k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items() if v is not None}
    try:
        cfg = TemporalBenchmarkConfig.quick(**over) if args.quick else TemporalBenchmarkConfig(**over)
    except (TypeError, ValueError) as exc:
        raise StageError(exc) from None

    init_ray()
    try:
        summary = run_benchmark(cfg, args.out, tracking_uri=tracking_uri(), progress=not args.no_progress)
    except ValueError as exc:
        raise StageError(exc) from None
    from pathlib import Path

    print((Path(args.out) / "table.md").read_text())
    print(f"summary: {Path(args.out) / 'summary.json'} ({summary['wall_s'] / 60:.1f} min)")
    return 0


def run_realworld(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    from components.benchmark.realworld import STILL_SECONDS, RealworldConfig, run_realworld
    from components.inference.config import CheckpointError
    from components.registry.versions import RegistryError

    if not args.data:
        raise StageError("--data DIR is required (a folder with manifest.csv)", command="benchmark realworld")
    try:
        if not (args.checkpoint or args.model):  # the default: the shipped reference model
            from components.runtime import reference_checkpoint

            args.checkpoint = reference_checkpoint()
        if (args.still_tilt or args.still_bend or args.still_seconds != STILL_SECONDS) and not args.held_stills:
            raise ValueError("--still-tilt, --still-bend and --still-seconds change the held stills: add "
                             "--held-stills")
        cfg = RealworldConfig(held_stills=args.held_stills, still_tilt_deg=args.still_tilt,
                              still_bend=args.still_bend, still_seconds=args.still_seconds,
                              downscale=args.downscale,
                              **({"max_seconds": args.max_seconds} if args.max_seconds else {}))
        from flows.predict import load_predictor

        predictor, info = load_predictor(args.checkpoint, args.model)
        name = str(args.checkpoint) if args.checkpoint else f"models:/{info['name']}/{info['version']}"
        summary = run_realworld(predictor, args.data, args.out, cfg, name, peer_dir=args.peer_dir,
                                progress=not args.no_progress)
    except (ValueError, CheckpointError, FileNotFoundError, RegistryError, MlflowException, RuntimeError) as exc:
        raise StageError(exc, command="benchmark realworld") from None
    print((Path(args.out) / "table.md").read_text())
    print(f"summary: {Path(args.out) / 'summary.json'} ({summary['wall_s']:.0f} s)")
    return 0
