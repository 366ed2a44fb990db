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


def missing_sqlite_store(uri: str | None) -> str | None:
    """The file of a SQLite tracking URI that does not exist yet, else None. MLflow creates an empty store on
    first use; serving must never do that (an empty registry reads as "no champion", and hides a wrong path)."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///"):])
    return None if path.is_file() else str(path)


# `dvc exp run --temp` and `dvc queue start` run each experiment in <repo>/.dvc/tmp/exps/<tmp>/, deleted afterwards.
_DVC_EXP_TMP = (".dvc", "tmp", "exps")


def project_root(start: str | os.PathLike = ".") -> Path:
    """The project whose MLflow store a stage writes to: ``start`` (absolute), or, inside a DVC experiment's
    temporary workspace (``<repo>/.dvc/tmp/exps/<tmp>/``), the repository that queued the experiment, so its runs
    and registered models outlive the temporary folder."""
    path = Path(start).resolve()
    parts = path.parts
    for i in range(len(parts) - len(_DVC_EXP_TMP)):
        if parts[i:i + len(_DVC_EXP_TMP)] == _DVC_EXP_TMP:
            return Path(*parts[:i])
    return path


def tracking_uri(root: str | os.PathLike = ".") -> str:
    """``MLFLOW_TRACKING_URI`` when set (a server on a cluster), else the SQLite file ``<root>/mlflow.db`` (the
    queuing repository's when ``root`` is a DVC experiment's temporary workspace, see :func:`project_root`);
    always absolute, so the same URI works from a worker or a replica."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return absolute_tracking_uri(env)
    return "sqlite:///" + str(project_root(root) / "mlflow.db")


def artifact_location(experiment: str, root: str | os.PathLike = ".") -> str | None:
    """Where a new MLflow experiment keeps its artifacts: None (MLflow's default, ``./mlruns``) except in a DVC
    experiment's temporary workspace, where that default would be deleted with it: ``<repo>/mlruns/<experiment>``."""
    if os.environ.get("MLFLOW_TRACKING_URI") or project_root(root) == Path(root).resolve():
        return None
    return str(project_root(root) / "mlruns" / experiment)


def use_mlflow(root: str | os.PathLike = ".") -> str:
    """Point the fluent MLflow API (``mlflow.*``) at :func:`tracking_uri` for this process; returns the URI."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)  # the registry follows the tracking URI unless one is set on purpose
    return uri


# ---------------------------------------------------------------------------- storage
# The shipped reference model (trained on real recordings by `eulernet reference`, DVC-tracked in the repository's
# sample remote): what `--reference` of predict, serve and the real-world benchmark reads.
REFERENCE_CHECKPOINT = "models/reference/checkpoint.pt"


def reference_checkpoint(root: str | os.PathLike = ".") -> str:
    """Absolute path of the shipped reference checkpoint; FileNotFoundError saying how to fetch it when absent."""
    path = project_root(root) / REFERENCE_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no reference model at {path}: fetch it with `dvc pull models/reference.dvc` "
                                f"(bin/setup does), or train one with `eulernet reference --data DIR`")
    return str(path)


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


DRIVER_LOG = "eulernet-driver.log"  # the driver's own Ray log records, beside Ray's logs in the session folder


class _SessionLogHandler(logging.Handler):
    """Writes Ray's driver-side log records to ``<session logs>/eulernet-driver.log``; records emitted before
    ``ray.init`` made the session folder (e.g. the token-authentication notice) wait in a small buffer."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s\t%(levelname)s %(name)s %(filename)s:%(lineno)s -- "
                                            "%(message)s"))
        self._file: logging.Handler | None = None
        self._pending: list[logging.LogRecord] = []

    def open(self, logs_dir: str) -> None:
        if self._file is not None:
            return
        os.makedirs(logs_dir, exist_ok=True)
        self._file = logging.FileHandler(os.path.join(logs_dir, DRIVER_LOG))
        self._file.setFormatter(self.formatter)
        for record in self._pending:
            self._file.handle(record)
        self._pending.clear()

    def emit(self, record: logging.LogRecord) -> None:
        if self._file is not None:
            self._file.handle(record)
        elif len(self._pending) < 1000:
            self._pending.append(record)


_session_log = _SessionLogHandler()


def ray_logs_dir() -> str:
    """This process's Ray session log folder (``RAY_LOG_HINT`` when it cannot be asked)."""
    try:
        import ray._private.worker as worker

        node = worker._global_node
        if node is not None:
            return node.get_logs_dir_path()
    except Exception:  # a private API: any change in Ray only costs the exact path
        pass
    return RAY_LOG_HINT


def quiet_ray_console() -> None:
    """Ray's own log records stop reaching the console below ERROR; its log files keep everything.

    Ray attaches console handlers to ``ray`` (all of Ray Core, Train, Serve) and ``ray.data`` (which also
    writes ``ray-data.log``): their level is raised rather than the loggers', so the files are not thinned.
    The driver's ``ray`` records (which have no file of their own) go to ``<session logs>/eulernet-driver.log``.
    Idempotent; call again after a library attached new handlers.
    """
    def console(h: logging.Handler) -> bool:
        return isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)

    for name in ["ray", *[n for n in list(logging.Logger.manager.loggerDict) if n.startswith("ray.")]]:
        logger = logging.getLogger(name)
        for h in logger.handlers:
            if console(h):
                h.setLevel(max(h.level, logging.ERROR))
        # `ray` itself, and loggers that do not propagate to it with nothing but a console (the driver's
        # `ray.serve`), write to the driver log file.
        if (name == "ray" or (not logger.propagate and logger.handlers and all(map(console, logger.handlers)))) \
                and _session_log not in logger.handlers:
            logger.addHandler(_session_log)


