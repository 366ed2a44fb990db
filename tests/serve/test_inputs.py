"""Request decoding without Ray: every limit and rejection carries its HTTP status and error code, sizes are read
from headers before pixels, and only the frames the clips use are decoded."""
from __future__ import annotations

import base64
import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from components.serving.inputs import (
    ClipPlan,
    InputError,
    Limits,
    decode_frames_json,
    decode_frames_json_sparse,
    decode_video,
    decode_video_sparse,
    encode_frames_json,
    image_size,
)

LIMITS = Limits(max_upload_bytes=1_000_000, max_frames=60, max_resolution=640, max_json_frames_bytes=1_000_000)
ROOMY = Limits(max_frames=60, max_resolution=640)  # 20 MB JSON bodies


# ------------------------------------------------------------------------------------------ helpers
def png_header_only(w: int, h: int) -> bytes:
    """A tiny, well-formed PNG that declares ``w`` x ``h`` (its pixel data is a few bytes): a decoder would
    allocate w*h*3 bytes before noticing the data is short."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def jpeg(w: int, h: int, exif: bool = False) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), 90, np.uint8))
    raw = buf.tobytes()
    if exif:  # an APP1 segment (with bytes that look like a SOF marker inside) before the real frame header
        payload = b"Exif\0\0" + b"\xff\xc0\x00\x11\x08\x7f\xff\x7f\xff" + b"\0" * 20
        raw = raw[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + raw[2:]
    return raw


def frames_body(raws: list[bytes]) -> bytes:
    return json.dumps({"frames": [base64.b64encode(r).decode() for r in raws]}).encode()


def write_stream(path: Path, frames: np.ndarray, fourcc: str = "mp4v", fps: float = 15.0) -> Path:
    """Write BGR-agnostic test frames with FFmpeg in the container the suffix names (.ts, .mkv, .mp4)."""
    import cv2

    h, w = frames.shape[1:3]
    out = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert out.isOpened(), path
    for f in frames:
        out.write(np.ascontiguousarray(f))
    out.release()
    return path


@pytest.fixture(scope="module")
def selfie(tmp_path_factory, real_face_rgb) -> Path:
    """A 6 s phone-like clip: 90 frames at 15 fps of a moving face."""
    from components.data.video import write_video
    from tests.serve.conftest import face_frames

    path = tmp_path_factory.mktemp("selfie") / "selfie.mp4"
    write_video(path, face_frames(real_face_rgb, 90, live=True, side=160), fps=15)
    return path


# ------------------------------------------------------------------------------------------ video
def test_decode_video_reads_frames(videos):
    frames = decode_video(videos["live"].read_bytes(), LIMITS, 480)
    assert frames.shape == (22, 192, 192, 3) and frames.dtype == np.uint8


@pytest.mark.parametrize("name,status,code", [
    ("truncated", 422, "corrupt_video"),
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


def test_video_over_max_frames_is_read_up_to_the_limit_not_refused(videos):
    frames = decode_video(videos["long"].read_bytes(), LIMITS, 480)  # 61 frames, limit 60
    assert len(frames) == 60


def test_long_video_is_scored_on_its_first_max_seconds(selfie):
    data = selfie.read_bytes()
    full = decode_video(data, Limits(max_frames=300), 480)
    assert len(full) == 90  # 6 s at 15 fps: the whole video fits in 10 s
    first2s = decode_video(data, Limits(max_frames=300, max_seconds=2.0), 480)
    assert len(first2s) == 30 and np.array_equal(first2s, full[:30])
    assert len(decode_video(data, Limits(max_frames=20, max_seconds=10.0), 480)) == 20  # max_frames still caps


def test_only_the_clip_frames_are_decoded(selfie):
    data = selfie.read_bytes()
    full = decode_video(data, LIMITS, 480)  # 60 frames (max_frames)
    plan = ClipPlan(clip_len=4, clip_interval=3, max_clips=2)
    sparse = decode_video_sparse(data, LIMITS, 480, plan)
    assert sparse.n == 60 and sparse.indices == plan.frames_needed(60) == [0, 3, 6, 9, 30, 33, 36, 39]
    assert sparse.pixels.shape == (8, 160, 160, 3)
    arr = sparse.to_array()
    assert arr.shape == full.shape
    assert np.array_equal(arr[sparse.indices], full[sparse.indices])
    assert not arr[[i for i in range(60) if i not in sparse.indices]].any()  # never decoded: zero pages
    # The clips the service cuts from the sparse frames are the clips it would cut from every frame.
    from components.data.clips import clip_starts

    assert clip_starts(len(arr), 4, 3, 2) == clip_starts(len(full), 4, 3, 2) == [0, 30]


def test_the_models_window_ends_decoding_and_the_clips_spread_inside_it(selfie):
    """A model fitted on 2-s windows (ClipPlan.window_seconds, from its checkpoint) is served on the first 2 s
    even when the service's own limit allows 10 s: its clips are spread over 30 frames, not 90."""
    data = selfie.read_bytes()  # 90 frames at 15 fps
    limits = Limits(max_frames=300)
    whole = decode_video_sparse(data, limits, 480, ClipPlan(4, 3, 2))
    windowed = decode_video_sparse(data, limits, 480, ClipPlan(4, 3, 2, window_seconds=2.0))
    assert whole.n == 90 and max(whole.indices) > 30
    assert windowed.n == 30 and windowed.indices == ClipPlan(4, 3, 2).frames_needed(30)
    assert max(windowed.indices) < 30 < max(whole.indices)
    np.testing.assert_array_equal(windowed.pixels[:4], whole.pixels[:4])
    # the service's limit still wins when it is the shorter one
    assert decode_video_sparse(data, Limits(max_frames=300, max_seconds=1.0), 480,
                               ClipPlan(4, 3, 2, window_seconds=2.0)).n == 15
    # the plan crosses to the decoder process as a list and comes back the same
    plan = ClipPlan(4, 3, 2, 2.0)
    assert ClipPlan(*plan.to_list()) == plan


