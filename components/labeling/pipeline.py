"""Labeling at scale: manifest -> Ray Data ``map_batches`` (one landmark model per actor) -> Parquet shards.

Two folders (the same one unless ``cache_dir`` is given; the label stage gives it, see below):

The cache (``cache_dir``; with a ``storage`` location its Parquet files live at ``<storage>/shards/data/<run>/``
instead, e.g. ``s3://bucket/prefix/shards/...``, and the ledger stays local):
- ``data/<run>/<cache key>.parquet`` — one row per clip (schema in shards.py), written by the labeling actors
  (one file per batch of videos); a video that fails
  leaves one marker row (``clip_index == -1``, ``status == "skipped"``) so its reason travels with the data;
- ``ledger.csv`` — every content key ever labeled here: status, reason, clip count and the shard files holding it
  (paths relative to ``cache_dir``, or absolute paths / URIs when the shards live elsewhere).

The output (``out_dir``), what ``shards.read_shards`` reads:
- ``index.csv`` — the current manifest's videos with their key and files (video paths as the manifest gives them,
  relative to the current directory when inside it);
- ``report.csv`` — per current video: ok | skipped, reason, detail, clips made, frames without a face;
- ``clips/<split>-<n>.parquet`` (only with a separate ``cache_dir``) — the current manifest's clips copied out of
  the cache in a fixed order (split, video_id, clip index), metadata from the current manifest, no timing column;
  with a storage URI they go to ``<storage>/shards/sets/<content hash>/`` instead.

With a separate cache the output is a function of (manifest, config, labeling code) alone, byte for byte: the
label stage is a reproducible DVC stage (the same ``dvc.lock`` hash on every run and clone; DVC 3 keeps no
run-cache for stages with ``cache: false`` outputs, so it is this ledger, not DVC, that skips work already done),
while the cache keeps what was ever labeled
(machine-local, outside the DVC output: it depends on history, holds run times and Ray's file names).

Content-addressed cache: key = sha256(video bytes, labeling config, labeling code). A re-run labels only keys
missing from the ledger, so adding videos to the manifest labels only those; changing the config relabels everything. Manifest
metadata (split, label, ...) is not part of the key: readers take it from the current index, so re-splitting
does not relabel.

Nothing here assumes the driver's disk is visible to the Ray workers once ``storage`` is a URI: the driver copies
each local video once to ``<storage>/videos/<sha256>/<name>`` (content-addressed, so re-runs upload nothing),
the workers read it from there and write the shards there, and the driver lists and reads them back through
pyarrow filesystems. Without ``storage`` (single machine, or a shared mount) workers open the local paths.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from components.data.digest import DigestTable
from components.data.manifest import META_COLUMNS
from components.files import write_csv, write_json

from .clips import LabelingError, extract_clips
from .landmarks import BACKENDS, make_backend
from .shards import is_uri, join, storage_fs
from .tracking import face_path_errors

LABEL_FORMAT = 1  # bump when the row content changes for the same config, to invalidate caches
TENSOR_COLUMNS = ["frames", "location_map", "binary_mask", "depth_map", "points"]
LEDGER_COLUMNS = ["cache_key", "status", "reason", "detail", "clips", "frames_no_face", "max_faces", "n_frames",
                  "files", "run"]
REPORT_COLUMNS = ["video_id", "status", "reason", "detail", "clips", "frames_no_face", "max_faces", "cache_key"]
# Exported clip files: the cache's columns minus the labeling time (a wall-clock figure has no place in an output
# whose hash must not change between runs), in this order.
EXPORT_COLUMNS = ["cache_key", *META_COLUMNS, "clip_index", "start_frame", "status", "reason", "detail",
                  "frames_no_face", "max_faces", "n_frames", *TENSOR_COLUMNS]
EXPORT_DIR = "clips"
EXPORT_FILE_BYTES = 64 << 20  # clips per exported file: about this many bytes of tensors (whole videos per file)
SPLIT_ORDER = ("train", "dev", "test")


@dataclass(frozen=True)
class LabelConfig:
    # Keys that change how fast labeling runs, never the labels: left out of the cache fingerprint, of
    # label_config.json and of the label stage's DVC params, so tuning them relabels nothing.
    SPEED_ONLY: ClassVar[frozenset[str]] = frozenset({"concurrency", "batch_size", "num_cpus_per_worker"})

    backend: str = "dlib"  # dlib (offline default) | face_alignment
    backend_options: dict[str, Any] = field(default_factory=dict)  # passed to the backend, e.g. {landmarks: 3d}
    crop_size: int = 256  # face crop side; label maps are crop_size // 8
    face_fraction: float = 0.75  # share of the crop side the landmarks' extent fills
    clip_len: int = 4
    clip_interval: int = 3
    clips_per_video: int | None = 8  # None: every non-overlapping clip
    max_side: int | None = 640  # downscale decoded frames so their longer side is at most this (memory, speed)
    max_frames: int | None = None  # decode at most this many frames per video
    allow_multiple_faces: bool = False  # False: a video with two comparable faces is skipped (multiple_faces)
    depth_source: str = "auto"  # auto (backend 3D landmarks if any, else template) | template | backend
    face_path: str = "detect"  # detect: every sampled frame | track: a few full detections, followed between
    track: dict[str, Any] = field(default_factory=dict)  # TrackConfig options for face_path track
    concurrency: int = 2  # Ray Data actors, each holding one landmark model
    batch_size: int = 4  # videos per map_batches call: Ray Data costs per task, labeling per video
    num_cpus_per_worker: float = 1.0

    def __post_init__(self):
        errors = []
        if self.backend not in BACKENDS:
            errors.append(f"backend must be one of {sorted(BACKENDS)}, got {self.backend!r}")
        if not isinstance(self.backend_options, dict):
            errors.append("backend_options must be a mapping")
        if self.crop_size < 32 or self.crop_size % 8:
            errors.append(f"crop_size must be a multiple of 8 and >= 32 (label maps are crop_size // 8), "
                          f"got {self.crop_size}")
        if not 0.1 <= self.face_fraction <= 1.0:
            errors.append(f"face_fraction must be in [0.1, 1], got {self.face_fraction}")
        if self.clip_len < 2 or self.clip_interval < 1:
            errors.append(f"clip_len must be >= 2 (EulerNet reads change between frames) and clip_interval >= 1, "
                          f"got {self.clip_len}, {self.clip_interval}")
        if self.clips_per_video is not None and self.clips_per_video < 1:
            errors.append(f"clips_per_video must be >= 1 or null, got {self.clips_per_video}")
        if self.max_side is not None and self.max_side < 64:
            errors.append(f"max_side must be >= 64 or null, got {self.max_side}")
        if self.max_frames is not None and self.max_frames < 1:
            errors.append(f"max_frames must be >= 1 or null, got {self.max_frames}")
        if self.depth_source not in ("auto", "template", "backend"):
            errors.append(f"depth_source must be auto, template or backend, got {self.depth_source!r}")
        if self.depth_source == "backend" and not (self.backend == "face_alignment"
                                                   and self.backend_options.get("landmarks") == "3d"):
            errors.append("depth_source 'backend' needs backend face_alignment with backend_options.landmarks: 3d")
        errors += face_path_errors(self.face_path, self.track)
        if self.concurrency < 1 or self.batch_size < 1:
            errors.append(f"concurrency and batch_size must be >= 1, got {self.concurrency}, {self.batch_size}")
        if self.num_cpus_per_worker <= 0:
            errors.append(f"num_cpus_per_worker must be > 0, got {self.num_cpus_per_worker}")
        if errors:
            raise ValueError("invalid label config: " + "; ".join(errors))

    @property
    def map_size(self) -> int:
        return self.crop_size // 8

    def fingerprint(self) -> str:
        """Hash of the settings that change the labels (not the ones that only change speed)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.SPEED_ONLY}
        d["format"] = LABEL_FORMAT
        d["code"] = labeling_code_version()
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class LabelReport:
    report: pd.DataFrame  # per current video: video_id, status, reason, detail, clips, ..., cached (this run only)
    n_new: int  # videos labeled by this run
    n_cached: int  # videos whose labels were already in the cache
    out_dir: Path

    @property
    def n_ok(self) -> int:
        return int((self.report["status"] == "ok").sum())

    @property
    def n_skipped(self) -> int:
        return int((self.report["status"] != "ok").sum())

    @property
    def n_clips(self) -> int:
        return int(self.report["clips"].sum())

    def summary(self) -> str:
        lines = [f"{len(self.report)} videos: {self.n_ok} ok, {self.n_skipped} skipped, {self.n_clips} clips "
                 f"({self.n_new} labeled now, {self.n_cached} from cache) -> {self.out_dir}"]
        skipped = self.report[self.report["status"] != "ok"]
        for reason, group in skipped.groupby("reason"):
            ids = ", ".join(group["video_id"].astype(str).head(5)) + (" ..." if len(group) > 5 else "")
            lines.append(f"  skipped ({reason}): {len(group)} [{ids}]")
        return "\n".join(lines)


