"""Ray Serve liveness endpoint: FastAPI ingress, clip batching across requests, hot reload of the champion.

One deployment does everything so a request pays one hop: the request coroutine has the upload decoded in a
memory-capped decoder process (``decode.DecodePool``: a crash or timeout there is one request's 503), cuts face
clips on a small thread pool (dlib works outside the event loop), then awaits ``_score_batch``,
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
import functools
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
from ray.serve.schema import LoggingConfig

from components.runtime import absolute_tracking_uri
from components.runtime import tracking_uri as runtime_uri

from .access import ANONYMOUS, ApiKeys, RateLimiter, load_api_keys, presented_key, require_keys, retry_after_header
from .budget import UploadBudget
from .config import ServeConfig, check_device
from .decode import DecodePool
from .inputs import VIDEO_CONTENT_TYPES, ClipPlan, InputError, Limits
from .telemetry import InternalErrors, Metrics, request_id

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
    # The API's own description is served by LivenessService under the same key rule as scoring (below).
    docs_url=None, redoc_url=None, openapi_url=None,
    description="Face anti-spoofing on short videos. POST a video (multipart field `video`, or a raw "
                "`video/*` body) or `{\"frames\": [base64 PNG/JPEG, ...]}` to `/v1/liveness`.",
)
api.add_middleware(InternalErrors)  # any exception a route lets out: a bare 500 with the request id, logged once


def _canary() -> None:
    """The no-op task health checks submit to each thread pool: it runs unless the pool is wedged."""


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


# JSON logs: every line a replica writes (logs/serve/replica_*.log) carries the request id of the request it
# belongs to (Serve's context filter), so one id finds the access line, any warning and a 500's traceback.
@serve.deployment(name="LivenessService", max_ongoing_requests=32, health_check_period_s=10,
                  ray_actor_options={"num_cpus": 1}, logging_config=LoggingConfig(encoding="JSON"))
@serve.ingress(api)
class LivenessService:
    def __init__(self, model_name: str, alias: str = "champion", tracking_uri: str | None = None,
                 checkpoint: str | None = None, limits: dict | None = None, preprocess_threads: int = 2,
                 torch_threads: int = 1, device: str = "cpu", decode: dict | None = None,
                 rate_limit_per_s: float = 5.0, rate_limit_burst: int = 20, health_timeout_s: float = 20.0,
                 engine: str = "auto", onnx_threads: int = 2, allow_anonymous: bool = False,
                 max_inflight_upload_bytes: int = 100_000_000):
        # Keys from the replica's environment (EULERNET_API_KEY / EULERNET_API_KEY_FILE), checked first: a key file
        # that cannot be read, or no key without explicit anonymous access, stops the replica before any other work.
        keys = load_api_keys()
        require_keys(keys, allow_anonymous)
        import cv2
        import torch

        _require_device(device)  # before any model work: a GPU replica without a usable GPU stops here, clearly
        torch.set_num_threads(torch_threads)
        # Requests are the unit of parallelism here; OpenCV's own pool on top would oversubscribe the cores.
        cv2.setNumThreads(1)
        self._api_keys = ApiKeys(keys)
        self._rate_limiter = RateLimiter(rate_limit_per_s, rate_limit_burst)
        self._uploads = UploadBudget(max_inflight_upload_bytes)
        self._health_timeout_s = float(health_timeout_s)
        self._metrics = Metrics()
        self._model_name = model_name
        self._alias = alias
        self._tracking_uri = tracking_uri
        self._checkpoint = checkpoint
        self._device = device
        self._engine = engine
        self._torch_threads = int(torch_threads)
        self._onnx_threads = int(onnx_threads)
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
        # Uploads are decoded in worker processes (memory cap, deadline): a decoder crash is one request's 503.
        self._decoder = DecodePool(**(decode or {}))
        # One inference thread: torch already spreads one forward pass over torch_threads cores. OpenMP's
        # thread count is per calling thread (Ray sets OMP_NUM_THREADS for the worker), so set it in that thread.
        self._infer_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="infer", initializer=torch.set_num_threads, initargs=(torch_threads,))
        self._state: _Loaded | None = None
        self._set_state(self._load(None))
        self._warm_backends(preprocess_threads)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        if checkpoint is None:
            self._poller = threading.Thread(target=self._poll_loop, name="champion-poll", daemon=True)
            self._poller.start()

    # ---------------------------------------------------------------- model loading and hot reload
    def _load(self, version: str | None) -> _Loaded:
        from components.inference.predictor import Predictor

        # batch_size bounds one forward pass; the serve batch decides how many clips arrive together.
        if self._checkpoint is not None:
            # A local checkpoint has no registered graph, and auto never exports at load time (as for a registered
            # version without one): it runs torch. engine onnx exports the graph here, at replica start.
            engine = "torch" if self._engine == "auto" else self._engine
            predictor = Predictor.from_checkpoint(self._checkpoint, device=self._device, batch_size=64,
                                                  engine=engine, threads=self._onnx_threads)
            info = {"name": self._model_name, "version": "local", "alias": None, "source": self._checkpoint}
        else:
            from components.registry.load import load_version
            from components.registry.versions import alias_version
            from components.runtime import missing_sqlite_store

            if missing := missing_sqlite_store(self._tracking_uri):  # an outage or a wrong path: never a new store
                raise RuntimeError(f"no MLflow registry at {missing}")
            version = version or alias_version(self._model_name, self._alias, self._tracking_uri)
            if version is None:
                raise RuntimeError(f"model {self._model_name!r} has no '{self._alias}' alias to serve")
            predictor, info = load_version(self._model_name, version, alias=self._alias,
                                           tracking_uri=self._tracking_uri, device=self._device, batch_size=64,
                                           engine=self._engine, threads=self._onnx_threads)
            check_candidate(predictor, info, version)  # before the swap: a bad model never serves
        blank = np.zeros((1, predictor.clip_len, predictor.crop_size, predictor.crop_size, 3), np.uint8)
        # Warm-up (both ONNX Runtime sessions; torch has one path): first-call allocations stay out of requests.
        for busy in (False, True) if predictor.engine == "onnx" else (False,):
            predictor.predict_maps(blank, busy=busy)
        log.info("loaded %s v%s", info["name"], info["version"])
        return _Loaded(predictor, info, time.time())

    def _set_state(self, new: _Loaded) -> None:
        """Swap the served model (one assignment: readers see the old or the new one) and say so in the metrics."""
        old = self._state
        self._state = new
        previous = (old.info["name"], str(old.info["version"])) if old is not None else None
        self._metrics.serving(new.info["name"], str(new.info["version"]), previous)

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
        from components.registry.versions import alias_version
        from components.runtime import missing_sqlite_store

        while not self._stop.wait(self._reload_interval_s):
            try:
                self._last_poll = time.time()
                if missing := missing_sqlite_store(self._tracking_uri):  # gone in an outage: keep serving
                    raise RuntimeError(f"no MLflow registry at {missing}")
                version = alias_version(self._model_name, self._alias, self._tracking_uri)
                if version is not None and version == self._rejected_version:
                    continue  # refused once (not downloaded again each poll); /v1/model keeps saying why
                if version is not None and version != self._state.info["version"]:
                    self._set_state(self._load(version))
                    self._rejected_version = None
                self._reload_error = None
            except CandidateRejected as exc:  # the checks failed: keep the loaded model, do not retry this one
                self._rejected_version = version
                self._reload_error = str(exc)
                log.warning("champion reload refused: %s", exc)
            except Exception as exc:  # keep serving the loaded model; /v1/model and /readyz report it
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

    async def _problems(self) -> list[str]:
        """Why this replica cannot serve (empty: it can): no model, a dead champion poller, or a thread pool that
        does not run a no-op task within ``health_timeout_s`` (every worker stuck). A failed or refused reload is
        not a problem here: the loaded model still serves, and /v1/model says why the reload failed."""
        problems = []
        if self._state is None:
            problems.append("no model loaded")
        if self._poller is not None and not self._poller.is_alive():
            problems.append("the champion poller thread is not running")
        timeout = self._health_timeout_s

        async def canary(name: str, pool: concurrent.futures.Executor) -> str | None:
            try:
                future = pool.submit(_canary)
            except RuntimeError:  # shut down
                return f"the {name} pool is shut down"
            try:
                await asyncio.wait_for(asyncio.wrap_future(future), timeout)
            except TimeoutError:
                future.cancel()  # not left queued behind the stuck work
                return f"the {name} pool ran no task within {timeout:g} s (wedged)"
            return None

        found = await asyncio.gather(canary("preprocessing", self._pre_pool), canary("inference", self._infer_pool))
        decoder = self._decoder.health()  # every decode worker dead for a while, or one stuck past its deadline
        return problems + [p for p in found if p] + ([decoder] if decoder else [])

    async def check_health(self) -> None:
        """Serve's replica health hook (every ``health_check_period_s``): raising makes Serve replace the replica."""
        problems = await self._problems()
        if problems:
            log.error("replica unhealthy: %s", "; ".join(problems))
            raise RuntimeError("; ".join(problems))

    def __del__(self):
        if hasattr(self, "_stop"):
            self._stop.set()
        close = getattr(getattr(self, "_decoder", None), "close", None)
        if close is not None:  # tests may stand a plain namespace in for the decoder pool
            close()

    # ---------------------------------------------------------------- request path
    def _backend(self, predictor):
        # One landmark model per preprocessing thread (dlib detectors are not shared across threads).
        backends = getattr(self._local, "backends", None)
        if backends is None:
            backends = self._local.backends = {}
        key = (predictor.landmark_backend, repr(sorted(predictor.landmark_options.items())))
        if key not in backends:
            from components.inference.predictor import make_landmark_backend

            backends[key] = make_landmark_backend(predictor.inference)
        return backends[key]

    def _clips(self, frames: np.ndarray, state: _Loaded, max_clips: int):
        from components.data.clips import clip_span

        p = state.predictor
        need = clip_span(p.clip_len, p.clip_interval)
        if len(frames) < need:
            raise InputError(422, "too_short", f"{len(frames)} frames; one clip needs {need} "
                                               f"({p.clip_len} frames at interval {p.clip_interval})")
        # The max_clips the frames were decoded for (only those clips' frames carry pixels).
        return p.extract_clips(frames, backend=self._backend(p), max_clips=max_clips)

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
        # Other requests in the replica are decoding or finding faces on the same cores: the model's extra threads
        # would only wait for them. A lone request gets them all (serve.onnx_threads).
        busy = self._in_flight > len(crops)
        for st, idx in groups.values():
            merged = np.concatenate([crops[i] for i in idx])  # (sum N, T, S, S, 3)
            maps = await loop.run_in_executor(self._infer_pool, functools.partial(
                st.predictor.predict_maps, merged, busy=busy))  # (sum N, T, M, M)
            offset = 0
            for i in idx:
                n = len(crops[i])
                results[i] = (maps[offset:offset + n], st, len(crops))
                offset += n
        self._metrics.batch.observe(len(crops))
        b = self._batches
        b["count"] += 1
        b["requests"] += len(crops)
        b["clips"] += sum(len(c) for c in crops)
        b["max_requests"] = max(b["max_requests"], len(crops))
        return results

    async def _read_frames(self, request: Request, state: _Loaded, max_clips: int) -> np.ndarray:
        """The request's frames at the model's decode size, decoded in a worker process (``decode.DecodePool``);
        only the frames of the clips ``state``'s model will score with ``max_clips`` carry pixels."""
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
        need = int(declared) if declared and declared.isdigit() else limit + 64 * 1024
        if not self._uploads.reserve(need):
            raise InputError(503, "busy", f"the replica holds {self._uploads.used} upload bytes (budget "
                                          f"{self._uploads.cap}); this {need}-byte request would not fit")
        try:
            return await self._read_and_decode(request, state, max_clips, ctype, limit)
        finally:
            self._uploads.release(need)

    async def _read_and_decode(self, request: Request, state: _Loaded, max_clips: int, ctype: str,
                               limit: int) -> np.ndarray:
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit + 64 * 1024:  # multipart framing overhead allowance
                raise InputError(413, "too_large", f"body exceeds the {limit}-byte limit")
        body = bytes(body)
        p = state.predictor
        work_side = p.inference.decode_side
        plan = ClipPlan(int(p.clip_len), int(p.clip_interval), max_clips)
        if ctype == "application/json":
            return await self._decoder.decode_frames_json(body, self._limits, work_side, plan)
        if ctype == "multipart/form-data":
            body = await _multipart_video(request, body)
        return await self._decoder.decode_video(body, self._limits, work_side, plan)

    # ---------------------------------------------------------------- access, answers
    def _caller(self, request: Request) -> str | None:
        """Who is asking: the key id of a valid API key, ``anonymous`` when no key is configured, else None."""
        if not self._api_keys.enabled:
            return ANONYMOUS
        return self._api_keys.identify(presented_key(request.headers))

    def _reply(self, status: int, body: dict, rid: str, headers: dict | None = None,
               scoring: bool = True) -> JSONResponse:
        """A JSON answer other than a score, with the request id; counted in the metrics when it is a scoring one."""
        if scoring:
            self._metrics.answered(status, body.get("error"))  # the metric keeps the precise code
        if status >= 500:
            # A 5xx body never describes the inside (decoder state, paths): the log line and the metric do, under
            # the same request id. A 503 is the client's cue to retry, and says when.
            log.warning("request %s answered %d %s: %s", rid, status, body.get("error"), body.get("detail"))
            body = {"error": "internal"}
            if status == 503:
                headers = {"Retry-After": "1", **(headers or {})}
        return JSONResponse({**body, "request_id": rid}, status_code=status, headers=headers)

    def _unauthorized(self, rid: str, scoring: bool) -> JSONResponse:
        return self._reply(401, {"error": "unauthorized",
                                 "detail": "missing or invalid API key: send `Authorization: Bearer <key>` or "
                                           "`X-API-Key: <key>`"},
                           rid, headers={"WWW-Authenticate": 'Bearer realm="eulernet"'}, scoring=scoring)

    @api.post("/v1/liveness")
    async def liveness(self, request: Request, heatmap: bool = False):
        """Score a short video. Query `heatmap=true` adds a PNG overlay of the predicted map (demo page)."""
        t0 = time.perf_counter()
        rid = request_id(request.headers)
        caller = self._caller(request)
        if caller is None:
            return self._unauthorized(rid, scoring=True)
        wait = self._rate_limiter.take(caller)  # before any byte of the body is read
        if wait > 0:
            return self._reply(429, {"error": "rate_limited",
                                     "detail": f"more than {self._rate_limiter.rate:g} requests/s (burst "
                                               f"{self._rate_limiter.burst}) for this caller; retry later"},
                               rid, headers={"Retry-After": retry_after_header(wait)})
        self._in_flight += 1
        try:
            return await self._liveness(request, heatmap, t0, rid)
        finally:
            self._in_flight -= 1

    async def _liveness(self, request: Request, heatmap: bool, t0: float, rid: str):
        from components.face.clips import LabelingError

        try:
            state = self._state  # the model this request is decoded, cut and scored for, even across a reload
            max_clips = self._max_clips  # and its clip count, even across a reconfigure
            frames = await self._read_frames(request, state, max_clips)
            t1 = time.perf_counter()
            loop = asyncio.get_running_loop()
            try:
                clips = await loop.run_in_executor(self._pre_pool, self._clips, frames, state, max_clips)
            except LabelingError as exc:
                status, code = _LABELING_ERRORS.get(exc.reason, (422, exc.reason))
                raise InputError(status, code, str(exc)) from None
            t2 = time.perf_counter()
            maps, state, batch_requests = await self._score(clips.crops, state)
            t3 = time.perf_counter()
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
                out["heatmap_png"] = await loop.run_in_executor(self._pre_pool, overlay_png, clips.crops[0, 0],
                                                                face_map)
        except InputError as exc:
            return self._reply(exc.status, exc.to_json(), rid)
        except Exception:  # a bug, not bad input: logged once with its traceback; the answer says nothing of it
            log.exception("liveness request %s failed", rid)
            return self._reply(500, {"error": "internal"}, rid)
        total = time.perf_counter() - t0
        out["latency_ms"] = round(total * 1000.0, 2)
        # Where the time went: read+decode, face finding+cropping, batch wait+model.
        out["timing_ms"] = {"decode": round((t1 - t0) * 1e3, 2), "faces": round((t2 - t1) * 1e3, 2),
                            "model": round((t3 - t2) * 1e3, 2)}
        out["request_id"] = rid
        self._metrics.stages({"decode": t1 - t0, "faces": t2 - t1, "model": t3 - t2, "total": total})
        self._metrics.scored(out)
        self._metrics.answered(200, None)
        return out

    # ---------------------------------------------------------------- health, model
    @api.get("/healthz")
    async def healthz(self, request: Request):
        """Liveness: the replica's event loop answers. Says nothing about the model (that is /readyz)."""
        return {"status": "ok", "request_id": request_id(request.headers)}

    @api.get("/readyz")
    async def readyz(self, request: Request):
        """Readiness: a model is loaded, the champion poller runs and both thread pools run a task (the checks
        ``check_health`` makes). 200 when ready, else 503 naming what is wrong."""
        problems = await self._problems()
        st = self._state
        body = {"status": "not_ready" if problems else "ready", "problems": problems,
                "model": None if st is None else {"name": st.info["name"], "version": st.info["version"]},
                "reload_failing": self._reload_error is not None, "rejected_version": self._rejected_version,
                "request_id": request_id(request.headers)}
        if problems:
            return JSONResponse({"error": "not_ready", **body}, status_code=503)
        return body

    @api.get("/v1/model")
    async def model(self, request: Request, internal: bool = False):
        """What this replica serves. Internal details (artifact source, registry tags, tracking URI, checkpoint
        path, reload error text, pid) only with `internal=true` and a valid API key."""
        rid = request_id(request.headers)
        caller = self._caller(request)
        if caller is None:
            return self._unauthorized(rid, scoring=False)
        if internal and caller == ANONYMOUS:
            return self._reply(403, {"error": "forbidden",
                                     "detail": "internal=true needs an API key: configure EULERNET_API_KEY (or "
                                               "EULERNET_API_KEY_FILE) on the replicas and send it"},
                               rid, scoring=False)
        st = self._state
        p = st.predictor
        out = {
            **{k: v for k, v in st.info.items() if k not in ("source", "tags")},
            "loaded_at": st.loaded_at,
            "last_poll": self._last_poll,
            "reload_interval_s": self._reload_interval_s,
            "reload_failing": self._reload_error is not None,
            "rejected_version": self._rejected_version,
            "variant": p.variant,
            "device": str(p.device),
            "engine": p.engine,
            "threshold": p.decide(0.0)[1],
            "inference": p.inference.to_dict(),
            "preprocess": {"crop_size": p.crop_size, "mean": list(p.mean), "std": list(p.std)},
            "clip": {"length": p.clip_len, "interval": p.clip_interval, "max_clips": self._max_clips},
            "landmark_backend": p.landmark_backend,
            "batching": {"max_batch_size": self._score_batch._get_max_batch_size(),
                         "batch_wait_timeout_s": self._score_batch._get_batch_wait_timeout_s(), **self._batches},
            "limits": dataclasses.asdict(self._limits),
            "access": {"api_key": self._api_keys.enabled, "rate_limit_per_s": self._rate_limiter.rate,
                       "rate_limit_burst": self._rate_limiter.burst},
            "replica": {"id": _replica_id()},
            "request_id": rid,
        }
        if internal:
            out["internal"] = {"source": st.info.get("source"), "tags": st.info.get("tags"),
                               "tracking_uri": self._tracking_uri, "checkpoint": self._checkpoint,
                               "reload_error": self._reload_error, "pid": os.getpid()}
        return out

    # ---------------------------------------------------------------- the API's description, the demo page
    # The OpenAPI document and its two viewers answer under the scoring rule: a key, unless anonymous access is
    # on. The demo page is static (no model detail, no data) and always served; it sends the key its field holds.
    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request):
        rid = request_id(request.headers)
        if self._caller(request) is None:
            return self._unauthorized(rid, scoring=False)
        return JSONResponse(api.openapi())

    @api.get("/docs", include_in_schema=False)
    async def docs(self, request: Request):
        from fastapi.openapi.docs import get_swagger_ui_html

        if self._caller(request) is None:
            return self._unauthorized(request_id(request.headers), scoring=False)
        return get_swagger_ui_html(openapi_url=self._openapi_path(request), title=api.title)

    @api.get("/redoc", include_in_schema=False)
    async def redoc(self, request: Request):
        from fastapi.openapi.docs import get_redoc_html

        if self._caller(request) is None:
            return self._unauthorized(request_id(request.headers), scoring=False)
        return get_redoc_html(openapi_url=self._openapi_path(request), title=api.title)

    @staticmethod
    def _openapi_path(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/") + "/openapi.json"

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
        onnx_threads=cfg.onnx_threads,
        device=cfg.device,
        rate_limit_per_s=cfg.rate_limit_per_s,
        rate_limit_burst=cfg.rate_limit_burst,
        health_timeout_s=cfg.health_timeout_s,
        decode=cfg.decode_options(),
        engine=cfg.engine,
        allow_anonymous=cfg.allow_anonymous,
        max_inflight_upload_bytes=cfg.max_inflight_upload_bytes,
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
