"""`eulernet monitor`: served requests (the replicas' request log) against the training videos -> artifacts/monitor/.

Measures the manifest's training videos as serving measures each request (frame size, rate, face size,
brightness), validates the window of logged requests against their spread with Great Expectations, and writes
drift.json, drift.png and GE Data Docs (data_docs/index.html). Exit 0 when the window looks like training, 1 when it
does not (naming each column and the share of requests outside), 2 on bad input (no log, no manifest).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from flows.args import manifest_option, params_option
from flows.errors import StageError

HELP = "check logged requests against the training videos' profile (drift report, exit 1 on drift)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    params_option(parser, "monitor")
    manifest_option(parser)
    parser.add_argument("--log", default=None,
                        help="request log folder (or one file); default: serve.request_log_dir of --params")
    parser.add_argument("--since", default=None,
                        help="window start: a duration back from now (30m, 6h, 2d) or an ISO time; "
                             "default: monitor.since of --params")
    parser.add_argument("--until", default=None, help="window end (ISO time); default: now")
    parser.add_argument("--split", default="train", help="manifest split the profile is measured on")
    parser.add_argument("--out", default="artifacts/monitor", help="folder for drift.json, drift.png, data_docs/")


def _training_profile(manifest: str, split: str, cfg, label):
    """The profile table of the manifest's ``split`` videos (one row each); unreadable ones skipped, named."""
    import pandas as pd

    from components.data.requests import video_record
    from components.face.landmarks import make_backend
    from components.runtime import progress_bar

    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    if "path" not in df or "split" not in df:
        raise ValueError(f"{manifest} has no 'path'/'split' columns (run `eulernet ingest` first)")
    paths = df.loc[df["split"] == split, "path"].tolist()
    if not paths:
        raise ValueError(f"{manifest} has no '{split}' videos to measure the training profile on")
    backend = make_backend(label.backend, **label.backend_options)  # the face path the shards were cut with

    def find_box(frame):
        faces = backend.detect(frame)
        return faces[0].box if faces else None

    rows, skipped = [], []
    bar = progress_bar(len(paths), "profile", unit="video", delay=1.0)
    for p in paths:
        try:
            rows.append(video_record(p, label.max_side, find_box, cfg.profile_frames))
        except (ValueError, OSError) as exc:
            skipped.append(f"{p}: {exc}")
        bar.update(1)
    bar.close()
    for s in skipped:
        print(f"eulernet monitor: skipped training video {s}")
    return pd.DataFrame(rows)


def run(args: argparse.Namespace) -> int:
    from components.config import ConfigError, load_section
    from components.data.requests import parse_since, read_records
    from components.quality.drift import MonitorConfig, check_window, plot_drift
    from components.runtime import header
    from components.serving.config import ServeConfig

    try:
        cfg = load_section(MonitorConfig, "monitor", args.params)
        serve_cfg = load_section(ServeConfig, "serve", args.params)
        log = args.log or serve_cfg.request_log_dir
        if not log:
            raise ValueError("no request log: serve.request_log_dir is empty (logging off) and --log was not given")
        since = parse_since(args.since or cfg.since)
        until = parse_since(args.until) if args.until else None
        header("monitor", f"requests in {log} since {since.isoformat(timespec='seconds')} against the "
                          f"'{args.split}' videos of {args.manifest} -> {args.out}")
        window, bad = read_records(log, since, until)
        if bad:
            print(f"eulernet monitor: skipped {bad} log line(s) that are not request records")
        if not Path(args.manifest).is_file():
            raise FileNotFoundError(f"{args.manifest} not found (run `eulernet ingest` or `dvc repro` first)")
        # Training videos are measured at the size a request is decoded at (labeling's, the checkpoint's).
        from components.labeling.config import LabelConfig

        profile = _training_profile(args.manifest, args.split, cfg, load_section(LabelConfig, "label", args.params))
        out = Path(args.out)
        report = check_window(window, profile, cfg, docs_dir=out / "data_docs")
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise StageError(exc) from None
    from components.files import write_json

    write_json(out / "drift.json", {**report.to_json(), "log": str(log), "since": since.isoformat(),
                                    "until": until.isoformat() if until else None, "manifest": args.manifest})
    plot_drift(window, profile, report.bounds, out / "drift.png")
    print(f"{'LIKE TRAINING' if report.success else 'DRIFT'}: {report.n_requests} requests vs "
          f"{report.n_training_videos} training videos")
    for c, (lo, hi) in report.bounds.items():
        share = report.outside.get(c)
        print(f"  {c:<14} bounds {lo:9.2f} .. {hi:9.2f}   outside: "
              f"{'n/a' if share is None else f'{100 * share:.0f} %'}")
    print(f"report: {out / 'drift.json'}, {out / 'drift.png'}, Data Docs: {out / 'data_docs' / 'index.html'}")
    if not report.success:
        raise StageError("\n  - ".join([f"{len(report.failures)} expectation(s) failed:", *report.failures]), code=1)
    return 0
