"""Held stills: a photo that moves only as a hand holds it (rigid, tremor band, no pulse)."""
from __future__ import annotations

import numpy as np
import pytest

from components.data.held_still import HeldStillConfig, hand_motion, held_still_frames, write_held_still


def _shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sub-pixel translation of grey image b relative to a (phase correlation)."""
    import cv2

    (dx, dy), _ = cv2.phaseCorrelate(a.astype(np.float64), b.astype(np.float64))
    return np.array([dx, dy])


def test_length_and_pixels_are_the_photo_s(real_face_rgb):
    cfg = HeldStillConfig(seconds=2.5, fps=30)
    frames = held_still_frames(real_face_rgb, cfg, seed=1)  # (75, 512, 512, 3)
    assert frames.shape == (75, 512, 512, 3) and frames.dtype == np.uint8
    # Every frame is the photo up to a small shift and noise: close to it on average, never identical twice.
    err = np.abs(frames.astype(float) - real_face_rgb.astype(float)).mean(axis=(1, 2, 3))
    assert err.max() < 25
    assert not np.array_equal(frames[0], frames[1])


def test_motion_is_rigid_sub_pixel_tremor_plus_slow_sway():
    cfg = HeldStillConfig(seconds=4.0, fps=30, sway_px=0.0, rotation_deg=0.0, tremor_px=0.4)
    m = hand_motion(cfg, np.random.default_rng(0))  # (120, 5)
    assert m.shape == (120, 5) and not m[:, 3:].any()  # no out-of-plane turn unless asked for
    assert np.sqrt((m[:, 0] ** 2).mean()) == pytest.approx(0.4, rel=1e-6)  # RMS as configured: sub-pixel
    power = np.abs(np.fft.rfft(m[:, 0])) ** 2
    f = np.fft.rfftfreq(120, 1 / 30)
    band = (f >= 8) & (f <= 12)
    assert power[band].sum() / power.sum() > 0.99  # tremor lives in the physiological 8-12 Hz band
    sway = hand_motion(HeldStillConfig(seconds=4.0, tremor_px=0.0, sway_px=1.5, rotation_deg=0.0),
                       np.random.default_rng(0))[:, 0]
    p2 = np.abs(np.fft.rfft(sway)) ** 2
    assert p2[f <= 3].sum() > 0.999 * p2.sum()  # the sway is slow (below 3 Hz)...
    assert p2[(f > 0) & (f < 1)].sum() > p2[(f >= 1) & (f <= 3)].sum()  # ...and 1/f: power falls with frequency


def test_frames_follow_the_planned_shift_and_carry_no_pulse(real_face_rgb):
    cfg = HeldStillConfig(seconds=1.0, fps=30, tremor_px=0.5, sway_px=2.0, rotation_deg=0.0, noise_sigma=0.0)
    frames = held_still_frames(real_face_rgb, cfg, seed=3)
    planned = hand_motion(cfg, np.random.default_rng(3))
    grey = frames.astype(np.float64).mean(axis=3)
    ref = real_face_rgb.astype(np.float64).mean(axis=2)
    got = np.array([_shift(ref, g) for g in grey[:10]])
    # measured shift == planned shift (phase correlation is good to ~0.2 px at these sizes)
    np.testing.assert_allclose(got, planned[:10, :2], atol=0.25)
    assert np.corrcoef(got.ravel(), planned[:10, :2].ravel())[0, 1] > 0.99
    # Nothing else changes over time (no pulse, no blink, no flicker): held still, it is the photo itself.
    still = held_still_frames(real_face_rgb, HeldStillConfig(seconds=0.5, tremor_px=0, sway_px=0, rotation_deg=0,
                                                             noise_sigma=0))
    assert all(np.array_equal(f, real_face_rgb) for f in still)


def test_a_tilted_sheet_moves_by_its_perspective_and_nothing_else(real_face_rgb):
    import cv2

    from components.data.held_still import sheet_homography

    h, w = real_face_rgb.shape[:2]
    # No out-of-plane turn: the homography is the similarity the untilted path warps with.
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 3.0, 1.0)
    m[:, 2] += (1.5, -2.0)
    np.testing.assert_allclose(sheet_homography(w, h, 1.5, -2.0, 3.0, 0.0, 0.0), np.vstack([m, [0, 0, 1]]),
                               atol=1e-5)
    # A yaw shrinks the side that turns away more than the near side grows: the keystone a similarity cannot make.
    hm = sheet_homography(w, h, 0, 0, 0, 0, 10.0)
    corners = cv2.perspectiveTransform(np.array([[[0, 0], [0, h], [w, 0], [w, h]]], np.float32), hm)[0]
    left, right = corners[1, 1] - corners[0, 1], corners[3, 1] - corners[2, 1]
    assert abs(left - right) > 0.02 * h
    cfg = HeldStillConfig(seconds=1.0, fps=30, tilt_deg=2.0, noise_sigma=0.0)
    plan = hand_motion(cfg, np.random.default_rng(5))  # (30, 5)
    assert np.sqrt((plan[:, 3:] ** 2).mean(0)) == pytest.approx([2.0, 2.0], rel=1e-6)
    frames = held_still_frames(real_face_rgb, cfg, seed=5)
    want = cv2.warpPerspective(real_face_rgb.astype(np.float32), sheet_homography(w, h, *plan[7]), (w, h),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    np.testing.assert_array_equal(frames[7], np.clip(np.rint(want), 0, 255).astype(np.uint8))
    # The untilted clip of a seed is the one it always was: the turn draws its noise after the rest.
    flat = HeldStillConfig(seconds=1.0, fps=30, noise_sigma=0.0)
    np.testing.assert_array_equal(hand_motion(flat, np.random.default_rng(5))[:, :3], plan[:, :3])


def test_a_bowed_sheet_flexes_as_no_homography_can_and_its_frames_follow_the_geometry(real_face_rgb):
    from components.data.held_still import _bent_maps, bow, sheet_homography, sheet_points
    from components.inference.video_head import homography_residual

    h, w = real_face_rgb.shape[:2]
    grid = np.stack(np.meshgrid(np.linspace(0.2 * w, 0.8 * w, 7), np.linspace(0.2 * h, 0.8 * h, 7)), -1).reshape(-1, 2)
    motion = (2.0, -1.0, 0.5, 3.0, -4.0)
    # Flat: exactly the homography's points.
    flat = cv2_points(grid, sheet_homography(w, h, *motion))
    np.testing.assert_allclose(sheet_points(grid, w, h, *motion), flat, atol=1e-6)
    # Bowed, the centre comes toward the camera and is magnified: wider than the flat sheet's middle.
    bent = sheet_points(grid, w, h, *motion, bow_share=0.05)
    assert np.ptp(bent[21:28, 0]) > np.ptp(flat[21:28, 0])  # the middle row of the 7x7 grid
    # A bow that changes between two frames moves the points by more than any homography explains; a flat
    # sheet turning between the same two poses by nothing.
    later = (2.5, -1.5, 0.3, 1.0, 2.0)
    assert homography_residual(flat, cv2_points(grid, sheet_homography(w, h, *later))) < 1e-6
    assert homography_residual(bent, sheet_points(grid, w, h, *later, bow_share=0.08)) > 0.05
    # The frame's map inverts the projection: each mapped pixel projects back onto itself (well under 0.1 px).
    mx, my = _bent_maps(w, h, np.array(motion), 1.0, 0.05)
    ys, xs = np.mgrid[0:h:9, 0:w:9]
    back = sheet_points(np.column_stack([mx[ys, xs].ravel(), my[ys, xs].ravel()]).astype(np.float64), w, h, *motion,
                        bow_share=0.05)
    assert np.abs(back - np.column_stack([xs.ravel(), ys.ravel()])).max() < 0.1
    # The bow flexes around its mean, never inverts, and a flat sheet draws nothing (its seed's clip is unchanged).
    cfg = HeldStillConfig(seconds=2.0, fps=30, bend=0.05, bend_flex=0.3)
    b = bow(cfg, np.random.default_rng(1))
    assert b.min() >= 0 and b.mean() == pytest.approx(0.05, rel=0.2) and 0.005 < b.std() < 0.03
    rng = np.random.default_rng(3)
    assert not bow(HeldStillConfig(), rng).any() and rng.random() == np.random.default_rng(3).random()
    frames = held_still_frames(real_face_rgb, HeldStillConfig(seconds=1.0, fps=30, bend=0.05, noise_sigma=0.0), 3)
    assert frames.shape == (30, h, w, 3) and not np.array_equal(frames[0], frames[-1])
    with pytest.raises(ValueError, match="bend"):
        HeldStillConfig(bend=0.5)


def cv2_points(points: np.ndarray, hm: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.perspectiveTransform(points[None].astype(np.float64), hm)[0]


def test_written_file_decodes_and_bad_inputs_are_refused(tmp_path, real_face_rgb):
    from components.data.video import read_frames

    path = write_held_still(tmp_path / "still.mp4", real_face_rgb[:101, :99], HeldStillConfig(seconds=1, fps=20))
    frames = read_frames(path)
    assert frames.shape == (20, 100, 98, 3)  # odd sides trimmed to even for the codec
    # The same seed writes the same bytes (a benchmark's held stills do not depend on the run or the machine).
    again = write_held_still(tmp_path / "again.mp4", real_face_rgb[:101, :99], HeldStillConfig(seconds=1, fps=20))
    assert again.read_bytes() == path.read_bytes()
    with pytest.raises(ValueError, match="uint8"):
        held_still_frames(real_face_rgb.astype(np.float32))
    with pytest.raises(ValueError, match="too small"):
        held_still_frames(real_face_rgb[:8, :8])
    with pytest.raises(ValueError, match="tremor_hz"):
        HeldStillConfig(fps=15)  # 8-12 Hz tremor cannot be sampled at 15 fps
    with pytest.raises(ValueError, match="tilt_deg"):
        HeldStillConfig(tilt_deg=-1)
    with pytest.raises(ValueError, match="focal"):
        HeldStillConfig(focal=0.0)
