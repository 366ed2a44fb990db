"""Self-describing checkpoints and the Predictor that evaluate, serve, benchmarks and tests all use.

A checkpoint is a plain dict (tensors and python scalars/lists/dicts only, so
``torch.load(path, weights_only=True)`` can read it without trusting pickled code):

    {"format": "eulernet-checkpoint/1", "variant": str, "model_config": EulerNetConfig as a dict,
     "state_dict": {...}, "preprocess": {"crop_size", "mean", "std"},
     "clip": {"length", "interval", "per_video"}, "label_type": str, "threshold": float | None,
     "landmark": {"backend": str}, "extra": {...}}
"""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .eulernet import LABEL_TYPES, VARIANTS, EulerNet, EulerNetConfig

CHECKPOINT_FORMAT = "eulernet-checkpoint/1"
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)
# Used only when a checkpoint carries no threshold chosen on a dev set (e.g. straight out of training).
FALLBACK_THRESHOLD = 0.5


class CheckpointError(ValueError):
    """A checkpoint file or dict that is not a valid EulerNet checkpoint."""


def _plain(value: Any) -> Any:
    """Tuples -> lists, numpy scalars -> python, recursively: keeps the checkpoint weights_only-loadable."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise CheckpointError(f"checkpoint metadata must be plain python types, got {type(value).__name__}: {value!r}")


def build_meta(
    *,
    variant: str,
    crop_size: int,
    label_type: str | None = None,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    clip_len: int = 4,
    clip_interval: int = 3,
    clips_per_video: int | None = None,
    threshold: float | None = None,
    landmark_backend: str = "dlib",
    landmark_options: Mapping[str, Any] | None = None,
    face_fraction: float = 0.75,
    max_side: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Everything except the weights and the architecture, in the checkpoint layout.

    ``label_type`` defaults to the variant's own (Table I); ``extra`` is free (metrics, epoch, run id...).
    """
    if variant not in VARIANTS:
        raise CheckpointError(f"unknown variant {variant!r}; known: {sorted(VARIANTS)}")
    label_type = label_type or VARIANTS[variant].label_type
    if label_type not in LABEL_TYPES:
        raise CheckpointError(f"label_type must be one of {LABEL_TYPES}, got {label_type!r}")
    if not isinstance(crop_size, int) or crop_size < 8 or crop_size % 8:
        raise CheckpointError(f"crop_size must be a positive int divisible by 8, got {crop_size!r}")
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise CheckpointError(f"mean/std need 3 values with std > 0, got {mean}, {std}")
    if clip_len < 1 or clip_interval < 1:
        raise CheckpointError(f"clip length/interval must be >= 1, got {clip_len}, {clip_interval}")
    if clips_per_video is not None and clips_per_video < 1:
        raise CheckpointError(f"clips_per_video must be >= 1 or None, got {clips_per_video}")
    if threshold is not None and not math.isfinite(float(threshold)):
        raise CheckpointError(f"threshold must be finite or None, got {threshold}")
    return _plain(
        {
            "variant": variant,
            "preprocess": {"crop_size": int(crop_size), "mean": mean, "std": std},
            "clip": {"length": int(clip_len), "interval": int(clip_interval), "per_video": clips_per_video},
            "label_type": label_type,
            "threshold": None if threshold is None else float(threshold),
            # How labeling found and cropped faces: serving must do exactly the same, so it travels here
            # instead of being repeated in the serving config.
            "landmark": {"backend": landmark_backend, "options": dict(landmark_options or {}),
                         "face_fraction": float(face_fraction), "max_side": None if max_side is None else int(max_side)},
            "extra": dict(extra or {}),
        }
    )


