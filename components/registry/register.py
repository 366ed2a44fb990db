"""Register a Predictor checkpoint as a new version of a registered model (a pyfunc with its ONNX graph and
the digests of both), alias ``candidate``; the ``register:`` section of params.yaml."""
from __future__ import annotations

import dataclasses
import math
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from .versions import CANDIDATE, DATA_GATES_TAG, DIGEST_PREFIX, METRIC_PREFIX, TEST_DATA_TAG, RegistryError, _client

# Packages the pyfunc, the Predictor and its landmark backend import at inference time; pinned from this
# environment. The project's own code travels with the model (code_paths), so these are all a clean environment
# needs: `mlflow.pyfunc.load_model` / `mlflow models serve` work without this repository installed.
PINNED_PACKAGES = (
    "mlflow", "pandas", "torch", "numpy", "opencv-python-headless", "dlib-bin", "face-recognition-models",
    "scikit-image", "scipy", "pyyaml", "onnx", "onnxruntime",  # the last two only when installed (ONNX Runtime)
)


def stage_code(dest: Path) -> Path:
    """The library's Python sources (``components/``, no bytecode, no data files but the vendored face detector
    a checkpoint may name) copied to ``dest/components``: logged as the model's ``code_paths``, which MLflow puts
    on ``sys.path`` when it loads the model."""
    import shutil

    import components

    src = Path(components.__file__).parent
    target = Path(dest) / "components"
    def ignore(folder: str, names: list[str]) -> list[str]:
        keep_all = Path(folder).name == "yunet"  # the detector's model and licence travel with its code
        return [n for n in names if n == "__pycache__" or (
            not keep_all and (Path(folder) / n).is_file() and not n.endswith(".py"))]

    shutil.copytree(src, target, ignore=ignore)
    return target


@dataclasses.dataclass
class RegisterConfig:
    """The ``register:`` section of params.yaml."""

    model_name: str = "eulernet"
    experiment: str = "eulernet-register"
    metric: str = "acer"          # test metric that promotion compares
    auto_promote: bool = True     # run the promotion rule right after registering
    checkpoint: str = "artifacts/model/checkpoint.pt"
    metrics: str = "artifacts/eval/metrics.json"
    shards: str = "artifacts/shards"   # its index.csv identifies the test data (version tag test_data_hash)
    out: str = "artifacts/register/registered.json"

    def __post_init__(self) -> None:
        if not self.model_name or "/" in self.model_name or "@" in self.model_name:
            raise ValueError(f"model_name must be a plain name without '/' or '@', got {self.model_name!r}")
        if not self.metric:
            raise ValueError("metric must name a test metric from metrics.json, e.g. 'acer'")


def pinned_requirements(packages: tuple[str, ...] = PINNED_PACKAGES) -> list[str]:
    """``name==version`` for each package installed here; the local tag (``+cpu``) is dropped so the pin
    resolves on a machine with a different torch build."""
    reqs = []
    for pkg in packages:
        try:
            version = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
        reqs.append(f"{pkg}=={version.split('+')[0]}")
    return reqs


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Top-level numeric entries of metrics.json (nested per-attack tables are not comparable scalars)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            continue
        out[str(k).lower()] = float(v)
    return out


