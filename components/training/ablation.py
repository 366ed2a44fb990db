"""The paper's Table I rerun: baseline and C1-C5 trained and evaluated on the same shards over several seeds.

Every run is an ordinary tracked ``fit`` (its own MLflow run, tagged ``ablation``) followed by the standard
evaluation (dev-chosen threshold applied to test), so the table's numbers are the ones the pipeline reports.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from components.training.config import TrainConfig

TABLE_I_ORDER = ("c1", "c2", "c3", "c4", "c5", "baseline")


def run_ablation(base: TrainConfig, shards_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 storage_path: str, variants: Sequence[str] = TABLE_I_ORDER, seeds: Sequence[int] = (0, 1),
                 tracking_uri: str | None = None, experiment: str = "eulernet-ablation",
                 tags: dict | None = None, eval_cfg=None, run_prefix: str = "ablation") -> pd.DataFrame:
    """Train + evaluate each (variant, seed); returns one row per run and writes ``runs.csv`` as it goes
    (so an interrupted ablation keeps its finished rows), ``table.md`` and ``training_curves.png``."""
    from components.metrics.evaluate import EvalConfig, evaluate_checkpoint
    from components.metrics.plots import plot_training_curves
    from components.training.driver import fit

    eval_cfg = eval_cfg or EvalConfig(gradcam_clips=0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for variant in variants:
        for seed in seeds:
            # label_type=None: each Table I row trains on its own label map.
            cfg = dataclasses.replace(base, variant=variant, seed=int(seed), label_type=None)
            name = f"{run_prefix}-{variant}-s{seed}"
            res = fit(cfg, shards_dir, storage_path, name, experiment=experiment, tracking_uri=tracking_uri,
                      tags={**(tags or {}), "ablation": run_prefix, "variant": variant, "seed": str(seed)})
            rep = evaluate_checkpoint(res.best_checkpoint_path, shards_dir, out / "runs" / f"{variant}-s{seed}",
                                      eval_cfg)
            rows.append({"variant": variant, "seed": seed, "label_type": cfg.label_type,
                         "fcam": _variant_flag(variant, "fcam"), "fusion": _variant_flag(variant, "fusion"),
                         "dev_acer": rep["dev"]["acer"], "test_acer": rep["acer"], "test_apcer": rep["apcer"],
                         "test_bpcer": rep["bpcer"], "test_auc": rep["auc"], "threshold": rep["threshold"],
                         "best_epoch": res.best.get("epoch"), "mlflow_run_id": res.run_id})
            if seed == seeds[0]:
                curves[variant] = res.history
            pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)
    runs = pd.DataFrame(rows)
    (out / "table.md").write_text(ablation_table(runs))
    plot_training_curves(curves, out / "training_curves.png")
    (out / "config.json").write_text(json.dumps({"base": base.to_dict(), "variants": list(variants),
                                                 "seeds": [int(s) for s in seeds]}, indent=2) + "\n")
    return runs


def _variant_flag(variant: str, name: str):
    from components.model.variants import VARIANTS

    return getattr(VARIANTS[variant], name) if variant in VARIANTS else None


EVAL_METRICS = "metrics/eval.json"  # the headline file evaluate writes (dvc.yaml `metrics:`)


def _exp_revs(shown) -> list[tuple[str, dict]]:
    """``(name, revision record)`` of every experiment in ``dvc exp show --json`` output: the baselines (workspace,
    commits) are left out, their experiments kept (DVC 3: ``[{rev, data, experiments: [{name, revs: [...]}]}]``)."""
    found = []
    for base in shown if isinstance(shown, list) else [shown]:
        for exp in (base or {}).get("experiments") or []:
            for rev in exp.get("revs") or []:
                if isinstance(rev.get("data"), dict):
                    found.append((rev.get("name") or exp.get("name") or rev.get("rev", "")[:7], rev))
                    found += _exp_revs([rev])  # nested (older layouts)
    return found


def _number(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else float("nan")


def runs_from_dvc_exps(shown, pattern: str = "*", params_file: str = "params.yaml") -> pd.DataFrame:
    """Table I rows from ``dvc exp show --json`` output: one row per experiment whose name matches ``pattern``
    (fnmatch), with its ``train.variant``/``seed``/``label_type`` params and the headline numbers of
    ``metrics/eval.json`` (NaN where an experiment has none, e.g. it failed)."""
    from components.model.variants import variant_label_type

    rows, seen = [], set()
    for name, rev in _exp_revs(shown):
        if rev.get("rev") in seen or not fnmatch.fnmatchcase(str(name), pattern):
            continue
        seen.add(rev.get("rev"))
        data = rev["data"]
        params = (((data.get("params") or {}).get(params_file) or {}).get("data") or {})
        train = params.get("train") or {}
        variant = str(train.get("variant", "eulernet"))
        try:
            label_type = train.get("label_type") or variant_label_type(variant)
        except ValueError:
            label_type = train.get("label_type")
        head = (((data.get("metrics") or {}).get(EVAL_METRICS) or {}).get("data") or {})
        rows.append({"experiment": str(name), "rev": str(rev.get("rev", ""))[:7], "variant": variant,
                     "seed": train.get("seed", 0), "label_type": label_type,
                     "fcam": _variant_flag(variant, "fcam"), "fusion": _variant_flag(variant, "fusion"),
                     "dev_acer": _number(head.get("dev_acer")), "test_acer": _number(head.get("test_acer")),
                     "test_apcer": _number(head.get("test_apcer")), "test_bpcer": _number(head.get("test_bpcer")),
                     "test_auc": _number(head.get("test_auc")), "threshold": _number(head.get("threshold"))})
    return pd.DataFrame(rows, columns=["experiment", "rev", "variant", "seed", "label_type", "fcam", "fusion",
                                       "dev_acer", "test_acer", "test_apcer", "test_bpcer", "test_auc", "threshold"])


def experiments_table(runs: pd.DataFrame) -> str:
    """One line per experiment (Table I's rows before averaging over seeds), in Table I order."""
    lines = ["| Experiment | Variant | Seed | ACER dev (%) | ACER test (%) | APCER test (%) | BPCER test (%) | AUC test |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    order = {v: i for i, v in enumerate(TABLE_I_ORDER)}
    runs = runs.assign(_o=runs["variant"].map(lambda v: order.get(v, len(order)))).sort_values(
        ["_o", "variant", "seed", "experiment"])

    def pct(v):
        return "n/a" if pd.isna(v) else f"{100 * v:.2f}"

    for r in runs.itertuples(index=False):
        lines.append(f"| {r.experiment} | {r.variant} | {r.seed} | {pct(r.dev_acer)} | {pct(r.test_acer)} | "
                     f"{pct(r.test_apcer)} | {pct(r.test_bpcer)} | "
                     f"{'n/a' if pd.isna(r.test_auc) else f'{r.test_auc:.3f}'} |")
    return "\n".join(lines) + "\n"


def _pm(values: pd.Series) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna() * 100
    if v.empty:
        return "n/a"
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.2f} ± {sd:.2f}"


def ablation_table(runs: pd.DataFrame) -> str:
    """Table I layout: tag, label, FCAM, Residual Pyramid, ACER (%) dev and test as mean ± std over seeds."""
    labels = {"location_map": "Face Location Map", "binary_mask": "Binary Mask", "depth_map": "Depth Map"}
    tags = {"baseline": "Baseline", **{f"c{i}": f"Compare {i}" for i in range(1, 6)}}
    seeds = sorted(runs["seed"].unique().tolist()) if len(runs) else []
    lines = [f"ACER (%) at the dev-chosen threshold, mean ± std over seeds {seeds} (n = {len(seeds)}).", "",
             "| Tag | Label | FCAM | Residual Pyramid | ACER dev (%) | ACER test (%) |",
             "|---|---|:-:|:-:|---:|---:|"]
    order = [v for v in TABLE_I_ORDER if v in set(runs["variant"])] + \
        [v for v in runs["variant"].unique() if v not in TABLE_I_ORDER]
    for v in order:
        g = runs[runs["variant"] == v]
        first = g.iloc[0]
        fcam = "?" if first["fcam"] is None else "√" if first["fcam"] else "×"
        pyramid = "?" if first["fusion"] is None else "√" if first["fusion"] == "residual_pyramid" else "×"
        lines.append(f"| {tags.get(v, v)} | {labels.get(first['label_type'], first['label_type'])} | "
                     f"{fcam} | {pyramid} | {_pm(g['dev_acer'])} | {_pm(g['test_acer'])} |")
    return "\n".join(lines) + "\n"
