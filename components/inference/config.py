"""The inference config: everything besides the weights that turns a video into a score, frozen with them.

Like timm's ``pretrained_cfg`` it is written into every checkpoint by training and read back by evaluation,
serving, ``eulernet predict`` and the registered MLflow model, so none of them carries its own copy of a crop
size, a normalisation or a landmark setting. Labeling settings reach it by one road: the label stage's
``LabelConfig`` (see :meth:`InferenceConfig.from_label_config`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.face.crop import clip_geometry_errors
from components.face.tracking import face_path_errors, recorded_track, resolved_track
from components.model.variants import LABEL_TYPES, VARIANTS

from .video_head import VideoHead

DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)
# Used only when a checkpoint carries no threshold chosen on a dev set (e.g. straight out of a unit test).
FALLBACK_THRESHOLD = 0.5
# The longest frame side used when neither the checkpoint nor the caller bounds the decode size.
DEFAULT_MAX_SIDE = 640


class CheckpointError(ValueError):
    """A checkpoint file or dict that is not a valid EulerNet checkpoint."""


@dataclass(frozen=True)
class InferenceConfig:
    """How a video becomes model input and how a score becomes a decision, for one set of weights."""

    variant: str
    crop_size: int
    label_type: str | None = None  # None: the variant's own supervision (Table I)
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    clip_len: int = 4
    clip_interval: int = 3
    clips_per_video: int | None = None  # None: every non-overlapping clip
    threshold: float | None = None      # chosen on dev; None falls back to FALLBACK_THRESHOLD
    landmark_backend: str = "dlib"
    landmark_options: Mapping[str, Any] = field(default_factory=dict)
    face_fraction: float = 0.75
    max_side: int | None = None         # longest frame side labeling decoded at; inference decodes the same
    face_path: str = "detect"           # how labeling found faces on sampled frames (detect each | track)
    track: Mapping[str, Any] = field(default_factory=dict)  # the tracker's options when face_path is track
    # How clip scores and landmarks become the video's score (.video_head); None: the mean clip score (the paper's).
    video_head: Mapping[str, Any] | None = None
    # Seconds from a video's start over which its clips are spread; None: as far as the caller reads (serving:
    # serve.max_seconds). The head's motion statistics grow with the span they see, so a model fitted on one window
    # is scored on the same one everywhere (docs/model-card.md, "The scored window").
    window_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise CheckpointError(f"unknown variant {self.variant!r}; known: {sorted(VARIANTS)}")
        if self.label_type is None:
            object.__setattr__(self, "label_type", VARIANTS[self.variant].label_type)
        if self.label_type not in LABEL_TYPES:
            raise CheckpointError(f"label_type must be one of {LABEL_TYPES}, got {self.label_type!r}")
        if geometry := clip_geometry_errors(self.crop_size, self.clip_len, self.clip_interval):
            raise CheckpointError("; ".join(geometry))
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise CheckpointError(f"mean/std need 3 values with std > 0, got {mean}, {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.clips_per_video is not None and self.clips_per_video < 1:
            raise CheckpointError(f"clips_per_video must be >= 1 or None, got {self.clips_per_video}")
        if self.threshold is not None:
            if not math.isfinite(float(self.threshold)):
                raise CheckpointError(f"threshold must be finite or None, got {self.threshold}")
            object.__setattr__(self, "threshold", float(self.threshold))
        if self.max_side is not None and int(self.max_side) < 8:
            raise CheckpointError(f"max_side must be >= 8 or None, got {self.max_side}")
        object.__setattr__(self, "landmark_options", dict(self.landmark_options or {}))
        problems = face_path_errors(self.face_path, self.track)
        if problems:
            raise CheckpointError("; ".join(problems))
        object.__setattr__(self, "track", dict(self.track or {}))
        if self.window_seconds is not None:
            w = float(self.window_seconds)
            if not (math.isfinite(w) and w > 0):
                raise CheckpointError(f"window_seconds must be > 0 or None, got {self.window_seconds}")
            object.__setattr__(self, "window_seconds", w)
        if self.video_head is not None:
            try:
                head = VideoHead.from_dict(self.video_head)
            except ValueError as exc:
                raise CheckpointError(str(exc)) from None
            object.__setattr__(self, "video_head", head.to_dict())

    # ------------------------------------------------------------------ derived values
    @property
    def map_size(self) -> int:
        return self.crop_size // 8

    @property
    def decode_side(self) -> int:
        """Longest side frames are decoded at: labeling's own when known, so inference crops like labeling."""
        return int(self.max_side or DEFAULT_MAX_SIDE)

    def window_frames(self, fps: float) -> int | None:
        """Frames of the scored window at ``fps`` (at least 1); None when the model sets no window."""
        from components.data.video import frames_in

        if self.window_seconds is None or not fps > 0:
            return None
        return frames_in(self.window_seconds, fps)

    @functools.cached_property  # built once per config: result() asks for it on every answer
    def head(self) -> VideoHead | None:
        return None if self.video_head is None else VideoHead.from_dict(self.video_head)

    def decide(self, score: float) -> tuple[str, float]:
        """``(decision, threshold)``: live when the score reaches the dev-chosen threshold."""
        threshold = FALLBACK_THRESHOLD if self.threshold is None else self.threshold
        return ("live" if score >= threshold else "spoof"), threshold

    def with_threshold(self, threshold: float | None) -> "InferenceConfig":
        return dataclasses.replace(self, threshold=threshold)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_label_config(cls, label: Any, *, variant: str, crop_size: int | None = None,
                          clip_len: int | None = None, label_type: str | None = None,
                          threshold: float | None = None) -> "InferenceConfig":
        """The inference side of a labeling run (``components.labeling.config.LabelConfig``): the one road by
        which landmark and clip settings reach a checkpoint. ``crop_size``/``clip_len`` override the label
        config's when the shards say otherwise (training reads them from the data)."""
        return cls(variant=variant, label_type=label_type, crop_size=int(crop_size or label.crop_size),
                   clip_len=int(clip_len or label.clip_len), clip_interval=label.clip_interval,
                   clips_per_video=label.clips_per_video, threshold=threshold, landmark_backend=label.backend,
                   landmark_options=dict(label.backend_options), face_fraction=label.face_fraction,
                   max_side=label.max_side, face_path=getattr(label, "face_path", "detect"),
                   track=resolved_track(getattr(label, "track", None)))

    # ------------------------------------------------------------------ checkpoint layout
    def to_meta(self, extra: Mapping[str, Any] | None = None) -> dict:
        """The checkpoint's non-weight keys (layout ``eulernet-checkpoint/1``, unchanged since v1)."""
        return {
            "variant": self.variant,
            "preprocess": {"crop_size": self.crop_size, "mean": list(self.mean), "std": list(self.std)},
            "clip": {"length": self.clip_len, "interval": self.clip_interval, "per_video": self.clips_per_video},
            "label_type": self.label_type,
            "threshold": self.threshold,
            "landmark": {"backend": self.landmark_backend, "options": dict(self.landmark_options),
                         "face_fraction": self.face_fraction,
                         "max_side": None if self.max_side is None else int(self.max_side),
                         "face_path": self.face_path, "track": dict(self.track)},
            **({} if self.video_head is None else {"video_head": dict(self.video_head)}),
            **({} if self.window_seconds is None else {"window_seconds": self.window_seconds}),
            "extra": dict(extra or {}),
        }

    @classmethod
    def from_meta(cls, ckpt: Mapping[str, Any]) -> "InferenceConfig":
        """Read back :meth:`to_meta` (checkpoints written before a key existed get its old default)."""
        pre, clip = ckpt["preprocess"], ckpt["clip"]
        landmark = ckpt.get("landmark") or {}
        try:
            return cls(variant=ckpt.get("variant", "baseline"), label_type=ckpt.get("label_type"),
                       crop_size=int(pre["crop_size"]), mean=tuple(pre["mean"]), std=tuple(pre["std"]),
                       clip_len=int(clip["length"]), clip_interval=int(clip["interval"]),
                       clips_per_video=clip.get("per_video"), threshold=ckpt.get("threshold"),
                       landmark_backend=landmark.get("backend", "dlib"),
                       landmark_options=dict(landmark.get("options") or {}),
                       face_fraction=float(landmark.get("face_fraction", 0.75)), max_side=landmark.get("max_side"),
                       face_path=landmark.get("face_path", "detect"), track=recorded_track(landmark.get("track")),
                       video_head=ckpt.get("video_head"), window_seconds=ckpt.get("window_seconds"))
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint inference settings are incomplete: {exc}") from exc

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std),
                "landmark_options": dict(self.landmark_options), "track": dict(self.track),
                "video_head": None if self.video_head is None else dict(self.video_head)}