def test_wrong_header_frame_count_gets_a_second_pass(tmp_path):
    """Two MPEG-TS streams back to back: the header says 10 frames, the stream has 20. The plan made from the
    header is wrong; the frames the true count needs are read in a second pass."""
    rng = np.random.default_rng(0)
    a = write_stream(tmp_path / "a.ts", rng.integers(0, 255, (10, 64, 64, 3), dtype=np.uint8))
    b = write_stream(tmp_path / "b.ts", rng.integers(0, 255, (10, 64, 64, 3), dtype=np.uint8))
    data = a.read_bytes() + b.read_bytes()
    full = decode_video(data, LIMITS, 480)
    assert len(full) == 20
    plan = ClipPlan(4, 3, 2)
    sparse = decode_video_sparse(data, LIMITS, 480, plan)
    assert sparse.n == 20 and sparse.indices == plan.frames_needed(20) == [0, 3, 6, 9, 10, 13, 16, 19]
    assert np.array_equal(sparse.pixels, full[sparse.indices])


@pytest.mark.parametrize("first,second", [((64, 80), (480, 640)), ((480, 640), (64, 80))])
def test_stream_that_changes_size_stays_at_its_header_size(tmp_path, first, second):
    """OpenCV 4.14 scales every frame of a stream to the size its header declared, so a stream that changes
    size mid-way never yields a bigger frame (the decoder's own allocation is what the worker's memory cap
    bounds). Small->large and large->small both decode at the first size (or stop at the change); nothing
    raises but an InputError."""
    a = write_stream(tmp_path / "a.ts", np.full((10, *first, 3), 60, np.uint8))
    b = write_stream(tmp_path / "b.ts", np.full((10, *second, 3), 200, np.uint8))
    frames = decode_video(a.read_bytes() + b.read_bytes(), Limits(max_resolution=1920), 1920)
    assert frames.shape[1:3] == first and 10 <= len(frames) <= 20  # the decoder may stop at the change


def test_a_frame_of_another_size_than_the_header_is_422():
    """The per-frame check: a capture that yields a frame unlike its header is refused, not stacked (500)."""
    from components.serving.inputs import _read_pass

    class Capture:
        def __init__(self):
            self.i = 0

        def grab(self):
            self.i += 1
            return self.i <= 5

        def retrieve(self):
            side = 32 if self.i < 3 else 4096
            return True, np.zeros((side, side, 3), np.uint8)

    with pytest.raises(InputError) as err:
        _read_pass(Capture(), 10, None, (32, 32), (32, 32), {})
    assert (err.value.status, err.value.code) == (422, "frame_size_changed")
    assert "frame 2 is 4096x4096" in err.value.detail


@pytest.mark.parametrize("shape", [(3, 1, 1920, 3), (3, 1920, 1, 3), (3, 8, 640, 3)])
def test_degenerate_video_is_422_not_a_zero_pixel_resize(tmp_path, shape):
    from components.data.video import write_video

    path = tmp_path / "thin.avi"  # MJPG: any size
    write_video(path, np.full(shape, 128, np.uint8))
    with pytest.raises(InputError) as err:
        decode_video(path.read_bytes(), Limits(), 480)
    assert (err.value.status, err.value.code) == (422, "resolution_too_small")


