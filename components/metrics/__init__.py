"""metrics: APCER / BPCER / ACER / HTER (ISO/IEC 30107-3), dev-chosen thresholds, video-level scores, curves, plots.

Plots live in ``components.metrics.plots`` (imports matplotlib on first use).
"""
from components.metrics.rates import (
    THRESHOLD_RULES,
    acer_bootstrap_ci,
    auc,
    auc_bootstrap_ci,
    breakdown,
    choose_threshold,
    det_curve,
    eer,
    error_rates,
    roc_curve,
    video_scores,
)

__all__ = ["THRESHOLD_RULES", "acer_bootstrap_ci", "auc", "auc_bootstrap_ci", "breakdown", "choose_threshold", "det_curve", "eer", "error_rates",
           "roc_curve", "video_scores"]
