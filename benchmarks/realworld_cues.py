"""Which per-video cues tell live faces from screen replays and AI-generated faces on real recordings?

    python benchmarks/realworld_cues.py --data DIR --out OUT [--max-seconds 10] [--workers 2]

``DIR`` holds ``manifest.csv`` (columns ``path, label, attack_type, source``; ``class`` and ``split`` optional;
``path`` relative to DIR; label 1 live, 0 attack; attack types such as ``replay`` and ``deepfake``), the layout
``eulernet benchmark realworld`` reads. Every video is decoded as serving decodes it (the first ``--max-seconds``,
at most ``serve.max_frames`` frames, downscaled to ``label.max_side`` on the long side: ``components.data.video``)
and its face followed on every frame by the labeling face path (``label.backend`` landmarks through
``components.face.tracking.FaceTracker``). Why: the clip model trained on renders does not transfer to real faces
(docs/evaluation.md), and the video head's one motion cue (``nonrigid_motion``) was measured against held stills.
This asks which cheap per-video statistics separate *real* attacks, and whether they survive a source the
statistic never saw. Nothing here changes a default: it is a measurement.

The cue bank, one number per video ("16" = the 16 frames serving scores: ``serve.max_clips`` clips of
``label.clip_len`` frames at ``label.clip_interval``, spread by ``components.data.clips``):

* ``bg_change_16`` / ``bg_change_all``: median over frames of the mean absolute grey change from the previous
  frame outside the face (outside 1.8x the face box, above the shoulders), on the 16 frames / on every frame. A
  tripod live recording has a still background; a replay shows the recorded scene moving on a screen.
* ``res_bg_16``: the same after compensating the background's own motion (a similarity fitted by RANSAC to tracked
  background corners), on the 16 frames only: on every frame it costs ~4.5 s per clip, about doubling the run.
* ``face_bg_corr``: correlation over frames of the face's and the background's median optical flow (a hand holding a
  screen moves both together).
* ``sharp_face_bg``: log ratio of Laplacian variance inside the face to the background (every 5th frame).
* ``flicker``: share of the whole-frame mean luminance's power above fps/4 (screen refresh, re-captured exposure).
* ``lm_jitter``: median second difference of the 68 points after aligning each frame to the mean shape, in eye
  distances (generated faces may tremble; also grows with small faces and low fps).
* ``nonrigid_16``: ``components.inference.video_head.nonrigid_motion`` on the 16 frames (the video head's cue).
* confounds: ``face_w_frac`` (face box width / long side), ``cam_motion`` (median background flow, px per 1/30 s:
  a handheld camera), ``fps``, native and decoded resolution.

How to read it. (1) AUC of each cue, live vs replay and live vs deepfake over all clips, *oriented*: the better of
the two directions, with the arrow saying whether live clips sit lower or higher. Within-source AUCs (sources
holding live clips and that attack) keep the all-clip orientation, so below 0.5 means the cue flips inside the
source: a cue that only separates sources is a source detector, not an attack detector. (2) Medians per source and
type, and each source's fps and resolution: a cue that tracks fps, resolution, face size or camera motion more
than the label is confounded. (3) Leave-one-source-out logistic regression (the video head's recipe: standardised,
balanced classes, log of motion cues, C=1) on [nonrigid_16] and [nonrigid_16, bg_change_16], trained live vs all
attacks and live vs replay only; AUCs of the out-of-source scores with 95 % intervals resampling sources
(``components.metrics.rates.auc_bootstrap_ci``). With a handful of replay clips from three sources the intervals are
wide; read them before the point values.

Writes ``OUT/cues.csv`` (one row per video, skipped ones with the reason), ``OUT/summary.json`` and
``OUT/table.md``; prints the tables. A video that cannot be decoded, is too short for one clip or shows no face is
skipped and named with its reason.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CUES = ("bg_change_16", "bg_change_all", "res_bg_16", "face_bg_corr", "sharp_face_bg", "flicker", "lm_jitter",
        "nonrigid_16")
CONFOUNDS = ("face_w_frac", "cam_motion", "fps", "native_long_side")
# Non-negative motion statistics spanning decades: log-compressed before the regression (floor as the video head's).
LOG_CUES = frozenset({"bg_change_16", "bg_change_all", "res_bg_16", "lm_jitter", "nonrigid_16", "cam_motion"})
LOG_EPS = 1e-4
FEATURE_SETS = (("nonrigid_16",), ("nonrigid_16", "bg_change_16"))
TRAININGS = {"live vs all attacks": None, "live vs replay only": ("replay",)}
MIN_REGION_PX = 200  # a region smaller than this on a frame gives no value for it


# ------------------------------------------------------------------------------------------------ per frame
def regions(h: int, w: int, box) -> tuple[np.ndarray, np.ndarray]:
    """(face, background) boolean masks (h, w) for one face box (x0, y0, x1, y1): the face's inner part (no hair,
    no chin edge), and what lies outside 1.8x the box and above the shoulders (1.2 box heights below its top)."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    xs, ys = np.arange(w), np.arange(h)
    face = (((ys >= y0 + 0.15 * bh) & (ys < y1 - 0.1 * bh))[:, None]
            & ((xs >= x0 + 0.2 * bw) & (xs < x1 - 0.2 * bw))[None, :])
    near = (np.abs(ys - cy) < 0.9 * bh)[:, None] & (np.abs(xs - cx) < 0.9 * bw)[None, :]
    bg = ~near & (ys < y1 + 0.2 * bh)[:, None]
    return face, bg


