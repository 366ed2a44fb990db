"""The multipart upload parser: the same file part as starlette's form parser on what real clients send, found
without copying the body, and a clear 4xx on everything else."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request

from components.serving.inputs import InputError
from components.serving.upload import MAX_PARTS, multipart_video

VIDEO = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n" + b"\r\n" * 3  # CRLFs and dashes inside the file


def _request(ctype: bytes) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v1/liveness", "query_string": b"",
                    "headers": [(b"content-type", ctype)]})


def _httpx_body(files: dict, data: dict | None = None) -> tuple[bytes, bytes]:
    req = httpx.Request("POST", "http://x/v1/liveness", files=files, data=data)
    return req.read(), req.headers["content-type"].encode()


def _starlette_file(body: bytes, ctype: bytes) -> bytes:
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def parse():
        form = await Request({"type": "http", "method": "POST", "path": "/", "query_string": b"",
                              "headers": [(b"content-type", ctype)]}, receive).form()
        upload = form.get("video") if isinstance(form.get("video"), UploadFile) else next(
            v for v in form.values() if isinstance(v, UploadFile))
        return await upload.read()

    return asyncio.run(parse())


@pytest.mark.parametrize("files, data", [
    ({"video": ("clip.mp4", VIDEO, "video/mp4")}, None),
    ({"video": ("clip.mp4", VIDEO, "video/mp4")}, {"note": "a field before the file", "x": "y"}),
    ({"upload": ("clip.webm", VIDEO, "video/webm")}, None),  # one file under another field name
    ({"video": ("cl\"ip name.mov", VIDEO, "video/quicktime")}, None),  # a quoted, escaped filename
    ({"video": ("empty.mp4", b"", "video/mp4")}, None),
])
def test_the_file_part_is_the_one_starlette_finds_and_a_view_of_the_body(files, data):
    body, ctype = _httpx_body(files, data)
    buf = bytearray(body)
    part = multipart_video(_request(ctype), buf)
    assert bytes(part) == _starlette_file(body, ctype) == files[next(iter(files))][1]
    assert isinstance(part, memoryview) and part.obj is buf  # no copy of the upload was made


def test_preamble_epilogue_padding_and_a_quoted_boundary_are_read_as_rfc_2046_says():
    """RFC 2046 allows text before the first delimiter (starlette's parser refuses it) and after the last."""
    body = (b"a preamble a client may send\r\n--b1 \t\r\n"
            b"Content-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
            + VIDEO + b"\r\n--b1--\r\nan epilogue")
    ctype = b"multipart/form-data; boundary=\"b1\""
    assert bytes(multipart_video(_request(ctype), bytearray(body))) == VIDEO


def _part(name: str, filename: str | None, content: bytes, ctype: str = "video/mp4") -> bytes:
    disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return (f"--B\r\nContent-Disposition: {disp}\r\nContent-Type: {ctype}\r\n\r\n").encode() + content + b"\r\n"


@pytest.mark.parametrize("body, ctype, status, code", [
    (_part("video", "a.mp4", VIDEO) + b"--B--", b"multipart/form-data", 400, "malformed_multipart"),  # no boundary
    (b"no delimiter anywhere", b"multipart/form-data; boundary=B", 400, "malformed_multipart"),
    (_part("video", "a.mp4", VIDEO)[:-2], b"multipart/form-data; boundary=B", 400, "malformed_multipart"),  # cut
    (b"--B\r\nContent-Disposition form-data\r\n\r\nx\r\n--B--", b"multipart/form-data; boundary=B", 400,
     "malformed_multipart"),  # a header line without a colon
    (b"--Bjunk\r\n\r\nx\r\n--B--", b"multipart/form-data; boundary=B", 400, "malformed_multipart"),
    (_part("note", None, b"text") + b"--B--", b"multipart/form-data; boundary=B", 400, "empty_body"),
    (_part("a", "a.mp4", VIDEO) + _part("b", "b.mp4", VIDEO) + b"--B--", b"multipart/form-data; boundary=B", 400,
     "malformed_multipart"),  # two files, neither named `video`: which one is meant is not ours to guess
    (b"".join(_part(f"f{i}", None, b"v") for i in range(MAX_PARTS + 1)) + b"--B--",
     b"multipart/form-data; boundary=B", 400, "malformed_multipart"),
    (_part("video", "a.png", b"\x89PNG", "image/png") + b"--B--", b"multipart/form-data; boundary=B", 415,
     "wrong_content_type"),
])
def test_a_body_that_is_not_one_video_file_is_refused_with_its_reason(body, ctype, status, code):
    with pytest.raises(InputError) as err:
        multipart_video(_request(ctype), bytearray(body))
    assert (err.value.status, err.value.code) == (status, code)


def test_the_video_field_wins_over_other_files_and_fields():
    body = (_part("thumb", "t.mp4", b"other") + _part("note", None, b"hi") + _part("video", "v.mp4", VIDEO)
            + b"--B--\r\n")
    assert bytes(multipart_video(_request(b"multipart/form-data; boundary=B"), bytearray(body))) == VIDEO
