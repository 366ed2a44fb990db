"""Synthetic live / spoof face videos with the cues of the paper's Fig. 1, from real faces stored in the repository.

Identities: real face photos taken once from PyPI packages and stored with their dlib landmarks in
``components/data/faces/`` (``faces.json``; see ``build_faces.py`` and docs/data.md for sources and licences).
"Subjects" map round-robin onto identities; more subjects than identities are deterministic variants (crop,
scale, mirror, colour; the carphone identity also rotates over three video frames). ``split_by="subject"``
splits subjects 3:1:1 (a person can then appear in several splits); ``split_by="identity"`` gives every
identity one split, so dev/test people are never seen in training.

Live: the head moves rigidly against a still background (``motion_px``, spatial extent ``motion_sigma``), the
face deforms locally (mouth, smile, brows: ``expression_px``), blinks at ``blink_rate_hz`` and carries a
pulse-like skin colour oscillation (``pulse_amplitude``). Print: the photo moves as one plane, rigid or bent
like a hand-held sheet (``print_bend``), halftone and reduced gamut, no pulse, no blink. Replay: a re-displayed
live video (pulse attenuated, display gamma ``replay_gamma``, duplicated frames ``replay_judder``, refresh
flicker ``replay_flicker``), screen moiré and a bezel. Certificate: a small printed photo on an ID-like card.
AI-dynamic: a still face warped into motion (head sway that drags its surroundings, talking mouth, temporally
inconsistent local warps ``ai_warp``), over-smooth skin, no pulse, no blink.

``temporal_only`` renders every type full-frame with the same per-frame statistics (no border, halftone,
moiré, card): live and attack differ only over time.

``renderer="v1"`` is the renderer that made ``data/sample/`` (before the cue parameters existed), kept bit for
bit: ``preset("sample_v1")`` reproduces the sample's files exactly.

Determinism: every video draws from its own ``numpy`` generator seeded by (seed, subject, video index), and
OpenCV runs single-threaded while rendering, so a seed gives the same bytes on one machine, whatever the
number of worker processes.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.data.profiles import DEVICES, SCENES, DeviceProfile, SceneProfile

ATTACKS = ("print", "replay", "certificate", "ai_dynamic")
SPLIT_BY = ("subject", "identity")
RENDERERS = ("v1", "v2")
# Fields the v1 renderer does not know: with renderer="v1" they must keep their defaults.
CUE_FIELDS = ("blink_rate_hz", "expression_px", "motion_sigma", "print_bend", "replay_judder", "replay_flicker",
              "replay_gamma", "ai_warp", "blur_sigma", "jpeg_quality")


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
    split_ratio: tuple[int, int, int] = (3, 1, 1)  # train:dev:test, by subject or by identity (split_by)
    split_by: str = "subject"  # subject: subjects rotate over splits; identity: each identity in one split
    identities: tuple[str, ...] = ()  # identity names from faces.json, in order; () = all bundled identities
    renderer: str = "v2"  # v2: the cue model below; v1: the renderer that made data/sample/ (bit for bit)
    # --- physical cues (v2); amplitudes in pixels are at the base size ---
    pulse_amplitude: float = 0.02  # relative skin colour swing of the pulse (green most, red less, blue least)
    motion_px: float = 3.0  # rigid head motion amplitude (translation), pixels
    motion_sigma: float = 0.75  # half-width of the rigidly moving head region, in face widths
    expression_px: float = 1.5  # non-rigid facial motion (mouth opening, smile, brows), pixels
    blink_rate_hz: float = 0.28  # live blinks per second (~17/min); each blink 100-300 ms
    print_bend: float = 0.03  # bent-paper sagitta / sheet width (0: a rigid flat plane)
    replay_judder: float = 0.04  # fraction of duplicated frames (display vs camera frame-rate mismatch)
    replay_flicker: float = 0.03  # relative amplitude of the refresh beat (global brightness)
    replay_gamma: float = 0.85  # display-to-camera tone-curve exponent (1: none)
    ai_warp: float = 0.8  # temporally inconsistent local warp (texture swimming) of ai_dynamic, pixels
    blur_sigma: float = 0.0  # optical/motion blur of the camera, Gaussian sigma in pixels at base size
    jpeg_quality: int | None = None  # overrides every device's in-camera JPEG quality (None: the device's)

    def __post_init__(self):
        # Lists from YAML/argparse become tuples so the config stays hashable and frozen.
        for name in ("devices", "scenes", "attack_types", "size", "split_ratio", "identities"):
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
        if self.split_by not in SPLIT_BY:
            raise ValueError(f"split_by must be one of {list(SPLIT_BY)}, got {self.split_by!r}")
        known = identity_names()
        unknown = [n for n in self.identities if n not in known]
        if unknown or len(set(self.identities)) != len(self.identities):
            raise ValueError(f"unknown or repeated identities {unknown or list(self.identities)}; known: {known}")
        if self.renderer not in RENDERERS:
            raise ValueError(f"renderer must be one of {list(RENDERERS)}, got {self.renderer!r}")
        for name in ("pulse_amplitude", "motion_px", "expression_px", "blink_rate_hz", "print_bend", "replay_flicker",
                     "ai_warp", "blur_sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.1 <= self.motion_sigma <= 5:
            raise ValueError(f"motion_sigma must be in [0.1, 5] face widths, got {self.motion_sigma}")
        if not 0 <= self.replay_judder <= 0.5:
            raise ValueError(f"replay_judder must be in [0, 0.5], got {self.replay_judder}")
        if not 0.2 <= self.replay_gamma <= 3:
            raise ValueError(f"replay_gamma must be in [0.2, 3], got {self.replay_gamma}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be None or 1..100, got {self.jpeg_quality}")
        if self.renderer == "v1":
            changed = [f for f in CUE_FIELDS if getattr(self, f) != _FIELD_DEFAULTS[f]]
            if changed:
                raise ValueError(f"renderer 'v1' (the data/sample renderer) has no {changed}: keep their defaults "
                                 "or use renderer 'v2'")


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SynthConfig)}


# ------------------------------------------------------------------------------------------------ presets
PRESETS: dict[str, dict] = {
    # Realistic strengths: the SynthConfig defaults, spelled out.
    "default": {"pulse_amplitude": 0.02, "motion_px": 3.0, "motion_sigma": 0.75, "expression_px": 1.5,
                "blink_rate_hz": 0.28, "print_bend": 0.03, "replay_judder": 0.04, "replay_flicker": 0.03,
                "replay_gamma": 0.85, "ai_warp": 0.8, "blur_sigma": 0.0, "jpeg_quality": None},
    # Faint cues, as in real compressed phone video: a pulse of ~0.5 % (rPPG amplitude after compression),
    # slight defocus/motion blur and strong in-camera JPEG that wash out fine texture and colour.
    "hard": {"pulse_amplitude": 0.005, "blur_sigma": 0.8, "jpeg_quality": 50},
    # The renderer and identities that made data/sample/ (bit for bit, with the sample's command line).
    "sample_v1": {"renderer": "v1", "identities": ("astronaut", "grace_hopper", "carphone")},
}


def preset(name: str) -> dict:
    """SynthConfig overrides for a named setting: ``SynthConfig(**preset("hard"), n_subjects=12)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return dict(PRESETS[name])


