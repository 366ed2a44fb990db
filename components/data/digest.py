"""Content digests of local video files, computed once per file version and handed from stage to stage.

The validate stage hashes every video (duplicate-content gate) and writes a :class:`DigestTable`; labeling keys
its cache on the same sha256 and reads the table instead of hashing again. An entry is trusted only while the
file's size and modification time are unchanged, so an edited video is always re-hashed.
"""
from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

DIGEST_COLUMNS = ("path", "size", "mtime_ns", "sha256")
# A machine-local cache, not a pipeline output: it holds absolute paths and mtimes, so it is kept out of
# dvc.yaml (and so out of dvc.lock); a stale or missing entry only costs a re-hash.
DEFAULT_CACHE = "artifacts/.cache/digests.csv"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class DigestTable:
    """``absolute path -> (size, mtime_ns, sha256)``; :meth:`digest` hashes only what it does not hold."""

    def __init__(self, rows: dict[str, tuple[int, int, str]] | None = None):
        self.rows = dict(rows or {})
        self.hashed = 0  # files actually read by this table (the rest came from a previous stage)

    def digest(self, path: str | os.PathLike) -> str:
        p = str(Path(path).resolve())
        st = os.stat(p)
        known = self.rows.get(p)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            return known[2]
        sha = sha256_file(p)
        self.hashed += 1
        self.rows[p] = (st.st_size, st.st_mtime_ns, sha)
        return sha

    def write(self, path: str | os.PathLike) -> Path:
        from components.files import atomic_path

        path = Path(path)
        # A unique temp name (two stages writing the same table never share one) and a synced rename.
        with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(DIGEST_COLUMNS)
            for p, (size, mtime, sha) in sorted(self.rows.items()):
                w.writerow([p, size, mtime, sha])
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> "DigestTable":
        """The table at ``path``; an empty one when it is missing or unreadable (everything is then hashed)."""
        rows: dict[str, tuple[int, int, str]] = {}
        try:
            with open(path, newline="") as fh:
                for r in csv.DictReader(fh):
                    rows[r["path"]] = (int(r["size"]), int(r["mtime_ns"]), r["sha256"])
        except (OSError, KeyError, ValueError):
            return cls()
        return cls(rows)
