"""`eulernet register | promote | rollback`: the MLflow model registry (aliases `candidate` and `champion`)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HELP = "log the model to the MLflow registry as 'candidate' and promote if good enough"


def _tracking() -> None:
    from components.runtime import use_mlflow

    use_mlflow()


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (section `register`)")
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
    from components.registry.registry import RegisterConfig
    from components.config import load_section

    cfg = load_section(RegisterConfig, "register", args.params)
    return cfg, args.model_name or cfg.model_name


def _test_metrics(path: Path) -> dict:
    report = json.loads(path.read_text())
    # evaluate writes the test summary both nested and at the top level; prefer the explicit one.
    return report["test"] if isinstance(report.get("test"), dict) else report


def run_register(args) -> int:
    from mlflow.exceptions import MlflowException

    from components.registry.registry import RegistryError, promote, register
    from components.config import ConfigError

    try:
        cfg, name = _cfg(args)
        metrics = _test_metrics(Path(cfg.metrics))
        th_path = Path(cfg.threshold)
        threshold = json.loads(th_path.read_text())["threshold"] if th_path.is_file() else \
            json.loads(Path(cfg.metrics).read_text()).get("threshold")
        _tracking()
        version = register(cfg.checkpoint, name, metrics, threshold=threshold, experiment=cfg.experiment,
                           tags={"threshold_source": "dev"})
        print(f"registered {name} v{version} as 'candidate' (threshold {threshold})")
        decision = None
        if cfg.auto_promote and not args.no_promote:
            decision = promote(name, metric=cfg.metric)
            print(decision)
    except (ConfigError, RegistryError, MlflowException, FileNotFoundError, KeyError,
            json.JSONDecodeError) as exc:
        print(f"eulernet register: {exc}", file=sys.stderr)
        return 2
    _write_registered(cfg.out, name, version, decision)
    return 0


def _write_registered(out: str, name: str, version: str, decision) -> None:
    from mlflow import MlflowClient

    rm = MlflowClient().get_registered_model(name)
    aliases = {a: str(v) for a, v in (rm.aliases or {}).items()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({
        "name": name, "version": version, "aliases": aliases, "champion_version": aliases.get("champion"),
        "decision": decision.to_dict() if decision else None,
    }, indent=2) + "\n")
    print(f"wrote {out}")


def run_promote(args) -> int:
    from mlflow.exceptions import MlflowException

    from components.registry.registry import RegistryError, promote
    from components.config import ConfigError

    try:
        cfg, name = _cfg(args)
        _tracking()
        decision = promote(name, metric=args.metric or cfg.metric, force=args.force, version=args.version)
    except (ConfigError, RegistryError, MlflowException) as exc:
        print(f"eulernet promote: {exc}", file=sys.stderr)
        return 2
    print(decision)
    return 0


def run_rollback(args) -> int:
    from mlflow.exceptions import MlflowException

    from components.registry.registry import RegistryError, rollback
    from components.config import ConfigError

    try:
        cfg, name = _cfg(args)
        _tracking()
        old, new = rollback(name)
    except (ConfigError, RegistryError, MlflowException) as exc:
        print(f"eulernet rollback: {exc}", file=sys.stderr)
        return 2
    print(f"model {name}: champion moved back from v{old} to v{new}")
    return 0


run = run_register