LABEL_CONFIG_FILE = "label_config.json"
# The code that decodes, finds faces, crops and draws labels: a change to any of these relabels (cache keys
# change). Row-layout changes in this file bump LABEL_FORMAT instead, so progress or I/O edits keep the cache.
LABEL_CODE = ("components/data/video.py", "components/data/clips.py", "components/labeling/clips.py",
              "components/labeling/crop.py", "components/labeling/landmarks.py", "components/labeling/maps.py",
              "components/labeling/tracking.py")


@functools.lru_cache(maxsize=1)
def labeling_code_version() -> str:
    """sha256 over the source of ``LABEL_CODE``: the decode/crop/label code version in every cache key."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for rel in LABEL_CODE:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def write_label_config(out_dir: str | Path, cfg: LabelConfig) -> Path:
    """Record how these shards were cut beside them: training reads it back, so the landmark and clip settings
    reach the checkpoint (and serving) from the data itself, whoever calls ``fit``."""
    return write_json(Path(out_dir) / LABEL_CONFIG_FILE,
                      {k: v for k, v in dataclasses.asdict(cfg).items() if k not in cfg.SPEED_ONLY})


def read_label_config(out_dir: str | Path) -> LabelConfig | None:
    """The LabelConfig the shards in ``out_dir`` were made with, or None for shards written without one."""
    path = Path(out_dir) / LABEL_CONFIG_FILE
    if not path.is_file():
        return None
    return LabelConfig(**json.loads(path.read_text()))


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a local file or of a storage URI's object."""
    h = hashlib.sha256()
    fs, p = storage_fs(path)
    with fs.open_input_stream(p) as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _stage_videos(paths: list[str], digests: list[str], storage: str) -> list[str]:
    """Local videos -> ``<storage>/videos/<digest>/<name>`` URIs the workers can read from any node.

    Content-addressed: an object already there is not uploaded again. The name is kept so that a decode
    error still names the user's file.
    """
    import pyarrow.fs as pafs

    out = []
    for path, digest in zip(paths, digests):
        if is_uri(path):
            out.append(path)
            continue
        dest = join(storage, "videos", digest, Path(path).name)
        fs, dpath = storage_fs(dest)
        if fs.get_file_info(dpath).type == pafs.FileType.NotFound:
            fs.create_dir(dpath.rsplit("/", 1)[0], recursive=True)
            pafs.copy_files(path, dpath, destination_filesystem=fs)
        out.append(dest)
    return out


