"""The model a replica serves: load, check, swap, poll the champion alias, and keep a last-known-good copy.

A :class:`ModelSlot` owns everything about *which* model answers; the deployment (app.py) only reads
``slot.current`` once per request, so a reload in the middle of a request never mixes versions. The slot never
creates a tracking store (a missing SQLite file is an outage, not a new empty registry), and a replica started
during a registry outage serves the last version it verified, from its own folder, and says so.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .config import ServeConfig, check_device
from .health import replica_id

log = logging.getLogger("ray.serve")


@dataclasses.dataclass(frozen=True)
class Loaded:
    """One loaded model; replaced as a whole on reload so readers never see a half-swapped state."""

    predictor: Any
    info: dict
    loaded_at: float


class CandidateRejected(RuntimeError):
    """A new champion failed :func:`check_candidate`: the replica keeps the model it has and says why."""


class RegistryUnavailable(RuntimeError):
    """The registry could not be read (a missing store, a locked file, an HTTP error): not "no champion"."""


def check_candidate(predictor, info: dict, version: str) -> None:
    """What a replica checks before it swaps to a new champion: it got the version it asked for, the metadata
    it decides with is sane, and a reference clip scores one finite value in [0, 1]. Raises CandidateRejected."""
    problems = []
    if str(info.get("version")) != str(version):
        problems.append(f"asked for v{version}, loaded v{info.get('version')}")
    if int(predictor.clip_len) < 1 or int(predictor.crop_size) < 8:
        problems.append(f"clip {predictor.clip_len} frames x {predictor.crop_size} px is no servable input")
    threshold = predictor.threshold
    if threshold is not None and not (np.isfinite(threshold) and 0.0 <= float(threshold) <= 1.0):
        problems.append(f"threshold {threshold!r} is not in [0, 1]")
    if not problems:
        side, n = int(predictor.crop_size), int(predictor.clip_len)
        clip = np.random.default_rng(0).integers(0, 256, (1, n, side, side, 3), dtype=np.uint8)  # fixed reference
        scores = np.asarray(predictor.score_clips(clip), dtype=np.float64)
        if scores.shape != (1,) or not np.isfinite(scores).all() or not 0.0 <= scores[0] <= 1.0:
            problems.append(f"the reference clip scored {scores.tolist()}, not one value in [0, 1]")
    if problems:
        raise CandidateRejected(f"{info.get('name')} v{version} rejected before the swap: " + "; ".join(problems))


def require_device(device: str) -> None:
    """:func:`check_device` with what torch and Ray say about this process (a replica, or a plain process)."""
    import torch

    try:
        import ray

        gpu_ids = ray.get_gpu_ids() if ray.is_initialized() and replica_id() is not None else None
    except Exception:
        gpu_ids = None
    available = torch.cuda.is_available()
    check_device(device, cuda_available=available, device_count=torch.cuda.device_count() if available else 0,
                 gpu_ids=gpu_ids, torch_cuda=torch.version.cuda)


def warm_up(predictor) -> None:
    """First-call allocations (both ONNX Runtime sessions; torch has one path) happen here, not in a request."""
    blank = np.zeros((1, predictor.clip_len, predictor.crop_size, predictor.crop_size, 3), np.uint8)
    for busy in (False, True) if predictor.engine == "onnx" else (False,):
        predictor.predict_maps(blank, busy=busy)


# ---------------------------------------------------------------- last known good
class LastKnownGood:
    """The last registered version this replica verified and served, kept in a folder of its own (mode 0700), so
    that a replica (re)started while the registry is down still serves it. Written after the digest check, read
    only when the registry cannot be; a copy is staged after the digest check, kept only once the version passed the
    candidate check, and replaces the previous one as a whole (new folder, rename)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def stage(self, checkpoint: Path, graph: Path | None) -> Path:
        """Copy a verified version's files next to the kept one (the download folder is deleted after loading)."""
        self.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.folder.with_name(f"{self.folder.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        tmp.mkdir(mode=0o700)
        shutil.copyfile(checkpoint, tmp / "checkpoint.pt")
        if graph is not None:
            shutil.copyfile(graph, tmp / "model.onnx")
        return tmp

    def commit(self, staged: Path, info: dict) -> None:
        """Make a staged copy the kept one, once the version has passed the candidate check."""
        (staged / "info.json").write_text(json.dumps({k: v for k, v in info.items() if k != "tags"}, default=str))
        old = self.folder.with_name(f"{self.folder.name}.{os.getpid()}.old")
        if self.folder.exists():
            self.folder.rename(old)
        staged.rename(self.folder)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, device: str, engine: str, threads: int) -> Loaded | None:
        from components.inference.predictor import Predictor

        info_file = self.folder / "info.json"
        if not info_file.exists():
            return None
        info = json.loads(info_file.read_text())
        graph = self.folder / "model.onnx"
        use = "torch" if engine == "auto" and not graph.exists() else engine  # auto never exports at load
        predictor = Predictor.from_checkpoint(str(self.folder / "checkpoint.pt"), device=device, batch_size=64,
                                              engine=use, threads=threads,
                                              onnx_graph=graph.read_bytes() if graph.exists() and use != "torch"
                                              else None)
        warm_up(predictor)
        return Loaded(predictor, {**info, "last_known_good": True}, time.time())


