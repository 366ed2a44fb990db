"""Evaluation and training plots (matplotlib, headless Agg backend). Each function writes one PNG and returns its path."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: CI, Ray workers and servers have no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path) -> Path:
    """ROC curves; ``curves`` maps a name (e.g. 'dev AUC=0.98') to (fpr, tpr)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, label=name, drawstyle="steps-post")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
    ax.set(xlabel="APCER (attacks accepted)", ylabel="1 - BPCER (live accepted)", xlim=(0, 1), ylim=(0, 1.01),
           title="ROC (live = positive)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_det(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path) -> Path:
    """DET curves on normal-deviate axes; ``curves`` maps a name to (apcer, bpcer)."""
    from scipy.stats import norm

    plt = _plt()
    eps = 1e-3  # rates of exactly 0 or 1 have no normal deviate: clip them to the plot's edge
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99])
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, (apcer, bpcer) in curves.items():
        ax.plot(norm.ppf(np.clip(apcer, eps, 1 - eps)), norm.ppf(np.clip(bpcer, eps, 1 - eps)), label=name)
    ax.set_xticks(norm.ppf(ticks), [f"{t:g}" for t in ticks], fontsize=7)
    ax.set_yticks(norm.ppf(ticks), [f"{t:g}" for t in ticks], fontsize=7)
    lim = norm.ppf([eps, 1 - eps])
    ax.set(xlabel="APCER", ylabel="BPCER", xlim=lim, ylim=lim, title="DET")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_training_curves(histories: Mapping[str, pd.DataFrame] | pd.DataFrame, path,
                         metric: str = "dev_acer") -> Path:
    """Train loss and a dev metric per epoch, one line per run (the paper's Fig. 7 compares variants)."""
    plt = _plt()
    if isinstance(histories, pd.DataFrame):
        histories = {"model": histories}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, h in histories.items():
        if "train_loss" in h:
            ax1.plot(h["epoch"], h["train_loss"], marker=".", label=name)
        if metric in h:
            ax2.plot(h["epoch"], 100 * h[metric], marker=".", label=name)
    ax1.set(xlabel="epoch", ylabel="train L2 loss", title="training loss")
    ax2.set(xlabel="epoch", ylabel=f"{metric} (%)", title="development set")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_score_histograms(scores, labels, threshold: float | None, path, title: str = "video scores") -> Path:
    """Live vs attack score histograms with the decision threshold."""
    plt = _plt()
    s, y = np.asarray(scores, float), np.asarray(labels)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    bins = np.linspace(min(s.min(), 0.0), max(s.max(), 1.0), 31)
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label=f"live (n={int((y == 1).sum())})", color="tab:green")
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label=f"attack (n={int((y == 0).sum())})", color="tab:red")
    if threshold is not None:
        ax.axvline(threshold, c="k", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="live score (mean predicted map)", ylabel="videos", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)
