"""The realistic renderer (``renderer="v3"``, preset ``realistic``): no single hand statistic separates the classes.

The v2 renderer gives each class one clean signature (AI-dynamic moves 1.6x more than live, replays carry a 3 %
refresh flicker a live capture never has, only live skin pulses). Here every physical effect is drawn per video
from a range, and the effects a real phone adds to *every* capture (live included) are always present:

* the capture (:func:`capture_v3`): mains flicker (100/120 Hz sampled at the camera's slightly-off frame rate,
  so it aliases into a slow beat or a 5 Hz beat; a rolling shutter turns it into bands), auto-exposure and
  auto-white-balance drift (a slow random gain per channel, reaching into the cardiac band), sensor noise and an
  H.264 encode at a phone bitrate (PyAV/libx264, crf 24-34: the file written is those bytes);
* the camera (:func:`camera_path`): 1/f sway plus 8-12 Hz hand tremor, hand-held in most captures, and a
  rolling shutter (each row sampled later than the one above, so motion shears the frame);
* live (:func:`render_live3`): head translation/roll/zoom, 3-D yaw and pitch approximated by a depth map of the
  face (the nose moves more than the cheeks: parallax, a non-rigid landmark change), expression, blinks and a
  pulse of random strength (some live captures carry almost none, as after compression);
* print: a flat sheet held in the hand (tremor and sway), perspective tilt and a flexing bend (non-rigid landmark
  change like a head's parallax), some with cut-out eyes behind which the attacker blinks; halftone, paper grain
  and a specular sheen that moves with the bend (not under ``temporal_only``, whose frames share the photo's
  statistics);
* replay: a re-display of a live rendering (its pulse, blinks and expression), held as a screen; display gamma,
  black level and cast drawn over a range that overlaps a live capture's tone; a refresh beat of random
  strength; the room's mains flicker reaches the screen only as a reflection; moiré (the screen's pixel grid
  resampled by the camera) and glare (not under ``temporal_only``);
* ai_dynamic: a still re-animated with the live motion model and the same amplitude distributions, blinks
  driven from a performer, a weak pulse in some videos, and temporally inconsistent texture (a swimming local
  warp of random strength).

Every amplitude is drawn from a distribution shared across classes where the physics allows, so each class's
range of every statistic overlaps live's; ``benchmarks/realistic_shortcuts.py`` measures the separations.
"""
from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np

from .faces import SubjectFace
from .primitives import apply_h, background, close_eyes, halftone, rect_quad, soft_ellipse
from .render_v2 import FaceMotion, _blink_closure, _gauss, _inverse_map, _pulse_box, _rigid_delta, _support

if TYPE_CHECKING:
    from components.data.profiles import DeviceProfile, SceneProfile

    from .config import SynthConfig


# ------------------------------------------------------------------------------------------- random signals
def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def pink(rng: np.random.Generator, n: int, fps: float, lo: float = 0.1, hi: float = 4.0) -> np.ndarray:
    """Zero-mean unit-std noise over ``n`` frames with a 1/f power spectrum between ``lo`` and ``hi`` Hz."""
    m = max(2 * n, 64)
    freqs = np.fft.rfftfreq(m, 1.0 / fps)
    band = (freqs >= lo) & (freqs <= min(hi, fps / 2))
    spec = np.zeros(len(freqs), complex)
    k = int(band.sum())
    spec[band] = (rng.normal(size=k) + 1j * rng.normal(size=k)) / np.sqrt(freqs[band])
    x = np.fft.irfft(spec, m)[:n]
    x = x - x.mean()
    return x / max(float(x.std()), 1e-9)


