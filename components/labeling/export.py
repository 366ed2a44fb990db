"""The label stage's output: the current manifest's clips copied out of the cache in a fixed order, the same
bytes for the same manifest, config and code (pipeline.py, module docstring)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from components.data.manifest import META_COLUMNS

from .config import LABEL_FORMAT, TENSOR_COLUMNS, LabelConfig
from .ledger import _entry
from .shards import is_uri, join, storage_fs

# Exported clip files: the cache's columns minus the labeling time (a wall-clock figure has no place in an output
# whose hash must not change between runs), in this order.
EXPORT_COLUMNS = ["cache_key", *META_COLUMNS, "clip_index", "start_frame", "status", "reason", "detail",
                  "frames_no_face", "max_faces", "n_frames", *TENSOR_COLUMNS]
EXPORT_DIR = "clips"
EXPORT_FILE_BYTES = 64 << 20  # clips per exported file: about this many bytes of tensors (whole videos per file)
SPLIT_ORDER = ("train", "dev", "test")


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
    """:func:`_write_export` into ``dest``. A local ``dest`` is written as a new folder beside it and swapped in
    whole (two renames), so a reader sees the previous export or the new one, never a mix, and a failed export
    leaves the previous one as it was. (A storage URI's ``dest`` is content-addressed: a new set, a new folder.)"""
    if is_uri(dest):
        return _write_export(index, ledger, cache, dest, dest, cfg, out)
    import shutil

    final = Path(dest)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        files = _write_export(index, ledger, cache, str(staging), dest, cfg, out)
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if final.exists():
            final.rename(old)
        try:
            staging.rename(final)
        except OSError:
            if old.exists():
                old.rename(final)  # the previous export back in place
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(final.with_name(f".{final.name}.old-{os.getpid()}"), ignore_errors=True)
    return files


def _write_export(index: pd.DataFrame, ledger: pd.DataFrame, cache: Path, base_dest: str, dest: str,
                  cfg: LabelConfig, out: Path) -> dict[str, str]:
    """Copy the current manifest's clips out of the cache into ``base_dest`` as ``<split>-<n>.parquet``,
    deterministically, named in the index as files of ``dest``.

    Videos in split order (train, dev, test, then any other), then by video_id; clips by index; whole videos per
    file, about :data:`EXPORT_FILE_BYTES` of tensors each; metadata from the current manifest (``index``), not from
    when the clips were labeled; no timing column. Returns ``cache_key -> file`` as the index names it (relative to
    ``out`` when inside it, else the URI)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    _register_tensor_types()
    fs, base = storage_fs(base_dest)  # written here; named in the index as ``dest``
    fs.create_dir(base, recursive=True)
    for info in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet"):
            fs.delete_file(info.path)  # a half-written set from an interrupted run
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
