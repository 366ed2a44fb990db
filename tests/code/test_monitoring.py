"""The Grafana dashboard and the Prometheus alerts query the metrics the service exports, and nothing else:
a renamed metric breaks this test, not a dashboard in production."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
SERVE_OWN = {"ray_serve_num_http_requests_total", "ray_serve_num_http_error_requests_total"}


def _exported() -> set[str]:
    """Every series name Ray exports for the metrics telemetry.py creates (``ray_`` prefix, type suffixes)."""
    tree = ast.parse((ROOT / "components/serving/telemetry.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Counter", "Histogram", "Gauge"):
            base = node.args[0].value
            names |= {f"ray_{base}{s}" for s in SUFFIXES[node.func.id.lower()]}
    return names


def _queried(exprs) -> set[str]:
    return {m for e in exprs for m in re.findall(r"\bray_[a-z_]+\b", e)}


def _dashboard_exprs() -> list[str]:
    dash = json.loads((ROOT / "infra/grafana/eulernet-serving.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def _alert_exprs() -> list[str]:
    groups = yaml.safe_load((ROOT / "infra/prometheus/alerts.yaml").read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def test_the_checker_sees_every_metric_the_service_defines():
    exported = _exported()
    assert {"ray_eulernet_requests_total", "ray_eulernet_stage_seconds_bucket", "ray_eulernet_model_info"} <= exported
    assert len(exported) >= 12


def test_dashboard_and_alerts_query_only_exported_metrics():
    exported = _exported() | SERVE_OWN
    for where, exprs in (("dashboard", _dashboard_exprs()), ("alerts", _alert_exprs())):
        unknown = _queried(exprs) - exported
        assert not unknown, f"{where} queries metrics nobody exports: {sorted(unknown)}"


def test_every_service_metric_is_on_the_dashboard():
    bases = {re.sub(r"_(total|bucket|sum|count)$", "", m) for m in _exported()}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", m) for m in _queried(_dashboard_exprs())}
    assert bases <= shown, f"not on the dashboard: {sorted(bases - shown)}"


def test_alert_rules_are_complete():
    groups = yaml.safe_load((ROOT / "infra/prometheus/alerts.yaml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        assert rule["alert"] and rule["expr"] and rule["for"] and rule["labels"]["severity"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
