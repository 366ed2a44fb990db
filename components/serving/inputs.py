"""Request bodies -> RGB frames, with every rejection named.

Only two encodings are ever decoded: video containers (by OpenCV from a temporary file) and PNG/JPEG frames
(by ``cv2.imdecode`` after a magic-byte check). Nothing from a request is unpickled or evaluated.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import tempfile
from typing import Any

import numpy as np

# Container signatures: used to tell a damaged video (truncated mp4) from bytes that were never a video.
_VIDEO_MAGIC = (
    (4, b"ftyp"),        # ISO-BMFF: mp4, mov, 3gp
    (0, b"RIFF"),        # avi
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"OggS"),
)
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
VIDEO_CONTENT_TYPES = ("video/", "application/octet-stream")


class InputError(ValueError):
    """A request the service refuses; ``status`` is the HTTP code and ``code`` the JSON ``error`` field."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


@dataclasses.dataclass
class Limits:
    """What one request may carry. Resolution is checked on the decoded stream before frames are kept."""

    max_upload_bytes: int = 20_000_000
    max_frames: int = 300          # duration bound: ~10 s at 30 fps
    max_resolution: int = 1920     # longest side accepted, pixels
    max_json_frames_bytes: int = 20_000_000

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"limit {f.name} must be a positive integer, got {v!r}")


def looks_like_video(data: bytes) -> bool:
    if len(data) > 376 and data[0] == data[188] == 0x47:  # MPEG-TS: a sync byte every 188-byte packet
        return True
    return any(data[off:off + len(magic)] == magic for off, magic in _VIDEO_MAGIC)


def decode_video(data: bytes, limits: Limits, work_side: int) -> np.ndarray:
    """Video bytes -> frames (F, H, W, 3) uint8 RGB, longest side <= ``work_side``.

    ``work_side`` is the model's own decode size (``InferenceConfig.decode_side``: labeling's), so frames are
    resized once, here, and the Predictor crops them exactly as labeling did."""
    import cv2

    from components.data.video import VideoError, read_frames

    if not data:
        raise InputError(400, "empty_body", "the request carried no video bytes")
    if len(data) > limits.max_upload_bytes:
        raise InputError(413, "too_large", f"{len(data)} bytes exceeds the {limits.max_upload_bytes}-byte limit")
    if not looks_like_video(data):
        # Checked before FFmpeg sees the bytes: it would happily "decode" a text file with its tty demuxer,
        # and keeping it to real container formats narrows what untrusted input can reach.
        raise InputError(422, "not_a_video", "the bytes are not a known video container "
                                             "(mp4/mov, avi, mkv/webm, mpeg, ogg)")
    fd, path = tempfile.mkstemp(suffix=".bin", prefix="liveness-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        cap = cv2.VideoCapture(path)
        try:
            opened = cap.isOpened()
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            cap.release()
        if not opened:
            raise _undecodable(data, "cannot be opened as a video")
        if max(w, h) > limits.max_resolution:
            raise InputError(413, "resolution_too_large",
                             f"{w}x{h} exceeds the longest-side limit of {limits.max_resolution} px")
        try:
            frames = read_frames(path, max_frames=limits.max_frames + 1, max_side=work_side)
        except VideoError as exc:
            raise _undecodable(data, exc.detail) from None
    finally:
        os.unlink(path)
    if len(frames) > limits.max_frames:
        raise InputError(413, "too_long", f"video has more than {limits.max_frames} frames")
    return frames  # (F, H, W, 3)


def _undecodable(data: bytes, why: str) -> InputError:
    if looks_like_video(data):
        return InputError(422, "corrupt_video", f"the container header is a video but the stream {why} "
                                                "(truncated or damaged upload?)")
    return InputError(422, "not_a_video", f"the bytes are not a known video container: {why}")


def decode_frames_json(body: bytes, limits: Limits, work_side: int) -> np.ndarray:
    """``{"frames": [base64 PNG/JPEG, ...]}`` -> frames (F, H, W, 3) uint8 RGB, longest side <= ``work_side``
    (each frame is downscaled as soon as it is decoded, so only one full-size frame is held at a time)."""
    import cv2

    if not body:
        raise InputError(400, "empty_body", "the request carried no JSON body")
    if len(body) > limits.max_json_frames_bytes:
        raise InputError(413, "too_large", f"{len(body)} bytes exceeds the {limits.max_json_frames_bytes}-byte limit")
    try:
        payload: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    frames_b64 = payload.get("frames") if isinstance(payload, dict) else None
    if not isinstance(frames_b64, list) or not frames_b64:
        raise InputError(400, "malformed_frames", 'expected {"frames": [<base64 PNG or JPEG>, ...]} with at '
                                                  "least one frame")
    if len(frames_b64) > limits.max_frames:
        raise InputError(413, "too_long", f"{len(frames_b64)} frames exceeds the {limits.max_frames}-frame limit")
    frames = []
    for i, item in enumerate(frames_b64):
        if not isinstance(item, str):
            raise InputError(400, "malformed_frames", f"frame {i} is {type(item).__name__}, expected a base64 string")
        if item.startswith("data:"):  # tolerate data URLs as produced by canvas.toDataURL()
            item = item.partition(",")[2]
        try:
            raw = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(400, "malformed_frames", f"frame {i} is not valid base64") from None
        if not (raw.startswith(_PNG) or raw.startswith(_JPEG)):
            raise InputError(400, "malformed_frames", f"frame {i} is not a PNG or JPEG image")
        bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(400, "malformed_frames", f"frame {i} could not be decoded (damaged image)")
        h, w = bgr.shape[:2]
        if max(h, w) > limits.max_resolution:
            raise InputError(413, "resolution_too_large",
                             f"frame {i} is {w}x{h}, over the longest-side limit of {limits.max_resolution} px")
        if i == 0:
            first = (w, h)
        elif (w, h) != first:
            raise InputError(400, "malformed_frames", f"frame {i} is {w}x{h} but frame 0 is {first[0]}x{first[1]}")
        if max(h, w) > work_side:
            s = work_side / max(h, w)
            bgr = cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.stack(frames)  # (F, H, W, 3)


def encode_frames_json(frames: np.ndarray, fmt: str = ".png") -> dict[str, list[str]]:
    """Client-side helper (tests, benchmark, docs): RGB frames -> the JSON body ``decode_frames_json`` reads."""
    import cv2

    out = []
    for f in frames:
        ok, buf = cv2.imencode(fmt, cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"cannot encode frame as {fmt}")
        out.append(base64.b64encode(buf.tobytes()).decode("ascii"))
    return {"frames": out}
