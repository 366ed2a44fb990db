"""The temporal benchmark: does a model tell live from spoof when single frames cannot?

Synthetic temporal-only videos (live and attack frames alike one at a time; only their change over time
differs), identity-disjoint splits (dev and test people are never seen in training), the real labeling
(Ray Data + dlib) and training (Ray Train, tracked in MLflow) paths, and the standard evaluation (threshold
chosen on dev, applied to test). Rows:

* ``eulernet``: this repository's default model (the paper's architecture, DIIRF started at steady state and
  an Eulerian input stage; docs/model.md), mean over ``seeds``;
* ``paper``: the paper's architecture as printed (zero DIIRF state, no Eulerian input), same training;
* ``single_frame``: no FCAM and no Eulerian input, so no frame sees another: the control that must fail;
* ``chroma_pulse``, ``frame_difference``: non-learned references (components.metrics.references);
* ``learned_stats``: a logistic regression on the hand-statistics bank (components.metrics.statistics) of each
  clip's crops and landmarks, averaged per video, fitted on train, threshold on dev;
* ``one_frame``: the eulernet row's first-seed model fed each clip's first frame repeated (threshold re-chosen
  on dev the same way): what that model reads from single frames.

Every row's ``acer_ci95`` is a 95 % bootstrap interval over test **identities** (whole people resampled).

Everything is cached under the output folder, so a rerun only does what changed: ``data/`` (kept when its
``config.json`` matches), ``shards/`` (the label ledger: content-addressed), ``runs/<row>-s<seed>/``
(``result.json`` with the evaluation; kept when its config matches). Written at the end: ``summary.json``,
``table.md`` and ``training_curves.png`` (loss and dev ACER per epoch, first seed of each learned row).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.runtime import json_safe

from .temporal_references import one_frame_videos, reference_videos
from .temporal_summary import _test_videos, fold_splits, markdown_table, summarise_pooled, summarise_videos

MODEL_ROWS = ("eulernet", "paper", "single_frame")
REFERENCE_ROWS = ("chroma_pulse", "frame_difference", "learned_stats")
CONTROL_ROWS = ("one_frame",)  # the eulernet row's first seed, fed one frame repeated
SETTINGS = ("default", "hard", "realistic")


@dataclass(frozen=True)
class RowSpec:
    """A learned row: which Table I variant and which EulerNetConfig fields differ from the variant."""

    variant: str
    overrides: dict[str, Any]
    description: str


def row_specs(cfg: "TemporalBenchmarkConfig") -> dict[str, RowSpec]:
    return {
        "eulernet": RowSpec("eulernet", {"euler_alpha": cfg.euler_alpha, "euler_grid": cfg.euler_grid},
                            "baseline + steady-state DIIRF + Eulerian input stage (the default model)"),
        "paper": RowSpec("baseline", {"diirf_initial": "zero"}, "the paper's architecture as printed"),
        "single_frame": RowSpec("c4", {"diirf_initial": "zero"},
                                "no FCAM, no Eulerian input: every frame scored on its own (control)"),
    }


@dataclass(frozen=True)
class TemporalBenchmarkConfig:
    """Sizes of the benchmark. Defaults: >= 96 test videos per class from held-out identities, ~25 min on
    2 CPU cores. ``quick()`` is a smoke-size version (minutes) that exercises every step."""

    setting: str = "default"  # generator preset (components.data.synthetic.preset): default | hard | realistic
    n_subjects: int = 24  # subjects, round-robin over the 12 identities (two variants of each person)
    split_ratio: tuple[int, int, int] = (2, 1, 1)  # identities per split, a repeating pattern: 6 / 3 / 3 people
    frames: int = 48  # per video: 4 clips of 4 frames at interval 3
    lives_per_cell: int = 3  # per subject, device and scene: 6 test subjects x 6 cells x 3 = 108 per class
    attacks_per_cell: int = 3
    devices: tuple[str, ...] = ("android_lowend", "android_midrange", "iphone_12")
    scenes: tuple[str, ...] = ("indoor", "outdoor")
    data_seed: int = 11
    crop_size: int = 32  # a 32 px crop already averages sensor noise over ~3x3 source pixels
    face_path: str = "track"  # labeling's face path (components.face.tracking); "detect" was the old one
    clips_per_video: int = 4
    # Clip geometry (labeling and model): 4 frames at interval 3 span 0.4 s at 25 fps, less than one heartbeat;
    # a longer clip lets the model see a pulse period, a blink and slow parallax in one pass.
    clip_len: int = 4
    clip_interval: int = 3
    seeds: tuple[int, ...] = (0, 1, 2)  # the eulernet row
    control_seeds: tuple[int, ...] = (0,)  # the paper and single_frame rows
    rows: tuple[str, ...] = MODEL_ROWS
    width: float = 0.125
    epochs: int = 6
    batch_size: int = 16
    lr: float = 3e-3
    optimizer: str = "adamw"
    warmup_steps: int = 20
    euler_alpha: float = 20.0  # the eulernet variant's own values; here so a sweep can change them
    euler_grid: int = 8
    torch_threads: int = 2
    gen_workers: int = 2
    label_concurrency: int = 2
    n_boot: int = 2000
    folds: int = 1  # > 1: leave-identities-out folds over all identities (run_folds), pooled, interval by identity

    def __post_init__(self):
        for name in ("split_ratio", "devices", "scenes", "seeds", "control_seeds", "rows"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        unknown = [r for r in self.rows if r not in MODEL_ROWS]
        if unknown:
            raise ValueError(f"unknown rows {unknown}; learned rows are {MODEL_ROWS} (references always run)")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        if self.folds < 1:
            raise ValueError(f"folds must be >= 1, got {self.folds}")
        from components.data.clips import clip_span
        from components.face.crop import clip_geometry_errors

        if errors := clip_geometry_errors(self.crop_size, self.clip_len, self.clip_interval):
            raise ValueError("; ".join(errors))
        if self.clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {self.clips_per_video}")
        span = clip_span(self.clip_len, self.clip_interval)
        if self.frames < max(10, span):
            raise ValueError(f"frames must be >= 10 and hold one clip ({self.clip_len} frames at interval "
                             f"{self.clip_interval} span {span}), got {self.frames}")

    @classmethod
    def quick(cls, **overrides) -> "TemporalBenchmarkConfig":
        """Smoke size: every step runs, the figures mean little (few test videos, one short epoch)."""
        base = dict(n_subjects=12, split_ratio=(2, 1, 1), frames=24, lives_per_cell=1, attacks_per_cell=1,
                    devices=("iphone_12",), scenes=("indoor",), clips_per_video=2, seeds=(0,), control_seeds=(0,),
                    epochs=2, n_boot=200)
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def data_dict(self) -> dict:
        keys = ("setting", "n_subjects", "split_ratio", "frames", "lives_per_cell", "attacks_per_cell", "devices",
                "scenes", "data_seed")
        return {k: v for k, v in self.to_dict().items() if k in keys}


def _digest(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ data
def synth_config(cfg: TemporalBenchmarkConfig):
    from components.data.synthetic import SynthConfig, preset

    return SynthConfig(**{**preset(cfg.setting), "n_subjects": cfg.n_subjects, "split_ratio": cfg.split_ratio,
                          "split_by": "identity", "n_frames": cfg.frames, "lives_per_cell": cfg.lives_per_cell,
                          "attacks_per_cell": cfg.attacks_per_cell, "devices": cfg.devices, "scenes": cfg.scenes,
                          "seed": cfg.data_seed, "temporal_only": True,
                          "attack_types": ("print", "replay", "ai_dynamic")})


def check_plan(cfg: TemporalBenchmarkConfig) -> pd.DataFrame:
    """The manifest the generator would write, checked before any work: every split needs live and attack
    videos, and the eulernet row's figures are only quoted with >= 96 test videos per class."""
    from components.data.synthetic import plan_dataset

    plan = plan_dataset(synth_config(cfg))
    counts = plan.groupby(["split", "label"]).size()
    missing = [f"{s}/{'live' if y else 'attack'}" for s in ("train", "dev", "test") for y in (1, 0)
               if counts.get((s, y), 0) == 0]
    if missing:
        raise ValueError(f"{cfg.n_subjects} subjects over split_ratio {cfg.split_ratio} leave no videos in "
                         f"{', '.join(missing)}; use at least as many subjects as identities (12)")
    return plan