def tremor(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    """Physiological hand tremor: an 8-12 Hz oscillation with a slowly wandering envelope (unit RMS); at 25 fps
    it aliases to 0.5-4.5 Hz, as a real camera samples it."""
    t = np.arange(n) / fps
    env = np.clip(1 + 0.4 * pink(rng, n, fps, 0.2, 2.0), 0.2, None)
    x = env * np.sin(2 * np.pi * rng.uniform(8, 12) * t + rng.uniform(0, 2 * np.pi))
    return x / max(float(np.sqrt((x ** 2).mean())), 1e-9)


class Motion:
    """One held or moving thing's path: translation (px), roll (rad), zoom, from 1/f sway + tremor."""

    def __init__(self, rng, n: int, fps: float, amp_px: float, tremor_px: float, roll_deg: float, zoom: float):
        self.dx = amp_px * pink(rng, n, fps) + tremor_px * tremor(rng, n, fps)
        self.dy = amp_px * pink(rng, n, fps) + tremor_px * tremor(rng, n, fps)
        self.roll = math.radians(roll_deg) * pink(rng, n, fps, 0.1, 2.0)
        self.zoom = 1 + zoom * pink(rng, n, fps, 0.1, 1.5)

    def velocity(self) -> tuple[np.ndarray, np.ndarray]:
        return np.gradient(self.dx), np.gradient(self.dy)


def motion_draw(rng, cfg: SynthConfig, scale: float = 1.0) -> dict:
    """Amplitudes of an object's motion: one distribution for a head, a held print, a held screen and an
    animated face (``motion_px`` scales the translation's range; ``scale`` the whole draw)."""
    k = scale * cfg.motion_px / 3.0
    return {"amp_px": k * loguniform(rng, 0.6, 4.5), "tremor_px": k * loguniform(rng, 0.05, 0.5),
            "roll_deg": k * loguniform(rng, 0.3, 2.0), "zoom": k * loguniform(rng, 0.002, 0.015)}


def camera_path(rng, cfg: SynthConfig) -> tuple[Motion, float]:
    """The capturing phone: hand-held (sway + tremor) in 75 % of captures, else on a stand (a little tremor);
    and its rolling-shutter readout as a share of the frame time (0.2-0.9)."""
    k = cfg.motion_px / 3.0
    held = rng.random() < 0.75
    amp = k * (loguniform(rng, 0.2, 2.0) if held else 0.05)
    trem = k * (loguniform(rng, 0.05, 0.4) if held else 0.02)
    return Motion(rng, cfg.n_frames, cfg.fps, amp, trem, 0.3 * k, 0.0), rng.uniform(0.2, 0.9) * cfg.rolling_shutter


def _remap(img, mx, my, reflect: bool = True):
    import cv2

    return cv2.remap(img, mx, my, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT101 if reflect else cv2.BORDER_CONSTANT, borderValue=0)


def _shutter_rows(H: int, readout: float) -> np.ndarray:
    """Time offset of each row, in frames, relative to the middle row: (H, 1) float32."""
    return ((np.arange(H, dtype=np.float32) / np.float32(H) - np.float32(0.5)) * np.float32(readout))[:, None]


def face_depth(face: SubjectFace, xs, ys) -> np.ndarray:
    """Depth (towards the camera, px) of the face at each pixel: an ellipsoid plus the nose, 0 off the face.
    The shape of ``template_face_3d`` reduced to two terms: cheeks ~0.45 fw deep at the centre, nose +0.2 fw."""
    fw, c = face.face_w, face.center
    u = (xs - np.float32(c[0])) / np.float32(0.55 * fw)
    v = (ys - np.float32(c[1] + 0.05 * fw)) / np.float32(0.75 * fw)
    ell = np.sqrt(np.clip(1 - u * u - v * v, 0, 1))
    eyes = (face.left_eye + face.right_eye) / 2
    nose = 0.5 * (eyes + face.mouth)
    return (np.float32(0.45 * fw) * ell + np.float32(0.2 * fw) * _gauss(xs, ys, nose[0], nose[1], 0.09 * fw,
                                                                        0.16 * fw)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ live / AI
def _pulse_signal(rng, cfg: SynthConfig, scale: float) -> np.ndarray:
    """Skin colour swing per frame: a heartbeat of random rate, strength ``pulse_amplitude`` x loguniform(0.15, 1)
    x ``scale`` (compression and skin tone make real rPPG amplitude vary by an order of magnitude)."""
    T, fps = cfg.n_frames, cfg.fps
    amp = cfg.pulse_amplitude * loguniform(rng, 0.15, 1.0) * scale
    hr = rng.uniform(0.9, 1.8)
    t = np.arange(T) / fps
    return amp * np.sin(2 * np.pi * hr * t + rng.uniform(0, 2 * np.pi) + 0.3 * np.cumsum(rng.normal(0, 0.1, T)))


def render_live3(face: SubjectFace, rng, cfg: SynthConfig, kind: str = "live", motion_scale: float = 1.0):
    """A moving head over a still background: ``kind`` live | replay_src (the recording a replay re-displays) |
    ai (a still re-animated: the same motion model, texture swimming, weak or no pulse, driven blinks).

    Returns frames (T, H, W, 3) float32 *without* the capturing camera's own motion (added by the caller), the
    face centre per frame and the face width."""
    import cv2

    T, fps = cfg.n_frames, cfg.fps
    H, W = face.image.shape[:2]
    fm = FaceMotion(face, cfg)
    xs, ys, fw = fm.xs, fm.ys, face.face_w
    skin = fm.skin()
    box = _support(skin)
    m = Motion(rng, T, fps, **motion_draw(rng, cfg, motion_scale))
    # 3-D rotation: yaw and pitch of random amplitude; the depth map's parallax is the non-rigid part.
    yaw = math.radians(loguniform(rng, 0.5, 6.0) * cfg.motion_px / 3.0) * pink(rng, T, fps, 0.1, 1.5)
    pitch = math.radians(loguniform(rng, 0.5, 4.0) * cfg.motion_px / 3.0) * pink(rng, T, fps, 0.1, 1.5)
    depth = face_depth(face, xs, ys)
    w = fm.head_weight(cfg.motion_sigma * rng.uniform(0.85, 1.2))
    fields = fm.expression_fields()
    expr = cfg.expression_px * loguniform(rng, 0.2, 1.5)
    sig = [np.maximum(pink(rng, T, fps, 0.2, 2.0), 0) * 0.8, 0.5 * pink(rng, T, fps, 0.1, 0.6),
           0.4 * pink(rng, T, fps, 0.2, 1.0)]
    base = face.image
    if kind == "ai":
        if rng.random() < 0.6:  # generative re-animation often over-smooths skin
            sm = cv2.bilateralFilter(base, 7, rng.uniform(15, 35), 5)
            base = base * (1 - skin[..., None]) + sm * skin[..., None]
        pulse = _pulse_signal(rng, cfg, 0.35) if rng.random() < 0.4 else np.zeros(T)
        closure = _blink_closure(rng, T, fps, cfg.blink_rate_hz * rng.uniform(0.3, 1.6))
        sig[0] = sig[0] * rng.uniform(1.0, 1.8)  # re-animation is often driven by speech
        warp = cfg.ai_warp * loguniform(rng, 0.15, 1.0)
        gh, gw = 6, 5
        noise = rng.normal(0, 1, size=(T, 2, gh, gw)).astype(np.float32)
        rho = rng.uniform(0.2, 0.7)
        for t in range(1, T):
            noise[t] = rho * noise[t - 1] + math.sqrt(1 - rho * rho) * noise[t]
        region = _gauss(xs, ys, face.center[0], face.center[1], 0.6 * fw, 0.8 * fw)
    else:
        pulse = _pulse_signal(rng, cfg, 1.0)
        closure = _blink_closure(rng, T, fps, cfg.blink_rate_hz * rng.uniform(0.4, 1.8))
        warp = 0.0
    frames, centers = [], []
    for t in range(T):
        img = close_eyes(base, face, closure[t]) if closure[t] > 0.02 else base
        img = _pulse_box(img, skin, box, pulse[t]) if pulse[t] else img
        rx, ry = _rigid_delta(xs, ys, face.center, m.dx[t], m.dy[t], m.roll[t], m.zoom[t])
        ddx = w * (rx - depth * np.float32(math.sin(yaw[t])))
        ddy = w * (ry - depth * np.float32(math.sin(pitch[t])))
        for (fx, fy), s in zip(fields, sig):
            a = np.float32(expr * s[t])
            if a:
                ddx, ddy = ddx + a * fx, ddy + a * fy
        if warp:
            ddx = ddx + np.float32(warp) * region * cv2.resize(noise[t, 0], (W, H), interpolation=cv2.INTER_CUBIC)
            ddy = ddy + np.float32(warp) * region * cv2.resize(noise[t, 1], (W, H), interpolation=cv2.INTER_CUBIC)
        frames.append(_remap(img, xs + ddx, ys + ddy))
        centers.append(face.center + (m.dx[t], m.dy[t]))
    return np.stack(frames), np.array(centers), fw


# ------------------------------------------------------------------------------------------- held media
def _bend_delta(xs, ys, center, width: float, bend: np.float32):
    u = (xs - np.float32(center[0])) / np.float32(width / 2)
    z = bend * np.clip(1 - u * u, -1, 1)
    mm = 1 / (1 + z / np.float32(1.2))
    return (xs - np.float32(center[0])) * (mm - 1), (ys - np.float32(center[1])) * (mm - 1)


def _plane_paths(rng, cfg: SynthConfig, quad: np.ndarray, w: int, h: int, motion: Motion, tilt: float):
    """Per frame: the homography taking content (h, w) to ``quad`` moved by ``motion`` and tilted out of plane."""
    import cv2

    T, fps = cfg.n_frames, cfg.fps
    tx, ty = (tilt * pink(rng, T, fps, 0.1, 1.5) for _ in range(2))
    c = quad.mean(axis=0)
    half = (quad.max(axis=0) - quad.min(axis=0)) / 2
    rel = (quad - c) / half
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    out = []
    for t in range(T):
        th = motion.roll[t]
        R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        dst = (quad - c) @ R.T * motion.zoom[t] + c + (motion.dx[t], motion.dy[t])
        dst = dst + np.stack([rel[:, 0] * rel[:, 1] * ty[t] * half[0], rel[:, 1] * rel[:, 0] * tx[t] * half[1]], 1)
        out.append(cv2.getPerspectiveTransform(src, dst.astype(np.float32)))
    return out


def _held_media(face: SubjectFace, rng, cfg: SynthConfig, content_frames, border: int, motion_scale: float,
                bend=None, sheen: float = 0.0):
    """Frames of a held flat (or bent) medium showing ``content_frames(t)`` ((h, w, 3) with a ``border``-px
    margin around the face still's frame). ``temporal_only``: the medium fills the frame (no background)."""
    H, W = face.image.shape[:2]
    T = cfg.n_frames
    first = content_frames(0)
    h, w = first.shape[:2]
    if cfg.temporal_only:
        quad = rect_quad(-border, -border, w, h)
        bg = None
    else:
        cover = rng.uniform(0.9, 1.0)
        pw, ph = cover * W, cover * W * h / w
        quad = rect_quad((W - pw) / 2, (H - ph) / 2 + rng.uniform(-0.03, 0.03) * H, pw, ph)
        bg = background(rng, (H, W))
    draw = motion_draw(rng, cfg, motion_scale)
    # The medium's tremor moves the whole picture (its background too) on top of the camera's own; a head's
    # tremor moves only the head: half the tremor keeps whole-frame brightness jitter and differences level.
    draw["tremor_px"] *= 0.5
    motion = Motion(rng, T, cfg.fps, **draw)
    # Out-of-plane tilt (keystone) of random strength; it moves the face too, so it scales with the motion.
    homs = _plane_paths(rng, cfg, quad, w, h, motion, motion_scale * cfg.motion_px / 3.0 * loguniform(rng, 0.005, 0.04))
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    pc = np.array([w / 2, h / 2])
    ones = np.ones((h, w), np.float32)
    frames, centers, inside = [], [], []
    fc = face.center + border
    if sheen:
        uu = np.arange(w, dtype=np.float32) / np.float32(w)
    for t in range(T):
        sx, sy = _inverse_map(np.linalg.inv(homs[t]), xs, ys)
        if bend is not None and bend[t]:
            bx, by = _bend_delta(sx, sy, pc, w, np.float32(bend[t]))
            sx, sy = sx + bx, sy + by
        img = content_frames(t)
        if sheen:  # the specular highlight of a bent glossy sheet moves with its curvature
            pos = 0.5 + 6.0 * (bend[t] - bend.mean())
            band = np.exp(-((uu - np.float32(pos)) / np.float32(0.12)) ** 2)[None, :, None]
            img = img + np.float32(sheen) * band
        if bg is None:
            frames.append(_remap(img, sx, sy, reflect=True))
            inside.append(None)
        else:
            warped = _remap(img, sx, sy, reflect=False)
            mask = _remap(ones, sx, sy, reflect=False)[..., None]
            frames.append(bg * (1 - mask) + warped * mask)
            inside.append(mask)
        centers.append(apply_h(homs[t], fc))
    scale = 1.0 if cfg.temporal_only else (quad[1, 0] - quad[0, 0]) / w
    return np.stack(frames), np.array(centers), face.face_w * scale, inside


def render_print3(face: SubjectFace, rng, cfg: SynthConfig):
    """A hand-held photo: tremor and sway, tilt, a flexing bend; a third have the eyes cut out (the attacker's
    eyes blink behind them); halftone, paper grain, reduced gamut and a moving sheen unless ``temporal_only``."""
    import cv2

    T, fps = cfg.n_frames, cfg.fps
    H, W = face.image.shape[:2]
    img = face.image.astype(np.float32)
    # Tone of the print: gamut compression of random strength (overlaps a live capture's exposure range).
    gray = img.mean(axis=2, keepdims=True)
    img = gray + (img - gray) * np.float32(rng.uniform(0.7, 1.0))
    lift = rng.uniform(0, 14)
    img = np.float32(lift) + img * np.float32(rng.uniform(0.85, 1.02) * (255 - lift) / 255)
    border = 0
    if not cfg.temporal_only:
        img = halftone(img, rng).astype(np.float32) if rng.random() < 0.7 else img
        grain = cv2.GaussianBlur(rng.normal(0, 1, size=(H, W)).astype(np.float32), (0, 0), 0.8)
        img = img * (1 + np.float32(rng.uniform(0.01, 0.04)) * grain[..., None])
        border = int(round(rng.uniform(0.04, 0.07) * W))
        paper = np.full((H + 2 * border, W + 2 * border, 3), rng.uniform(225, 245), dtype=np.float32)
        paper[border:border + H, border:border + W] = img
        img = paper
    cut = rng.random() < 0.35
    closure = _blink_closure(rng, T, fps, cfg.blink_rate_hz * rng.uniform(0.4, 1.8)) if cut else np.zeros(T)
    shifted = face
    if border:
        shifted = type(face)(img, face.left_eye + border, face.right_eye + border, face.mouth + border, face.face_w)

    def content(t):
        return close_eyes(img, shifted, closure[t]) if closure[t] > 0.02 else img

    bend = cfg.print_bend * loguniform(rng, 1.0, 6.0) * (1 + 1.0 * pink(rng, T, fps, 0.1, 1.0))
    sheen = 0.0 if cfg.temporal_only else rng.uniform(0, 25)
    # A sheet moves the whole picture (its background too), so the same hand motion changes more pixels than a
    # head does: held a little stiller (0.75) the frame differences overlap.
    frames, centers, fw, _ = _held_media(face, rng, cfg, content, border, 0.75, bend=bend, sheen=sheen)
    return frames, centers, fw, None


def render_replay3(face: SubjectFace, rng, cfg: SynthConfig):
    """A live rendering (pulse, blinks, expression of the source) shown on a held screen: display tone drawn to
    overlap live captures, a refresh beat of random strength, moiré and glare unless ``temporal_only``.
    Returns the screen mask per frame too (the room's mains flicker reaches the screen only as a reflection)."""
    T, fps = cfg.n_frames, cfg.fps
    H, W = face.image.shape[:2]
    # The source's motion and the held screen's share one motion budget (both come through the camera): the
    # split is random, the sum of squares the same as one live head's.
    u = rng.uniform(0.3, 0.9)
    shown, _, _ = render_live3(face, rng, cfg, kind="replay_src", motion_scale=u)
    if cfg.replay_judder > 0:
        rate = cfg.replay_judder * rng.uniform(0, 1.5)
        idx = np.floor(np.arange(T) * (1 - rate) + rng.uniform(0, 1)).astype(int)
        shown = shown[np.clip(idx - idx[0], 0, T - 1)]
    g = float(np.clip(cfg.replay_gamma * rng.uniform(0.85, 1.35), 0.5, 2.0))
    black = rng.uniform(0, 18)
    tint = (1 + rng.normal(0, 0.03, size=3)).astype(np.float32)
    peak = rng.uniform(0.9, 1.05)
    shown = np.float32(black) + np.float32(peak * (255 - black)) * (np.clip(shown, 0, 255) / np.float32(255)) \
        ** np.float32(g) * tint
    refresh = cfg.replay_flicker * loguniform(rng, 0.03, 0.35)
    beat = 1 + refresh * np.sin(2 * np.pi * rng.uniform(0.5, 9) * np.arange(T) / fps + rng.uniform(0, 2 * np.pi))
    shown = shown * beat[:, None, None, None].astype(np.float32)
    border = 0 if cfg.temporal_only else int(round(rng.uniform(0.03, 0.05) * W))
    if not cfg.temporal_only:
        y, x = np.mgrid[0:H, 0:W].astype(np.float32)
        a = rng.uniform(0, np.pi)
        f1 = rng.uniform(0.3, 0.46) * np.array([math.cos(a), math.sin(a)])
        f2 = rng.uniform(0.3, 0.46) * np.array([math.cos(a + 0.08), math.sin(a + 0.08)])
        moire = (np.cos(2 * np.pi * (f1[0] * x + f1[1] * y)) * np.cos(2 * np.pi * (f2[0] * x + f2[1] * y)))
        moire = (np.float32(loguniform(rng, 1.0, 9.0)) * moire).astype(np.float32)[..., None]
        gc = (rng.uniform(0.1, 0.9) * W, rng.uniform(0.1, 0.9) * H)
        glare = (np.float32(rng.uniform(0, 40)) * soft_ellipse((H, W), gc, (0.3 * W, 0.2 * H))).astype(np.float32)
        glare = glare[..., None]
        screen = np.zeros((H + 2 * border, W + 2 * border, 3), np.float32) + 12
    else:
        screen = None

    def content(t):
        if screen is None:
            return shown[t]
        screen[border:border + H, border:border + W] = shown[t] + moire + glare
        return screen

    frames, centers, fw, inside = _held_media(face, rng, cfg, content, border, 0.75 * math.sqrt(1 - u * u))
    return frames, centers, fw, inside


def render_ai3(face: SubjectFace, rng, cfg: SynthConfig):
    frames, c, fw = render_live3(face, rng, cfg, kind="ai")
    return frames, c, fw, None


def render_live3_capture(face: SubjectFace, rng, cfg: SynthConfig):
    frames, c, fw = render_live3(face, rng, cfg, kind="live")
    return frames, c, fw, None


RENDER_V3 = {"live": render_live3_capture, "print": render_print3, "replay": render_replay3, "ai_dynamic": render_ai3}


def camera_motion(frames: np.ndarray, centers: np.ndarray, rng, cfg: SynthConfig):
    """The capturing phone's own motion over the whole scene, with the rolling shutter's row-dependent offset
    (row y is read ``readout * (y/H - 1/2)`` frames after the middle row, so it sees the motion that much
    later). The object's own motion is not re-sheared (it is small next to the camera's)."""
    T, H, W, _ = frames.shape
    cam, readout = camera_path(rng, cfg)
    vx, vy = cam.velocity()
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    rows = _shutter_rows(H, readout)
    c = np.array([W / 2, H / 2])
    out = np.empty_like(frames)
    for t in range(T):
        rx, ry = _rigid_delta(xs, ys, c, cam.dx[t], cam.dy[t], cam.roll[t], 1.0)
        mx = xs + rx - rows * np.float32(vx[t])
        my = ys + ry - rows * np.float32(vy[t])
        out[t] = _remap(frames[t], mx, my)
    return out, centers + np.stack([cam.dx, cam.dy], 1), readout


# ------------------------------------------------------------------------------------------------ capture
def mains_flicker(rng, cfg: SynthConfig, H: int, readout: float) -> np.ndarray:
    """Relative brightness (T, H, 1, 1) of mains lighting: 100 or 120 Hz sampled at the camera's true frame rate
    (0.2 % off nominal), each row at its rolling-shutter time; amplitude loguniform over 0.1-2 % (x ``mains_flicker``
    / 0.01)."""
    T = cfg.n_frames
    f_true = cfg.fps * (1 + rng.uniform(-0.002, 0.002))
    hz = 100.0 if rng.random() < 0.5 else 120.0
    amp = cfg.mains_flicker * loguniform(rng, 0.1, 2.0)
    line_time = readout / f_true / H  # seconds between rows
    t = np.arange(T)[:, None] / f_true + np.arange(H)[None, :] * line_time
    return (1 + amp * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))).astype(np.float32)[..., None, None]


