"""Model registry flow: register a Predictor checkpoint as ``candidate``, promote it to ``champion`` by a metric
comparison, roll back, and load the champion for serving.

Conventions kept in the registry itself (so any MLflow UI or client sees them):
- version tags ``metric.<name>`` hold the test metrics the version was registered with;
- version tags ``promoted_at``/``promoted_by_force``/``promotion_reason`` record each promotion;
- the registered-model tag ``champion_history`` is a JSON list of champion versions, newest last, which is
  what ``rollback`` walks back through.

Nothing here sets a tracking URI: the fluent calls use whatever the caller configured, and functions that take
``tracking_uri`` pass it to an explicit client only.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

CANDIDATE = "candidate"
CHAMPION = "champion"
HISTORY_TAG = "champion_history"
METRIC_PREFIX = "metric."
# Error rates: lower is better. Anything else named here is better when higher.
HIGHER_IS_BETTER = {"auc", "accuracy", "tpr", "tnr"}
# Packages the Predictor and its landmark backend import at inference time; pinned from this environment.
PINNED_PACKAGES = (
    "torch", "numpy", "opencv-python-headless", "dlib-bin", "face-recognition-models", "scikit-image",
    "scipy", "pyyaml",
)


class RegistryError(RuntimeError):
    """A registry operation cannot proceed (no candidate, no champion history, missing metric...)."""


@dataclasses.dataclass
class RegisterConfig:
    """The ``register:`` section of params.yaml."""

    model_name: str = "eulernet"
    experiment: str = "eulernet-register"
    metric: str = "acer"          # test metric that promotion compares
    auto_promote: bool = True     # run the promotion rule right after registering
    checkpoint: str = "artifacts/model/checkpoint.pt"
    metrics: str = "artifacts/eval/metrics.json"
    threshold: str = "artifacts/eval/threshold.json"
    out: str = "artifacts/register/registered.json"

    def __post_init__(self) -> None:
        if not self.model_name or "/" in self.model_name or "@" in self.model_name:
            raise ValueError(f"model_name must be a plain name without '/' or '@', got {self.model_name!r}")
        if not self.metric:
            raise ValueError("metric must name a test metric from metrics.json, e.g. 'acer'")


@dataclasses.dataclass
class Decision:
    """Outcome of a promotion attempt; ``str(decision)`` is the readable comparison printed by the CLI."""

    name: str
    metric: str
    candidate_version: str
    candidate_value: float | None
    champion_version: str | None
    champion_value: float | None
    promoted: bool
    forced: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        direction = "higher" if _higher_is_better(self.metric) else "lower"
        champ = f"v{self.champion_version}" if self.champion_version else "none"
        lines = [
            f"model {self.name}: {self.metric} ({direction} is better)",
            f"  candidate v{self.candidate_version}: {fmt(self.candidate_value)}",
            f"  champion  {champ}: {fmt(self.champion_value)}",
            f"  -> {'PROMOTED' if self.promoted else 'KEPT champion'}{' (forced)' if self.forced else ''}: "
            f"{self.reason}",
        ]
        return "\n".join(lines)


def _higher_is_better(metric: str) -> bool:
    return metric.lower() in HIGHER_IS_BETTER


def _client(tracking_uri: str | None = None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


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
) -> str:
    """Log the checkpoint as a pyfunc model, register it under ``name`` and point ``candidate`` at it.

    ``threshold`` (chosen on dev) is written into the registered checkpoint so every consumer of the version
    decides with the same cut. Returns the new version number as a string.
    """
    import mlflow
    import torch

    from components.inference import InferenceConfig, load_checkpoint

    from .pyfunc import CHECKPOINT_ARTIFACT, CHECKPOINT_FILE, make_signature

    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.is_file():
        raise RegistryError(f"checkpoint {checkpoint_path} not found (run `eulernet train` first)")
    ckpt = load_checkpoint(checkpoint_path)
    if threshold is not None:
        if not math.isfinite(float(threshold)):
            raise RegistryError(f"threshold must be a finite number, got {threshold!r}")
        ckpt["threshold"] = float(threshold)
    clip_len = int(ckpt["clip"]["length"])
    crop = int(ckpt["preprocess"]["crop_size"])
    flat = _flat_metrics(metrics)

    exp = mlflow.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(experiment, artifact_location=artifact_location)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / CHECKPOINT_FILE
        torch.save(ckpt, staged)  # plain dict of tensors/primitives: still loadable with weights_only=True
        with mlflow.start_run(experiment_id=exp_id, run_name=f"register-{name}") as run:
            mlflow.log_metrics({f"test_{k}": v for k, v in flat.items()})
            mlflow.log_params({
                "threshold": ckpt.get("threshold"), "crop_size": crop, "clip_length": clip_len,
                "clip_interval": ckpt["clip"].get("interval"), "variant": ckpt.get("variant"),
                "landmark_backend": (ckpt.get("landmark") or {}).get("backend"),
                "source_checkpoint": str(checkpoint_path),
            })
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={CHECKPOINT_ARTIFACT: str(staged)},
                signature=make_signature(),
                pip_requirements=pinned_requirements(),
                registered_model_name=name,
                await_registration_for=await_registration_for,
                # The inference config, readable from the MLmodel file without loading any weights.
                metadata={"inference": InferenceConfig.from_meta(ckpt).to_dict()},
            )
            run_id = run.info.run_id
    version = str(info.registered_model_version)
    client = _client()
    for k, v in flat.items():
        client.set_model_version_tag(name, version, f"{METRIC_PREFIX}{k}", repr(v))
    client.set_model_version_tag(name, version, "threshold", repr(ckpt.get("threshold")))
    client.set_model_version_tag(name, version, "run_id", run_id)
    for k, v in (tags or {}).items():
        client.set_model_version_tag(name, version, str(k), str(v))
    client.set_registered_model_alias(name, CANDIDATE, version)
    return version


def _version_metric(client, name: str, version: str, metric: str) -> float | None:
    mv = client.get_model_version(name, version)
    raw = (mv.tags or {}).get(f"{METRIC_PREFIX}{metric.lower()}")
    return None if raw is None else float(raw)


def _alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_history(name: str, tracking_uri: str | None = None) -> list[str]:
    rm = _client(tracking_uri).get_registered_model(name)
    return [str(v) for v in json.loads((rm.tags or {}).get(HISTORY_TAG, "[]"))]


def _move_champion(client, name: str, version: str, history: list[str]) -> None:
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def promote(
    name: str,
    metric: str = "acer",
    force: bool = False,
    version: str | int | None = None,
    tracking_uri: str | None = None,
) -> Decision:
    """Move ``champion`` to ``version`` (default: the ``candidate`` alias) when it is at least as good on
    ``metric`` as the current champion, or unconditionally with ``force`` (recorded on the version)."""
    client = _client(tracking_uri)
    metric = metric.lower()
    cand = str(version) if version is not None else _alias_version(client, name, CANDIDATE)
    if cand is None:
        raise RegistryError(f"model {name!r} has no '{CANDIDATE}' alias; register a model first")
    champ = _alias_version(client, name, CHAMPION)
    cand_value = _version_metric(client, name, cand, metric)
    champ_value = _version_metric(client, name, champ, metric) if champ else None

    if champ == cand:
        return Decision(name, metric, cand, cand_value, champ, champ_value, False, force,
                        f"v{cand} is already the champion")
    if champ is None:
        promoted, reason = True, "no champion yet"
    elif cand_value is None and not force:
        promoted, reason = False, f"candidate v{cand} has no '{metric}' metric tag to compare"
    elif champ_value is None:
        promoted, reason = True, f"champion v{champ} has no '{metric}' metric; candidate replaces it"
    else:
        better_or_equal = (cand_value >= champ_value) if _higher_is_better(metric) else (cand_value <= champ_value)
        if better_or_equal:
            promoted, reason = True, f"candidate {cand_value:.4f} is at least as good as champion {champ_value:.4f}"
        else:
            promoted, reason = False, f"candidate {cand_value:.4f} is worse than champion {champ_value:.4f}"
    if not promoted and force:
        promoted, reason = True, f"forced despite: {reason}"
    if promoted:
        history = champion_history(name, tracking_uri)
        history.append(cand)
        _move_champion(client, name, cand, history)
        client.set_model_version_tag(name, cand, "promoted_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        client.set_model_version_tag(name, cand, "promoted_by_force", str(bool(force)).lower())
        client.set_model_version_tag(name, cand, "promotion_reason", reason)
    return Decision(name, metric, cand, cand_value, champ, champ_value, promoted, force and promoted, reason)


def rollback(name: str, tracking_uri: str | None = None) -> tuple[str, str]:
    """Point ``champion`` back at the previous champion; returns ``(from_version, to_version)``."""
    client = _client(tracking_uri)
    history = champion_history(name, tracking_uri)
    current = _alias_version(client, name, CHAMPION)
    # Drop trailing entries that are no longer the live champion (e.g. an alias moved by hand).
    while history and history[-1] != current:
        history.pop()
    if len(history) < 2:
        raise RegistryError(f"model {name!r} has no previous champion to roll back to (history {history})")
    history.pop()
    target = history[-1]
    _move_champion(client, name, target, history)
    client.set_model_version_tag(name, current, "rolled_back_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return current, target


def version_info(name: str, version: str, alias: str | None = None, tracking_uri: str | None = None) -> dict:
    mv = _client(tracking_uri).get_model_version(name, str(version))
    tags = dict(mv.tags or {})
    return {
        "name": name,
        "version": str(mv.version),
        "alias": alias,
        "run_id": mv.run_id,
        "source": mv.source,
        "metrics": {k[len(METRIC_PREFIX):]: float(v) for k, v in tags.items() if k.startswith(METRIC_PREFIX)},
        "tags": {k: v for k, v in tags.items() if not k.startswith(METRIC_PREFIX)},
    }


def alias_version(name: str, alias: str = CHAMPION, tracking_uri: str | None = None) -> str | None:
    """The version an alias points at now, or None (cheap: one registry call; used by the serving poll)."""
    return _alias_version(_client(tracking_uri), name, alias)


def download_checkpoint(name: str, version: str, dst: str | Path | None = None,
                        tracking_uri: str | None = None) -> Path:
    """Fetch the checkpoint artifact of one version (by number, so an alias moving mid-download is harmless).

    The pyfunc model stores it at ``artifacts/checkpoint.pt``; only that file is downloaded."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from .pyfunc import CHECKPOINT_FILE

    dst = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix=f"{name}-v{version}-"))
    uri = _client(tracking_uri).get_model_version_download_uri(name, str(version))
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/artifacts/{CHECKPOINT_FILE}",
                                                    dst_path=str(dst), tracking_uri=tracking_uri)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"model {name} v{version} has no artifacts/{CHECKPOINT_FILE} under {uri}: {exc}") from exc
    return Path(local)


def load_version(name: str, version: str, alias: str | None = None, tracking_uri: str | None = None,
                 device: str = "cpu", batch_size: int = 8):
    """``(Predictor, info dict)`` for one registered version."""
    from components.inference import Predictor

    path = download_checkpoint(name, version, tracking_uri=tracking_uri)
    predictor = Predictor.from_checkpoint(str(path), device=device, batch_size=batch_size)
    return predictor, version_info(name, version, alias=alias, tracking_uri=tracking_uri)


def load_champion(name: str, alias: str = CHAMPION, tracking_uri: str | None = None):
    """``(Predictor, info dict)`` for ``models:/<name>@<alias>``."""
    version = alias_version(name, alias, tracking_uri)
    if version is None:
        raise RegistryError(f"model {name!r} has no '{alias}' alias (register and promote a model first)")
    return load_version(name, version, alias=alias, tracking_uri=tracking_uri)
