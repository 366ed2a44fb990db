"""Video decoding and encoding with OpenCV; every reader error names the file and the reason."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np


class VideoError(ValueError):
    """A video cannot be used; ``reason`` is a short machine-readable cause."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# Container signatures: the only formats decoded (a file without one is reported as not_a_video).
_VIDEO_MAGIC = (
    (4, b"ftyp"),              # ISO-BMFF: mp4, mov, 3gp
    (0, b"RIFF"),              # avi
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"OggS"),
)



def fit_within(w: int, h: int, side: int) -> tuple[int, int]:
    """(width, height) downscaled so the longest side is at most ``side``, aspect kept, never 0 px: the one rule
    labeling's decoder, the Predictor and the serving decoder share (crops must come from the same pixels)."""
    if max(w, h) <= side:
        return w, h
    s = side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def fit_frame(frame: np.ndarray, side: int) -> np.ndarray:
    """``frame`` (H, W, C) resized (INTER_AREA) to :func:`fit_within`'s size; the same array when it fits."""
    size = fit_within(frame.shape[1], frame.shape[0], side)
    if size == (frame.shape[1], frame.shape[0]):
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

def frames_in(seconds: float, fps: float) -> int:
    """Frames in the first ``seconds`` of a stream at ``fps`` (at least 1): the one rule the Predictor and the
    serving decoder share, so a model's window ends on the same frame everywhere (10 s at 30 fps: 300)."""
    return max(1, math.ceil(seconds * fps - 1e-9))  # - 1e-9: 2.5 s x 30.0 fps is 75 frames, not 76


def video_fps(path: str | Path, default: float = 30.0) -> float:
    """The frame rate a file's header declares, or ``default`` when it declares none or a nonsense one."""
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return fps if 1.0 <= fps <= 240.0 else default


def looks_like_video(data: bytes) -> bool:
    """True when ``data`` (the first bytes of a file or upload) starts like a known video container."""
    if len(data) > 376 and data[0] == data[188] == 0x47:  # MPEG-TS: a sync byte every 188-byte packet
        return True
    return any(data[off:off + len(magic)] == magic for off, magic in _VIDEO_MAGIC)


def read_frames(path: str | Path, max_frames: int | None = None, max_side: int | None = None) -> np.ndarray:
    """Decode up to ``max_frames`` frames as RGB uint8, shape (N, H, W, 3).

    ``max_side`` bounds the resolution read into memory (frames are downscaled, aspect kept) so a huge
    upload cannot exhaust memory before any check runs.
    """
    path = Path(path)
    if path.is_dir():
        raise VideoError("missing", f"{path} is a directory, not a video file")
    if not path.is_file():
        raise VideoError("missing", f"{path} does not exist")
    with path.open("rb") as fh:
        head = fh.read(1024)
    if not looks_like_video(head):
        # FFmpeg would "decode" a text file through its tty demuxer; only known containers are read.
        raise VideoError("not_a_video", f"{path.name} is not a known video container (mp4/mov, avi, mkv/webm, "
                                        "mpeg, ogg)")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError("unreadable", f"{path.name} cannot be opened as a video")
        frames = []
        while max_frames is None or len(frames) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if max_side is not None:
                bgr = fit_frame(bgr, max_side)
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise VideoError("no_frames", f"{path.name} decoded to zero frames (corrupt or not a video)")
    return np.stack(frames)  # (N, H, W, 3)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0) -> None:
    """Write RGB uint8 frames (N, H, W, 3) as mp4 (mp4v) or avi (MJPG), chosen by suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    h, w = frames.shape[1:3]
    out = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not out.isOpened():
        raise OSError(f"OpenCV cannot write {path}")
    try:
        for f in frames:
            out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        out.release()


def encode_h264(frames: np.ndarray, fps: float = 30.0, crf: int = 23, threads: int | None = None) -> bytes:
    """RGB uint8 frames (N, H, W, 3) as the bytes of an H.264 mp4 (PyAV, libx264, yuv420p, ``crf`` quality), the
    codec phones record with; OpenCV's wheels only encode mp4v. Sides must be even (4:2:0 chroma). x264 runs in
    its CPU-independent mode: on an AVX-512 machine its default assembly gave different bytes for the same frames
    from one call to the next (tests/data/test_realistic_setting.py caught it), and a generated clip or a held
    still must not depend on which machine renders it. ``threads=1`` also pins the encoder's threading."""
    import io
    from fractions import Fraction

    import av  # the `train` extra; only clips that must look like a phone's need it

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 4:2:0 needs even sides, got {w}x{h}")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "veryfast", "x264-params": "cpu-independent=1",
                          **({"threads": str(int(threads))} if threads else {})}
        if threads:
            stream.thread_count = int(threads)
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def write_h264(path: str | Path, frames: np.ndarray, fps: float = 30.0, crf: int = 23) -> None:
    """:func:`encode_h264` written to ``path`` (its folder created)."""
    data = encode_h264(frames, fps, crf)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
