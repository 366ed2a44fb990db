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

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from components.data.digest import DigestTable
from components.data.manifest import META_COLUMNS
from components.files import write_csv

from .config import LabelConfig, cache_key, write_label_config
from .export import EXPORT_DIR, _export, _portable, _set_id
from .ledger import REPORT_COLUMNS, _locked, _read_ledger, _recover, file_digest
from .shards import is_uri, join
from .worker import _run_ray, _stage_videos


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


def _content_keys(paths, cfg: LabelConfig, table: DigestTable) -> tuple[list[str], list[str]]:
    """Each video's sha256 and cache key (bytes + config); both "" for a file that cannot be read (reported as
    missing, nothing to label)."""
    digests, keys = [], []
    for p in paths:
        try:
            digests.append(file_digest(p) if is_uri(p) else table.digest(p))
            keys.append(cache_key(digests[-1], cfg))
        except OSError:  # pyarrow raises FileNotFoundError / OSError for a missing object too
            digests.append("")
            keys.append("")
    return digests, keys


def _status(df: pd.DataFrame, led: pd.DataFrame, labeled_now: set[str]) -> pd.DataFrame:
    """One report row per manifest video from the ledger (indexed by cache key): labeled, cached or skipped and
    why, with paths written as the manifest writes them."""
    empty = {"clips": 0, "frames_no_face": 0, "max_faces": 0, "files": ""}
    rows = []
    for r in df.itertuples(index=False):
        base = {"video_id": r.video_id, "cache_key": r.cache_key, "cached": r.cache_key not in labeled_now}
        if r.cache_key == "":
            rec = {"status": "skipped", "reason": "missing", "detail": f"{r.shown_path} cannot be read", **empty}
            base["cached"] = False
        elif r.cache_key in led.index:
            rec = led.loc[r.cache_key].to_dict()
        else:  # the run produced nothing for it (worker crash): not cached, retried next run
            rec = {"status": "skipped", "reason": "error", "detail": "no output from the labeling worker", **empty}
        detail = str(rec.get("detail", ""))
        if r.path != r.shown_path:  # outputs name a video as the manifest does, not by this machine's path
            detail = detail.replace(r.path, r.shown_path)
        rows.append({**base, **{k: rec.get(k, "") for k in ("status", "reason", "clips", "frames_no_face",
                                                             "max_faces", "files")}, "detail": detail})
    status = pd.DataFrame(rows)
    for k in ("clips", "frames_no_face", "max_faces"):
        status[k] = pd.to_numeric(status[k], errors="coerce").fillna(0).astype(int)
    return status


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
    table = digest_table if digest_table is not None else DigestTable()  # the caller's table gains new digests
    df["_digest"], df["cache_key"] = _content_keys(df["path"], cfg, table)

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

        status = _status(df, ledger.set_index("cache_key"), labeled_now=set(todo["cache_key"]))
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
