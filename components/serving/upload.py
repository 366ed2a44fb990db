"""Reading one scoring request's body: content type, size caps, the replica's upload budget, multipart parsing.

The body is read here, in the replica's event loop, and handed to a decoder process as one ``bytes`` object; the
size is checked against the declared length before any byte is read and again while streaming, and the bytes
are reserved in the replica's :class:`~components.serving.budget.UploadBudget` for as long as the request holds
them (the caller releases them)."""
from __future__ import annotations

from fastapi import Request

from .budget import MULTIPART_SLACK, UploadBudget, copies_held
from .inputs import VIDEO_CONTENT_TYPES, InputError


def content_type(request: Request) -> str:
    """The request's media type, checked: multipart/form-data, application/json or video/*; else 415."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/json") or ctype.startswith(VIDEO_CONTENT_TYPES):
        return ctype
    raise InputError(415, "unsupported_media_type",
                     f"content type {ctype or '(none)'!r}; send multipart/form-data with a `video` file, "
                     "a video/* body, or application/json frames")


def declared_length(request: Request) -> int | None:
    """The body length the client declared (``Content-Length``), None when it declared none (chunked)."""
    declared = request.headers.get("content-length")
    return int(declared) if declared and declared.isdigit() else None


def reserve(request: Request, ctype: str, limit: int, budget: UploadBudget) -> int:
    """Reserve the bytes this request may hold (its declared length, else the limit, times the copies of the body
    its content type ``ctype`` makes the replica hold at once, :func:`copies_held`) before reading any: 413 past
    the limit, 503 when the replica's budget is spent. Returns the reservation to release."""
    declared = declared_length(request)
    if declared is not None and declared > limit + MULTIPART_SLACK:
        raise InputError(413, "too_large", f"{declared} bytes exceeds the {limit}-byte limit")
    need = (declared if declared is not None else limit + MULTIPART_SLACK) * copies_held(ctype)
    if not budget.reserve(need):
        raise InputError(503, "busy", f"the replica holds {budget.used} upload bytes (budget {budget.cap}); "
                                      f"this {need}-byte request would not fit")
    return need


async def read_body(request: Request, limit: int) -> bytearray:
    """The whole body, refused (413) as soon as it grows past the limit, whatever length was declared. Returned
    as the buffer it was read into, not copied into ``bytes``: the decoder's socket takes any bytes-like, and a
    copy would hold each upload twice (measured: ``benchmarks/upload_memory.py``).

    With a declared length the buffer is allocated once at that size and filled in place: growing a bytearray
    chunk by chunk re-allocates it, and each re-allocation briefly holds the old and the new buffer (a transient
    the upload budget does not count). A body longer than it declared is refused (400)."""
    declared = declared_length(request)
    if declared is None or declared > limit + MULTIPART_SLACK:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit + MULTIPART_SLACK:
                raise InputError(413, "too_large", f"body exceeds the {limit}-byte limit")
        return body
    body = bytearray(declared)
    n = 0
    with memoryview(body) as view:
        async for chunk in request.stream():
            end = n + len(chunk)
            if end > declared:
                raise InputError(400, "length_mismatch", f"body is longer than its declared {declared} bytes")
            view[n:end] = chunk
            n = end
    del body[n:]  # a client that sent less than it declared (the server normally refuses that itself)
    return body


async def multipart_video(request: Request, body: bytes | bytearray) -> bytes:
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


__all__ = ["content_type", "declared_length", "reserve", "read_body", "multipart_video", "MULTIPART_SLACK"]
