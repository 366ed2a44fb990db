"""The answers a replica gives besides a score: error bodies (5xx scrubbed), 401, and its model's description."""
from __future__ import annotations

import dataclasses
import logging
import os

from fastapi.responses import JSONResponse

log = logging.getLogger("ray.serve")

# LabelingError.reason -> (HTTP status, error code)
LABELING_ERRORS = {
    "too_short": (422, "too_short"),
    "no_face": (422, "no_face"),
    "multiple_faces": (422, "multiple_faces"),
}

UNAUTHORIZED = {"error": "unauthorized",
                "detail": "missing or invalid API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"}
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="eulernet"'}


def error_response(status: int, body: dict, rid: str, headers: dict | None = None) -> JSONResponse:
    """A JSON answer other than a score, with the request id. A 5xx body never describes the inside (decoder
    state, paths): the log line does, under the same request id. A 503 is the client's cue to retry, and says
    when."""
    if status >= 500:
        log.warning("request %s answered %d %s: %s", rid, status, body.get("error"), body.get("detail"))
        body = {"error": "internal"}
        if status == 503:
            headers = {"Retry-After": "1", **(headers or {})}
    return JSONResponse({**body, "request_id": rid}, status_code=status, headers=headers)


def describe(slot, *, max_clips: int, batching: dict, limits, access: dict, replica: str | None,
             internal: dict | None) -> dict:
    """``/v1/model``: what the replica serves, how it decides, and (``internal``: for a keyed caller) where from."""
    st = slot.current
    p = st.predictor
    out = {
        **{k: v for k, v in st.info.items() if k not in ("source", "tags")},
        "loaded_at": st.loaded_at,
        "last_poll": slot.last_poll,
        "reload_interval_s": slot.interval_s,
        "reload_failing": slot.reload_error is not None,
        "rejected_version": slot.rejected_version,
        "registry_failures": slot.registry_failures,
        "variant": p.variant,
        "device": str(p.device),
        "engine": p.engine,
        "threshold": p.decide(0.0)[1],
        "inference": p.inference.to_dict(),
        "preprocess": {"crop_size": p.crop_size, "mean": list(p.mean), "std": list(p.std)},
        "clip": {"length": p.clip_len, "interval": p.clip_interval, "max_clips": max_clips},
        "landmark_backend": p.landmark_backend,
        "batching": batching,
        "limits": dataclasses.asdict(limits),
        "access": access,
        "replica": {"id": replica},
    }
    if internal is not None:
        out["internal"] = {"source": st.info.get("source"), "tags": st.info.get("tags"), **internal,
                           "reload_error": slot.reload_error, "pid": os.getpid()}
    return out


__all__ = ["LABELING_ERRORS", "UNAUTHORIZED", "UNAUTHORIZED_HEADERS", "error_response", "describe"]
