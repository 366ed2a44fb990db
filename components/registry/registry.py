"""Model registry flow: register a Predictor checkpoint as ``candidate``, promote it to ``champion`` by a metric
comparison, roll back, and load the champion for serving.

Conventions kept in the registry itself (so any MLflow UI or client sees them):
- version tags ``metric.<name>`` hold the test metrics the version was registered with;
- version tags ``promoted_at``/``promoted_by_force``/``promotion_reason`` record each promotion;
- the registered-model tag ``champion_history`` is a JSON list of champion versions, newest last, which is
  what ``rollback`` walks back through;
- the version tag ``test_data_hash`` names the test set the metrics were computed on: two versions are compared
  only when it is present on both and equal (otherwise only ``force`` promotes);
- the version tag ``rolled_back=true`` marks a champion that ``rollback`` removed: a plain ``promote`` never
  installs it again (``force`` does, and clears the mark).

Writers of ``champion`` (``promote``, ``rollback``) serialise on a lock (a registered model named
``<name>.promotion-lock``: creating a registered model is atomic in every MLflow backend, so exactly one
process holds it), re-read the alias right before writing and fail if it moved (compare-and-set), and record an
intent (registered-model tag ``champion_intent``) before moving the alias and the history, cleared after both:
the next ``promote``/``rollback`` that finds an intent left by a crash completes it first.

Nothing here sets a tracking URI: the fluent calls use whatever the caller configured, and functions that take
``tracking_uri`` pass it to an explicit client only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import socket
import tempfile
import time
import uuid
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

CANDIDATE = "candidate"
CHAMPION = "champion"
HISTORY_TAG = "champion_history"
METRIC_PREFIX = "metric."
TEST_DATA_TAG = "test_data_hash"     # version tag: the test set the version's metrics come from
ROLLED_BACK_TAG = "rolled_back"      # version tag: "true" once rollback removed it from champion
INTENT_TAG = "champion_intent"       # registered-model tag: a champion move in progress (see module docstring)
LOCK_SUFFIX = ".promotion-lock"      # registered model whose existence is the promote/rollback lock
LOCK_WAIT_S = 60.0                   # how long a writer waits for another writer's lock
LOCK_STALE_S = 300.0                 # a lock older than this was left by a crashed writer and is broken
# Error rates: lower is better. Anything else named here is better when higher.
HIGHER_IS_BETTER = {"auc", "accuracy", "tpr", "tnr"}
# Packages the Predictor and its landmark backend import at inference time; pinned from this environment.
PINNED_PACKAGES = (
    "torch", "numpy", "opencv-python-headless", "dlib-bin", "face-recognition-models", "scikit-image",
    "scipy", "pyyaml", "onnx", "onnxruntime",  # the last two only when installed (the ONNX Runtime engine)
)


class RegistryError(RuntimeError):
    """A registry operation cannot proceed (no candidate, no champion history, missing metric...)."""


class ConcurrentChangeError(RegistryError):
    """``champion`` moved between this command's read and its write: another writer changed it."""


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
    candidate_test_data: str | None = None
    champion_test_data: str | None = None
    repaired: str | None = None   # what an interrupted earlier move left and this command completed

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
        if self.repaired:
            lines.insert(0, f"registry repaired first: {self.repaired}")
        return "\n".join(lines)


def _higher_is_better(metric: str) -> bool:
    return metric.lower() in HIGHER_IS_BETTER


def _client(tracking_uri: str | None = None):
    import mlflow
    from mlflow import MlflowClient

    # The registry lives where the runs live: resolve one URI and give it to both, so a registry URI set
    # elsewhere in the process can never split "where we registered" from "where we promote".
    uri = tracking_uri or mlflow.get_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


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
    clip_len = int(ckpt["clip"]["length"])
    crop = int(ckpt["preprocess"]["crop_size"])
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
                "threshold": ckpt.get("threshold"), "crop_size": crop, "clip_length": clip_len,
                "clip_interval": ckpt["clip"].get("interval"), "variant": ckpt.get("variant"),
                "landmark_backend": (ckpt.get("landmark") or {}).get("backend"),
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
                registered_model_name=name,
                await_registration_for=await_registration_for,
                # The inference config, readable from the MLmodel file without loading any weights.
                metadata={"inference": InferenceConfig.from_meta(ckpt).to_dict()},
                model_config={"sha256": digests},
            )
            run_id = run.info.run_id
    version = str(info.registered_model_version)
    client = _client()
    for k, v in flat.items():
        client.set_model_version_tag(name, version, f"{METRIC_PREFIX}{k}", repr(v))
    client.set_model_version_tag(name, version, "threshold", repr(ckpt.get("threshold")))
    client.set_model_version_tag(name, version, "run_id", run_id)
    client.set_model_version_tag(name, version, "onnx", onnx_status)
    for artifact, digest in digests.items():
        client.set_model_version_tag(name, version, f"{DIGEST_PREFIX}{artifact}", digest)
    for k, v in (tags or {}).items():
        client.set_model_version_tag(name, version, str(k), str(v))
    if test_data_hash:
        client.set_model_version_tag(name, version, TEST_DATA_TAG, str(test_data_hash))
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


