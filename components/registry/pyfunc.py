"""MLflow pyfunc flavour of the Predictor: the registered artifact is the Predictor checkpoint itself.

The checkpoint already carries everything inference needs (architecture args, preprocessing, clip shape,
threshold, landmark backend), so the pyfunc wrapper holds no state of its own and serving can skip pyfunc
entirely and build the Predictor from the same file (``load_champion``).
"""
from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np

CHECKPOINT_ARTIFACT = "checkpoint"


class EulerNetPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(clips uint8 (N,T,S,S,3)) -> scores float32 (N,)``; ``params={"output": "maps"}`` -> (N,T,M,M)."""

    def load_context(self, context) -> None:
        from components.model.predictor import Predictor

        self.predictor = Predictor.from_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT])

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would infer a schema from them
        clips = _as_clips(model_input)
        if (params or {}).get("output", "scores") == "maps":
            return np.asarray(self.predictor.predict_maps(clips), dtype=np.float32)  # (N, T, M, M)
        return np.asarray(self.predictor.score_clips(clips), dtype=np.float32)  # (N,)


def _as_clips(model_input: Any) -> np.ndarray:
    # pyfunc may hand over a dict of named tensors when the caller used one; accept both forms.
    if isinstance(model_input, dict):
        if len(model_input) != 1:
            raise ValueError(f"expected one input tensor 'clips', got {sorted(model_input)}")
        model_input = next(iter(model_input.values()))
    clips = np.asarray(model_input)
    if clips.ndim != 5 or clips.shape[-1] != 3 or clips.dtype != np.uint8:
        raise ValueError(f"clips must be uint8 (N, T, S, S, 3), got {clips.dtype} {clips.shape}")
    return clips


def make_signature(clip_len: int, crop_size: int):
    """Tensor signature fixed to the checkpoint's clip shape so a wrong crop size fails at the MLflow boundary."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(np.uint8), (-1, clip_len, crop_size, crop_size, 3), name="clips")])
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1,), name="scores")])
    params = ParamSchema([ParamSpec("output", "string", "scores")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)
