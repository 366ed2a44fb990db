"""The reference model: EulerNet plus a video head, trained on real recordings, with leave-one-source-out figures.

``eulernet reference --data DIR --out DIR`` (``flows/reference.py``) runs :func:`train_reference`:

1. reads a real-world folder (``manifest.csv`` as ``eulernet benchmark realworld`` reads it) and adds a held still
   of every live video (``live_still``: the same face and pixels, only time differs), so the attack that only time
   reveals is always in the training data;
2. cuts every video's clips through the one Predictor path (the labeling crop) and labels them with face location
   maps;
3. **leave one source out**: for each source, EulerNet is trained on the other sources and scores the held-out
   one, so every video gets clip scores from a model that never saw its source;
4. the video head (``components.inference.video_head``) is fitted on those out-of-source scores and the clips'
   landmarks; for the reported figures each source is decided by a head fitted on the *other* sources' rows, at a
   threshold that rejects ``bpcer_target`` of their live videos;
5. the shipped model: EulerNet trained on every source, the head fitted on every row, the threshold at
   ``bpcer_target`` of every live video's out-of-source score. The checkpoint says what it was trained on
   (``extra.trained_on``) so the real-world benchmark can tell in-sample figures from held-out ones.

What the figures do not cover: the head's inputs for the other sources come from EulerNets that saw the held-out
source (a nested fit would train 56 models); the held-out source's own scores never do.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)  # the crops' normalisation; it travels in the checkpoint


@dataclass(frozen=True)
class ReferenceConfig:
    # Defaults decided on the open real-world folder's leave-one-source-out figures (docs/model-card.md, "How the
    # defaults were chosen"); the held-back folder is the test.
    crop_size: int = 32             # 32 with held-still-only training beat 64 with every type (EulerNet alone 0.83 vs
                                    # 0.57 live vs held still), at a quarter of the time; compared jointly, not apart
    clip_len: int = 4               # frames per clip; with clip_interval the window one clip spans (0.3 s at 30 fps)
    clip_interval: int = 3          # the pipeline's clip layout (4 frames at interval 3)
    face_fraction: float = 0.75     # share of the crop the landmarks' extent fills; less keeps a ring of context
    clips_per_video: int = 4        # what the Serve endpoint scores per request (serve.max_clips)
    max_side: int = 480             # decode size, as the label stage's default
    steps: int = 300                # AdamW steps per EulerNet fit (batch 16: 8 live + 8 attack clips)
    lr: float = 2e-3
    width: float = 0.125            # channel multiplier: the model stays under 1 MB
    # The landmark motion alone: adding the clip logits raised BPCER from 7 % to 26-30 % (their offset moves with the
    # source's camera and codec, so a threshold set on the other sources rejects a new source's live people).
    # nonplanar_motion over nonrigid_motion: the same held-still AUC on the open folder (0.99 vs 0.98), and
    # it holds where a print is turned out of its plane or the face is small (docs/model-card.md, "Held photos
    # that turn"). nonquadratic_motion beside it: a print that bows as it turns, which a homography reads as a
    # face deforming, gets through a third less often, with no more live people rejected and no more flat stills
    # through (docs/model-card.md, "A head that allows for the bow").
    features: tuple[str, ...] = ("nonplanar_motion", "nonquadratic_motion")
    head_c: float = 1.0             # inverse L2 strength of the head's logistic regression
    bpcer_target: float = 0.05      # share of live videos the threshold may reject (on out-of-source scores)
    # Attack types EulerNet trains on (None: all). The head always sees every type. Held stills are the one attack
    # every source has, paired with its live videos: other types come from one or two sources each, and a clip
    # model trained on them learns which source a clip comes from.
    train_types: tuple[str, ...] | None = ("live_still",)
    max_seconds: float = 10.0       # scored window of each video; the shipped model carries it (window_seconds)
    seed: int = 0
    # The face path's detector, carried in the model. YuNet: the same held-still AUC as dlib HOG (0.99 both), BPCER
    # 4 % vs 7 %, and the served faces stage 52 vs 153 ms (docs/model-card.md, "How the defaults were chosen").
    backend: str = "yunet"

    def __post_init__(self):
        from components.inference.video_head import FEATURES

        if self.crop_size < 32 or self.crop_size % 8:
            raise ValueError(f"crop_size must be >= 32 and divisible by 8, got {self.crop_size}")
        if self.clip_len < 2 or self.clip_interval < 1 or self.clips_per_video < 1 or self.steps < 1:
            raise ValueError("clip_len must be >= 2; clip_interval, clips_per_video and steps >= 1")
        if not 0.1 <= self.face_fraction <= 1.0:
            raise ValueError(f"face_fraction must be in [0.1, 1], got {self.face_fraction}")
        if not self.max_seconds > 0.5:
            raise ValueError(f"max_seconds must be > 0.5 (one clip spans 0.3-0.5 s), got {self.max_seconds}")
        if not 0 < self.bpcer_target < 0.5:
            raise ValueError(f"bpcer_target must be in (0, 0.5), got {self.bpcer_target}")
        bad = [f for f in self.features if f not in FEATURES]
        if bad or not self.features:
            raise ValueError(f"features must be names from {list(FEATURES)}, got {list(self.features)}")
        object.__setattr__(self, "features", tuple(self.features))
        if self.train_types is not None:
            object.__setattr__(self, "train_types", tuple(self.train_types))
        from components.face.landmarks import BACKENDS

        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {self.backend!r}")


# ------------------------------------------------------------------------------------------------ clips
def make_predictor(cfg: ReferenceConfig, model=None, threshold: float = 0.5, head: dict | None = None,
                   extra: dict | None = None):
    """A Predictor with the reference layout (a fresh tiny EulerNet when ``model`` is None)."""
    from components.inference.checkpoint import build_meta, make_checkpoint
    from components.inference.predictor import Predictor
    from components.model.eulernet import create_model

    model = model if model is not None else create_model("eulernet", width=cfg.width, clip_len=cfg.clip_len)
    meta = build_meta(variant="eulernet", crop_size=cfg.crop_size, mean=MEAN, std=STD, clip_len=cfg.clip_len,
                      clip_interval=cfg.clip_interval, clips_per_video=cfg.clips_per_video, threshold=threshold,
                      landmark_backend=cfg.backend, face_path="track", max_side=cfg.max_side,
                      face_fraction=cfg.face_fraction, video_head=head, window_seconds=cfg.max_seconds,
                      extra=extra)
    return Predictor.from_checkpoint(make_checkpoint(model, meta))


def cut_clips(predictor, videos: pd.DataFrame, max_seconds: float, progress: Callable | None = None,
              stable: bool = False) -> dict[str, tuple | str]:
    """``{file: (crops (N, T, S, S, 3), maps (N, T, M, M), points (N, T, 68, 2)) | refusal reason}``, clips cut by
    ``predictor``'s own path; ``stable``: frames re-aligned on their landmarks (:func:`stabilise`)."""
    from components.data.video import VideoError, frames_in, video_fps
    from components.face.clips import LabelingError
    from components.labeling.maps import location_map

    s, m = predictor.crop_size, predictor.map_size
    out: dict[str, tuple | str] = {}
    rows = list(videos.itertuples())
    for r in progress(rows) if progress else rows:
        try:
            # The serving decoder's rule (frames_in): the head is fitted on the frames the endpoint will read.
            frames = predictor.read_video(r.file, max_frames=frames_in(max_seconds, video_fps(r.file)))
            c = predictor.extract_clips(frames)
            crops, points = stabilise(c.crops, c.points) if stable else (c.crops, c.points)
            inside = np.clip(points, 0, s - 1e-3)
            maps = np.stack([[location_map(p, s, m, live=bool(r.label)) for p in pts] for pts in inside])
            out[r.file] = (crops, maps.astype(np.float32), np.asarray(c.points, np.float32))
        except (LabelingError, VideoError) as exc:
            out[r.file] = exc.reason
    return out