# ------------------------------------------------------------------------------------------- identities
# Landmarks were found once with dlib's frontal detector + 68-point predictor (faces.json, in each stored
# image's pixels); generation needs no detector and stays deterministic.
@dataclass(frozen=True)
class FaceImage:
    file: str
    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    mouth: tuple[float, float]
    face_w: float  # dlib detector box width


@dataclass(frozen=True)
class Identity:
    name: str
    package: str  # PyPI package the image was taken from
    path: str  # where inside that package
    licence: str
    face_frac: tuple[float, float]  # face width / frame width range of its variants
    images: tuple[FaceImage, ...]


@functools.cache
def load_identities() -> tuple[Identity, ...]:
    """Every bundled identity, from ``components/data/faces/faces.json`` (package data)."""
    from importlib import resources

    doc = json.loads(resources.files("components.data.faces").joinpath("faces.json").read_text())
    return tuple(Identity(d["name"], d["source"]["package"], d["source"]["path"], d["licence"], tuple(d["face_frac"]),
                          tuple(FaceImage(i["file"], tuple(i["left_eye"]), tuple(i["right_eye"]), tuple(i["mouth"]),
                                          float(i["face_w"])) for i in d["images"]))
                 for d in doc["identities"])


def identity_names() -> list[str]:
    return [i.name for i in load_identities()]


_image_cache: dict[str, np.ndarray] = {}


