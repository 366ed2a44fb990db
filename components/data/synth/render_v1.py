"""The renderer that made ``data/sample/`` (``renderer="v1"``), kept bit for bit, and the ID-card certificate
attack both renderers use."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .faces import SubjectFace, subject_face
from .primitives import (
    add_pulse,
    apply_h,
    background,
    close_eyes,
    halftone,
    place_plane,
    plane_motion,
    rect_quad,
    smooth_noise,
    soft_ellipse,
    warp_local,
)

if TYPE_CHECKING:
    from .config import SynthConfig

# ------------------------------------------------------------------------------------------ v1 renderers
# The renderer that made data/sample/, unchanged (renderer="v1"): a Gaussian head warp of 0.9 face widths,
# one forced blink per clip, no expression, rigid flat prints. Each returns frames (T, H, W, 3) float32,
# per-frame face centres (T, 2) and face width, so scene lighting can be placed relative to the face.

def render_live_v1(face: SubjectFace, rng, cfg: SynthConfig, pulse_scale: float = 1.0, blinks: bool = True,
                 talk: float = 0.0, smooth_skin: bool = False, rigid: bool = False):
    import cv2

    T, fps = cfg.n_frames, cfg.fps
    H, W = face.image.shape[:2]
    grid = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    skin = soft_ellipse((H, W), face.center, (0.5 * face.face_w, 0.68 * face.face_w))
    amp = cfg.motion_px * (1.6 if talk else 1.0)
    mx, my, mr, ms, mt = (smooth_noise(rng, T, fps) for _ in range(5))
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
        img = close_eyes(base, face, closure[t])
        img = add_pulse(img, skin, pulse[t])
        dx, dy, th, sc = amp * mx[t], amp * my[t], math.radians(1.5) * mr[t], 1 + 0.012 * ms[t]
        if rigid:
            # The whole picture moves as one plane: background and face together.
            M = cv2.getRotationMatrix2D((float(face.center[0]), float(face.center[1])), math.degrees(th), sc)
            M[:, 2] += (dx, dy)
            img = cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        else:
            img = warp_local(img, grid, face.center, 0.9 * face.face_w, dx, dy, th, sc, face.mouth,
                              talk * 0.06 * face.face_w * max(mt[t], 0))
        frames.append(img)
        centers.append(face.center + (dx, dy))
    return np.stack(frames), np.array(centers), face.face_w


def render_print_v1(face: SubjectFace, rng, cfg: SynthConfig):
    H, W = face.image.shape[:2]
    photo = halftone(face.image, rng)
    b = int(round(rng.uniform(0.04, 0.07) * W))
    paper = np.full((H + 2 * b, W + 2 * b, 3), rng.uniform(225, 245), dtype=np.float32)
    paper[b:b + H, b:b + W] = photo
    cover = rng.uniform(0.92, 1.0)  # the photo (with border) nearly fills the frame
    pw, ph = cover * W, cover * W * paper.shape[0] / paper.shape[1]
    quad = rect_quad((W - pw) / 2, (H - ph) / 2 + rng.uniform(-0.03, 0.03) * H, pw, ph)
    bg = background(rng, (H, W))
    frames, centers = [], []
    fc = face.center + b
    for m in plane_motion(rng, cfg.n_frames, cfg.fps, 0.8 * cfg.motion_px, 1.5, 0.04):
        img, Hm = place_plane(paper, bg, quad, m)
        frames.append(img)
        centers.append(apply_h(Hm, fc))
    return np.stack(frames), np.array(centers), face.face_w * pw / paper.shape[1]


def render_replay_v1(face: SubjectFace, rng, cfg: SynthConfig):
    H, W = face.image.shape[:2]
    shown, _, _ = render_live_v1(face, rng, cfg, pulse_scale=0.3)
    gamma = rng.uniform(0.72, 0.88)
    tint = np.array([0.94, 1.0, 1.08], dtype=np.float32) * rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    shown = 14 + 235 * (np.clip(shown, 0, 255) / 255.0) ** gamma * tint  # screen gamma, cast, glowing blacks
    b = int(round(rng.uniform(0.03, 0.05) * W))
    cover = rng.uniform(0.93, 1.0)
    bezel_h, bezel_w = H + 2 * b, W + 2 * b
    pw, ph = cover * W, cover * W * bezel_h / bezel_w
    quad = rect_quad((W - pw) / 2, (H - ph) / 2, pw, ph)
    bg = background(rng, (H, W))
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    # Moiré: the screen's pixel grid beats against the camera's sampling grid as two near-Nyquist gratings.
    f1 = rng.uniform(0.38, 0.46) * np.array([math.cos(a := rng.uniform(0, np.pi)), math.sin(a)])
    f2 = rng.uniform(0.38, 0.46) * np.array([math.cos(a + 0.08), math.sin(a + 0.08)])
    moire_amp = rng.uniform(7, 11)
    band_speed = rng.uniform(0.08, 0.16)
    flicker_hz = rng.uniform(4, 9)  # beat between screen refresh and camera frame rate
    frames, centers = [], []
    motion = plane_motion(rng, cfg.n_frames, cfg.fps, 0.5 * cfg.motion_px, 1.0, 0.03)
    for t in range(cfg.n_frames):
        screen = np.zeros((bezel_h, bezel_w, 3), np.float32) + 12
        screen[b:b + H, b:b + W] = shown[t]
        img, Hm = place_plane(screen, bg, quad, motion[t])
        drift = 0.4 * t
        moire = np.cos(2 * np.pi * (f1[0] * x + f1[1] * y) + drift) * np.cos(2 * np.pi * (f2[0] * x + f2[1] * y))
        band = 1 + 0.07 * np.sin(2 * np.pi * (y / H * 1.3 - band_speed * t))
        flick = 1 + 0.03 * math.sin(2 * np.pi * flicker_hz * t / cfg.fps)
        import cv2

        inside = cv2.warpPerspective(np.ones((bezel_h, bezel_w), np.float32), Hm, (W, H))
        img = img * (1 + inside[..., None] * ((band * flick)[..., None] - 1)) + \
            inside[..., None] * moire_amp * moire[..., None]
        frames.append(img)
        centers.append(apply_h(Hm, face.center + b))
    return np.stack(frames), np.array(centers), face.face_w * pw / bezel_w


# ------------------------------------------------------------------------------------ certificate (v1, v2)
def render_certificate(face: SubjectFace, rng, cfg: SynthConfig, subject: int):
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
    tight = subject_face(cfg, subject, (ph * 2, pw * 2), face_frac=0.72)
    photo = cv2.resize(tight.image, (pw, ph), interpolation=cv2.INTER_AREA)
    photo = halftone(photo, rng)
    px0, py0 = int(0.04 * card_w), header + 4
    card[py0:py0 + ph, px0:px0 + pw] = photo
    for i in range(5):  # text lines
        ty = header + 10 + i * int(0.12 * card_h)
        tw = int(rng.uniform(0.25, 0.45) * card_w)
        card[ty:ty + 5, px0 + pw + 10:min(px0 + pw + 10 + tw, card_w - 4)] = rng.uniform(30, 80)
    x0 = 0.03 * W
    quad = rect_quad(x0, (H - card_h) / 2 + rng.uniform(-0.08, 0.08) * H, card_w, card_h)
    bg = background(rng, (H, W))
    fc_card = np.array([px0 + tight.center[0] / 2, py0 + tight.center[1] / 2])
    frames, centers = [], []
    for m in plane_motion(rng, cfg.n_frames, cfg.fps, 0.8 * cfg.motion_px, 2.0, 0.05):
        img, Hm = place_plane(card, bg, quad, m)
        frames.append(img)
        centers.append(apply_h(Hm, fc_card))
    return np.stack(frames), np.array(centers), tight.face_w / 2
