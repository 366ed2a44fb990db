"""Ray Serve liveness endpoint: FastAPI ingress, clip batching across requests, hot reload of the champion.

One deployment does everything so a request pays one hop: the request coroutine decodes the upload and cuts
face clips on a small thread pool (OpenCV and dlib work outside the event loop), then awaits ``_score_batch``,
a ``@serve.batch`` method that merges the clips of every request waiting in the replica into one forward pass.
Each queued item carries the loaded model it was cut for, so a reload in the middle of a batch never mixes
crop sizes or versions; the response names the version that actually scored it. ``_score`` holds requests
while a batch runs so that, under load, they are released together and merged (see its docstring).

No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at runtime (a string
``Request`` would become a query parameter), and Serve ships the ingress class by value, so helpers it calls are
defined above it.
"""

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve

from components.runtime import absolute_tracking_uri
from components.runtime import tracking_uri as runtime_uri

from .config import ServeConfig, check_device
from .inputs import VIDEO_CONTENT_TYPES, InputError, Limits, decode_frames_json, decode_video

log = logging.getLogger("ray.serve")

# LabelingError.reason -> (HTTP status, error code)
_LABELING_ERRORS = {
    "too_short": (422, "too_short"),
    "no_face": (422, "no_face"),
    "multiple_faces": (422, "multiple_faces"),
}


@dataclasses.dataclass(frozen=True)
class _Loaded:
    """One loaded model; replaced as a whole on reload so readers never see a half-swapped state."""

    predictor: Any
    info: dict
    loaded_at: float


api = FastAPI(
    title="EulerNet liveness",
    version="1.0",
    description="Face anti-spoofing on short videos. POST a video (multipart field `video`, or a raw "
                "`video/*` body) or `{\"frames\": [base64 PNG/JPEG, ...]}` to `/v1/liveness`.",
)


def _error(exc: InputError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status)


# Helpers the deployment calls are defined above it: Serve ships the ingress class by value, and names
# defined after the class body are not captured with it.
def _replica_id() -> str | None:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (unit use) there is no context
        return None