def make_data(cfg: TemporalBenchmarkConfig, out: Path, progress: bool = True) -> pd.DataFrame:
    """Generate the videos into ``out/data`` unless a dataset of the same configuration is already there."""
    from components.data.manifest import read_manifest
    from components.data.synthetic import generate_dataset

    data = out / "data"
    stamp = data / "config.json"
    want = cfg.data_dict()
    if stamp.is_file() and (data / "manifest.csv").is_file() and json.loads(stamp.read_text()) == want:
        return read_manifest(data / "manifest.csv")
    generate_dataset(data, synth_config(cfg), progress=progress, workers=cfg.gen_workers)
    stamp.write_text(json.dumps(want, indent=2, sort_keys=True) + "\n")
    return read_manifest(data / "manifest.csv")


def label_config(cfg: TemporalBenchmarkConfig):
    from components.labeling.config import LabelConfig

    return LabelConfig(backend="dlib", crop_size=cfg.crop_size, clips_per_video=cfg.clips_per_video,
                       clip_len=cfg.clip_len, clip_interval=cfg.clip_interval, max_side=480,
                       concurrency=cfg.label_concurrency, face_path=cfg.face_path)


def clip_fps(cfg: TemporalBenchmarkConfig) -> float:
    """Frames per second inside a labeled clip: the generator's rate over labeling's clip interval."""
    return synth_config(cfg).fps / label_config(cfg).clip_interval


