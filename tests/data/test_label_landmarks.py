"""Landmark backends on real images/video: dlib (offline default) and face-alignment's real loading path."""
from __future__ import annotations

import numpy as np
import pytest

from components.face.landmarks import FA_WEIGHT_FILES, DlibBackend, Face, make_backend


@pytest.fixture(scope="module")
def dlib_backend():
    return make_backend("dlib")


@pytest.fixture(scope="module")
def grace_hopper_rgb():
    import matplotlib.cbook as cbook
    import matplotlib.image as mimage

    img = mimage.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)  # (600, 512, 3)


def _check_face_in_box(face: Face, frame_shape):
    x0, y0, x1, y1 = face.box
    w, h = x1 - x0, y1 - y0
    assert face.points.shape == (68, 2) and face.points.dtype == np.float32
    pts = face.points
    inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    # dlib's HOG box spans brows to lower lip, so chin and jaw corners sit just outside it; the landmarks must
    # still be centred on the box, mostly inside it, and all within a quarter box-size margin.
    assert inside.mean() >= 0.75, f"only {inside.mean():.0%} of points inside {face.box}"
    cx, cy = pts.mean(0)
    assert x0 < cx < x1 and y0 < cy < y1
    assert (pts[:, 0] >= x0 - 0.25 * w).all() and (pts[:, 0] <= x1 + 0.25 * w).all()
    assert (pts[:, 1] >= y0 - 0.25 * h).all() and (pts[:, 1] <= y1 + 0.35 * h).all()
    # Anatomical order of the iBUG scheme: brows above eyes above nose tip above mouth above chin.
    assert pts[17:27, 1].mean() < pts[36:48, 1].mean() < pts[30, 1] < pts[48:68, 1].mean() < pts[8, 1]
    assert pts[36:42, 0].mean() < pts[42:48, 0].mean()  # subject's right eye on the image's left
    assert 0 <= pts[:, 0].min() and pts[:, 0].max() < frame_shape[1]


def test_dlib_finds_one_face_in_real_photos(dlib_backend, real_face_rgb, grace_hopper_rgb):
    for img, expected_centre in ((real_face_rgb, (220, 125)), (grace_hopper_rgb, (270, 240))):
        faces = dlib_backend.detect(img)
        assert len(faces) == 1
        _check_face_in_box(faces[0], img.shape)
        x0, y0, x1, y1 = faces[0].box
        # Known face positions in these images (within 30 px).
        assert abs((x0 + x1) / 2 - expected_centre[0]) < 30 and abs((y0 + y1) / 2 - expected_centre[1]) < 30
        assert faces[0].score >= 0.3 and faces[0].points3d is None


def test_dlib_on_real_video_frames(dlib_backend, carphone_video_path):
    from components.data.video import read_frames

    frames = read_frames(carphone_video_path, max_frames=40)  # (40, 144, 176, 3)
    found = 0
    for frame in frames[::8]:
        faces = dlib_backend.detect(frame)
        if faces:
            found += 1
            _check_face_in_box(faces[0], frame.shape)
    assert found == 5


def test_dlib_finds_no_face_in_noise_and_rejects_bad_frames(dlib_backend):
    noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    assert dlib_backend.detect(noise) == []
    with pytest.raises(ValueError, match="RGB uint8"):
        dlib_backend.detect(noise.astype(np.float32))
    with pytest.raises(ValueError, match="unknown landmark backend"):
        make_backend("mediapipe")


def test_two_faces_sorted_largest_first(dlib_backend, real_face_rgb):
    import cv2

    face = real_face_rgb[40:220, 130:310]  # (180, 180, 3) the astronaut's face
    small = cv2.resize(face, (120, 120), interpolation=cv2.INTER_AREA)
    canvas = np.full((240, 420, 3), 200, np.uint8)
    canvas[20:140, 10:130] = small
    canvas[30:210, 220:400] = face
    faces = dlib_backend.detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area and faces[0].box[0] > 200


def test_dlib_backend_pickles(dlib_backend, real_face_rgb):
    import pickle

    clone = pickle.loads(pickle.dumps(dlib_backend))
    assert isinstance(clone, DlibBackend)
    np.testing.assert_array_equal(clone.detect(real_face_rgb)[0].points, dlib_backend.detect(real_face_rgb)[0].points)


