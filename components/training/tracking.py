"""Provenance for tracked runs: where MLflow lives, which data (DVC) and code (git) a run used."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

UNKNOWN = "unknown"


def tracking_uri(root: str | os.PathLike = ".") -> str:
    """``MLFLOW_TRACKING_URI`` when set (a server on a cluster), else the SQLite file ``<root>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return "sqlite:///" + str((Path(root) / "mlflow.db").resolve())


def dvc_data_hash(dvc_file: str | os.PathLike = "data.dvc") -> str:
    """The md5 DVC recorded for the tracked data (a ``.dir`` hash for a folder), or 'unknown'."""
    path = Path(dvc_file)
    if not path.is_file():
        return UNKNOWN
    try:
        outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or []
    except yaml.YAMLError:
        return UNKNOWN
    hashes = [str(o.get("md5")) for o in outs if isinstance(o, dict) and o.get("md5")]
    return ",".join(hashes) if hashes else UNKNOWN


def git_commit(root: str | os.PathLike = ".") -> str:
    """``git rev-parse HEAD`` (with '-dirty' when tracked files changed), or 'unknown' outside a repository."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return UNKNOWN
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
