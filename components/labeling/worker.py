"""The Ray run of labeling: one landmark model per Ray Data actor (``LabelWorker``), videos staged for workers
that cannot see the driver's disk, progress."""
from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.data.manifest import META_COLUMNS
from components.face.clips import LabelingError, extract_clips
from components.face.landmarks import make_backend

from .config import TENSOR_COLUMNS, LabelConfig
from .ledger import _summarise_run
from .shards import is_uri, join, storage_fs


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