# ---------------------------------------------------------------- loaders
def local_loader(cfg: ServeConfig, checkpoint: str) -> Callable[[str | None], Loaded]:
    """Loads one checkpoint file (``eulernet serve --checkpoint``): no registry, nothing to poll."""

    def load(_version: str | None) -> Loaded:
        from components.inference.predictor import Predictor

        # A local checkpoint has no registered graph, and auto never exports at load time (as for a registered
        # version without one): it runs torch. engine onnx exports the graph here, at replica start.
        engine = "torch" if cfg.engine == "auto" else cfg.engine
        predictor = Predictor.from_checkpoint(checkpoint, device=cfg.device, batch_size=64, engine=engine,
                                              threads=cfg.onnx_threads)
        warm_up(predictor)
        return Loaded(predictor, {"name": cfg.model_name, "version": "local", "alias": None, "source": checkpoint},
                      time.time())

    return load


def champion_reader(cfg: ServeConfig, tracking_uri: str | None) -> Callable[[], str | None]:
    """The version the alias names now, or None when the model has no such alias. Any other failure to read the
    registry raises :class:`RegistryUnavailable`: an outage never reads as "no champion"."""

    def read() -> str | None:
        from components.registry.versions import alias_version
        from components.runtime import missing_sqlite_store

        if missing := missing_sqlite_store(tracking_uri):  # an outage or a wrong path: never a new store
            raise RegistryUnavailable(f"no MLflow registry at {missing}")
        try:
            return alias_version(cfg.model_name, cfg.alias, tracking_uri)
        except Exception as exc:
            raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from exc

    return read


def registry_loader(cfg: ServeConfig, tracking_uri: str | None, champion: Callable[[], str | None],
                    keep: LastKnownGood | None) -> Callable[[str | None], Loaded]:
    """Loads a registered version (the champion when None), checks it, and keeps a last-known-good copy."""

    def load(version: str | None) -> Loaded:
        from components.registry.load import load_version

        version = version or champion()
        if version is None:
            raise RuntimeError(f"model {cfg.model_name!r} has no '{cfg.alias}' alias to serve")
        staged: list[Path] = []

        def stage(checkpoint: Path, graph: Path | None) -> None:
            try:
                staged.append(keep.stage(checkpoint, graph))
            except OSError as exc:  # a full or read-only disk costs the fallback, not the model
                log.warning("could not keep %s v%s as last known good: %s", cfg.model_name, version, exc)

        try:
            predictor, info = load_version(cfg.model_name, version, alias=cfg.alias, tracking_uri=tracking_uri,
                                           device=cfg.device, batch_size=64, engine=cfg.engine,
                                           threads=cfg.onnx_threads, on_verified=stage if keep is not None else None)
            check_candidate(predictor, info, version)  # before the swap: a bad model never serves
            warm_up(predictor)
            if staged:
                try:
                    keep.commit(staged.pop(), info)
                except OSError as exc:
                    log.warning("could not keep %s v%s as last known good: %s", cfg.model_name, version, exc)
        finally:
            for path in staged:  # not committed: a refused or failed version is never kept
                shutil.rmtree(path, ignore_errors=True)
        log.info("loaded %s v%s", info["name"], info["version"])
        return Loaded(predictor, info, time.time())

    return load