def init_ray(verbose: bool | None = None, **kwargs: Any) -> bool:
    """Join ``RAY_ADDRESS`` or start a local Ray, once. Returns True when Ray runs locally (no cluster).

    Quiet by default: workers' output and Ray's own logs stay in the session's log files (printed once as
    ``Ray logs: <folder>``) instead of scrolling past the stage's progress; ``verbose`` streams them to the console.
    """
    verbose = verbose_requested(verbose)
    import ray
    import ray.data

    address = os.environ.get("RAY_ADDRESS") or None
    if not verbose:
        quiet_ray_console()  # before ray.init: it logs the token-authentication notice itself
    if not ray.is_initialized():
        # configure_logging=True keeps the `ray` logger's handlers (False removes them, and Python's last-resort
        # handler then prints every warning on stderr); quiet_ray_console already set the console one to ERROR.
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose, configure_logging=True,
                 logging_level=logging.INFO, **kwargs)
        if not verbose:
            _session_log.open(ray_logs_dir())
            print(f"Ray logs: {ray_logs_dir()}", flush=True)
    ctx = ray.data.DataContext.get_current()
    # Stages draw their own progress bars; Ray Data's per-operator bars would interleave with them.
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    if not verbose:
        quiet_ray_console()
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


def dataset_hash(root: str | os.PathLike = ".") -> str | None:
    """The hash DVC recorded in ``dvc.lock`` for the dataset the pipeline reads (params ``data.root``, a dependency
    of the ingest stage): the embedded sample or your own folder, in the repository or outside it. None when
    ``dvc.lock`` has no such entry (no `dvc repro` yet, or a run outside DVC)."""
    try:
        params = yaml.safe_load((Path(root) / "params.yaml").read_text()) or {}
        lock = yaml.safe_load((Path(root) / "dvc.lock").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    data_root = str((params.get("data") or {}).get("root") or "")
    deps = (((lock.get("stages") or {}).get("ingest") or {}).get("deps") or [])
    found = [d.get("md5") for d in deps if isinstance(d, dict) and d.get("path") == data_root and d.get("md5")]
    return str(found[0]) if found else None


def provenance_tags(stage: str, root: str | os.PathLike = ".") -> dict[str, str]:
    """Tags every tracked run carries: which data (DVC: the dataset's hash in dvc.lock, else data.dvc's), which code
    (git), which stage made it."""
    data = dataset_hash(root) or dvc_data_hash(Path(root) / "data.dvc")
    return {"dvc_data_hash": data, "git_commit": git_commit(root), "stage": stage}


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
    level = logging.INFO if verbose else logging.WARNING
    console = logging.StreamHandler()
    # The handler's own level too: some libraries set INFO on their module loggers (Great Expectations does).
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[console])
    if not verbose:
        # MLflow sets its logger's level from this when imported (here and in Ray workers, which inherit it).
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        for name in ("mlflow", "alembic", "filelock", "urllib3", "httpx", "py.warnings"):
            logging.getLogger(name).setLevel(logging.WARNING)
        _hide_known_warnings()


# Known warnings that tell a person running a stage nothing actionable (--verbose shows them): torch on read-only
# Arrow-backed clip arrays (the model never writes its input), MLflow's pyfunc advice on every registered version.
KNOWN_WARNINGS = ("The given NumPy array is not writable", "Add type hints to the `predict` method",
                  "An input example was not provided when logging the model")


def _hide_known_warnings() -> None:
    """Drop ``KNOWN_WARNINGS`` where they are shown rather than with ``warnings.filterwarnings``: MLflow's
    ``log_model`` re-enables UserWarnings inside its own ``catch_warnings`` (``simplefilter("once")``)."""
    import warnings

    shown = warnings.showwarning
    if getattr(shown, "_eulernet", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not any(k in str(message) for k in KNOWN_WARNINGS):
            shown(message, category, filename, lineno, file, line)

    showwarning._eulernet = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


# ---------------------------------------------------------------------------- console
def header(stage: str, text: str) -> None:
    """The first line a stage prints, e.g. ``== label: 60 videos -> artifacts/shards (dlib, 2 actors)``."""
    print(f"== {stage}: {text}", flush=True)


def progress_bar(total: int | None, desc: str, unit: str = "it", **kwargs: Any):
    """A tqdm bar on stderr. On a terminal it is redrawn in place; through a pipe (``dvc repro | tee``) it is
    still drawn with carriage returns, but at most every few seconds, so a log keeps one line per bar."""
    import sys

    from tqdm import tqdm

    tty = sys.stderr.isatty()
    opts = {"mininterval": 0.5 if tty else 3.0, "dynamic_ncols": tty, "ncols": None if tty else 100,
            "file": sys.stderr, "leave": True, **kwargs}
    return tqdm(total=total, desc=desc, unit=unit, **opts)


class Poller:
    """``with Poller(fn, every=2.0):`` calls ``fn()`` on a daemon thread every ``every`` seconds while the block
    runs (a blocking Ray call), and once more at the end. A failing ``fn`` is ignored: progress display must
    never fail a stage."""

    def __init__(self, fn, every: float = 2.0) -> None:
        import threading

        self.fn, self.every = fn, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="eulernet-progress", daemon=True)

    def _call(self) -> None:
        try:
            self.fn()
        except Exception:
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._call()

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._call()
