"""What every registry command reads: the conventions kept in the registry, its errors, the client and the
version, alias and history reads (register.py writes versions, champion.py moves ``champion``, load.py loads).

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

Nothing here sets a tracking URI: the fluent calls use whatever the caller configured, and functions that take
``tracking_uri`` pass it to an explicit client only.
"""
from __future__ import annotations

import json
import time

CANDIDATE = "candidate"
CHAMPION = "champion"
HISTORY_TAG = "champion_history"
METRIC_PREFIX = "metric."
TEST_DATA_TAG = "test_data_hash"     # version tag: the test set the version's metrics come from
ROLLED_BACK_TAG = "rolled_back"      # version tag: "true" once rollback removed it from champion
INTENT_TAG = "champion_intent"       # registered-model tag: a champion move in progress (champion.py)
DIGEST_PREFIX = "sha256."            # version tags sha256.checkpoint, sha256.onnx: the bytes registered
DATA_GATES_TAG = "data_gates"        # version tag: "skipped" when training ran with --skip-gates (never auto-promoted)
# Error rates: lower is better. Anything else named here is better when higher.
HIGHER_IS_BETTER = {"auc", "accuracy", "tpr", "tnr"}


class RegistryError(RuntimeError):
    """A registry operation cannot proceed (no candidate, no champion history, missing metric...)."""


class ConcurrentChangeError(RegistryError):
    """``champion`` moved between this command's read and its write: another writer changed it."""


def _higher_is_better(metric: str) -> bool:
    return metric.lower() in HIGHER_IS_BETTER


def _client(tracking_uri: str | None = None):
    import mlflow
    from mlflow import MlflowClient

    # The registry lives where the runs live: resolve one URI and give it to both, so a registry URI set
    # elsewhere in the process can never split "where we registered" from "where we promote".
    uri = tracking_uri or mlflow.get_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


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
