"""The synthetic generator: byte-reproducible, correctly labelled, faces detectable, subjects/identities never
leak, every physical cue parameter has a measurable effect, temporal_only frames match one at a time."""
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
    # Without motion, blinks, bending and noise, the face-region green mean of a live video oscillates; a
    # print's does not.
    import dataclasses

    import components.data.profiles as profiles

    quiet = dataclasses.replace(profiles.DEVICES["iphone_12"], noise=0.0)
    monkeypatch.setitem(profiles.DEVICES, "iphone_12", quiet)
    cfg = SynthConfig(n_frames=40, motion_px=0.0, expression_px=0.0, blink_rate_hz=0.0, print_bend=0.0,
                      temporal_only=True, attack_types=("print",))
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


# ------------------------------------------------------------------------------------------- identities
def test_at_least_12_bundled_identities_with_landmarks_inside_their_images():
    from importlib import resources

    from components.data.synthetic import load_face_image, load_identities

    ids = load_identities()
    assert len(ids) >= 12 and len({i.name for i in ids}) == len(ids)
    folder = resources.files("components.data.faces")
    assert sum(f.stat().st_size for f in Path(str(folder)).iterdir() if f.is_file()) < 2.6e6
    for ident in ids:
        assert ident.package and ident.path and ident.licence
        for im in ident.images:
            h, w = load_face_image(im.file).shape[:2]
            for x, y in (im.left_eye, im.right_eye, im.mouth):
                assert 0 <= x < w and 0 <= y < h, (ident.name, im.file)
            assert im.left_eye[0] < im.right_eye[0] and im.mouth[1] > max(im.left_eye[1], im.right_eye[1])
            assert 20 < im.face_w < w


def test_every_identity_renders_to_exactly_one_detectable_face():
    # One live frame per identity at the default size, on the sharpest and on the smallest (0.8) device.
    import dlib

    from components.data.synthetic import identity_names

    det = dlib.get_frontal_face_detector()
    cfg = SynthConfig(n_frames=2)
    for k, name in enumerate(identity_names()):
        for device in ("iphone_12", "android_lowend"):
            frame = render_video(k, "live", device, "indoor", cfg)[0]
            boxes = det(frame, 1)
            assert len(boxes) == 1, f"{name}/{device}: {len(boxes)} faces"
            assert boxes[0].width() >= 45


def test_identity_split_keeps_dev_and_test_people_out_of_training():
    from components.data.synthetic import identity_names, identity_splits

    cfg = SynthConfig(n_subjects=30, devices=("iphone_12",), scenes=("indoor",), split_by="identity")
    plan = plan_dataset(cfg)
    plan["identity"] = plan["meta"].map(lambda m: json.loads(m)["identity"])
    by_split = plan.groupby("split")["identity"].agg(set).to_dict()
    assert set(plan["identity"]) == set(identity_names())  # round-robin over every identity
    assert by_split["dev"] and by_split["test"]
    assert not by_split["train"] & (by_split["dev"] | by_split["test"])
    assert not by_split["dev"] & by_split["test"]
    assert (plan.groupby("identity")["split"].nunique() == 1).all()
    assert (plan.groupby("subject_id")["split"].nunique() == 1).all()
    assert dict(zip(plan["identity"], plan["split"])) == identity_splits(cfg)
    # split_by="subject" (the default) rotates subjects over splits, so people do recur across splits.
    subj = plan_dataset(dataclasses_replace(cfg, split_by="subject"))
    subj["identity"] = subj["meta"].map(lambda m: json.loads(m)["identity"])
    assert (subj.groupby("identity")["split"].nunique() > 1).any()
    assert list(subj["split"].drop_duplicates()) == ["train", "dev", "test"]


