"""Synthetic live / spoof face videos with the cues of the paper's Fig. 1, from real faces stored in the repository.

Identities: real face photos taken once from PyPI packages and stored with their dlib landmarks in
``components/data/faces/`` (``faces.json``; see ``build_faces.py`` and docs/data.md for sources and licences).
"Subjects" map round-robin onto identities; more subjects than identities are deterministic variants (crop,
scale, mirror, colour; the carphone identity also rotates over three video frames). ``split_by="subject"``
splits subjects 3:1:1 (a person can then appear in several splits); ``split_by="identity"`` gives every
identity one split, so dev/test people are never seen in training.

Live: the head moves rigidly against a still background (``motion_px``, spatial extent ``motion_sigma``), the
face deforms locally (mouth, smile, brows: ``expression_px``), blinks at ``blink_rate_hz`` and carries a
pulse-like skin colour oscillation (``pulse_amplitude``). Print: the photo moves as one plane, rigid or bent
like a hand-held sheet (``print_bend``), halftone and reduced gamut, no pulse, no blink. Replay: a re-displayed
live video (pulse attenuated, display gamma ``replay_gamma``, duplicated frames ``replay_judder``, refresh
flicker ``replay_flicker``), screen moiré and a bezel. Certificate: a small printed photo on an ID-like card.
AI-dynamic: a still face warped into motion (head sway that drags its surroundings, talking mouth, temporally
inconsistent local warps ``ai_warp``), over-smooth skin, no pulse, no blink.

``temporal_only`` renders every type full-frame with the same per-frame statistics (no border, halftone,
moiré, card): live and attack differ only over time.

``renderer="v3"`` (``preset("realistic")``, ``components/data/synth/render_v3.py``) draws every effect's strength
per video and adds mains flicker, exposure/white-balance drift, camera tremor, a rolling shutter and H.264 (the
file written is the encoded stream) to every capture, so that no single hand statistic separates the classes
(``benchmarks/realistic_shortcuts.py``).

``renderer="v1"`` is the renderer that made ``data/sample/`` (before the cue parameters existed), kept bit for
bit: ``preset("sample_v1")`` reproduces the sample's files exactly.

Determinism: every video draws from its own ``numpy`` generator seeded by (seed, subject, video index), and
OpenCV runs single-threaded while rendering, so a seed gives the same bytes on one machine, whatever the
number of worker processes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from components.data.profiles import DEVICES, SCENES
from components.data.synth.camera import apply_device, apply_scene
from components.data.synth.config import ATTACKS, PRESETS, SPLIT_BY, SynthConfig, preset
from components.data.synth.faces import (
    config_identities,
    identity_names,
    load_face_image,
    load_identities,
    subject_face,
    subject_identity,
)
from components.data.synth.render_v1 import render_certificate, render_live_v1, render_print_v1, render_replay_v1
from components.data.synth.render_v2 import judder, render_live2, render_print2, render_replay2, replay_tone


def _temporal_replay_v1(face, rng, cfg, subject):
    frames, c, fw = render_live_v1(face, rng, cfg, pulse_scale=0.3)
    flick = 1 + 0.03 * np.sin(2 * np.pi * rng.uniform(4, 9) * np.arange(cfg.n_frames) / cfg.fps)
    return frames * flick[:, None, None, None].astype(np.float32), c, fw


def _temporal_replay_v2(face, rng, cfg, subject):
    frames, c, fw = render_live2(face, rng, cfg, "replay_src")
    frames = judder(frames, rng, cfg.replay_judder)
    return replay_tone(frames, rng, cfg, keep_mean=True), c, fw


# (renderer, temporal_only) -> attack type -> f(face, rng, cfg, subject) returning the scene before lighting and
# camera: frames (T, H, W, 3) float32, face centres (T, 2), face width. A new attack type is one entry per row.
_RENDER = {
    ("v1", False): {
        "live": lambda face, rng, cfg, subject: render_live_v1(face, rng, cfg),
        "print": lambda face, rng, cfg, subject: render_print_v1(face, rng, cfg),
        "replay": lambda face, rng, cfg, subject: render_replay_v1(face, rng, cfg),
        "certificate": render_certificate,
        "ai_dynamic": lambda face, rng, cfg, subject: render_live_v1(face, rng, cfg, pulse_scale=0.0, blinks=False,
                                                                     talk=1.0, smooth_skin=True),
    },
    ("v1", True): {
        "live": lambda face, rng, cfg, subject: render_live_v1(face, rng, cfg),
        "print": lambda face, rng, cfg, subject: render_live_v1(face, rng, cfg, pulse_scale=0.0, blinks=False,
                                                                rigid=True),
        "replay": _temporal_replay_v1,
        "ai_dynamic": lambda face, rng, cfg, subject: render_live_v1(face, rng, cfg, pulse_scale=0.0, blinks=False,
                                                                     talk=1.0),
    },
    ("v2", False): {
        "live": lambda face, rng, cfg, subject: render_live2(face, rng, cfg, "live"),
        "print": lambda face, rng, cfg, subject: render_print2(face, rng, cfg),
        "replay": lambda face, rng, cfg, subject: render_replay2(face, rng, cfg),
        "certificate": render_certificate,
        "ai_dynamic": lambda face, rng, cfg, subject: render_live2(face, rng, cfg, "ai", smooth_skin=True),
    },
    ("v2", True): {
        "live": lambda face, rng, cfg, subject: render_live2(face, rng, cfg, "live"),
        "print": lambda face, rng, cfg, subject: render_live2(face, rng, cfg, "print"),
        "replay": _temporal_replay_v2,
        "ai_dynamic": lambda face, rng, cfg, subject: render_live2(face, rng, cfg, "ai"),
    },
}


def _render_frames(subject: int, attack_type: str, cfg: SynthConfig, rng) -> tuple[np.ndarray, np.ndarray, float]:
    """Scene content before lighting and camera: frames (T, H, W, 3) float32, face centres (T, 2), face width."""
    table = _RENDER[(cfg.renderer, bool(cfg.temporal_only))]
    if attack_type not in table:
        if cfg.temporal_only:
            raise ValueError(f"temporal_only cannot render {attack_type!r}")
        raise ValueError(f"unknown attack type {attack_type!r}")
    face = subject_face(cfg, subject, cfg.size)
    return table[attack_type](face, rng, cfg, subject)


def render_video(subject: int, attack_type: str, device: str, scene: str, cfg: SynthConfig,
                 index: int = 0) -> np.ndarray:
    """Render one video (n_frames, h, w, 3) uint8 RGB; deterministic in (cfg.seed, subject, index). Renderer v3:
    the frames as decoded from the H.264 file :func:`generate_dataset` writes."""
    return _render_capture(subject, attack_type, device, scene, cfg, index)[0]


def _render_capture(subject: int, attack_type: str, device: str, scene: str, cfg: SynthConfig,
                    index: int = 0) -> tuple[np.ndarray, bytes | None]:
    """(frames, encoded file) of one video; the file is None where the writer encodes the frames (v1, v2)."""
    import cv2

    prev_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # thread scheduling must not change any result
    try:
        rng = np.random.default_rng([cfg.seed, subject, index, 1])
        if cfg.renderer == "v3":
            from components.data.synth.render_v3 import RENDER_V3, render_capture_v3

            if attack_type not in (*RENDER_V3, "certificate"):
                raise ValueError(f"renderer 'v3' cannot render {attack_type!r}; it makes {sorted(RENDER_V3)}")
            face = subject_face(cfg, subject, cfg.size)
            return render_capture_v3(face, attack_type, DEVICES[device], SCENES[scene], rng, cfg, apply_scene,
                                     subject)
        frames, c, fw = _render_frames(subject, attack_type, cfg, rng)
        frames = apply_scene(frames.astype(np.float32), c, fw, SCENES[scene], rng)
        return apply_device(frames, DEVICES[device], SCENES[scene], rng, cfg), None
    finally:
        cv2.setNumThreads(prev_threads)


# ------------------------------------------------------------------------------------------- datasets
def subject_splits(n_subjects: int, ratio: tuple[int, int, int] = (3, 1, 1)) -> list[str]:
    """Split of each subject: a repeating train/dev/test pattern, so every split mixes all identities."""
    pattern = ["train"] * ratio[0] + ["dev"] * ratio[1] + ["test"] * ratio[2]
    return [pattern[i % len(pattern)] for i in range(n_subjects)]


def identity_splits(cfg: SynthConfig) -> dict[str, str]:
    """Split of each identity of ``cfg`` (split_by="identity"): the split_ratio pattern over identities."""
    names = [i.name for i in config_identities(cfg)]
    return dict(zip(names, subject_splits(len(names), cfg.split_ratio)))


def dataset_splits(cfg: SynthConfig) -> list[str]:
    """Split of each subject 0..n_subjects-1 under ``cfg.split_by``."""
    if cfg.split_by == "subject":
        return subject_splits(cfg.n_subjects, cfg.split_ratio)
    by_id = identity_splits(cfg)
    return [by_id[subject_identity(cfg, s)[0].name] for s in range(cfg.n_subjects)]


def empty_splits(cfg: SynthConfig) -> list[str]:
    """Splits the ratio asks for (non-zero share) that no subject lands in, e.g. dev and test for 3 subjects at
    3:1:1: the pipeline needs dev (threshold) and test (figures), so `eulernet generate` warns about them."""
    present = set(dataset_splits(cfg))
    wanted = [name for name, share in zip(("train", "dev", "test"), cfg.split_ratio) if share > 0]
    return [name for name in wanted if name not in present]


def plan_dataset(cfg: SynthConfig) -> pd.DataFrame:
    """The manifest rows the generator will write (no rendering)."""
    splits = dataset_splits(cfg)
    rows = []
    for s in range(cfg.n_subjects):
        sid = f"s{s:03d}"
        idx = 0
        k_attack = 0
        identity = subject_identity(cfg, s)[0].name
        for dev in cfg.devices:
            for scene in cfg.scenes:
                kinds = ["live"] * cfg.lives_per_cell
                for _ in range(cfg.attacks_per_cell):
                    kinds.append(cfg.attack_types[(s + k_attack) % len(cfg.attack_types)])
                    k_attack += 1
                for kind in kinds:
                    vid = f"{sid}_{dev}_{scene}_{kind}_{idx:02d}"
                    meta = {"generator": "eulernet.synthetic", "seed": cfg.seed, "index": idx, "identity": identity,
                            "environment": SCENES[scene].environment, "temporal_only": cfg.temporal_only,
                            "fps": cfg.fps}
                    if cfg.renderer != "v1":  # v1 keeps the sample's manifest byte for byte
                        meta.update(renderer=cfg.renderer, split_by=cfg.split_by)
                    rows.append({"video_id": vid, "path": f"videos/{vid}.mp4", "subject_id": sid, "device": dev,
                                 "os": DEVICES[dev].os, "scene": scene, "attack_type": kind,
                                 "label": int(kind == "live"), "split": splits[s],
                                 "source": "synthetic-temporal" if cfg.temporal_only else "synthetic",
                                 "meta": json.dumps(meta, sort_keys=True), "_subject": s, "_index": idx})
                    idx += 1
    return pd.DataFrame(rows)


def _render_and_write(job: tuple) -> str:
    """One video, rendered and encoded (a worker process's unit of work; top level so spawn can pickle it)."""
    from components.data.video import write_video

    cfg, out_path, subject, kind, device, scene, index = job
    frames, data = _render_capture(subject, kind, device, scene, cfg, index=index)
    if data is None:
        write_video(out_path, frames, cfg.fps)
    else:  # v3: the phone's own H.264 file, exactly the bytes render_video decoded
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_bytes(data)
    return out_path


def generate_dataset(out_dir: str | Path, cfg: SynthConfig, progress: bool = True, workers: int = 1) -> pd.DataFrame:
    """Render every planned video into ``out_dir/videos`` and write ``out_dir/manifest.csv``; return the manifest.

    ``workers`` > 1 renders videos in that many spawned processes; every video has its own seeded generator
    and OpenCV runs single-threaded, so the files are byte-identical to ``workers=1``.
    """
    from components.data.manifest import COLUMNS, write_manifest

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    plan = plan_dataset(cfg)
    jobs = [(cfg, str(out_dir / r["path"]), r["_subject"], r["attack_type"], r["device"], r["scene"], r["_index"])
            for r in plan.to_dict("records")]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"generate {out_dir}", unit="video")
    if workers == 1 or len(jobs) < 2:
        for job in jobs:
            _render_and_write(job)
            if bar is not None:
                bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
            for _ in ex.map(_render_and_write, jobs, chunksize=1):
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    manifest = plan[COLUMNS].copy()
    write_manifest(manifest, out_dir / "manifest.csv")
    return manifest