def label(cfg: TemporalBenchmarkConfig, out: Path, manifest: pd.DataFrame, progress: bool = True):
    from components.labeling.pipeline import label_videos

    df = manifest.copy()
    df["path"] = [str((out / "data" / p).resolve()) for p in df["path"]]
    return label_videos(df, out / "shards", label_config(cfg), progress=progress)


# ---------------------------------------------------------------------------------------------- models
def train_config(cfg: TemporalBenchmarkConfig, row: str, seed: int):
    from components.training.config import TrainConfig

    spec = row_specs(cfg)[row]
    return TrainConfig(variant=spec.variant, width=cfg.width, epochs=cfg.epochs, lr=cfg.lr,
                       batch_size=cfg.batch_size, num_workers=1, use_gpu=False, amp=False, seed=int(seed),
                       eval_every=1, max_failures=0, num_to_keep=1, cache_data=True, optimizer=cfg.optimizer,
                       warmup_steps=cfg.warmup_steps, lr_schedule="cosine", torch_threads=cfg.torch_threads,
                       model_overrides=dict(spec.overrides))


def train_row(cfg: TemporalBenchmarkConfig, row: str, seed: int, out: Path, tracking_uri: str | None,
              log: Callable[[str], None] = print, fold: int | None = None) -> dict:
    """Train and evaluate one (row, seed) with the pipeline's ``fit`` and ``evaluate_checkpoint``; cached."""
    from components.metrics.evaluate import EvalConfig, evaluate_checkpoint
    from components.training.driver import fit

    tcfg = train_config(cfg, row, seed)
    lcfg = label_config(cfg)
    run_dir = out / "runs" / f"{row}-s{seed}"
    key = _digest({"train": tcfg.to_dict(), "data": cfg.data_dict(), "label": lcfg.fingerprint(),
                   **({"fold": fold} if fold is not None else {})})  # a fold is other training data
    done = run_dir / "result.json"
    if done.is_file():
        prev = json.loads(done.read_text())
        if prev.get("key") == key:
            log(f"  {row} seed {seed}: cached ({run_dir})")
            return prev
    t0 = time.perf_counter()
    res = fit(tcfg, out / "shards", str((out / "ray_runs").resolve()), f"{row}-s{seed}-{key}",
              experiment="eulernet-benchmark-temporal", tracking_uri=tracking_uri,
              tags={"benchmark": "temporal", "setting": cfg.setting, "row": row, "seed": str(seed)})
    train_s = time.perf_counter() - t0
    report = evaluate_checkpoint(res.best_checkpoint_path, out / "shards", run_dir, EvalConfig(gradcam_clips=0))
    res.history.to_csv(run_dir / "history.csv", index=False)
    result = {"key": key, "row": row, "seed": int(seed), "train_s": train_s,
              "wall_s": time.perf_counter() - t0, "best_epoch": res.best.get("epoch"),
              "threshold": report["threshold"], "test_acer": report["acer"], "test_auc": report["auc"],
              "test_apcer_per_attack": report.get("apcer_per_attack"), "dev_acer": report["dev"]["acer"],
              "dev_auc": report["dev"]["auc"], "mlflow_run_id": res.run_id,
              "video_scores": str(run_dir / "video_scores.csv"), "checkpoint": str(res.best_checkpoint_path)}
    done.write_text(json.dumps(json_safe(result), indent=2) + "\n")
    return result


