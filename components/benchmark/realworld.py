"""The real-world benchmark: real recordings scored through the one Predictor, with intervals by source.

Input: a folder with ``manifest.csv`` (columns ``path, label, attack_type, source``; ``class`` and ``split``
optional, extra columns ignored; ``path`` relative to the folder). Photos in it are skipped with a count (they are
not videos; ``--held-stills`` is how a photo enters the benchmark). Every video is scored by:

* ``model``: the EulerNet checkpoint through :meth:`Predictor.extract_clips` / :meth:`predict_maps` /
  :meth:`result`, decided at the checkpoint's own threshold (chosen on its dev split);
* ``one_frame``: the same model fed each clip's first frame repeated: what the model gets from single frames;
* ``learned_stats``: a logistic regression on the hand statistics of :mod:`components.metrics.statistics`, fitted
  leave-one-source-out on this very folder (each source scored by a fit that never saw it; threshold at the
  training sources' EER), so it is a reference trained on real recordings, unlike the model;
* ``peer`` (``peer_dir``): the Silent-Face peer's own code run from its folder (``silent_face_runner``).

``held_stills``: a held still of the middle frame of every live video (attack type ``live_still``): the same face
and pixels as a live row, only time differs (``components.data.held_still``).

Per attack type: n, AUC of live vs that type with a 95 % bootstrap interval over **sources** (clips of one
source share camera, codec and people, so clips are not independent), APCER at the row's threshold; for live:
n and BPCER; ``acer_worst`` = (worst APCER + BPCER) / 2. Clips a row cannot score (no face, too short,
unreadable) are listed in ``refused`` with the reason and left out of that row's rates.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REQUIRED = ("path", "label", "attack_type", "source")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".heic", ".tif", ".tiff")
ROWS = ("model", "one_frame", "learned_stats")
# A held still's default length: how long a phone's liveness check records. File names and the table say a
# still's length only when it differs from this.
STILL_SECONDS = 2.5


@dataclass(frozen=True)
class RealworldConfig:
    max_seconds: float = 10.0  # scored window from the start of each video (long broadcasts are 30 s+)
    stats_seconds: float = 2.0  # window of the hand statistics (the "over 2 s")
    held_stills: bool = False
    # RMS out-of-plane turn of the held stills' sheet (components.data.held_still): 0 holds it parallel to the lens.
    still_tilt_deg: float = 0.0
    # Mean bow of the held stills' sheet (share of its width; it flexes with the hand): 0 keeps it flat.
    still_bend: float = 0.0
    # Length of each held still. A live video is scored over up to max_seconds, and a statistic that grows with the
    # span (motion percentiles, spectral peaks) then compares unequal lengths: still_seconds = max_seconds makes the
    # comparison length-fair.
    still_seconds: float = STILL_SECONDS
    # Every decoded frame resized by this factor before the face path reads it: a lower-resolution camera or a face
    # farther away, the same videos otherwise (1: as decoded).
    downscale: float = 1.0
    n_boot: int = 2000
    seed: int = 0

    def __post_init__(self):
        if not self.max_seconds > 0.5:
            raise ValueError(f"max_seconds must be > 0.5, got {self.max_seconds}")
        if not 0.3 <= self.stats_seconds <= self.max_seconds:
            raise ValueError(f"stats_seconds must be within 0.3..max_seconds, got {self.stats_seconds}")
        if self.n_boot < 100:
            raise ValueError(f"n_boot must be >= 100, got {self.n_boot}")
        if not 0.1 <= self.downscale <= 1:
            raise ValueError(f"downscale must be within 0.1..1, got {self.downscale}")
        if not 0 <= self.still_tilt_deg <= 30:
            raise ValueError(f"still_tilt_deg must be within 0..30 degrees, got {self.still_tilt_deg}")
        if not 0 <= self.still_bend <= 0.3:
            raise ValueError(f"still_bend must be within 0..0.3 (share of the sheet's width), got {self.still_bend}")
        if not 1 <= self.still_seconds <= 60:
            raise ValueError(f"still_seconds must be within 1..60, got {self.still_seconds}")


# ------------------------------------------------------------------------------------------------ inputs
def read_manifest(data_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """(videos, photos): the manifest's video rows with an absolute ``file`` column, and the photo paths
    skipped. Raises ValueError naming a missing column, a bad label or a missing file."""
    data_dir = Path(data_dir)
    path = data_dir / "manifest.csv"
    if not path.is_file():
        raise ValueError(f"{path} does not exist: the folder needs a manifest.csv ({', '.join(REQUIRED)})")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing} (has {list(df.columns)})")
    bad = df[~df["label"].isin(["0", "1"])]
    if len(bad):
        raise ValueError(f"{path}: label must be 1 (live) or 0 (attack); row {bad.index[0] + 2} has "
                         f"{bad['label'].iloc[0]!r}")
    df = df.assign(label=df["label"].astype(int), attack_type=df["attack_type"].str.strip())
    df.loc[df["label"] == 1, "attack_type"] = "live"
    if (df.loc[df["label"] == 0, "attack_type"] == "live").any():
        raise ValueError(f"{path}: an attack row (label 0) has attack_type 'live'")
    photo = df["path"].str.lower().str.endswith(PHOTO_SUFFIXES)
    photos = df.loc[photo, "path"].tolist()
    df = df[~photo].reset_index(drop=True)
    df["file"] = [str((data_dir / p).resolve()) for p in df["path"]]
    absent = [p for p, f in zip(df["path"], df["file"]) if not Path(f).is_file()]
    if absent:
        raise ValueError(f"{len(absent)} files listed in {path} do not exist, e.g. {absent[:3]}")
    if "class" not in df.columns:
        df["class"] = np.where(df["label"] == 1, "live", df["attack_type"])
    return df[["path", "file", "class", "label", "attack_type", "source"]], photos


def manifest_digest(data_dir: str | Path) -> str:
    """sha256 of the folder's manifest.csv: names the data a model was trained on (``eulernet reference``)."""
    from components.data.digest import sha256_file

    return sha256_file(Path(data_dir) / "manifest.csv")