def contact_sheet(out_png: str | Path, cfg: SynthConfig | None = None, subject: int = 0, frame: int = 20) -> Path:
    """PNG with one frame per attack type (row 1), per device profile (row 2) and per scene profile (row 3)."""
    import cv2

    cfg = cfg or SynthConfig()
    rows = [
        [(k, render_video(subject, k, "iphone_12", "indoor", cfg)) for k in ("live",) + cfg.attack_types],
        [(d, render_video(subject, "live", d, "indoor", cfg)) for d in DEVICES],
        [(s, render_video(subject, "live", "iphone_12", s, cfg)) for s in SCENES],
    ]
    H, W = cfg.size
    ncol = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (H + 22), ncol * (W + 4), 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, (name, frames) in enumerate(row):
            f = frames[min(frame, len(frames) - 1)]
            h, w = f.shape[:2]  # smaller devices keep their real size, top-left aligned
            y0, x0 = i * (H + 22) + 20, j * (W + 4)
            sheet[y0:y0 + h, x0:x0 + w] = f
            cv2.putText(sheet, name, (x0 + 2, y0 - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out_png


# The generator's public face: its config and presets live in components.data.synth, callers import them here.
__all__ = ["ATTACKS", "PRESETS", "SPLIT_BY", "SynthConfig", "preset", "identity_names", "load_identities",
           "load_face_image", "config_identities", "subject_identity", "render_video", "subject_splits",
           "identity_splits", "dataset_splits", "empty_splits", "plan_dataset", "generate_dataset", "contact_sheet"]