# ------------------------------------------------------------------------------------------ images
def test_image_header_sizes():
    assert image_size(png_header_only(32768, 32768)) == (32768, 32768)
    assert image_size(jpeg(64, 48)) == (64, 48)
    assert image_size(jpeg(64, 48, exif=True)) == (64, 48)  # the SOF-looking bytes inside APP1 are skipped
    assert image_size(b"\x89PNG\r\n\x1a\n" + b"\0" * 20) is None
    assert image_size(b"\xff\xd8\xff\xd9") is None
    big = bytearray(jpeg(64, 48))
    sof = big.index(b"\xff\xc0")
    big[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    assert image_size(bytes(big)) == (60000, 60000)


@pytest.mark.parametrize("raw", [png_header_only(32768, 32768), png_header_only(640, 100_000)])
def test_image_bomb_is_refused_before_any_pixel_is_allocated(raw, monkeypatch):
    import cv2

    def never(*a, **k):
        raise AssertionError("imdecode must not run on a frame whose header is over the limit")

    monkeypatch.setattr(cv2, "imdecode", never)
    body = frames_body([raw])
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as err:
            decode_frames_json(body, LIMITS, 480)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (err.value.status, err.value.code) == (413, "resolution_too_large")
    assert peak < 1 << 20  # the frame declares 3 GB; refusing it used less than 1 MB


def test_jpeg_bomb_is_refused_from_its_frame_header():
    big = bytearray(jpeg(64, 48))
    sof = big.index(b"\xff\xc0")
    big[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(InputError) as err:
        decode_frames_json(frames_body([bytes(big)]), LIMITS, 480)
    assert (err.value.status, err.value.code) == (413, "resolution_too_large")


def test_frames_json_roundtrip_is_lossless(videos):
    frames = decode_video(videos["live"].read_bytes(), LIMITS, 480)[:10]
    back = decode_frames_json(json.dumps(encode_frames_json(frames)).encode(), LIMITS, 480)
    assert back.shape == frames.shape
    assert np.array_equal(back, frames)


def test_frames_json_decodes_only_the_clip_frames(videos, monkeypatch):
    import cv2

    frames = decode_video(videos["live"].read_bytes(), LIMITS, 480)  # 22 frames
    body = json.dumps(encode_frames_json(frames)).encode()
    calls = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: calls.append(1) or real(*a))
    plan = ClipPlan(4, 3, 1)
    sparse = decode_frames_json_sparse(body, ROOMY, 480, plan)
    assert sparse.n == 22 and sparse.indices == [0, 3, 6, 9] and len(calls) == 4
    assert np.array_equal(sparse.pixels, frames[[0, 3, 6, 9]])


def test_frames_json_are_downscaled_to_the_work_side():
    frames = np.random.default_rng(0).integers(0, 255, (2, 300, 600, 3), dtype=np.uint8)
    out = decode_frames_json(json.dumps(encode_frames_json(frames)).encode(), ROOMY, 240)
    assert out.shape == (2, 120, 240, 3)


@pytest.mark.parametrize("body,code", [
    (b"{not json", "malformed_json"),
    (b'{"frames": []}', "malformed_frames"),
    (b'{"frames": "abc"}', "malformed_frames"),
    (b'{"frames": ["***"]}', "malformed_frames"),
    (b'{"frames": [12]}', "malformed_frames"),
    (('{"frames": ["' + base64.b64encode(b"GIF89a....").decode() + '"]}').encode(), "malformed_frames"),
    (('{"frames": ["' + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 20).decode() + '"]}').encode(),
     "malformed_frames"),
    (frames_body([png_header_only(64, 64)]), "malformed_frames"),  # header fine, pixel data short: damaged
])
def test_frames_json_rejects_malformed(body, code):
    with pytest.raises(InputError) as err:
        decode_frames_json(body, LIMITS, 480)
    assert err.value.status == 400 and err.value.code == code


def test_frames_json_rejects_mixed_sizes():
    a = np.zeros((2, 32, 32, 3), np.uint8)
    b = np.zeros((1, 40, 32, 3), np.uint8)
    body = {"frames": encode_frames_json(a)["frames"] + encode_frames_json(b)["frames"]}
    with pytest.raises(InputError, match="frame 2 is 32x40"):
        decode_frames_json(json.dumps(body).encode(), LIMITS, 480)


@pytest.mark.parametrize("make,status,code", [
    (lambda: b"{" + b" " * 1_000_001 + b"}", 413, "too_large"),                                   # body bytes
    (lambda: json.dumps(encode_frames_json(np.zeros((61, 16, 16, 3), np.uint8))).encode(), 413, "too_long"),
    (lambda: json.dumps(encode_frames_json(np.zeros((1, 16, 700, 3), np.uint8))).encode(), 413,
     "resolution_too_large"),
    (lambda: json.dumps(encode_frames_json(np.zeros((1, 4, 600, 3), np.uint8))).encode(), 422,
     "resolution_too_small"),
    (lambda: b"", 400, "empty_body"),
])
def test_frames_json_limits(make, status, code):
    with pytest.raises(InputError) as err:
        decode_frames_json(make(), LIMITS, 480)
    assert (err.value.status, err.value.code) == (status, code)


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_frames"):
        Limits(max_frames=0)
    with pytest.raises(ValueError, match="max_resolution"):
        Limits(max_resolution=-1)
    with pytest.raises(ValueError, match="max_seconds"):
        Limits(max_seconds=0)
    with pytest.raises(ValueError, match="max_seconds"):
        Limits(max_seconds=float("nan"))
