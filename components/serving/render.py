"""Heat map of the predicted map over the face crop, as a PNG the demo page shows inline."""
from __future__ import annotations

import base64

import numpy as np


def overlay_png(crop_rgb: np.ndarray, face_map: np.ndarray, size: int = 192, alpha: float = 0.45) -> str:
    """Blend ``face_map`` (M, M) in [0, 1] over ``crop_rgb`` (S, S, 3); returns base64 PNG.

    The map is upsampled with nearest neighbour on purpose: each cell is one output of the network, and
    smoothing would suggest a resolution the model does not have.
    """
    import cv2

    face = cv2.resize(crop_rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    m = np.clip(np.nan_to_num(face_map.astype(np.float32)), 0.0, 1.0)
    heat = cv2.resize((m * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    heat_rgb = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(face, 1.0 - alpha, heat_rgb, alpha, 0.0)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of the heat map failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")
