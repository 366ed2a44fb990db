"""Image and motion primitives both renderers share: smooth random signals, soft masks, local warps, blinks,
pulse, halftone, backgrounds, and a moving plane (a held print or screen) placed into a scene."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .faces import SubjectFace


# ------------------------------------------------------------------------------------------- primitives
def smooth_noise(rng: np.random.Generator, n: int, fps: float, lo: float = 0.15, hi: float = 0.9) -> np.ndarray:
    """A smooth zero-mean signal in [-1, 1] over n frames: a sum of three slow random sinusoids."""
    t = np.arange(n) / fps
    sig = np.zeros(n)
    for _ in range(3):
        sig += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(lo, hi) * t + rng.uniform(0, 2 * np.pi))
    return sig / 2.25


def soft_ellipse(shape, center, axes, angle: float = 0.0) -> np.ndarray:
    H, W = shape
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    dx, dy = x - center[0], y - center[1]
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = (dx * ca + dy * sa) / axes[0], (-dx * sa + dy * ca) / axes[1]
    r = np.sqrt(u * u + v * v)
    return np.clip((1.15 - r) / 0.3, 0, 1).astype(np.float32)  # 1 inside, soft edge around r=1


def warp_local(img: np.ndarray, grid, center, sigma: float, dx: float, dy: float, theta: float, scale: float,
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


def close_eyes(img: np.ndarray, face: SubjectFace, closure: float) -> np.ndarray:
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
        m = soft_ellipse(patch.shape[:2], (e[0] - x0, e[1] - y0), (rw, rh), tilt)[..., None] * closure
        lid_y = int(np.clip(e[1] - 2.6 * rh, 0, H - 1))
        lid = img[max(lid_y - 2, 0):lid_y + 2, int(max(e[0] - rw, 0)):int(min(e[0] + rw, W))].reshape(-1, 3).mean(0)
        lash = soft_ellipse(patch.shape[:2], (e[0] - x0, e[1] - y0 + 0.3 * rh), (rw, 0.22 * rh), tilt)[..., None]
        patch[:] = patch * (1 - m) + lid * m
        patch[:] = patch * (1 - 0.55 * lash * closure)
    return out


def add_pulse(img: np.ndarray, skin: np.ndarray, amount: float) -> np.ndarray:
    """Blood volume change: green absorbs most, red less, blue least."""
    f = np.array([0.4, 1.0, 0.2], dtype=np.float32) * np.float32(amount)
    return img * (1.0 - skin[..., None] * f)


def halftone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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


def background(rng: np.random.Generator, shape) -> np.ndarray:
    """A plausible surface behind a photo or a screen: smooth coloured wall/desk with low-frequency shading."""
    import cv2

    H, W = shape
    base = rng.uniform(70, 200) + rng.uniform(-20, 20, size=3)  # mostly neutral: walls, desks, cloth
    coarse = rng.normal(0, 14, size=(4, 3, 3)).astype(np.float32)
    shading = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    grain = cv2.GaussianBlur(rng.normal(0, 6, size=(H, W)).astype(np.float32), (0, 0), 1.5)
    return np.clip(base + shading + grain[..., None], 0, 255).astype(np.float32)


def plane_motion(rng: np.random.Generator, n: int, fps: float, amp_px: float, amp_deg: float,
                  amp_tilt: float) -> list[tuple[float, float, float, float, float, float]]:
    """Per-frame (dx, dy, theta, scale, tilt_x, tilt_y) of a hand-held rigid plane."""
    sx, sy, sr, ss, stx, sty = (smooth_noise(rng, n, fps, 0.2, 1.2) for _ in range(6))
    return [(amp_px * sx[t], amp_px * sy[t], math.radians(amp_deg) * sr[t], 1 + 0.015 * ss[t],
             amp_tilt * stx[t], amp_tilt * sty[t]) for t in range(n)]


def plane_homography(w: int, h: int, quad: np.ndarray, motion) -> np.ndarray:
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


def place_plane(content: np.ndarray, bg: np.ndarray, quad: np.ndarray, motion) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``content`` onto ``bg`` so its corners land on ``quad`` moved by one rigid plane motion."""
    import cv2

    h, w = content.shape[:2]
    H, W = bg.shape[:2]
    Hm = plane_homography(w, h, quad, motion)
    warped = cv2.warpPerspective(content, Hm, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpPerspective(np.ones((h, w), np.float32), Hm, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    return bg * (1 - mask[..., None]) + warped * mask[..., None], Hm


def rect_quad(x0: float, y0: float, w: float, h: float) -> np.ndarray:
    return np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], dtype=np.float64)


def apply_h(Hm: np.ndarray, p: np.ndarray) -> np.ndarray:
    v = Hm @ np.array([p[0], p[1], 1.0])
    return v[:2] / v[2]
