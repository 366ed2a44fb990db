"""Data pipeline speed: synthetic rendering per attack type, dataset writing, ingest and the GE gates.

Run from the repository root: `.venv/bin/python benchmarks/data_pipeline.py`. Prints one table.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def timed(fn, repeat: int = 1):
    t = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t) / repeat, out


def main() -> None:
    import pandas as pd

    from components.data.adapters import from_sample
    from components.data.synthetic import ATTACKS, SynthConfig, generate_dataset, render_video
    from components.quality.gates import GateConfig, run_gates

    cfg = SynthConfig()
    rows = []
    render_video(0, "live", "iphone_12", "indoor", cfg)  # warm the source-image cache
    for kind in ("live",) + ATTACKS:
        s, frames = timed(lambda kind=kind: render_video(1, kind, "iphone_12", "indoor", cfg), repeat=3)
        rows.append((f"render {kind} ({frames.shape[0]}x{frames.shape[1]}x{frames.shape[2]})", s, "s/video"))
    with tempfile.TemporaryDirectory() as tmp:
        small = SynthConfig(n_subjects=1)
        s, df = timed(lambda: generate_dataset(Path(tmp) / "d", small, progress=False))
        rows.append((f"generate_dataset, {len(df)} videos incl. mp4 encoding", s / len(df), "s/video"))
        size = sum(p.stat().st_size for p in (Path(tmp) / "d" / "videos").iterdir()) / len(df) / 1024
        rows.append(("mp4 size", size, "KiB/video"))
    s, sample = timed(lambda: from_sample("data/sample"))
    rows.append((f"ingest (from_sample, {len(sample)} videos)", s, "s"))
    import great_expectations  # noqa: F401  (import cost reported separately)

    params = {"devices": ["android_lowend", "android_midrange", "iphone_12"], "scenes": ["indoor", "outdoor"],
              "device_share": [0.15, 0.6], "scene_share": [0.2, 0.8], "min_per_cell": 3}
    s, rep = timed(lambda: run_gates(sample, GateConfig(**params, check_videos=False)))
    rows.append((f"gates, manifest only ({len(rep.results)} expectations)", s, "s"))
    s, rep = timed(lambda: run_gates(sample, GateConfig(**params)))
    rows.append((f"gates with decode + sha256 ({len(rep.results)} expectations, success={rep.success})", s, "s"))
    with tempfile.TemporaryDirectory() as tmp:
        s, _ = timed(lambda: run_gates(sample, GateConfig(**params), docs_dir=Path(tmp) / "docs"))
        rows.append(("gates + Data Docs HTML", s, "s"))
    print(pd.DataFrame(rows, columns=["step", "value", "unit"]).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
