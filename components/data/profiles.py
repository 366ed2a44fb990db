"""Capture profiles for the synthetic generator: devices (camera pipeline) and scenes (lighting).

The paper's Fig. 6 splits its data by Android/iOS device model and by indoor (dark, backlight, exposure, new
window, near light) / outdoor (roadside, garden, square, court) scene; these profiles mimic the image-level
effect of each so that the quality gates and the per-device/per-scene metrics have something real to split on.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    os: str  # android | ios
    scale: float  # output resolution relative to the generator's base size
    noise: float  # sensor noise sigma, in 8-bit levels, at normal light
    jpeg_quality: int  # in-camera compression before the video encoder
    wb: tuple[float, float, float]  # white-balance gains (R, G, B) the camera gets slightly wrong
    sharpen: float = 0.0  # unsharp-mask amount: phone ISPs over-sharpen


@dataclass(frozen=True)
class SceneProfile:
    name: str
    environment: str  # indoor | outdoor
    gain: float  # overall exposure
    tint: tuple[float, float, float]  # light colour (R, G, B)
    contrast: float = 1.0
    gamma: float = 1.0
    face_gain: float = 1.0  # < 1 with a bright background: backlight
    background_gain: float = 1.0
    side_light: float = 0.0  # strength of a lamp close to one side of the face (near light)
    noise_boost: float = 1.0  # dark scenes raise the sensor gain, hence the noise


DEVICES: dict[str, DeviceProfile] = {p.name: p for p in (
    DeviceProfile("android_lowend", "android", 0.8, 3.0, 60, (1.06, 1.0, 0.90), 0.0),
    DeviceProfile("android_midrange", "android", 1.0, 2.5, 78, (0.98, 1.0, 1.06), 0.3),
    DeviceProfile("android_flagship", "android", 1.0, 1.5, 88, (1.02, 1.0, 0.98), 0.5),
    DeviceProfile("iphone_8", "ios", 0.9, 2.0, 85, (1.03, 1.0, 0.96), 0.15),
    DeviceProfile("iphone_12", "ios", 1.0, 1.2, 92, (0.97, 1.0, 1.03), 0.2),
)}

SCENES: dict[str, SceneProfile] = {p.name: p for p in (
    SceneProfile("indoor", "indoor", 0.95, (1.04, 1.0, 0.93)),
    SceneProfile("outdoor", "outdoor", 1.08, (0.96, 1.0, 1.06), contrast=1.12),
    SceneProfile("dark", "indoor", 0.62, (1.05, 1.0, 0.90), gamma=1.1, noise_boost=1.7),
    SceneProfile("backlight", "indoor", 1.0, (1.0, 1.0, 1.0), face_gain=0.72, background_gain=1.6),
    SceneProfile("exposure", "indoor", 1.35, (1.0, 1.0, 0.97), contrast=0.92),
    SceneProfile("near_light", "indoor", 0.9, (1.06, 1.0, 0.92), side_light=0.45),
    SceneProfile("roadside", "outdoor", 1.05, (0.98, 1.0, 1.04), contrast=1.08),
)}