def dataclasses_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_sample_v1_preset_reproduces_the_dvc_sample_bit_for_bit(tmp_path):
    # data/sample/ was made by the v1 renderer; its DVC cache listing (committed) has every file's md5.
    import hashlib

    from components.data.synthetic import preset

    listing = Path(__file__).resolve().parents[2] / "dvc-storage/files/md5/9c/4ac064235556bbd899e975c786a35b.dir"
    if not listing.is_file():
        pytest.skip("the sample's DVC listing is not in this checkout")
    ref = {d["relpath"]: d["md5"] for d in json.loads(listing.read_text())}
    cfg = SynthConfig(n_subjects=5, seed=0, **preset("sample_v1"))
    from components.data.manifest import COLUMNS, write_manifest
    from components.data.video import write_video

    plan = plan_dataset(cfg)
    write_manifest(plan[COLUMNS].copy(), tmp_path / "manifest.csv")
    assert hashlib.md5((tmp_path / "manifest.csv").read_bytes()).hexdigest() == ref["sample/manifest.csv"]
    for r in plan.iloc[[0, 15, 47]].itertuples():  # live, certificate/print, another subject
        write_video(tmp_path / r.path, render_video(r._12, r.attack_type, r.device, r.scene, cfg, index=r._13), cfg.fps)
        assert hashlib.md5((tmp_path / r.path).read_bytes()).hexdigest() == ref[f"sample/{r.path}"], r.video_id


def test_presets_and_v1_guard():
    from components.data.synthetic import PRESETS, preset

    assert set(PRESETS) >= {"default", "hard", "sample_v1"}
    d = SynthConfig()
    assert all(getattr(d, k) == v for k, v in preset("default").items())
    hard = SynthConfig(**preset("hard"))
    assert hard.pulse_amplitude < d.pulse_amplitude and hard.jpeg_quality < 60 and hard.blur_sigma > 0
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nightmare")
    with pytest.raises(ValueError, match="renderer 'v1'"):
        SynthConfig(renderer="v1", print_bend=0.1)
    with pytest.raises(ValueError, match="split_by"):
        SynthConfig(split_by="person")
    with pytest.raises(ValueError, match="unknown or repeated identities"):
        SynthConfig(identities=("nobody",))


# ------------------------------------------------------------------------------------------ cue effects
def _raw(subject: int, kind: str, cfg: SynthConfig, index: int = 0) -> np.ndarray:
    """Scene content before lighting and camera (no sensor noise, no JPEG)."""
    from components.data.synthetic import _render_frames

    return _render_frames(subject, kind, cfg, np.random.default_rng([cfg.seed, subject, index, 1]))[0]


def _face(cfg: SynthConfig, subject: int):
    from components.data.synth.faces import subject_face

    return subject_face(cfg, subject, cfg.size)


CUE = dict(n_frames=24, temporal_only=True, attack_types=("print", "replay", "ai_dynamic"))


def _box(frames, center, half):
    x, y = int(center[0]), int(center[1])
    return frames[:, y - half: y + half, x - half: x + half]


def test_pulse_amplitude_drives_face_colour_over_time():
    # Through the whole camera pipeline: temporal std of the face box's G / (R + B).
    out = {}
    for amp in (0.0, 0.02):
        cfg = SynthConfig(**CUE, pulse_amplitude=amp)
        f = render_video(1, "live", "iphone_12", "indoor", cfg).astype(np.float32)
        box = _box(f, _face(cfg, 1).center, 20).mean(axis=(1, 2))
        out[amp] = (box[:, 1] / (box[:, 0] + box[:, 2])).std()
    assert out[0.02] > 3 * out[0.0], out


def test_blink_rate_drives_eye_region_variance():
    var = {}
    for rate in (0.0, 3.0):
        cfg = SynthConfig(**CUE, blink_rate_hz=rate, motion_px=0.0, expression_px=0.0, pulse_amplitude=0.0)
        face = _face(cfg, 0)
        f = _raw(0, "live", cfg).mean(axis=3)
        var[rate] = _box(f[..., None], face.left_eye, 6).mean(axis=(1, 2, 3)).var()
    assert var[0.0] < 1e-2 < var[3.0], var


