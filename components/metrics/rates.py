"""Presentation-attack detection error rates (ISO/IEC 30107-3, paper eqs. 7-8), thresholds and curves.

Conventions used everywhere in this module:
- ``labels``: 1 = live (bona fide), 0 = attack. ``scores``: higher = more live.
- Decision rule: ``score >= threshold`` is accepted as live. A score exactly equal to the threshold is
  therefore LIVE (ties go to the bona fide side), so an attack scoring exactly the threshold is an APCER error.
- APCER = attacks accepted as live / attacks (FP / (TN + FP) with live as the positive class).
  BPCER = live rejected as attack / live (FN / (TP + FN)). ACER = (APCER + BPCER) / 2 (the paper's eq. 8,
  pooled over all attacks). ``apcer_worst`` is the highest per-attack-type APCER and ``acer_worst`` uses it
  (the OULU-NPU convention). HTER = (FAR + FRR) / 2 with FAR = pooled APCER and FRR = BPCER: numerically the
  pooled ACER at the same threshold; it is reported under its own name because cross-dataset papers use it.
- A rate whose denominator is empty (no attacks, no live, no attacks of a type) is NaN, never an exception,
  and ``missing`` says which class was absent.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from components.data.manifest import META_COLUMNS

LIVE = 1
ATTACK = 0
THRESHOLD_RULES = ("eer", "min_acer")


def _as_arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf")
    bad = ~np.isin(y, (LIVE, ATTACK))
    if bad.any():
        raise ValueError(f"labels must be 1 (live) or 0 (attack); got {sorted(set(y[bad].tolist()))[:5]}")
    return s, y.astype(np.int64)


def _rate(errors: int, total: int) -> float:
    return float(errors) / total if total else float("nan")


def _mean_ignoring_nan(a: float, b: float) -> float:
    # ACER is only defined with both classes present; a one-class split reports NaN rather than half a rate.
    return float("nan") if (math.isnan(a) or math.isnan(b)) else (a + b) / 2.0


def error_rates(scores, labels, threshold: float, attack_types: Sequence[str] | None = None,
                expected_attack_types: Iterable[str] | None = None) -> dict:
    """APCER, BPCER, ACER, HTER at ``threshold`` (``score >= threshold`` => live), plus per-attack-type APCER.

    ``attack_types`` is one entry per sample (live rows may carry anything, e.g. "live"; only attack rows are
    grouped). ``expected_attack_types`` lists types that should be present: a type with no attack in this
    split is reported as NaN in ``apcer_per_attack`` and named in ``absent_attack_types`` instead of failing.
    """
    s, y = _as_arrays(scores, labels)
    threshold = float(threshold)
    accepted = s >= threshold
    live, attack = y == LIVE, y == ATTACK
    n_live, n_attack = int(live.sum()), int(attack.sum())
    fn = int((live & ~accepted).sum())   # live rejected
    fp = int((attack & accepted).sum())  # attack accepted
    apcer, bpcer = _rate(fp, n_attack), _rate(fn, n_live)
    out = {
        "threshold": threshold,
        "n_live": n_live, "n_attack": n_attack,
        "false_accepts": fp, "false_rejects": fn,
        "apcer": apcer, "bpcer": bpcer,
        "acer": _mean_ignoring_nan(apcer, bpcer),
        "hter": _mean_ignoring_nan(apcer, bpcer),
        "missing": [name for name, n in (("live", n_live), ("attack", n_attack)) if n == 0],
    }
    per_attack: dict[str, float] = {}
    absent: list[str] = []
    if attack_types is not None:
        types = np.asarray(attack_types, dtype=object).reshape(-1)
        if types.shape != s.shape:
            raise ValueError(f"attack_types has {types.shape[0]} entries for {s.shape[0]} scores")
        for t in sorted({str(v) for v in types[attack]}):
            m = attack & (types.astype(str) == t)
            per_attack[t] = _rate(int((m & accepted).sum()), int(m.sum()))
        for t in expected_attack_types or ():
            if t not in per_attack:
                per_attack[t] = float("nan")
                absent.append(t)
    present = [v for v in per_attack.values() if not math.isnan(v)]
    worst = max(present) if present else apcer
    worst_type = max((k for k, v in per_attack.items() if not math.isnan(v)), key=per_attack.get, default=None)
    out.update(apcer_per_attack=per_attack, absent_attack_types=sorted(absent), apcer_worst=worst,
               worst_attack_type=worst_type, acer_worst=_mean_ignoring_nan(worst, bpcer))
    return out


def _sweep(scores, labels):
    """Every distinct decision on ``scores``: candidate thresholds with the APCER/BPCER each gives.

    Candidates are the lowest score (everything live), the midpoints between consecutive distinct scores, and
    one step above the highest (everything attack). Midpoints keep a dev-chosen threshold away from any dev
    score, so it is not decided by float ties when reused on test.
    """
    s, y = _as_arrays(scores, labels)
    live, att = np.sort(s[y == LIVE]), np.sort(s[y == ATTACK])
    if live.size == 0 or att.size == 0:
        missing = "live" if live.size == 0 else "attack"
        raise ValueError(f"cannot choose a threshold: the scores contain no {missing} samples")
    u = np.unique(s)
    cands = np.concatenate([[u[0]], (u[:-1] + u[1:]) / 2.0, [np.nextafter(u[-1], np.inf)]])
    apcer = (att.size - np.searchsorted(att, cands, side="left")) / att.size  # attacks with score >= t
    bpcer = np.searchsorted(live, cands, side="left") / live.size              # live with score < t
    return cands, apcer, bpcer


def choose_threshold(scores, labels, rule: str = "eer") -> float:
    """Threshold from (dev) scores. Call it on the development split only; apply the result to test.

    ``eer``: the threshold where APCER and BPCER are closest (equal error rate); ``min_acer``: the one with the
    lowest ACER. Ties are broken by the other criterion (lower ACER for eer, smaller |APCER - BPCER| for
    min_acer) and then by the HIGHER threshold, the conservative side for a security check.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; use one of {THRESHOLD_RULES}")
    cands, apcer, bpcer = _sweep(scores, labels)
    acer, gap = (apcer + bpcer) / 2.0, np.abs(apcer - bpcer)
    # Rounding keeps float noise from splitting logically equal rates (1/3 + 1/6 vs 1/2).
    acer, gap = np.round(acer, 12), np.round(gap, 12)
    keys = (-cands, acer, gap) if rule == "eer" else (-cands, gap, acer)  # lexsort: last key is primary
    return float(cands[np.lexsort(keys)[0]])


