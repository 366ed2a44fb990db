"""The evaluation protocol in one place: a threshold fixed on dev, applied unchanged to test (paper IV, OULU-NPU).

The threshold is chosen once, by training on its dev scores (``train.threshold_rule``), and travels in the
checkpoint; ``evaluate_splits`` takes it as given, so neither the test split nor a second rule can move the
operating point. Its output is JSON-safe (NaN becomes None) and says plainly when a split lacks a class.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

from components.metrics.rates import auc, breakdown, eer, error_rates
from components.runtime import json_safe


def split_summary(video_df: pd.DataFrame, threshold: float,
                  expected_attack_types: Iterable[str] | None = None) -> dict:
    """Error rates, AUC and EER of one split at a given threshold; notes instead of errors for missing classes."""
    s, y = video_df["score"].to_numpy(), video_df["label"].to_numpy()
    types = video_df["attack_type"].to_numpy() if "attack_type" in video_df else None
    out = error_rates(s, y, threshold, types, expected_attack_types)
    both = out["n_live"] > 0 and out["n_attack"] > 0
    out["auc"] = auc(s, y) if both else float("nan")
    out["eer"] = eer(s, y) if both else float("nan")
    out["n_videos"] = int(len(video_df))
    if not both:
        out["note"] = (f"this split has no {' and no '.join(out['missing'])} videos: "
                       "rates that need them (and AUC/EER/ACER) are null")
    return out


def evaluate_splits(dev_videos: pd.DataFrame, test_videos: pd.DataFrame, threshold: float,
                    rule: str | None = None, expected_attack_types: Iterable[str] | None = None,
                    by: Sequence[str] = ("device", "scene", "attack_type")) -> dict:
    """Report dev and test at ``threshold`` (chosen on dev by ``rule``; both recorded as given).

    Both tables have one row per video with ``score``, ``label`` and optionally ``attack_type``/``device``/``scene``.
    The returned dict has ``threshold``, ``threshold_rule``, ``dev`` and ``test`` summaries and ``breakdown``
    (test, long format records); the test summary's keys are also copied to the top level (``acer``, ...)
    for ``dvc metrics show``. An empty ``test_videos`` reports dev only, with a note.
    """
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    dev = split_summary(dev_videos, threshold, expected_attack_types)
    if test_videos.empty:
        return json_safe({"threshold": threshold, "threshold_rule": rule, "threshold_source": "dev",
                          "acer": None, "apcer": None, "bpcer": None, "hter": None, "auc": None, "dev": dev,
                          "test": None, "breakdown": [],
                          "note": "the shards have no test split: only dev metrics are reported"})
    test = split_summary(test_videos, threshold, expected_attack_types)
    bd = breakdown(test_videos, threshold, by)
    top = {k: test[k] for k in ("acer", "apcer", "bpcer", "hter", "auc", "eer", "apcer_worst", "acer_worst",
                                "worst_attack_type", "apcer_per_attack")}
    report = {"threshold": threshold, "threshold_rule": rule, "threshold_source": "dev", **top,
              "dev": dev, "test": test, "breakdown": bd.to_dict(orient="records")}
    if "note" in test:
        report["note"] = "test: " + test["note"]
    return json_safe(report)


def headline(report: dict, digits: int = 4) -> dict:
    """The handful of numbers an experiment table compares (``dvc exp show``, ``dvc metrics diff``): test
    ACER/APCER/BPCER/AUC/EER, dev ACER, the threshold and per-attack APCER, rounded. Numbers only, flat keys; the
    full report stays in ``metrics.json`` beside the other evaluation outputs."""
    def r(v):
        return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), digits)

    out = {f"test_{k}": r(report.get(k)) for k in ("acer", "apcer", "bpcer", "auc", "eer")}
    out["dev_acer"] = r((report.get("dev") or {}).get("acer"))
    out["threshold"] = r(report.get("threshold"))
    out.update({f"apcer_{k}": r(v) for k, v in sorted((report.get("apcer_per_attack") or {}).items())})
    return out
