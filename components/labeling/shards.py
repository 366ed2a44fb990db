"""Reading labeled shards: only the current manifest's clips (``index.csv``), with its metadata.

Row = one clip: video_id, clip_index, start_frame, split, label, attack_type, device, scene, subject_id and the
tensors frames uint8 (T, S, S, 3), location_map / binary_mask / depth_map float32 (T, M, M), points (T, 68, 2).
Tensors are Ray Data's Arrow tensor extension (``ray.data.arrow_tensor_v2``) in Parquet: Ray reads them back as
tensors (``iter_torch_batches`` yields torch tensors); ``load_clips`` decodes the same columns with pyarrow alone
from the extension's storage (a flat list + the shape in the field metadata), so it needs no Ray cluster.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from components.data.manifest import META_COLUMNS as _META

SCHEMA_COLUMNS = ["video_id", "clip_index", "start_frame", "split", "label", "attack_type", "device", "scene",
                  "subject_id", "frames", "location_map", "binary_mask", "depth_map"]
OPTIONAL_COLUMNS = ["points"]


class ShardsError(FileNotFoundError):
    """No labeled clips to read (the label stage has not run, or every video was skipped)."""


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


@functools.lru_cache(maxsize=16)
def _fs_for_root(root: str):
    # One filesystem object per bucket: building an S3FileSystem may cost a region lookup round trip.
    from pyarrow.fs import FileSystem

    return FileSystem.from_uri(root)


def storage_fs(location: str | Path):
    """``(pyarrow filesystem, path in it)`` for a local path or a URI (``s3://bucket/key``, ``gs://``, ``file://``).

    Credentials come from the usual chain of each store (for S3: ``AWS_*`` variables, instance role, ...).
    """
    from pyarrow.fs import LocalFileSystem

    loc = str(location)
    if not is_uri(loc):
        return LocalFileSystem(), str(Path(loc).resolve())
    scheme, rest = loc.split("://", 1)
    netloc, _, key = rest.partition("/")
    if scheme == "file":
        return LocalFileSystem(), rest
    fs, root_path = _fs_for_root(f"{scheme}://{netloc}")
    if not key:
        return fs, root_path
    return fs, f"{root_path.rstrip('/')}/{key}".rstrip("/")


def join(location: str | Path, *parts: str) -> str:
    """``location/part/...`` for a local path or a URI (a URI keeps its scheme)."""
    if is_uri(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return str(Path(location).joinpath(*parts))


def _current(out_dir: str | Path, split: str | None) -> tuple[Path, pd.DataFrame]:
    out = Path(out_dir).resolve()
    path = out / "index.csv"
    if not path.is_file():
        raise ShardsError(f"{path} not found: run the label stage first (`eulernet label`)")
    idx = pd.read_csv(path, dtype=str, keep_default_na=False)
    idx = idx[idx["status"] == "ok"]
    if split is not None:
        idx = idx[idx["split"] == split]
    if idx.empty:
        raise ShardsError(f"no labeled clips in {out}" + (f" for split {split!r}" if split else ""))
    return out, idx.drop_duplicates("cache_key")


def _meta_by_key(idx: pd.DataFrame) -> dict[str, dict]:
    meta = idx.set_index("cache_key")[[c for c in _META]].copy()
    meta["label"] = meta["label"].astype(int)
    return meta.to_dict("index")


def _files(out: Path, idx: pd.DataFrame) -> list[str]:
    # Ledger entries are relative to out_dir (shards next to the index), absolute paths, or storage URIs.
    return sorted({f if is_uri(f) else str(out / f) for fs in idx["files"] for f in fs.split(";") if f})


def _by_filesystem(files: list[str]) -> dict[str, list[str]]:
    """Files grouped by store (local disk, each bucket): one Ray Data read cannot span two filesystems."""
    groups: dict[str, list[str]] = {}
    for f in files:
        scheme, _, rest = f.partition("://")
        groups.setdefault(f"{scheme}://{rest.split('/', 1)[0]}" if rest else "", []).append(f)
    return groups


def _select(table, meta: dict[str, dict], columns: list[str]):
    """Keep the current keys' clip rows and overwrite their metadata with the current manifest's."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keep = pc.and_(pc.is_in(table["cache_key"], value_set=pa.array(list(meta), pa.string())),
                   pc.greater_equal(table["clip_index"], 0))
    table = table.filter(keep)
    keys = table["cache_key"].to_pylist()
    for c in _META:
        if c in columns:
            vals = [meta[k][c] for k in keys]
            arr = pa.array(vals, pa.int64() if c == "label" else pa.string())
            table = table.set_column(table.schema.get_field_index(c), c, arr)
    return table.select(columns)