async def _multipart_video(request: Request, body: bytes) -> bytes:
    """The bytes of the single uploaded file, parsed from the already size-capped body."""
    from starlette.datastructures import UploadFile

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except Exception as exc:  # starlette raises several types for a broken multipart body
        raise InputError(400, "malformed_multipart", f"cannot parse multipart body: {exc}") from None
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    if not files:
        raise InputError(400, "empty_body", "multipart body has no file part (use the field name `video`)")
    upload = form.get("video") if isinstance(form.get("video"), UploadFile) else files[0]
    ctype = (upload.content_type or "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith(VIDEO_CONTENT_TYPES):
        raise InputError(415, "wrong_content_type", f"uploaded file is {ctype!r}; expected video/*")
    return await upload.read()


def _require_device(device: str) -> None:
    """:func:`check_device` with what torch and Ray say about this process (a replica, or a plain process)."""
    import torch

    try:
        import ray

        gpu_ids = ray.get_gpu_ids() if ray.is_initialized() and _replica_id() is not None else None
    except Exception:
        gpu_ids = None
    available = torch.cuda.is_available()
    check_device(device, cuda_available=available, device_count=torch.cuda.device_count() if available else 0,
                 gpu_ids=gpu_ids, torch_cuda=torch.version.cuda)


class CandidateRejected(RuntimeError):
    """A new champion failed :func:`check_candidate`: the replica keeps the model it has and says why."""


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


@serve.deployment(name="LivenessService", max_ongoing_requests=32, health_check_period_s=10,
                  ray_actor_options={"num_cpus": 1})
@serve.ingress(api)
class LivenessService:
    def __init__(self, model_name: str, alias: str = "champion", tracking_uri: str | None = None,
                 checkpoint: str | None = None, limits: dict | None = None, preprocess_threads: int = 2,
                 torch_threads: int = 1, device: str = "cpu"):
        import cv2
        import torch

        _require_device(device)  # before any model work: a GPU replica without a usable GPU stops here, clearly
        torch.set_num_threads(torch_threads)
        # Requests are the unit of parallelism here; OpenCV's own pool on top would oversubscribe the cores.
        cv2.setNumThreads(1)
        self._model_name = model_name
        self._alias = alias
        self._tracking_uri = tracking_uri
        self._checkpoint = checkpoint
        self._device = device
        self._limits = Limits(**(limits or {}))
        self._max_clips = 4
        self._reload_interval_s = 10.0
        self._reload_error: str | None = None
        self._rejected_version: str | None = None  # a champion that failed check_candidate: not retried
        self._last_poll: float | None = None
        self._batches = {"count": 0, "requests": 0, "clips": 0, "max_requests": 0}
        self._model_idle: asyncio.Event | None = None  # created on the replica's event loop at first use
        self._in_flight = 0  # liveness requests inside this replica, any stage
        # dlib objects are not documented thread-safe: one landmark backend per preprocessing thread.
        self._local = threading.local()
        self._pre_pool = concurrent.futures.ThreadPoolExecutor(preprocess_threads, thread_name_prefix="prep")
        # One inference thread: torch already spreads one forward pass over torch_threads cores. OpenMP's
        # thread count is per calling thread (Ray sets OMP_NUM_THREADS for the worker), so set it in that thread.
        self._infer_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="infer", initializer=torch.set_num_threads, initargs=(torch_threads,))
        self._state = self._load(None)
        self._warm_backends(preprocess_threads)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        if checkpoint is None:
            self._poller = threading.Thread(target=self._poll_loop, name="champion-poll", daemon=True)
            self._poller.start()

    # ---------------------------------------------------------------- model loading and hot reload
    def _load(self, version: str | None) -> _Loaded:
        from components.inference import Predictor

        # batch_size bounds one forward pass; the serve batch decides how many clips arrive together.
        if self._checkpoint is not None:
            predictor = Predictor.from_checkpoint(self._checkpoint, device=self._device, batch_size=64)
            info = {"name": self._model_name, "version": "local", "alias": None, "source": self._checkpoint}
        else:
            from components.registry.registry import alias_version, load_version

            version = version or alias_version(self._model_name, self._alias, self._tracking_uri)
            if version is None:
                raise RuntimeError(f"model {self._model_name!r} has no '{self._alias}' alias to serve")
            predictor, info = load_version(self._model_name, version, alias=self._alias,
                                           tracking_uri=self._tracking_uri, device=self._device, batch_size=64)
            check_candidate(predictor, info, version)  # before the swap: a bad model never serves
        predictor.predict_maps(np.zeros((1, predictor.clip_len, predictor.crop_size, predictor.crop_size, 3),
                                        np.uint8))  # warm-up: first-call allocations stay out of request latency
        log.info("loaded %s v%s", info["name"], info["version"])
        return _Loaded(predictor, info, time.time())

    def _warm_backends(self, n_threads: int) -> None:
        """Load one landmark model in every preprocessing thread now (~2 s each), not in the first requests
        that happen to land on a fresh thread. The barrier makes each thread take exactly one warm-up task."""
        barrier = threading.Barrier(n_threads)
        predictor = self._state.predictor

        def warm() -> None:
            self._backend(predictor)
            barrier.wait(timeout=300)

        for f in [self._pre_pool.submit(warm) for _ in range(n_threads)]:
            f.result()

    def _poll_loop(self) -> None:
        from components.registry.registry import alias_version

        while not self._stop.wait(self._reload_interval_s):
            try:
                self._last_poll = time.time()
                version = alias_version(self._model_name, self._alias, self._tracking_uri)
                if version is not None and version == self._rejected_version:
                    continue  # refused once (not downloaded again each poll); /healthz keeps saying why
                if version is not None and version != self._state.info["version"]:
                    self._state = self._load(version)
                    self._rejected_version = None
                self._reload_error = None
            except CandidateRejected as exc:  # the checks failed: keep the loaded model, do not retry this one
                self._rejected_version = version
                self._reload_error = str(exc)
                log.warning("champion reload refused: %s", exc)
            except Exception as exc:  # keep serving the loaded model; /healthz reports the problem
                self._reload_error = f"{type(exc).__name__}: {exc}"
                log.warning("champion reload failed: %s", self._reload_error)

    def reconfigure(self, user_config: dict) -> None:
        """Batching, clip count and poll interval change live (``serve deploy`` with a new user_config)."""
        unknown = set(user_config) - {"max_batch_size", "batch_wait_timeout_s", "reload_interval_s", "max_clips"}
        if unknown:
            raise ValueError(f"unknown user_config keys {sorted(unknown)}")
        if "max_batch_size" in user_config:
            self._score_batch.set_max_batch_size(int(user_config["max_batch_size"]))
        if "batch_wait_timeout_s" in user_config:
            self._score_batch.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))
        self._reload_interval_s = float(user_config.get("reload_interval_s", self._reload_interval_s))
        self._max_clips = int(user_config.get("max_clips", self._max_clips))

    def check_health(self) -> None:
        # A failed reload is not unhealthy (the old model still serves, /healthz says why); no model at all is.
        if self._state is None:
            raise RuntimeError("no model loaded")

    def __del__(self):
        if hasattr(self, "_stop"):
            self._stop.set()

    # ---------------------------------------------------------------- request path
    def _backend(self, predictor):
        # One landmark model per preprocessing thread (dlib detectors are not shared across threads).
        backends = getattr(self._local, "backends", None)
        if backends is None:
            backends = self._local.backends = {}
        key = (predictor.landmark_backend, repr(sorted(predictor.landmark_options.items())))
        if key not in backends:
            from components.inference import make_landmark_backend

            backends[key] = make_landmark_backend(predictor.inference)
        return backends[key]

    def _clips(self, frames: np.ndarray, state: _Loaded):
        from components.data.clips import clip_span

        p = state.predictor
        need = clip_span(p.clip_len, p.clip_interval)
        if len(frames) < need:
            raise InputError(422, "too_short", f"{len(frames)} frames; one clip needs {need} "
                                               f"({p.clip_len} frames at interval {p.clip_interval})")
        return p.extract_clips(frames, backend=self._backend(p), max_clips=self._max_clips)

    async def _score(self, crops: np.ndarray, state: _Loaded):
        """Queue for the model only while it is idle.

        Serve's batch queue closes a batch ``batch_wait_timeout_s`` after its first item and hands it to the
        handler even while the previous batch is still running, so requests trickling out of preprocessing would
        each become a batch of one waiting in line. Holding them here until the model is free releases them
        together, and they land in the same batch: batches grow with load, latency at low load is unchanged.
        """
        if self._model_idle is None:
            self._model_idle = asyncio.Event()
            self._model_idle.set()
        await self._model_idle.wait()
        # Alone in the replica: no request could join a batch, so the batch window would only add latency.
        # is_set() still matters: a cancelled request leaves the count while its batch may still be running.
        if self._in_flight == 1 and self._model_idle.is_set():
            self._model_idle.clear()
            try:
                return (await self._run_batch([crops], [state]))[0]
            finally:
                self._model_idle.set()
        return await self._score_batch(crops, state)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _score_batch(self, crops: list[np.ndarray], states: list[_Loaded]) -> list[tuple]:
        self._model_idle.clear()
        try:
            return await self._run_batch(crops, states)
        finally:
            self._model_idle.set()

    async def _run_batch(self, crops: list[np.ndarray], states: list[_Loaded]) -> list[tuple]:
        results: list[tuple | None] = [None] * len(crops)
        groups: dict[int, tuple[_Loaded, list[int]]] = {}
        for i, st in enumerate(states):
            groups.setdefault(id(st), (st, []))[1].append(i)
        loop = asyncio.get_running_loop()
        for st, idx in groups.values():
            merged = np.concatenate([crops[i] for i in idx])  # (sum N, T, S, S, 3)
            maps = await loop.run_in_executor(self._infer_pool, st.predictor.predict_maps, merged)  # (sum N, T, M, M)
            offset = 0
            for i in idx:
                n = len(crops[i])
                results[i] = (maps[offset:offset + n], st, len(crops))
                offset += n
        b = self._batches
        b["count"] += 1
        b["requests"] += len(crops)
        b["clips"] += sum(len(c) for c in crops)
        b["max_requests"] = max(b["max_requests"], len(crops))
        return results

    async def _read_frames(self, request: Request, work_side: int) -> np.ndarray:
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        known = ctype == "multipart/form-data" or ctype == "application/json" or ctype.startswith(VIDEO_CONTENT_TYPES)
        if not known:
            raise InputError(415, "unsupported_media_type",
                             f"content type {ctype or '(none)'!r}; send multipart/form-data with a `video` file, "
                             "a video/* body, or application/json frames")
        limit = self._limits.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
            raise InputError(413, "too_large", f"{declared} bytes exceeds the {limit}-byte limit")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit + 64 * 1024:  # multipart framing overhead allowance
                raise InputError(413, "too_large", f"body exceeds the {limit}-byte limit")
        body = bytes(body)
        loop = asyncio.get_running_loop()
        if ctype == "application/json":
            return await loop.run_in_executor(self._pre_pool, decode_frames_json, body, self._limits, work_side)
        if ctype == "multipart/form-data":
            body = await _multipart_video(request, body)
        return await loop.run_in_executor(self._pre_pool, decode_video, body, self._limits, work_side)

    @api.post("/v1/liveness")
    async def liveness(self, request: Request, heatmap: bool = False):
        """Score a short video. Query `heatmap=true` adds a PNG overlay of the predicted map (demo page)."""
        t0 = time.perf_counter()
        self._in_flight += 1
        try:
            return await self._liveness(request, heatmap, t0)
        finally:
            self._in_flight -= 1

    async def _liveness(self, request: Request, heatmap: bool, t0: float):
        from components.labeling.clips import LabelingError

        try:
            state = self._state  # the model this request is decoded, cut and scored for, even across a reload
            frames = await self._read_frames(request, state.predictor.inference.decode_side)
            t1 = time.perf_counter()
            loop = asyncio.get_running_loop()
            try:
                clips = await loop.run_in_executor(self._pre_pool, self._clips, frames, state)
            except LabelingError as exc:
                status, code = _LABELING_ERRORS.get(exc.reason, (422, exc.reason))
                raise InputError(status, code, str(exc)) from None
            t2 = time.perf_counter()
            maps, state, batch_requests = await self._score(clips.crops, state)
            t3 = time.perf_counter()
        except InputError as exc:
            return _error(exc)
        except Exception as exc:  # a bug, not bad input: JSON like every other answer, and logged in full
            log.exception("liveness request failed")
            return JSONResponse({"error": "internal", "detail": f"{type(exc).__name__}: {exc}"}, status_code=500)
        out = {
            **state.predictor.result(clips, maps),  # the same answer `eulernet predict` gives for these clips
            "frames": int(len(frames)),
            "model": {"name": state.info["name"], "version": state.info["version"]},
            "batch_requests": batch_requests,
        }
        if heatmap:
            from .render import overlay_png

            face_map = maps.mean(axis=(0, 1))  # (M, M): the clip- and frame-averaged map
            out["map"] = np.round(face_map, 4).tolist()
            out["heatmap_png"] = await loop.run_in_executor(self._pre_pool, overlay_png, clips.crops[0, 0], face_map)
        out["latency_ms"] = round((time.perf_counter() - t0) * 1000.0, 2)
        # Where the time went: read+decode, face finding+cropping, batch wait+model.
        out["timing_ms"] = {"decode": round((t1 - t0) * 1e3, 2), "faces": round((t2 - t1) * 1e3, 2),
                            "model": round((t3 - t2) * 1e3, 2)}
        return out

    @api.get("/healthz")
    async def healthz(self):
        st = self._state
        return {"status": "ok", "model": {"name": st.info["name"], "version": st.info["version"]},
                "reload_error": self._reload_error, "rejected_version": self._rejected_version}

    @api.get("/v1/model")
    async def model(self):
        st = self._state
        p = st.predictor
        return {
            **st.info,
            "loaded_at": st.loaded_at,
            "last_poll": self._last_poll,
            "reload_interval_s": self._reload_interval_s,
            "reload_error": self._reload_error,
            "variant": p.variant,
            "device": str(p.device),
            "threshold": p.decide(0.0)[1],
            "inference": p.inference.to_dict(),
            "preprocess": {"crop_size": p.crop_size, "mean": list(p.mean), "std": list(p.std)},
            "clip": {"length": p.clip_len, "interval": p.clip_interval, "max_clips": self._max_clips},
            "landmark_backend": p.landmark_backend,
            "batching": {"max_batch_size": self._score_batch._get_max_batch_size(),
                         "batch_wait_timeout_s": self._score_batch._get_batch_wait_timeout_s(), **self._batches},
            "limits": dataclasses.asdict(self._limits),
            "replica": {"pid": os.getpid(), "id": _replica_id()},
        }

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def demo(self):
        return HTMLResponse(Path(__file__).with_name("demo.html").read_text())


