"""Served traffic against the training videos: a drift check on the request log, as a Great Expectations suite.

A model is only as good as the likeness of what it scores to what it learnt from. ``eulernet monitor`` measures
the training videos the way serving measures each request (``components.data.requests``), turns the training
spread of each profile column into bounds, and validates a window of logged requests against them with the same
GE road as the manifest gates (``gates.run_suite``): a window whose uploads come at another resolution, frame
rate, brightness or face size than training fails, naming the column and the share of requests outside.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from components.data.requests import PROFILE_COLUMNS

SUITE_NAME = "request_drift"


@dataclass
class MonitorConfig:
    """The ``monitor:`` section of params.yaml. ``columns``: profile columns checked (``frames`` is left out by
    default: a request is cut to serve.max_seconds, a training video is not). A request value passes inside
    ``[q_low * (1 - tolerance), q_high * (1 + tolerance)]`` of the training videos' ``quantiles``; the window
    passes a column when at least ``mostly`` of its requests do, and needs ``min_requests`` to be judged."""

    since: str = "24h"
    columns: list[str] = field(default_factory=lambda: ["source_width", "source_height", "fps", "face_fraction",
                                                        "brightness"])
    quantiles: list[float] = field(default_factory=lambda: [0.01, 0.99])
    tolerance: float = 0.25
    mostly: float = 0.9
    min_requests: int = 20
    profile_frames: int = 16  # frames of each training video measured

    def __post_init__(self) -> None:
        bad = [c for c in self.columns if c not in PROFILE_COLUMNS]
        if bad or not self.columns:
            raise ValueError(f"columns must be a non-empty subset of {list(PROFILE_COLUMNS)}, got {self.columns}")
        if len(self.quantiles) != 2 or not 0.0 <= self.quantiles[0] < self.quantiles[1] <= 1.0:
            raise ValueError(f"quantiles must be [low, high] with 0 <= low < high <= 1, got {self.quantiles}")
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if not 0.0 < self.mostly <= 1.0:
            raise ValueError(f"mostly must be in (0, 1], got {self.mostly}")
        if self.min_requests < 1 or self.profile_frames < 1:
            raise ValueError(f"min_requests and profile_frames must be >= 1, got {self.min_requests}, "
                             f"{self.profile_frames}")


def profile_bounds(profile: pd.DataFrame, cfg: MonitorConfig) -> dict[str, tuple[float, float]]:
    """``{column: (low, high)}`` from the training videos' profile table; a column training never measured
    (all NaN, e.g. no face found) is left out, and said so by its absence."""
    out = {}
    q_lo, q_hi = cfg.quantiles
    for c in cfg.columns:
        v = pd.to_numeric(profile[c], errors="coerce").dropna() if c in profile else pd.Series(dtype=float)
        if v.empty:
            continue
        lo, hi = float(v.quantile(q_lo)), float(v.quantile(q_hi))
        out[c] = (lo * (1 - cfg.tolerance), hi * (1 + cfg.tolerance))
    return out


def build_expectations(window: pd.DataFrame, bounds: dict[str, tuple[float, float]], cfg: MonitorConfig) -> list:
    import great_expectations.expectations as gxe

    ex = [gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_requests,
                                             meta={"gate": "enough requests", "group": f">= {cfg.min_requests}"})]
    for c, (lo, hi) in bounds.items():
        ex.append(gxe.ExpectColumnValuesToBeBetween(
            column=c, min_value=lo, max_value=hi, mostly=cfg.mostly,
            meta={"gate": "like training", "group": c, "bounds": [lo, hi]}))
    return ex


@dataclass
class DriftReport:
    success: bool
    failures: list[str]  # one line per failed expectation: the column, the share outside, the range, examples
    results: list[dict]  # every GE expectation result
    bounds: dict[str, tuple[float, float]]
    n_requests: int
    n_training_videos: int
    outside: dict[str, float]  # share of the window's requests outside each column's bounds

    def to_json(self) -> dict:
        return {"success": self.success, "failures": self.failures, "n_requests": self.n_requests,
                "n_training_videos": self.n_training_videos,
                "bounds": {c: [lo, hi] for c, (lo, hi) in self.bounds.items()},
                "outside": self.outside, "results": self.results}


def check_window(window: pd.DataFrame, profile: pd.DataFrame, cfg: MonitorConfig,
                 docs_dir: str | Path | None = None) -> DriftReport:
    """Validate ``window`` (request records) against the bounds of ``profile`` (training videos, same columns)."""
    from components.quality.gates import run_suite

    bounds = profile_bounds(profile, cfg)
    table = window.reset_index(drop=True)
    success, results, failures = run_suite(table, build_expectations(table, bounds, cfg), ["request_id"],
                                           SUITE_NAME, docs_dir, source="requests", asset="window")
    outside, lines = {}, []
    for c, (lo, hi) in bounds.items():
        v = pd.to_numeric(table[c], errors="coerce").dropna() if c in table else pd.Series(dtype=float)
        out = v[(v < lo) | (v > hi)]
        outside[c] = float(len(out) / len(v)) if len(v) else math.nan
        if len(v) and outside[c] > 1 - cfg.mostly:  # GE's verdict, said in one line instead of every request id
            seen = ", ".join(f"{x:g}" for x in sorted(out.unique())[:6])
            lines.append(f"{c}: {len(out)} of {len(v)} requests ({outside[c]:.0%}) outside the training range "
                         f"{lo:.4g} .. {hi:.4g} (seen: {seen}{', ...' if out.nunique() > 6 else ''})")
    if len(table) < cfg.min_requests:
        lines.insert(0, f"enough requests: {len(table)} in the window, {cfg.min_requests} needed to judge it")
    if not success and not lines:  # a failure the summary above does not cover: GE's own words
        lines = failures
    return DriftReport(success, lines, results, bounds, int(len(table)), int(len(profile)),
                       {c: (None if math.isnan(s) else round(s, 4)) for c, s in outside.items()})


def plot_drift(window: pd.DataFrame, profile: pd.DataFrame, bounds: dict[str, tuple[float, float]], path) -> Path:
    """One panel per checked column: training videos and requests side by side, the bounds as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(bounds)
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(3.2 * max(1, len(cols)), 2.8), squeeze=False)
    for ax, c in zip(axes[0], cols):
        train = pd.to_numeric(profile[c], errors="coerce").dropna()
        served = pd.to_numeric(window[c], errors="coerce").dropna() if c in window else pd.Series(dtype=float)
        both = pd.concat([train, served])
        bins = 20 if both.nunique() > 1 else 1
        ax.hist([train, served], bins=bins, label=["training", "requests"], density=True)
        for b in bounds[c]:
            ax.axvline(b, color="k", ls="--", lw=0.8)
        ax.set_title(c, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["DriftReport", "MonitorConfig", "SUITE_NAME", "build_expectations", "check_window", "plot_drift",
           "profile_bounds"]
