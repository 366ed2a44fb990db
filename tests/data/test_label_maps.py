"""Aligned crops, the three label maps and clip extraction, on real faces and on shapes with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from components.face.clips import LabelingError, extract_clips
from components.face.crop import align_crop, similarity_transform, transform_points
from components.face.landmarks import JAW, NOSE_TIP, make_backend
from components.labeling.maps import CONTOUR, binary_mask, depth_map, fit_template_depth, location_map, template_face_3d


@pytest.fixture(scope="module")
def backend():
    return make_backend("dlib")


@pytest.fixture(scope="module")
def astronaut_face(backend, real_face_rgb):
    return backend.detect(real_face_rgb)[0]


def _square_contour(x0, y0, x1, y1, scale):
    """68 points whose contour polygon (jaw 0..16 then brows 26..17) is the rectangle [x0,x1]x[y0,y1] (map units)."""
    pts = np.zeros((68, 2))
    jaw = np.concatenate([  # down the left side, along the bottom, up the right side: 17 points
        np.stack([np.full(6, x0), np.linspace(y0, y1, 6)], 1),
        np.stack([np.linspace(x0, x1, 7)[1:-1], np.full(5, y1)], 1),
        np.stack([np.full(6, x1), np.linspace(y1, y0, 6)], 1)])
    pts[JAW] = jaw
    pts[17:27] = np.stack([np.linspace(x0 + 1, x1 - 1, 10), np.full(10, y0)], 1)  # brows along the top edge
    pts[27:] = [(x0 + x1) / 2, (y0 + y1) / 2]
    return pts * scale


def test_location_map_matches_exact_pixel_coverage():
    # Rectangle edges at x=4.5, 20.25 and y=6.25, 26.5 map pixels: coverage of edge pixels is known exactly.
    pts = _square_contour(4.5, 6.25, 20.25, 26.5, scale=256 / 32)  # in crop pixels of a 256 crop
    lm = location_map(pts, crop_size=256, out_size=32, live=True)
    assert lm.shape == (32, 32) and lm.dtype == np.float32
    assert lm[10, 4] == pytest.approx(0.5)  # left edge column
    assert lm[10, 20] == pytest.approx(0.25)  # right edge column
    assert lm[6, 10] == pytest.approx(0.75)  # top edge row
    assert lm[26, 10] == pytest.approx(0.5)  # bottom edge row
    assert lm[6, 4] == pytest.approx(0.375)  # corner: 0.5 x 0.75
    assert (lm[7:26, 5:20] == 1).all()
    outside = np.ones_like(lm, bool)
    outside[6:27, 4:21] = False
    assert (lm[outside] == 0).all()
    assert lm.sum() == pytest.approx(15.75 * 20.25, abs=1e-3)
    assert (location_map(pts, 256, 32, live=False) == 0).all()


def test_location_map_on_real_face(real_face_rgb, astronaut_face):
    crop, pts = align_crop(real_face_rgb, astronaut_face, 256)
    lm = location_map(pts, 256, 32, live=True)
    nose = (pts[NOSE_TIP] / 8).astype(int)
    assert lm[nose[1], nose[0]] == 1.0  # well inside the contour
    assert lm[0, 0] == 0 and lm[31, 31] == 0 and lm[0, 31] == 0 and lm[31, 0] == 0
    edge = (lm > 0) & (lm < 1)
    assert edge.sum() >= 20  # the anti-aliased rim
    assert set(np.unique(lm[edge] * 64).round(6)) - set(range(1, 64)) == set()  # multiples of 1/64 (8x8 supersample)
    # The filled area equals the contour polygon's area (shoelace), in map pixels.
    poly = pts[CONTOUR] / 8
    area = 0.5 * abs(np.dot(poly[:, 0], np.roll(poly[:, 1], 1)) - np.dot(poly[:, 1], np.roll(poly[:, 0], 1)))
    assert lm.sum() == pytest.approx(area, rel=0.02)
    attack = location_map(pts, 256, 32, live=False)
    assert attack.shape == (32, 32) and (attack == 0).all()


def test_binary_mask():
    assert (binary_mask(32, True) == 1).all() and (binary_mask(32, False) == 0).all()
    assert binary_mask(16, True).shape == (16, 16) and binary_mask(16, True).dtype == np.float32


def test_depth_map_nose_above_jaw(real_face_rgb, astronaut_face):
    _, pts = align_crop(real_face_rgb, astronaut_face, 256)
    d = depth_map(pts, 256, 32, live=True)
    assert d.shape == (32, 32) and d.dtype == np.float32 and d.min() >= 0 and d.max() <= 1
    nose = d[int(pts[NOSE_TIP, 1] / 8), int(pts[NOSE_TIP, 0] / 8)]
    jaw = np.array([d[int(y / 8), min(int(x / 8), 31)] for x, y in pts[[2, 4, 12, 14]]])
    assert nose > 0.8 and (nose > jaw + 0.3).all()
    assert d[0, 0] == 0 and d[31, 31] == 0  # outside the face hull
    assert (depth_map(pts, 256, 32, live=False) == 0).all()


def test_template_fit_follows_head_turn():
    tpl = template_face_3d()
    assert tpl[NOSE_TIP, 2] == tpl[:, 2].max()  # the nose tip is the template's nearest point
    frontal = fit_template_depth(tpl[:, :2] * 60 + 128)
    assert frontal[NOSE_TIP] > frontal[JAW].max()
    np.testing.assert_allclose(frontal / 60, tpl[:, 2] - tpl[:, 2].mean() + frontal.mean() / 60, atol=1e-6)
    # Yaw 30 degrees: the far jaw side gets deeper than the near one.
    a = np.deg2rad(30)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    turned = tpl @ rot.T
    z = fit_template_depth(turned[:, :2] * 60 + 128)
    assert z[NOSE_TIP] > np.median(z)
    np.testing.assert_allclose(z - z.mean(), (turned[:, 2] - turned[:, 2].mean()) * 60, atol=1e-6)


def test_depth_map_from_backend_points3d_is_oriented_nose_up(real_face_rgb, astronaut_face):
    _, pts = align_crop(real_face_rgb, astronaut_face, 256)
    z = template_face_3d()[:, 2] * 50
    for sign in (1, -1):  # either depth convention of a 3D backend gives the nose as the highest point
        d = depth_map(pts, 256, 32, True, points3d=np.hstack([pts, sign * z[:, None]]))
        assert d[int(pts[NOSE_TIP, 1] / 8), int(pts[NOSE_TIP, 0] / 8)] > 0.8


def test_align_crop_levels_eyes_and_carries_landmarks(backend, real_face_rgb):
    import cv2

    # Tilt the real photo by 20 degrees: the aligned crop must be level again.
    m = cv2.getRotationMatrix2D((256, 256), 20, 1.0)
    tilted = cv2.warpAffine(real_face_rgb, m, (512, 512))
    face = backend.detect(tilted)[0]
    crop, pts = align_crop(tilted, face, 256, face_fraction=0.75)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8 and pts.shape == (68, 2)
    eye_r, eye_l = pts[36:42].mean(0), pts[42:48].mean(0)
    assert abs(eye_r[1] - eye_l[1]) < 0.5
    extent = np.ptp(pts, 0)
    assert extent.max() == pytest.approx(0.75 * 256, rel=1e-3)
    assert np.abs((pts.min(0) + pts.max(0)) / 2 - 128).max() < 0.5
    # The carried landmarks match what the detector finds on the crop itself.
    again = backend.detect(crop)[0].points
    assert np.abs(again - pts).mean() < 4.0
    # transform_points and similarity_transform agree with align_crop.
    mat = similarity_transform(face.points, 256, 0.75)
    np.testing.assert_allclose(transform_points(mat, face.points), pts, atol=1e-4)
    with pytest.raises(ValueError, match="68 landmarks"):
        align_crop(tilted, np.zeros((5, 2)), 256)


def _face_frames(img, n, side=200, cx=220, cy=130):
    frames = []
    for i in range(n):
        dx, dy = int(round(3 * np.sin(i / 3))), int(round(2 * np.cos(i / 4)))
        frames.append(img[cy - side // 2 + dy: cy + side // 2 + dy, cx - side // 2 + dx: cx + side // 2 + dx])
    return np.stack(frames)  # (n, side, side, 3)


def test_extract_clips_shapes_and_borrowed_frame(backend, real_face_rgb):
    frames = _face_frames(real_face_rgb, 22)
    frames[3] = 0  # a black frame inside the first clip (frames 0, 3, 6, 9)
    clips = extract_clips(frames, backend, 64, clip_len=4, clip_interval=3)
    assert clips.starts == [0, 10]
    assert clips.crops.shape == (2, 4, 64, 64, 3) and clips.crops.dtype == np.uint8
    assert clips.points.shape == (2, 4, 68, 2) and clips.points3d is None
    assert clips.n_frames_no_face == 1 and clips.max_faces == 1
    # The black frame's landmarks were borrowed from its nearest neighbour in the clip (frame 0).
    np.testing.assert_allclose(clips.points[0, 1], clips.points[0, 0], atol=1e-5)
    assert clips.crops[0, 1].max() == 0 and clips.crops[0, 0].mean() > 40
    x0, y0, x1, y1 = clips.box
    assert 40 < (x0 + x1) / 2 < 160 and 0 < y0 < y1 < 200
    one = extract_clips(frames, backend, 64, max_clips=1)
    assert one.starts == [0] and len(one) == 1


def test_extract_clips_errors(backend, real_face_rgb):
    with pytest.raises(LabelingError) as e:
        extract_clips(_face_frames(real_face_rgb, 9), backend, 64)
    assert e.value.reason == "too_short"
    noise = np.random.default_rng(0).integers(0, 256, (12, 96, 96, 3), dtype=np.uint8)
    with pytest.raises(LabelingError) as e:
        extract_clips(noise, backend, 64)
    assert e.value.reason == "no_face"
    face = _face_frames(real_face_rgb, 10, side=180)
    two = np.concatenate([face, face[:, :, ::-1]], axis=2)  # (10, 180, 360, 3): the face and its mirror image
    with pytest.raises(LabelingError) as e:
        extract_clips(two, backend, 64)
    assert e.value.reason == "multiple_faces"
    ok = extract_clips(two, backend, 64, allow_multiple=True)
    assert ok.max_faces == 2 and len(ok) == 1
