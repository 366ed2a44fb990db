"""Ray Serve liveness endpoint: FastAPI ingress, clip batching across requests, hot reload of the champion.

One deployment does everything so a request pays one hop: the request coroutine has the upload decoded in a
memory-capped decoder process (``decode.DecodePool``: a crash or timeout there is one request's 503), cuts face
clips on a small thread pool (dlib works outside the event loop), then awaits ``_score_batch``,
a ``@serve.batch`` method that merges the clips of every request waiting in the replica into one forward pass.
Each queued item carries the loaded model it was cut for, so a reload in the middle of a batch never mixes
crop sizes or versions; the response names the version that actually scored it. ``_score`` holds requests
while a batch runs so that, under load, they are released together and merged (see its docstring).

Which model answers is ``slot.ModelSlot``'s business; reading an upload ``upload``'s, canaries ``health``'s, error
bodies and ``/v1/model`` ``answers``'. No ``from __future__ import annotations``: FastAPI reads the endpoint
annotations at runtime (a string ``Request`` would become a query parameter).
"""

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from ray import serve
from ray.serve.schema import LoggingConfig

from components.registry.card import model_card
from components.runtime import absolute_tracking_uri
from components.runtime import tracking_uri as runtime_uri

from . import upload
from .access import ANONYMOUS, ApiKeys, RateLimiter, load_api_keys, presented_key, require_keys, retry_after_header
from .answers import LABELING_ERRORS, UNAUTHORIZED, UNAUTHORIZED_HEADERS, describe, error_response
from .budget import UploadBudget
from .config import USER_CONFIG_KEYS, ServeConfig, replica_actor_options
from .decode import DecodePool
from .health import pool_problems, replica_id
from .inputs import ClipPlan, Decoded, InputError
from .sandbox import protect_replica
from .slot import Loaded, build_slot, require_device
from .telemetry import InternalErrors, Metrics, open_request_log, profile_request, request_id

log = logging.getLogger("ray.serve")

api = FastAPI(
    title="EulerNet liveness",
    version="1.0",
    # The API's own description is served by LivenessService under the same key rule as scoring (below).
    docs_url=None, redoc_url=None, openapi_url=None,
    description="Face anti-spoofing on short videos. POST a video (multipart field `video`, or a raw "
                "`video/*` body) or `{\"frames\": [base64 PNG/JPEG, ...]}` to `/v1/liveness`.",
)
api.add_middleware(InternalErrors)  # any exception a route lets out: a bare 500 with the request id, logged once


# JSON logs: every line a replica writes (logs/serve/replica_*.log) carries the request id of the request it
# belongs to (Serve's context filter), so one id finds the access line, any warning and a 500's traceback.
@serve.deployment(name="LivenessService", max_ongoing_requests=32, health_check_period_s=10,
                  ray_actor_options={"num_cpus": 1}, logging_config=LoggingConfig(encoding="JSON"))