def build_app(model_name: str = "eulernet", tracking_uri: str | None = None, config: ServeConfig | None = None,
              checkpoint: str | None = None, deployment_options: dict | None = None):
    """The Serve application for ``models:/<model_name>@<alias>`` (or a local ``checkpoint`` file).

    ``deployment_options`` (autoscaling_config, ray_actor_options, max_ongoing_requests, user_config, ...)
    override the decorator defaults, typically read from infra/serve_config.yaml.
    """
    cfg = config or ServeConfig(model_name=model_name)
    opts = {"user_config": cfg.user_config(), **(deployment_options or {})}
    # Options given replace the decorator's ray_actor_options as a whole: start from its num_cpus. A cuda
    # replica reserves its GPU(s) here, so Ray places it on a GPU node and gives it a GPU of its own.
    actor = {"num_cpus": 1, **dict(opts.get("ray_actor_options") or {})}
    if cfg.gpus:
        if float(actor.get("num_gpus") or cfg.gpus) != cfg.gpus:
            raise ValueError(f"ray_actor_options.num_gpus = {actor['num_gpus']} but serve device {cfg.device!r} "
                             f"with num_gpus {cfg.num_gpus} asks for {cfg.gpus:g}")
        actor["num_gpus"] = cfg.gpus
    opts["ray_actor_options"] = actor
    deployment = LivenessService.options(**opts)
    return deployment.bind(
        model_name=model_name,
        alias=cfg.alias,
        tracking_uri=None if checkpoint else (absolute_tracking_uri(tracking_uri) if tracking_uri else runtime_uri()),
        checkpoint=str(Path(checkpoint).resolve()) if checkpoint else None,
        limits=dataclasses.asdict(cfg.limits()),
        preprocess_threads=cfg.preprocess_threads,
        torch_threads=cfg.torch_threads,
        device=cfg.device,
    )


def app_builder(args: dict[str, Any]):
    """Entry point for a Serve config file (``import_path: components.serving.app:app_builder``)."""
    from components.config import build

    args = dict(args or {})
    tracking_uri = args.pop("tracking_uri", None)
    checkpoint = args.pop("checkpoint", None)
    # The same typed check as params.yaml's `serve:` section: an unknown or mistyped arg fails the deploy.
    cfg = build(ServeConfig, args, "serve config args")
    return build_app(cfg.model_name, tracking_uri, cfg, checkpoint=checkpoint)