def _version_tags(client, name: str, version: str | None) -> dict[str, str]:
    return dict(client.get_model_version(name, version).tags or {}) if version else {}


def _tag_metric(tags: dict[str, str], metric: str) -> float | None:
    raw = tags.get(f"{METRIC_PREFIX}{metric.lower()}")
    return None if raw is None else float(raw)


def _version_metric(client, name: str, version: str, metric: str) -> float | None:
    return _tag_metric(_version_tags(client, name, version), metric)


def _alias_version(client, name: str, alias: str) -> str | None:
    """The version ``alias`` points at; None only when the registry says the alias does not exist. Any other
    failure (a locked SQLite file, an HTTP 5xx, a timeout) raises: read as "no champion", it would let the next
    promotion skip the comparison (fail closed)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if _alias_missing(exc):
            return None
        raise RegistryError(f"model {name!r}: reading alias '{alias}' failed ({exc.error_code}: "
                            f"{str(exc.message)[:200]}); nothing was changed, retry when the registry answers") from exc


def _alias_missing(exc) -> bool:
    # MLflow's SQL and file stores answer a missing alias with INVALID_PARAMETER_VALUE "... alias X not found";
    # a tracking server may map it to RESOURCE_DOES_NOT_EXIST. Nothing else means "absent".
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc))


def _model_tags(client, name: str) -> dict[str, str]:
    return dict(client.get_registered_model(name).tags or {})


def _history(client, name: str) -> list[str]:
    return [str(v) for v in json.loads(_model_tags(client, name).get(HISTORY_TAG, "[]"))]


def champion_history(name: str, tracking_uri: str | None = None) -> list[str]:
    return _history(_client(tracking_uri), name)


def _require_model(client, name: str, what: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        raise RegistryError(f"model {name!r} is not registered ({what}); register a model first") from exc


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------------------------------ writer lock
def _holder_gone(owner: str) -> bool:
    """True when the lock owner (``host:pid:nonce``) ran on this host and that process no longer exists."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


@contextlib.contextmanager
def _writer_lock(client, name: str, wait_s: float | None = None):
    """Hold ``<name>.promotion-lock`` (a registered model: its creation is atomic, a second create fails) for
    the duration of one champion move. Waits up to ``wait_s`` for another holder; breaks a lock older than
    ``LOCK_STALE_S`` (its holder crashed: the intent it may have left is completed by the caller)."""
    from mlflow.exceptions import MlflowException

    lock = f"{name}{LOCK_SUFFIX}"
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + (LOCK_WAIT_S if wait_s is None else wait_s)
    while True:
        try:
            client.create_registered_model(lock, tags={"lock_owner": owner, "lock_for": name},
                                           description=f"promote/rollback lock for {name}; delete only if stale")
            break
        except MlflowException as exc:
            if "database is locked" in str(exc) and time.monotonic() < deadline:
                time.sleep(0.2 + 0.2 * random.random())  # SQLite busy under concurrent writers: try again
                continue
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            held = client.get_registered_model(lock)
        except MlflowException:
            continue  # released between our create and this read: try again at once
        age_s = time.time() - held.creation_timestamp / 1000.0
        holder = (held.tags or {}).get("lock_owner", "?")
        if age_s > LOCK_STALE_S or _holder_gone(holder):
            warnings.warn(f"breaking a stale registry lock {lock!r} held by {holder} for {age_s:.0f}s "
                          f"(its process is gone or it is older than {LOCK_STALE_S:.0f}s)", stacklevel=3)
            with contextlib.suppress(MlflowException):
                if (client.get_registered_model(lock).tags or {}).get("lock_owner") == holder:
                    client.delete_registered_model(lock)
            continue
        if time.monotonic() > deadline:
            raise RegistryError(
                f"another promote/rollback of {name!r} holds the lock {lock!r} ({holder}, for {age_s:.0f}s); "
                f"retry later (a lock left by a crashed process expires after {LOCK_STALE_S:.0f}s)")
        time.sleep(0.2 + 0.2 * random.random())
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            if (client.get_registered_model(lock).tags or {}).get("lock_owner") == owner:
                client.delete_registered_model(lock)