@serve.ingress(api)
class LivenessService:
    def __init__(self, config: ServeConfig, tracking_uri: str | None = None, checkpoint: str | None = None):
        # Keys from the replica's environment (EULERNET_API_KEY / EULERNET_API_KEY_FILE), checked first: a key file
        # that cannot be read, or no key without explicit anonymous access, stops the replica before any other work.
        keys = load_api_keys()
        require_keys(keys, config.allow_anonymous)
        import cv2
        import torch

        require_device(config.device)  # before any model work: a GPU replica without a usable GPU stops here
        protect_replica()  # its environment (keys, tokens) and memory stay its own (sandbox.py)
        torch.set_num_threads(config.torch_threads)
        # Requests are the unit of parallelism here; OpenCV's own pool on top would oversubscribe the cores.
        cv2.setNumThreads(1)
        self._cfg = config
        self._tracking_uri, self._checkpoint = tracking_uri, checkpoint
        self._api_keys = ApiKeys(keys)
        self._rate_limiter = RateLimiter(config.rate_limit_per_s, config.rate_limit_burst)
        self._uploads = UploadBudget(config.max_inflight_upload_bytes)
        self._limits = config.limits()
        self._max_clips = config.max_clips
        self._metrics = Metrics()
        self._batches = {"count": 0, "requests": 0, "clips": 0, "max_requests": 0}
        self._model_idle: asyncio.Event | None = None  # created on the replica's event loop at first use
        self._in_flight = 0  # liveness requests inside this replica, any stage
        # dlib objects are not documented thread-safe: one landmark backend per preprocessing thread.
        self._local = threading.local()
        self._pre_pool = concurrent.futures.ThreadPoolExecutor(config.preprocess_threads, thread_name_prefix="prep")
        # Uploads are decoded in worker processes (memory cap, deadline): a decoder crash is one request's 503.
        self._decoder = DecodePool(**config.decode_options())
        # One inference thread: torch already spreads one forward pass over torch_threads cores. OpenMP's
        # thread count is per calling thread (Ray sets OMP_NUM_THREADS for the worker), so set it in that thread.
        self._infer_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="infer", initializer=torch.set_num_threads, initargs=(config.torch_threads,))
        self._slot = build_slot(config, tracking_uri, checkpoint, on_swap=self._metrics.swapped,
                                on_registry_failure=self._metrics.registry_failures.inc)
        self._slot.start()
        self._warm_backends(config.preprocess_threads)
        self._request_log = open_request_log(config, replica_id())  # None when off

    def _warm_backends(self, n_threads: int) -> None:
        """Load one landmark model in every preprocessing thread now (~2 s each), not in the first requests
        that happen to land on a fresh thread. The barrier makes each thread take exactly one warm-up task."""
        barrier = threading.Barrier(n_threads)
        predictor = self._slot.current.predictor

        def warm() -> None:
            self._backend(predictor)
            barrier.wait(timeout=300)

        for f in [self._pre_pool.submit(warm) for _ in range(n_threads)]:
            f.result()

    def reconfigure(self, user_config: dict) -> None:
        """Batching, clip count and poll interval change live (``serve deploy`` with a new user_config)."""
        if unknown := set(user_config) - set(USER_CONFIG_KEYS):
            raise ValueError(f"unknown user_config keys {sorted(unknown)}")
        if "max_batch_size" in user_config:
            self._score_batch.set_max_batch_size(int(user_config["max_batch_size"]))
        if "batch_wait_timeout_s" in user_config:
            self._score_batch.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))
        self._slot.interval_s = float(user_config.get("reload_interval_s", self._slot.interval_s))
        self._max_clips = int(user_config.get("max_clips", self._max_clips))

    async def _problems(self) -> list[str]:
        """Why this replica cannot serve (empty: it can): no model, a dead champion poller, or a thread pool that
        does not run a no-op task within ``health_timeout_s`` (every worker stuck). A failed or refused reload is
        not a problem here: the loaded model still serves, and /v1/model says why the reload failed."""
        problems = self._slot.problems()
        problems += await pool_problems({"preprocessing": self._pre_pool, "inference": self._infer_pool},
                                        self._cfg.health_timeout_s)
        decoder = self._decoder.health()  # every decode worker dead for a while, or one stuck past its deadline
        return problems + ([decoder] if decoder else [])

    async def check_health(self) -> None:
        """Serve's replica health hook (every ``health_check_period_s``): raising makes Serve replace the replica.
        It also re-records the model gauge: Ray's exporter drops a gauge series not recorded for a while."""
        if problems := await self._problems():
            log.error("replica unhealthy: %s", "; ".join(problems))
            raise RuntimeError("; ".join(problems))
        self._metrics.swapped(self._slot.current, None)

    def __del__(self):
        if hasattr(self, "_slot"):
            self._slot.stop()
        if close := getattr(getattr(self, "_decoder", None), "close", None):  # tests may stand a namespace in
            close()

    # ---------------------------------------------------------------- request path
    def _backend(self, predictor):
        # One landmark model per preprocessing thread (dlib detectors are not shared across threads).
        backends = self._local.__dict__.setdefault("backends", {})
        key = (predictor.landmark_backend, repr(sorted(predictor.landmark_options.items())))
        if key not in backends:
            from components.inference.predictor import make_landmark_backend

            backends[key] = make_landmark_backend(predictor.inference)
        return backends[key]

    def _clips(self, frames: np.ndarray, state: Loaded, max_clips: int):
        from components.data.clips import clip_span

        p = state.predictor
        need = clip_span(p.clip_len, p.clip_interval)
        if len(frames) < need:
            raise InputError(422, "too_short", f"{len(frames)} frames; one clip needs {need} "
                                               f"({p.clip_len} frames at interval {p.clip_interval})")
        # The max_clips the frames were decoded for (only those clips' frames carry pixels).
        return p.extract_clips(frames, backend=self._backend(p), max_clips=max_clips)

    async def _score(self, crops: np.ndarray, state: Loaded):
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
    async def _score_batch(self, crops: list[np.ndarray], states: list[Loaded]) -> list[tuple]:
        self._model_idle.clear()
        try:
            return await self._run_batch(crops, states)
        finally:
            self._model_idle.set()

    async def _run_batch(self, crops: list[np.ndarray], states: list[Loaded]) -> list[tuple]:
        results: list[tuple | None] = [None] * len(crops)
        groups: dict[int, tuple[Loaded, list[int]]] = {}
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

    async def _read_frames(self, request: Request, state: Loaded, max_clips: int) -> Decoded:
        """The request's frames at the model's decode size, decoded in a worker process (``decode.DecodePool``);
        only the frames of the clips ``state``'s model will score with ``max_clips`` carry pixels."""
        ctype = upload.content_type(request)
        limit = self._limits.max_upload_bytes
        held = upload.reserve(request, limit, self._uploads)
        try:
            body = await upload.read_body(request, limit)
            p = state.predictor
            work_side = p.inference.decode_side
            plan = ClipPlan(int(p.clip_len), int(p.clip_interval), max_clips, p.inference.window_seconds)
            if ctype == "application/json":
                return await self._decoder.decode_frames_json(body, self._limits, work_side, plan)
            if ctype == "multipart/form-data":
                body = upload.multipart_video(request, body)
            return await self._decoder.decode_video(body, self._limits, work_side, plan)
        finally:
            self._uploads.release(held)

    # ---------------------------------------------------------------- access, answers
    def _caller(self, request: Request) -> str | None:
        """Who is asking: the key id of a valid API key, ``anonymous`` when no key is configured, else None."""
        return self._api_keys.identify(presented_key(request.headers)) if self._api_keys.enabled else ANONYMOUS

    def _reply(self, status: int, body: dict, rid: str, headers: dict | None = None,
               scoring: bool = True) -> JSONResponse:
        """:func:`error_response`, counted in the metrics when it answers a scoring request (precise code kept)."""
        if scoring:
            self._metrics.answered(status, body.get("error"))
        return error_response(status, body, rid, headers)

    def _unauthorized(self, rid: str, scoring: bool) -> JSONResponse:
        return self._reply(401, UNAUTHORIZED, rid, headers=UNAUTHORIZED_HEADERS, scoring=scoring)

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
            state = self._slot.current  # the model this request is decoded, cut and scored for, even across a reload
            max_clips = self._max_clips  # and its clip count, even across a reconfigure
            decoded = await self._read_frames(request, state, max_clips)
            frames = decoded.to_array()  # (F, H, W, 3): only the clips' frames carry pixels
            t1 = time.perf_counter()
            loop = asyncio.get_running_loop()
            try:
                clips = await loop.run_in_executor(self._pre_pool, self._clips, frames, state, max_clips)
            except LabelingError as exc:
                status, code = LABELING_ERRORS.get(exc.reason, (422, exc.reason))
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
        profile_request(self._metrics, self._request_log, rid, decoded, out)
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
        slot = self._slot
        st = slot.current
        body = {"status": "not_ready" if problems else "ready", "problems": problems,
                "model": None if st is None else {"name": st.info["name"], "version": st.info["version"]},
                "reload_failing": slot.reload_error is not None, "rejected_version": slot.rejected_version,
                "registry_failures": slot.registry_failures,
                "last_known_good": bool(st is not None and st.info.get("last_known_good")),
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
        batching = {"max_batch_size": self._score_batch._get_max_batch_size(),
                    "batch_wait_timeout_s": self._score_batch._get_batch_wait_timeout_s(), **self._batches}
        access = {"api_key": self._api_keys.enabled, "rate_limit_per_s": self._rate_limiter.rate,
                  "rate_limit_burst": self._rate_limiter.burst}
        where = {"tracking_uri": self._tracking_uri, "checkpoint": self._checkpoint,
                 "decoder": self._decoder.stats()} if internal else None
        return {**describe(self._slot, max_clips=self._max_clips, batching=batching, limits=self._limits,
                           access=access, replica=replica_id(), internal=where), "request_id": rid}

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

    @api.get("/v1/model/card")
    async def card(self, request: Request):
        """The served model's card (markdown): the text `eulernet register` logged for this version."""
        if self._caller(request) is None:
            return self._unauthorized(request_id(request.headers), scoring=False)
        st = self._slot.current
        return PlainTextResponse(model_card(st.info, st.predictor.inference), media_type="text/markdown")

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
    opts["ray_actor_options"] = replica_actor_options(cfg, opts.get("ray_actor_options"))
    deployment = LivenessService.options(**opts)
    # The replica takes the checked ServeConfig as a whole: one set of defaults, the dataclass's.
    return deployment.bind(
        dataclasses.replace(cfg, model_name=model_name),
        tracking_uri=None if checkpoint else (absolute_tracking_uri(tracking_uri) if tracking_uri else runtime_uri()),
        checkpoint=str(Path(checkpoint).resolve()) if checkpoint else None,
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