def eer(scores, labels) -> float:
    """Equal error rate: mean of APCER and BPCER at the ``eer`` threshold."""
    t = choose_threshold(scores, labels, "eer")
    r = error_rates(scores, labels, t)
    return r["acer"]


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with live as the positive class: fpr = APCER, tpr = 1 - BPCER.

    Thresholds run from +inf (nothing accepted) down through every distinct score (``score >= t``).
    """
    s, y = _as_arrays(scores, labels)
    n_live, n_att = int((y == LIVE).sum()), int((y == ATTACK).sum())
    if n_live == 0 or n_att == 0:
        raise ValueError("a ROC curve needs both live and attack samples")
    thr = np.concatenate([[np.inf], np.unique(s)[::-1]])
    live, att = np.sort(s[y == LIVE]), np.sort(s[y == ATTACK])
    tpr = (n_live - np.searchsorted(live, thr, side="left")) / n_live
    fpr = (n_att - np.searchsorted(att, thr, side="left")) / n_att
    return fpr, tpr, thr


def auc(scores, labels) -> float:
    """Area under the ROC curve (trapezoids; tied live/attack scores count one half)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(apcer, bpcer, thresholds) over every distinct decision, thresholds ascending (the DET trade-off)."""
    cands, apcer, bpcer = _sweep(scores, labels)
    return apcer, bpcer, cands


_META = tuple(c for c in META_COLUMNS if c != "video_id")


def video_scores(clip_df: pd.DataFrame, score_col: str = "score") -> pd.DataFrame:
    """One row per video: mean of its clip scores (paper IV-A), its clip count and its metadata columns."""
    for col in ("video_id", score_col):
        if col not in clip_df.columns:
            raise ValueError(f"clip table lacks column {col!r} (has {list(clip_df.columns)})")
    if clip_df.empty:
        raise ValueError("no clips to aggregate")
    meta = [c for c in _META if c in clip_df.columns]
    if "label" in meta:
        mixed = clip_df.groupby("video_id")["label"].nunique()
        if (mixed > 1).any():
            raise ValueError(f"videos with clips of both labels: {mixed[mixed > 1].index.tolist()[:5]}")
    g = clip_df.groupby("video_id", sort=True)
    out = g[score_col].mean().rename("score").to_frame()
    out["n_clips"] = g.size()
    if meta:
        out = out.join(g[meta].first())
    return out.reset_index()


def breakdown(video_df: pd.DataFrame, threshold: float,
              by: Sequence[str] = ("device", "scene", "attack_type")) -> pd.DataFrame:
    """Error rates per value of each column in ``by`` (long format: factor, value, n_live, n_attack, rates).

    Rates are computed inside each group; a group without live videos has NaN BPCER/ACER and one without
    attacks NaN APCER/ACER (attack_type groups are one-class by construction: 'live' gives BPCER, each
    attack type its APCER).
    """
    rows = []
    for factor in by:
        if factor not in video_df.columns:
            continue
        for value, grp in video_df.groupby(factor, sort=True):
            r = error_rates(grp["score"].to_numpy(), grp["label"].to_numpy(), threshold)
            rows.append({"factor": factor, "value": str(value), "n_live": r["n_live"],
                         "n_attack": r["n_attack"], "apcer": r["apcer"], "bpcer": r["bpcer"],
                         "acer": r["acer"]})
    return pd.DataFrame(rows, columns=["factor", "value", "n_live", "n_attack", "apcer", "bpcer", "acer"])


def _group_draws(groups, n: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Up to ``n_boot`` resamples of row indices (drawn lazily: callers stop once they have enough usable ones): whole groups (identities, sources) drawn with replacement, each
    drawn group bringing all its rows; ``groups=None`` makes every row its own group."""
    g = np.arange(n) if groups is None else np.asarray(groups, dtype=object).reshape(-1)
    if len(g) != n:
        raise ValueError(f"groups has {len(g)} entries for {n} scores")
    _, codes = np.unique(g.astype(str), return_inverse=True)
    members = [np.flatnonzero(codes == k) for k in range(codes.max() + 1)]
    for _ in range(n_boot):
        yield np.concatenate([members[k] for k in rng.integers(0, len(members), size=len(members))])