def load_face_image(file: str) -> np.ndarray:
    """A stored face image as (H, W, 3) uint8 RGB."""
    if file not in _image_cache:
        from importlib import resources

        import cv2

        buf = np.frombuffer(resources.files("components.data.faces").joinpath(file).read_bytes(), np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode face image {file}")
        _image_cache[file] = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return _image_cache[file]


def config_identities(cfg: SynthConfig) -> tuple[Identity, ...]:
    allid = {i.name: i for i in load_identities()}
    return tuple(allid[n] for n in cfg.identities) if cfg.identities else load_identities()


def subject_identity(cfg: SynthConfig, subject: int) -> tuple[Identity, int]:
    """(identity, variant number) of subject k: identities round-robin, variant = k // number of identities."""
    ids = config_identities(cfg)
    return ids[subject % len(ids)], subject // len(ids)


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


def _subject_face(cfg: SynthConfig, subject: int, size: tuple[int, int], face_frac: float | None = None) -> _Face:
    """Deterministic variant of one real identity: crop offset and scale, flip, colour shift."""
    import cv2

    rng = np.random.default_rng([cfg.seed, 7919, subject])
    ident, variant = subject_identity(cfg, subject)
    src = ident.images[variant % len(ident.images)]
    img = load_face_image(src.file)
    H, W = size
    # Face width / frame width; low-resolution sources (carphone: ~50 px faces) get more of the frame to stay
    # detectable after the low-end device's downscale and noise.
    lo, hi = ident.face_frac
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
    if variant % 2 == 1:  # mirror every other variant of an identity
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


def _plane_homography(w: int, h: int, quad: np.ndarray, motion) -> np.ndarray:
    """Homography taking a (h, w) content's corners to ``quad`` moved by one rigid plane motion."""
    import cv2

    dx, dy, th, s, tx, ty = motion
    c = quad.mean(axis=0)
    R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    dst = (quad - c) @ R.T * s + c + (dx, dy)
    # Out-of-plane tilt: one side of the plane comes closer (grows) while the other recedes.
    half = (quad.max(axis=0) - quad.min(axis=0)) / 2
    rel = (quad - c) / half  # corners at (+-1, +-1)
    dst = dst + np.stack([rel[:, 0] * rel[:, 1] * ty * half[0], rel[:, 1] * rel[:, 0] * tx * half[1]], axis=1)
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def _place_plane(content: np.ndarray, bg: np.ndarray, quad: np.ndarray, motion) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``content`` onto ``bg`` so its corners land on ``quad`` moved by one rigid plane motion."""
    import cv2

    h, w = content.shape[:2]
    H, W = bg.shape[:2]
    Hm = _plane_homography(w, h, quad, motion)
    warped = cv2.warpPerspective(content, Hm, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpPerspective(np.ones((h, w), np.float32), Hm, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    return bg * (1 - mask[..., None]) + warped * mask[..., None], Hm


def _rect_quad(x0: float, y0: float, w: float, h: float) -> np.ndarray:
    return np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], dtype=np.float64)


def _apply_h(Hm: np.ndarray, p: np.ndarray) -> np.ndarray:
    v = Hm @ np.array([p[0], p[1], 1.0])
    return v[:2] / v[2]


# ------------------------------------------------------------------------------------------ v2 renderers
# Backward maps: each output pixel samples the still at (xs + map_dx, ys + map_dy); every field below is
# computed once per video at base size in float32, and each frame costs one weighted sum and one remap.

def _gauss(xs, ys, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-((xs - np.float32(cx)) / np.float32(sx)) ** 2 / 2
                  - ((ys - np.float32(cy)) / np.float32(sy)) ** 2 / 2).astype(np.float32)


def _blink_closure(rng: np.random.Generator, n: int, fps: float, rate_hz: float) -> np.ndarray:
    """Eyelid closure per frame (0 open, 1 shut) of a Poisson blink process at ``rate_hz``.

    Each blink lasts 100-300 ms: a fast closing third and a slower opening; blinks that started before the
    first frame may still be under way at t = 0.
    """
    closure = np.zeros(n)
    if rate_hz <= 0:
        return closure
    t = np.arange(n) / fps
    span = n / fps + 0.3
    for _ in range(rng.poisson(rate_hz * span)):
        start = rng.uniform(-0.3, n / fps)
        dur = rng.uniform(0.10, 0.30)
        tau = (t - start) / dur
        close = np.clip(tau / 0.33, 0, 1)
        opening = np.clip((1 - tau) / 0.67, 0, 1)
        c = np.where(tau < 0.33, np.sin(np.pi / 2 * close) ** 2, np.sin(np.pi / 2 * opening) ** 2)
        c[(tau < 0) | (tau > 1)] = 0
        closure = np.maximum(closure, c)
    return closure


class _FaceMotion:
    """Per-video displacement fields for a face still (base size)."""

    def __init__(self, face: _Face, cfg: SynthConfig):
        H, W = face.image.shape[:2]
        self.xs, self.ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
        self.face, self.fw, self.shape = face, face.face_w, (H, W)

    def head_weight(self, sigma_fw: float) -> np.ndarray:
        """Flat-top weight: 1 over the head (rigid), falling to 0 at the background (which stays still)."""
        fw, c = self.fw, self.face.center
        a, b = sigma_fw * fw, 1.3 * sigma_fw * fw
        r2 = ((self.xs - np.float32(c[0])) / np.float32(a)) ** 2 + ((self.ys - np.float32(c[1] - 0.12 * fw)) / np.float32(b)) ** 2
        return np.exp(-0.5 * r2 ** 3).astype(np.float32)

    def expression_fields(self):
        """Unit backward displacements (dx, dy) for mouth opening, smile and brow raise."""
        f, fw, xs, ys = self.face, self.fw, self.xs, self.ys
        mx, my = xs - np.float32(f.mouth[0]), ys - np.float32(f.mouth[1])
        wm = _gauss(xs, ys, f.mouth[0], f.mouth[1] + 0.05 * fw, 0.28 * fw, 0.2 * fw)
        # Opening: lips part, the lower lip and chin drop more than the upper lip rises.
        open_dy = -wm * np.tanh(my / np.float32(0.06 * fw)) * np.where(my > 0, 1.0, 0.5).astype(np.float32)
        wc = _gauss(xs, ys, f.mouth[0], f.mouth[1], 0.32 * fw, 0.14 * fw)
        smile_dx = -wc * np.tanh(mx / np.float32(0.12 * fw)) * np.float32(0.7)
        smile_dy = wc * np.float32(0.5) * np.clip(np.abs(mx) / np.float32(0.2 * fw), 0, 1)
        eyes = (f.left_eye + f.right_eye) / 2
        brow_dy = _gauss(xs, ys, eyes[0], eyes[1] - 0.22 * fw, 0.45 * fw, 0.1 * fw)
        z = np.zeros_like(xs)
        return (z, open_dy), (smile_dx, smile_dy), (z, brow_dy)

    def skin(self) -> np.ndarray:
        return _soft_ellipse(self.shape, self.face.center, (0.5 * self.fw, 0.68 * self.fw))


def _pulse_box(img: np.ndarray, skin: np.ndarray, box, amount: float) -> np.ndarray:
    """``_pulse`` computed only inside ``box`` (the skin mask's support): same values, less work."""
    y0, y1, x0, x1 = box
    out = img.copy()
    f = np.array([0.4, 1.0, 0.2], dtype=np.float32) * np.float32(amount)
    out[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1.0 - skin[y0:y1, x0:x1, None] * f)
    return out


def _support(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1) if len(ys) else (0, 0, 0, 0)


def _rigid_delta(xs, ys, center, dx: float, dy: float, theta: float, scale: float):
    """Backward displacement of a rotation+scale about ``center`` followed by a shift (float32)."""
    px, py = xs - np.float32(center[0]), ys - np.float32(center[1])
    ct, st = math.cos(theta), math.sin(theta)
    qx = (np.float32(ct) * (px - np.float32(dx)) + np.float32(st) * (py - np.float32(dy))) / np.float32(scale)
    qy = (np.float32(-st) * (px - np.float32(dx)) + np.float32(ct) * (py - np.float32(dy))) / np.float32(scale)
    return qx - px, qy - py


def _remap(img: np.ndarray, xs, ys, ddx, ddy) -> np.ndarray:
    import cv2

    return cv2.remap(img, xs + ddx, ys + ddy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def _bend_delta(xs, ys, center, width: float, bend: float):
    """Backward displacement of a sheet bent into a cylinder (axis vertical, bulging towards the camera).

    ``bend`` is the sagitta over the sheet width; the bulge at depth z is magnified by 1 + z / D about the
    sheet centre with the camera at D = 1.2 sheet widths (perspective of a hand-held photo).
    """
    u = (xs - np.float32(center[0])) / np.float32(width / 2)
    z = np.float32(bend) * np.clip(1 - u * u, -1, 1)
    m = 1 / (1 + z / np.float32(1.2))
    return (xs - np.float32(center[0])) * (m - 1), (ys - np.float32(center[1])) * (m - 1)


def _render_live2(face: _Face, rng, cfg: SynthConfig, kind: str = "live", smooth_skin: bool = False):
    """Full-frame video of a face still: ``kind`` live | print (plane) | ai (warped still) | replay_src.

    live / replay_src: the head (weight ``motion_sigma``) moves rigidly over a still background, the face
    deforms locally (``expression_px``), blinks (``blink_rate_hz``), pulse (replay_src: attenuated to 30 %).
    print: the whole picture moves as one plane, bent by ``print_bend``; no pulse (a constant colour offset
    of the same size instead), no blink. ai: large soft warp that drags the surroundings, talking mouth,
    jittery local warps (``ai_warp``); no pulse, no blink.
    """
    import cv2

    T, fps = cfg.n_frames, cfg.fps
    H, W = face.image.shape[:2]
    fm = _FaceMotion(face, cfg)
    xs, ys, fw = fm.xs, fm.ys, face.face_w
    skin = fm.skin()
    box = _support(skin)
    mx, my, mr, ms = (_smooth(rng, T, fps) for _ in range(4))
    hr = rng.uniform(1.0, 1.6)  # heart rate, Hz
    phase = rng.uniform(0, 2 * np.pi)
    pulse_scale = {"live": 1.0, "replay_src": 0.3}.get(kind, 0.0)
    if pulse_scale:
        pulse = cfg.pulse_amplitude * pulse_scale * np.sin(2 * np.pi * hr * np.arange(T) / fps + phase)
    else:
        # No oscillation, but the same per-frame colour distribution as a live frame (temporal_only parity).
        pulse = np.full(T, cfg.pulse_amplitude * math.sin(phase))
    base = face.image
    if smooth_skin:  # generative re-animation over-smooths skin texture
        sm = cv2.bilateralFilter(base, 7, 30, 5)
        base = base * (1 - skin[..., None]) + sm * skin[..., None]
    amp = cfg.motion_px
    # Roll (1.5 deg), distance (1.2 % scale) and tilt come with the translation: motion_px = 0 holds still.
    k_motion = cfg.motion_px / 3.0
    rot, zoom = math.radians(1.5) * k_motion, 0.012 * k_motion
    # Hand-held camera shake moves the whole frame (background included) by a fraction of a pixel to ~1 px,
    # so live frames are resampled everywhere like a moving print (same per-frame sharpness).
    shake_x, shake_y = (0.3 * amp * _smooth(rng, T, fps, 0.5, 2.0) for _ in range(2))
    frames, centers = [], []
    if kind in ("live", "replay_src"):
        closure = _blink_closure(rng, T, fps, cfg.blink_rate_hz)
        w = fm.head_weight(cfg.motion_sigma)
        fields = fm.expression_fields()
        sig = [np.maximum(_smooth(rng, T, fps, 0.3, 1.5), 0) * 1.5,  # mouth: opens, never closes beyond rest
               _smooth(rng, T, fps, 0.1, 0.4), _smooth(rng, T, fps, 0.2, 0.8) * 0.6]
        for t in range(T):
            img = _blink(base, face, closure[t]) if closure[t] > 0.02 else base
            img = _pulse_box(img, skin, box, pulse[t])
            dx, dy, th, sc = amp * mx[t], amp * my[t], rot * mr[t], 1 + zoom * ms[t]
            rx, ry = _rigid_delta(xs, ys, face.center, dx, dy, th, sc)
            ddx, ddy = w * rx - np.float32(shake_x[t]), w * ry - np.float32(shake_y[t])
            for (fx, fy), s in zip(fields, sig):
                a = np.float32(cfg.expression_px * s[t])
                if a:
                    ddx, ddy = ddx + a * fx, ddy + a * fy
            frames.append(_remap(img, xs, ys, ddx, ddy))
            centers.append(face.center + (dx + shake_x[t], dy + shake_y[t]))
    elif kind == "print":
        img = _pulse_box(base, skin, box, pulse[0])
        bend = cfg.print_bend * (0.6 + 0.4 * _smooth(rng, T, fps, 0.2, 1.0))  # the hand flexes the sheet
        tx, ty = (0.03 * k_motion * _smooth(rng, T, fps, 0.2, 1.2) for _ in range(2))
        c = np.array([W / 2, H / 2])
        for t in range(T):
            dx, dy, th, sc = amp * mx[t], amp * my[t], rot * mr[t], 1 + zoom * ms[t]
            # One plane: rotation/scale/shift + out-of-plane tilt (perspective), then the bend of the sheet.
            src = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float32)
            rel = (src - c) / c
            dst = (src - c) @ np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]]) * sc + c + (dx, dy)
            dst = dst + np.stack([rel[:, 0] * rel[:, 1] * ty[t] * c[0], rel[:, 1] * rel[:, 0] * tx[t] * c[1]], axis=1)
            Hinv = cv2.getPerspectiveTransform(dst.astype(np.float32), src)
            den = Hinv[2, 0] * xs + Hinv[2, 1] * ys + Hinv[2, 2]
            sx = ((Hinv[0, 0] * xs + Hinv[0, 1] * ys + Hinv[0, 2]) / den).astype(np.float32)
            sy = ((Hinv[1, 0] * xs + Hinv[1, 1] * ys + Hinv[1, 2]) / den).astype(np.float32)
            if bend[t]:
                bx, by = _bend_delta(sx, sy, c, W, bend[t])
                sx, sy = sx + bx, sy + by
            frames.append(cv2.remap(img, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101))
            centers.append(face.center + (dx, dy))
    elif kind == "ai":
        img = _pulse_box(base, skin, box, pulse[0])
        mt = _smooth(rng, T, fps)
        amp = 1.6 * cfg.motion_px
        # A large soft warp (the animated face drags its surroundings) instead of a rigid head.
        w = _gauss(xs, ys, face.center[0], face.center[1], 0.9 * fw, 0.9 * fw)
        (_, open_dy), _, _ = fm.expression_fields()
        # Jittery texture swimming: a coarse random displacement grid per frame, barely correlated in time.
        gh, gw = 6, 5
        noise = rng.normal(0, 1, size=(T, 2, gh, gw)).astype(np.float32)
        for t in range(1, T):
            noise[t] = 0.35 * noise[t - 1] + 0.94 * noise[t]
        region = _gauss(xs, ys, face.center[0], face.center[1], 0.6 * fw, 0.8 * fw)
        for t in range(T):
            dx, dy, th, sc = amp * mx[t], amp * my[t], rot * mr[t], 1 + zoom * ms[t]
            rx, ry = _rigid_delta(xs, ys, face.center, dx, dy, th, sc)
            ddx = w * rx - np.float32(shake_x[t])
            ddy = w * ry - np.float32(shake_y[t]) + np.float32(0.06 * fw * max(mt[t], 0)) * open_dy
            if cfg.ai_warp:
                jx = cv2.resize(noise[t, 0], (W, H), interpolation=cv2.INTER_CUBIC)
                jy = cv2.resize(noise[t, 1], (W, H), interpolation=cv2.INTER_CUBIC)
                ddx = ddx + np.float32(cfg.ai_warp) * region * jx
                ddy = ddy + np.float32(cfg.ai_warp) * region * jy
            frames.append(_remap(img, xs, ys, ddx, ddy))
            centers.append(face.center + (dx, dy))
    else:
        raise ValueError(kind)
    return np.stack(frames), np.array(centers), face.face_w


