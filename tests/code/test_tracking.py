"""The fast face path (components.face.tracking) on real faces with the real dlib backend."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from components.face.tracking import FaceTracker, TrackConfig, iou


@pytest.fixture(scope="module")
def dlib_backend():
    pytest.importorskip("dlib")
    from components.face.landmarks import DlibBackend

    return DlibBackend()


def _moving_face(n: int = 40, side: int = 320, jump_at: int | None = None) -> np.ndarray:
    """skimage's astronaut (public domain, NASA) drifting a few pixels per frame inside a grey frame; from
    ``jump_at`` on the face sits at the far side of the frame (a cut the tracker cannot follow)."""
    import cv2
    from skimage import data

    face = cv2.resize(data.astronaut()[0:260, 130:370], (120, 130), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        f = np.full((side * 3 // 4, side, 3), 96, np.uint8)
        x, y = int(30 + 2 * i + 4 * np.sin(i / 3)), int(40 + 3 * np.cos(i / 4))
        if jump_at is not None and i >= jump_at:
            x = side - 130 - (x - 30) // 4
        f[y:y + 130, x:x + 120] = face
        frames.append(f)
    return np.stack(frames)  # (n, H, W, 3)


def test_tracked_boxes_agree_with_detection_and_skip_most_detections(dlib_backend):
    frames = _moving_face()
    tracker = FaceTracker(dlib_backend, TrackConfig(redetect_every=45))
    ious = []
    for i, f in enumerate(frames):
        got = tracker.detect(f, i)
        ref = dlib_backend.detect(f)
        assert ref, f"dlib finds the face on frame {i}"  # the test's premise
        assert got, f"the tracker lost the face on frame {i}"
        ious.append(iou(got[0].box, ref[0].box))
    assert min(ious) >= 0.5, ious
    assert tracker.full == 1 and tracker.tracked == len(frames) - 1  # one full detection, the rest followed


def test_close_frames_are_searched_in_a_smaller_window(dlib_backend, monkeypatch):
    """Frames at most near_gap apart get a near_scale window, farther ones search_scale; both follow the face."""
    frames = _moving_face(n=16)
    scales = []
    real = FaceTracker._search

    def spy(self, frame, box, search_scale):
        scales.append(search_scale)
        return real(self, frame, box, search_scale)

    monkeypatch.setattr(FaceTracker, "_search", spy)
    tracker = FaceTracker(dlib_backend, TrackConfig(near_gap=3, near_scale=1.5, search_scale=2.0, follow_max_shift=0))
    for i in (0, 3, 6, 9, 15):  # gaps 3, 3, 3, then 6
        got = tracker.detect(frames[i], i)
        assert got and iou(got[0].box, dlib_backend.detect(frames[i])[0].box) >= 0.5
    assert scales == [1.5, 1.5, 1.5, 2.0] and tracker.full == 1


def test_near_frames_are_followed_by_their_landmarks(dlib_backend):
    """Within near_gap the 68 points are fitted in the last box and the box moves with them: no detector run,
    and the same face as the window search finds (boxes and points)."""
    frames = _moving_face(n=12)
    followed = FaceTracker(dlib_backend)
    searched = FaceTracker(dlib_backend, TrackConfig(follow_max_shift=0))
    for i, f in enumerate(frames):
        a, b = followed.detect(f, i)[0], searched.detect(f, i)[0]
        ref = dlib_backend.detect(f)[0]
        assert iou(a.box, ref.box) >= 0.5 and iou(a.box, b.box) >= 0.7, (i, a.box, b.box, ref.box)
        # Mean point distance, in units of the face's width: a few percent, like two detector boxes give.
        assert np.linalg.norm(a.points - b.points, axis=1).mean() < 0.05 * (ref.box[2] - ref.box[0]), i
    assert followed.full == searched.full == 1 and searched.followed == 0
    assert followed.followed >= 9 and followed.tracked == searched.tracked == 11


def test_following_falls_back_to_the_window_search_when_the_points_move_too_far(dlib_backend, monkeypatch):
    frames = _moving_face(n=6)
    searches = []
    real = FaceTracker._search
    monkeypatch.setattr(FaceTracker, "_search", lambda self, *a: searches.append(1) or real(self, *a))
    tracker = FaceTracker(dlib_backend, TrackConfig(follow_max_shift=0.001))  # the face moves 2-5 px a frame
    for i, f in enumerate(frames):
        assert tracker.detect(f, i)
    assert tracker.followed == 0 and len(searches) == tracker.tracked == 5


def test_a_face_that_jumps_is_found_again_by_a_full_detection(dlib_backend):
    """Points fitted where the face was still look like a face: the patch check must refuse them."""
    frames = _moving_face(n=12, jump_at=6)
    tracker = FaceTracker(dlib_backend, TrackConfig(redetect_every=100))
    boxes = [tracker.detect(f, i)[0].box for i, f in enumerate(frames)]
    assert tracker.followed >= 4  # frames 1-5 (before the jump) mostly follow by their points
    assert tracker.full == 2  # frame 0, and frame 6: following refused, then the window search came back empty
    ref = dlib_backend.detect(frames[6])[0].box
    assert iou(boxes[6], ref) > 0.7 and iou(boxes[6], boxes[5]) == 0.0


def test_redetect_every_bounds_the_gap_between_full_detections(dlib_backend):
    frames = _moving_face(n=20)
    tracker = FaceTracker(dlib_backend, TrackConfig(redetect_every=5))
    for i, f in enumerate(frames):
        tracker.detect(f, i)
    assert tracker.full == 4 and tracker.tracked == 16  # frames 0, 5, 10, 15


def test_frames_must_come_in_order_and_backends_must_support_windows(dlib_backend):
    tracker = FaceTracker(dlib_backend)
    f = _moving_face(n=1)[0]
    tracker.detect(f, 3)
    with pytest.raises(ValueError, match="increasing order"):
        tracker.detect(f, 3)

    class DetectOnly:
        name = "detect-only"

        def detect(self, frame):
            return []

    with pytest.raises(TypeError, match="cannot be tracked"):
        FaceTracker(DetectOnly())


@pytest.mark.parametrize("kw, match", [({"redetect_every": 0}, "redetect_every"),
                                       ({"search_scale": 1.0}, "search_scale"),
                                       ({"search_face_px": 10}, "search_face_px"),
                                       ({"min_iou": 1.5}, "min_iou"),
                                       ({"near_gap": -1}, "near_gap"),
                                       ({"near_scale": 2.5}, "near_scale"),
                                       ({"near_scale": 1.1}, "near_scale"),
                                       ({"follow_max_shift": -0.1}, "follow_max_shift"),
                                       ({"follow_max_shift": 0.5}, "follow_max_shift"),
                                       ({"follow_min_ncc": 1.0}, "follow_min_ncc")])
def test_track_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        TrackConfig(**kw)


def test_label_and_inference_configs_check_the_face_path():
    from components.inference.config import CheckpointError, InferenceConfig
    from components.labeling.config import LabelConfig

    with pytest.raises(ValueError, match="face_path"):
        LabelConfig(face_path="guess")
    with pytest.raises(ValueError, match="track: .*redetect_every"):
        LabelConfig(face_path="track", track={"redetect_every": 0})
    with pytest.raises(ValueError, match="track: "):
        LabelConfig(track={"bogus": 1})
    label = LabelConfig(face_path="track", track={"redetect_every": 30})
    inf = InferenceConfig.from_label_config(label, variant="eulernet")
    back = InferenceConfig.from_meta(inf.to_meta())
    # The checkpoint records every tracker option, so a later change of a default cannot change how it is served.
    assert back.face_path == "track" and back.track == dataclasses.asdict(TrackConfig(redetect_every=30))
    # A checkpoint that recorded its options before following existed is served as it was labeled: no following.
    old = inf.to_meta()
    del old["landmark"]["track"]["follow_max_shift"], old["landmark"]["track"]["follow_min_ncc"]
    assert InferenceConfig.from_meta(old).track == {**back.track, "follow_max_shift": 0.0}
    # One that recorded nothing ({}: before options were resolved) keeps getting today's defaults.
    none = inf.to_meta()
    none["landmark"]["track"] = {}
    assert InferenceConfig.from_meta(none).track == {}
    # A checkpoint written before the face path existed was labeled by detecting every sampled frame.
    meta = inf.to_meta()
    del meta["landmark"]["face_path"], meta["landmark"]["track"]
    assert InferenceConfig.from_meta(meta).face_path == "detect"
    with pytest.raises(CheckpointError, match="face_path"):
        InferenceConfig(variant="eulernet", crop_size=64, face_path="guess")


def test_clips_from_the_tracked_path_match_the_detected_path(dlib_backend):
    from components.face.clips import extract_clips

    frames = _moving_face(n=40)
    a = extract_clips(frames, dlib_backend, crop_size=64, clip_len=4, clip_interval=3, max_clips=3)
    b = extract_clips(frames, dlib_backend, crop_size=64, clip_len=4, clip_interval=3, max_clips=3,
                      face_path="track")
    assert a.starts == b.starts and a.crops.shape == b.crops.shape == (3, 4, 64, 64, 3)
    assert a.full_detections == 12 and b.full_detections == 1
    # Same face, same alignment up to the landmark jitter of a different box: crops differ by a few grey levels.
    diff = np.abs(a.crops.astype(np.float32) - b.crops.astype(np.float32)).mean()
    assert diff < 12.0, diff
    assert np.abs(a.points - b.points).mean() < 2.0  # crop pixels


def test_a_large_face_is_settled_without_the_upsampled_pass(dlib_backend):
    import cv2

    small = _moving_face(n=1)[0]  # dlib's box ~43 px: only the upsampled pass finds it
    big = cv2.resize(small[40:200, 10:190], None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR)  # box ~170 px
    for frame, coarse in ((small, 0), (big, 1)):
        tracker = FaceTracker(dlib_backend)
        got = tracker.detect(frame, 0)
        ref = dlib_backend.detect(frame)
        assert tracker.coarse == coarse and tracker.full == 1
        assert len(got) == len(ref) == 1 and iou(got[0].box, ref[0].box) > 0.6
    with pytest.raises(ValueError, match="coarse_min_face_px"):
        TrackConfig(coarse_min_face_px=100)


def test_a_redetection_scaled_to_the_followed_face_still_finds_a_comparable_second_face(dlib_backend):
    """Re-detections search the frame at coarse_min_face_px / face width (here ~1.8x) instead of dlib's 2x
    upsampled pass; a second face half as wide as the followed one (the several-faces check counts it) must
    still be found, with the boxes the full pass gives."""
    import cv2
    from skimage import data

    src = data.astronaut()[0:260, 130:370]

    def frame(second: bool) -> np.ndarray:
        f = np.full((300, 480, 3), 96, np.uint8)
        a = cv2.resize(src, (240, 260), interpolation=cv2.INTER_AREA)  # dlib box ~89 px
        f[20:280, 20:260] = a
        if second:
            b = cv2.resize(src, (140, 151), interpolation=cv2.INTER_AREA)  # box ~52 px: 0.34 of the area
            f[40:191, 300:440] = b
        return f

    tracker = FaceTracker(dlib_backend, TrackConfig(redetect_every=1))
    first = tracker.detect(frame(False), 0)
    assert len(first) == 1 and tracker.coarse == 0  # a first detection of a < 160 px face: the upsampled pass
    again = tracker.detect(frame(True), 1)
    ref = dlib_backend.detect(frame(True))
    assert tracker.full == 2 and tracker.coarse == 1  # the re-detection was settled by the scaled pass
    assert len(ref) == len(again) == 2
    for got, want in zip(again, ref):  # both largest first
        assert iou(got.box, want.box) > 0.6, (got.box, want.box)
    # A followed face too small for a scaled pass below 2x falls back to the backend's own detection.
    small = FaceTracker(dlib_backend, TrackConfig(redetect_every=1))
    tiny = _moving_face(n=2)
    small.detect(tiny[0], 0)
    small.detect(tiny[1], 1)
    assert small.full == 2 and small.coarse == 0