def test_expression_moves_the_mouth_against_a_still_head():
    motion = {}
    for px in (0.0, 4.0):
        cfg = SynthConfig(**CUE, expression_px=px, motion_px=0.0, blink_rate_hz=0.0, pulse_amplitude=0.0)
        f = _raw(2, "live", cfg)
        face = _face(cfg, 2)
        motion[px] = np.abs(np.diff(_box(f, face.mouth, 10), axis=0)).mean()
    assert motion[0.0] < 0.02 and motion[4.0] > 0.2, motion


def test_motion_sigma_sets_how_much_of_the_frame_moves_with_the_head():
    # The head region (weight 1) moves rigidly against the background (weight 0, moving only with the
    # camera shake); a large motion_sigma drags the background along (the near-rigid look of a print).
    from components.data.synth.render_v2 import FaceMotion

    cfg = SynthConfig(**CUE)
    face = _face(cfg, 3)
    fm = FaceMotion(face, cfg)
    cx, cy = int(face.center[0]), int(face.center[1])
    for sigma, corner_range in ((0.75, (0.0, 0.01)), (4.0, (0.5, 1.0))):
        w = fm.head_weight(sigma)
        assert w[cy, cx] > 0.99 and w[cy - 20:cy + 20, cx - 20:cx + 20].min() > 0.97
        assert corner_range[0] <= max(w[0, 0], w[0, -1], w[-1, 0], w[-1, -1]) <= corner_range[1], sigma
    a = _raw(3, "live", SynthConfig(**CUE, motion_sigma=0.75))
    b = _raw(3, "live", SynthConfig(**CUE, motion_sigma=4.0))
    assert np.abs(a[:, :32, :32] - b[:, :32, :32]).mean() > 0.5  # the corner follows the head with 4.0


def test_print_bend_changes_geometry_not_colour():
    flat = _raw(4, "print", SynthConfig(**CUE, print_bend=0.0))
    bent = _raw(4, "print", SynthConfig(**CUE, print_bend=0.08))
    assert np.abs(flat - bent).mean() > 1.0
    assert np.abs(flat.mean(axis=(1, 2, 3)) - bent.mean(axis=(1, 2, 3))).max() < 1.5


def _duplicates(frames):
    return sum(np.array_equal(a, b) for a, b in zip(frames[:-1], frames[1:]))


def test_replay_judder_duplicates_frames():
    # Without the refresh flicker (which differs per camera frame) a duplicated source frame is exact.
    cfg = dict(CUE, replay_flicker=0.0)
    assert _duplicates(_raw(5, "replay", SynthConfig(**cfg, replay_judder=0.0))) == 0
    assert _duplicates(_raw(5, "replay", SynthConfig(**cfg, replay_judder=0.25))) >= 4
    assert _duplicates(_raw(5, "live", SynthConfig(**cfg, replay_judder=0.25))) == 0


def test_replay_flicker_and_gamma():
    cfg = dict(CUE, motion_px=0.0, expression_px=0.0, blink_rate_hz=0.0, replay_judder=0.0)
    beat = {a: _raw(6, "replay", SynthConfig(**cfg, replay_flicker=a)).mean(axis=(1, 2, 3)).std() for a in (0.0, 0.08)}
    assert beat[0.0] < 0.5 < beat[0.08], beat
    # temporal_only keeps the mean brightness; the tone curve changes the spread of intensities.
    spread = {g: _raw(6, "replay", SynthConfig(**cfg, replay_gamma=g))[0].std() for g in (0.6, 1.0)}
    assert abs(spread[0.6] - spread[1.0]) > 3, spread