def median_flow(prev: np.ndarray, cur: np.ndarray, mask: np.ndarray, n: int = 80) -> np.ndarray | None:
    """Median (dx, dy) of Lucas-Kanade tracked corners inside ``mask`` between two grey uint8 frames."""
    import cv2

    p0 = cv2.goodFeaturesToTrack(prev, n, 0.01, 7, mask=mask.astype(np.uint8))
    if p0 is None or len(p0) < 5:
        return None
    p1, st, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, winSize=(15, 15), maxLevel=2)
    ok = st.ravel() == 1
    if ok.sum() < 5:
        return None
    return np.median((p1 - p0).reshape(-1, 2)[ok], axis=0)


def background_residual(prev: np.ndarray, cur: np.ndarray, bg: np.ndarray) -> float:
    """Mean |cur - prev warped by the background's own similarity motion| over the background (8 px border off):
    what still changes behind the face once the camera's motion is taken out. NaN when it cannot be fitted."""
    import cv2

    p0 = cv2.goodFeaturesToTrack(prev, 150, 0.01, 5, mask=bg.astype(np.uint8))
    if p0 is None or len(p0) < 8:
        return float("nan")
    p1, st, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, winSize=(15, 15), maxLevel=2)
    ok = st.ravel() == 1
    if ok.sum() < 8:
        return float("nan")
    m, _ = cv2.estimateAffinePartial2D(p0.reshape(-1, 2)[ok], p1.reshape(-1, 2)[ok], method=cv2.RANSAC,
                                       ransacReprojThreshold=1.0)
    if m is None:
        return float("nan")
    warped = cv2.warpAffine(prev, m, (prev.shape[1], prev.shape[0]), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    valid = bg.copy()
    valid[:8], valid[-8:], valid[:, :8], valid[:, -8:] = False, False, False, False
    if valid.sum() < MIN_REGION_PX:
        return float("nan")
    return float(np.abs(cur.astype(np.float32) - warped.astype(np.float32))[valid].mean())


# ------------------------------------------------------------------------------------------------ per video
def _nanmedian(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else float("nan")


def high_frequency_share(x: np.ndarray, fps: float, cut_hz: float, low_hz: float = 0.3) -> float:
    """Share of the power of series ``x`` (sampled at ``fps``) at or above ``cut_hz``, of all above ``low_hz``."""
    from scipy.signal import welch

    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 32:
        return float("nan")
    f, p = welch(x - x.mean(), fs=fps, nperseg=min(len(x), 64), detrend="linear")
    return float(p[f >= cut_hz].sum() / (p[f > low_hz].sum() + 1e-12))


def landmark_jitter(points: np.ndarray) -> float:
    """Median |second difference over frames| of the 68 points after a similarity alignment of every frame to the
    mean shape (twice refined), in eye distances: frame-to-frame tremble that smooth motion does not explain."""
    from components.inference.video_head import eye_distance

    pts = np.asarray(points, dtype=np.float64)  # (F, 68, 2)
    if len(pts) < 3:
        return float("nan")
    ref = pts.mean(0)
    for _ in range(2):
        r0 = ref - ref.mean(0)
        aligned = []
        for p in pts:
            s = p - p.mean(0)
            u, sig, vt = np.linalg.svd(r0.T @ s)
            e = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
            rot = u @ e @ vt
            aligned.append((sig * np.diag(e)).sum() / max((s ** 2).sum(), 1e-9) * s @ rot.T + ref.mean(0))
        aligned = np.array(aligned)
        ref = aligned.mean(0)
    res = (aligned - ref) / max(eye_distance(ref), 1.0)
    return float(np.median(np.abs(res[2:] - 2 * res[1:-1] + res[:-2])))


def follow_face(frames: np.ndarray, backend, track_cfg) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (F, 4), points (F, 68, 2)) of the followed face on every frame, NaN where the tracker has none."""
    from components.face.tracking import FaceTracker, iou

    tracker = FaceTracker(backend, track_cfg)
    boxes = np.full((len(frames), 4), np.nan)
    points = np.full((len(frames), 68, 2), np.nan)
    for i, f in enumerate(frames):
        faces = tracker.detect(f, i)
        if faces:
            face = max(faces, key=lambda z: iou(z.box, tracker.box))  # the followed one, as face_agreement
            boxes[i], points[i] = face.box, face.points
    return boxes, points


def video_cues(frames: np.ndarray, boxes: np.ndarray, points: np.ndarray, fps: float, scored: list[int]) -> dict:
    """The cue bank of one video: ``frames`` (F, H, W, 3) RGB, face ``boxes``/``points`` filled on every frame,
    ``scored`` the indices of the frames serving scores."""
    import cv2

    from components.inference.video_head import nonrigid_motion

    n, h, w = frames.shape[:3]
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    d_bg = np.full(n, np.nan)
    res_bg = np.full(n, np.nan)
    flow = {"bg": np.full((n, 2), np.nan), "face": np.full((n, 2), np.nan)}
    lum = np.array([g.mean() for g in grey], dtype=np.float64)
    lap_face, lap_bg = [], []
    scored_set = set(scored)
    for t in range(n):
        box = np.clip(boxes[t], 0, [w, h, w, h])
        face, bg = regions(h, w, box)
        big_bg = bg.sum() > MIN_REGION_PX
        if t > 0:
            if big_bg:
                d_bg[t] = np.abs(grey[t].astype(np.float32) - grey[t - 1].astype(np.float32))[bg].mean()
            for key, m in (("bg", bg), ("face", face)):
                if m.sum() > MIN_REGION_PX and (v := median_flow(grey[t - 1], grey[t], m)) is not None:
                    flow[key][t] = v
            if t in scored_set and big_bg:
                res_bg[t] = background_residual(grey[t - 1], grey[t], bg)
        if t % 5 == 0 and (box[2] - box[0]) * (box[3] - box[1]) > 256 and face.any():
            lap = cv2.Laplacian(grey[t], cv2.CV_32F)
            lap_face.append(lap[face].var())
            lap_bg.append(lap[bg].var() if big_bg else np.nan)
    both = np.isfinite(flow["bg"][:, 0]) & np.isfinite(flow["face"][:, 0])
    corr = [np.corrcoef(flow["bg"][both, k], flow["face"][both, k])[0, 1] for k in (0, 1)
            if both.sum() > 10 and flow["bg"][both, k].std() > 1e-6 and flow["face"][both, k].std() > 1e-6]
    at = [t for t in scored if t > 0]
    return {
        "bg_change_16": _nanmedian(d_bg[at]),
        "bg_change_all": _nanmedian(d_bg),
        "res_bg_16": _nanmedian(res_bg),
        "face_bg_corr": float(np.mean(corr)) if corr else 0.0,
        "sharp_face_bg": float(np.log((_nanmedian(lap_face) + 1e-3) / (_nanmedian(lap_bg) + 1e-3))),
        "flicker": high_frequency_share(lum, fps, fps / 4),
        "lm_jitter": landmark_jitter(points),
        "nonrigid_16": nonrigid_motion(points[scored]),
        "face_w_frac": _nanmedian((boxes[:, 2] - boxes[:, 0]) / max(h, w)),
        "cam_motion": _nanmedian(np.hypot(*flow["bg"].T)) * fps / 30.0,
    }


def native_size(path: str) -> tuple[int, int]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()


_WORKER: dict = {}


def _init_worker(backend: str, options: dict, track: dict) -> None:
    import cv2

    from components.face.landmarks import make_backend
    from components.face.tracking import TrackConfig

    cv2.setNumThreads(1)
    _WORKER.update(backend=make_backend(backend, **options), track=TrackConfig(**track))


def write_report(out: Path, summary: dict, text: str) -> None:
    """The figures as ``out/summary.json``, the tables as ``out/table.md``, and the tables printed."""
    from components.runtime import json_safe

    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    (out / "table.md").write_text(text)
    print(text)


def measure_all(measure, jobs: list[dict], init: tuple, workers: int, bar) -> list[dict]:
    """``measure`` of every job, in job order, ticking ``bar``: in this process, or on ``workers`` processes that
    each load their own face backend (``_init_worker(*init)``; a dlib model does not pickle across processes)."""
    if workers <= 1:
        _init_worker(*init)
        rows = []
        for job in jobs:
            rows.append(measure(job))
            bar.update()
        return rows
    rows = []
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=init) as pool:
        for row in pool.map(measure, jobs):
            rows.append(row)
            bar.update()
    return rows


def measure(job: dict) -> dict:
    """One manifest row -> its cue row; ``skipped`` names why a video gave none (errors never stop the others)."""
    from components.benchmark.realworld import video_fps
    from components.data.clips import clip_indices, clip_starts
    from components.data.video import VideoError, read_frames

    row = {"path": job["path"], "skipped": "", "detail": "", **{k: np.nan for k in CUES + CONFOUNDS}}
    t0 = time.perf_counter()
    try:
        fps = video_fps(job["file"])
        nw, nh = native_size(job["file"])
        row.update(fps=fps, native_w=nw, native_h=nh, native_long_side=max(nw, nh))
        frames = read_frames(job["file"], max_frames=min(int(round(fps * job["max_seconds"])), job["max_frames"]),
                             max_side=job["max_side"])
        row.update(frames=len(frames), decoded_w=frames.shape[2], decoded_h=frames.shape[1])
        scored = [i for s in clip_starts(len(frames), job["clip_len"], job["clip_interval"], job["clips"])
                  for i in clip_indices(s, job["clip_len"], job["clip_interval"])]
        if not scored:
            raise VideoError("too_short", f"{len(frames)} frames hold no clip of {job['clip_len']} frames at "
                                          f"interval {job['clip_interval']}")
        boxes, points = follow_face(frames, _WORKER["backend"], _WORKER["track"])
        found = np.flatnonzero(np.isfinite(boxes[:, 0]))
        row["face_share"] = len(found) / len(frames)
        if len(found) < 3:
            raise VideoError("no_face", f"a face on {len(found)} of {len(frames)} frames")
        nearest = found[np.abs(np.arange(len(frames))[:, None] - found[None, :]).argmin(1)]
        row.update(video_cues(frames, boxes[nearest], points[nearest], fps, scored))  # gaps: nearest face
    except VideoError as exc:
        row["skipped"], row["detail"] = exc.reason, exc.detail
    except Exception as exc:  # one broken clip must not stop the benchmark
        row["skipped"], row["detail"] = "error", f"{type(exc).__name__}: {exc}"
    row["seconds"] = time.perf_counter() - t0
    return row


# ------------------------------------------------------------------------------------------------ figures
def oriented_auc(values, labels) -> tuple[float, int]:
    """(AUC, sign): the AUC of ``sign * values`` with live positive, sign chosen so it is >= 0.5 (+1: live
    higher). NaN rows are dropped; (NaN, +1) without both classes."""
    from components.metrics.rates import auc

    v, y = np.asarray(values, dtype=np.float64), np.asarray(labels)
    ok = np.isfinite(v)
    if len(set(y[ok].tolist())) < 2:
        return float("nan"), 1
    a = auc(v[ok], y[ok])
    return (a, 1) if a >= 0.5 else (1.0 - a, -1)


def signed_auc(values, labels, sign: int) -> float:
    from components.metrics.rates import auc

    v, y = sign * np.asarray(values, dtype=np.float64), np.asarray(labels)
    ok = np.isfinite(v)
    return auc(v[ok], y[ok]) if len(set(y[ok].tolist())) == 2 else float("nan")


def cue_aucs(df: pd.DataFrame, cues, attacks=("replay", "deepfake")) -> dict:
    """Per cue and attack type: the all-clip oriented AUC, and per source holding live and that attack the AUC in
    the all-clip orientation (below 0.5: it flips inside the source)."""
    out = {}
    for cue in cues:
        out[cue] = {}
        for att in attacks:
            sub = df[df["attack_type"].isin(["live", att])]
            a, sign = oriented_auc(sub[cue], sub["label"])
            within = {}
            for src, g in sub.groupby("source"):
                if {"live", att} <= set(g["attack_type"]):
                    within[src] = {"auc": signed_auc(g[cue], g["label"], sign),
                                   "n_live": int((g["label"] == 1).sum()), "n_attack": int((g["label"] == 0).sum())}
            out[cue][att] = {"auc": a, "live": "higher" if sign > 0 else "lower", "n_live": int(
                (sub["label"] == 1).sum()), "n_attack": int((sub["label"] == 0).sum()), "within": within}
    return out


def design(df: pd.DataFrame, feats) -> np.ndarray:
    x = df[list(feats)].to_numpy(np.float64).copy()
    for j, f in enumerate(feats):
        if f in LOG_CUES:
            x[:, j] = np.log(np.maximum(x[:, j], 0.0) + LOG_EPS)
    return x


def leave_source_out(df: pd.DataFrame, feats, train_attacks=None) -> np.ndarray:
    """Live scores (N,) of every row from a logistic regression fitted on the other sources only (live rows and
    the ``train_attacks`` types, None: every attack); NaN where the other sources lack a class."""
    from sklearn.linear_model import LogisticRegression

    x, y = design(df, feats), df["label"].to_numpy()
    src = df["source"].to_numpy()
    usable = np.ones(len(df), bool) if train_attacks is None else df["attack_type"].isin(
        ("live", *train_attacks)).to_numpy()
    scores = np.full(len(df), np.nan)
    for s in np.unique(src):
        test, train = src == s, (src != s) & usable
        if len(set(y[train].tolist())) < 2:
            continue
        med = np.nanmedian(x[train], axis=0)
        xt = np.where(np.isfinite(x), x, med)
        mu, sd = xt[train].mean(0), xt[train].std(0)
        sd = np.where(sd > 1e-9, sd, 1.0)
        lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000).fit((xt[train] - mu) / sd, y[train])
        scores[test] = lr.decision_function((xt[test] - mu) / sd)
    return scores


def score_aucs(df: pd.DataFrame, scores: np.ndarray, n_boot: int, seed: int) -> dict:
    """AUC (live higher) with a 95 % bootstrap interval resampling sources, per attack type and all attacks."""
    from components.metrics.rates import auc, auc_bootstrap_ci

    out = {}
    for name, types in (("replay", ["replay"]), ("deepfake", ["deepfake"]), ("all attacks", None)):
        kind = (df["label"] == 1) | (df["attack_type"].isin(types) if types else df["label"] == 0)
        keep = np.isfinite(scores) & kind.to_numpy()
        y = df["label"].to_numpy()[keep]
        if len(set(y.tolist())) < 2:
            out[name] = {"auc": float("nan"), "ci": [float("nan")] * 2, "n_live": 0, "n_attack": 0}
            continue
        ci = auc_bootstrap_ci(scores[keep], y, groups=df["source"].to_numpy()[keep], n_boot=n_boot, seed=seed)
        out[name] = {"auc": auc(scores[keep], y), "ci": list(ci), "n_live": int((y == 1).sum()),
                     "n_attack": int((y == 0).sum())}
    return out


def _f(v, nd: int = 2) -> str:
    """A table number: ``nd`` decimals, or ``nd`` significant digits below 0.01; '-' for a missing one."""
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:.{nd}g}" if 0 < abs(v) < 0.01 else f"{v:.{nd}f}"


def tables(df: pd.DataFrame, aucs: dict, loso: dict, hand: dict, skipped: pd.DataFrame, head: str) -> str:
    pairs = [(att, src) for att in ("replay", "deepfake") for src in aucs[CUES[0]][att]["within"]]
    any_cue = aucs[CUES[0]]
    lines = [head, "", "**(1) Cue AUCs.** All clips: oriented AUC, arrow = live clips lower (↓) or higher (↑) than "
             "the attack (the video head expects live ↑ on nonrigid_16). Within a source: same orientation as the "
             "all-clip figure (< 0.5: flips inside the source).",
             "", "| cue | live vs replay (" + f"{any_cue['replay']['n_live']}/{any_cue['replay']['n_attack']}) | "
             f"live vs deepfake ({any_cue['deepfake']['n_live']}/{any_cue['deepfake']['n_attack']}) | "
             + " | ".join(f"within {s} {a} ({any_cue[a]['within'][s]['n_live']}/{any_cue[a]['within'][s]['n_attack']})"
                          for a, s in pairs) + " |",
             "|---|---:|---:|" + "---:|" * len(pairs)]
    for cue, r in aucs.items():
        cells = [f"{_f(r[a]['auc'])} {'↑' if r[a]['live'] == 'higher' else '↓'}" for a in ("replay", "deepfake")]
        cells += [_f(r[a]["within"][s]["auc"]) for a, s in pairs]
        lines.append(f"| {cue}{' (confound)' if cue in CONFOUNDS else ''} | " + " | ".join(cells) + " |")
    key = ["cam_motion", "bg_change_16", "bg_change_all", "res_bg_16", "nonrigid_16", "lm_jitter", "face_w_frac"]
    med = df.groupby(["source", "attack_type"])[key].median()
    cnt = df.groupby(["source", "attack_type"]).size()
    lines += ["", "**(2a) Medians per source and type** (cam_motion: background flow, px per 1/30 s; a handheld "
              "camera moves it).", "", "| source | type | n | " + " | ".join(key) + " |",
              "|---|---|---:|" + "---:|" * len(key)]
    for (src, typ), r in med.iterrows():
        lines.append(f"| {src} | {typ} | {cnt[(src, typ)]} | " + " | ".join(_f(r[k], 3) for k in key) + " |")
    lines += ["", f"Handheld check: Spearman rank correlation of bg_change_all with cam_motion over live clips "
              f"{_f(hand['spearman_live'])}; {hand['n_live_above']} of {hand['n_live']} live clips have a "
              f"bg_change_16 above the lowest replay's ({_f(hand['lowest_replay'], 3)})"
              + (f": {', '.join(f'{k} {v}' for k, v in hand['above_by_source'].items())}."
                 if hand["above_by_source"] else "."),
              "", "**(2b) Recording per source.**", "",
              "| source | clips (live / replay / deepfake) | fps | native resolution | decoded | frames |",
              "|---|---|---|---|---|---|"]
    for src, g in df.groupby("source"):
        c = g["attack_type"].value_counts()
        res = ", ".join(sorted({f"{int(a)}x{int(b)}" for a, b in zip(g["native_w"], g["native_h"])}))
        dec = ", ".join(sorted({f"{int(a)}x{int(b)}" for a, b in zip(g["decoded_w"], g["decoded_h"])}))
        fps = ", ".join(f"{v:g}" for v in sorted(set(np.round(g["fps"], 2))))
        lines.append(f"| {src} | {c.get('live', 0)} / {c.get('replay', 0)} / {c.get('deepfake', 0)} | {fps} | {res} "
                     f"| {dec} | {int(g['frames'].min())}-{int(g['frames'].max())} |")
    lines += ["", "**(3) Leave-one-source-out logistic regression** (standardised, balanced, log of motion cues, "
              "C=1): AUC of out-of-source scores [95 % CI resampling sources] (live/attack clips scored).", "",
              "| features | trained on | live vs replay | live vs deepfake | live vs all attacks |",
              "|---|---|---|---|---|"]
    for r in loso:
        cells = [f"{_f(v['auc'])} [{_f(v['ci'][0])}-{_f(v['ci'][1])}] ({v['n_live']}/{v['n_attack']})"
                 for v in r["aucs"].values()]
        lines.append(f"| {' + '.join(r['features'])} | {r['trained_on']} | " + " | ".join(cells) + " |")
    lines += ["", f"Skipped: {len(skipped)}" + ("" if skipped.empty else " - " + "; ".join(
        f"{p} ({s}: {d})" for p, s, d in zip(skipped["path"], skipped["skipped"], skipped["detail"])))]
    return "\n".join(lines) + "\n"


def handheld_check(df: pd.DataFrame) -> dict:
    """How far bg_change is a camera-motion detector: its rank correlation with cam_motion among live clips, and
    the live clips whose bg_change_16 exceeds the lowest replay's."""
    from scipy.stats import spearmanr

    live, rep = df[df["label"] == 1], df[df["attack_type"] == "replay"]
    ok = live[["bg_change_all", "cam_motion"]].dropna()
    rho = float(spearmanr(ok["bg_change_all"], ok["cam_motion"]).statistic) if len(ok) > 2 else float("nan")
    low = float(rep["bg_change_16"].min()) if len(rep) else float("nan")
    above = live[live["bg_change_16"] > low] if np.isfinite(low) else live.iloc[:0]
    return {"spearman_live": rho, "lowest_replay": low, "n_live": len(live), "n_live_above": len(above),
            "above_by_source": above["source"].value_counts().to_dict()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with manifest.csv (path,label,attack_type,source[,class,"
                                                  "split]); paths relative to it")
    ap.add_argument("--out", required=True, help="output folder: cues.csv, summary.json, table.md")
    ap.add_argument("--max-seconds", type=float, default=10.0, help="seconds read from the start of each video "
                                                                    "(default 10, serving's bound)")
    ap.add_argument("--workers", type=int, default=2, help="processes measuring videos (default 2; 1: in-process)")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the intervals (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from components.benchmark.realworld import read_manifest
    from components.config import load_params
    from components.runtime import progress_bar

    params = load_params(REPO / "params.yaml")
    label, serve = params["label"], params["serve"]
    try:
        videos, photos = read_manifest(args.data)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [{"path": r.path, "file": r.file, "max_seconds": args.max_seconds, "max_frames": serve.max_frames,
             "max_side": label.max_side, "clip_len": label.clip_len, "clip_interval": label.clip_interval,
             "clips": serve.max_clips} for r in videos.itertuples()]
    init = (label.backend, dict(label.backend_options), dict(label.track))
    t0 = time.perf_counter()
    bar = progress_bar(len(jobs), "videos", unit="video", disable=args.no_progress)
    rows = measure_all(measure, jobs, init, args.workers, bar)
    bar.close()
    wall = time.perf_counter() - t0
    table = videos.drop(columns=["file"]).merge(pd.DataFrame(rows), on="path")
    table.to_csv(out / "cues.csv", index=False)
    skipped = table[table["skipped"] != ""]
    df = table[table["skipped"] == ""].reset_index(drop=True)

    aucs = cue_aucs(df, CUES + CONFOUNDS)
    loso = []
    for feats in FEATURE_SETS:
        for trained_on, attacks in TRAININGS.items():
            s = leave_source_out(df, feats, attacks)
            loso.append({"features": list(feats), "trained_on": trained_on, "aucs": score_aucs(df, s, args.n_boot,
                                                                                                args.seed)})
    hand = handheld_check(df)
    head = (f"Cues on {len(df)} of {len(table)} real videos from {df['source'].nunique()} sources "
            f"({', '.join(f'{k} {v}' for k, v in df['attack_type'].value_counts().items())}); first "
            f"{args.max_seconds:g} s, <= {label.max_side} px, {label.backend} face path, "
            f"{serve.max_clips}x{label.clip_len} scored frames; {wall:.0f} s on {args.workers} workers.")
    text = tables(df, aucs, loso, hand, skipped, head)
    summary = {"data": str(args.data), "args": vars(args), "wall_s": wall, "n_videos": len(table),
               "photos_ignored": photos, "skipped": skipped[["path", "skipped", "detail"]].to_dict("records"),
               "cue_aucs": aucs, "handheld": hand, "leave_source_out": loso,
               "medians": df.groupby(["source", "attack_type"])[list(CUES + CONFOUNDS)].median().reset_index()
               .to_dict("records")}
    write_report(out, summary, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