def make_held_stills(videos: pd.DataFrame, out_dir: str | Path, seed: int = 0,
                     progress: Callable[[Any], Any] | None = None,
                     log: Callable[[str], None] = print, tilt_deg: float = 0.0,
                     bend: float = 0.0, seconds: float = STILL_SECONDS) -> pd.DataFrame:
    """A held still (``components.data.held_still``) of the middle frame of each live video, written to
    ``out_dir``; rows like ``videos``' with attack type ``<class>_still`` and label 0. Reuses files already
    there (same seed, same name). A live video that cannot be read gets no still, said by name (the video itself
    is then refused by the scoring, with its reason). ``tilt_deg``: the sheet's RMS out-of-plane turn; ``bend``:
    its mean bow (share of its width); ``seconds``: its length."""
    from components.data.held_still import HeldStillConfig, write_held_still
    from components.data.video import VideoError, read_frames, video_fps

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    live = videos[videos["label"] == 1].to_dict("records")
    for i, r in enumerate(progress(live) if progress else live):
        stress = ((f"_t{tilt_deg:g}" if tilt_deg > 0 else "") + (f"_b{bend:g}" if bend > 0 else "")
                  + (f"_d{seconds:g}" if seconds != STILL_SECONDS else ""))
        target = out_dir / f"{Path(r['path']).stem}__still_s{seed}{stress}.mp4"
        if not target.is_file():
            fps = video_fps(r["file"])
            try:
                frames = read_frames(r["file"], max_frames=int(round(fps * 2.5)))  # (F, H, W, 3)
            except VideoError as exc:
                log(f"no held still of {r['path']}: {exc}")
                continue
            # The still is made, not recorded: a frame rate that can carry the 8-12 Hz tremor, phone-like at most.
            write_held_still(target, frames[len(frames) // 2],
                             HeldStillConfig(seconds=seconds, fps=min(max(fps, 24.0), 60.0), tilt_deg=tilt_deg,
                                             bend=bend),
                             seed=seed + i)
        kind = f"{r['class']}_still"
        rows.append({"path": target.name, "file": str(target), "class": kind, "label": 0, "attack_type": kind,
                     "source": r["source"]})
    return pd.DataFrame(rows, columns=list(videos.columns))


# ------------------------------------------------------------------------------------------------ scoring
def track_points(frames: np.ndarray, backend) -> np.ndarray:
    """(F, 68, 2) landmarks of the followed face on every frame (NaN where none), via the labeling tracker."""
    from components.face.tracking import FaceTracker

    tracker = FaceTracker(backend)
    out = np.full((len(frames), 68, 2), np.nan, np.float32)
    for i, f in enumerate(frames):
        faces = tracker.detect(f, i)
        if faces:
            out[i] = faces[0].points
    return out


def score_videos(predictor, videos: pd.DataFrame, cfg: RealworldConfig,
                 progress: Callable[[Any], Any] | None = None) -> pd.DataFrame:
    """One row per video: ``score`` (model), ``one_frame_score``, the hand statistics, and ``refused`` (the
    reason, empty when scored). Errors of one video never stop the others."""
    import cv2

    from components.data.video import VideoError, frames_in, video_fps
    from components.face.clips import LabelingError
    from components.inference.tensors import clip_scores, video_score
    from components.metrics.statistics import STATISTICS, statistics_bank

    rows = []
    it = videos.itertuples()
    for r in progress(it) if progress else it:
        row: dict[str, Any] = {"path": r.path, "refused": "", "detail": "", "score": math.nan,
                               "one_frame_score": math.nan, **{k: math.nan for k in STATISTICS}}
        t0 = time.perf_counter()
        try:
            fps = video_fps(r.file)
            # The serving decoder's rule (frames_in), so a window ends on the frame it ends on in production.
            frames = predictor.read_video(r.file, max_frames=frames_in(cfg.max_seconds, fps))  # (F, H, W, 3)
            if cfg.downscale < 1:
                frames = np.stack([cv2.resize(f, None, fx=cfg.downscale, fy=cfg.downscale,
                                              interpolation=cv2.INTER_AREA) for f in frames])
            clips = predictor.extract_clips(frames)
            res = predictor.result(clips, predictor.predict_maps(clips.crops))
            row["score"] = res["score"]
            still = np.repeat(clips.crops[:, :1], clips.crops.shape[1], axis=1)  # (N, T, S, S, 3)
            row["one_frame_score"] = video_score(clip_scores(predictor.predict_maps(still)))
            window = frames[: max(3, int(round(fps * cfg.stats_seconds)))]
            try:
                row.update(statistics_bank(window, track_points(window, predictor.get_backend()), fps))
            except ValueError as exc:  # statistics need a face on 3 frames of the window
                row["detail"] = f"statistics: {exc}"
        except (LabelingError, VideoError) as exc:
            row["refused"], row["detail"] = exc.reason, exc.detail
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    return pd.DataFrame(rows)


def learned_stats_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-source-out ``learned_stats``: columns ``score`` and ``accepted`` (at the EER threshold of the
    sources it was fitted on) for every row with statistics; sources whose complement lacks a class are left
    unscored (NaN)."""
    from components.metrics.statistics import STATISTICS, LearnedStatistics

    ok = table[list(STATISTICS)].notna().all(axis=1)
    score = pd.Series(np.nan, index=table.index)
    accepted = pd.Series(np.nan, index=table.index, dtype=object)
    for src in sorted(table.loc[ok, "source"].unique()):
        test = ok & (table["source"] == src)
        train = ok & (table["source"] != src)
        if table.loc[train, "label"].nunique() < 2:
            continue
        fit_rows = table.loc[train, list(STATISTICS)].to_dict("records")
        m = LearnedStatistics().fit(fit_rows, table.loc[train, "label"])
        th = m.choose_threshold(fit_rows, table.loc[train, "label"])
        s = m.score(table.loc[test, list(STATISTICS)].to_dict("records"))
        score[test] = s
        accepted[test] = list(s >= th)
    return pd.DataFrame({"score": score, "accepted": accepted})


def row_figures(scores, accepted, labels, types, sources, n_boot: int, seed: int = 0) -> dict:
    """The summary layout of one row: ``{"<attack_type>": {n, auc, auc_ci, apcer}, "live": {n, bpcer}}``
    plus ``acer_worst``; the AUC interval resamples whole sources."""
    from components.metrics.rates import auc, auc_bootstrap_ci

    s = np.asarray(scores, float)
    acc = np.asarray(accepted, bool)
    y = np.asarray(labels, int)
    t = np.asarray(types, object).astype(str)
    g = np.asarray(sources, object).astype(str)
    live = y == 1
    rows: dict[str, dict] = {"live": {"n": int(live.sum()),
                                      "bpcer": float(1.0 - acc[live].mean()) if live.any() else None}}
    for a in sorted(set(t[~live])):
        m = (t == a) & ~live
        both = live | m
        fig: dict[str, Any] = {"n": int(m.sum()), "apcer": float(acc[m].mean()), "auc": None, "auc_ci": None}
        if live.any():
            fig["auc"] = auc(s[both], y[both])
            lo, hi = auc_bootstrap_ci(s[both], y[both], g[both], n_boot=n_boot, seed=seed)
            fig["auc_ci"] = None if math.isnan(lo) else [lo, hi]
        rows[a] = fig
    apcers = [v["apcer"] for k, v in rows.items() if k != "live"]
    bpcer = rows["live"]["bpcer"]
    worst = None if (not apcers or bpcer is None) else (max(apcers) + bpcer) / 2
    return {"rows": rows, "acer_worst": worst}


def peer_scores(peer_dir: str | Path, files: list[str], seconds: float, frames: int = 8) -> dict[str, dict]:
    """``{file: {"score"} | {"error"}}`` from the Silent-Face peer's own code, run in its folder."""
    import subprocess
    import sys
    import tempfile

    peer_dir = Path(peer_dir).resolve()
    if not (peer_dir / "src" / "anti_spoof_predict.py").is_file():
        raise ValueError(f"{peer_dir} is not a Silent-Face-Anti-Spoofing checkout (no src/anti_spoof_predict.py)")
    runner = Path(__file__).with_name("silent_face_runner.py")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(files, fh)
    try:
        proc = subprocess.run([sys.executable, str(runner), fh.name, "--frames", str(frames), "--seconds",
                               str(seconds)], cwd=peer_dir, capture_output=True, text=True, check=False)
    finally:
        Path(fh.name).unlink(missing_ok=True)
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            out[d.pop("path")] = d
    if proc.returncode != 0 or not out:
        raise RuntimeError(f"the peer runner failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return out


PEER_THRESHOLD = 0.5  # the peer's own rule: the real class's mean probability over its two models


# ------------------------------------------------------------------------------------------------ the run
def run_realworld(predictor, data_dir: str | Path, out_dir: str | Path, cfg: RealworldConfig,
                  model_name: str, peer_dir: str | Path | None = None, progress: bool = True,
                  log: Callable[[str], None] = print) -> dict:
    """Score the folder, write ``summary.json``, ``table.md`` and ``scores.csv`` to ``out_dir``; return the
    summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    videos, photos = read_manifest(data_dir)
    if photos:
        log(f"skipped {len(photos)} photos listed in the manifest (not videos; see --held-stills)")
    bar = _bar(progress)
    if cfg.held_stills:
        log(f"writing held stills of {int((videos['label'] == 1).sum())} live videos -> {out / 'held_stills'}")
        videos = pd.concat([videos, make_held_stills(videos, out / "held_stills", cfg.seed, bar("held stills"),
                                                     log, cfg.still_tilt_deg, cfg.still_bend,
                                                     cfg.still_seconds)],
                           ignore_index=True)
    if videos["label"].nunique() < 2:
        raise ValueError("the folder needs live and attack videos (or --held-stills with live ones)")
    log(f"scoring {len(videos)} videos ({cfg.max_seconds:g} s each at most) with {model_name}")
    table = pd.concat([videos.reset_index(drop=True),
                       score_videos(predictor, videos, cfg, bar("videos")).drop(columns=["path"])], axis=1)
    ls = learned_stats_scores(table)
    table["learned_stats_score"], table["learned_stats_accepted"] = ls["score"], ls["accepted"]
    if peer_dir is not None:
        log(f"scoring {len(videos)} videos with the peer in {peer_dir}")
        peer = peer_scores(peer_dir, table["file"].tolist(), cfg.max_seconds)
        table["peer_score"] = [peer.get(f, {}).get("score", math.nan) for f in table["file"]]
        table["peer_error"] = [peer.get(f, {}).get("error", "missing") if f not in peer or "error" in peer[f]
                               else "" for f in table["file"]]

    threshold = predictor.threshold
    if threshold is None:
        raise ValueError("the model carries no threshold (trained without a dev split); it cannot decide")
    summary: dict[str, Any] = {"model": model_name, "threshold": threshold, "data": str(Path(data_dir)),
                               "n_videos": int(len(table)), "n_photos_skipped": len(photos),
                               "n_sources": int(table["source"].nunique()), "config": cfg.__dict__.copy()}
    # A model trained on real recordings (``eulernet reference``) names them: scoring it on the same sources measures
    # memory, not transfer. Said in the summary and atop the table; its held-out figures are in its loso.json.
    trained = (getattr(predictor, "extra", None) or {}).get("trained_on") or {}
    seen = sorted(set(trained.get("sources") or []) & set(table["source"].astype(str)))
    summary["in_sample"] = {"same_manifest": trained.get("manifest_sha256") == manifest_digest(data_dir),
                            "sources_seen": seen}
    if seen:
        log(f"warning: the model was trained on {len(seen)} of these sources ({', '.join(seen)}): its figures here "
            f"are in-sample; its leave-one-source-out figures are in the loso.json beside its checkpoint")
    refused = table[table["refused"] != ""]
    summary["refused"] = [{"path": r.path, "reason": r.refused, "detail": r.detail} for r in refused.itertuples()]
    scored = table[table["refused"] == ""]
    fig = row_figures(scored["score"], scored["score"] >= threshold, scored["label"], scored["attack_type"],
                      scored["source"], cfg.n_boot, cfg.seed)
    summary.update(rows=fig["rows"], acer_worst=fig["acer_worst"])
    summary["references"] = {
        "one_frame": row_figures(scored["one_frame_score"], scored["one_frame_score"] >= threshold, scored["label"],
                                 scored["attack_type"], scored["source"], cfg.n_boot, cfg.seed),
    }
    lsd = scored[scored["learned_stats_score"].notna()]
    if lsd["label"].nunique() == 2:
        summary["references"]["learned_stats"] = {
            **row_figures(lsd["learned_stats_score"], lsd["learned_stats_accepted"].astype(bool), lsd["label"],
                          lsd["attack_type"], lsd["source"], cfg.n_boot, cfg.seed),
            "n_unscored": int(len(scored) - len(lsd)),
            "protocol": "leave-one-source-out logistic regression on the hand statistics; threshold: EER of the "
                        "training sources"}
    from components.metrics.rates import auc

    stats = {}
    from components.metrics.statistics import STATISTICS

    for name in STATISTICS:  # each single statistic, per attack type, oriented (max of AUC, 1 - AUC)
        d = scored[scored[name].notna()]
        per = {}
        for a in sorted(set(d.loc[d["label"] == 0, "attack_type"])):
            m = (d["label"] == 1) | (d["attack_type"] == a)
            if d.loc[m, "label"].nunique() == 2:
                v = auc(d.loc[m, name], d.loc[m, "label"])
                per[a] = max(v, 1 - v)
        stats[name] = per
    summary["single_statistics_auc"] = stats
    if peer_dir is not None:
        pd_ = table[table["peer_error"] == ""]
        summary["peer"] = {**row_figures(pd_["peer_score"], pd_["peer_score"] >= PEER_THRESHOLD, pd_["label"],
                                         pd_["attack_type"], pd_["source"], cfg.n_boot, cfg.seed),
                           "threshold": PEER_THRESHOLD,
                           "refused": [{"path": r.path, "reason": r.peer_error}
                                       for r in table[table["peer_error"] != ""].itertuples()]}
    summary["wall_s"] = time.perf_counter() - t0
    from components.runtime import json_safe

    table.drop(columns=["file"]).to_csv(out / "scores.csv", index=False)
    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    (out / "table.md").write_text(markdown_table(summary))
    return summary


def _bar(progress: bool):
    def make(desc: str):
        if not progress:
            return None
        from tqdm import tqdm

        return lambda it: tqdm(it, desc=desc, unit="video", leave=False)
    return make


def _fmt(v, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.0f} %" if pct else f"{v:.2f}"


def _conditions(summary: dict) -> str:
    """What a stress run changed, said in the table so its figures are never read as the plain benchmark's."""
    cfg = summary.get("config") or {}
    said = []
    if cfg.get("downscale", 1.0) < 1:
        said.append(f"every frame downscaled x{cfg['downscale']:g} before the face path")
    if cfg.get("held_stills") and cfg.get("still_tilt_deg", 0.0) > 0:
        said.append(f"held stills turned {cfg['still_tilt_deg']:g} deg RMS out of their plane")
    if cfg.get("held_stills") and cfg.get("still_bend", 0.0) > 0:
        said.append(f"held stills bowed {100 * cfg['still_bend']:g} % of their width, flexing with the hand")
    if cfg.get("held_stills") and cfg.get("still_seconds", STILL_SECONDS) != STILL_SECONDS:
        said.append(f"held stills {cfg['still_seconds']:g} s long")
    return f" Conditions: {'; '.join(said)}." if said else ""


def markdown_table(summary: dict) -> str:
    """One line per (row, attack type): AUC [source interval], APCER; then BPCER and ACER (worst type)."""
    named = {"model": {"rows": summary["rows"], "acer_worst": summary["acer_worst"]},
             **summary.get("references", {})}
    if "peer" in summary:
        named["peer (Silent-Face)"] = summary["peer"]
    types = sorted({a for r in named.values() for a in r["rows"] if a != "live"})
    live_n = summary["rows"]["live"]["n"]
    seen = (summary.get("in_sample") or {}).get("sources_seen") or []
    warn = ([f"**In-sample: the model was trained on {len(seen)} of these {summary['n_sources']} sources; these "
             f"figures measure memory, not transfer (its leave-one-source-out figures: loso.json beside the "
             f"checkpoint).**", ""] if seen else [])
    lines = warn + [f"Real-world benchmark: {summary['n_videos']} videos from {summary['n_sources']} sources "
             f"({live_n} live scored), model `{summary['model']}` at its threshold {summary['threshold']:.3f}. "
             f"AUC: live vs that type, 95 % interval resampling sources; APCER / BPCER at each row's own threshold. "
             f"Refused: {len(summary['refused'])} videos (left out of the model's rates).{_conditions(summary)}", "",
             "| row | " + " | ".join(f"{a}: AUC [95 % CI] (n)" for a in types) + " | "
             + " | ".join(f"{a}: APCER" for a in types) + " | BPCER (live n) | ACER worst |",
             "|---|" + "---:|" * (2 * len(types) + 2)]
    for name, r in named.items():
        cells = []
        for a in types:
            f = r["rows"].get(a)
            if f is None:
                cells.append("-")
                continue
            ci = f.get("auc_ci")
            cells.append(f"{_fmt(f['auc'])} [{_fmt(ci[0])}-{_fmt(ci[1])}] ({f['n']})" if ci else
                         f"{_fmt(f['auc'])} ({f['n']})")
        apc = [_fmt(r["rows"][a]["apcer"], True) if a in r["rows"] else "-" for a in types]
        lv = r["rows"]["live"]
        lines.append(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(apc)
                     + f" | {_fmt(lv['bpcer'], True)} ({lv['n']}) | {_fmt(r['acer_worst'], True)} |")
    stats = summary.get("single_statistics_auc") or {}
    if stats:
        lines += ["", "Single hand statistics, AUC live vs type (oriented: max(AUC, 1 - AUC), no training):", "",
                  "| statistic | " + " | ".join(types) + " |", "|---|" + "---:|" * len(types)]
        for name, per in stats.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(per.get(a)) for a in types) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["RealworldConfig", "read_manifest", "make_held_stills", "score_videos", "learned_stats_scores",
           "row_figures", "peer_scores", "run_realworld", "markdown_table", "track_points", "ROWS"]