def _judder(frames: np.ndarray, rng, rate: float) -> np.ndarray:
    """Camera frame t shows source frame floor(t (1 - rate) + phase): a duplicate every 1/rate frames."""
    if rate <= 0:
        return frames
    T = len(frames)
    idx = np.floor(np.arange(T) * (1 - rate) + rng.uniform(0, 1)).astype(int)
    idx = np.clip(idx - idx[0], 0, T - 1)
    return frames[idx]


def _replay_tone(frames: np.ndarray, rng, cfg: SynthConfig, keep_mean: bool) -> np.ndarray:
    """Display gamma (jittered +-4 % per video) and the refresh beat."""
    T = len(frames)
    g = cfg.replay_gamma * rng.uniform(0.96, 1.04)
    out = 255 * (np.clip(frames, 0, 255) / np.float32(255)) ** np.float32(g)
    if keep_mean:  # temporal_only: the same brightness as a live frame; only the tone curve changes
        out = out * np.float32(frames.mean() / max(float(out.mean()), 1e-3))
    flicker_hz = rng.uniform(4, 9)  # beat between screen refresh and camera frame rate
    flick = 1 + cfg.replay_flicker * np.sin(2 * np.pi * flicker_hz * np.arange(T) / cfg.fps + rng.uniform(0, 2 * np.pi))
    return (out * flick[:, None, None, None].astype(np.float32)).astype(np.float32)


