"""A photo held to a camera: one image turned into a short video that moves only as a hand moves it.

This is the attack a single-frame model cannot see and a temporal one must: a print, a phone screen or a photo
of a live person held in front of the camera. Everything per frame is the photo's own pixels; what a camera adds
over time is modelled and nothing else:

* hand tremor: the physiological 8-12 Hz band, sub-pixel (a held sheet at arm's length moves a fraction of a
  pixel at phone resolutions), plus slow 1/f sway of a few pixels, both as one rigid (similarity) motion, so the
  face never deforms: no blink, no mouth, no pulse;
* optionally (``tilt_deg`` > 0) the sheet also turns out of its plane, seen through a pinhole camera: a real hand
  does not keep a print parallel to the lens, and the perspective of a tilting sheet moves the landmarks by more
  than a similarity can explain (keystone), which a similarity-fit motion statistic reads as deformation;
* optionally (``bend`` > 0) the sheet is bowed, as a print held by its edges is, and the bow flexes with the
  hand: a curved surface moves its points in a way no homography explains, which is what a live face's depth
  does too, so this is the held photo that a planar-motion cue finds hardest;
* sensor noise, fresh in every frame (a real capture never repeats a frame exactly; without it a still would
  be trivially detectable by "zero change", which is not what a camera sees).

``held_still_frames`` returns frames; ``write_held_still`` encodes them the way the benchmark scores every other
clip (a file decoded by the same reader).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class HeldStillConfig:
    """How the still is held. Defaults: 2.5 s at 30 fps, as a phone records a liveness check."""

    seconds: float = 2.5
    fps: float = 30.0
    tremor_px: float = 0.4  # RMS of the 8-12 Hz tremor, in pixels of the output frame
    tremor_hz: tuple[float, float] = (8.0, 12.0)
    sway_px: float = 1.5  # RMS of the slow 1/f sway
    rotation_deg: float = 0.15  # RMS of the rotation that comes with the sway (wrist roll)
    noise_sigma: float = 1.2  # sensor noise, grey levels (a well-lit phone capture)
    # RMS out-of-plane turn (pitch and yaw, 1/f sway plus tremor) of the held sheet; 0 keeps it parallel to the lens.
    tilt_deg: float = 0.0
    focal: float = 1.0  # the camera's focal length in units of the image's longer side (about a 53-degree view)
    # Mean bow of the sheet about its vertical axis: the centre's depth in front of the edges, as a share of the
    # sheet's width (0.05: a 10-cm print bowed by 5 mm); 0 keeps it flat.
    bend: float = 0.0
    bend_flex: float = 0.3  # RMS of the bow's change over the clip (the hand squeezing), relative to ``bend``

    def __post_init__(self):
        if not (0.2 <= self.seconds <= 60):
            raise ValueError(f"seconds must be within 0.2..60, got {self.seconds}")
        if not (1 <= self.fps <= 120):
            raise ValueError(f"fps must be within 1..120, got {self.fps}")
        lo, hi = self.tremor_hz
        if not (0 < lo <= hi):
            raise ValueError(f"tremor_hz must be 0 < low <= high, got {self.tremor_hz}")
        if lo >= 0.45 * self.fps:
            raise ValueError(f"tremor_hz {self.tremor_hz} cannot be sampled at {self.fps:g} fps (low end must be "
                             f"below 0.45 x fps)")
        if not self.focal > 0.2:
            raise ValueError(f"focal must be > 0.2 (image sides), got {self.focal}")
        if not 0 <= self.bend <= 0.3:
            raise ValueError(f"bend must be within 0..0.3 (share of the sheet's width), got {self.bend}")
        for name in ("tremor_px", "sway_px", "rotation_deg", "noise_sigma", "tilt_deg", "bend_flex"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def n_frames(self) -> int:
        return max(2, int(round(self.seconds * self.fps)))


def _band_noise(n: int, fps: float, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) zero-mean unit-RMS noise with its power inside [lo, hi] Hz (flat there)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / fps)
    spec[(f < lo) | (f > hi)] = 0
    if not np.any(spec):  # a clip too short to resolve the band: one sinusoid at its centre
        t = np.arange(n) / fps
        x = np.sin(2 * np.pi * (lo + hi) / 2 * t + rng.uniform(0, 2 * np.pi))
    else:
        x = np.fft.irfft(spec, n)
    return (x - x.mean()) / max(float(x.std()), 1e-12)


def _pink_noise(n: int, fps: float, rng: np.random.Generator, cutoff_hz: float = 3.0) -> np.ndarray:
    """(n,) zero-mean unit-RMS 1/f noise (power ~ 1/f) below ``cutoff_hz``: the slow drift of a held arm
    (faster than a few hertz is the tremor's band, modelled on its own)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / fps)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    spec[f > cutoff_hz] = 0
    x = np.fft.irfft(spec, n)
    return (x - x.mean()) / max(float(x.std()), 1e-12)


def hand_motion(cfg: HeldStillConfig, rng: np.random.Generator) -> np.ndarray:
    """(F, 5) per-frame (dx px, dy px, roll deg, pitch deg, yaw deg) of the held photo, frame 0 included. The
    out-of-plane turns are zero when ``tilt_deg`` is 0 (and then draw nothing from ``rng``, so a seed makes the
    same untilted clip it always made)."""
    n = cfg.n_frames
    lo, hi = cfg.tremor_hz
    hi = min(hi, 0.45 * cfg.fps)  # a 24-fps camera aliases what is above 12 Hz: keep the band it can record
    dx = cfg.tremor_px * _band_noise(n, cfg.fps, lo, hi, rng) + cfg.sway_px * _pink_noise(n, cfg.fps, rng)
    dy = cfg.tremor_px * _band_noise(n, cfg.fps, lo, hi, rng) + cfg.sway_px * _pink_noise(n, cfg.fps, rng)
    rot = cfg.rotation_deg * _pink_noise(n, cfg.fps, rng)
    tilt = np.zeros((n, 2))
    if cfg.tilt_deg > 0:
        for j in range(2):  # the wrist's slow turn and its tremor, mixed 4:1 in power
            x = 2 * _pink_noise(n, cfg.fps, rng) + _band_noise(n, cfg.fps, lo, hi, rng)
            tilt[:, j] = cfg.tilt_deg * x / max(float(x.std()), 1e-12)
    return np.column_stack([dx, dy, rot, tilt]).astype(np.float64)


def bow(cfg: HeldStillConfig, rng: np.random.Generator) -> np.ndarray:
    """(F,) the sheet's bow per frame (share of its width, >= 0): ``bend`` flexing by ``bend_flex`` RMS with
    the hand's slow sway. Zero (drawing nothing from ``rng``) when ``bend`` is 0."""
    n = cfg.n_frames
    if cfg.bend <= 0:
        return np.zeros(n)
    x = _pink_noise(n, cfg.fps, rng)
    x = x / max(float(x.std()), 1e-12)
    return np.clip(cfg.bend * (1.0 + cfg.bend_flex * x), 0.0, None)


def _rotation(roll: float, pitch: float, yaw: float) -> np.ndarray:
    a, b, c = np.deg2rad([pitch, yaw, -roll])  # roll turns as cv2.getRotationMatrix2D does
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def sheet_points(points: np.ndarray, w: int, h: int, dx: float, dy: float, roll: float, pitch: float, yaw: float,
                 focal: float = 1.0, bow_share: float = 0.0) -> np.ndarray:
    """(N, 2) where the sheet's pixels ``points`` (N, 2: x, y in the still) land in the frame: the sheet bowed
    about its vertical axis (a parabola whose centre stands ``bow_share`` x width in front of its left and right
    edges), shifted, rolled and turned about its centre as in :func:`sheet_homography`, seen by the same pinhole
    camera. With ``bow_share`` 0 this is that homography applied to the points (which it is built from)."""
    f = focal * max(w, h)
    cx, cy = w / 2.0, h / 2.0
    u, v = points[:, 0] - cx, points[:, 1] - cy
    z = -bow_share * w * (1.0 - (2.0 * u / w) ** 2)  # (N,) toward the camera (z grows away from it)
    pts3 = np.column_stack([u, v, z]) @ _rotation(roll, pitch, yaw).T  # (N, 3)
    depth = f + pts3[:, 2]
    return np.column_stack([f * pts3[:, 0] / depth + cx + dx, f * pts3[:, 1] / depth + cy + dy])


_NODE_STEP = 8  # px between the nodes a bowed sheet's map is solved on (interpolation error under 0.02 px)


def _bent_maps(w: int, h: int, motion: np.ndarray, focal: float, bow_share: float) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (each (H, W) float32: the still's x and y that every frame pixel shows) for a bowed sheet.
    The forward projection has no closed-form inverse: start from the flat sheet's (the homography's inverse) and
    correct by the residual; the map is near the identity, so a few steps converge to well under 0.01 px. The map
    is smooth, so it is solved on nodes every ``_NODE_STEP`` px and interpolated (bilinear) to every pixel."""
    dx, dy, roll, pitch, yaw = (float(m) for m in motion)
    step = _NODE_STEP
    ny, nx = -(-(h - 1) // step) + 1, -(-(w - 1) // step) + 1
    ys, xs = np.mgrid[0:ny, 0:nx].astype(np.float64) * step
    target = np.column_stack([xs.ravel(), ys.ravel()])  # (ny*nx, 2)
    flat = sheet_homography(w, h, dx, dy, roll, pitch, yaw, focal)
    src = cv2.perspectiveTransform(target[None], np.linalg.inv(flat))[0]  # (ny*nx, 2)
    for _ in range(6):
        src += target - sheet_points(src, w, h, dx, dy, roll, pitch, yaw, focal, bow_share)
    node_x, node_y = np.meshgrid(np.arange(w, dtype=np.float32) / step, np.arange(h, dtype=np.float32) / step)
    mx, my = (cv2.remap(src[:, k].reshape(ny, nx).astype(np.float32), node_x, node_y, cv2.INTER_LINEAR)
              for k in (0, 1))
    return mx, my


def sheet_homography(w: int, h: int, dx: float, dy: float, roll: float, pitch: float, yaw: float,
                     focal: float = 1.0) -> np.ndarray:
    """(3, 3) homography taking the still image to how it looks after the held sheet is shifted by (dx, dy) px,
    rolled in its plane and turned by ``pitch``/``yaw`` degrees out of it about its centre, seen by a pinhole
    camera whose focal length is ``focal`` times the image's longer side (the unturned sheet fills the frame)."""
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    proj = sheet_points(corners, w, h, dx, dy, roll, pitch, yaw, focal)  # (4, 2): a flat sheet's corners
    return cv2.getPerspectiveTransform(corners.astype(np.float32), proj.astype(np.float32))


def held_still_frames(image: np.ndarray, cfg: HeldStillConfig | None = None, seed: int = 0) -> np.ndarray:
    """A held-still clip of ``image`` (H, W, 3) uint8 RGB: (F, H, W, 3) uint8, F = seconds * fps.

    The motion is rigid and sub-pixel to a few pixels; borders are reflected so no black edge appears (a
    black edge would be a cue a real held photo does not give).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    if min(image.shape[:2]) < 16:
        raise ValueError(f"image is too small for a held still: {image.shape[1]}x{image.shape[0]}")
    cfg = cfg or HeldStillConfig()
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    centre = (w / 2.0, h / 2.0)
    src = image.astype(np.float32)
    out = np.empty((cfg.n_frames, h, w, 3), np.uint8)
    motion = hand_motion(cfg, rng)  # (F, 5)
    bows = bow(cfg, rng)  # (F,): drawn after the motion, so a flat sheet's seed makes the clip it always made
    for i, (dx, dy, rot, pitch, yaw) in enumerate(motion):
        if cfg.bend > 0:
            mx, my = _bent_maps(w, h, motion[i], cfg.focal, float(bows[i]))
            frame = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        elif cfg.tilt_deg > 0:
            hm = sheet_homography(w, h, dx, dy, rot, pitch, yaw, cfg.focal)
            frame = cv2.warpPerspective(src, hm, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        else:  # the affine warp of the untilted sheet keeps the bytes of stills made before tilt existed
            m = cv2.getRotationMatrix2D(centre, float(rot), 1.0)  # (2, 3)
            m[:, 2] += (dx, dy)
            frame = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        if cfg.noise_sigma > 0:
            frame = frame + rng.normal(0.0, cfg.noise_sigma, frame.shape).astype(np.float32)
        out[i] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return out  # (F, H, W, 3)


def write_held_still(path: str | Path, image: np.ndarray, cfg: HeldStillConfig | None = None, seed: int = 0) -> Path:
    """Write :func:`held_still_frames` of ``image`` as an H.264 mp4 (what a phone records; mp4v through OpenCV
    when PyAV is not installed) and return its path. The codec matters: a still encoded unlike the live
    videos beside it would differ in its compression artefacts, a cue that has nothing to do with liveness."""
    from .video import write_h264, write_video

    cfg = cfg or HeldStillConfig()
    frames = held_still_frames(image, cfg, seed)
    # Codecs work on 2x2 chroma blocks: an odd side would be padded or refused by some encoders.
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    path = Path(path)
    frames = np.ascontiguousarray(frames[:, :h, :w])
    try:
        write_h264(path, frames, fps=cfg.fps)
    except ImportError:
        write_video(path, frames, fps=cfg.fps)
    return path


__all__ = ["HeldStillConfig", "bow", "hand_motion", "held_still_frames", "sheet_homography", "sheet_points",
           "write_held_still"]
