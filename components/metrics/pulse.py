"""The skin's pulse read from a face video (remote photoplethysmography, rPPG): does real, compressed video carry it?

A live face's colour changes with each heartbeat (blood volume under the skin); a held photo, a screen replay of
someone else's video and a generated face carry no pulse of their own. The classic reading is POS (Wang, den Brinker,
Stuijk, de Haan, "Algorithmic Principles of Remote PPG", IEEE TBME 2017): each channel divided by its mean over a
short window, then projected on the plane orthogonal to the skin tone, where the pulse survives and a change of
brightness (which scales all channels alike) cancels. The pulse's strength is the SNR of the trace's spectral peak
in the cardiac band (its first harmonic counted as signal, as de Haan and Jeanne 2013 do).

Used by ``benchmarks/pulse_cue.py``, which asks whether this cue separates real live videos from real attacks.
"""
from __future__ import annotations

import numpy as np

CARDIAC_BAND_HZ = (0.7, 3.0)  # 42-180 beats a minute


def skin_regions(points: np.ndarray) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of the left cheek, the right cheek and the forehead from one frame's 68 landmarks (iBUG
    order): the skin that moves least with speech and holds no hair, eyes or lips."""
    from components.inference.video_head import eye_distance

    p = np.asarray(points, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"points must be (68, 2), got {p.shape}")
    e = max(eye_distance(p), 1.0)
    top, bottom = p[29, 1], p[33, 1] + 0.15 * e  # from the nose's middle to just below its base
    brow = min(p[19, 1], p[24, 1])
    return [(p[2, 0] + 0.15 * e, top, p[31, 0] - 0.1 * e, bottom),
            (p[35, 0] + 0.1 * e, top, p[14, 0] - 0.15 * e, bottom),
            (p[19, 0], brow - 0.45 * e, p[24, 0], brow - 0.1 * e)]


def region_means(frame: np.ndarray, boxes) -> np.ndarray:
    """(R, 3) mean RGB of each box on one (H, W, 3) frame; NaN for a box with fewer than 3x3 pixels in frame."""
    h, w = frame.shape[:2]
    out = np.full((len(boxes), 3), np.nan)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        a, b = max(int(round(x0)), 0), max(int(round(y0)), 0)
        c, d = min(int(round(x1)), w), min(int(round(y1)), h)
        if c - a >= 3 and d - b >= 3:
            out[k] = frame[b:d, a:c].reshape(-1, 3).mean(axis=0)
    return out


def pos_trace(rgb: np.ndarray, fps: float, window_s: float = 1.6) -> np.ndarray:
    """POS pulse trace (F,) of a (F, 3) RGB mean series, overlap-added over windows of ``window_s`` seconds."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 2 or rgb.shape[1] != 3 or not np.isfinite(rgb).all():
        raise ValueError(f"rgb must be a finite (F, 3) series, got {rgb.shape}")
    n, span = len(rgb), max(int(round(window_s * fps)), 2)
    if n < span:
        raise ValueError(f"{n} frames are shorter than one POS window ({span} frames at {fps:g} fps)")
    h = np.zeros(n)
    for t in range(n - span + 1):
        c = rgb[t:t + span] / np.maximum(rgb[t:t + span].mean(axis=0), 1e-9)  # (span, 3), 1 on average
        s1 = c[:, 1] - c[:, 2]
        s2 = c[:, 1] + c[:, 2] - 2 * c[:, 0]
        # Tune the two projections against each other so the one that carries the distortion cancels.
        p = s1 + (s1.std() / max(s2.std(), 1e-12)) * s2
        h[t:t + span] += p - p.mean()
    return h


def pulse_snr(trace: np.ndarray, fps: float, band: tuple[float, float] = CARDIAC_BAND_HZ) -> tuple[float, float]:
    """(SNR in dB, peak frequency in Hz) of a pulse trace: power within 0.1 Hz of the band's strongest frequency
    and 0.2 Hz of its double, over the rest of 0.5-5 Hz. Welch spectrum over up to 8-s segments, linear detrend."""
    from scipy.signal import welch

    x = np.asarray(trace, dtype=np.float64)
    if len(x) < 8:
        raise ValueError(f"a pulse trace needs at least 8 samples, got {len(x)}")
    f, p = welch(x, fs=fps, nperseg=min(len(x), int(round(8 * fps))), nfft=4096, detrend="linear")
    in_band = (f >= band[0]) & (f <= band[1])
    f0 = float(f[in_band][np.argmax(p[in_band])])
    signal = (np.abs(f - f0) <= 0.1) | (np.abs(f - 2 * f0) <= 0.2)
    wide = (f >= 0.5) & (f <= 5.0)
    noise = p[wide & ~signal].sum()
    return float(10 * np.log10(max(p[wide & signal].sum(), 1e-30) / max(noise, 1e-30))), f0


def bandpass(x: np.ndarray, fps: float, band: tuple[float, float] = CARDIAC_BAND_HZ) -> np.ndarray:
    """Zero-phase 3rd-order Butterworth band-pass of a series (the cardiac band by default)."""
    from scipy.signal import butter, filtfilt

    nyq = fps / 2
    b, a = butter(3, [band[0] / nyq, min(band[1] / nyq, 0.95)], btype="band")
    return filtfilt(b, a, np.asarray(x, dtype=np.float64))


def fill_gaps(series: np.ndarray) -> np.ndarray | None:
    """(F, ...) series with NaN rows (frames without a face) filled by linear interpolation over time; None when
    fewer than half the frames have a value."""
    x = np.asarray(series, dtype=np.float64).reshape(len(series), -1).copy()
    ok = np.isfinite(x).all(axis=1)
    if ok.sum() < max(2, len(x) // 2):
        return None
    t = np.arange(len(x))
    for j in range(x.shape[1]):
        x[:, j] = np.interp(t, t[ok], x[ok, j])
    return x.reshape(np.shape(series))


def video_pulse_snr(region_rgb: np.ndarray, fps: float) -> float:
    """Mean pulse SNR (dB) over the regions of a (F, R, 3) series of region means (NaN rows filled over time):
    three skin patches agree on a real pulse and average their noise. NaN when too few frames hold a face."""
    filled = fill_gaps(region_rgb)
    if filled is None:
        return float("nan")
    return float(np.mean([pulse_snr(bandpass(pos_trace(filled[:, k], fps), fps), fps)[0] for k in range(filled.shape[1])]))