def test_ai_warp_makes_texture_swim():
    jitter = {}
    for w in (0.0, 2.0):
        cfg = SynthConfig(**CUE, ai_warp=w, motion_px=0.0)
        f = _raw(7, "ai_dynamic", cfg)
        jitter[w] = np.abs(np.diff(_box(f, _face(cfg, 7).left_eye, 12), axis=0)).mean()
    assert jitter[0.0] < 0.05 and jitter[2.0] > 1.0, jitter


def test_blur_and_jpeg_quality_overrides_reduce_detail():
    import cv2

    def sharpness(cfg):
        f = render_video(8, "live", "iphone_12", "indoor", cfg)[0]
        return cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()

    base = SynthConfig(n_frames=2)
    assert sharpness(dataclasses_replace(base, blur_sigma=1.5)) < 0.6 * sharpness(base)
    a = render_video(8, "live", "iphone_12", "indoor", base)
    b = render_video(8, "live", "iphone_12", "indoor", dataclasses_replace(base, jpeg_quality=30))
    assert np.abs(a.astype(np.float32) - b).mean() > 1.0


def test_temporal_only_single_frames_are_not_separable():
    # Per-frame mean colour and sharpness of live vs print frames overlap: the best single threshold on
    # either statistic classifies frames barely better than chance.
    import cv2

    stats = {"live": [], "print": []}
    cfg = SynthConfig(**dict(CUE, n_frames=6))
    for subject in range(8):
        for kind in stats:
            for f in render_video(subject, kind, "android_midrange", "indoor", cfg, index=subject):
                g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
                stats[kind].append((f.mean(), cv2.Laplacian(g, cv2.CV_32F).var()))
    live, prt = np.array(stats["live"]), np.array(stats["print"])
    for j in range(2):
        values = np.concatenate([live[:, j], prt[:, j]])
        labels = np.r_[np.ones(len(live)), np.zeros(len(prt))]
        best = max(max(((values > v) == labels).mean(), ((values <= v) == labels).mean()) for v in values)
        assert best < 0.7, (j, best)


def test_workers_give_the_same_bytes(tiny_dataset, tmp_path):
    out, cfg, _ = tiny_dataset
    generate_dataset(tmp_path / "w", cfg, progress=False, workers=2)
    a, b = _files(out), _files(tmp_path / "w")
    assert sorted(a) == sorted(b) and all(a[k] == b[k] for k in a)


def test_generate_command_identity_split_preset_and_workers(tmp_path):
    from flows.cli import main

    rc = main(["generate", "--out", str(tmp_path / "i"), "--subjects", "4", "--identities", "obama", "biden", "t1_1",
               "t1_2", "--split-by", "identity", "--split-ratio", "2", "1", "1", "--devices", "iphone_12",
               "--scenes", "indoor", "--attacks", "print", "--frames", "4", "--size", "160", "128",
               "--preset", "hard", "--workers", "2", "--no-progress"])
    assert rc == 0
    df = read_manifest(tmp_path / "i" / "manifest.csv")
    ident = df["meta"].map(lambda m: json.loads(m)["identity"])
    assert dict(zip(ident, df["split"])) == {"obama": "train", "biden": "train", "t1_1": "dev", "t1_2": "test"}
    assert all(json.loads(m)["split_by"] == "identity" for m in df["meta"])


def test_generate_warns_about_an_empty_split(tmp_path, capsys):
    """`generate --subjects 3` at 3:1:1 puts everyone in train: never silently, the empty splits are named."""
    from components.data.synthetic import SynthConfig, empty_splits
    from flows.cli import main

    assert empty_splits(SynthConfig(n_subjects=3)) == ["dev", "test"]
    assert empty_splits(SynthConfig(n_subjects=5)) == []
    assert empty_splits(SynthConfig(n_subjects=3, split_ratio=(1, 1, 1))) == []
    assert main(["generate", "--out", str(tmp_path / "d"), "--subjects", "3", "--devices", "iphone_12", "--scenes",
                 "indoor", "--attacks", "print", "--frames", "4", "--size", "160", "128", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "leaves dev, test empty" in err
