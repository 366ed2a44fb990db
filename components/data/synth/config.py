"""What a synthetic dataset is made of (:class:`SynthConfig`), its cue parameters and named presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from components.data.profiles import DEVICES, SCENES

from .faces import identity_names

ATTACKS = ("print", "replay", "certificate", "ai_dynamic")
SPLIT_BY = ("subject", "identity")
RENDERERS = ("v1", "v2", "v3")
# Fields the v1 renderer does not know: with renderer="v1" they must keep their defaults.
CUE_FIELDS = ("blink_rate_hz", "expression_px", "motion_sigma", "print_bend", "replay_judder", "replay_flicker",
              "replay_gamma", "ai_warp", "blur_sigma", "jpeg_quality")
# Fields only the v3 renderer reads: with renderer "v1" or "v2" they must keep their defaults (v2 stays bit for bit).
V3_FIELDS = ("mains_flicker", "exposure_drift", "rolling_shutter", "h264_crf")


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
    renderer: str = "v2"  # v2: the cue model below; v1: the renderer that made data/sample/ (bit for bit);
    # v3: preset "realistic" (render_v3.py): every strength drawn per video, phone capture effects, H.264 files
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
    # --- capture effects of the realistic renderer (v3 only); each is the top of a per-video random range ---
    mains_flicker: float = 0.01  # mains-light flicker: per-video amplitude loguniform(0.1, 2) x this (relative)
    exposure_drift: float = 0.01  # auto-exposure / white-balance drift scale (0.01: AE 0.2-2 %, WB 0.05-0.6 %)
    rolling_shutter: float = 1.0  # readout time scale: per-video readout 0.2-0.9 frame times x this (0: global)
    h264_crf: tuple[int, int] = (24, 34)  # per-video libx264 CRF range (phone bitrates: ~1-4 Mbit/s at 1080p)

    def __post_init__(self):
        # Lists from YAML/argparse become tuples so the config stays hashable and frozen.
        for name in ("devices", "scenes", "attack_types", "size", "split_ratio", "identities", "h264_crf"):
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
        for name in ("mains_flicker", "exposure_drift"):
            if not 0 <= getattr(self, name) <= 0.1:
                raise ValueError(f"{name} must be in [0, 0.1] (a relative amplitude), got {getattr(self, name)}")
        if not 0 <= self.rolling_shutter <= 1.1:
            raise ValueError(f"rolling_shutter must be in [0, 1.1] (readout in frame times), got {self.rolling_shutter}")
        crf = self.h264_crf
        if (len(crf) != 2 or not all(isinstance(c, (int, np.integer)) for c in crf)
                or not 0 <= crf[0] <= crf[1] <= 51):
            raise ValueError(f"h264_crf must be two integers lo <= hi in 0..51 (libx264 CRF), got {crf}")
        if self.renderer != "v3":
            changed = [f for f in V3_FIELDS if getattr(self, f) != _FIELD_DEFAULTS[f]]
            if changed:
                raise ValueError(f"{changed} are capture effects of renderer 'v3' (preset 'realistic'); renderer "
                                 f"{self.renderer!r} keeps their defaults")
        if self.renderer == "v1":
            changed = [f for f in CUE_FIELDS if getattr(self, f) != _FIELD_DEFAULTS[f]]
            if changed:
                raise ValueError(f"renderer 'v1' (the data/sample renderer) has no {changed}: keep their defaults "
                                 "or use renderer 'v2'")


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SynthConfig)}


# ------------------------------------------------------------------------------------------------ presets
PRESETS: dict[str, dict] = {
    # Fixed cue strengths: the SynthConfig defaults, spelled out (one hand statistic separates each attack here).
    "default": {"pulse_amplitude": 0.02, "motion_px": 3.0, "motion_sigma": 0.75, "expression_px": 1.5,
                "blink_rate_hz": 0.28, "print_bend": 0.03, "replay_judder": 0.04, "replay_flicker": 0.03,
                "replay_gamma": 0.85, "ai_warp": 0.8, "blur_sigma": 0.0, "jpeg_quality": None},
    # Faint cues, as in real compressed phone video: a pulse of ~0.5 % (rPPG amplitude after compression),
    # slight defocus/motion blur and strong in-camera JPEG that wash out fine texture and colour.
    "hard": {"pulse_amplitude": 0.005, "blur_sigma": 0.8, "jpeg_quality": 50},
    # No single hand statistic separates the classes (benchmarks/realistic_shortcuts.py): the v3 renderer draws
    # every effect's strength per video; mains flicker, exposure/WB drift, camera tremor, rolling shutter and
    # H.264 on every capture, live included; replays re-display live renderings (pulse, blinks).
    "realistic": {"renderer": "v3"},
    # The renderer and identities that made data/sample/ (bit for bit, with the sample's command line).
    "sample_v1": {"renderer": "v1", "identities": ("astronaut", "grace_hopper", "carphone")},
}


def preset(name: str) -> dict:
    """SynthConfig overrides for a named setting: ``SynthConfig(**preset("hard"), n_subjects=12)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return dict(PRESETS[name])
