"""The rPPG reading (components/metrics/pulse.py): a pulse is found at its rate, brightness cancels, noise is not
a pulse, and bad input is refused."""
import numpy as np
import pytest

from components.metrics.pulse import (
    bandpass,
    fill_gaps,
    pos_trace,
    pulse_snr,
    region_means,
    skin_regions,
    video_pulse_snr,
)

FPS = 30.0
SKIN = np.array([180.0, 120.0, 100.0])  # mean RGB of a lit cheek


def _series(seconds: float, pulse_hz: float | None, noise: float, seed: int = 0, drift: bool = True) -> np.ndarray:
    """(F, 3) region means: skin tone x slow brightness drift, plus a pulse (blood absorbs green most), plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FPS)) / FPS
    light = 1 + (0.04 * np.sin(2 * np.pi * 0.25 * t) if drift else 0)  # (F,) an exposure change, all channels
    rgb = SKIN[None] * light[:, None]
    if pulse_hz:
        rgb = rgb + SKIN[None] * np.array([0.3, 1.0, 0.6])[None] * 0.004 * np.sin(2 * np.pi * pulse_hz * t)[:, None]
    return rgb + rng.normal(0, noise, rgb.shape)


def test_a_pulse_is_found_at_its_rate_through_a_brightness_drift():
    rgb = _series(10, pulse_hz=1.2, noise=0.2)
    snr, f0 = pulse_snr(bandpass(pos_trace(rgb, FPS), FPS), FPS)
    assert abs(f0 - 1.2) < 0.05  # 72 beats a minute
    # The same drift and noise without a pulse: no peak stands out.
    snr_none, _ = pulse_snr(bandpass(pos_trace(_series(10, None, noise=0.2), FPS), FPS), FPS)
    assert snr > 2.0 and snr - snr_none > 6.0


def test_a_change_of_brightness_alone_cancels_in_pos():
    rgb = _series(6, pulse_hz=None, noise=0.0)  # skin tone x drift, nothing else
    assert np.abs(pos_trace(rgb, FPS)).max() < 1e-9
    assert np.ptp(rgb[:, 1]) > 5  # while the raw green channel swings by several grey levels


def test_video_pulse_snr_averages_regions_and_fills_short_gaps():
    one = _series(10, pulse_hz=1.0, noise=0.2)
    regions = np.stack([one, _series(10, 1.0, 0.2, seed=1), _series(10, 1.0, 0.2, seed=2)], axis=1)  # (F, 3, 3)
    regions[40:43] = np.nan  # three frames without a face
    pulsed = video_pulse_snr(regions, FPS)
    flat = video_pulse_snr(np.stack([_series(10, None, 0.2, seed=s) for s in range(3)], axis=1), FPS)
    assert np.isfinite(pulsed) and pulsed - flat > 6.0
    regions[: len(regions) // 2 + 1] = np.nan  # a face on fewer than half the frames
    assert np.isnan(video_pulse_snr(regions, FPS))
    assert fill_gaps(np.array([[1.0], [np.nan], [3.0]])).ravel().tolist() == [1.0, 2.0, 3.0]


def test_skin_regions_sit_on_the_cheeks_and_forehead():
    from components.labeling.maps import template_face_3d

    pts = template_face_3d()[:, :2] * 100 + 200  # (68, 2) a frontal face, eyes ~100 px apart
    (l0, lt, l1, lb), (r0, rt, r1, rb), (f0, ft, f1, fb) = skin_regions(pts)
    eyes_y, mouth_y = pts[36:48, 1].mean(), pts[48:68, 1].min()
    assert l1 < pts[30, 0] < r0  # the cheeks either side of the nose tip
    assert eyes_y < lt < lb < mouth_y + 5 and eyes_y < rt < rb < mouth_y + 5
    assert fb < pts[17:27, 1].min() and f0 < f1  # the forehead above the brows
    frame = np.zeros((400, 400, 3), np.uint8)
    frame[:, :200] = (200, 10, 10)
    means = region_means(frame, skin_regions(pts) + [(-50, -50, 1, 1)])
    assert means[0].tolist() == [200, 10, 10] and means[1].tolist() == [0, 0, 0] and np.isnan(means[3]).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"rgb must be a finite \(F, 3\) series"):
        pos_trace(np.zeros((50, 4)), FPS)
    with pytest.raises(ValueError, match="shorter than one POS window"):
        pos_trace(np.ones((10, 3)), FPS)
    with pytest.raises(ValueError, match=r"points must be \(68, 2\)"):
        skin_regions(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least 8 samples"):
        pulse_snr(np.zeros(3), FPS)
