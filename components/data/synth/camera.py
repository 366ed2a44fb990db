"""The capture: scene lighting placed relative to the face, then the device (sensor noise, white balance, blur,
JPEG/codec) that recorded it."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from components.data.profiles import DeviceProfile, SceneProfile

from .primitives import soft_ellipse

if TYPE_CHECKING:
    from .config import SynthConfig


# ------------------------------------------------------------------------------------- camera pipeline
def apply_scene(frames: np.ndarray, centers: np.ndarray, face_w: float, scene: SceneProfile, rng) -> np.ndarray:
    T, H, W, _ = frames.shape
    out = frames * (scene.gain * np.array(scene.tint, np.float32))
    if scene.contrast != 1.0:
        out = 128 + (out - 128) * scene.contrast
    if scene.face_gain != 1.0 or scene.background_gain != 1.0 or scene.side_light:
        side = 1 if rng.random() < 0.5 else -1
        x = np.arange(W, dtype=np.float32)
        for t in range(T):
            fm = soft_ellipse((H, W), centers[t], (0.75 * face_w, 1.0 * face_w))[..., None]
            gain = fm * scene.face_gain + (1 - fm) * scene.background_gain
            if scene.side_light:
                ramp = np.clip(0.5 + side * (x - centers[t][0]) / (1.2 * face_w), 0, 1)[None, :, None]
                gain = gain * (1 + scene.side_light * ramp * (0.4 + 0.6 * fm))
            out[t] = out[t] * gain
    if scene.gamma != 1.0:
        out = 255 * (np.clip(out, 0, 255) / 255) ** scene.gamma
    return out


def apply_device(frames: np.ndarray, device: DeviceProfile, scene: SceneProfile, rng,
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
        return apply_device_v2(frames, device, rng, (h, w), wb, sigma, quality, blur)
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


def apply_device_v2(frames, device: DeviceProfile, rng, size, wb, sigma: float, quality: int, blur: float):
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
