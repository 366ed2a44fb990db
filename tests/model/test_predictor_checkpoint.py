"""Self-describing checkpoints and the Predictor: round trip, weights_only loading, validation, videos."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from components.inference.checkpoint import (
    CHECKPOINT_FORMAT,
    build_meta,
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
)
from components.inference.config import CheckpointError
from components.inference.predictor import Predictor
from components.inference.tensors import clip_scores, to_model_input
from components.model.eulernet import TEST_WIDTH, create_model

S = 32


def _crops(n=5, s=S, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 4, s, s, 3), dtype=np.uint8)  # (N, T, S, S, 3)


def _trained_like(variant="c3"):
    """A model whose weights and BN statistics are not the initial ones (as after training)."""
    torch.manual_seed(0)
    model = create_model(variant, width=TEST_WIDTH)
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model(torch.randn(2, 4, 3, S, S))  # moves BN running stats
    return model.eval()


def _meta(**kw):
    base = dict(variant="c3", crop_size=S, mean=(0.4, 0.45, 0.5), std=(0.2, 0.25, 0.3), clip_len=4,
                clip_interval=3, clips_per_video=2, threshold=0.42, landmark_backend="dlib",
                extra={"epoch": 3, "dev_acer": 0.125})
    return build_meta(**{**base, **kw})


def test_round_trip_gives_identical_scores_and_maps(tmp_path):
    model = _trained_like()
    path = save_checkpoint(tmp_path / "ckpt" / "checkpoint.pt", model, _meta())
    crops = _crops()
    with torch.no_grad():
        want_maps = model(to_model_input(crops, (0.4, 0.45, 0.5), (0.2, 0.25, 0.3))).numpy()
    pred = Predictor.from_checkpoint(path)
    maps = pred.predict_maps(crops)
    assert maps.shape == (5, 4, S // 8, S // 8) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps, want_maps)
    scores = pred.score_clips(crops)
    np.testing.assert_allclose(scores, want_maps.mean(axis=(1, 2, 3)), rtol=1e-6)
    # Internal batching does not change results, nor does loading from the dict instead of the file.
    small = Predictor.from_checkpoint(load_checkpoint(path), batch_size=2)
    np.testing.assert_allclose(small.score_clips(crops), scores, rtol=1e-6, atol=1e-7)
    assert pred.model.training is False


def test_the_scored_window_travels_in_the_checkpoint_and_bounds_every_read(tmp_path, real_face_rgb):
    """``window_seconds`` is saved, read back and applied by ``read_video`` (predict, evaluate, the registered
    model); checkpoints without it read as far as asked, and a bad value is refused when loading."""
    from components.data.video import write_video
    from tests.serve.conftest import face_frames

    video = tmp_path / "v.mp4"
    write_video(video, face_frames(real_face_rgb, 75, live=True, side=96), fps=25)  # 3 s
    model = _trained_like()
    plain = Predictor.from_checkpoint(save_checkpoint(tmp_path / "a.pt", model, _meta()))
    windowed = Predictor.from_checkpoint(save_checkpoint(tmp_path / "b.pt", model, _meta(window_seconds=1.2)))
    assert plain.inference.window_seconds is None and windowed.inference.window_seconds == 1.2
    assert load_checkpoint(tmp_path / "b.pt")["window_seconds"] == 1.2 and "window_seconds" not in load_checkpoint(
        tmp_path / "a.pt")
    assert len(plain.read_video(video)) == 75
    assert len(windowed.read_video(video)) == 30  # 1.2 s at 25 fps
    assert len(windowed.read_video(video, max_frames=10)) == 10  # the caller's bound when it is shorter
    assert windowed.inference.window_frames(29.97) == 36 and plain.inference.window_frames(25) is None
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(CheckpointError, match="window_seconds"):
            _meta(window_seconds=bad)


def test_checkpoint_is_plain_and_self_describing(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _trained_like(), _meta())
    ckpt = torch.load(path, weights_only=True)  # no pickled classes needed
    assert ckpt["format"] == CHECKPOINT_FORMAT
    assert ckpt["variant"] == "c3" and ckpt["label_type"] == "location_map"
    assert ckpt["model_config"]["fusion"] == "concat" and ckpt["model_config"]["width"] == TEST_WIDTH
    assert ckpt["preprocess"] == {"crop_size": S, "mean": [0.4, 0.45, 0.5], "std": [0.2, 0.25, 0.3]}
    assert ckpt["clip"] == {"length": 4, "interval": 3, "per_video": 2}
    assert ckpt["threshold"] == 0.42
    assert ckpt["landmark"] == {"backend": "dlib", "options": {}, "face_fraction": 0.75, "max_side": None,
                                "face_path": "detect", "track": {}}
    assert ckpt["extra"] == {"epoch": 3, "dev_acer": 0.125}
    assert all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values())
    pred = Predictor.from_checkpoint(path)
    assert (pred.crop_size, pred.clip_len, pred.clip_interval, pred.clips_per_video) == (S, 4, 3, 2)
    assert pred.mean == (0.4, 0.45, 0.5) and pred.threshold == 0.42 and pred.label_type == "location_map"
    assert pred.map_size == S // 8 and pred.variant == "c3"
    assert not (tmp_path / "c.pt.tmp").exists()


def test_label_type_defaults_to_the_variants():
    assert build_meta(variant="c1", crop_size=64)["label_type"] == "binary_mask"
    assert build_meta(variant="c5", crop_size=64)["label_type"] == "depth_map"
    assert build_meta(variant="c5", crop_size=64, label_type="location_map")["label_type"] == "location_map"


def test_with_threshold_and_decision():
    pred = Predictor.from_checkpoint(make_checkpoint(_trained_like(), _meta(threshold=None)))
    assert pred.threshold is None
    assert pred.decide(0.7) == ("live", 0.5)  # no dev threshold yet: 0.5
    strict = pred.with_threshold(0.8)
    assert strict.decide(0.7) == ("spoof", 0.8) and pred.threshold is None
    assert strict.model is pred.model  # shares the weights
    with pytest.raises(ValueError):
        pred.with_threshold(float("nan"))


def test_bad_inputs_and_bad_checkpoints(tmp_path):
    model = _trained_like()
    pred = Predictor.from_checkpoint(make_checkpoint(model, _meta()))
    with pytest.raises(ValueError, match="uint8"):
        pred.score_clips(_crops().astype(np.float32))
    with pytest.raises(ValueError, match="32x32"):
        pred.score_clips(_crops(s=40))
    with pytest.raises(ValueError, match=r"\(N, T, S, S, 3\)"):
        pred.score_clips(_crops()[0])
    assert pred.score_clips(_crops(n=0)).shape == (0,)

    with pytest.raises(CheckpointError, match="meta lacks"):
        make_checkpoint(model, {"variant": "c3"})
    with pytest.raises(CheckpointError, match="clip length"):
        make_checkpoint(model, _meta(clip_len=5))
    with pytest.raises(CheckpointError, match="multiple of 8 and >= 32"):
        build_meta(variant="c3", crop_size=30)
    with pytest.raises(CheckpointError, match="unknown variant"):
        build_meta(variant="c7", crop_size=32)
    ckpt = make_checkpoint(model, _meta())
    with pytest.raises(CheckpointError, match="format"):
        Predictor.from_checkpoint({**ckpt, "format": "something/2"})
    wrong = {**ckpt, "model_config": {**ckpt["model_config"], "fusion": "residual_pyramid"}}
    with pytest.raises(CheckpointError, match="do not fit"):
        Predictor.from_checkpoint(wrong)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(junk)


def test_checkpoint_of_every_variant_loads(tmp_path):
    for variant in ("baseline", "c2", "c4"):
        torch.manual_seed(1)
        model = create_model(variant, width=TEST_WIDTH).eval()
        pred = Predictor.from_checkpoint(make_checkpoint(model, build_meta(variant=variant, crop_size=S)))
        with torch.no_grad():
            want = clip_scores(model(to_model_input(_crops(n=2), pred.mean, pred.std))).numpy()
        np.testing.assert_allclose(pred.score_clips(_crops(n=2)), want, rtol=1e-6)


_HAS_LABELING = importlib.util.find_spec("components.face.clips") is not None


@pytest.mark.skipif(not _HAS_LABELING, reason="components.face.clips not available")
def test_predict_video_scores_the_clips_labeling_would_cut(carphone_video_path):
    """A real talking-face video through the real dlib backend: same crops as labeling, averaged."""
    from components.data.video import read_frames
    from components.face.clips import extract_clips

    frames = read_frames(carphone_video_path, max_frames=30)  # (30, 144, 176, 3)
    model = _trained_like()
    pred = Predictor.from_checkpoint(make_checkpoint(model, _meta(clips_per_video=2, threshold=0.3)))
    out = pred.predict_video(frames)
    assert out["n_clips"] == 2 and len(out["clip_scores"]) == 2
    backend = pred.get_backend()  # the checkpoint's ("dlib"), cached by predict_video
    clips = extract_clips(frames, backend, crop_size=S, clip_len=4, clip_interval=3, max_clips=2)
    want = pred.score_clips(clips.crops)
    np.testing.assert_allclose(out["clip_scores"], want, rtol=1e-6)
    assert out["score"] == pytest.approx(float(want.mean()), rel=1e-6)
    assert out["threshold"] == 0.3
    assert out["decision"] == ("live" if out["score"] >= 0.3 else "spoof")
    assert len(out["box"]) == 4 and out["clip_starts"] == list(clips.starts)
    # The backend is built once and reused; an explicit backend object and max_clips are honoured.
    pred.predict_video(frames, max_clips=1)
    assert pred.get_backend("dlib") is backend
    one = pred.predict_video(frames, backend=backend, max_clips=1)
    assert one["n_clips"] == 1
    with pytest.raises(ValueError, match="uint8"):
        pred.predict_video(frames.astype(np.float32))


def test_predictor_crops_like_labeling_from_checkpoint_settings(tmp_path, real_face_rgb):
    """Face fraction and decode size travel in the checkpoint, and extract_clips applies them."""
    import cv2

    from components.face.clips import extract_clips
    from components.face.landmarks import make_backend

    meta = build_meta(variant="c3", crop_size=S, clip_len=4, clip_interval=3, face_fraction=0.6, max_side=256)
    path = save_checkpoint(tmp_path / "c.pt", _trained_like(), meta)
    pred = Predictor.from_checkpoint(path)
    assert (pred.face_fraction, pred.max_side) == (0.6, 256)
    frames = np.repeat(real_face_rgb[None], 10, axis=0)  # (10, 512, 512, 3): larger than max_side
    got = pred.extract_clips(frames)
    small = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in frames])
    want = extract_clips(small, make_backend("dlib"), crop_size=S, clip_len=4, clip_interval=3, face_fraction=0.6)
    np.testing.assert_array_equal(got.crops, want.crops)
    assert got.box[2] <= 256
