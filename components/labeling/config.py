"""How videos are labeled: ``LabelConfig`` (params ``label:``), the labeling-code version and the cache key
they make, and the ``label_config.json`` recorded beside the shards."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from components.face.crop import clip_geometry_errors
from components.face.landmarks import BACKENDS
from components.face.tracking import face_path_errors
from components.files import write_json

TENSOR_COLUMNS = ["frames", "location_map", "binary_mask", "depth_map", "points"]  # the row layout LABEL_FORMAT versions
LABEL_FORMAT = 1  # bump when the row content changes for the same config, to invalidate caches


@dataclass(frozen=True)
class LabelConfig:
    # Keys that change how fast labeling runs, never the labels: left out of the cache fingerprint, of
    # label_config.json and of the label stage's DVC params, so tuning them relabels nothing.
    SPEED_ONLY: ClassVar[frozenset[str]] = frozenset({"concurrency", "batch_size", "num_cpus_per_worker"})

    backend: str = "dlib"  # dlib (offline default) | face_alignment
    backend_options: dict[str, Any] = field(default_factory=dict)  # passed to the backend, e.g. {landmarks: 3d}
    crop_size: int = 256  # face crop side; label maps are crop_size // 8
    face_fraction: float = 0.75  # share of the crop side the landmarks' extent fills
    clip_len: int = 4
    clip_interval: int = 3
    clips_per_video: int | None = 8  # None: every non-overlapping clip
    max_side: int | None = 640  # downscale decoded frames so their longer side is at most this (memory, speed)
    max_frames: int | None = None  # decode at most this many frames per video
    allow_multiple_faces: bool = False  # False: a video with two comparable faces is skipped (multiple_faces)
    depth_source: str = "auto"  # auto (backend 3D landmarks if any, else template) | template | backend
    face_path: str = "detect"  # detect: every sampled frame | track: a few full detections, followed between
    track: dict[str, Any] = field(default_factory=dict)  # TrackConfig options for face_path track
    concurrency: int = 2  # Ray Data actors, each holding one landmark model
    batch_size: int = 4  # videos per map_batches call: Ray Data costs per task, labeling per video
    num_cpus_per_worker: float = 1.0

    def __post_init__(self):
        errors = []
        if self.backend not in BACKENDS:
            errors.append(f"backend must be one of {sorted(BACKENDS)}, got {self.backend!r}")
        if not isinstance(self.backend_options, dict):
            errors.append("backend_options must be a mapping")
        errors += clip_geometry_errors(self.crop_size, self.clip_len, self.clip_interval)
        if not 0.1 <= self.face_fraction <= 1.0:
            errors.append(f"face_fraction must be in [0.1, 1], got {self.face_fraction}")
        if self.clips_per_video is not None and self.clips_per_video < 1:
            errors.append(f"clips_per_video must be >= 1 or null, got {self.clips_per_video}")
        if self.max_side is not None and self.max_side < 64:
            errors.append(f"max_side must be >= 64 or null, got {self.max_side}")
        if self.max_frames is not None and self.max_frames < 1:
            errors.append(f"max_frames must be >= 1 or null, got {self.max_frames}")
        if self.depth_source not in ("auto", "template", "backend"):
            errors.append(f"depth_source must be auto, template or backend, got {self.depth_source!r}")
        if self.depth_source == "backend" and not (self.backend == "face_alignment"
                                                   and self.backend_options.get("landmarks") == "3d"):
            errors.append("depth_source 'backend' needs backend face_alignment with backend_options.landmarks: 3d")
        errors += face_path_errors(self.face_path, self.track)
        if self.concurrency < 1 or self.batch_size < 1:
            errors.append(f"concurrency and batch_size must be >= 1, got {self.concurrency}, {self.batch_size}")
        if self.num_cpus_per_worker <= 0:
            errors.append(f"num_cpus_per_worker must be > 0, got {self.num_cpus_per_worker}")
        if errors:
            raise ValueError("invalid label config: " + "; ".join(errors))

    @property
    def map_size(self) -> int:
        return self.crop_size // 8

    def fingerprint(self) -> str:
        """Hash of the settings that change the labels (not the ones that only change speed)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.SPEED_ONLY}
        d["format"] = LABEL_FORMAT
        d["code"] = labeling_code_version()
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


LABEL_CONFIG_FILE = "label_config.json"
# The code that decodes, finds faces, crops and draws labels: a change to any of these relabels (cache keys
# change). Row-layout changes in this file bump LABEL_FORMAT instead, so progress or I/O edits keep the cache.
LABEL_CODE = ("components/data/video.py", "components/data/clips.py", "components/face/clips.py",
              "components/face/crop.py", "components/face/landmarks.py", "components/labeling/maps.py",
              "components/face/tracking.py")


@functools.lru_cache(maxsize=1)
def labeling_code_version() -> str:
    """sha256 over the source of ``LABEL_CODE``: the decode/crop/label code version in every cache key."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for rel in LABEL_CODE:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def write_label_config(out_dir: str | Path, cfg: LabelConfig) -> Path:
    """Record how these shards were cut beside them: training reads it back, so the landmark and clip settings
    reach the checkpoint (and serving) from the data itself, whoever calls ``fit``."""
    return write_json(Path(out_dir) / LABEL_CONFIG_FILE,
                      {k: v for k, v in dataclasses.asdict(cfg).items() if k not in cfg.SPEED_ONLY})


def read_label_config(out_dir: str | Path) -> LabelConfig | None:
    """The LabelConfig the shards in ``out_dir`` were made with, or None for shards written without one."""
    path = Path(out_dir) / LABEL_CONFIG_FILE
    if not path.is_file():
        return None
    return LabelConfig(**json.loads(path.read_text()))


def cache_key(video_digest: str, cfg: LabelConfig) -> str:
    return hashlib.sha256(f"{video_digest}:{cfg.fingerprint()}".encode()).hexdigest()[:32]
