"""Checkpoint evaluation: score every dev and test clip through the Predictor, average per video, apply the
checkpoint's threshold to dev and test, and write metrics, curves, plots and Grad-CAM figures.

The threshold is not chosen here: training chose it on dev (``train.threshold_rule``) and the checkpoint carries
it, so evaluate, register and serving all decide at the one operating point. ``metrics.json`` records it
(``threshold``, ``threshold_rule``) so register can refuse a report computed at another one. The checkpoint file
itself is never modified (it is the train stage's DVC output).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from components.data.manifest import META_COLUMNS
from components.files import write_csv, write_json

# Shard columns a score table keeps: the video metadata plus which clip of the video it is.
CLIP_COLUMNS = [*META_COLUMNS, "clip_index"]


class EvaluationError(ValueError):
    """Evaluation cannot produce a result (no dev split, a checkpoint without a dev-chosen threshold)."""


@dataclass(frozen=True)
class EvalConfig:
    """``expected_attack_types``: types that should appear (a missing one is reported, not an error); None = the
    types present in dev or test. ``gradcam_clips``: Grad-CAM figures per class (0 turns them off)."""

    SPEED_ONLY: ClassVar[frozenset[str]] = frozenset({"batch_size"})  # out of the evaluate stage's DVC params

    batch_size: int = 16
    expected_attack_types: list[str] | None = None
    breakdown_by: list[str] = field(default_factory=lambda: ["device", "scene", "attack_type"])
    gradcam_clips: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.gradcam_clips < 0:
            raise ValueError(f"gradcam_clips must be >= 0, got {self.gradcam_clips}")


def score_split(predictor, shards_dir: str | os.PathLike, split: str, bar=None) -> tuple[pd.DataFrame, dict]:
    """Clip table (metadata + ``score``) of one split, and the loaded clips (for Grad-CAM). Empty if absent.
    ``bar``: a tqdm bar advanced per scored batch (its total grows by this split's clips)."""
    from components.labeling.shards import ShardsError, load_clips

    try:
        clips = load_clips(shards_dir, split=split, columns=CLIP_COLUMNS + ["frames"])
    except ShardsError:
        return pd.DataFrame(columns=CLIP_COLUMNS + ["score"]), {}
    table = pd.DataFrame({c: clips[c] for c in CLIP_COLUMNS})
    table["label"] = table["label"].astype(int)
    if bar is None:
        table["score"] = predictor.score_clips(clips["frames"])
        return table, clips
    frames = clips["frames"]
    bar.total = (bar.total or 0) + len(frames)
    bar.set_postfix_str(split, refresh=False)
    step = max(1, predictor.batch_size)  # whole Predictor batches: the same scores as one call
    scores = []
    for i in range(0, len(frames), step):
        scores.append(predictor.score_clips(frames[i:i + step]))
        bar.update(len(scores[-1]))
    table["score"] = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    return table, clips


def evaluate_checkpoint(checkpoint: str | os.PathLike, shards_dir: str | os.PathLike, out_dir: str | os.PathLike,
                        cfg: EvalConfig = EvalConfig(), progress: bool = False,
                        data_gates: str | None = None) -> dict:
    """Evaluate ``checkpoint`` on the shards' dev and test splits; write everything under ``out_dir``.

    Writes metrics.json, video_scores.csv, roc.csv, det.csv and figures/{roc,det,
    score_hist}.png + figures/gradcam/*.png. Returns the metrics dict. ``progress``: a bar over the scored clips.
    ``data_gates``: whether the shards' data passed validation ("passed" / "skipped"), recorded in metrics.json.
    """
    from components.inference.predictor import Predictor
    from components.metrics import plots
    from components.metrics.rates import det_curve, roc_curve, video_scores
    from components.metrics.report import evaluate_splits

    predictor = Predictor.from_checkpoint(checkpoint, batch_size=cfg.batch_size)
    if predictor.video_head is not None:
        # Shards are scored clip by clip and pooled by the mean; a head's features need each video's clip set.
        raise ValueError(f"{checkpoint} decides with a video head (a reference model); shard evaluation pools clip "
                         f"scores by their mean and would not measure it: use `eulernet benchmark realworld`")
    if predictor.threshold is None:
        raise EvaluationError(f"{checkpoint} carries no threshold chosen on dev: train it with `eulernet train` "
                              f"(which chooses one by train.threshold_rule)")
    threshold, rule = predictor.threshold, predictor.extra.get("threshold_rule")
    bar = None
    if progress:
        from components.runtime import progress_bar

        bar = progress_bar(0, "evaluate", unit="clip", delay=1.0)  # drawn once the first split's size is known
    try:
        dev_clips, _ = score_split(predictor, shards_dir, "dev", bar)
        test_clips, test_data = score_split(predictor, shards_dir, "test", bar)
    finally:
        if bar is not None:
            bar.set_postfix_str("dev+test", refresh=False)
            bar.close()
    if dev_clips.empty:
        raise EvaluationError("the shards have no dev split: evaluate reports dev (where the threshold was chosen) "
                              "beside test")
    dev_v = video_scores(dev_clips)
    test_v = video_scores(test_clips) if not test_clips.empty else dev_v.iloc[:0]
    expected = cfg.expected_attack_types
    if expected is None:
        both = pd.concat([dev_v, test_v])
        expected = sorted(set(both.loc[both["label"] == 0, "attack_type"].astype(str)))

    report = evaluate_splits(dev_v, test_v, threshold, rule, expected, tuple(cfg.breakdown_by))
    t = report["threshold"]
    report.update(checkpoint=str(checkpoint), variant=predictor.variant, label_type=predictor.label_type,
                  n_clips={"dev": int(len(dev_clips)), "test": int(len(test_clips))}, data_gates=data_gates)
    if not test_v.empty:  # what the test figures were computed on: promotion compares only equal hashes
        from components.labeling.shards import split_data_hash

        report["test_data_hash"] = split_data_hash(shards_dir, "test")

    out = Path(out_dir)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", report)
    write_csv(pd.concat([dev_v.assign(split="dev"), test_v.assign(split="test")], ignore_index=True),
              out / "video_scores.csv")

    curves_roc, curves_det = {}, {}
    for name, v in (("dev", dev_v), ("test", test_v)):
        if v["label"].nunique() == 2:
            fpr, tpr, thr = roc_curve(v["score"], v["label"])
            apcer, bpcer, dthr = det_curve(v["score"], v["label"])
            curves_roc[f"{name} (AUC {report[name]['auc']:.3f})"] = (fpr, tpr)
            curves_det[name] = (apcer, bpcer)
            if name == "test":  # the DVC plots: test curves only (the dev ones only chose the threshold)
                write_csv(pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr}), out / "roc.csv")
                write_csv(pd.DataFrame({"apcer": apcer, "bpcer": bpcer, "threshold": dthr}), out / "det.csv")
    for name in ("roc.csv", "det.csv"):  # declared DVC plots must exist even when test lacks a class
        if not (out / name).exists():
            cols = ["fpr", "tpr", "threshold"] if name == "roc.csv" else ["apcer", "bpcer", "threshold"]
            write_csv(pd.DataFrame(columns=cols), out / name)
    if curves_roc:
        plots.plot_roc(curves_roc, figs / "roc.png")
        plots.plot_det(curves_det, figs / "det.png")
    shown = test_v if not test_v.empty else dev_v
    plots.plot_score_histograms(shown["score"], shown["label"], t, figs / "score_hist.png",
                                title=f"{'test' if not test_v.empty else 'dev'} video scores")
    if cfg.gradcam_clips:
        _gradcams(predictor, test_data or {}, test_clips, cfg.gradcam_clips, figs / "gradcam")
    return report


def _gradcams(predictor, data: dict, clips: pd.DataFrame, per_class: int, out: Path) -> list[Path]:
    """Grad-CAM figures of the first clip of ``per_class`` live and ``per_class`` attack test videos."""
    from components.metrics.gradcam import plot_gradcam

    if not data:
        return []
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    first = clips.reset_index(drop=True).groupby("video_id", sort=True).head(1)
    for label in (1, 0):
        for i, row in first[first["label"] == label].head(per_class).iterrows():
            kind = "live" if label else str(row["attack_type"])
            name = f"{kind}_{row['video_id']}".replace("/", "_")
            paths.append(plot_gradcam(predictor, np.asarray(data["frames"][i]), bool(label), out / f"{name}.png",
                                      title=f"{row['video_id']} ({kind}), clip score {row['score']:.3f}"))
    return paths