# ------------------------------------------------------------------------------------------ champion moves
def _apply(client, name: str, intent: dict) -> None:
    """Carry out a recorded move (idempotent: a repair re-runs it whole): version tags, alias, history, then
    clear the intent."""
    for version, tags in (intent.get("version_tags") or {}).items():
        for k, v in tags.items():
            client.set_model_version_tag(name, version, k, v)
    client.set_registered_model_alias(name, CHAMPION, intent["to"])
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(intent["history"]))
    client.delete_registered_model_tag(name, INTENT_TAG)


def _repair(client, name: str) -> str | None:
    """Complete a move a crashed writer left half-done; adopt a champion alias moved by hand into the history.
    Call with the writer lock held. Returns what was repaired, or None."""
    tags = _model_tags(client, name)
    raw = tags.get(INTENT_TAG)
    if raw:
        try:
            intent = json.loads(raw)
            note = f"completed an interrupted {intent['op']} (champion v{intent['from']} -> v{intent['to']})"
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"model {name!r} has an unreadable '{INTENT_TAG}' tag ({raw!r}): inspect the "
                                f"'{CHAMPION}' alias and '{HISTORY_TAG}', then delete the tag") from exc
        _apply(client, name, intent)
        return note
    champ = _alias_version(client, name, CHAMPION)
    history = [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
    if champ is not None and (not history or history[-1] != champ):
        history.append(champ)
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        return f"champion v{champ} was set outside promote/rollback; appended to {HISTORY_TAG}"
    return None


def _move_champion(client, name: str, expected: str | None, version: str, history: list[str], op: str,
                   version_tags: dict[str, dict[str, str]] | None = None) -> None:
    """Compare-and-set ``champion`` from ``expected`` to ``version`` with ``history``: re-read the alias right
    before writing (fail if it moved), record the intent, write, then re-read to verify."""
    now = _alias_version(client, name, CHAMPION)
    if now != expected:
        raise ConcurrentChangeError(
            f"model {name!r}: '{CHAMPION}' moved from {_v(expected)} to {_v(now)} while this {op} was deciding "
            f"(another writer changed it); nothing was changed, run `eulernet {op}` again")
    intent = {"op": op, "from": expected, "to": version, "history": history, "at": _now(),
              "version_tags": version_tags or {}}
    client.set_registered_model_tag(name, INTENT_TAG, json.dumps(intent))
    _apply(client, name, intent)
    after, after_history = _alias_version(client, name, CHAMPION), _history(client, name)
    if after != version or after_history != history:
        raise ConcurrentChangeError(
            f"model {name!r}: after this {op} wrote '{CHAMPION}'=v{version} the registry shows {_v(after)} with "
            f"history {after_history}: another writer changed it at the same time")


def _v(version: str | None) -> str:
    return "none" if version is None else f"v{version}"


def _decide(metric: str, cand: str, cand_tags: dict[str, str], champ: str | None, champ_tags: dict[str, str],
            force: bool) -> tuple[bool, str]:
    """The promotion rule (without ``force``): ``(promote?, why)``."""
    cand_value, champ_value = _tag_metric(cand_tags, metric), _tag_metric(champ_tags, metric)
    if cand_tags.get(ROLLED_BACK_TAG) == "true":
        return False, (f"v{cand} was rolled back (at {cand_tags.get('rolled_back_at', '?')}); only --force "
                       f"promotes it again")
    if cand_value is None:
        return False, (f"candidate v{cand} has no '{metric}' metric tag to compare"
                       + ("" if champ else " (no champion yet; --force promotes it anyway)"))
    if champ is None:
        return True, "no champion yet"  # promote() refuses this when the model had a champion before
    if champ_value is None:
        return False, f"champion v{champ} has no '{metric}' metric tag to compare with; only --force replaces it"
    cand_data, champ_data = cand_tags.get(TEST_DATA_TAG), champ_tags.get(TEST_DATA_TAG)
    if not cand_data or not champ_data:
        unknown = " and ".join(f"{who} v{v}" for who, v, d in (("candidate", cand, cand_data),
                                                               ("champion", champ, champ_data)) if not d)
        return False, (f"not comparable: {unknown} has no '{TEST_DATA_TAG}' tag (evaluated on unknown test "
                       f"data); only --force promotes")
    if cand_data != champ_data:
        return False, (f"not comparable: candidate v{cand} was evaluated on test data {cand_data[:12]} and "
                       f"champion v{champ} on {champ_data[:12]} (different test sets); re-evaluate both on the "
                       f"same shards, or --force")
    if (cand_value >= champ_value) if _higher_is_better(metric) else (cand_value <= champ_value):
        return True, f"candidate {cand_value:.4f} is at least as good as champion {champ_value:.4f}"
    return False, f"candidate {cand_value:.4f} is worse than champion {champ_value:.4f}"


def promote(
    name: str,
    metric: str = "acer",
    force: bool = False,
    version: str | int | None = None,
    tracking_uri: str | None = None,
    lock_wait_s: float | None = None,
) -> Decision:
    """Move ``champion`` to ``version`` (default: the ``candidate`` alias) when it is at least as good on
    ``metric`` as the current champion on the same test data, or unconditionally with ``force`` (recorded on
    the version). See the module docstring for the lock, the compare-and-set and the crash repair."""
    client = _client(tracking_uri)
    metric = metric.lower()
    _require_model(client, name, f"no '{CANDIDATE}' alias")
    with _writer_lock(client, name, lock_wait_s):
        repaired = _repair(client, name)
        cand = str(version) if version is not None else _alias_version(client, name, CANDIDATE)
        if cand is None:
            raise RegistryError(f"model {name!r} has no '{CANDIDATE}' alias; register a model first")
        champ = _alias_version(client, name, CHAMPION)
        cand_tags, champ_tags = _version_tags(client, name, cand), _version_tags(client, name, champ)
        cand_value, champ_value = _tag_metric(cand_tags, metric), _tag_metric(champ_tags, metric)
        known = sorted(k[len(METRIC_PREFIX):] for k in {**cand_tags, **champ_tags} if k.startswith(METRIC_PREFIX))
        if cand_value is None and champ_value is None and known and not force:
            # A typo (`--metric bogus`) must not turn into a silent "nothing to compare".
            raise RegistryError(f"neither v{cand} nor the champion has a {metric!r} metric; the versions carry "
                                f"{known}")

        def decision(promoted: bool, forced: bool, reason: str) -> Decision:
            return Decision(name, metric, cand, cand_value, champ, champ_value, promoted, forced, reason,
                            cand_tags.get(TEST_DATA_TAG), champ_tags.get(TEST_DATA_TAG), repaired)

        if champ == cand:
            return decision(False, False, f"v{cand} is already the champion")
        if champ is None and _history(client, name) and not force:
            # A champion existed and its alias is gone (deleted by hand, or an outage answered as "absent"):
            # promoting now would skip the comparison. Fail closed; a person decides.
            return decision(False, False, f"no '{CHAMPION}' alias, but the model had champions before "
                                          f"({_history(client, name)}); restore it (`eulernet rollback` or set the "
                                          f"alias) or promote with --force")
        promoted, reason = _decide(metric, cand, cand_tags, champ, champ_tags, force)
        if not promoted and force:
            promoted, reason = True, f"forced despite: {reason}"
        if promoted:
            history = _history(client, name) + [cand]
            tags = {"promoted_at": _now(), "promoted_by_force": str(bool(force)).lower(), "promotion_reason": reason}
            if force and cand_tags.get(ROLLED_BACK_TAG) == "true":
                tags[ROLLED_BACK_TAG] = "false"  # re-promoted on purpose: rolled_back_at keeps the record
            _move_champion(client, name, champ, cand, history, "promote", {cand: tags})
        return decision(promoted, force and promoted, reason)


def rollback(name: str, tracking_uri: str | None = None, lock_wait_s: float | None = None) -> tuple[str, str]:
    """Point ``champion`` back at the previous champion and mark the removed one ``rolled_back=true`` (a plain
    ``promote`` never installs it again); returns ``(from_version, to_version)``."""
    client = _client(tracking_uri)
    _require_model(client, name, "nothing to roll back")
    with _writer_lock(client, name, lock_wait_s):
        _repair(client, name)
        history = _history(client, name)
        current = _alias_version(client, name, CHAMPION)
        # Drop trailing entries that are no longer the live champion (e.g. the alias was deleted by hand).
        while history and history[-1] != current:
            history.pop()
        if len(history) < 2:
            raise RegistryError(f"model {name!r} has no previous champion to roll back to (history {history})")
        history.pop()
        target = history[-1]
        _move_champion(client, name, current, target, history, "rollback",
                       {current: {ROLLED_BACK_TAG: "true", "rolled_back_at": _now()}})
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


DIGEST_PREFIX = "sha256."  # version tags sha256.checkpoint, sha256.onnx: the bytes registered


def verify_artifact(name: str, version: str, artifact: str, path: str | Path, tags: dict[str, str]) -> None:
    """Refuse a downloaded artifact whose sha256 differs from the one registered (a version registered before
    digests were recorded carries no tag and is accepted as it is)."""
    want = tags.get(f"{DIGEST_PREFIX}{artifact}")
    if want is None:
        return
    from components.data.digest import sha256_file

    got = sha256_file(path)
    if got != want:
        raise RegistryError(f"model {name} v{version}: artifact '{artifact}' has sha256 {got[:16]}..., registered "
                            f"{want[:16]}...; the stored file was changed after registration: refusing to load it")


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


def download_graph(name: str, version: str, dst: str | Path, tracking_uri: str | None = None) -> Path | None:
    """The version's ONNX graph (``artifacts/model.onnx``), or None for a version registered without one."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from .pyfunc import ONNX_FILE

    uri = _client(tracking_uri).get_model_version_download_uri(name, str(version))
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/artifacts/{ONNX_FILE}",
                                                        dst_path=str(dst), tracking_uri=tracking_uri))
    except (MlflowException, OSError):
        return None


def load_version(name: str, version: str, alias: str | None = None, tracking_uri: str | None = None,
                 device: str = "cpu", batch_size: int = 8, engine: str = "auto", threads: int | None = None):
    """``(Predictor, info dict)`` for one registered version. The downloaded checkpoint is deleted once loaded (a
    serving replica loads one per start and per reload: none may pile up in its temp folder).

    ``engine="auto"`` runs the version's registered ONNX graph in ONNX Runtime when onnxruntime is installed and
    the version has a graph, torch otherwise (nothing is exported at load time); ``"torch"``/``"onnx"`` force one.
    ``threads``: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()`` of the loading thread)."""
    from components.inference.predictor import Predictor

    from .pyfunc import CHECKPOINT_ARTIFACT, ONNX_ARTIFACT

    tags = _version_tags(_client(tracking_uri), name, str(version))
    with tempfile.TemporaryDirectory(prefix=f"{name}-v{version}-") as tmp:
        path = download_checkpoint(name, version, dst=tmp, tracking_uri=tracking_uri)
        verify_artifact(name, version, CHECKPOINT_ARTIFACT, path, tags)
        graph = download_graph(name, version, tmp, tracking_uri) if engine != "torch" else None
        if graph is not None:
            verify_artifact(name, version, ONNX_ARTIFACT, graph, tags)
        if graph is None and engine == "auto":
            engine = "torch"
        predictor = Predictor.from_checkpoint(str(path), device=device, batch_size=batch_size, engine=engine,
                                              onnx_graph=None if graph is None else graph.read_bytes(),
                                              threads=threads)
    return predictor, version_info(name, version, alias=alias, tracking_uri=tracking_uri)


def load_champion(name: str, alias: str = CHAMPION, tracking_uri: str | None = None):
    """``(Predictor, info dict)`` for ``models:/<name>@<alias>``."""
    version = alias_version(name, alias, tracking_uri)
    if version is None:
        raise RegistryError(f"model {name!r} has no '{alias}' alias (register and promote a model first)")
    return load_version(name, version, alias=alias, tracking_uri=tracking_uri)
