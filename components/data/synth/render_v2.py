"""The current renderer (``renderer="v2"``): live faces with expression, blinks and pulse; bent prints; replays
of live renderings with judder, flicker and display tone; AI-dynamic faces warped from a still."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .faces import SubjectFace
from .primitives import (
    apply_h,
    background,
    close_eyes,
    halftone,
    place_plane,
    plane_homography,
    plane_motion,
    rect_quad,
    smooth_noise,
    soft_ellipse,
)

if TYPE_CHECKING:
    from .config import SynthConfig

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


class FaceMotion:
    """Per-video displacement fields for a face still (base size)."""

    def __init__(self, face: SubjectFace, cfg: SynthConfig):
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
        return soft_ellipse(self.shape, self.face.center, (0.5 * self.fw, 0.68 * self.fw))


def _pulse_box(img: np.ndarray, skin: np.ndarray, box, amount: float) -> np.ndarray:
    """``add_pulse`` computed only inside ``box`` (the skin mask's support): same values, less work."""
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


def _inverse_map(Hinv: np.ndarray, xs, ys) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel (xs, ys) samples the source under the inverse homography ``Hinv`` (cv2.remap maps)."""
    den = Hinv[2, 0] * xs + Hinv[2, 1] * ys + Hinv[2, 2]
    sx = ((Hinv[0, 0] * xs + Hinv[0, 1] * ys + Hinv[0, 2]) / den).astype(np.float32)
    sy = ((Hinv[1, 0] * xs + Hinv[1, 1] * ys + Hinv[1, 2]) / den).astype(np.float32)
    return sx, sy


def _bend_delta(xs, ys, center, width: float, bend: float):
    """Backward displacement of a sheet bent into a cylinder (axis vertical, bulging towards the camera).

    ``bend`` is the sagitta over the sheet width; the bulge at depth z is magnified by 1 + z / D about the
    sheet centre with the camera at D = 1.2 sheet widths (perspective of a hand-held photo).
    """
    u = (xs - np.float32(center[0])) / np.float32(width / 2)
    z = np.float32(bend) * np.clip(1 - u * u, -1, 1)
    m = 1 / (1 + z / np.float32(1.2))
    return (xs - np.float32(center[0])) * (m - 1), (ys - np.float32(center[1])) * (m - 1)


def render_live2(face: SubjectFace, rng, cfg: SynthConfig, kind: str = "live", smooth_skin: bool = False):
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
    fm = FaceMotion(face, cfg)
    xs, ys, fw = fm.xs, fm.ys, face.face_w
    skin = fm.skin()
    box = _support(skin)
    mx, my, mr, ms = (smooth_noise(rng, T, fps) for _ in range(4))
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
    shake_x, shake_y = (0.3 * amp * smooth_noise(rng, T, fps, 0.5, 2.0) for _ in range(2))
    frames, centers = [], []
    if kind in ("live", "replay_src"):
        closure = _blink_closure(rng, T, fps, cfg.blink_rate_hz)
        w = fm.head_weight(cfg.motion_sigma)
        fields = fm.expression_fields()
        sig = [np.maximum(smooth_noise(rng, T, fps, 0.3, 1.5), 0) * 1.5,  # mouth: opens, never closes beyond rest
               smooth_noise(rng, T, fps, 0.1, 0.4), smooth_noise(rng, T, fps, 0.2, 0.8) * 0.6]
        for t in range(T):
            img = close_eyes(base, face, closure[t]) if closure[t] > 0.02 else base
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
        bend = cfg.print_bend * (0.6 + 0.4 * smooth_noise(rng, T, fps, 0.2, 1.0))  # the hand flexes the sheet
        tx, ty = (0.03 * k_motion * smooth_noise(rng, T, fps, 0.2, 1.2) for _ in range(2))
        c = np.array([W / 2, H / 2])
        for t in range(T):
            dx, dy, th, sc = amp * mx[t], amp * my[t], rot * mr[t], 1 + zoom * ms[t]
            # One plane: rotation/scale/shift + out-of-plane tilt (perspective), then the bend of the sheet.
            src = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float32)
            rel = (src - c) / c
            dst = (src - c) @ np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]]) * sc + c + (dx, dy)
            dst = dst + np.stack([rel[:, 0] * rel[:, 1] * ty[t] * c[0], rel[:, 1] * rel[:, 0] * tx[t] * c[1]], axis=1)
            Hinv = cv2.getPerspectiveTransform(dst.astype(np.float32), src)
            sx, sy = _inverse_map(Hinv, xs, ys)
            if bend[t]:
                bx, by = _bend_delta(sx, sy, c, W, bend[t])
                sx, sy = sx + bx, sy + by
            frames.append(cv2.remap(img, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101))
            centers.append(face.center + (dx, dy))
    elif kind == "ai":
        img = _pulse_box(base, skin, box, pulse[0])
        mt = smooth_noise(rng, T, fps)
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


def judder(frames: np.ndarray, rng, rate: float) -> np.ndarray:
    """Camera frame t shows source frame floor(t (1 - rate) + phase): a duplicate every 1/rate frames."""
    if rate <= 0:
        return frames
    T = len(frames)
    idx = np.floor(np.arange(T) * (1 - rate) + rng.uniform(0, 1)).astype(int)
    idx = np.clip(idx - idx[0], 0, T - 1)
    return frames[idx]


def replay_tone(frames: np.ndarray, rng, cfg: SynthConfig, keep_mean: bool) -> np.ndarray:
    """Display gamma (jittered +-4 % per video) and the refresh beat."""
    T = len(frames)
    g = cfg.replay_gamma * rng.uniform(0.96, 1.04)
    out = 255 * (np.clip(frames, 0, 255) / np.float32(255)) ** np.float32(g)
    if keep_mean:  # temporal_only: the same brightness as a live frame; only the tone curve changes
        out = out * np.float32(frames.mean() / max(float(out.mean()), 1e-3))
    flicker_hz = rng.uniform(4, 9)  # beat between screen refresh and camera frame rate
    flick = 1 + cfg.replay_flicker * np.sin(2 * np.pi * flicker_hz * np.arange(T) / cfg.fps + rng.uniform(0, 2 * np.pi))
    return (out * flick[:, None, None, None].astype(np.float32)).astype(np.float32)


def render_print2(face: SubjectFace, rng, cfg: SynthConfig):
    """Printed photo with a white border held as one plane (rigid or bent) over a desk/wall background."""
    import cv2

    H, W = face.image.shape[:2]
    photo = halftone(face.image, rng).astype(np.float32)
    b = int(round(rng.uniform(0.04, 0.07) * W))
    paper = np.full((H + 2 * b, W + 2 * b, 3), rng.uniform(225, 245), dtype=np.float32)
    paper[b:b + H, b:b + W] = photo
    ph_, pw_ = paper.shape[:2]
    cover = rng.uniform(0.92, 1.0)
    pw, ph = cover * W, cover * W * ph_ / pw_
    quad = rect_quad((W - pw) / 2, (H - ph) / 2 + rng.uniform(-0.03, 0.03) * H, pw, ph)
    bg = background(rng, (H, W))
    T = cfg.n_frames
    bend = cfg.print_bend * (0.6 + 0.4 * smooth_noise(rng, T, cfg.fps, 0.2, 1.0))
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    ones = np.ones((ph_, pw_), np.float32)
    pc = np.array([pw_ / 2, ph_ / 2])
    frames, centers = [], []
    fc = face.center + b
    for t, m in enumerate(plane_motion(rng, T, cfg.fps, 0.8 * cfg.motion_px, 1.5, 0.04)):
        Hm = plane_homography(pw_, ph_, quad, m)
        Hinv = np.linalg.inv(Hm)
        sx, sy = _inverse_map(Hinv, xs, ys)
        if bend[t]:
            bx, by = _bend_delta(sx, sy, pc, pw_, bend[t])
            sx, sy = sx + bx, sy + by
        warped = cv2.remap(paper, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        mask = cv2.remap(ones, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
        frames.append(bg * (1 - mask) + warped * mask)
        centers.append(apply_h(Hm, fc))
    return np.stack(frames), np.array(centers), face.face_w * pw / pw_


def render_replay2(face: SubjectFace, rng, cfg: SynthConfig):
    """A live rendering shown on a screen: judder, gamma, cast, bezel, moiré, rolling band and flicker."""
    import cv2

    H, W = face.image.shape[:2]
    shown, _, _ = render_live2(face, rng, cfg, kind="replay_src")
    shown = judder(shown, rng, cfg.replay_judder)
    g = cfg.replay_gamma * rng.uniform(0.96, 1.04)
    tint = np.array([0.94, 1.0, 1.08], dtype=np.float32) * rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    shown = 14 + 235 * (np.clip(shown, 0, 255) / np.float32(255)) ** np.float32(g) * tint  # glowing blacks, cast
    b = int(round(rng.uniform(0.03, 0.05) * W))
    cover = rng.uniform(0.93, 1.0)
    bezel_h, bezel_w = H + 2 * b, W + 2 * b
    pw, ph = cover * W, cover * W * bezel_h / bezel_w
    quad = rect_quad((W - pw) / 2, (H - ph) / 2, pw, ph)
    bg = background(rng, (H, W))
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    # Moiré: the screen's pixel grid beats against the camera's sampling grid as two near-Nyquist gratings.
    # (Written as render_replay_v1 writes it, not shared with it: v1 stays bit for bit whatever v2 becomes.)
    a = rng.uniform(0, np.pi)
    f1 = rng.uniform(0.38, 0.46) * np.array([math.cos(a), math.sin(a)])
    f2 = rng.uniform(0.38, 0.46) * np.array([math.cos(a + 0.08), math.sin(a + 0.08)])
    g1 = (2 * np.pi * (f1[0] * x + f1[1] * y)).astype(np.float32)
    g2 = np.cos(2 * np.pi * (f2[0] * x + f2[1] * y)).astype(np.float32)
    moire_amp = np.float32(rng.uniform(7, 11))
    band_speed = rng.uniform(0.08, 0.16)
    flicker_hz = rng.uniform(4, 9)
    frames, centers = [], []
    motion = plane_motion(rng, cfg.n_frames, cfg.fps, 0.5 * cfg.motion_px, 1.0, 0.03)
    screen = np.zeros((bezel_h, bezel_w, 3), np.float32) + 12
    ones = np.ones((bezel_h, bezel_w), np.float32)
    yy = y[:, :1] / np.float32(H)
    for t in range(cfg.n_frames):
        screen[b:b + H, b:b + W] = shown[t]
        img, Hm = place_plane(screen, bg, quad, motion[t])
        moire = np.cos(g1 + np.float32(0.4 * t)) * g2
        band = 1 + np.float32(2.33 * cfg.replay_flicker) * np.sin(np.float32(2 * np.pi) * (yy * np.float32(1.3) - np.float32(band_speed * t)))
        flick = np.float32(1 + cfg.replay_flicker * math.sin(2 * np.pi * flicker_hz * t / cfg.fps))
        inside = cv2.warpPerspective(ones, Hm, (W, H))[..., None]
        img = img * (1 + inside * (band[..., None] * flick - 1)) + inside * moire_amp * moire[..., None]
        frames.append(img)
        centers.append(apply_h(Hm, face.center + b))
    return np.stack(frames), np.array(centers), face.face_w * pw / bezel_w