def run_folds(cfg: TemporalBenchmarkConfig, out: Path, tracking_uri: str | None = None, progress: bool = True,
              log: Callable[[str], None] = print) -> dict:
    """Leave-identities-out folds: the same videos, the identity -> split assignment rotated per fold; labels come
    from one shared content-addressed cache (each video is labeled once), each fold trains and evaluates in
    ``out/folds/<f>/``; every row is pooled over folds (:func:`summarise_pooled`)."""
    from components.data.synthetic import config_identities
    from components.labeling.pipeline import label_videos
    from components.metrics.rates import choose_threshold

    t0 = time.perf_counter()
    names = [i.name for i in config_identities(synth_config(cfg))]
    assignments = fold_splits(names, cfg.split_ratio, cfg.folds)  # checked before any video is made
    log(f"[1/3] data: {cfg.n_subjects} subjects, setting {cfg.setting} -> {out / 'data'}")
    manifest = make_data(cfg, out, progress)
    identities = {str(r.video_id): json.loads(r.meta)["identity"] for r in manifest.itertuples()}
    pooled: dict[str, dict[str, list]] = {}
    for f, assign in enumerate(assignments):
        fold_out = out / "folds" / str(f)
        test_ids = sorted(n for n, sp in assign.items() if sp == "test")
        log(f"[2/3] fold {f + 1}/{cfg.folds}: test identities {', '.join(test_ids)}")
        df = manifest.assign(split=[assign[identities[str(v)]] for v in manifest["video_id"]])
        df["path"] = [str((out / "data" / p).resolve()) for p in df["path"]]
        label_videos(df, fold_out / "shards", label_config(cfg), progress=progress, cache_dir=out / "label_cache")
        refs = reference_videos(fold_out / "shards", clip_fps(cfg))
        for name, per in refs.items():
            th = choose_threshold(per["dev"]["score"], per["dev"]["label"], "eer")
            pooled.setdefault(name, {"tables": [], "thresholds": []})
            pooled[name]["tables"].append(per["test"])
            pooled[name]["thresholds"].append(th)
        for row in cfg.rows:
            res = train_row(cfg, row, cfg.seeds[0] if row == "eulernet" else cfg.control_seeds[0], fold_out,
                            tracking_uri, log, fold=f)
            pooled.setdefault(row, {"tables": [], "thresholds": []})
            pooled[row]["tables"].append(_test_videos(res["video_scores"]))
            pooled[row]["thresholds"].append(res["threshold"])
            log(f"  fold {f + 1} {row}: test ACER {res['test_acer']:.3f}, AUC {res['test_auc']:.3f}")
            if row == "eulernet" and Path(res.get("checkpoint") or "").is_file():
                ctrl = one_frame_videos(res["checkpoint"], fold_out / "shards")
                pooled.setdefault("one_frame", {"tables": [], "thresholds": []})
                pooled["one_frame"]["tables"].append(ctrl["test"])
                pooled["one_frame"]["thresholds"].append(
                    choose_threshold(ctrl["dev"]["score"], ctrl["dev"]["label"], "eer"))
    log("[3/3] pooling the folds")
    rows = {name: summarise_pooled(p["tables"], p["thresholds"], identities, cfg.n_boot)
            for name, p in pooled.items()}
    ordered = {k: rows[k] for k in (*MODEL_ROWS, *CONTROL_ROWS, *REFERENCE_ROWS) if k in rows}
    n = next(iter(ordered.values()))
    summary = {"benchmark": "temporal", "protocol": f"{cfg.folds} leave-identities-out folds, pooled",
               "config": cfg.to_dict(), "rows": ordered, "n_test_videos": n["n_test_videos"],
               "n_test_live": n["n_test_live"], "n_test_attack": n["n_test_attack"],
               "n_test_identities": n["n_test_identities"], "folds": [
                   sorted(k for k, v in a.items() if v == "test") for a in assignments],
               "wall_s": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    lines = [f"Temporal benchmark, setting `{cfg.setting}`, {cfg.folds} leave-identities-out folds: every one of "
             f"{n['n_test_identities']} identities tested once by a model that never saw it; {n['n_test_videos']} "
             f"test videos pooled, each decided at its fold's dev threshold. ACER interval: 95 % bootstrap over "
             f"identities.", "", "| row | test AUC (pooled) | test ACER (%) | 95 % CI (%) | per-fold ACER (%) | "
             "APCER per attack (%) |", "|---|---:|---:|---:|---|---|"]
    for name, r in ordered.items():
        lo, hi = r["acer_ci95"]
        apcer = ", ".join(f"{k} {100 * v:.1f}" for k, v in (r.get("apcer_per_attack") or {}).items())
        folds_txt = ", ".join(f"{100 * a:.1f}" for a in r["per_fold_acer"])
        lines.append(f"| {name} | {r['test_auc']:.3f} | {100 * r['test_acer']:.1f} | {100 * lo:.1f}-{100 * hi:.1f} | "
                     f"{folds_txt} | {apcer} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    return summary


def run_benchmark(cfg: TemporalBenchmarkConfig, out_dir: str | Path, tracking_uri: str | None = None,
                  progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the whole benchmark; write ``summary.json`` and ``table.md``; return the summary.
    The caller starts Ray (``ray.init``) first. ``cfg.folds > 1``: :func:`run_folds` instead."""
    if cfg.folds > 1:
        out = Path(out_dir).resolve()
        out.mkdir(parents=True, exist_ok=True)
        return run_folds(cfg, out, tracking_uri, progress, log)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    plan = check_plan(cfg)
    n_test = int((plan["split"] == "test").sum())
    if n_test < 192:
        log(f"note: {n_test} test videos; figures are only resolvable with >= 96 per class (this is a smoke run)")
    log(f"[1/4] data: {cfg.n_subjects} subjects, setting {cfg.setting} -> {out / 'data'}")
    manifest = make_data(cfg, out, progress)
    identities = {str(r.video_id): json.loads(r.meta)["identity"] for r in manifest.itertuples()}
    stages["generate_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    log(f"[2/4] labeling {len(manifest)} videos (Ray Data, dlib) -> {out / 'shards'}")
    rep = label(cfg, out, manifest, progress)
    skipped = rep.report[rep.report["status"] != "ok"]
    if len(skipped):
        log(f"  {len(skipped)} videos skipped: " + ", ".join(f"{r.video_id} ({r.reason})"
                                                           for r in skipped.head(10).itertuples()))
    stages["label_s"] = time.perf_counter() - t1

    log("[3/4] non-learned references")
    rows: dict[str, dict] = {}
    refs = reference_videos(out / "shards", clip_fps(cfg))
    from components.metrics.rates import choose_threshold

    for name, per in refs.items():
        th = choose_threshold(per["dev"]["score"], per["dev"]["label"], "eer")
        rows[name] = {**summarise_videos([per["test"]], [th], cfg.n_boot, identities), "wall_s": per["wall_s"],
                      "direction": per["direction"], "seeds": []}
    log("  " + ", ".join(f"{k}: test AUC {r['test_auc']:.3f}" for k, r in rows.items()))

    log(f"[4/4] training rows {list(cfg.rows)} (Ray Train, 1 worker x {cfg.torch_threads} threads)")
    curves: dict[str, pd.DataFrame] = {}
    for row in cfg.rows:
        seeds = cfg.seeds if row == "eulernet" else cfg.control_seeds
        results = [train_row(cfg, row, s, out, tracking_uri, log) for s in seeds]
        for r in results:
            log(f"  {row} seed {r['seed']}: test ACER {r['test_acer']:.3f}, AUC {r['test_auc']:.3f} "
                f"({r['wall_s']:.0f} s)")
        tests = [_test_videos(r["video_scores"]) for r in results]
        rows[row] = {**summarise_videos(tests, [r["threshold"] for r in results], cfg.n_boot, identities),
                     "wall_s": float(sum(r["wall_s"] for r in results)), "seeds": [int(s) for s in seeds],
                     "description": row_specs(cfg)[row].description,
                     "dev_acer": float(np.mean([r["dev_acer"] for r in results]))}
        curves[row] = pd.read_csv(out / "runs" / f"{row}-s{seeds[0]}" / "history.csv")
        if row == "eulernet" and Path(results[0].get("checkpoint") or "").is_file():
            ctrl = one_frame_videos(results[0]["checkpoint"], out / "shards")
            th = choose_threshold(ctrl["dev"]["score"], ctrl["dev"]["label"], "eer")
            rows["one_frame"] = {**summarise_videos([ctrl["test"]], [th], cfg.n_boot, identities),
                                 "wall_s": ctrl["wall_s"], "seeds": [int(seeds[0])],
                                 "description": "the eulernet model fed one frame repeated (control)"}
    if curves:
        from components.metrics.plots import plot_training_curves

        plot_training_curves(curves, out / "training_curves.png")  # first seed of each learned row
    ordered = {k: rows[k] for k in (*MODEL_ROWS, *CONTROL_ROWS, *REFERENCE_ROWS) if k in rows}
    n = next(iter(ordered.values()))
    summary = {"benchmark": "temporal", "config": cfg.to_dict(), "rows": ordered,
               "n_test_videos": n["n_test_videos"], "n_test_live": n["n_test_live"],
               "n_test_identities": n["n_test_identities"],
               "n_test_attack": n["n_test_attack"], "stages": stages,
               "wall_s": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    (out / "table.md").write_text(markdown_table(summary))
    return summary


__all__ = ["run_folds", "TemporalBenchmarkConfig", "RowSpec", "row_specs", "MODEL_ROWS", "REFERENCE_ROWS",
           "CONTROL_ROWS", "SETTINGS", "run_benchmark", "synth_config", "train_config", "clip_fps"]