def cache_key(video_digest: str, cfg: LabelConfig) -> str:
    return hashlib.sha256(f"{video_digest}:{cfg.fingerprint()}".encode()).hexdigest()[:32]


class LabelWorker:
    """Ray Data callable class: builds the landmark backend once, then labels a batch of manifest rows.

    Usable without Ray too (``LabelWorker(cfg)(df)``): the benchmark's plain-process baseline calls it directly.
    Every error of one video becomes its marker row; nothing raised here would be worth failing the stage for.
    """

    def __init__(self, cfg: LabelConfig, progress: Any = None, out_dir: str | None = None):
        import cv2

        # One OpenCV/BLAS thread per worker: parallelism comes from Ray actors. Ray already sets OMP_NUM_THREADS=1
        # for a 1-CPU actor; outside Ray (plain loop, notebooks) OpenBLAS threads spin on the tiny least-squares
        # fits of the depth template and cost ~40% more CPU under load (measured).
        cv2.setNumThreads(1)
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(1)
        except ImportError:
            pass
        self.cfg = cfg
        self.progress = progress  # a _Progress actor handle: the driver's bar counts videos as they finish
        self.out_dir = out_dir  # set: each batch is written here as one Parquet file, and only its status returned
        if out_dir is not None:
            self._fs, self._base = storage_fs(out_dir)
            self._fs.create_dir(self._base, recursive=True)
        self.backend = make_backend(cfg.backend, **cfg.backend_options)

    def _read(self, path: str) -> np.ndarray:
        from components.data.video import read_frames

        cfg = self.cfg
        if not is_uri(path):
            return read_frames(path, max_frames=cfg.max_frames, max_side=cfg.max_side)
        import tempfile

        import pyarrow.fs as pafs

        # OpenCV decodes files, not streams: a stored video is copied to this worker's temp space first.
        fs, src = storage_fs(path)
        with tempfile.TemporaryDirectory(prefix="eulernet-video-") as tmp:
            local = Path(tmp) / src.rsplit("/", 1)[-1]
            pafs.copy_files(src, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
            return read_frames(local, max_frames=cfg.max_frames, max_side=cfg.max_side)

    def label_one(self, row) -> tuple[dict[str, list], int]:
        from components.data.video import VideoError

        from .maps import binary_mask, depth_map, location_map

        cfg = self.cfg
        out = {k: [] for k in ("clip_index", "start_frame", "frames", "location_map", "binary_mask", "depth_map",
                               "points")}
        try:
            frames = self._read(row["path"])  # (F, H, W, 3)
            clips = extract_clips(frames, self.backend, cfg.crop_size, cfg.clip_len, cfg.clip_interval,
                                  cfg.clips_per_video, allow_multiple=cfg.allow_multiple_faces,
                                  face_fraction=cfg.face_fraction, face_path=cfg.face_path, track=cfg.track)
        except (VideoError, LabelingError) as exc:
            return {"status": "skipped", "reason": exc.reason, "detail": exc.detail[:500]}, 0
        except Exception as exc:  # a decoder or backend failure on one video must not stop the others
            return {"status": "skipped", "reason": "error", "detail": f"{type(exc).__name__}: {exc}"[:500]}, 0
        live = int(row["label"]) == 1
        use_3d = cfg.depth_source != "template" and clips.points3d is not None
        m, s = cfg.map_size, cfg.crop_size
        for c, start in enumerate(clips.starts):
            pts = clips.points[c]  # (T, 68, 2)
            out["clip_index"].append(c)
            out["start_frame"].append(start)
            out["frames"].append(clips.crops[c])  # (T, S, S, 3)
            out["points"].append(pts.astype(np.float32))
            out["location_map"].append(np.stack([location_map(p, s, m, live) for p in pts]))  # (T, M, M)
            out["binary_mask"].append(np.stack([binary_mask(m, live) for _ in pts]))  # (T, M, M)
            out["depth_map"].append(np.stack([
                depth_map(p, s, m, live, clips.points3d[c, t] if use_3d else None) for t, p in enumerate(pts)]))
        return {"status": "ok", "reason": "", "detail": "", "frames_no_face": clips.n_frames_no_face,
                "max_faces": clips.max_faces, "n_frames": len(frames), **out}, len(clips.starts)

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        cfg = self.cfg
        t, s, m = cfg.clip_len, cfg.crop_size, cfg.map_size
        cols: dict[str, list] = {k: [] for k in ["cache_key", *META_COLUMNS, "clip_index", "start_frame", "status",
                                                 "reason", "detail", "frames_no_face", "max_faces", "n_frames",
                                                 "cpu_s", *TENSOR_COLUMNS]}
        for _, row in batch.iterrows():
            cpu0 = time.process_time()
            res, n = self.label_one(row)
            cols["cpu_s"].extend([time.process_time() - cpu0] * max(n, 1))  # labeling cost of this video
            if n == 0:  # marker row: zero tensors of the fixed shapes keep the columns' tensor type uniform
                res = {**res, "clip_index": [-1], "start_frame": [-1],
                       "frames": [np.zeros((t, s, s, 3), np.uint8)], "points": [np.zeros((t, 68, 2), np.float32)],
                       **{k: [np.zeros((t, m, m), np.float32)] for k in ("location_map", "binary_mask", "depth_map")}}
                n = 1
            for k in ("clip_index", "start_frame", *TENSOR_COLUMNS):
                cols[k].extend(res[k])
            for k in ("status", "reason", "detail"):
                cols[k].extend([res[k]] * n)
            for k in ("frames_no_face", "max_faces", "n_frames"):
                cols[k].extend([int(res.get(k, 0))] * n)
            cols["cache_key"].extend([row["cache_key"]] * n)
            for k in META_COLUMNS:
                cols[k].extend([row[k]] * n)
            if self.progress is not None:
                self.progress.add.remote(1)  # fire and forget
        out = {k: np.stack(v) for k, v in cols.items() if k in TENSOR_COLUMNS}
        out["frames"] = out["frames"].astype(np.uint8)  # (N, T, S, S, 3)
        for k in ("location_map", "binary_mask", "depth_map", "points"):
            out[k] = out[k].astype(np.float32)  # (N, T, M, M) / (N, T, 68, 2)
        for k in ("clip_index", "start_frame", "label", "frames_no_face", "max_faces", "n_frames"):
            out[k] = np.asarray(cols[k], dtype=np.int64)
        out["cpu_s"] = np.asarray(cols["cpu_s"], dtype=np.float64)
        for k in ("cache_key", "video_id", "split", "attack_type", "device", "scene", "subject_id", "status",
                  "reason", "detail"):
            out[k] = np.asarray([str(v) for v in cols[k]], dtype=str)  # unicode, not object: stays an Arrow string
        if self.out_dir is None:
            return out
        self._write(out)
        return {"cache_key": out["cache_key"], "status": out["status"]}

    def _write(self, out: dict[str, np.ndarray]) -> None:
        """The batch as one Parquet file in ``out_dir``, named after its first video's cache key (a retried task
        rewrites the same file), in the tensor encoding Ray Data's own writer uses. Written by the actor itself:
        handing ~1 MB of tensors per video to separate write tasks cost more CPU (deserialising the blocks,
        re-encoding them) than the tracked face path spends labeling it (docs/labeling.md, "Throughput")."""
        import pyarrow.parquet as pq
        from ray.data.block import BlockAccessor

        table = BlockAccessor.batch_to_block(out)
        name = f"{out['cache_key'][0]}.parquet"
        tmp = f"{self._base}/.{name}.tmp"
        pq.write_table(table, tmp, filesystem=self._fs)
        self._fs.move(tmp, f"{self._base}/{name}")  # whole or absent: an interrupted run leaves no half file to recover


def _exists(location: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = storage_fs(location)
    return fs.get_file_info(path).type == pafs.FileType.File


def _read_ledger(out: Path) -> pd.DataFrame:
    path = out / "ledger.csv"
    if not path.is_file():
        return pd.DataFrame(columns=LEDGER_COLUMNS)
    led = pd.read_csv(path, dtype={"cache_key": str, "files": str, "reason": str, "detail": str},
                      keep_default_na=False)
    # A cached "ok" whose shard files were deleted is not a cache hit. Many keys share a file: one lookup each
    # (a round trip on object storage).
    where = {f: f if is_uri(f) else str(out / f) for fs in led["files"] for f in str(fs).split(";") if f}
    present = {f: _exists(loc) for f, loc in where.items()}
    ok_missing = [st == "ok" and not all(present[f] for f in str(fs).split(";") if f)
                  for st, fs in zip(led["status"], led["files"])]
    return led[~np.asarray(ok_missing, dtype=bool)].drop_duplicates("cache_key", keep="last")


def _entry(out: Path, location: str) -> str:
    """How the ledger names a shard file: relative to ``out`` when inside it (the folder can move), else as is."""
    if not is_uri(location):
        p = Path(location)
        if p.is_relative_to(out):
            return str(p.relative_to(out))
    return location


def _summarise_run(out: Path, run_dir: str, run: str) -> pd.DataFrame:
    """Per-key ledger rows from the small columns of the files this run wrote (tensors are not read)."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    cols = ["cache_key", "clip_index", "status", "reason", "detail", "frames_no_face", "max_faces", "n_frames"]
    fs, base = storage_fs(run_dir)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    parts = []
    for name in sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")):
        t = pq.read_table(f"{base}/{name}", columns=cols, filesystem=fs).to_pandas()
        t["file"] = _entry(out, join(run_dir, name))
        parts.append(t)
    if not parts:
        return pd.DataFrame(columns=LEDGER_COLUMNS)
    rows = pd.concat(parts, ignore_index=True)
    recs = []
    for key, g in rows.groupby("cache_key", sort=False):
        ok = g[g["status"] == "ok"]
        first = (ok if len(ok) else g).iloc[0]
        recs.append({"cache_key": key, "status": "ok" if len(ok) else "skipped", "reason": first["reason"],
                     "detail": first["detail"], "clips": int(len(ok)), "frames_no_face": int(first["frames_no_face"]),
                     "max_faces": int(first["max_faces"]), "n_frames": int(first["n_frames"]),
                     "files": ";".join(sorted(set(ok["file"]))), "run": run})
    return pd.DataFrame(recs, columns=LEDGER_COLUMNS)


def _recover(out: Path, shard_root: str, ledger: pd.DataFrame) -> pd.DataFrame:
    """Salvage what an interrupted run (a SIGKILL mid-labeling) already wrote, so the rerun resumes there.

    Run folders the ledger does not know were cut short: every Parquet file in them that reads back whole is
    summarised into the ledger (its videos are not labeled again); a file that does not read (half-written) and
    a folder left with nothing are deleted as orphans, and the ledger is written atomically before labeling goes on.
    """
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, base = storage_fs(join(shard_root, "data"))
    known = set(ledger["run"].astype(str))
    runs = [i for i in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
            if i.type == pafs.FileType.Directory and i.base_name not in known]
    recovered = []
    for info in runs:
        files = [f for f in fs.get_file_info(pafs.FileSelector(info.path)) if f.type == pafs.FileType.File]
        for f in files:
            try:
                pq.read_metadata(f.path, filesystem=fs)
            except Exception:  # truncated footer: the writer was killed mid-file
                fs.delete_file(f.path)
        run_dir = join(shard_root, "data", info.base_name)
        rows = _summarise_run(out, run_dir, info.base_name)
        if rows.empty:
            fs.delete_dir(info.path)
        else:
            recovered.append(rows)
    if not recovered:
        return ledger
    ledger = pd.concat([ledger, *recovered], ignore_index=True).drop_duplicates("cache_key", keep="last")
    write_csv(ledger, out / "ledger.csv")
    return ledger


class _Progress:
    """A tiny Ray actor: labeling workers add one per finished video, the driver's progress bar reads it."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> None:
        self.n += k

    def get(self) -> int:
        return self.n


def _run_ray(todo: pd.DataFrame, out: Path, shard_root: str, cfg: LabelConfig, progress: bool) -> pd.DataFrame:
    import ray
    import ray.data

    from components.runtime import Poller, progress_bar

    run = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    run_dir = join(shard_root, "data", run)
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars
    counter = bar = None
    if progress:  # one bar over videos (Ray Data's per-operator bars stay as the Ray setup chose)
        counter = ray.remote(num_cpus=0)(_Progress).remote()
        bar = progress_bar(len(todo), "label", unit="video")

        def poll() -> None:
            done = min(len(todo), int(ray.get(counter.get.remote(), timeout=10)))
            if done > bar.n:
                bar.update(done - bar.n)
    else:
        ctx.enable_progress_bars = False
    try:
        # One input block per batch: an actor pool only spreads work over actors block by block. from_items builds
        # the blocks here in the driver; from_pandas ran one remote metadata task per block, which cost 2.2 s of a
        # 64-video run's start-up on two cores (docs/labeling.md, "Throughput").
        n_blocks = -(-len(todo) // cfg.batch_size)
        items = todo.to_dict("records")
        # Each actor writes its own Parquet files (LabelWorker._write): only a status row per clip comes back.
        ds = ray.data.from_items(items, override_num_blocks=n_blocks).map_batches(
            LabelWorker, fn_constructor_kwargs={"cfg": cfg, "progress": counter, "out_dir": run_dir},
            batch_size=cfg.batch_size, batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=min(cfg.concurrency, n_blocks)),
            num_cpus=cfg.num_cpus_per_worker)
        with Poller(poll, every=1.0) if bar is not None else contextlib.nullcontext():
            for _ in ds.iter_batches(batch_size=None, batch_format="pandas"):
                pass
        if bar is not None:
            bar.update(len(todo) - bar.n)  # every video was handled (a failed one is a marker row)
    finally:
        ctx.enable_progress_bars = saved
        if bar is not None:
            bar.close()
        if counter is not None:
            ray.kill(counter)
    return _summarise_run(out, run_dir, run)


def _portable(path: str) -> str:
    """How outputs name a video: a URI as is, a local path relative to the current directory when inside it (the
    repository: the same on every clone), else absolute (symlinks are kept, not resolved)."""
    if is_uri(path):
        return path
    absolute, cwd = os.path.abspath(path), os.path.abspath(os.getcwd())
    return os.path.relpath(absolute, cwd) if Path(absolute).is_relative_to(cwd) else absolute


def _register_tensor_types() -> None:
    """Ray's Arrow tensor extension types, so cache files read back (and export) with them rather than as bare
    storage; importing the module registers them with pyarrow."""
    try:
        import ray.air.util.tensor_extensions.arrow  # noqa: F401
    except ImportError:  # pragma: no cover - Ray is a labeling dependency
        pass


def _export(index: pd.DataFrame, ledger: pd.DataFrame, cache: Path, dest: str, cfg: LabelConfig,
            out: Path) -> dict[str, str]:
    """Copy the current manifest's clips out of the cache into ``dest`` as ``<split>-<n>.parquet``, deterministically.

    Videos in split order (train, dev, test, then any other), then by video_id; clips by index; whole videos per
    file, about :data:`EXPORT_FILE_BYTES` of tensors each; metadata from the current manifest (``index``), not from
    when the clips were labeled; no timing column. Returns ``cache_key -> file`` as the index names it (relative to
    ``out`` when inside it, else the URI)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    _register_tensor_types()
    fs, base = storage_fs(dest)
    fs.create_dir(base, recursive=True)
    for info in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet"):
            fs.delete_file(info.path)  # a previous export of another manifest
    ok = index[index["status"] == "ok"].drop_duplicates("cache_key")
    sources = ledger.set_index("cache_key")["files"]
    clip_bytes = cfg.clip_len * (cfg.crop_size ** 2 * 3 + 3 * cfg.map_size ** 2 * 4 + 68 * 2 * 4)
    per_file = max(1, EXPORT_FILE_BYTES // clip_bytes)
    splits = [x for x in SPLIT_ORDER if x in set(ok["split"])] + sorted(set(ok["split"]) - set(SPLIT_ORDER))
    files: dict[str, str] = {}
    for split in splits:
        rows = ok[ok["split"] == split].sort_values("video_id", kind="stable")
        chunks: list[list] = [[]]
        n = 0
        for r in rows.itertuples(index=False):
            if chunks[-1] and n + int(r.clips) > per_file:
                chunks.append([])
                n = 0
            chunks[-1].append(r)
            n += int(r.clips)
        for i, chunk in enumerate(c for c in chunks if c):
            meta = {r.cache_key: r for r in chunk}
            by_file: dict[str, list[str]] = {}
            for key in meta:
                for f in str(sources[key]).split(";"):
                    if f:
                        by_file.setdefault(f, []).append(key)
            parts = []
            for f, keys in sorted(by_file.items()):
                sfs, spath = storage_fs(f if is_uri(f) else str(cache / f))
                t = pq.read_table(spath, filesystem=sfs)
                t = t.filter(pc.and_(pc.is_in(t["cache_key"], value_set=pa.array(keys, pa.string())),
                                     pc.greater_equal(t["clip_index"], 0)))
                parts.append(t)
            table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
            table = table.select(EXPORT_COLUMNS)
            keys = table["cache_key"].to_pylist()
            for c in META_COLUMNS:  # the current manifest's metadata, whatever it was when labeled
                vals = [getattr(meta[k], c) for k in keys]
                arr = pa.array([int(v) for v in vals], pa.int64()) if c == "label" else pa.array(
                    [str(v) for v in vals], pa.string())
                table = table.set_column(table.schema.get_field_index(c), c, arr)
            table = table.sort_by([("video_id", "ascending"), ("cache_key", "ascending"),
                                   ("clip_index", "ascending")])
            name = f"{split}-{i:05d}.parquet"
            pq.write_table(table.replace_schema_metadata(None), f"{base}/{name}", filesystem=fs,
                           compression="snappy")
            entry = _entry(out, join(dest, name))
            files.update({k: entry for k in meta})
    return files


def _set_id(index: pd.DataFrame) -> str:
    """A content hash of what an export holds, naming its folder on shared storage."""
    ok = index[index["status"] == "ok"]
    cols = ["cache_key", *META_COLUMNS]
    h = hashlib.sha256(f"{LABEL_FORMAT}\n".encode())
    for row in sorted(map(tuple, ok[cols].astype(str).values.tolist())):
        h.update(("\t".join(row) + "\n").encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(cache: Path):
    """An exclusive lock on the cache folder for one labeling run: the ledger is read, extended and written, and
    unknown run folders are salvaged as interrupted, which must never happen to another process's live run."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no concurrent runs expected
        yield
        return
    with open(cache / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def label_videos(manifest_df: pd.DataFrame, out_dir: str | Path, cfg: LabelConfig,
                 progress: bool = True, storage: str | None = None,
                 digest_table: DigestTable | None = None, cache_dir: str | Path | None = None) -> LabelReport:
    """Label the manifest's videos (``path`` absolute, relative to the current directory, or a URI) into ``out_dir``.

    Needs a Ray cluster (Ray Data connects to or starts one). Videos already labeled with the same bytes and
    config are reused. Never raises for a bad video: it is reported with its reason in ``report.csv``.
    ``cache_dir``: where the content-addressed cache (ledger and Ray's shard files) lives; None keeps it in
    ``out_dir`` (the index then names the cache's files); another folder makes ``out_dir`` a deterministic export
    of the current clips (module docstring).
    ``storage``: where the Parquet shards go (``<storage>/shards/data/<run>``), a URI such as
    ``s3://bucket/prefix`` or a local folder every node mounts; None keeps them in the cache folder. With a URI,
    local videos travel to the workers through ``<storage>/videos/`` rather than by path. ``digest_table``: sha256s
    already computed (by the validate stage) for local files, reused while their size and mtime are unchanged;
    files it lacks are hashed and added to it.
    """
    from components.data.manifest import check_manifest

    df = check_manifest(manifest_df)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = out if cache_dir is None else Path(cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    df["shown_path"] = [_portable(p) for p in df["path"]]
    df["path"] = [p if is_uri(p) else str(Path(p).resolve()) for p in df["path"]]
    table = digest_table if digest_table is not None else DigestTable()
    keys, digests = [], []
    for p in df["path"]:
        try:
            digests.append(file_digest(p) if is_uri(p) else table.digest(p))
            keys.append(cache_key(digests[-1], cfg))
        except OSError:  # pyarrow raises FileNotFoundError / OSError for a missing object too
            digests.append("")
            keys.append("")  # missing/unreadable file: reported below, nothing to label
    df["cache_key"] = keys
    df["_digest"] = digests

    shard_root = str(cache) if storage is None else join(storage if is_uri(storage) else Path(storage).resolve(),
                                                          "shards")
    with _locked(cache):  # one labeling run per cache at a time (the workspace and a queued experiment share it)
        ledger = _recover(cache, shard_root, _read_ledger(cache))
        known = set(ledger["cache_key"])
        todo = df[(df["cache_key"] != "") & ~df["cache_key"].isin(known)].drop_duplicates("cache_key")
        if len(todo):
            todo = todo[["cache_key", "path", "_digest", *META_COLUMNS]].copy()
            if storage is not None and is_uri(storage):
                todo["path"] = _stage_videos(list(todo["path"]), list(todo["_digest"]), storage)
            new = _run_ray(todo.drop(columns="_digest"), cache, shard_root, cfg, progress)
            ledger = pd.concat([ledger, new], ignore_index=True).drop_duplicates("cache_key", keep="last")
            write_csv(ledger, cache / "ledger.csv")
        led = ledger.set_index("cache_key")

        rows = []
        labeled_now = set(todo["cache_key"])
        for r in df.itertuples(index=False):
            base = {"video_id": r.video_id, "cache_key": r.cache_key, "cached": r.cache_key not in labeled_now}
            if r.cache_key == "":
                rec = {"status": "skipped", "reason": "missing", "detail": f"{r.shown_path} cannot be read",
                       "clips": 0, "frames_no_face": 0, "max_faces": 0, "files": ""}
                base["cached"] = False
            elif r.cache_key in led.index:
                rec = led.loc[r.cache_key].to_dict()
            else:  # the run produced nothing for it (worker crash): not cached, retried next run
                rec = {"status": "skipped", "reason": "error", "detail": "no output from the labeling worker",
                       "clips": 0, "frames_no_face": 0, "max_faces": 0, "files": ""}
            detail = str(rec.get("detail", ""))
            if r.path != r.shown_path:  # outputs name a video as the manifest does, not by this machine's path
                detail = detail.replace(r.path, r.shown_path)
            rows.append({**base, **{k: rec.get(k, "") for k in ("status", "reason", "clips", "frames_no_face",
                                                                 "max_faces", "files")}, "detail": detail})
        status = pd.DataFrame(rows)
        for k in ("clips", "frames_no_face", "max_faces"):
            status[k] = pd.to_numeric(status[k], errors="coerce").fillna(0).astype(int)
        index = df[["video_id", "cache_key", "shown_path", *[c for c in META_COLUMNS if c != "video_id"]]].rename(
            columns={"shown_path": "path"}).merge(status[["video_id", "status", "reason", "clips", "files"]],
                                                  on="video_id")
        if cache != out:  # the output: this manifest's clips, exported in a fixed order
            if storage is not None and is_uri(storage):
                dest = join(storage, "shards", "sets", _set_id(index))
            else:
                dest = str(out / EXPORT_DIR)
            exported = _export(index, ledger, cache, dest, cfg, out)
            index["files"] = [exported.get(k, "") if st == "ok" else ""
                              for k, st in zip(index["cache_key"], index["status"])]
    write_csv(index, out / "index.csv")
    write_label_config(out, cfg)
    report = status[REPORT_COLUMNS + ["cached"]].copy()
    # With a separate cache the output is reproducible, so without `cached` (it depends on history, not inputs).
    write_csv(report if cache == out else report[REPORT_COLUMNS], out / "report.csv")
    n_new = int((~report["cached"]).sum() - (report["reason"] == "missing").sum())
    return LabelReport(report=report, n_new=n_new, n_cached=int(report["cached"].sum()), out_dir=out)