def make_checkpoint(model: EulerNet, meta: Mapping[str, Any]) -> dict:
    """The checkpoint dict for ``model`` with ``meta`` (from :func:`build_meta`)."""
    required = ("variant", "preprocess", "clip", "label_type", "threshold", "landmark")
    missing = [k for k in required if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint meta lacks {missing}; build it with build_meta(...)")
    # Unwrap DDP / torch.compile wrappers first: the keys (and .cfg) must be those of a bare EulerNet.
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    if meta["clip"]["length"] != model.cfg.clip_len:
        raise CheckpointError(
            f"meta clip length {meta['clip']['length']} differs from the model's clip_len {model.cfg.clip_len}"
        )
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    ckpt = {"format": CHECKPOINT_FORMAT, "model_config": model.cfg.to_dict(), "state_dict": state}
    ckpt.update(_plain({k: v for k, v in meta.items() if k not in ("format", "model_config", "state_dict")}))
    ckpt.setdefault("extra", {})
    return ckpt


def save_checkpoint(path: str | os.PathLike, model: EulerNet, meta: Mapping[str, Any]) -> Path:
    """Write a self-describing checkpoint atomically (temp file + rename, so readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(model, meta)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def validate_checkpoint(ckpt: Any) -> dict:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint must be a dict, got {type(ckpt).__name__}")
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"not an EulerNet checkpoint: format={ckpt.get('format')!r}, want {CHECKPOINT_FORMAT!r}")
    for key in ("model_config", "state_dict", "preprocess", "clip", "label_type", "threshold"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint lacks {key!r}")
    for key in ("crop_size", "mean", "std"):
        if key not in ckpt["preprocess"]:
            raise CheckpointError(f"checkpoint preprocess lacks {key!r}")
    for key in ("length", "interval"):
        if key not in ckpt["clip"]:
            raise CheckpointError(f"checkpoint clip lacks {key!r}")
    return ckpt


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code) and check its layout."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises several types for corrupt / non-checkpoint files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return validate_checkpoint(ckpt)


def to_model_input(
    crops: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float], device: str | torch.device = "cpu"
) -> torch.Tensor:
    """uint8 RGB crops ``(N, T, S, S, 3)`` -> normalised float ``(N, T, 3, S, S)``: ((x / 255) - mean) / std.

    The one normalisation used by training and inference alike.
    """
    x = torch.as_tensor(np.ascontiguousarray(crops) if isinstance(crops, np.ndarray) else crops)
    if x.dim() != 5 or x.shape[-1] != 3:
        raise ValueError(f"crops must be (N, T, S, S, 3) RGB, got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"crops must be uint8, got {x.dtype}")
    x = x.to(device).permute(0, 1, 4, 2, 3).float().div_(255.0)  # (N, T, 3, S, S)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 1, 3, 1, 1)
    return (x - m) / s


class Predictor:
    """An EulerNet plus everything needed to use it, rebuilt from a checkpoint."""

    def __init__(self, model: EulerNet, checkpoint: dict, device: str | torch.device = "cpu", batch_size: int = 8):
        self.model = model.eval()
        self.checkpoint_meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.variant: str = checkpoint.get("variant", "baseline")
        self.label_type: str = checkpoint["label_type"]
        pre = checkpoint["preprocess"]
        self.crop_size: int = int(pre["crop_size"])
        self.mean = tuple(float(v) for v in pre["mean"])
        self.std = tuple(float(v) for v in pre["std"])
        clip = checkpoint["clip"]
        self.clip_len: int = int(clip["length"])
        self.clip_interval: int = int(clip["interval"])
        self.clips_per_video: int | None = clip.get("per_video")
        self.threshold: float | None = None if checkpoint["threshold"] is None else float(checkpoint["threshold"])
        landmark = checkpoint.get("landmark") or {}
        self.landmark_backend: str = landmark.get("backend", "dlib")
        self.landmark_options: dict = dict(landmark.get("options") or {})
        self.face_fraction: float = float(landmark.get("face_fraction", 0.75))
        self.max_side: int | None = landmark.get("max_side")  # longest frame side labeling decoded at
        self.extra: dict = dict(checkpoint.get("extra") or {})
        self._backends: dict[str, Any] = {}

    @classmethod
    def from_checkpoint(
        cls, path_or_dict: str | os.PathLike | dict, device: str | torch.device = "cpu", batch_size: int = 8
    ) -> "Predictor":
        ckpt = validate_checkpoint(path_or_dict) if isinstance(path_or_dict, dict) else load_checkpoint(path_or_dict)
        try:
            cfg = EulerNetConfig.from_dict(dict(ckpt["model_config"]))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint model_config is invalid: {exc}") from exc
        if cfg.clip_len != int(ckpt["clip"]["length"]):
            raise CheckpointError(f"model clip_len {cfg.clip_len} != clip length {ckpt['clip']['length']}")
        model = EulerNet(cfg)
        try:
            model.load_state_dict(ckpt["state_dict"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint weights do not fit its model_config: {exc}") from exc
        return cls(model.to(device), ckpt, device=device, batch_size=batch_size)

    # ----------------------------------------------------------------------------------------------
    @property
    def config(self) -> EulerNetConfig:
        return self.model.cfg

    @property
    def map_size(self) -> int:
        return self.crop_size // 8

    def with_threshold(self, threshold: float | None) -> "Predictor":
        """A copy sharing the same model, deciding at ``threshold`` (e.g. the one chosen on the dev set)."""
        if threshold is not None and not math.isfinite(float(threshold)):
            raise ValueError(f"threshold must be finite, got {threshold}")
        other = copy.copy(self)
        other.threshold = None if threshold is None else float(threshold)
        other.checkpoint_meta = {**self.checkpoint_meta, "threshold": other.threshold}
        return other

    def _check_crops(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim != 5 or crops.shape[-1] != 3:
            raise ValueError(f"crops must be (N, T, S, S, 3) uint8 RGB, got shape {crops.shape}")
        if crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8, got {crops.dtype}")
        n, t, h, w, _ = crops.shape
        if t != self.clip_len or h != self.crop_size or w != self.crop_size:
            raise ValueError(
                f"crops are (T={t}, {h}x{w}); this model takes clips of {self.clip_len} frames at "
                f"{self.crop_size}x{self.crop_size}"
            )
        return crops

    @torch.no_grad()
    def predict_maps(self, crops: np.ndarray) -> np.ndarray:
        """Predicted maps ``(N, T, M, M)`` float32 in [0, 1], M = crop_size / 8."""
        crops = self._check_crops(crops)
        outs = []
        for i in range(0, len(crops), self.batch_size):
            x = to_model_input(crops[i : i + self.batch_size], self.mean, self.std, self.device)
            outs.append(self.model(x).float().cpu().numpy())
        if not outs:
            return np.zeros((0, self.clip_len, self.map_size, self.map_size), np.float32)
        return np.concatenate(outs, axis=0)

    def score_clips(self, crops: np.ndarray) -> np.ndarray:
        """Live score per clip ``(N,)`` float32 in [0, 1] (mean of the predicted map)."""
        maps = self.predict_maps(crops)
        return maps.mean(axis=(1, 2, 3), dtype=np.float32) if len(maps) else np.zeros(0, np.float32)

    def decide(self, score: float) -> tuple[str, float]:
        threshold = FALLBACK_THRESHOLD if self.threshold is None else self.threshold
        return ("live" if score >= threshold else "spoof"), threshold

    def get_backend(self, backend: Any = None):
        """The landmark backend to use: ``None`` -> the checkpoint's, a name -> built once and cached,
        an object with ``.detect`` -> itself."""
        if backend is not None and not isinstance(backend, str):
            return backend  # an already built landmark backend (anything with .detect)
        name = backend or self.landmark_backend
        if name not in self._backends:
            from components.labeling.landmarks import make_backend

            options = self.landmark_options if name == self.landmark_backend else {}
            self._backends[name] = make_backend(name, **options)
        return self._backends[name]

    def extract_clips(self, frames: np.ndarray, backend: Any = None, max_clips: int | None = None):
        """Face clips cut exactly as labeling cut the training data (same backend, crop, clip layout).

        Frames larger than the labeling decode size are downscaled first, as labeling did.
        Raises ``components.labeling.clips.LabelingError`` (too short, no face, several faces).
        """
        from components.labeling.clips import extract_clips

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (F, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
        if self.max_side and max(frames.shape[1:3]) > self.max_side:
            import cv2

            s = self.max_side / max(frames.shape[1:3])
            size = (round(frames.shape[2] * s), round(frames.shape[1] * s))
            frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        return extract_clips(
            frames,
            self.get_backend(backend),
            crop_size=self.crop_size,
            clip_len=self.clip_len,
            clip_interval=self.clip_interval,
            max_clips=max_clips if max_clips is not None else self.clips_per_video,
            face_fraction=self.face_fraction,
        )

    def predict_video(self, frames: np.ndarray, backend: Any = None, max_clips: int | None = None) -> dict:
        """Score a whole video: find the face, cut clips exactly as labeling did, average the clip scores.

        ``backend``: None (the checkpoint's landmark backend), a backend name, or a backend object.
        ``max_clips``: None uses the checkpoint's clips per video (all clips when that is unset).
        Errors from face finding (no face, too few frames) propagate to the caller.
        """
        clips = self.extract_clips(frames, backend, max_clips)
        clip_scores = self.score_clips(clips.crops)
        if len(clip_scores) == 0:
            raise ValueError("no clips could be cut from the video (too short or no face)")
        score = float(clip_scores.mean())
        decision, threshold = self.decide(score)
        box = getattr(clips, "box", None)
        return {
            "score": score,
            "decision": decision,
            "threshold": threshold,
            "threshold_from_checkpoint": self.threshold is not None,
            "clip_scores": [float(s) for s in clip_scores],
            "starts": [int(s) for s in getattr(clips, "starts", [])],
            "n_clips": int(len(clip_scores)),
            "n_frames_no_face": int(getattr(clips, "n_frames_no_face", 0)),
            "box": None if box is None else [float(v) for v in np.asarray(box).ravel()],
            "variant": self.variant,
            "label_type": self.label_type,
        }


__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "Predictor",
    "build_meta",
    "make_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "validate_checkpoint",
    "to_model_input",
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "FALLBACK_THRESHOLD",
]
