"""The real faces synthetic subjects are made from: stored photos with their dlib landmarks, and the per-subject
variants (crop, scale, mirror, colour) that give more subjects than identities."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .config import SynthConfig


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
class SubjectFace:
    """A subject's still at base size with its landmarks in that frame."""
    image: np.ndarray  # (H, W, 3) float32 0..255
    left_eye: np.ndarray  # (2,) x, y
    right_eye: np.ndarray
    mouth: np.ndarray
    face_w: float

    @property
    def center(self) -> np.ndarray:
        return (self.left_eye + self.right_eye + self.mouth) / 3.0


def subject_face(cfg: SynthConfig, subject: int, size: tuple[int, int], face_frac: float | None = None) -> SubjectFace:
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
    return SubjectFace(np.ascontiguousarray(img_f), pts[0], pts[1], pts[2], src.face_w * s)
