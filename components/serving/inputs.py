"""Request bodies -> RGB frames, with every rejection named.

Only two encodings are ever decoded: video containers (by OpenCV's FFmpeg backend, from the bytes in memory: no
temporary file) and PNG/JPEG frames (by ``cv2.imdecode``). Nothing from a request is unpickled or evaluated.

Sizes are read before pixels: a video's container header and every image's own header (PNG IHDR, JPEG SOF) are
checked against the limits first, so a file that declares 32768x32768 is refused without allocating it. Every
frame that is decoded is checked again and downscaled to the model's decode size as it arrives. Given a
:class:`ClipPlan` (the model's clip length and interval and the request's clip count), only the frames the clips
use are converted and kept: the rest of the returned array is zero pages that cost no memory (``Decoded``). A
video longer than ``Limits.max_seconds`` is scored on its first ``max_seconds``; only bytes over the upload limit
are refused.

In the service these functions run in a memory-capped worker process (``decode.DecodePool``); they are plain
functions, usable in-process too (tests, benchmarks).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import math
from typing import Any

import numpy as np

# Container signatures live with the decoder (one list for files and uploads): used to tell a damaged video
# (truncated mp4) from bytes that were never a video.
from components.data.video import fit_within, frames_in, looks_like_video

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
VIDEO_CONTENT_TYPES = ("video/", "application/octet-stream")
MIN_SIDE = 16  # shortest side accepted, pixels: below this no face can be found, and a 1920x1 frame would
#                resize to 0 px


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
    """What one request may carry. Sizes are checked on headers before any pixel is decoded."""

    max_upload_bytes: int = 40_000_000
    max_frames: int = 300          # frames read from a video (its first ones); a JSON body with more is refused
    max_resolution: int = 1920     # longest side accepted, pixels
    max_json_frames_bytes: int = 40_000_000
    max_seconds: float = 10.0      # a longer video is scored on its first max_seconds (not refused)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "max_seconds":
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                if not ok:
                    raise ValueError(f"limit {f.name} must be a positive number, got {v!r}")
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"limit {f.name} must be a positive integer, got {v!r}")


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """Which frames the clips of one request use: the model's clip layout and the request's clip count.

    The service scores ``clip_starts(n, clip_len, clip_interval, max_clips)`` (clips spread over the video), so
    once ``n`` is known only those clips' frames need pixels. ``window_seconds``: the model's scored window
    (``InferenceConfig.window_seconds``); decoding stops there when the stream declares its frame rate."""

    clip_len: int
    clip_interval: int
    max_clips: int | None
    window_seconds: float | None = None

    def frames_needed(self, n: int) -> list[int]:
        from components.data.clips import clip_indices, clip_span, clip_starts

        if n < clip_span(self.clip_len, self.clip_interval):
            return list(range(n))  # too short for one clip: the caller says so, with every frame at hand
        starts = clip_starts(n, self.clip_len, self.clip_interval, self.max_clips)
        return sorted({i for s in starts for i in clip_indices(s, self.clip_len, self.clip_interval)}) or list(range(n))

    def to_list(self) -> list:
        return [self.clip_len, self.clip_interval, self.max_clips, self.window_seconds]


@dataclasses.dataclass
class Decoded:
    """``n`` frames of ``height`` x ``width``, of which only ``indices`` were decoded: ``pixels`` (K, H, W, 3).
    ``source`` is the upload's own frame size (width, height) and ``fps`` its declared rate (0 when it has none,
    e.g. JPEG frames): what request monitoring compares with the training videos."""

    n: int
    height: int
    width: int
    indices: list[int]
    pixels: np.ndarray  # (K, H, W, 3) uint8 RGB, K = len(indices)
    source: tuple[int, int] = (0, 0)
    fps: float = 0.0

    def to_array(self) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB. Frames not in ``indices`` are black and never touched: ``np.zeros`` maps zero
        pages lazily, so a 300-frame window whose clips use 16 frames holds 16 frames of memory."""
        if len(self.indices) == self.n:
            return self.pixels if self.pixels.flags.writeable else self.pixels.copy()
        out = np.zeros((self.n, self.height, self.width, 3), np.uint8)
        if self.indices:
            out[np.asarray(self.indices)] = self.pixels
        return out


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) a PNG or JPEG declares in its header, parsed by Pillow's format plugins without decoding a
    pixel; None when the header is missing or malformed. The decoders allocate what the header says, so this
    bounds memory. (The plugins, not ``Image.open``: its decompression-bomb check would refuse a 32768x32768
    header before saying its size, and the caller checks sizes against its own limits.)"""
    from PIL import JpegImagePlugin, PngImagePlugin

    plugin = (PngImagePlugin.PngImageFile if raw.startswith(_PNG)
              else JpegImagePlugin.JpegImageFile if raw.startswith(_JPEG) else None)
    if plugin is None:
        return None
    try:
        with plugin(io.BytesIO(raw)) as image:
            return image.size
    except Exception:  # Pillow raises SyntaxError, OSError, ValueError... for a broken header
        return None


def check_size(w: int, h: int, limits: Limits, what: str) -> None:
    """413 over the resolution limit, 422 for a side too small to hold a face (a 1920x1 video)."""
    if max(w, h) > limits.max_resolution:
        raise InputError(413, "resolution_too_large",
                         f"{what} is {w}x{h}, over the longest-side limit of {limits.max_resolution} px")
    if min(w, h) < MIN_SIDE:
        raise InputError(422, "resolution_too_small", f"{what} is {w}x{h}; both sides must be at least "
                                                      f"{MIN_SIDE} px")


def _to_work(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if (bgr.shape[1], bgr.shape[0]) != size:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------------------------------ video
# FFmpeg's frame threads each hold decoded frames of their own inside the decoder's memory cap; more than a few
# buys nothing on the machines a replica gets.
MAX_DECODE_THREADS = 4


class _Capture:
    """``cv2.VideoCapture`` reading the bytes from memory (OpenCV >= 4.10 reads a BufferedIOBase through FFmpeg's
    AVIOContext): no temporary file. The capture does not own its stream: OpenCV 4.14 segfaults on release when
    the BytesIO was collected first, so this keeps it alive until the capture is released."""

    def __init__(self, data: bytes, threads: int = 1):
        import cv2

        self.stream = io.BytesIO(data)
        # FFmpeg's decoding threads (serve.decode_threads): each holds frames of its own, so the count is bounded.
        self.cap = cv2.VideoCapture(self.stream, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, int(threads)])

    def __enter__(self):
        return self.cap

    def __exit__(self, *exc) -> None:
        self.cap.release()
        del self.cap
        self.stream.close()


def _read_pass(cap, limit: int, keep: set[int] | None, header: tuple[int, int], size: tuple[int, int],
               kept: dict[int, np.ndarray]) -> int:
    """Walk up to ``limit`` frames; convert, check and downscale the ones in ``keep`` (all when None) into
    ``kept``. Returns the number of frames the stream has within ``limit``."""
    w, h = header
    i = 0
    while i < limit:
        if not cap.grab():  # decodes the next frame (inside FFmpeg) without converting it
            break
        if (keep is None or i in keep) and i not in kept:
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                break
            if bgr.shape[:2] != (h, w) or bgr.ndim != 3 or bgr.shape[2] != 3:
                raise InputError(422, "frame_size_changed", f"frame {i} is {bgr.shape[1]}x{bgr.shape[0]} but the "
                                                            f"stream header says {w}x{h}")
            kept[i] = _to_work(bgr, size)
        i += 1
    return i


def decode_video_sparse(data: bytes, limits: Limits, work_side: int, plan: ClipPlan | None = None,
                        threads: int = 1) -> Decoded:
    """Video bytes -> the frames of its first ``max_seconds`` (at most ``max_frames``), longest side <=
    ``work_side``; with a ``plan``, only the frames its clips use are converted and kept. ``threads``: FFmpeg's
    decoding threads (1-4); the frames are the same for any count.

    ``work_side`` is the model's own decode size (``InferenceConfig.decode_side``: labeling's), so frames are
    resized once, here, and the Predictor crops them exactly as labeling did."""
    import cv2

    if not data:
        raise InputError(400, "empty_body", "the request carried no video bytes")
    if len(data) > limits.max_upload_bytes:
        raise InputError(413, "too_large", f"{len(data)} bytes exceeds the {limits.max_upload_bytes}-byte limit")
    if not 1 <= int(threads) <= MAX_DECODE_THREADS:
        raise ValueError(f"decode threads must be within 1..{MAX_DECODE_THREADS}, got {threads}")
    if not looks_like_video(data):
        # Checked before FFmpeg sees the bytes: keeping it to real container formats narrows what untrusted
        # input can reach.
        raise InputError(422, "not_a_video", "the bytes are not a known video container "
                                             "(mp4/mov, avi, mkv/webm, mpeg, ogg)")
    with _Capture(data, threads) as cap:
        if not cap.isOpened():
            raise _undecodable(data, "cannot be opened as a video")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps, count = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
        rate = float(fps) if math.isfinite(fps) and 0 < fps <= 1000 else 0.0  # 0: the header declares none
        if w <= 0 or h <= 0:
            raise _undecodable(data, "declares no frame size")
        check_size(w, h, limits, "the video")  # from the container header, before any frame is decoded
        size = fit_within(w, h, work_side)
        window = limits.max_frames
        if rate:
            seconds = limits.max_seconds
            if plan is not None and plan.window_seconds is not None:
                seconds = min(seconds, plan.window_seconds)
            window = min(window, frames_in(seconds, rate))
        # The header's frame count plans which frames to keep; the stream itself has the last word.
        guess = min(int(count), window) if math.isfinite(count) and count >= 1 else window
        kept: dict[int, np.ndarray] = {}
        keep = set(plan.frames_needed(guess)) if plan is not None else None
        n = _read_pass(cap, window, keep, (w, h), size, kept)
    if n == 0:
        raise _undecodable(data, "decoded to zero frames")
    if plan is not None:
        need = plan.frames_needed(n)
        missing = set(need) - kept.keys()
        if missing:  # the header's frame count was wrong: one more pass for the frames the true count needs
            with _Capture(data, threads) as cap:
                _read_pass(cap, max(missing) + 1, missing, (w, h), size, kept)
            if set(need) - kept.keys():
                raise _undecodable(data, "did not decode the same way twice")
        kept = {i: kept[i] for i in need}
    indices = sorted(kept)
    if not indices:
        raise _undecodable(data, "decoded to zero frames")
    pixels = np.stack([kept[i] for i in indices])  # (K, H, W, 3)
    return Decoded(n, size[1], size[0], indices, pixels, (w, h), rate)


def decode_video(data: bytes, limits: Limits, work_side: int, plan: ClipPlan | None = None,
                 threads: int = 1) -> np.ndarray:
    """:func:`decode_video_sparse` as one (F, H, W, 3) uint8 RGB array."""
    return decode_video_sparse(data, limits, work_side, plan, threads).to_array()


def _undecodable(data: bytes, why: str) -> InputError:
    if looks_like_video(data):
        return InputError(422, "corrupt_video", f"the container header is a video but the stream {why} "
                                                "(truncated or damaged upload?)")
    return InputError(422, "not_a_video", f"the bytes are not a known video container: {why}")


# ------------------------------------------------------------------------------------------------------ frames
def decode_frames_json_sparse(body: bytes, limits: Limits, work_side: int, plan: ClipPlan | None = None) -> Decoded:
    """``{"frames": [base64 PNG/JPEG, ...]}`` -> frames, longest side <= ``work_side``.

    Every frame's header is read and checked (format, size, same size as frame 0) before any is decoded; then
    only the frames the ``plan`` needs (all without one) are decoded, each downscaled as soon as it is."""
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
    raws: list[bytes] = []
    first: tuple[int, int] | None = None
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
        dims = image_size(raw)
        if dims is None:
            raise InputError(400, "malformed_frames", f"frame {i} has no readable PNG/JPEG header (damaged image)")
        check_size(dims[0], dims[1], limits, f"frame {i}")  # before the decoder allocates what it declares
        if first is None:
            first = dims
        elif dims != first:
            raise InputError(400, "malformed_frames", f"frame {i} is {dims[0]}x{dims[1]} but frame 0 is "
                                                      f"{first[0]}x{first[1]}")
        raws.append(raw)
    assert first is not None
    n = len(raws)
    size = fit_within(first[0], first[1], work_side)
    indices = plan.frames_needed(n) if plan is not None else list(range(n))
    pixels = []
    for i in indices:
        bgr = cv2.imdecode(np.frombuffer(raws[i], np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(400, "malformed_frames", f"frame {i} could not be decoded (damaged image)")
        if sorted(bgr.shape[:2]) != sorted(first):  # EXIF orientation may swap the sides, nothing else
            raise InputError(400, "malformed_frames", f"frame {i} decoded to {bgr.shape[1]}x{bgr.shape[0]}, "
                                                      f"not the {first[0]}x{first[1]} its header declares")
        rgb = _to_work(bgr, fit_within(bgr.shape[1], bgr.shape[0], work_side))
        if pixels and rgb.shape != pixels[0].shape:
            raise InputError(400, "malformed_frames", f"frame {i} is {bgr.shape[1]}x{bgr.shape[0]} after its EXIF "
                                                      "orientation, unlike the frames before it")
        pixels.append(rgb)
    h, w = pixels[0].shape[:2] if pixels else (size[1], size[0])
    return Decoded(n, h, w, list(indices), np.stack(pixels), (int(first[0]), int(first[1])))


def decode_frames_json(body: bytes, limits: Limits, work_side: int, plan: ClipPlan | None = None) -> np.ndarray:
    """:func:`decode_frames_json_sparse` as one (F, H, W, 3) uint8 RGB array."""
    return decode_frames_json_sparse(body, limits, work_side, plan).to_array()


def wait_until_up(url: str, timeout_s: float = 60.0, every_s: float = 0.3, probe_timeout_s: float = 5.0) -> bool:
    """Client-side helper (tests, benchmarks): poll ``url`` (e.g. ``.../healthz``) until it answers 200 or
    ``timeout_s`` passes; True when it came up."""
    import time

    import httpx

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=probe_timeout_s).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(every_s)
    return False


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