def stabilise(crops: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each frame re-warped so its 68 points fit the clip's mean points (a similarity per frame): rigid head
    or hand motion leaves the clip, non-rigid motion (blinks, mouth, expression) and everything that is not the
    face's geometry (pulse, flicker, texture) stays. (N, T, S, S, 3), (N, T, 68, 2) -> same shapes."""
    import cv2

    out_c, out_p = crops.copy(), points.copy()
    s = crops.shape[2]
    for n in range(len(crops)):
        ref = points[n].mean(axis=0)  # (68, 2)
        for t in range(crops.shape[1]):
            m, _ = cv2.estimateAffinePartial2D(points[n, t], ref, method=cv2.LMEDS)
            if m is None:
                continue
            out_c[n, t] = cv2.warpAffine(crops[n, t], m, (s, s), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REFLECT101)
            out_p[n, t] = points[n, t] @ m[:, :2].T + m[:, 2]
    return out_c, out_p


# ------------------------------------------------------------------------------------------------ EulerNet fits
def train_eulernet(crops: np.ndarray, maps: np.ndarray, labels: np.ndarray, steps: int, seed: int,
                   width: float = 0.125, lr: float = 2e-3):
    """The default variant trained on clips ``crops`` (N, T, S, S, 3) with location maps ``maps`` (N, T, M, M);
    live and attack clips drawn equally often, half of them mirrored, BN statistics recomputed at the end."""
    import torch

    from components.inference.tensors import to_model_input
    from components.model.eulernet import create_model
    from components.training.bn import recalibrate_batchnorm

    labels = np.asarray(labels)
    if set(labels.tolist()) != {0, 1}:
        raise ValueError("training needs live and attack clips")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = create_model("eulernet", width=width, clip_len=int(crops.shape[1]))  # T of the clips given
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / 20) * 0.5 * (1 + np.cos(np.pi * min(k, steps) / steps)))
    live, att = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    recent = []
    model.train()
    for _ in range(steps):
        idx = np.r_[rng.choice(live, 8), rng.choice(att, 8)]
        flip = rng.random(len(idx)) < 0.5  # a face and its mirror image are equally live
        x = crops[idx].copy()
        x[flip] = x[flip][:, :, :, ::-1]
        y = maps[idx].copy()
        y[flip] = y[flip][:, :, :, ::-1]
        xt = to_model_input(np.ascontiguousarray(x), MEAN, STD, "cpu")  # (B, T, 3, S, S)
        loss = model.loss(model(xt), torch.from_numpy(np.ascontiguousarray(y)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [xt])[-8:]
    recalibrate_batchnorm(model, recent)
    return model.eval()


def clip_scores_of(model, crops: np.ndarray) -> np.ndarray:
    """Live score per clip (N,) of ``model`` on uint8 crops (N, T, S, S, 3)."""
    import torch

    from components.inference.tensors import clip_scores, to_model_input

    out = []
    with torch.no_grad():
        for i in range(0, len(crops), 32):
            x = to_model_input(crops[i:i + 32], MEAN, STD, "cpu")  # (B, T, 3, S, S)
            out.append(clip_scores(model(x).numpy()))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _trainable(table: pd.DataFrame, cfg: ReferenceConfig) -> pd.DataFrame:
    """The rows EulerNet trains on: live videos and the attack types ``cfg.train_types`` names (all when None, or
    when none of those types is there: a clip model needs attacks to learn from)."""
    if cfg.train_types is None:
        return table
    chosen = table[(table["label"] == 1) | table["attack_type"].isin(cfg.train_types)]
    return chosen if chosen["label"].nunique() == 2 else table


def _stack(files: list[str], clips: dict, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    crops = np.concatenate([clips[f][0] for f in files])
    maps = np.concatenate([clips[f][1] for f in files])
    y = np.concatenate([np.full(len(clips[f][0]), int(v)) for f, v in zip(files, labels)])
    return crops, maps, y


def out_of_source_scores(table: pd.DataFrame, clips: dict, cfg: ReferenceConfig,
                         log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """``{file: clip scores}`` of every video, each from an EulerNet trained without its source (sources whose
    complement lacks live or attack videos are left out)."""
    out = {}
    for src in sorted(table["source"].unique()):
        tr, te = table[table["source"] != src], table[table["source"] == src]
        if tr["label"].nunique() < 2:
            log(f"  fold {src}: skipped (the other sources lack live or attack videos)")
            continue
        t0 = time.perf_counter()
        fit = _trainable(tr, cfg)
        model = train_eulernet(*_stack(fit["file"].tolist(), clips, fit["label"]), cfg.steps, cfg.seed, cfg.width,
                               cfg.lr)
        for f in te["file"]:
            out[f] = clip_scores_of(model, clips[f][0])
        log(f"  fold {src}: EulerNet trained on {len(fit)} of its {len(tr)} videos, scored {len(te)}, "
            f"{time.perf_counter() - t0:.0f} s")
    return out


def bpcer_threshold(live_scores, target: float) -> float:
    """The score below which ``target`` of the live scores fall: the threshold that rejects that share."""
    live = np.asarray(live_scores, float)
    if len(live) == 0:
        raise ValueError("a BPCER threshold needs live scores")
    return float(np.quantile(live, target))


def leave_source_out_decisions(rows: pd.DataFrame, cfg: ReferenceConfig, score_col: str = "head_score") -> pd.DataFrame:
    """Per source: the head fitted on the other sources' rows decides this one at their ``bpcer_target``
    threshold. Adds ``score_col``, ``accepted`` and ``threshold``."""
    from components.inference.video_head import VideoHead

    rows = rows.copy()
    rows[score_col], rows["accepted"], rows["threshold"] = np.nan, False, np.nan
    feats = list(cfg.features)
    for src in sorted(rows["source"].unique()):
        tr, te = rows[rows["source"] != src], rows[rows["source"] == src]
        if tr["label"].nunique() < 2:
            continue
        head = VideoHead.fit(tr[feats].to_dict("records"), tr["label"], cfg.features, cfg.head_c)
        th = bpcer_threshold(head.scores(tr.loc[tr["label"] == 1, feats].to_dict("records")), cfg.bpcer_target)
        s = head.scores(te[feats].to_dict("records"))
        rows.loc[te.index, score_col] = s
        rows.loc[te.index, "accepted"] = s >= th
        rows.loc[te.index, "threshold"] = th
    return rows


# Head feature sets compared on the same out-of-source scores (the open folder is the dev set the choice is made
# on; a held-back folder, scored with `eulernet benchmark realworld`, is the test).
FEATURE_SETS = (("clip_logit_mean",), ("nonrigid_motion",), ("nonplanar_motion",), ("nonquadratic_motion",),
                ("nonplanar_motion", "nonquadratic_motion"),
                ("clip_logit_mean", "nonrigid_motion"),
                ("clip_logit_mean", "nonrigid_motion", "blink"),
                ("clip_logit_mean", "clip_logit_max", "clip_logit_min", "nonrigid_motion"))


def compare_feature_sets(rows: pd.DataFrame, cfg: ReferenceConfig, sets=FEATURE_SETS, n_boot: int = 500) -> dict:
    """``{"+".join(features): row figures}``: each head feature set decided leave-one-source-out, as the
    reported row is (``rows`` need the feature columns, ``label``, ``attack_type``, ``source``)."""
    from components.benchmark.realworld import row_figures

    out = {}
    for feats in sets:
        d = leave_source_out_decisions(rows, dataclasses.replace(cfg, features=tuple(feats)), "cand_score")
        d = d[d["cand_score"].notna()]
        out["+".join(feats)] = row_figures(d["cand_score"], d["accepted"].astype(bool), d["label"],
                                           d["attack_type"], d["source"], n_boot, cfg.seed)
    return out


# ------------------------------------------------------------------------------------------------ the recipe
def train_reference(data_dir: str | Path, out_dir: str | Path, work_dir: str | Path, cfg: ReferenceConfig,
                    progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run the recipe; write ``checkpoint.pt``, ``loso.json``, ``scores.csv`` and ``table.md`` to ``out_dir``
    (held stills go to ``work_dir``). Returns the leave-one-source-out summary."""
    from components.benchmark.realworld import make_held_stills, manifest_digest, read_manifest, row_figures
    from components.inference.checkpoint import save_checkpoint
    from components.inference.video_head import VideoHead, video_features
    from components.runtime import json_safe

    t_start = time.perf_counter()
    out, work = Path(out_dir), Path(work_dir)
    out.mkdir(parents=True, exist_ok=True)
    videos, photos = read_manifest(data_dir)
    if photos:
        log(f"skipped {len(photos)} photos listed in the manifest (held stills of the live videos stand for them)")
    bar = _bar(progress)
    stills = make_held_stills(videos, work / "held_stills", cfg.seed, bar("held stills"), log)
    table = pd.concat([videos, stills], ignore_index=True)
    log(f"cutting clips of {len(table)} videos ({len(videos)} listed + {len(stills)} held stills)")
    clips = cut_clips(make_predictor(cfg), table, cfg.max_seconds, bar("clips"))
    refused = [{"path": p, "reason": clips[f]} for p, f in zip(table["path"], table["file"])
               if isinstance(clips[f], str)]
    for r in refused:
        log(f"refused {r['path']}: {r['reason']}")
    ok = table[[isinstance(clips[f], tuple) for f in table["file"]]].reset_index(drop=True)
    if ok["label"].nunique() < 2 or ok["source"].nunique() < 2:
        raise ValueError("the recipe needs live and attack videos from at least two sources")

    log(f"leave one source out over {ok['source'].nunique()} sources ({cfg.steps} steps per fold)")
    oos = out_of_source_scores(ok, clips, cfg, log)
    ok = ok[ok["file"].isin(oos.keys())].reset_index(drop=True)
    feats = [video_features(oos[f], clips[f][2]) for f in ok["file"]]
    rows = pd.concat([ok, pd.DataFrame(feats)], axis=1)
    rows["clip_mean"] = [float(np.mean(oos[f])) for f in rows["file"]]
    rows = leave_source_out_decisions(rows, cfg)
    # EulerNet alone, as the paper pools it (mean clip score), at the same threshold rule: what the head adds.
    alone = leave_source_out_decisions(rows, dataclasses.replace(cfg, features=("clip_logit_mean",)), "alone_score")
    rows["alone_score"], rows["alone_accepted"] = alone["alone_score"], alone["accepted"]
    scored = rows[rows["head_score"].notna()]
    summary: dict[str, Any] = {
        "data": str(data_dir), "manifest_sha256": manifest_digest(data_dir), "n_videos": int(len(table)),
        "n_held_stills": int(len(stills)), "n_sources": int(ok["source"].nunique()), "refused": refused,
        "config": {**dataclasses.asdict(cfg), "features": list(cfg.features)},
        "protocol": "leave one source out: EulerNet, head and threshold of each source fitted without it "
                    f"(threshold: {cfg.bpcer_target:.0%} of the other sources' live videos rejected)",
        "rows": {}, "references": {}}
    fig = row_figures(scored["head_score"], scored["accepted"].astype(bool), scored["label"], scored["attack_type"],
                      scored["source"], 2000, cfg.seed)
    summary.update(rows=fig["rows"], acer_worst=fig["acer_worst"])
    summary["references"]["eulernet_alone"] = row_figures(
        scored["alone_score"], scored["alone_accepted"].astype(bool), scored["label"], scored["attack_type"],
        scored["source"], 2000, cfg.seed)

    summary["feature_sets"] = compare_feature_sets(rows, cfg)

    log(f"training the shipped model on all {len(ok)} videos")
    fit = _trainable(ok, cfg)
    final = train_eulernet(*_stack(fit["file"].tolist(), clips, fit["label"]), cfg.steps, cfg.seed, cfg.width, cfg.lr)
    head = VideoHead.fit(rows[list(cfg.features)].to_dict("records"), rows["label"], cfg.features, cfg.head_c)
    threshold = bpcer_threshold(head.scores(rows.loc[rows["label"] == 1, list(cfg.features)].to_dict("records")),
                                cfg.bpcer_target)
    extra = {"trained_on": {"manifest_sha256": summary["manifest_sha256"],
                            "sources": sorted(ok["source"].unique().tolist()), "n_videos": int(len(ok))},
             "recipe": summary["config"], "kind": "reference"}
    predictor = make_predictor(cfg, final, threshold, head.to_dict(), extra)
    save_checkpoint(out / "checkpoint.pt", predictor.model, predictor.inference.to_meta(extra))
    summary.update(threshold=threshold, head=head.to_dict(), wall_s=time.perf_counter() - t_start)
    rows.drop(columns=["file"]).to_csv(out / "scores.csv", index=False)
    (out / "loso.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    (out / "table.md").write_text(markdown_table(summary))
    return summary


def markdown_table(summary: dict) -> str:
    """The reference row and EulerNet alone: AUC per attack type [source interval], APCER, BPCER; then every
    compared head feature set."""
    named = {f"reference (head: {'+'.join(summary['config']['features'])})": summary,
             **summary.get("references", {})}
    types = sorted({a for r in named.values() for a in r["rows"] if a != "live"})
    lines = [f"Leave-one-source-out, {summary['n_videos']} videos ({summary['n_held_stills']} held stills), "
             f"{summary['n_sources']} sources. AUC live vs type [95 % CI resampling sources] (n); APCER and BPCER "
             f"at each fold's threshold.", ""] + _rows_table(named, types)
    sets = summary.get("feature_sets") or {}
    if sets:
        lines += ["", "Video-head feature sets, the same protocol (the reference uses "
                  f"{'+'.join(summary['config']['features'])}):", ""] + _rows_table(sets, types)
    return "\n".join(lines) + "\n"


def _rows_table(named: dict, types: list[str]) -> list[str]:
    def cell(f):
        if f is None or f.get("auc") is None:
            return "-"
        ci = f.get("auc_ci")
        return f"{f['auc']:.2f}" + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else "") + f" ({f['n']})"

    lines = ["| row | " + " | ".join(types) + " | " + " | ".join(f"APCER {a}" for a in types) + " | BPCER |",
             "|---|" + "---:|" * (2 * len(types) + 1)]
    for name, r in named.items():
        rw = r["rows"]
        lines.append(f"| {name} | " + " | ".join(cell(rw.get(a)) for a in types) + " | "
                     + " | ".join(f"{100 * rw[a]['apcer']:.0f} %" if a in rw else "-" for a in types)
                     + f" | {100 * rw['live']['bpcer']:.0f} % ({rw['live']['n']}) |")
    return lines


def _bar(progress: bool):
    def make(desc: str):
        if not progress:
            return None
        from tqdm import tqdm

        return lambda it: tqdm(list(it), desc=desc, unit="video", leave=False)
    return make


__all__ = ["ReferenceConfig", "train_reference", "cut_clips", "train_eulernet", "clip_scores_of", "stabilise",
           "out_of_source_scores", "leave_source_out_decisions", "bpcer_threshold", "make_predictor",
           "compare_feature_sets", "FEATURE_SETS",
           "markdown_table"]