def _render_print2(face: _Face, rng, cfg: SynthConfig):
    """Printed photo with a white border held as one plane (rigid or bent) over a desk/wall background."""
    import cv2

    H, W = face.image.shape[:2]
    photo = _halftone(face.image, rng).astype(np.float32)
    b = int(round(rng.uniform(0.04, 0.07) * W))
    paper = np.full((H + 2 * b, W + 2 * b, 3), rng.uniform(225, 245), dtype=np.float32)
    paper[b:b + H, b:b + W] = photo
    ph_, pw_ = paper.shape[:2]
    cover = rng.uniform(0.92, 1.0)
    pw, ph = cover * W, cover * W * ph_ / pw_
    quad = _rect_quad((W - pw) / 2, (H - ph) / 2 + rng.uniform(-0.03, 0.03) * H, pw, ph)
    bg = _background(rng, (H, W))
    T = cfg.n_frames
    bend = cfg.print_bend * (0.6 + 0.4 * _smooth(rng, T, cfg.fps, 0.2, 1.0))
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    ones = np.ones((ph_, pw_), np.float32)
    pc = np.array([pw_ / 2, ph_ / 2])
    frames, centers = [], []
    fc = face.center + b
    for t, m in enumerate(_plane_motion(rng, T, cfg.fps, 0.8 * cfg.motion_px, 1.5, 0.04)):
        Hm = _plane_homography(pw_, ph_, quad, m)
        Hinv = np.linalg.inv(Hm)
        den = Hinv[2, 0] * xs + Hinv[2, 1] * ys + Hinv[2, 2]
        sx = ((Hinv[0, 0] * xs + Hinv[0, 1] * ys + Hinv[0, 2]) / den).astype(np.float32)
        sy = ((Hinv[1, 0] * xs + Hinv[1, 1] * ys + Hinv[1, 2]) / den).astype(np.float32)
        if bend[t]:
            bx, by = _bend_delta(sx, sy, pc, pw_, bend[t])
            sx, sy = sx + bx, sy + by
        warped = cv2.remap(paper, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        mask = cv2.remap(ones, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
        frames.append(bg * (1 - mask) + warped * mask)
        centers.append(_apply_h(Hm, fc))
    return np.stack(frames), np.array(centers), face.face_w * pw / pw_


def _render_replay2(face: _Face, rng, cfg: SynthConfig):
    """A live rendering shown on a screen: judder, gamma, cast, bezel, moiré, rolling band and flicker."""
    import cv2

    H, W = face.image.shape[:2]
    shown, _, _ = _render_live2(face, rng, cfg, kind="replay_src")
    shown = _judder(shown, rng, cfg.replay_judder)
    g = cfg.replay_gamma * rng.uniform(0.96, 1.04)
    tint = np.array([0.94, 1.0, 1.08], dtype=np.float32) * rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    shown = 14 + 235 * (np.clip(shown, 0, 255) / np.float32(255)) ** np.float32(g) * tint  # glowing blacks, cast
    b = int(round(rng.uniform(0.03, 0.05) * W))
    cover = rng.uniform(0.93, 1.0)
    bezel_h, bezel_w = H + 2 * b, W + 2 * b
    pw, ph = cover * W, cover * W * bezel_h / bezel_w
    quad = _rect_quad((W - pw) / 2, (H - ph) / 2, pw, ph)
    bg = _background(rng, (H, W))
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    # Moiré: the screen's pixel grid beats against the camera's sampling grid as two near-Nyquist gratings.
    a = rng.uniform(0, np.pi)
    f1 = rng.uniform(0.38, 0.46) * np.array([math.cos(a), math.sin(a)])
    f2 = rng.uniform(0.38, 0.46) * np.array([math.cos(a + 0.08), math.sin(a + 0.08)])
    g1 = (2 * np.pi * (f1[0] * x + f1[1] * y)).astype(np.float32)
    g2 = np.cos(2 * np.pi * (f2[0] * x + f2[1] * y)).astype(np.float32)
    moire_amp = np.float32(rng.uniform(7, 11))
    band_speed = rng.uniform(0.08, 0.16)
    flicker_hz = rng.uniform(4, 9)
    frames, centers = [], []
    motion = _plane_motion(rng, cfg.n_frames, cfg.fps, 0.5 * cfg.motion_px, 1.0, 0.03)
    screen = np.zeros((bezel_h, bezel_w, 3), np.float32) + 12
    ones = np.ones((bezel_h, bezel_w), np.float32)
    yy = y[:, :1] / np.float32(H)
    for t in range(cfg.n_frames):
        screen[b:b + H, b:b + W] = shown[t]
        img, Hm = _place_plane(screen, bg, quad, motion[t])
        moire = np.cos(g1 + np.float32(0.4 * t)) * g2
        band = 1 + np.float32(2.33 * cfg.replay_flicker) * np.sin(np.float32(2 * np.pi) * (yy * np.float32(1.3) - np.float32(band_speed * t)))
        flick = np.float32(1 + cfg.replay_flicker * math.sin(2 * np.pi * flicker_hz * t / cfg.fps))
        inside = cv2.warpPerspective(ones, Hm, (W, H))[..., None]
        img = img * (1 + inside * (band[..., None] * flick - 1)) + inside * moire_amp * moire[..., None]
        frames.append(img)
        centers.append(_apply_h(Hm, face.center + b))
    return np.stack(frames), np.array(centers), face.face_w * pw / bezel_w


# ------------------------------------------------------------------------------------------ v1 renderers
# The renderer that made data/sample/, unchanged (renderer="v1"): a Gaussian head warp of 0.9 face widths,
# one forced blink per clip, no expression, rigid flat prints. Each returns frames (T, H, W, 3) float32,
# per-frame face centres (T, 2) and face width, so scene lighting can be placed relative to the face.

def _render_live_v1(face: _Face, rng, cfg: SynthConfig, pulse_scale: float = 1.0, blinks: bool = True,
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


def _render_print_v1(face: _Face, rng, cfg: SynthConfig):
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


def _render_replay_v1(face: _Face, rng, cfg: SynthConfig):
    H, W = face.image.shape[:2]
    shown, _, _ = _render_live_v1(face, rng, cfg, pulse_scale=0.3)
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


# ------------------------------------------------------------------------------------ certificate (v1, v2)
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
    tight = _subject_face(cfg, subject, (ph * 2, pw * 2), face_frac=0.72)
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


def _apply_device(frames: np.ndarray, device: DeviceProfile, scene: SceneProfile, rng,
                  cfg: SynthConfig | None = None) -> np.ndarray:
    import cv2

    v1 = cfg is None or cfg.renderer == "v1"
    T, H, W, _ = frames.shape
    h = int(round(H * device.scale / 2) * 2)
    w = int(round(W * device.scale / 2) * 2)
    wb = np.array(device.wb, np.float32)
    sigma = device.noise * scene.noise_boost
    quality = device.jpeg_quality if v1 or cfg.jpeg_quality is None else cfg.jpeg_quality
    blur = 0.0 if v1 else cfg.blur_sigma
    if not v1:
        return _apply_device_v2(frames, device, rng, (h, w), wb, sigma, quality, blur)
    out = []
    for f in frames:
        f = f * wb
        if blur > 0:  # optics / motion blur happen before the sensor samples the image
            f = cv2.GaussianBlur(f, (0, 0), blur)
        if (h, w) != (H, W):
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
        if device.sharpen:
            f = f + device.sharpen * (f - cv2.GaussianBlur(f, (0, 0), 1.2))
        if v1:
            f = f + rng.normal(0, sigma, size=f.shape).astype(np.float32)
        else:
            f = f + rng.standard_normal(size=f.shape, dtype=np.float32) * np.float32(sigma)
        u8 = np.clip(f + 0.5, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED))
    return np.stack(out)  # (T, h, w, 3) uint8


def _apply_device_v2(frames, device: DeviceProfile, rng, size, wb, sigma: float, quality: int, blur: float):
    """The v2 camera: the same steps as v1 with fused OpenCV arithmetic and float32 noise."""
    import cv2

    T, H, W, _ = frames.shape
    h, w = size
    out = np.empty((T, h, w, 3), np.uint8)
    wb_img = np.ascontiguousarray(np.broadcast_to(wb, (H, W, 3)))
    for t in range(T):
        f = cv2.multiply(np.ascontiguousarray(frames[t]), wb_img)
        if blur > 0:  # optics / motion blur happen before the sensor samples the image
            f = cv2.GaussianBlur(f, (0, 0), blur)
        if (h, w) != (H, W):
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
        if device.sharpen:
            f = cv2.addWeighted(f, 1 + device.sharpen, cv2.GaussianBlur(f, (0, 0), 1.2), -device.sharpen, 0.0)
        f = cv2.scaleAdd(rng.standard_normal(size=(h, w, 3), dtype=np.float32), float(sigma), f)
        u8 = np.clip(f + np.float32(0.5), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out[t] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def _render_frames(subject: int, attack_type: str, cfg: SynthConfig, rng) -> tuple[np.ndarray, np.ndarray, float]:
    """Scene content before lighting and camera: frames (T, H, W, 3) float32, face centres (T, 2), face width."""
    face = _subject_face(cfg, subject, cfg.size)
    if cfg.renderer == "v1":
        if cfg.temporal_only:
            if attack_type == "live":
                return _render_live_v1(face, rng, cfg)
            if attack_type == "print":
                return _render_live_v1(face, rng, cfg, pulse_scale=0.0, blinks=False, rigid=True)
            if attack_type == "replay":
                frames, c, fw = _render_live_v1(face, rng, cfg, pulse_scale=0.3)
                flick = 1 + 0.03 * np.sin(2 * np.pi * rng.uniform(4, 9) * np.arange(cfg.n_frames) / cfg.fps)
                return frames * flick[:, None, None, None].astype(np.float32), c, fw
            if attack_type == "ai_dynamic":
                return _render_live_v1(face, rng, cfg, pulse_scale=0.0, blinks=False, talk=1.0)
            raise ValueError(f"temporal_only cannot render {attack_type!r}")
        if attack_type == "live":
            return _render_live_v1(face, rng, cfg)
        if attack_type == "print":
            return _render_print_v1(face, rng, cfg)
        if attack_type == "replay":
            return _render_replay_v1(face, rng, cfg)
        if attack_type == "certificate":
            return _render_certificate(face, rng, cfg, subject)
        if attack_type == "ai_dynamic":
            return _render_live_v1(face, rng, cfg, pulse_scale=0.0, blinks=False, talk=1.0, smooth_skin=True)
        raise ValueError(f"unknown attack type {attack_type!r}")
    if cfg.temporal_only:
        if attack_type == "live":
            return _render_live2(face, rng, cfg, "live")
        if attack_type == "print":
            return _render_live2(face, rng, cfg, "print")
        if attack_type == "replay":
            frames, c, fw = _render_live2(face, rng, cfg, "replay_src")
            frames = _judder(frames, rng, cfg.replay_judder)
            return _replay_tone(frames, rng, cfg, keep_mean=True), c, fw
        if attack_type == "ai_dynamic":
            return _render_live2(face, rng, cfg, "ai")
        raise ValueError(f"temporal_only cannot render {attack_type!r}")
    if attack_type == "live":
        return _render_live2(face, rng, cfg, "live")
    if attack_type == "print":
        return _render_print2(face, rng, cfg)
    if attack_type == "replay":
        return _render_replay2(face, rng, cfg)
    if attack_type == "certificate":
        return _render_certificate(face, rng, cfg, subject)
    if attack_type == "ai_dynamic":
        return _render_live2(face, rng, cfg, "ai", smooth_skin=True)
    raise ValueError(f"unknown attack type {attack_type!r}")


def render_video(subject: int, attack_type: str, device: str, scene: str, cfg: SynthConfig,
                 index: int = 0) -> np.ndarray:
    """Render one video (n_frames, h, w, 3) uint8 RGB; deterministic in (cfg.seed, subject, index)."""
    import cv2

    prev_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # thread scheduling must not change any result
    try:
        rng = np.random.default_rng([cfg.seed, subject, index, 1])
        frames, c, fw = _render_frames(subject, attack_type, cfg, rng)
        frames = _apply_scene(frames.astype(np.float32), c, fw, SCENES[scene], rng)
        return _apply_device(frames, DEVICES[device], SCENES[scene], rng, cfg)
    finally:
        cv2.setNumThreads(prev_threads)


# ------------------------------------------------------------------------------------------- datasets
def subject_splits(n_subjects: int, ratio: tuple[int, int, int] = (3, 1, 1)) -> list[str]:
    """Split of each subject: a repeating train/dev/test pattern, so every split mixes all identities."""
    pattern = ["train"] * ratio[0] + ["dev"] * ratio[1] + ["test"] * ratio[2]
    return [pattern[i % len(pattern)] for i in range(n_subjects)]


def identity_splits(cfg: SynthConfig) -> dict[str, str]:
    """Split of each identity of ``cfg`` (split_by="identity"): the split_ratio pattern over identities."""
    names = [i.name for i in config_identities(cfg)]
    return dict(zip(names, subject_splits(len(names), cfg.split_ratio)))


def dataset_splits(cfg: SynthConfig) -> list[str]:
    """Split of each subject 0..n_subjects-1 under ``cfg.split_by``."""
    if cfg.split_by == "subject":
        return subject_splits(cfg.n_subjects, cfg.split_ratio)
    by_id = identity_splits(cfg)
    return [by_id[subject_identity(cfg, s)[0].name] for s in range(cfg.n_subjects)]


def empty_splits(cfg: SynthConfig) -> list[str]:
    """Splits the ratio asks for (non-zero share) that no subject lands in, e.g. dev and test for 3 subjects at
    3:1:1: the pipeline needs dev (threshold) and test (figures), so `eulernet generate` warns about them."""
    present = set(dataset_splits(cfg))
    wanted = [name for name, share in zip(("train", "dev", "test"), cfg.split_ratio) if share > 0]
    return [name for name in wanted if name not in present]


def plan_dataset(cfg: SynthConfig) -> pd.DataFrame:
    """The manifest rows the generator will write (no rendering)."""
    splits = dataset_splits(cfg)
    rows = []
    for s in range(cfg.n_subjects):
        sid = f"s{s:03d}"
        idx = 0
        k_attack = 0
        identity = subject_identity(cfg, s)[0].name
        for dev in cfg.devices:
            for scene in cfg.scenes:
                kinds = ["live"] * cfg.lives_per_cell
                for _ in range(cfg.attacks_per_cell):
                    kinds.append(cfg.attack_types[(s + k_attack) % len(cfg.attack_types)])
                    k_attack += 1
                for kind in kinds:
                    vid = f"{sid}_{dev}_{scene}_{kind}_{idx:02d}"
                    meta = {"generator": "eulernet.synthetic", "seed": cfg.seed, "index": idx, "identity": identity,
                            "environment": SCENES[scene].environment, "temporal_only": cfg.temporal_only,
                            "fps": cfg.fps}
                    if cfg.renderer != "v1":  # v1 keeps the sample's manifest byte for byte
                        meta.update(renderer=cfg.renderer, split_by=cfg.split_by)
                    rows.append({"video_id": vid, "path": f"videos/{vid}.mp4", "subject_id": sid, "device": dev,
                                 "os": DEVICES[dev].os, "scene": scene, "attack_type": kind,
                                 "label": int(kind == "live"), "split": splits[s],
                                 "source": "synthetic-temporal" if cfg.temporal_only else "synthetic",
                                 "meta": json.dumps(meta, sort_keys=True), "_subject": s, "_index": idx})
                    idx += 1
    return pd.DataFrame(rows)


def _render_and_write(job: tuple) -> str:
    """One video, rendered and encoded (a worker process's unit of work; top level so spawn can pickle it)."""
    from components.data.video import write_video

    cfg, out_path, subject, kind, device, scene, index = job
    frames = render_video(subject, kind, device, scene, cfg, index=index)
    write_video(out_path, frames, cfg.fps)
    return out_path


def generate_dataset(out_dir: str | Path, cfg: SynthConfig, progress: bool = True, workers: int = 1) -> pd.DataFrame:
    """Render every planned video into ``out_dir/videos`` and write ``out_dir/manifest.csv``; return the manifest.

    ``workers`` > 1 renders videos in that many spawned processes; every video has its own seeded generator
    and OpenCV runs single-threaded, so the files are byte-identical to ``workers=1``.
    """
    from components.data.manifest import COLUMNS, write_manifest

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    plan = plan_dataset(cfg)
    jobs = [(cfg, str(out_dir / r["path"]), r["_subject"], r["attack_type"], r["device"], r["scene"], r["_index"])
            for r in plan.to_dict("records")]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"generate {out_dir}", unit="video")
    if workers == 1 or len(jobs) < 2:
        for job in jobs:
            _render_and_write(job)
            if bar is not None:
                bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
            for _ in ex.map(_render_and_write, jobs, chunksize=1):
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
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