# ---------------------------------------------------------------- the slot
class ModelSlot:
    """Holds the served :class:`Loaded` and, for a registry model, polls the alias every ``interval_s`` and swaps
    to a new champion once it has passed :func:`check_candidate`. A refused candidate is not downloaded again;
    a failed registry read keeps the loaded model and is reported (``reload_error``, ``registry_failures``)."""

    def __init__(self, load: Callable[[str | None], Loaded], champion: Callable[[], str | None] | None,
                 interval_s: float = 10.0, on_swap: Callable[[Loaded, Loaded | None], None] | None = None,
                 fallback: Callable[[], Loaded | None] | None = None,
                 on_registry_failure: Callable[[], None] | None = None):
        self._load, self._champion, self._fallback = load, champion, fallback
        self._on_registry_failure = on_registry_failure or (lambda: None)
        self._on_swap = on_swap or (lambda new, old: None)
        self.interval_s = float(interval_s)
        self.current: Loaded | None = None
        self.reload_error: str | None = None
        self.rejected_version: str | None = None  # a champion that failed check_candidate: not retried
        self.last_poll: float | None = None
        self.registry_failures = 0
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def start(self) -> None:
        """Load the first model (the champion, or the last known good one when the registry cannot be read), and
        start polling when there is a registry to poll."""
        try:
            self.swap(self._load(None))
        except RegistryUnavailable as exc:
            kept = self._fallback() if self._fallback is not None else None
            if kept is None:
                raise
            self._registry_failed()
            self.reload_error = f"serving the last known good model: {exc}"
            log.warning("registry unavailable at start (%s); serving last known good %s v%s", exc,
                        kept.info.get("name"), kept.info.get("version"))
            self.swap(kept)
        if self._champion is not None:
            self._poller = threading.Thread(target=self._poll_loop, name="champion-poll", daemon=True)
            self._poller.start()

    def swap(self, new: Loaded) -> None:
        """One assignment: readers see the old or the new model, never a mix."""
        old, self.current = self.current, new
        self._on_swap(new, old)

    def poll_once(self) -> None:
        self.last_poll = time.time()
        version = None
        try:
            version = self._champion()
            if version is not None and version == self.rejected_version:
                return  # refused once (not downloaded again each poll); /v1/model keeps saying why
            if version is not None and version != str(self.current.info["version"]):
                self.swap(self._load(version))
                self.rejected_version = None
            self.reload_error = None
        except CandidateRejected as exc:  # the checks failed: keep the loaded model, do not retry this one
            self.rejected_version = version
            self.reload_error = str(exc)
            log.warning("champion reload refused: %s", exc)
        except Exception as exc:  # keep serving the loaded model; /v1/model and /readyz report it
            if isinstance(exc, RegistryUnavailable):
                self._registry_failed()
            self.reload_error = f"{type(exc).__name__}: {exc}"
            log.warning("champion reload failed: %s", self.reload_error)

    def _registry_failed(self) -> None:
        self.registry_failures += 1
        self._on_registry_failure()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll_once()

    def problems(self) -> list[str]:
        out = []
        if self.current is None:
            out.append("no model loaded")
        if self._poller is not None and not self._poller.is_alive():
            out.append("the champion poller thread is not running")
        return out

    def stop(self) -> None:
        self._stop.set()


def build_slot(cfg: ServeConfig, tracking_uri: str | None, checkpoint: str | None,
               on_swap: Callable[[Loaded, Loaded | None], None] | None = None,
               on_registry_failure: Callable[[], None] | None = None) -> ModelSlot:
    """The slot a replica serves from: a local checkpoint, or the registry alias with a last-known-good copy."""
    if checkpoint is not None:
        return ModelSlot(local_loader(cfg, checkpoint), None, cfg.reload_interval_s, on_swap)
    from components.registry.load import sweep_stale_downloads

    for d in sweep_stale_downloads():  # left by a replica killed while it loaded a version
        log.info("removed %s, a download of a replica that no longer runs", d)
    champion = champion_reader(cfg, tracking_uri)
    # One folder per registry and alias: a replica never falls back to a model another store served.
    store = hashlib.sha256(str(tracking_uri).encode()).hexdigest()[:12]
    keep = LastKnownGood(Path(cfg.last_known_good_dir).expanduser() / f"{cfg.model_name}@{cfg.alias}-{store}") \
        if cfg.last_known_good_dir else None
    fallback = (lambda: keep.load(cfg.device, cfg.engine, cfg.onnx_threads)) if keep is not None else None
    return ModelSlot(registry_loader(cfg, tracking_uri, champion, keep), champion, cfg.reload_interval_s, on_swap,
                     fallback, on_registry_failure)


__all__ = ["Loaded", "ModelSlot", "CandidateRejected", "RegistryUnavailable", "LastKnownGood", "check_candidate",
           "require_device", "warm_up", "build_slot", "local_loader", "registry_loader", "champion_reader"]
