"""Where things run and where they are kept, decided once: MLflow tracking URI, the Ray connection, the storage
root, provenance tags, JSON-safe output and console/logging setup.

Every flow, the training driver and the Serve app ask this module; none reads ``MLFLOW_TRACKING_URI``,
``RAY_ADDRESS`` or ``EULERNET_STORAGE`` itself. Importing it does no work and pulls in neither Ray nor MLflow.

Environment (all optional; unset means "this machine"):
- ``MLFLOW_TRACKING_URI``: an MLflow server (``http://...``) or a store; default ``sqlite:///<repo>/mlflow.db``.
- ``RAY_ADDRESS``: a Ray cluster to join; default a local Ray started on this machine.
- ``EULERNET_STORAGE``: a folder or URI every Ray node can reach (``s3://bucket/prefix``) for shards and Ray
  Train checkpoints; default ``<repo>/artifacts``.
- ``EULERNET_VERBOSE=1``: Ray's own logs on the console as well (same as ``--verbose``).
"""
from __future__ import annotations

import logging
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml

UNKNOWN = "unknown"
# Where the local Ray session writes its logs (Ray's default temp dir); printed when the console is kept quiet.
RAY_LOG_HINT = "/tmp/ray/session_latest/logs"


# ---------------------------------------------------------------------------- MLflow
def absolute_tracking_uri(uri: str) -> str:
    """Ray workers and Serve replicas run in other directories: pin relative SQLite / file-store URIs to this one."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri:
        return str(Path(uri).resolve())
    return uri


def tracking_uri(root: str | os.PathLike = ".") -> str:
    """``MLFLOW_TRACKING_URI`` when set (a server on a cluster), else the SQLite file ``<root>/mlflow.db``;
    always absolute, so the same URI works from a worker or a replica."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return absolute_tracking_uri(env)
    return "sqlite:///" + str((Path(root) / "mlflow.db").resolve())


def use_mlflow(root: str | os.PathLike = ".") -> str:
    """Point the fluent MLflow API (``mlflow.*``) at :func:`tracking_uri` for this process; returns the URI."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


# ---------------------------------------------------------------------------- storage
def storage_root(default: str | os.PathLike = "artifacts") -> str:
    """``EULERNET_STORAGE`` (a URI or folder every node can reach) or the local ``default`` folder, absolute."""
    env = (os.environ.get("EULERNET_STORAGE") or "").strip()
    if env:
        return env.rstrip("/") if "://" in env else str(Path(env).resolve())
    return str(Path(default).resolve())


def shared_storage() -> str | None:
    """The shared storage URI/folder when one is configured, else None (single machine: local paths suffice)."""
    env = (os.environ.get("EULERNET_STORAGE") or "").strip()
    return storage_root() if env else None


# ---------------------------------------------------------------------------- Ray
def verbose_requested(verbose: bool | None = None) -> bool:
    if verbose is not None:
        return bool(verbose)
    return os.environ.get("EULERNET_VERBOSE", "").lower() in ("1", "true", "yes")


def init_ray(verbose: bool | None = None, **kwargs: Any) -> bool:
    """Join ``RAY_ADDRESS`` or start a local Ray, once. Returns True when Ray runs locally (no cluster).

    Quiet by default: workers' output and Ray's own logs stay in the session's log files (``RAY_LOG_HINT`` on
    a local run) instead of scrolling past the stage's progress; ``verbose`` streams them to the console.
    """
    import ray

    verbose = verbose_requested(verbose)
    address = os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose, configure_logging=verbose,
                 logging_level=logging.INFO if verbose else logging.WARNING, **kwargs)
    ctx = ray.data.DataContext.get_current()
    # Stages draw their own progress bars; Ray Data's per-operator bars would interleave with them.
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    if not verbose:
        for name in ("ray", "ray.data", "ray.train", "ray.serve", "ray.tune"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return address is None


# ---------------------------------------------------------------------------- provenance
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


def provenance_tags(stage: str, root: str | os.PathLike = ".") -> dict[str, str]:
    """Tags every tracked run carries: which data (DVC), which code (git), which stage made it."""
    return {"dvc_data_hash": dvc_data_hash(Path(root) / "data.dvc"), "git_commit": git_commit(root), "stage": stage}


# ---------------------------------------------------------------------------- output
def json_safe(obj: Any) -> Any:
    """NaN/inf -> None, numpy scalars/arrays -> Python, tuples -> lists, recursively (``json.dump`` rejects NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def quiet_offline_env() -> None:
    """Offline machines: usage-stats and telemetry calls only produce refused connections."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def configure_logging(verbose: bool | None = None) -> None:
    """One console format for the whole CLI; libraries' chatter (MLflow, alembic, filelock) stays at WARNING
    unless ``verbose``."""
    verbose = verbose_requested(verbose)
    if verbose:
        os.environ["EULERNET_VERBOSE"] = "1"  # Ray workers and subprocesses inherit the choice
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        for name in ("mlflow", "alembic", "filelock", "urllib3", "httpx", "py.warnings"):
            logging.getLogger(name).setLevel(logging.WARNING)
