"""The synthetic generator: byte-reproducible, correctly labelled, faces detectable, subjects never leak."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.data.manifest import read_manifest
from components.data.synthetic import SynthConfig, generate_dataset, plan_dataset, render_video, subject_splits
from components.data.video import read_frames

TINY = dict(n_subjects=1, devices=("android_lowend", "iphone_12"), scenes=("indoor",), lives_per_cell=1,
            attacks_per_cell=2, n_frames=12, size=(160, 128))


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "a"
    cfg = SynthConfig(**TINY, seed=3)
    return out, cfg, generate_dataset(out, cfg, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tiny_dataset, tmp_path):
    out, cfg, _ = tiny_dataset
    generate_dataset(tmp_path / "b", cfg, progress=False)
    a, b = _files(out), _files(tmp_path / "b")
    assert sorted(a) == sorted(b) and len(a) == 1 + 6  # manifest + 2 devices x (1 live + 2 attacks)
    assert all(a[k] == b[k] for k in a)


def test_other_seed_gives_other_videos(tiny_dataset, tmp_path):
    out, cfg, df = tiny_dataset
    generate_dataset(tmp_path / "c", SynthConfig(**TINY, seed=4), progress=False)
    p = df["path"].iloc[0]
    assert (out / p).read_bytes() != (tmp_path / "c" / p).read_bytes()


def test_manifest_labels_and_videos(tiny_dataset):
    out, cfg, df = tiny_dataset
    back = read_manifest(out / "manifest.csv")
    pd.testing.assert_frame_equal(back, df)
    assert (df["label"] == (df["attack_type"] == "live").astype(int)).all()
    assert sorted(df["attack_type"]) == ["ai_dynamic", "certificate", "live", "live", "print", "replay"]
    assert set(df["os"]) == {"android", "ios"}
    for r in df.itertuples():
        assert f"_{r.attack_type}_" in r.video_id
        frames = read_frames(out / r.path)
        scale = 0.8 if r.device == "android_lowend" else 1.0
        assert frames.shape == (12, round(160 * scale / 2) * 2, round(128 * scale / 2) * 2, 3)
        assert json.loads(r.meta)["seed"] == 3


def test_every_attack_type_is_planned_and_labelled():
    cfg = SynthConfig(n_subjects=2, devices=("iphone_12",), scenes=("indoor", "dark"), attacks_per_cell=2)
    plan = plan_dataset(cfg)
    assert set(plan["attack_type"]) == {"live", "print", "replay", "certificate", "ai_dynamic"}
    assert (plan.groupby("attack_type")["label"].unique().map(list).to_dict()
            == {"live": [1], "print": [0], "replay": [0], "certificate": [0], "ai_dynamic": [0]})


def test_subjects_split_3_1_1_and_never_span_splits():
    assert subject_splits(5) == ["train", "train", "train", "dev", "test"]
    plan = plan_dataset(SynthConfig(n_subjects=10, devices=("iphone_12",), scenes=("indoor",)))
    assert (plan.groupby("subject_id")["split"].nunique() == 1).all()
    assert plan.groupby("split")["subject_id"].nunique().to_dict() == {"train": 6, "dev": 2, "test": 2}


@pytest.mark.parametrize("kind", ["live", "print", "replay", "certificate", "ai_dynamic"])
def test_face_detectable_by_dlib_in_every_attack_type(kind):
    import dlib

    det = dlib.get_frontal_face_detector()
    cfg = SynthConfig(n_frames=6)
    for device, scene, subject in (("android_lowend", "dark", 0), ("iphone_8", "backlight", 1),
                                   ("android_flagship", "outdoor", 2)):
        frames = render_video(subject, kind, device, scene, cfg, index=0)
        boxes, scores, _ = det.run(frames[0], 1, 0.3)
        assert boxes, f"no face in {kind}/{device}/{scene}"
        assert max(b.width() for b in boxes) >= 55


def test_live_pulse_only_in_live(monkeypatch):
    # Without motion and noise, the face-region green mean of a live video oscillates; a print's does not.
    import dataclasses

    import components.data.profiles as profiles

    quiet = dataclasses.replace(profiles.DEVICES["iphone_12"], noise=0.0)
    monkeypatch.setitem(profiles.DEVICES, "iphone_12", quiet)
    cfg = SynthConfig(n_frames=40, motion_px=0.0, temporal_only=True, attack_types=("print",))
    swing = {}
    for kind in ("live", "print"):
        f = render_video(0, kind, "iphone_12", "indoor", cfg, index=0).astype(np.float32)
        h, w = f.shape[1:3]
        g = f[:, h // 3: h // 2, w // 3: 2 * w // 3, 1].mean(axis=(1, 2))
        swing[kind] = g.max() - g.min()
    assert swing["live"] > 1.0 > swing["print"]


def test_temporal_only_frames_share_the_photo_statistics():
    cfg = SynthConfig(n_frames=4, temporal_only=True, attack_types=("print", "replay", "ai_dynamic"))
    means = {k: render_video(0, k, "iphone_12", "indoor", cfg, index=0).mean() for k in
             ("live", "print", "replay", "ai_dynamic")}
    assert max(means.values()) - min(means.values()) < 3.0  # same full-frame photo, no border/card/screen


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown device"):
        SynthConfig(devices=("nokia_3310",))
    with pytest.raises(ValueError, match="temporal_only cannot make 'certificate'"):
        SynthConfig(temporal_only=True)
    with pytest.raises(ValueError, match="size"):
        SynthConfig(size=(64, 64))


def test_generate_command_writes_a_dataset(tmp_path, capsys):
    from flows.cli import main

    rc = main(["generate", "--out", str(tmp_path / "d"), "--subjects", "1", "--devices", "iphone_8",
               "--scenes", "outdoor", "--attacks", "ai_dynamic", "--frames", "10", "--size", "160", "128",
               "--no-progress"])
    assert rc == 0
    df = read_manifest(tmp_path / "d" / "manifest.csv")
    assert list(df["attack_type"]) == ["live", "ai_dynamic"]
    assert "wrote 2 videos of 1 subjects" in capsys.readouterr().out
    assert main(["generate", "--out", str(tmp_path / "e"), "--subjects", "0"]) == 2
    assert "n_subjects must be >= 1" in capsys.readouterr().err
    assert main(["generate", "--out", str(tmp_path / "f"), "--temporal-only", "--attacks", "certificate"]) == 2
    assert "temporal_only cannot make 'certificate'" in capsys.readouterr().err


def test_generate_command_temporal_only_drops_certificate(tmp_path):
    from flows.cli import main

    rc = main(["generate", "--out", str(tmp_path / "t"), "--subjects", "1", "--devices", "iphone_12",
               "--scenes", "indoor", "--attacks-per-cell", "3", "--frames", "10", "--temporal-only",
               "--no-progress"])
    assert rc == 0
    df = read_manifest(tmp_path / "t" / "manifest.csv")
    assert sorted(df["attack_type"]) == ["ai_dynamic", "live", "print", "replay"]
    assert set(df["source"]) == {"synthetic-temporal"}
