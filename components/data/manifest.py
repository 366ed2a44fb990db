"""The manifest: one row per video, the contract between ingest, validate, label and evaluate."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = ["video_id", "path", "subject_id", "device", "os", "scene", "attack_type", "label", "split", "source", "meta"]
REQUIRED = COLUMNS[:9]
# The per-video metadata that travels with every labeled clip (shards) and every score table (evaluation).
META_COLUMNS = ["video_id", "split", "label", "attack_type", "device", "scene", "subject_id"]
ATTACK_TYPES = ("live", "print", "replay", "certificate", "ai_dynamic", "mask", "other")
SPLITS = ("train", "dev", "test")
OS_VALUES = ("android", "ios", "other")


class ManifestError(ValueError):
    """The manifest breaks its schema; the message names the rows and columns."""


def check_manifest(df: pd.DataFrame) -> pd.DataFrame:
    """Return a normalised copy of ``df`` or raise ManifestError naming every problem found."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(f"manifest is missing columns {missing}; required: {REQUIRED}")
    df = df.copy()
    for col in ("source", "meta"):
        if col not in df.columns:
            df[col] = ""
    df = df[COLUMNS]
    for col in COLUMNS:
        if col != "label":
            df[col] = df[col].fillna("").astype(str)
    problems: list[str] = []
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = df.index[~labels.isin([0, 1])]
    if len(bad):
        problems.append(f"label must be 0 (attack) or 1 (live) at rows {list(bad[:10])}")
    else:
        df["label"] = labels.astype(int)
        mismatch = df.index[(df["label"] == 1) != (df["attack_type"] == "live")]
        if len(mismatch):
            problems.append(f"label=1 iff attack_type=='live' is violated at rows {list(mismatch[:10])}")
    for col, allowed in (("attack_type", ATTACK_TYPES), ("split", SPLITS)):
        bad = df.index[~df[col].isin(allowed)]
        if len(bad):
            problems.append(f"{col} must be one of {list(allowed)}; rows {list(bad[:10])} have "
                            f"{sorted(set(df.loc[bad, col]))[:5]}")
    for col in ("video_id", "path", "subject_id", "device", "scene"):
        bad = df.index[df[col].str.strip() == ""]
        if len(bad):
            problems.append(f"{col} is empty at rows {list(bad[:10])}")
    dup = df.index[df["video_id"].duplicated()]
    if len(dup):
        problems.append(f"video_id is duplicated at rows {list(dup[:10])}")
    if problems:
        raise ManifestError("invalid manifest:\n  - " + "\n  - ".join(problems))
    return df.reset_index(drop=True)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read and check a manifest CSV; ``path`` column stays relative to the manifest's folder."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return check_manifest(df)


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    from components.files import write_csv

    write_csv(check_manifest(df), path)


def resolve_paths(df: pd.DataFrame, root: str | Path) -> pd.DataFrame:
    """Make ``path`` absolute against ``root`` (the folder the manifest's paths are relative to)."""
    root = Path(root)
    df = df.copy()
    df["path"] = [str(p if Path(p).is_absolute() else (root / p).resolve()) for p in df["path"]]
    return df
