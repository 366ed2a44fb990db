"""Request decoding without Ray: every rejection carries its HTTP status and error code."""
from __future__ import annotations

import base64

import numpy as np
import pytest

from components.serving.inputs import InputError, Limits, decode_frames_json, decode_video, encode_frames_json

LIMITS = Limits(max_upload_bytes=1_000_000, max_frames=60, max_resolution=640)


def test_decode_video_reads_frames(videos):
    frames = decode_video(videos["live"].read_bytes(), LIMITS, 480)
    assert frames.shape == (22, 192, 192, 3) and frames.dtype == np.uint8


@pytest.mark.parametrize("name,status,code", [
    ("truncated", 422, "corrupt_video"),
    ("long", 413, "too_long"),
    ("huge", 413, "resolution_too_large"),
])
def test_decode_video_rejects(videos, name, status, code):
    with pytest.raises(InputError) as err:
        decode_video(videos[name].read_bytes(), LIMITS, 480)
    assert (err.value.status, err.value.code) == (status, code)


def test_decode_video_rejects_empty_garbage_and_oversize():
    for data, status, code in ((b"", 400, "empty_body"), (b"hello, not a video" * 50, 422, "not_a_video"),
                               (b"\0" * 1_000_001, 413, "too_large")):
        with pytest.raises(InputError) as err:
            decode_video(data, LIMITS, 480)
        assert (err.value.status, err.value.code) == (status, code)


def test_frames_json_roundtrip_is_lossless(videos):
    frames = decode_video(videos["live"].read_bytes(), LIMITS, 480)[:10]
    import json

    back = decode_frames_json(json.dumps(encode_frames_json(frames)).encode(), LIMITS, 480)
    assert back.shape == frames.shape
    assert np.array_equal(back, frames)


@pytest.mark.parametrize("body,code", [
    (b"{not json", "malformed_json"),
    (b'{"frames": []}', "malformed_frames"),
    (b'{"frames": "abc"}', "malformed_frames"),
    (b'{"frames": ["***"]}', "malformed_frames"),
    (b'{"frames": [12]}', "malformed_frames"),
    (('{"frames": ["' + base64.b64encode(b"GIF89a....").decode() + '"]}').encode(), "malformed_frames"),
    (('{"frames": ["' + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 20).decode() + '"]}').encode(),
     "malformed_frames"),
])
def test_frames_json_rejects_malformed(body, code):
    with pytest.raises(InputError) as err:
        decode_frames_json(body, LIMITS, 480)
    assert err.value.status == 400 and err.value.code == code


def test_frames_json_rejects_mixed_sizes():
    import json

    a = np.zeros((2, 32, 32, 3), np.uint8)
    b = np.zeros((1, 40, 32, 3), np.uint8)
    body = {"frames": encode_frames_json(a)["frames"] + encode_frames_json(b)["frames"]}
    with pytest.raises(InputError, match="frame 2 is 32x40"):
        decode_frames_json(json.dumps(body).encode(), LIMITS, 480)


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_frames"):
        Limits(max_frames=0)
    with pytest.raises(ValueError, match="max_resolution"):
        Limits(max_resolution=-1)