def acer_bootstrap_ci(scores, labels, thresholds, groups=None, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the ACER, resampling whole ``groups`` (the identities).

    ``scores``: ``(n,)`` for one model or ``(k, n)`` for k models (e.g. seeds) scoring the same n videos;
    ``thresholds``: one per model, chosen beforehand on dev; ``groups``: one id per video (the person in it).
    Videos of one person are not independent (same face, same skin, same habits), so each resample draws
    people with replacement and takes all of their videos: the interval is what another draw of test
    identities could give, and it is wide when there are few of them, as it should be. A resample without live
    or without attack videos is drawn again. ``groups=None`` treats every video as its own group (only right
    when every video shows a different person). Each resample applies to every model alike and takes the mean
    ACER over the k models (the seed-mean ACER).
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))  # (k, n)
    y = np.asarray(labels).reshape(-1)
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1, 1)  # (k, 1)
    if s.shape[1] != len(y) or len(t) != len(s):
        raise ValueError(f"scores {s.shape}, labels {y.shape} and thresholds {t.shape[0]} do not line up")
    live, attack = y == LIVE, y == ATTACK
    if not live.any() or not attack.any():
        raise ValueError("a bootstrap ACER needs both live and attack videos")
    rng = np.random.default_rng(seed)
    accept = s >= t  # (k, n) decisions at each model's own dev threshold
    out = []
    for idx in _group_draws(groups, len(y), n_boot * 4, rng):
        lv, at = idx[live[idx]], idx[attack[idx]]
        if not len(lv) or not len(at):
            continue
        bpcer = 1.0 - accept[:, lv].mean(axis=1)  # (k,)
        apcer = accept[:, at].mean(axis=1)  # (k,)
        out.append(float(((apcer + bpcer) / 2).mean()))
        if len(out) == n_boot:
            break
    if not out:
        raise ValueError("no resample held both live and attack videos: every group holds one class only and "
                         "there is one group")
    lo, hi = np.quantile(out, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def auc_bootstrap_ci(scores, labels, groups=None, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC resampling whole ``groups`` (identities or sources), as
    :func:`acer_bootstrap_ci`. NaNs when fewer than two groups exist (no interval can be drawn)."""
    s, y = _as_arrays(scores, labels)
    if not (y == LIVE).any() or not (y == ATTACK).any():
        raise ValueError("a bootstrap AUC needs both live and attack samples")
    g = np.arange(len(y)) if groups is None else np.asarray(groups, dtype=object).reshape(-1)
    if len(set(map(str, g))) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    out = []
    for idx in _group_draws(groups, len(y), n_boot * 4, rng):
        yy = y[idx]
        if (yy == LIVE).any() and (yy == ATTACK).any():
            out.append(auc(s[idx], yy))
            if len(out) == n_boot:
                break
    if not out:
        return float("nan"), float("nan")
    lo, hi = np.quantile(out, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