def register(
    checkpoint_path: str | Path,
    name: str,
    metrics: dict[str, Any],
    threshold: float | None = None,
    tags: dict[str, str] | None = None,
    experiment: str = "eulernet-register",
    artifact_location: str | None = None,
    await_registration_for: int = 60,
    test_data_hash: str | None = None,
) -> str:
    """Log the checkpoint as a pyfunc model, register it under ``name`` and point ``candidate`` at it.

    The model also carries the network exported to ONNX as an ``onnx`` flavour (``artifacts/model.onnx``) when
    the exporter (onnx + onnxscript) is installed; the version tag ``onnx`` says ``true`` or why not.

    ``threshold`` (chosen on dev) is written into the registered checkpoint so every consumer of the version
    decides with the same cut. ``test_data_hash`` (see :func:`hash_test_data`) becomes the version tag
    ``test_data_hash``; without it the version is never compared with another (only ``force`` promotes it over
    a champion). Returns the new version number as a string.
    """
    import mlflow
    import torch

    from components.inference.checkpoint import load_checkpoint
    from components.inference.config import InferenceConfig

    from .pyfunc import CHECKPOINT_ARTIFACT, CHECKPOINT_FILE, ONNX_ARTIFACT, ONNX_FILE, log_model, make_signature

    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.is_file():
        raise RegistryError(f"checkpoint {checkpoint_path} not found (run `eulernet train` first)")
    ckpt = load_checkpoint(checkpoint_path)
    if threshold is not None:
        if not math.isfinite(float(threshold)):
            raise RegistryError(f"threshold must be a finite number, got {threshold!r}")
        ckpt["threshold"] = float(threshold)
    inference = InferenceConfig.from_meta(ckpt)  # the checkpoint's keys, read once and checked
    flat = _flat_metrics(metrics)

    exp = mlflow.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(experiment, artifact_location=artifact_location)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / CHECKPOINT_FILE
        torch.save(ckpt, staged)  # plain dict of tensors/primitives: still loadable with weights_only=True
        artifacts = {CHECKPOINT_ARTIFACT: str(staged)}
        onnx_status = _export_graph(ckpt, Path(tmp) / ONNX_FILE)
        if onnx_status == "true":
            artifacts[ONNX_ARTIFACT] = str(Path(tmp) / ONNX_FILE)
        # What is served must be what was registered: the digests travel as version tags (checked by
        # load_version) and in the model's own config (checked by the pyfunc wherever it is loaded).
        from components.data.digest import sha256_file

        digests = {k: sha256_file(v) for k, v in artifacts.items()}
        with mlflow.start_run(experiment_id=exp_id, run_name=f"register-{name}") as run:
            mlflow.log_metrics({f"test_{k}": v for k, v in flat.items()})
            mlflow.log_params({
                "threshold": inference.threshold, "crop_size": inference.crop_size,
                "clip_length": inference.clip_len, "clip_interval": inference.clip_interval,
                "variant": inference.variant, "landmark_backend": inference.landmark_backend,
                "source_checkpoint": str(checkpoint_path),
            })
            # No input_example: MLflow would run a video through the model at registration just to store it.
            warnings.filterwarnings("ignore", message="An input example was not provided")
            info = log_model(
                name="model",
                python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts=artifacts,
                signature=make_signature(),
                pip_requirements=pinned_requirements(),
                code_paths=[str(stage_code(Path(tmp) / "code"))],
                registered_model_name=name,
                await_registration_for=await_registration_for,
                # The inference config, readable from the MLmodel file without loading any weights.
                metadata={"inference": inference.to_dict()},
                model_config={"sha256": digests},
            )
            run_id = run.info.run_id
    version = str(info.registered_model_version)
    client = _client()
    for k, v in flat.items():
        client.set_model_version_tag(name, version, f"{METRIC_PREFIX}{k}", repr(v))
    client.set_model_version_tag(name, version, "threshold", repr(inference.threshold))
    client.set_model_version_tag(name, version, "run_id", run_id)
    client.set_model_version_tag(name, version, "onnx", onnx_status)
    for artifact, digest in digests.items():
        client.set_model_version_tag(name, version, f"{DIGEST_PREFIX}{artifact}", digest)
    for k, v in (tags or {}).items():
        client.set_model_version_tag(name, version, str(k), str(v))
    if test_data_hash:
        client.set_model_version_tag(name, version, TEST_DATA_TAG, str(test_data_hash))
    gates = (ckpt.get("extra") or {}).get(DATA_GATES_TAG)
    # What training recorded about its data ("skipped" keeps the version from any plain promotion); a "skipped"
    # the evaluation recorded (in ``tags``) stands whatever training said.
    if gates and (tags or {}).get(DATA_GATES_TAG) != "skipped":
        client.set_model_version_tag(name, version, DATA_GATES_TAG, str(gates))
    from .card import CARD_FILE, model_card
    from .versions import version_info

    # The card from the registry's own record of this version: the text /v1/model/card serves for it.
    client.log_text(run_id, model_card(version_info(name, version), inference), CARD_FILE)
    client.set_registered_model_alias(name, CANDIDATE, version)
    return version


def _export_graph(ckpt: dict, path: Path) -> str:
    """Export the checkpoint's network to ``path`` (ONNX, dynamic batch, checked against torch when onnxruntime is
    installed). Returns ``"true"``, or why there is no graph: registration never fails for want of one."""
    from components.inference.onnx_engine import export_onnx, exporter_available
    from components.inference.predictor import Predictor

    if not exporter_available():
        return "false: onnx/onnxscript not installed at registration"
    predictor = Predictor.from_checkpoint(ckpt)
    try:
        export_onnx(predictor.model, predictor.crop_size, inference=predictor.inference, path=path)
    except Exception as exc:  # an exporter gap must not block registering the (torch-servable) checkpoint
        warnings.warn(f"registering without an ONNX graph: export failed: {type(exc).__name__}: {exc}", stacklevel=3)
        return f"false: export failed ({type(exc).__name__})"
    return "true"


def hash_test_data(index_csv: str | Path, split: str = "test") -> str:
    """The test-data hash of a shards ``index.csv`` (``components.labeling.shards.split_data_hash``);
    RegistryError when it cannot be computed."""
    from components.labeling.shards import ShardsError, split_data_hash

    try:
        return split_data_hash(index_csv, split)
    except ShardsError as exc:
        raise RegistryError(str(exc)) from None
