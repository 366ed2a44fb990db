"""MLflow pyfunc flavour: the registered model scores videos through the same Predictor as everything else.

The registered artifact is the Predictor checkpoint itself (weights + inference config), read with
``torch.load(weights_only=True)``; this wrapper holds no state of its own. The library's code travels with the
model (``code_paths``) and its imports are pinned, so loading needs MLflow and those packages, not this
repository::

    model = mlflow.pyfunc.load_model("models:/eulernet@champion")
    model.predict(pd.DataFrame({"video": ["clip.mp4"]}))   # -> score, decision, threshold, n_clips, error

The same logged model also carries the network as an ONNX graph (``artifacts/model.onnx``, exported at
registration) declared as MLflow's ``onnx`` flavour in the same MLmodel file, so
``mlflow.onnx.load_model("models:/eulernet@champion")`` returns it; the pyfunc runs it with ONNX Runtime when
onnxruntime is installed (the Predictor's ``engine="auto"``) and the checkpoint's torch model otherwise.
"""
from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

CHECKPOINT_ARTIFACT = "checkpoint"
# Where the checkpoint lands inside a logged model: MLflow copies each artifact to artifacts/<file name>.
CHECKPOINT_FILE = "checkpoint.pt"
ONNX_ARTIFACT = "onnx"
ONNX_FILE = "model.onnx"  # artifacts/model.onnx: the data of the model's `onnx` flavour
OUTPUT_COLUMNS = ("score", "decision", "threshold", "n_clips", "error")


class EulerNetPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(DataFrame[video: path]) -> DataFrame[score, decision, threshold, n_clips, error]``.

    A video that cannot be scored (unreadable, no face, too short) gets ``score = NaN`` and its reason in
    ``error``; the other rows are still scored.
    """

    def load_context(self, context) -> None:
        from components.inference.predictor import Predictor

        _verify_digests(context)
        graph = context.artifacts.get(ONNX_ARTIFACT)
        # The registered graph when there is one (ONNX Runtime if installed, else torch); never an export here.
        self.predictor = Predictor.from_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT],
                                                   engine="auto" if graph else "torch", onnx_graph=graph)

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would infer a schema from them
        rows = [score_video(self.predictor, path) for path in _video_paths(model_input)]
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def _verify_digests(context) -> None:
    """The artifacts' sha256 recorded at registration (``model_config["sha256"]``) must match the files MLflow
    handed over; a model logged before digests were recorded has none and loads as it is."""
    from components.data.digest import sha256_file

    want = ((getattr(context, "model_config", None) or {}).get("sha256")) or {}
    for artifact, digest in want.items():
        path = context.artifacts.get(artifact)
        if path is None:
            raise ValueError(f"the model lists artifact {artifact!r} but MLflow provided none")
        got = sha256_file(path)
        if got != digest:
            raise ValueError(f"artifact {artifact!r} does not match the sha256 recorded at registration "
                             f"({got[:16]}... vs {digest[:16]}...): it was changed; refusing to load")


def score_video(predictor, path: str) -> dict[str, Any]:
    from components.data.video import VideoError
    from components.face.clips import LabelingError

    try:
        out = predictor.predict_file(path)
    except (VideoError, LabelingError, FileNotFoundError, ValueError) as exc:
        return {"score": float("nan"), "decision": None, "threshold": predictor.decide(0.0)[1], "n_clips": 0,
                "error": f"{path}: {exc}"}
    return {"score": out["score"], "decision": out["decision"], "threshold": out["threshold"],
            "n_clips": out["n_clips"], "error": None}


def _video_paths(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        if "video" not in model_input.columns:
            raise ValueError(f"expected a 'video' column of file paths, got columns {list(model_input.columns)}")
        return [str(v) for v in model_input["video"]]
    if isinstance(model_input, (list, tuple, np.ndarray)):
        return [str(v) for v in model_input]
    if isinstance(model_input, str):
        return [model_input]
    raise ValueError(f"expected a DataFrame with a 'video' column, got {type(model_input).__name__}")


def make_signature():
    """Video paths in, one decision row per video out."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema([ColSpec("string", "video")])
    outputs = Schema([ColSpec("double", "score"), ColSpec("string", "decision"), ColSpec("double", "threshold"),
                      ColSpec("long", "n_clips"), ColSpec("string", "error")])
    return ModelSignature(inputs=inputs, outputs=outputs)


class _PyfuncWithOnnx:
    """The ``flavor`` :meth:`mlflow.models.Model.log` saves with: the pyfunc model, plus (when an ONNX graph is
    among its artifacts) MLflow's ``onnx`` flavour pointing at that same file, declared with the keys
    ``mlflow.onnx.save_model`` writes (mlflow 3.x: onnx_version, data, providers, onnx_session_options, code), so
    ``mlflow.onnx.load_model`` reads it. Both flavours share the MLmodel file and its ``metadata`` (the inference
    config); the graph is stored once."""

    __name__ = "mlflow.pyfunc"

    def __init__(self, with_onnx: bool):
        self.with_onnx = with_onnx

    def save_model(self, path, mlflow_model, **kwargs):
        if self.with_onnx:
            import onnx

            mlflow_model.add_flavor("onnx", onnx_version=onnx.__version__, data=f"artifacts/{ONNX_FILE}",
                                    providers=["CPUExecutionProvider"], onnx_session_options=None, code=None)
        return mlflow.pyfunc.save_model(path=path, mlflow_model=mlflow_model, **kwargs)


def log_model(name: str, python_model: str, artifacts: dict[str, str], **kwargs):
    """``mlflow.pyfunc.log_model`` for a models-from-code file, adding the ``onnx`` flavour when
    ``artifacts`` holds ``ONNX_ARTIFACT`` (a file named ``ONNX_FILE``). Returns MLflow's ``ModelInfo``."""
    from pathlib import Path

    from mlflow.models import Model

    with_onnx = ONNX_ARTIFACT in artifacts
    if with_onnx and Path(artifacts[ONNX_ARTIFACT]).name != ONNX_FILE:
        raise ValueError(f"the ONNX artifact must be a file named {ONNX_FILE}, got {artifacts[ONNX_ARTIFACT]}")
    return Model.log(artifact_path=None, name=name, flavor=_PyfuncWithOnnx(with_onnx),
                     flavor_name="pyfunc.ModelFromCode", python_model=python_model, artifacts=artifacts, **kwargs)
