"""What one scored video looked like: the record serving logs per request and monitoring compares with training.

A record holds only metadata -- the upload's own frame size and rate, the frames decoded, the face's size in the
frame, brightness, and the answer (score, decision, model version) -- never pixels, so the log can be kept and
shipped where videos may not go. The same :func:`frame_stats` measures a request in the replica and a training
video in ``eulernet monitor``: the two sides of a drift check are computed one way.

Each replica appends to its own file (``requests-<replica>.jsonl``, rotated by size by the standard library's
``RotatingFileHandler``), so writers never share a file; :func:`read_records` reads every file and rotation of a
folder back into one table.
"""
from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import math
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

# Columns monitoring compares with the training videos, and the answer columns it only reports.
PROFILE_COLUMNS = ("source_width", "source_height", "fps", "frames", "face_fraction", "brightness")
ANSWER_COLUMNS = ("score", "decision", "model", "version")
FILE_PREFIX = "requests-"
_FILE = re.compile(r"^requests-[A-Za-z0-9._-]+\.jsonl(\.\d+)?$")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, RGB order


def frame_stats(pixels: np.ndarray, box: tuple[float, float, float, float] | None) -> dict[str, float]:
    """Brightness (mean luma, 0-255, of every 4th pixel of the frames given) and face fraction (face box width
    over frame width; NaN without a box) of ``pixels`` (K, H, W, 3) uint8 RGB."""
    px = np.asarray(pixels)
    if px.ndim != 4 or px.shape[-1] != 3 or px.shape[0] == 0:
        raise ValueError(f"pixels must be (K >= 1, H, W, 3), got {px.shape}")
    luma = float((px[:, ::4, ::4].astype(np.float32) @ _LUMA).mean())
    width = px.shape[2]
    face = float("nan") if box is None else float(max(0.0, box[2] - box[0]) / max(width, 1))
    return {"brightness": round(luma, 2), "face_fraction": round(face, 4)}


def request_record(*, request_id: str, source: tuple[int, int], fps: float, frames: int, pixels: np.ndarray,
                   result: Mapping, when: float | None = None) -> dict:
    """The log line of one scored request: ``result`` is the Predictor's answer (score, decision, box, model)."""
    model = result.get("model") or {}
    record = {
        "time": datetime.datetime.fromtimestamp(time.time() if when is None else when,
                                                tz=datetime.UTC).isoformat(timespec="milliseconds"),
        "request_id": str(request_id),
        "source_width": int(source[0]), "source_height": int(source[1]),
        "fps": round(float(fps), 3), "frames": int(frames),
        **frame_stats(pixels, result.get("box")),
        "score": round(float(result["score"]), 5), "decision": str(result["decision"]),
        "model": str(model.get("name", "")), "version": str(model.get("version", "")),
    }
    # JSON has no NaN: a missing measurement (no face box) is null, read back as NaN.
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


class RequestLog:
    """Append-only JSON lines in ``directory/requests-<name>.jsonl``, rotated at ``max_bytes`` keeping ``backups``
    old files. Writing never raises into a request: a full disk costs log lines (counted), not answers."""

    def __init__(self, directory: str | os.PathLike, name: str, max_bytes: int = 20_000_000, backups: int = 5):
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "replica"
        self.path = Path(directory).expanduser() / f"{FILE_PREFIX}{safe}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.handlers.RotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=backups,
                                                             encoding="utf-8", delay=True)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self.dropped = 0

    def write(self, record: Mapping) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str)
        try:
            self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))  # under its lock
        except Exception:  # logging's handleError already printed why; the request is answered regardless
            self.dropped += 1

    def close(self) -> None:
        self._handler.close()


def video_record(path: str | os.PathLike, max_side: int, find_box=None, n_frames: int = 16) -> dict:
    """A stored video measured as a request is (its profile columns): frame size and rate from its header, the
    stats of its first ``n_frames`` frames decoded at ``max_side``. ``find_box``: frame (H, W, 3) RGB -> the face
    box (x0, y0, x1, y1) or None (then ``face_fraction`` is NaN)."""
    import cv2

    from components.data.video import read_frames

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: cannot be opened as a video")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps, count = float(cap.get(cv2.CAP_PROP_FPS)), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    pixels = read_frames(path, max_frames=n_frames, max_side=max_side)  # (K, H, W, 3) RGB
    box = find_box(pixels[0]) if find_box is not None else None
    return {"source_width": w, "source_height": h, "fps": fps if math.isfinite(fps) else 0.0, "frames": count,
            **frame_stats(pixels, box)}


def read_records(path: str | os.PathLike, since: datetime.datetime | None = None,
                 until: datetime.datetime | None = None) -> tuple[pd.DataFrame, int]:
    """Every record under ``path`` (a folder of request logs, or one file) with ``since <= time < until``, oldest
    first, and the number of lines that were not records (skipped: a torn last line, a foreign file's text)."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if _FILE.match(f.name))
    elif p.is_file():
        files = [p]
    else:
        raise FileNotFoundError(f"no request log at {p} (serve.request_log_dir; a replica creates it on its "
                                f"first scored request)")
    rows, bad = [], 0
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    t = datetime.datetime.fromisoformat(rec["time"])
                except (ValueError, KeyError, TypeError):
                    bad += 1
                    continue
                if (since is None or t >= since) and (until is None or t < until):
                    rec["time"] = t
                    rows.append(rec)
    table = pd.DataFrame(rows, columns=["time", "request_id", *PROFILE_COLUMNS, *ANSWER_COLUMNS])
    for c in PROFILE_COLUMNS + ("score",):
        table[c] = pd.to_numeric(table[c], errors="coerce")
    return table.sort_values("time", kind="stable").reset_index(drop=True), bad


def parse_since(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """``30m``, ``6h``, ``2d`` (that long before ``now``) or an ISO time (UTC when it names no zone)."""
    now = now or datetime.datetime.now(tz=datetime.UTC)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - datetime.timedelta(seconds=float(m.group(1)) * unit)
    try:
        t = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since must be a duration (30m, 6h, 2d) or an ISO time, got {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=datetime.UTC)


__all__ = ["ANSWER_COLUMNS", "PROFILE_COLUMNS", "RequestLog", "frame_stats", "parse_since", "read_records",
           "request_record", "video_record"]