def read_shards(out_dir: str | Path, split: str | None = None, columns: list[str] | None = None):
    """A ``ray.data.Dataset`` of the current manifest's clips (optionally one split), for Ray Train to stream."""
    import ray.data

    out, idx = _current(out_dir, split)
    meta = _meta_by_key(idx)
    cols = list(columns or SCHEMA_COLUMNS)
    read_cols = sorted(set(cols) | {"cache_key", "clip_index"})
    # URIs are read by the Ray Data workers themselves (any node, with the store's credentials); local paths
    # assume the single machine or a shared mount, as before.
    parts = [ray.data.read_parquet(group, columns=read_cols) for group in _by_filesystem(_files(out, idx)).values()]
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return ds.map_batches(_select, fn_kwargs={"meta": meta, "columns": cols}, batch_format="pyarrow",
                          batch_size=None)


def _decode(chunked, field) -> np.ndarray:
    """A tensor column -> ndarray (N, *shape), from Ray's extension type or from its plain Parquet storage."""
    import pyarrow as pa

    arr = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked
    shape = getattr(field.type, "shape", None)
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if shape is None:
        meta = (field.metadata or {}).get(b"ARROW:extension:metadata")
        if meta is None:
            return arr.to_numpy(zero_copy_only=False)
        shape = json.loads(meta)
    values = arr.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(arr), *shape)


def load_clips(out_dir: str | Path, split: str | None = None, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """The current clips as stacked numpy arrays, sorted by (video_id, clip_index); pyarrow only, no Ray.

    For small data: tests, evaluation, benchmarks. ``frames`` (N, T, S, S, 3) uint8, maps (N, T, M, M) float32,
    ``label`` int64, string columns as str arrays.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out, idx = _current(out_dir, split)
    meta = _meta_by_key(idx)
    cols = list(columns or SCHEMA_COLUMNS)
    read_cols = sorted(set(cols) | {"cache_key", "clip_index"})
    tables = []
    for f in _files(out, idx):
        fs, path = storage_fs(f)
        tables.append(_select(pq.read_table(path, columns=read_cols, filesystem=fs), meta,
                              cols + ["cache_key"] * ("cache_key" not in cols)))
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    if "video_id" in cols and "clip_index" in cols:
        table = table.sort_by([("video_id", "ascending"), ("clip_index", "ascending")])
    result: dict[str, np.ndarray] = {}
    for name in cols:
        fld = table.schema.field(name)
        col = table[name]
        if pa.types.is_string(fld.type) or pa.types.is_large_string(fld.type):
            result[name] = np.asarray(col.to_pylist(), dtype=str)
        elif pa.types.is_integer(fld.type) or pa.types.is_floating(fld.type):
            result[name] = col.to_numpy()
        else:
            result[name] = _decode(col, fld)
    return result


def split_data_hash(out_dir: str | Path, split: str = "test") -> str:
    """sha256 over the ``split`` videos of ``<out_dir>/index.csv``: sorted ``video_id``, ``cache_key`` (video
    bytes + labeling config + labeling code) and ``label`` of every row labeled ``ok``. Equal hashes mean the same
    clips with the same labels, so metrics computed on them are comparable (promotion checks it)."""
    import csv
    import hashlib

    path = Path(out_dir)
    path = path if path.suffix == ".csv" else path / "index.csv"  # a shards folder or its index file
    if not path.is_file():
        raise ShardsError(f"{path} not found: the {split}-data hash comes from the label stage's index")
    with path.open(newline="") as fh:
        rows = {(r["video_id"], r["cache_key"], r.get("label", ""))
                for r in csv.DictReader(fh) if r.get("split") == split and r.get("status", "ok") == "ok"}
    if not rows:
        raise ShardsError(f"{path} lists no labeled {split!r} videos: nothing identifies the {split} data")
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(("\t".join(row) + "\n").encode())
    return digest.hexdigest()
