"""`eulernet register | promote | rollback`: the MLflow model registry (aliases `candidate` and `champion`)."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
from pathlib import Path

from flows.args import params_option
from flows.errors import StageError

HELP = "log the model to the MLflow registry as 'candidate' and promote if good enough"


def _tracking() -> None:
    from components.runtime import use_mlflow

    use_mlflow()


def _common(parser: argparse.ArgumentParser) -> None:
    params_option(parser, "register")
    parser.add_argument("--model-name", default=None, help="registered model name (default: register.model_name)")


def add_register_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--no-promote", action="store_true", help="only register as candidate")


def add_promote_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--version", default=None, help="version to promote (default: the 'candidate' alias)")
    parser.add_argument("--metric", default=None, help="test metric to compare (default: register.metric)")
    parser.add_argument("--force", action="store_true", help="promote even if worse (recorded as a tag)")


def add_rollback_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)


add_arguments = add_register_arguments


def _cfg(args):
    from components.config import load_section
    from components.registry.register import RegisterConfig

    cfg = load_section(RegisterConfig, "register", args.params)
    return cfg, args.model_name or cfg.model_name


def _test_metrics(path: Path) -> dict:
    report = json.loads(path.read_text())
    # evaluate writes the test summary both nested and at the top level; prefer the explicit one.
    return report["test"] if isinstance(report.get("test"), dict) else report


def _test_data_hash(metrics_path: Path, shards: str) -> str | None:
    """What the test metrics were computed on: metrics.json's ``test_data_hash`` when evaluate recorded one,
    else a sha256 of the test rows of the shards' index.csv. None (with a warning) when neither exists: such a
    version is never compared with another, only ``promote --force`` installs it over a champion."""
    from components.registry.register import hash_test_data
    from components.registry.versions import RegistryError

    recorded = json.loads(metrics_path.read_text()).get("test_data_hash")
    if recorded:
        return str(recorded)
    try:
        return hash_test_data(Path(shards) / "index.csv")
    except RegistryError as exc:
        print(f"eulernet register: warning: no test-data hash ({exc}); this version is compared with no other",
              file=sys.stderr)
        return None


def _evaluated_gates(path: Path) -> str | None:
    """Whether evaluate's data passed the gates ("passed" / "skipped"; None for a report written before it said)."""
    return json.loads(path.read_text()).get("data_gates")


def _threshold(metrics_path: Path, checkpoint: str) -> float:
    """The checkpoint's dev-chosen threshold (training chose it; it is registered as it is), after checking that
    the evaluation report was computed at that same operating point: a report left from another checkpoint would
    otherwise register figures that do not describe this model."""
    from components.inference.checkpoint import load_checkpoint
    from components.registry.versions import RegistryError

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} not found: run `eulernet train` (or `dvc repro`) first")
    threshold = load_checkpoint(checkpoint).get("threshold")
    if threshold is None:
        raise RegistryError(f"{checkpoint} carries no dev-chosen threshold (train it with `eulernet train`)")
    reported = json.loads(metrics_path.read_text()).get("threshold")
    if reported is None or not math.isclose(float(reported), float(threshold), rel_tol=1e-6, abs_tol=1e-9):
        raise RegistryError(f"{metrics_path} was computed at threshold {reported}, {checkpoint} carries {threshold}: "
                            f"re-run `eulernet evaluate` on this checkpoint")
    return float(threshold)


class _DropNotices(io.TextIOBase):
    """stderr minus MLflow's "Successfully registered model ..." / "Created version ..." notices (MLflow prints
    them straight to stderr; our next line says the same). Everything else passes through."""

    NOTICES = ("Successfully registered model ", "Created version ")

    def __init__(self, target) -> None:
        self.target, self._dropped = target, False

    def write(self, text: str) -> int:
        if text.startswith(self.NOTICES) or (self._dropped and text == "\n"):
            self._dropped = text != "\n"
            return len(text)
        self._dropped = False
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()


