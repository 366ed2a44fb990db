"""Reading one scoring request's body: content type, size caps, the replica's upload budget, multipart parsing.

The body is read here, in the replica's event loop, into one buffer that is handed (or, for multipart, a view of
its file part) to a decoder process; the
size is checked against the declared length before any byte is read and again while streaming, and the bytes
are reserved in the replica's :class:`~components.serving.budget.UploadBudget` for as long as the request holds
them (the caller releases them)."""
from __future__ import annotations

from fastapi import Request

from .budget import COPIES_HELD, MULTIPART_SLACK, UploadBudget
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


def reserve(request: Request, limit: int, budget: UploadBudget) -> int:
    """Reserve the bytes this request may hold (its declared length, else the limit, times the copies of a body
    the replica holds at once, :data:`COPIES_HELD`) before reading any: 413 past
    the limit, 503 when the replica's budget is spent. Returns the reservation to release."""
    declared = declared_length(request)
    if declared is not None and declared > limit + MULTIPART_SLACK:
        raise InputError(413, "too_large", f"{declared} bytes exceeds the {limit}-byte limit")
    need = (declared if declared is not None else limit + MULTIPART_SLACK) * COPIES_HELD
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


MAX_PARTS = 9  # a `video` file and a few form fields; more is not a client of this API
MAX_PART_HEADER = 16 * 1024  # one part's header block


def _malformed(detail: str) -> InputError:
    return InputError(400, "malformed_multipart", f"cannot parse multipart body: {detail}")


def multipart_video(request: Request, body: bytearray) -> memoryview:
    """The single uploaded file of a ``multipart/form-data`` body, as a view into ``body`` (no copy).

    Why not starlette's form parser: it copies the file part out of the body and then spools it to a temporary
    file that has to be read back, so a multipart upload was held three to four times at its peak (the upload
    budget counted three and was exceeded by 18 MB in one of four bursts). Here the parts are found
    with ``bytearray.find`` on the boundary and the file part is returned as a slice of the buffer the body was
    read into: a multipart upload is held exactly as often as a raw one. The file is the part named ``video``,
    else the only part with a filename; at most :data:`MAX_PARTS` parts."""
    from python_multipart.multipart import parse_options_header

    _, params = parse_options_header(request.headers.get("content-type") or "")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise _malformed("the content type names no boundary")
    delim = b"--" + boundary
    sep = b"\r\n" + delim
    if body.startswith(delim):
        pos = 0
    else:  # anything before the first boundary is preamble
        pos = body.find(sep) + 2
        if pos < 2:
            raise _malformed("no boundary in the body")
    files: list[tuple[bytes, bytes, memoryview]] = []  # (field name, content type, content)
    view = memoryview(body)
    for _ in range(MAX_PARTS + 1):
        line = pos + len(delim)
        if body[line:line + 2] == b"--":
            break  # the closing delimiter
        eol = body.find(b"\r\n", line, line + 256)  # transport padding may follow a delimiter
        if eol < 0 or body[line:eol].strip(b" \t"):
            raise _malformed("a boundary line is not followed by CRLF")
        head_start = eol + 2
        if body[head_start:head_start + 2] == b"\r\n":
            head_end, content_start = head_start, head_start + 2
        else:
            head_end = body.find(b"\r\n\r\n", head_start, head_start + MAX_PART_HEADER)
            if head_end < 0:
                raise _malformed(f"a part's headers do not end within {MAX_PART_HEADER} bytes")
            content_start = head_end + 4
        pos = body.find(sep, content_start)
        if pos < 0:
            raise _malformed("the body ends inside a part (no closing boundary)")
        pos += 2
        headers = {}
        for raw in bytes(body[head_start:head_end]).split(b"\r\n"):
            name, colon, value = raw.partition(b":")
            if not colon:
                raise _malformed(f"a part header line has no colon: {raw[:60]!r}")
            headers[name.strip().lower()] = value.strip()
        disposition, dparams = parse_options_header(headers.get(b"content-disposition", b""))
        if disposition == b"form-data" and b"filename" in dparams:
            ctype, _ = parse_options_header(headers.get(b"content-type", b""))
            files.append((dparams.get(b"name", b""), ctype, view[content_start:pos - 2]))
    else:
        raise _malformed(f"more than {MAX_PARTS} parts")
    if not files:
        raise InputError(400, "empty_body", "multipart body has no file part (use the field name `video`)")
    named = [f for f in files if f[0] == b"video"]
    if len(named) > 1 or not named and len(files) > 1:
        raise _malformed("more than one file part; send one file in the field `video`")
    _, ctype, content = (named or files)[0]
    ctype = ctype.decode("latin-1").lower()
    if ctype and not ctype.startswith(VIDEO_CONTENT_TYPES):
        raise InputError(415, "wrong_content_type", f"uploaded file is {ctype!r}; expected video/*")
    return content


__all__ = ["content_type", "declared_length", "reserve", "read_body", "multipart_video", "MULTIPART_SLACK"]
