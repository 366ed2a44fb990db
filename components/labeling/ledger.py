"""The content-addressed label cache: its ledger (every key ever labeled, with status and files), recovery of
runs a crash interrupted, and the lock one labeling run holds on the cache folder (pipeline.py, module docstring)."""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from components.files import write_csv

from .shards import is_uri, join, storage_fs

LEDGER_COLUMNS = ["cache_key", "status", "reason", "detail", "clips", "frames_no_face", "max_faces", "n_frames",
                  "files", "run"]
REPORT_COLUMNS = ["video_id", "status", "reason", "detail", "clips", "frames_no_face", "max_faces", "cache_key"]


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a local file or of a storage URI's object."""
    h = hashlib.sha256()
    fs, p = storage_fs(path)
    with fs.open_input_stream(p) as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


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