def exposure_drift(rng, cfg: SynthConfig) -> np.ndarray:
    """Per-frame gain per channel (T, 3): auto-exposure drift (all channels) and white-balance hunting (per
    channel; its 1/f spectrum reaches into the 0.7-3 Hz band rPPG reads)."""
    T, fps = cfg.n_frames, cfg.fps
    k = cfg.exposure_drift / 0.01
    ae = k * loguniform(rng, 0.002, 0.02) * pink(rng, T, fps, 0.05, 3.0)
    wb = k * loguniform(rng, 0.0005, 0.006) * np.stack([pink(rng, T, fps, 0.1, 4.0) for _ in range(3)], 1)
    return (1 + ae[:, None] + wb).astype(np.float32)


def h264_roundtrip(frames: np.ndarray, fps: float, crf: int) -> tuple[bytes, np.ndarray]:
    """Frames encoded as an H.264 mp4 in memory (one encoder thread: deterministic) and decoded back: the file's
    bytes and the frames a reader sees."""
    import av

    from components.data.video import encode_h264

    data = encode_h264(frames, fps, crf, threads=1)
    with av.open(io.BytesIO(data)) as inp:
        dec = np.stack([f.to_ndarray(format="rgb24") for f in inp.decode(video=0)])
    return data, dec


