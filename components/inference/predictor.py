"""The one inference pipeline: video -> faces -> clips -> tensor -> map -> score -> decision.

``Predictor.from_checkpoint`` rebuilds the model and its :class:`InferenceConfig`; evaluation
(:meth:`Predictor.score_clips` on labeled shards), serving (:meth:`extract_clips` + batched
:meth:`predict_maps` + :meth:`result`), ``eulernet predict`` (:meth:`predict_file`), the registered MLflow model
and the tests all go through it, so a face is found, cropped, normalised and scored one way only.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from components.data.video import fit_frame
from components.model.eulernet import EulerNet, EulerNetConfig

from .checkpoint import load_checkpoint, validate_checkpoint
from .config import CheckpointError, InferenceConfig
from .tensors import clip_scores, to_model_input, video_score
from .video_head import video_features


class Predictor:
    """An EulerNet plus its inference config, rebuilt from a checkpoint."""

    def __init__(self, model: EulerNet, inference: InferenceConfig, device: str | torch.device = "cpu",
                 batch_size: int = 8, extra: dict | None = None, engine: str = "torch",
                 onnx_graph: bytes | str | os.PathLike | None = None, threads: int | None = None):
        """``engine``: what runs the network on a batch of clips -- ``"torch"`` (the model), ``"onnx"`` (ONNX
        Runtime on ``onnx_graph``, exported from the model when None; see ``onnx_engine``) or ``"auto"`` (ONNX
        Runtime when it is installed and a graph is given or exportable, else torch). Only that step differs:
        crop checks, normalisation and the score rule are shared. ``threads``: ONNX Runtime intra-op threads
        (default ``torch.get_num_threads()``). ``self.engine`` says which one was chosen."""
        from .onnx_engine import make_engine

        self.model = model.eval()
        self.inference = inference
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.extra: dict = dict(extra or {})
        self._backends: dict[str, Any] = {}
        self._onnx = make_engine(engine, self.model, inference.crop_size, self.device, graph=onnx_graph,
                                 threads=threads, inference=inference)
        self.engine = "torch" if self._onnx is None else "onnx"

    @classmethod
    def from_checkpoint(cls, path_or_dict: str | os.PathLike | dict, device: str | torch.device = "cpu",
                        batch_size: int = 8, engine: str = "torch",
                        onnx_graph: bytes | str | os.PathLike | None = None,
                        threads: int | None = None) -> "Predictor":
        ckpt = validate_checkpoint(path_or_dict) if isinstance(path_or_dict, dict) else load_checkpoint(path_or_dict)
        try:
            arch = EulerNetConfig.from_dict(dict(ckpt["model_config"]))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint model_config is invalid: {exc}") from exc
        inference = InferenceConfig.from_meta(ckpt)
        if arch.clip_len != inference.clip_len:
            raise CheckpointError(f"model clip_len {arch.clip_len} != clip length {inference.clip_len}")
        model = EulerNet(arch)
        try:
            model.load_state_dict(ckpt["state_dict"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint weights do not fit its model_config: {exc}") from exc
        return cls(model.to(device), inference, device=device, batch_size=batch_size, extra=ckpt.get("extra"),
                   engine=engine, onnx_graph=onnx_graph, threads=threads)

    # ------------------------------------------------------------------ what the checkpoint says
    # Read-only views of the inference config, so callers never keep copies of its values.
    architecture = property(lambda self: self.model.cfg)
    variant = property(lambda self: self.inference.variant)
    label_type = property(lambda self: self.inference.label_type)
    crop_size = property(lambda self: self.inference.crop_size)
    mean = property(lambda self: self.inference.mean)
    std = property(lambda self: self.inference.std)
    clip_len = property(lambda self: self.inference.clip_len)
    clip_interval = property(lambda self: self.inference.clip_interval)
    clips_per_video = property(lambda self: self.inference.clips_per_video)
    threshold = property(lambda self: self.inference.threshold)
    landmark_backend = property(lambda self: self.inference.landmark_backend)
    landmark_options = property(lambda self: dict(self.inference.landmark_options))
    face_fraction = property(lambda self: self.inference.face_fraction)
    max_side = property(lambda self: self.inference.max_side)
    map_size = property(lambda self: self.inference.map_size)
    video_head = property(lambda self: self.inference.head)

    def with_threshold(self, threshold: float | None) -> "Predictor":
        """A copy sharing the same model, deciding at ``threshold`` (e.g. the one chosen on the dev set)."""
        try:
            inference = self.inference.with_threshold(threshold)
        except CheckpointError as exc:
            raise ValueError(str(exc)) from None
        return self.with_inference(inference)

    def with_inference(self, inference: InferenceConfig) -> "Predictor":
        """A copy sharing the same model (and engine) under other pre/post-processing settings, e.g. another
        face path or threshold. Settings the weights were trained for (variant, crop, normalisation, clip length,
        label type) must stay as they are."""
        fixed = ("variant", "crop_size", "mean", "std", "clip_len", "label_type")
        changed = [k for k in fixed if getattr(inference, k) != getattr(self.inference, k)]
        if changed:
            raise ValueError(f"the weights were trained with these settings; they cannot change: {changed}")
        other = Predictor(self.model, inference, self.device, self.batch_size, self.extra)
        other._backends = self._backends
        other._onnx, other.engine = self._onnx, self.engine
        return other

    def decide(self, score: float) -> tuple[str, float]:
        return self.inference.decide(score)

    # ------------------------------------------------------------------ clips -> maps -> scores
    def _check_crops(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim != 5 or crops.shape[-1] != 3:
            raise ValueError(f"crops must be (N, T, S, S, 3) uint8 RGB, got shape {crops.shape}")
        if crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8, got {crops.dtype}")
        _, t, h, w, _ = crops.shape
        if t != self.clip_len or h != self.crop_size or w != self.crop_size:
            raise ValueError(f"crops are (T={t}, {h}x{w}); this model takes clips of {self.clip_len} frames at "
                             f"{self.crop_size}x{self.crop_size}")
        return crops

    @torch.no_grad()
    def predict_maps(self, crops: np.ndarray, busy: bool = False) -> np.ndarray:
        """Predicted maps ``(N, T, M, M)`` float32 in [0, 1], M = crop_size / 8. ``busy``: other work shares the
        cores (the Serve app with several requests in flight): the ONNX engine then runs on one thread."""
        crops = self._check_crops(crops)
        outs = []
        for i in range(0, len(crops), self.batch_size):
            x = to_model_input(crops[i : i + self.batch_size], self.mean, self.std, self.device)  # (B, T, 3, S, S)
            # The one step the engines differ in.
            maps = self.model(x) if self._onnx is None else self._onnx(x, busy=busy)  # (B, T, M, M)
            outs.append(maps.float().cpu().numpy())
        if not outs:
            return np.zeros((0, self.clip_len, self.map_size, self.map_size), np.float32)
        return np.concatenate(outs, axis=0)

    def score_clips(self, crops: np.ndarray) -> np.ndarray:
        """Live score per clip ``(N,)`` float32 in [0, 1]."""
        maps = self.predict_maps(crops)
        return clip_scores(maps) if len(maps) else np.zeros(0, np.float32)

    # ------------------------------------------------------------------ video -> faces -> clips
    def get_backend(self, backend: Any = None):
        """The landmark backend: ``None`` -> the checkpoint's, a name -> built once and cached, an object with
        ``.detect`` -> itself (serving keeps one per thread)."""
        if backend is not None and not isinstance(backend, str):
            return backend
        name = backend or self.landmark_backend
        if name not in self._backends:
            self._backends[name] = make_landmark_backend(self.inference, name)
        return self._backends[name]

    def prepare_frames(self, frames: np.ndarray) -> np.ndarray:
        """Frames at labeling's decode size: larger ones are downscaled (INTER_AREA), as labeling's decoder did.
        Decoders that already bound the side (``read_video``, the Serve app) make this a no-op."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (F, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
        side = self.inference.decode_side
        if max(frames.shape[1:3]) <= side:
            return frames
        return np.stack([fit_frame(f, side) for f in frames])

    def read_video(self, path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
        """Decode a video file at labeling's decode size (``VideoError`` for unreadable files), no further than the
        model's scored window (``InferenceConfig.window_seconds``) or ``max_frames``, whichever ends first."""
        from components.data.video import read_frames, video_fps

        window = None if self.inference.window_seconds is None else self.inference.window_frames(video_fps(path))
        if window is not None:
            max_frames = window if max_frames is None else min(max_frames, window)
        return read_frames(path, max_frames=max_frames, max_side=self.inference.decode_side)

    def extract_clips(self, frames: np.ndarray, backend: Any = None, max_clips: int | None = None):
        """Face clips cut exactly as labeling cut the training data (same backend, crop, clip layout).

        Raises ``components.face.clips.LabelingError`` (too short, no face, several faces).
        """
        from components.face.clips import extract_clips

        return extract_clips(
            self.prepare_frames(frames),
            self.get_backend(backend),
            crop_size=self.crop_size,
            clip_len=self.clip_len,
            clip_interval=self.clip_interval,
            max_clips=max_clips if max_clips is not None else self.clips_per_video,
            face_fraction=self.face_fraction,
            face_path=self.inference.face_path,
            track=self.inference.track,
        )

    def result(self, clips: Any, maps: np.ndarray) -> dict:
        """The answer for one video from its clips and their predicted maps ``(N, T, M, M)``: what
        ``predict_video``, ``eulernet predict`` and the Serve endpoint all return."""
        scores = clip_scores(np.asarray(maps))
        if len(scores) == 0:
            raise ValueError("no clips could be cut from the video (too short or no face)")
        head = self.video_head
        features = None
        if head is None:
            score = video_score(scores)
        else:
            points = getattr(clips, "points", None)
            if points is None or len(points) != len(scores):
                raise ValueError("this model's video head needs the clips' landmarks (FaceClips.points), one set per "
                                 "clip; got none or a different count")
            features = video_features(scores, points)
            score = head.score(features)
        decision, threshold = self.decide(score)
        box = getattr(clips, "box", None)
        return {
            "score": score,
            "clip_score_mean": video_score(scores),  # the paper's video score, also when a head decides
            "video_features": features,
            "decision": decision,
            "threshold": threshold,
            "threshold_from_checkpoint": self.threshold is not None,
            "clip_scores": [float(s) for s in scores],
            "clip_starts": [int(s) for s in getattr(clips, "starts", [])],
            "n_clips": int(len(scores)),
            "n_frames_no_face": int(getattr(clips, "n_frames_no_face", 0)),
            "box": None if box is None else [float(v) for v in np.asarray(box).ravel()],
            "variant": self.variant,
            "label_type": self.label_type,
        }

    def predict_video(self, frames: np.ndarray, backend: Any = None, max_clips: int | None = None) -> dict:
        """Score a whole video: find the face, cut clips as labeling did, average the clip scores.

        ``backend``: None (the checkpoint's landmark backend), a backend name, or a backend object.
        ``max_clips``: None uses the checkpoint's clips per video (all clips when that is unset).
        Errors from face finding (no face, too few frames) propagate to the caller.
        """
        clips = self.extract_clips(frames, backend, max_clips)
        return self.result(clips, self.predict_maps(clips.crops))

    def predict_file(self, path: str | os.PathLike, max_frames: int | None = None,
                     max_clips: int | None = None) -> dict:
        """:meth:`predict_video` on a video file decoded at labeling's size."""
        return self.predict_video(self.read_video(path, max_frames=max_frames), max_clips=max_clips)

    def describe(self) -> dict:
        """The inference config and architecture, as plain JSON (``/v1/model``, MLflow metadata)."""
        return {"inference": self.inference.to_dict(), "architecture": self.architecture.to_dict()}


def make_landmark_backend(inference: InferenceConfig, name: str | None = None):
    """A fresh landmark backend as the inference config describes (options only apply to its own backend)."""
    from components.face.landmarks import make_backend

    name = name or inference.landmark_backend
    options = dict(inference.landmark_options) if name == inference.landmark_backend else {}
    return make_backend(name, **options)


__all__ = ["Predictor", "make_landmark_backend"]
