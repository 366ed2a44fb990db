"""Request ids and Prometheus metrics of the liveness endpoint.

Metrics go through ``ray.serve.metrics`` (Ray's metrics agent exports them in Prometheus format on each node's
metrics export port, prefixed ``ray_``, tagged with the application, deployment and replica; counters get a
``_total`` suffix). docs/serving.md lists them with an example query each.
"""
from __future__ import annotations

import json
import logging
import re
import uuid

# Seconds; a request spends ~10 ms decoding, ~100 ms finding faces and ~100-400 ms in the model on a CPU.
LATENCY_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
SCORE_BOUNDARIES = [round(0.05 * i, 2) for i in range(1, 20)]  # 0.05 .. 0.95
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32]
# What uploads look like (the request log's profile columns, as histograms): drift shows on a dashboard before
# `eulernet monitor` is run.
HEIGHT_BOUNDARIES = [144, 240, 360, 480, 720, 1080, 1440, 1920]
FACE_BOUNDARIES = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7]
BRIGHTNESS_BOUNDARIES = [16, 32, 64, 96, 128, 160, 192, 224]
STAGES = ("decode", "faces", "model", "total")


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id(headers) -> str:
    """The request's id: the ``X-Request-ID`` Serve's proxy puts on every request (the caller's own, or one it
    generates; it also returns it as a response header), else Serve's request context, else a fresh one."""
    rid = headers.get("x-request-id") if headers is not None else None
    if rid and _REQUEST_ID.fullmatch(rid):
        return rid
    if rid:  # a client's id goes into logs and answers: only short plain ones are kept, the rest replaced
        return uuid.uuid4().hex
    try:
        from ray.serve.context import _get_serve_request_context

        rid = _get_serve_request_context().request_id
    except Exception:  # outside Serve
        rid = ""
    return rid or uuid.uuid4().hex


class Metrics:
    """The replica's metric objects (created in the replica: Serve adds its application/deployment/replica tags)."""

    def __init__(self):
        from ray.serve.metrics import Counter, Gauge, Histogram

        self.requests = Counter(
            "eulernet_requests", description="Liveness requests answered, by HTTP status and error code "
                                             "(error is 'none' on a 200).", tag_keys=("status", "error"))
        self.latency = Histogram(
            "eulernet_stage_seconds", description="Time per request stage: decode (read + decode the upload), "
                                                  "faces (landmarks + crops), model (batch wait + forward pass), total.",
            boundaries=LATENCY_BOUNDARIES, tag_keys=("stage",))
        self.decisions = Counter("eulernet_decisions", description="Scored requests by decision.",
                                 tag_keys=("decision",))
        self.score = Histogram("eulernet_score", description="Liveness score of scored requests (0 attack .. 1 live).",
                               boundaries=SCORE_BOUNDARIES)
        self.faceless = Counter("eulernet_faceless_frames", description="Sampled frames of scored requests in which "
                                                                       "no face was found (borrowed a neighbour's).")
        self.batch = Histogram("eulernet_batch_requests", description="Requests merged into one forward pass.",
                               boundaries=BATCH_BOUNDARIES)
        self.registry_failures = Counter(
            "eulernet_registry_read_failures", description="Times this replica could not read the registry (start "
                                                           "or champion poll); it kept serving the model it had.")
        self.input_height = Histogram("eulernet_input_height", description="Frame height of scored uploads, pixels "
                                                                           "(before the decode downscale).",
                                      boundaries=HEIGHT_BOUNDARIES)
        self.face_fraction = Histogram("eulernet_face_fraction", description="Face box width over frame width of "
                                                                             "scored requests.",
                                       boundaries=FACE_BOUNDARIES)
        self.brightness = Histogram("eulernet_brightness", description="Mean luma (0-255) of scored requests' frames.",
                                    boundaries=BRIGHTNESS_BOUNDARIES)
        self.model = Gauge("eulernet_model_info", description="1 for the model version this replica serves, 0 for "
                                                              "versions it served before.", tag_keys=("model", "version"))

    def answered(self, status: int, error: str | None) -> None:
        self.requests.inc(tags={"status": str(status), "error": error or "none"})

    def stages(self, seconds: dict[str, float]) -> None:
        for stage, value in seconds.items():
            self.latency.observe(max(0.0, value), tags={"stage": stage})

    def scored(self, result: dict) -> None:
        self.decisions.inc(tags={"decision": str(result.get("decision"))})
        self.score.observe(float(result["score"]))
        missing = int(result.get("n_frames_no_face") or 0)
        if missing:
            self.faceless.inc(missing)

    def profiled(self, record: dict) -> None:
        """A request's monitoring record (``components.data.requests.request_record``)."""
        self.input_height.observe(float(record["source_height"]))
        self.brightness.observe(float(record["brightness"]))
        if record["face_fraction"] == record["face_fraction"]:  # NaN: no face box
            self.face_fraction.observe(float(record["face_fraction"]))

    def swapped(self, new, old) -> None:
        """The slot's swap hook: ``new`` and ``old`` are loaded models (``old`` None at start, and when the health
        check re-records the served one)."""
        previous = (old.info["name"], str(old.info["version"])) if old is not None else None
        self.serving(new.info["name"], str(new.info["version"]), previous)

    def serving(self, name: str, version: str, previous: tuple[str, str] | None) -> None:
        if previous is not None and previous != (name, version):
            self.model.set(0, tags={"model": previous[0], "version": previous[1]})
        self.model.set(1, tags={"model": name, "version": version})


def open_request_log(config, replica: str | None):
    """The replica's request log (``components.data.requests.RequestLog``), or None when
    ``serve.request_log_dir`` is empty."""
    if not config.request_log_dir:
        return None
    import os

    from components.data.requests import RequestLog

    return RequestLog(config.request_log_dir, replica or f"pid{os.getpid()}", int(config.request_log_max_mb * 1e6),
                      config.request_log_backups)


def profile_request(metrics, request_log, rid: str, decoded, out: dict) -> None:
    """What a scored upload looked like (``decoded``: the decoder's ``Decoded``, ``out``: the answer): to the
    metrics always, to the request log when it is on. Never raises into the request."""
    from components.data.requests import request_record

    try:
        record = request_record(request_id=rid, source=decoded.source, fps=decoded.fps, frames=decoded.n,
                                pixels=decoded.pixels, result=out)
    except (KeyError, TypeError, ValueError):  # an answer without a score never reaches here; say so if one does
        logging.getLogger("ray.serve").warning("request %s: no monitoring record", rid, exc_info=True)
        return
    metrics.profiled(record)
    if request_log is not None:
        request_log.write(record)


class NullMetrics:
    """Stands in outside a replica (unit use): records nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class InternalErrors:
    """ASGI middleware, the last line behind every route: an exception no route handled is answered
    ``{"error": "internal", "request_id": ...}`` (500, nothing of the exception in it) and logged once, with its
    traceback and the request id. (The scoring route catches its own and counts them in the metrics.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            from starlette.datastructures import Headers

            rid = request_id(Headers(scope=scope))
            logging.getLogger("ray.serve").exception("request %s to %s failed", rid, scope.get("path"))
            if started:  # the answer is already on its way: nothing more can be said to this client
                return
            body = json.dumps({"error": "internal", "request_id": rid}).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
