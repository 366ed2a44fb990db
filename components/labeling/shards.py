"""Reading labeled shards: only the current manifest's clips (``index.csv``), with its metadata.

Row = one clip: video_id, clip_index, start_frame, split, label, attack_type, device, scene, subject_id and the
tensors frames uint8 (T, S, S, 3), location_map / binary_mask / depth_map float32 (T, M, M), points (T, 68, 2).
Tensors are Ray Data's Arrow tensor extension (``ray.data.arrow_tensor_v2``) in Parquet: Ray reads them back as
tensors (``iter_torch_batches`` yields torch tensors); ``load_clips`` decodes the same columns with pyarrow alone
from the extension's storage (a flat list + the shape in the field metadata), so it needs no Ray cluster.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMA_COLUMNS = ["video_id", "clip_index", "start_frame", "split", "label", "attack_type", "device", "scene",
                  "subject_id", "frames", "location_map", "binary_mask", "depth_map"]
OPTIONAL_COLUMNS = ["points"]
_META = ["video_id", "split", "label", "attack_type", "device", "scene", "subject_id"]


class ShardsError(FileNotFoundError):
    """No labeled clips to read (the label stage has not run, or every video was skipped)."""


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
    return sorted({str(out / f) for fs in idx["files"] for f in fs.split(";") if f})


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
    ds = ray.data.read_parquet(_files(out, idx), columns=read_cols)
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
    tables = [_select(pq.read_table(f, columns=read_cols), meta, cols + ["cache_key"] * ("cache_key" not in cols))
              for f in _files(out, idx)]
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