@pytest.fixture(scope="module")
def fake_torch_home(tmp_path_factory):
    """A TORCH_HOME whose hub/checkpoints hold random-weight files under face-alignment's real names."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN, ResNetDepth

    home = tmp_path_factory.mktemp("torch_home")
    ck = home / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), ck / FA_WEIGHT_FILES["2d"])
    torch.save(FAN(4).state_dict(), ck / FA_WEIGHT_FILES["3d"])
    # The depth checkpoint is a DataParallel training dict: {"state_dict": {"module.<name>": tensor}}.
    torch.save({"state_dict": {f"module.{k}": v for k, v in ResNetDepth().state_dict().items()}},
               ck / FA_WEIGHT_FILES["depth"])
    torch.save(s3fd().state_dict(), ck / FA_WEIGHT_FILES["s3fd"])
    return home


def test_face_alignment_2d_real_load_and_detect(fake_torch_home, monkeypatch, real_face_rgb):
    monkeypatch.setenv("TORCH_HOME", str(fake_torch_home))
    before = sorted(p.name for p in (fake_torch_home / "hub" / "checkpoints").iterdir())
    # face_detector="dlib": face-alignment's own dlib HOG detector, so detect() runs end to end quickly.
    backend = make_backend("face_alignment", landmarks="2d", face_detector="dlib")
    faces = backend.detect(real_face_rgb)
    assert len(faces) == 1
    f = faces[0]
    assert f.points.shape == (68, 2) and f.points3d is None and np.isfinite(f.points).all()
    x0, y0, x1, y1 = f.box
    assert 150 < (x0 + x1) / 2 < 290 and 60 < (y0 + y1) / 2 < 190  # the dlib box on the astronaut's face
    # Random weights put the points anywhere in FAN's crop around the box, never outside the image.
    assert (f.points >= 0).all() and (f.points < 512).all()
    # Nothing was downloaded or replaced: the files the test wrote are what was loaded.
    assert sorted(p.name for p in (fake_torch_home / "hub" / "checkpoints").iterdir()) == before


def test_face_alignment_3d_with_sfd_weights_and_given_boxes(fake_torch_home, monkeypatch, real_face_rgb):
    from components.labeling.maps import depth_map

    monkeypatch.setenv("TORCH_HOME", str(fake_torch_home))
    backend = make_backend("face_alignment", landmarks="3d")  # S3FD + 3DFAN4 + depth net, all loaded for real
    faces = backend.landmarks_for_boxes(real_face_rgb, [(175, 76, 265, 166)])
    assert len(faces) == 1
    f = faces[0]
    assert f.points3d.shape == (68, 3) and np.isfinite(f.points3d).all()
    np.testing.assert_array_equal(f.points, f.points3d[:, :2])
    # The 3D points feed the depth map path (values in [0, 1]) even when they come from random weights.
    pts = (f.points - f.points.min(0)) / np.ptp(f.points, 0).max() * 200 + 28
    d = depth_map(pts, 256, 32, True, points3d=np.hstack([pts, f.points3d[:, 2:]]))
    assert d.shape == (32, 32) and d.min() >= 0 and d.max() <= 1


def test_yunet_backend_finds_the_face_dlib_finds_and_places_the_same_68_points(real_face_rgb, tmp_path):
    """The vendored YuNet detector (sha256 as its SOURCE.md says) on a real face: one face, a box that overlaps
    dlib HOG's (mapped to its convention), 68 points within a few percent of the eye distance of dlib's own;
    nothing on a faceless photo; the backend survives pickling (Ray ships it to workers)."""
    import hashlib
    import pickle

    from skimage import data

    from components.face.landmarks import YUNET_MODEL, DlibBackend, YuNetBackend, make_backend

    digest = hashlib.sha256(YUNET_MODEL.read_bytes()).hexdigest()
    assert digest in (YUNET_MODEL.parent / "SOURCE.md").read_text()
    yunet, hog = make_backend("yunet"), DlibBackend()
    frame = real_face_rgb[::2, ::2].copy()  # (256, 256, 3)
    (y,) = yunet.detect(frame)
    (d,) = hog.detect(frame)

    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    assert iou(y.box, d.box) >= 0.5
    eye = np.linalg.norm(d.points[36:42].mean(0) - d.points[42:48].mean(0))
    nme = np.linalg.norm(y.points - d.points, axis=1).mean() / eye
    assert nme < 0.08, nme
    assert yunet.detect(data.coffee()[100:356, 200:456].copy()) == []
    again = pickle.loads(pickle.dumps(yunet))
    assert isinstance(again, YuNetBackend) and np.allclose(again.detect(frame)[0].points, y.points)
    with pytest.raises(ValueError, match="score_threshold"):
        YuNetBackend(score_threshold=1.5)