def capture_v3(frames: np.ndarray, screen: list | None, readout: float, device: DeviceProfile,
               scene: SceneProfile, rng, cfg: SynthConfig) -> tuple[np.ndarray, bytes]:
    """The phone: mains flicker (only a reflection of it on a screen), exposure/white-balance drift, device white
    balance, blur, resize, sharpening, noise, then H.264 at a phone bitrate. Returns the decoded frames
    (T, h, w, 3) uint8 and the mp4's bytes."""
    import cv2

    T, H, W, _ = frames.shape
    h = int(round(H * device.scale / 2) * 2)
    w = int(round(W * device.scale / 2) * 2)
    flick = mains_flicker(rng, cfg, H, readout)  # (T, H, 1, 1)
    gains = exposure_drift(rng, cfg) * np.array(device.wb, np.float32)  # (T, 3)
    reflect = np.float32(rng.uniform(0.1, 0.5))  # share of the room light a screen reflects
    sigma = device.noise * scene.noise_boost * rng.uniform(0.8, 1.3)
    crf = int(rng.integers(cfg.h264_crf[0], cfg.h264_crf[1] + 1))
    out = np.empty((T, h, w, 3), np.uint8)
    for t in range(T):
        fl = flick[t]
        if screen is not None:
            m = screen[t] if screen[t] is not None else np.float32(1.0)
            fl = 1 + (fl - 1) * (1 - m * (1 - reflect))
        f = frames[t] * fl * gains[t]
        if cfg.blur_sigma > 0:
            f = cv2.GaussianBlur(f, (0, 0), cfg.blur_sigma)
        if (h, w) != (H, W):
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
        if device.sharpen:
            f = cv2.addWeighted(f, 1 + device.sharpen, cv2.GaussianBlur(f, (0, 0), 1.2), -device.sharpen, 0.0)
        f = cv2.scaleAdd(rng.standard_normal(size=(h, w, 3), dtype=np.float32), float(sigma), f)
        out[t] = np.clip(f + np.float32(0.5), 0, 255).astype(np.uint8)
    data, dec = h264_roundtrip(out, cfg.fps, crf)
    return dec, data


