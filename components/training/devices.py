"""Which device a training run uses: the ``use_gpu: auto | true | false`` policy, decided once per run.

:func:`resolve_use_gpu` is the whole policy as a pure function; :func:`gpu_capacity` gathers its inputs from
the Ray cluster the driver is connected to, and :func:`read_decision` / :func:`write_decision` keep a run's
decision beside its Ray Train checkpoints so that a resume trains on the device it started on.

Why not just ``ray.cluster_resources()["GPU"]``: the shipped clusters (infra/kuberay/raycluster.yaml,
infra/cluster-launcher/aws.yaml) scale their GPU groups from zero, so at the moment a run starts there is
usually no GPU yet. ``auto`` therefore counts the GPUs the cluster is *configured* to have: those present now
plus those its autoscaler may add (:func:`gpu_capacity`). It turns GPUs on only when there can be one per
worker: Ray Train gives every worker a whole GPU, and with fewer GPUs than workers the worker group can never
be placed (Ray Train V2 then waits for the placement group forever).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

DECISION_FILE = "eulernet_device.json"
# Where a cluster that reports no autoscaler config says how many GPUs it may grow to (the KubeRay ConfigMap
# eulernet-env sets it from the RayCluster's GPU worker group; tests/code/test_infra_manifests.py checks).
MAX_GPUS_ENV = "EULERNET_MAX_GPUS"


@dataclass(frozen=True)
class DeviceDecision:
    """The resolved ``use_gpu`` and why. ``source``: ``requested`` (true/false in the config), ``resumed`` (the
    run's earlier decision, kept) or ``auto`` (decided now from the cluster's GPU capacity)."""

    use_gpu: bool
    source: Literal["requested", "resumed", "auto"]
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_use_gpu(requested: bool | str, num_workers: int, gpus_now: float, gpus_autoscaler: float | None,
                    previous: bool | None = None) -> DeviceDecision:
    """Decide whether a run of ``num_workers`` Ray Train workers takes one GPU each.

    ``requested``: the config's ``use_gpu`` (True, False or "auto"). ``gpus_now``: GPUs in the cluster now
    (``ray.cluster_resources()``). ``gpus_autoscaler``: the most GPUs the cluster's autoscaler config allows
    (nodes that may still be started included), or None when no autoscaler config could be read (a local
    cluster). ``previous``: the decision this run made when it first started, or None for a new run.

    * ``true`` / ``false`` are obeyed (an explicit value also overrides a resumed run's earlier decision), but
      ``true`` with a known capacity below ``num_workers`` is an error: those workers could never be placed.
    * ``auto`` on a resumed run keeps the earlier decision, so a resume after the GPU nodes idled down does not
      silently continue on CPU (the autoscaler brings them back when the workers ask for them).
    * ``auto`` on a new run turns GPUs on when the capacity, max(now, autoscaler), is at least one per worker.
    """
    if not (isinstance(requested, bool) or requested == "auto"):
        raise ValueError(f"use_gpu must be true, false or 'auto', got {requested!r}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    capacity = max(float(gpus_now), float(gpus_autoscaler or 0.0))
    known = gpus_autoscaler is not None
    seen = (f"{gpus_now:g} GPU(s) in the cluster now"
            + (f", at most {gpus_autoscaler:g} with the autoscaler's GPU nodes" if known
               else ", no autoscaler config to say how many it may add"))

    def too_few(what: str) -> ValueError:
        return ValueError(f"{what} needs {num_workers} GPUs (one per worker) but {seen}: the workers could never "
                          f"be placed. Lower num_workers to {int(capacity)} or fewer, or set use_gpu: false.")

    if requested is True or requested is False:
        if requested and known and capacity < num_workers:
            raise too_few("use_gpu: true")
        why = "use_gpu: true in the config" if requested else "use_gpu: false in the config"
        if previous is not None and previous != requested:
            why += f" (overrides this run's earlier use_gpu={str(previous).lower()})"
        if requested and not known and gpus_now < num_workers:
            why += f"; {seen}: the workers wait until GPU nodes join"
        return DeviceDecision(bool(requested), "requested", why)
    if previous is not None:
        if previous and known and capacity < num_workers:
            raise too_few("this run started on GPUs (use_gpu: auto keeps that on resume) and")
        return DeviceDecision(bool(previous), "resumed",
                              f"resumed run keeps its earlier use_gpu={str(previous).lower()} ({seen}); "
                              "set use_gpu: true/false to change it")
    if capacity >= num_workers:
        return DeviceDecision(True, "auto", f"{seen}: enough for one per worker ({num_workers})")
    if capacity > 0:
        return DeviceDecision(False, "auto", f"{seen}: fewer than the {num_workers} workers need (one each), "
                                             "so training runs on CPU")
    return DeviceDecision(False, "auto", f"{seen}: training runs on CPU")


def gpu_capacity() -> tuple[float, float | None]:
    """``(gpus_now, gpus_autoscaler)`` of the connected Ray cluster (the caller owns ``ray.init``).

    ``gpus_autoscaler`` is, in this order: the autoscaler's cluster config as Ray Train itself reads it (the
    node groups' GPUs times their max count), the Ray cluster launcher's bootstrap config on the head node
    (``~/ray_bootstrap_config.yaml``: ``available_node_types``), or ``$EULERNET_MAX_GPUS``; None when none
    of them is there (a local cluster: only the GPUs present count).
    """
    import ray

    now = float(ray.cluster_resources().get("GPU", 0.0))
    return now, _autoscaler_gpus()


def _autoscaler_gpus() -> float | None:
    try:  # private, but the call Ray Train V2 makes to reject worker groups the cluster can never hold
        from ray._private.state import state

        max_resources = state.get_max_resources_from_cluster_config()
        if max_resources is not None:
            return float(max_resources.get("GPU", 0))
    except Exception as exc:  # an older/newer Ray without it: fall through to the other sources
        log.debug("no autoscaler cluster config: %s", exc)
    bootstrap = Path.home() / "ray_bootstrap_config.yaml"
    if bootstrap.is_file():
        try:
            return launcher_max_gpus(bootstrap.read_text())
        except Exception as exc:
            log.warning("cannot read %s: %s", bootstrap, exc)
    value = os.environ.get(MAX_GPUS_ENV)
    if value:
        try:
            return float(value)
        except ValueError:
            log.warning("%s=%r is not a number; ignored", MAX_GPUS_ENV, value)
    return None


def launcher_max_gpus(config_text: str) -> float | None:
    """Most GPUs a Ray cluster launcher config (YAML text) may run: the head's plus every worker type's
    ``resources.GPU`` times its ``max_workers``. None when no node type declares its GPUs."""
    import yaml

    cfg = yaml.safe_load(config_text) or {}
    types = cfg.get("available_node_types") or {}
    head = cfg.get("head_node_type")
    total, declared = 0.0, False
    for name, spec in types.items():
        gpus = (spec.get("resources") or {}).get("GPU")
        if gpus is None:
            continue
        declared = True
        total += float(gpus) * (1 if name == head else int(spec.get("max_workers", 0)))
    return total if declared else None


def _fs(run_path: str):
    import pyarrow.fs

    if "://" in run_path:
        return pyarrow.fs.FileSystem.from_uri(run_path)
    return pyarrow.fs.LocalFileSystem(), str(Path(run_path).resolve())


def read_decision(run_path: str) -> bool | None:
    """The ``use_gpu`` a run at ``run_path`` (Ray Train's ``storage_path/name``) decided when it started, or
    None when it has not started before."""
    fs, path = _fs(run_path)
    try:
        with fs.open_input_stream(f"{path}/{DECISION_FILE}") as fh:
            return bool(json.loads(fh.read().decode())["use_gpu"])
    except (FileNotFoundError, OSError, KeyError, ValueError):
        return None


def write_decision(run_path: str, decision: DeviceDecision) -> None:
    """Record ``decision`` beside the run's checkpoints (what :func:`read_decision` returns on a resume)."""
    fs, path = _fs(run_path)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{DECISION_FILE}") as fh:
        fh.write(json.dumps(decision.to_dict(), indent=2).encode())


__all__ = ["DeviceDecision", "resolve_use_gpu", "gpu_capacity", "launcher_max_gpus", "read_decision",
           "write_decision", "DECISION_FILE", "MAX_GPUS_ENV"]