def _mlflow_notices():
    from components.runtime import verbose_requested

    return contextlib.nullcontext() if verbose_requested() else contextlib.redirect_stderr(_DropNotices(sys.stderr))


def run_register(args) -> int:
    from mlflow.exceptions import MlflowException

    from components.config import ConfigError
    from components.registry.champion import promote
    from components.registry.register import register
    from components.registry.versions import RegistryError
    from components.runtime import artifact_location, header

    # A DVC experiment (`dvc exp run`, queued or not: DVC sets DVC_EXP_NAME) registers a candidate tagged with its
    # name and never moves champion: a sweep is a comparison, promotion is a decision (`eulernet promote`).
    experiment = os.environ.get("DVC_EXP_NAME") or None
    try:
        cfg, name = _cfg(args)
        auto = cfg.auto_promote and not args.no_promote and experiment is None
        promote_note = f", then champion if its test {cfg.metric} is at least as good" if auto else ""
        header("register", f"{cfg.checkpoint} -> MLflow model '{name}' as candidate{promote_note}")
        threshold = _threshold(Path(cfg.metrics), cfg.checkpoint)
        metrics = _test_metrics(Path(cfg.metrics))
        data_hash = _test_data_hash(Path(cfg.metrics), cfg.shards)
        _tracking()
        with _mlflow_notices():
            tags = {"threshold_source": "dev", **({"dvc_experiment": experiment} if experiment else {})}
            if _evaluated_gates(Path(cfg.metrics)) == "skipped":  # figures on un-gated data: never auto-promoted
                tags["data_gates"] = "skipped"
            version = register(cfg.checkpoint, name, metrics, experiment=cfg.experiment,
                               tags=tags, test_data_hash=data_hash, artifact_location=artifact_location(cfg.experiment))
        print(f"registered {name} v{version} as 'candidate' (threshold {threshold})")
        decision = None
        if experiment and cfg.auto_promote and not args.no_promote:
            print(f"DVC experiment '{experiment}': champion is not moved by experiments; compare with `dvc exp show` "
                  f"and promote with `eulernet promote --version {version}`")
        if auto:
            decision = promote(name, metric=cfg.metric)
            print(decision)
    except (ConfigError, RegistryError, MlflowException, FileNotFoundError, KeyError, ValueError,
            json.JSONDecodeError) as exc:
        raise StageError(exc) from None
    _write_registered(cfg.out, name, version, decision)
    return 0


def _write_registered(out: str, name: str, version: str, decision) -> None:
    from mlflow import MlflowClient

    rm = MlflowClient().get_registered_model(name)
    aliases = {a: str(v) for a, v in (rm.aliases or {}).items()}
    from components.files import write_json

    write_json(out, {"name": name, "version": version, "aliases": aliases,
                     "champion_version": aliases.get("champion"), "decision": decision.to_dict() if decision else None})
    print(f"wrote {out}")


def run_promote(args) -> int:
    from mlflow.exceptions import MlflowException

    from components.config import ConfigError
    from components.registry.champion import promote
    from components.registry.versions import RegistryError

    try:
        cfg, name = _cfg(args)
        _tracking()
        decision = promote(name, metric=args.metric or cfg.metric, force=args.force, version=args.version)
    except (ConfigError, RegistryError, MlflowException) as exc:
        raise StageError(exc) from None
    print(decision)
    return 0


def run_rollback(args) -> int:
    from mlflow.exceptions import MlflowException

    from components.config import ConfigError
    from components.registry.champion import rollback
    from components.registry.versions import RegistryError

    try:
        cfg, name = _cfg(args)
        _tracking()
        old, new = rollback(name)
    except (ConfigError, RegistryError, MlflowException) as exc:
        raise StageError(exc) from None
    print(f"model {name}: champion moved back from v{old} to v{new}")
    return 0


run = run_register
