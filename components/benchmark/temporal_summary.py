"""The temporal benchmark's figures: video-level rates at dev thresholds with intervals over test identities,
identity folds pooled, and the table (temporal.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def summarise_videos(test_sets: list[pd.DataFrame], thresholds: list[float], n_boot: int,
                     identities: dict[str, str] | None = None) -> dict:
    """Row figures from each seed's test video scores (same videos) and dev-chosen thresholds.
    ``identities``: video id -> the person in it, the unit the ACER interval resamples (each video its own
    unit when None)."""
    from components.metrics.rates import acer_bootstrap_ci, auc, error_rates

    base = test_sets[0].sort_values("video_id").reset_index(drop=True)
    scores = []
    for v in test_sets:
        v = v.sort_values("video_id").reset_index(drop=True)
        if not v["video_id"].equals(base["video_id"]):
            raise ValueError("seeds scored different test videos; cannot pool them")
        scores.append(v["score"].to_numpy(float))
    y = base["label"].to_numpy(int)
    per_seed = [error_rates(s, y, t, base["attack_type"].astype(str).to_numpy()) for s, t in zip(scores, thresholds)]
    aucs = [auc(s, y) for s in scores]
    groups = None if identities is None else [identities[v] for v in base["video_id"]]
    lo, hi = acer_bootstrap_ci(np.stack(scores), y, thresholds, groups=groups, n_boot=n_boot)
    attacks = sorted(set(base.loc[base["label"] == 0, "attack_type"].astype(str)))
    return {
        "test_acer": float(np.mean([r["acer"] for r in per_seed])),
        "test_acer_std": float(np.std([r["acer"] for r in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0,
        "test_auc": float(np.mean(aucs)),
        "test_apcer": float(np.mean([r["apcer"] for r in per_seed])),
        "test_bpcer": float(np.mean([r["bpcer"] for r in per_seed])),
        "apcer_per_attack": {a: float(np.mean([r["apcer_per_attack"].get(a, np.nan) for r in per_seed]))
                             for a in attacks},
        "acer_ci95": [lo, hi],
        "n_test_videos": int(len(y)),
        "n_test_identities": int(len(set(groups))) if groups is not None else None,
        "n_test_live": int((y == 1).sum()),
        "n_test_attack": int((y == 0).sum()),
        "per_seed_acer": [float(r["acer"]) for r in per_seed],
        "per_seed_auc": [float(a) for a in aucs],
    }


def _test_videos(path: str) -> pd.DataFrame:
    v = pd.read_csv(path)
    if "split" not in v.columns:
        raise ValueError(f"{path} has no split column: written by an older evaluate; delete its run folder")
    return v[v["split"] == "test"]


def markdown_table(summary: dict) -> str:
    rows = summary["rows"]
    lines = [f"Temporal benchmark, setting `{summary['config']['setting']}`: {summary['n_test_videos']} test "
             f"videos ({summary['n_test_live']} live, {summary['n_test_attack']} attack) of identities never "
             f"seen in training; threshold chosen on dev. ACER interval: 95 % bootstrap over test identities "
             f"({summary.get('n_test_identities')} of them: whole people are resampled, all their videos "
             f"with them).", "",
             "| row | seeds | test AUC | test ACER (%) | 95 % CI (%) | APCER per attack (%) | wall (s) |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for name, r in rows.items():
        apcer = ", ".join(f"{k} {100 * v:.1f}" for k, v in (r.get("apcer_per_attack") or {}).items())
        lo, hi = r["acer_ci95"]
        seeds = len(r.get("seeds") or [])
        lines.append(f"| {name} | {seeds or '-'} | {r['test_auc']:.3f} | {100 * r['test_acer']:.1f}"
                     f"{' ± %.1f' % (100 * r['test_acer_std']) if seeds > 1 else ''} | {100 * lo:.1f}-{100 * hi:.1f}"
                     f" | {apcer} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def fold_splits(identities: list[str], ratio: tuple[int, int, int], folds: int) -> list[dict[str, str]]:
    """Identity -> split for each fold: the split pattern rotated over the identities one step per fold, so with
    ``folds`` = the pattern's length (4 for 2:1:1) every identity is a test identity in exactly one fold and is
    never trained on in that fold. Raises when ``folds`` cannot give every identity one test turn."""
    pattern = ["train"] * ratio[0] + ["dev"] * ratio[1] + ["test"] * ratio[2]
    if folds != len(pattern):
        raise ValueError(f"folds must be {len(pattern)} for split_ratio {tuple(ratio)} (one test turn per identity), "
                         f"got {folds}")
    n = len(identities)
    out = [{name: pattern[(i + f) % len(pattern)] for i, name in enumerate(identities)} for f in range(folds)]
    turns = {name: sum(o[name] == "test" for o in out) for name in identities}
    if n % len(pattern) or set(turns.values()) != {1}:
        raise ValueError(f"{n} identities over a {len(pattern)}-long split pattern do not give every identity one "
                         f"test turn: {turns}")
    return out


def summarise_pooled(tables: list[pd.DataFrame], thresholds: list[float], identities: dict[str, str],
                     n_boot: int) -> dict:
    """One row's figures over folds: each fold's test videos decided at that fold's dev threshold, pooled (every
    identity is tested once); AUC over the pooled scores; ACER interval resampling identities."""
    from components.metrics.rates import acer_bootstrap_ci, auc, error_rates

    v = pd.concat([t.assign(accepted=(t["score"] >= th).astype(float)) for t, th in zip(tables, thresholds)],
                  ignore_index=True)
    y = v["label"].to_numpy(int)
    r = error_rates(v["accepted"].to_numpy(), y, 0.5, v["attack_type"].astype(str).to_numpy())
    groups = [identities[i] for i in v["video_id"]]
    lo, hi = acer_bootstrap_ci(v["accepted"].to_numpy(), y, [0.5], groups=groups, n_boot=n_boot)
    per_fold = [error_rates(t["score"].to_numpy(), t["label"].to_numpy(int), th)["acer"]
                for t, th in zip(tables, thresholds)]
    return {"test_acer": r["acer"], "test_apcer": r["apcer"], "test_bpcer": r["bpcer"],
            "test_auc": auc(v["score"].to_numpy(), y), "apcer_per_attack": r["apcer_per_attack"],
            "acer_ci95": [lo, hi], "per_fold_acer": per_fold, "n_test_videos": int(len(v)),
            "n_test_live": int((y == 1).sum()), "n_test_attack": int((y == 0).sum()),
            "n_test_identities": int(len(set(groups)))}