def render_capture_v3(face: SubjectFace, kind: str, device: DeviceProfile, scene: SceneProfile, rng,
                      cfg: SynthConfig, apply_scene, subject: int = 0) -> tuple[np.ndarray, bytes]:
    """One v3 video: the class's scene, the scene lighting, the camera's motion and rolling shutter, the capture.
    ``certificate`` keeps the v1/v2 card scene (a per-frame cue) under the v3 camera."""
    if kind == "certificate":
        from .render_v1 import render_certificate

        frames, centers, fw = render_certificate(face, rng, cfg, subject)
        inside = None
    else:
        frames, centers, fw, inside = RENDER_V3[kind](face, rng, cfg)
    if kind == "replay" and cfg.temporal_only:
        inside = [np.float32(1.0)] * len(frames)  # the screen fills the frame
    frames = apply_scene(frames.astype(np.float32), centers, fw, scene, rng)
    # Every capture's exposure and contrast vary (auto-exposure, scene light): one random tone per video.
    contrast, gain = np.float32(rng.uniform(0.8, 1.15)), np.float32(rng.uniform(0.85, 1.12))
    frames = (128 + (frames - 128) * contrast) * gain
    frames, centers, readout = camera_motion(frames.astype(np.float32), centers, rng, cfg)
    return capture_v3(frames, inside, readout, device, scene, rng, cfg)
